// Mounting at boot, for the system tests: a scratch place whose mountpoints the test sees though mount(8) ran
// in a mount namespace of its own (where `blackmatch` is on the standard PATH), and a reader of systemd unit
// files that turns their Exec lines into command lines as systemd would. Owns the scratch's mounts and
// processes: cleanup() unmounts and ends them all, pass or fail.
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNodeDir } from '../../grid/local-grid.js';
import { abortConnection, blackmatchProcesses, CLI, eventually, isMountpoint } from '../../grid/mount.js';
import { mustRun, runChild, type ChildResult } from './posix.js';

/**
 * The PATH mount(8) gives its helpers: it drops the caller's PATH (util-linux sanitize_env), and mount.fuse3's
 * /bin/sh then searches dash's default, so `blackmatch` must be in one of these directories.
 */
export const STANDARD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** The one standard directory that the namespace covers with ours (empty on Debian). */
const COVERED_DIR = '/usr/local/sbin';

/** Scratch places still to clean up: if the test process dies first, they are detached on its way out. */
const live = new Set<BootScratch>();
process.on('exit', () => {
  for (const s of live) s.detachNow();
});

export class BootScratch {
  private readonly mountpoints = new Set<string>();
  private sharedMounted = false;

  private constructor(
    readonly workDir: string,
    /** Holds `blackmatch`: a shim that runs this build's CLI with the test's node. */
    readonly binDir: string,
    /** A tmpfs shared with mount namespaces made from ours: the mountpoints go here. */
    readonly sharedDir: string,
  ) {}

  /** `parent` must let other users through when one will run blackmatch (setuid=): /tmp may be 0700. */
  static async create(parent = tmpdir()): Promise<BootScratch> {
    const workDir = await mkdtemp(join(parent, 'bm-boot-'));
    await chmod(workDir, 0o711);
    const s = new BootScratch(workDir, join(workDir, 'bin'), join(workDir, 'shared'));
    live.add(s);
    await mkdir(s.binDir);
    await writeFile(join(s.binDir, 'blackmatch'), `#!/bin/sh\nexec '${process.execPath}' '${CLI}' "$@"\n`);
    await chmod(join(s.binDir, 'blackmatch'), 0o755);
    await mkdir(s.sharedDir);
    // A mount made in another namespace shows here only under a shared mount (ours are all private).
    await mustRun('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', s.sharedDir]);
    s.sharedMounted = true;
    await mustRun('mount', ['--make-shared', s.sharedDir]);
    return s;
  }

  /** A node directory with alias `tahoe` for a fresh directory on the grid. */
  async nodeDir(gatewayUrl: string, name: string): Promise<{ nodeDir: string; rootCap: string }> {
    return createNodeDir(gatewayUrl, join(this.workDir, name));
  }

  /** A fresh mountpoint under the shared tmpfs, cleaned up with the scratch. */
  async mountpoint(name: string): Promise<string> {
    const path = join(this.sharedDir, name);
    await mkdir(path);
    this.mountpoints.add(path);
    return path;
  }

  /**
   * Runs `cmd args` (mount, say) in a new mount namespace whose standard PATH has our `blackmatch`: there
   * `binDir` covers /usr/local/sbin, and nowhere else. `--propagation unchanged` keeps the shared tmpfs a peer
   * of ours, so a FUSE mount made there shows here, and an unmount here reaches it there.
   */
  inStandardPath(cmd: string, args: string[], timeoutMs = 120_000): Promise<ChildResult> {
    const script = `mount --bind "$0" ${COVERED_DIR} && exec "$@"`;
    return runChild('unshare', ['--mount', '--propagation', 'unchanged', 'sh', '-c', script, this.binDir, cmd, ...args], { timeoutMs });
  }

  /** Unmounts every mountpoint, waits for their processes to exit (killing stragglers), removes everything. */
  async cleanup(): Promise<void> {
    for (const mnt of this.mountpoints) {
      if (await isMountpoint(mnt)) {
        const r = await runChild('umount', [mnt], { timeoutMs: 30_000 });
        if (r.code !== 0) {
          await abortConnection(mnt);
          await runChild('umount', ['-l', mnt], { timeoutMs: 30_000 });
        }
      }
    }
    const mine = async () => (await blackmatchProcesses()).filter((p) => [...this.mountpoints].some((m) => p.args.includes(m)));
    await eventually('every process of the scratch mounts exits', async () => (await mine()).length === 0, 20_000).catch(() => undefined);
    for (const p of await mine()) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (this.sharedMounted) await runChild('umount', ['-l', this.sharedDir], { timeoutMs: 30_000 });
    this.sharedMounted = false;
    live.delete(this);
    if (!process.env.BLACKMATCH_KEEP_TEST_DIRS) await rm(this.workDir, { recursive: true, force: true });
  }

  /** On the way out of a dying test process: lazy unmounts only (they never block). */
  detachNow(): void {
    for (const mnt of this.mountpoints) spawnSync('umount', ['-l', mnt], { stdio: 'ignore', timeout: 5_000 });
    if (this.sharedMounted) spawnSync('umount', ['-l', this.sharedDir], { stdio: 'ignore', timeout: 5_000 });
  }
}

/** The mount table's line for a mountpoint, as [source, type, options]; undefined when nothing is mounted there. */
export async function mountEntry(mountpoint: string): Promise<{ source: string; type: string; options: string[] } | undefined> {
  const r = await runChild('findmnt', ['-n', '-r', '-o', 'SOURCE,FSTYPE,OPTIONS', '--mountpoint', mountpoint], { timeoutMs: 10_000 });
  const [source, type, options] = r.stdout.toString().trim().split(' ');
  return source && type && options ? { source, type, options: options.split(',') } : undefined;
}

/** A systemd unit file's keys, in order per section: `unit.Service.ExecStart` is every ExecStart= line. */
export type UnitFile = Record<string, Record<string, string[]>>;

export function parseUnit(text: string): UnitFile {
  const unit: UnitFile = {};
  let section: Record<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) section = unit[header[1]!] ??= {};
    else if (section) {
      const eq = line.indexOf('=');
      (section[line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
    }
  }
  return unit;
}

/**
 * An Exec line as systemd runs it (systemd.service, "Command lines"): a leading `-` means its failure is ignored;
 * words split on blanks outside quotes; specifiers (%i the instance, %f the unescaped path, %%) filled in; a word
 * that is a whole `$NAME` becomes that variable's blank-separated words, `${NAME}` its value as one word.
 */
export function execLine(value: string, env: Record<string, string>, specifiers: Record<string, string>): { ignoreFailure: boolean; argv: string[] } {
  const ignoreFailure = value.startsWith('-');
  const words: Array<{ text: string; quoted: boolean }> = [];
  const body = ignoreFailure ? value.slice(1) : value;
  const re = /\s*(?:'([^']*)'|"([^"]*)"|(\S+))/g;
  for (let m = re.exec(body); m; m = re.exec(body)) {
    if (m[1] !== undefined || m[2] !== undefined) words.push({ text: m[1] ?? m[2]!, quoted: true });
    else if (m[3] !== undefined) words.push({ text: m[3], quoted: false });
  }
  const fill = (w: string) => w.replace(/%(.)/g, (all, c: string) => (c === '%' ? '%' : (specifiers[c] ?? all)));
  const argv = words.flatMap(({ text, quoted }) => {
    const whole = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(text);
    if (whole && !quoted) return (env[whole[1]!] ?? '').split(/\s+/).filter((w) => w !== '');
    return [fill(text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_all, name: string) => env[name] ?? ''))];
  });
  return { ignoreFailure, argv };
}
