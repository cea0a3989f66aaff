// Mounting blackmatch over a local grid (for the system tests, the demo and the bench): a real mount, started
// through the real command line, with a watchdog that aborts the FUSE connection if the filesystem stops
// answering, and a cleanup that leaves nothing behind.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { mkdirCap } from './local-grid.js';

const run = promisify(execFile);

// From dist/grid/mount.js.
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

export type Mode = 'split' | 'no-split';
export const MODES: Mode[] = ['no-split', 'split'];

export interface MountOptions {
  mode: Mode;
  gatewayUrl: string;
  /** Root directory cap to mount; a fresh one when omitted. */
  rootCap?: string;
  cacheTimeout?: number;
  extraArgs?: string[];
  /** Mount by --root-uri instead of by alias. */
  byRootUri?: boolean;
  /**
   * --settle-time, the ledger's quiet period: 1 s unless given, so that the tests go through the directory checks
   * without each sync waiting the default 45 s; 'default' leaves blackmatch's own.
   */
  settleTime?: number | 'default';
  /** Puts the node directory (cache, staging, logs) on a tmpfs of this many MiB: a small disk (needs root). */
  nodeDirMiB?: number;
  /**
   * A gateway's node directory whose storage announcements (private/introducer_*_cache.yaml) are copied into
   * the mount's, as a user's own node directory holds them: then immutable files are read straight from the
   * storage servers. Without it the mount's node directory has none and every read goes through the gateway.
   */
  announcementsFrom?: string;
  /** Changes the copied announcements' text first (a test of servers that are not what they claim). */
  editAnnouncements?: (text: string) => string;
}

/** Runs the CLI to completion (it returns once the mount is live), bounded. */
export async function runCli(args: string[], timeoutMs = 120_000, cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

/** Mounts not cleaned up yet: if the test process dies first, they are detached on its way out. */
const liveMounts = new Set<string>();
/** Small filesystems under node directories (nodeDirMiB), unmounted the same way. */
const smallDisks = new Set<string>();
process.on('exit', () => {
  // Lazy unmount never blocks; the blackmatch processes then see their mount gone and exit by themselves.
  for (const mountpoint of liveMounts) spawnSync('fusermount', ['-uz', mountpoint], { stdio: 'ignore', timeout: 5_000 });
  if (!process.env.BLACKMATCH_KEEP_TEST_DIRS) for (const dir of smallDisks) spawnSync('umount', ['-l', dir], { stdio: 'ignore', timeout: 5_000 });
});

/** Copies a node directory's storage announcements into another's private/ (see MountOptions.announcementsFrom). */
export async function copyAnnouncements(fromNodeDir: string, toNodeDir: string, edit: (text: string) => string = (t) => t): Promise<void> {
  const names = (await readdir(join(fromNodeDir, 'private'))).filter((n) => /^introducer_.+_cache\.yaml$/.test(n));
  if (names.length === 0) throw new Error(`no introducer cache in ${fromNodeDir}/private`);
  for (const n of names) await writeFile(join(toNodeDir, 'private', n), edit(await readFile(join(fromNodeDir, 'private', n), 'utf8')));
}

export class TestMount {
  private watchdogs = new Set<NodeJS.Timeout>();
  private unmounted = false;
  /** The command line this mount was started with, for remount(). */
  private args: string[] = [];

  private constructor(
    readonly mode: Mode,
    readonly gatewayUrl: string,
    readonly rootCap: string,
    readonly nodeDir: string,
    readonly mountpoint: string,
    readonly workDir: string,
  ) {}

  static async start(opts: MountOptions): Promise<TestMount> {
    const workDir = await mkdtemp(join(tmpdir(), `bm-${opts.mode}-`));
    const nodeDir = join(workDir, 'node');
    const mountpoint = join(workDir, 'mnt');
    await mkdir(nodeDir);
    if (opts.nodeDirMiB !== undefined) {
      await run('mount', ['-t', 'tmpfs', '-o', `size=${opts.nodeDirMiB}m,mode=0700`, 'tmpfs', nodeDir]);
      smallDisks.add(nodeDir);
    }
    await mkdir(join(nodeDir, 'private'), { recursive: true });
    await mkdir(mountpoint);
    const rootCap = opts.rootCap ?? (await mkdirCap(opts.gatewayUrl));
    await writeFile(join(nodeDir, 'node.url'), opts.gatewayUrl + '\n');
    await writeFile(join(nodeDir, 'private', 'aliases'), `tahoe: ${rootCap}\n`);
    if (opts.announcementsFrom) await copyAnnouncements(opts.announcementsFrom, nodeDir, opts.editAnnouncements);
    const m = new TestMount(opts.mode, opts.gatewayUrl, rootCap, nodeDir, mountpoint, workDir);
    liveMounts.add(mountpoint);
    const args = [
      '--node-directory', nodeDir,
      ...(opts.byRootUri ? ['--root-uri', rootCap] : ['--alias', 'tahoe']),
      '--cache-timeout', String(opts.cacheTimeout ?? 1),
      '--log-level', 'debug',
      ...(opts.mode === 'no-split' ? ['--no-split'] : []),
      ...(opts.settleTime === 'default' ? [] : ['--settle-time', String(opts.settleTime ?? 1)]),
      ...(opts.extraArgs ?? []),
      mountpoint,
    ];
    m.args = args;
    const res = await runCli(args);
    if (res.code !== 0) {
      await m.cleanup();
      throw new Error(`mount failed (${res.code}): ${res.stderr.trim()}\n${await m.logTail()}`);
    }
    return m;
  }

  /**
   * Unmounts (fusermount -u), waits until every process of the mount has exited, and mounts again on the same
   * mountpoint with the same node directory (cache, staging, logs kept) and the same arguments.
   */
  async remount(): Promise<void> {
    await run('fusermount', ['-u', this.mountpoint], { timeout: 30_000 });
    await eventually('every process of the mount exits before the remount', async () => (await this.pids()).length === 0, 30_000);
    const res = await runCli(this.args);
    if (res.code !== 0) throw new Error(`remount failed (${res.code}): ${res.stderr.trim()}\n${await this.logTail()}`);
  }

  /** This mount's cache folder: one per root, `_cache/<alias or uri_hash>` in the node directory. */
  async cacheDir(): Promise<string> {
    const names = await readdir(join(this.nodeDir, '_cache'));
    if (names.length !== 1) throw new Error(`expected one cache folder, found ${names.join(', ')}`);
    return join(this.nodeDir, '_cache', names[0]!);
  }

  /** Absolute path inside the mount. */
  path(...parts: string[]): string {
    return join(this.mountpoint, ...parts);
  }

  /** A fresh directory for one test, made through the mount. */
  async freshDir(name: string): Promise<string> {
    const dir = this.path(`${name}-${Math.random().toString(36).slice(2, 8)}`);
    await mkdir(dir);
    return dir;
  }

  /** Reads a file's bytes straight from the web API, by path under the mounted root. */
  async webGet(relPath: string): Promise<Buffer> {
    const res = await fetch(`${this.gatewayUrl}uri/${encodeURIComponent(this.rootCap)}/${encodePath(relPath)}`, { signal: AbortSignal.timeout(120_000) });
    if (!res.ok) throw new Error(`GET ${relPath}: HTTP ${res.status}`);
    return Buffer.from(await res.arrayBuffer());
  }

  /** The same, or null while the web API does not serve it (not stored yet): for waiting until it is. */
  async webGetOrNull(relPath: string): Promise<Buffer | null> {
    return this.webGet(relPath).catch(() => null);
  }

  /** The directory's JSON listing from the web API. */
  async webList(relPath: string): Promise<Record<string, [string, { size?: number; metadata?: Record<string, unknown>; ro_uri?: string; rw_uri?: string }]>> {
    const url = `${this.gatewayUrl}uri/${encodeURIComponent(this.rootCap)}/${encodePath(relPath)}?t=json`;
    const res = await fetch(url, { signal: AbortSignal.timeout(60_000) });
    if (!res.ok) throw new Error(`list ${relPath}: HTTP ${res.status}`);
    const json = (await res.json()) as [string, { children: Record<string, [string, { size?: number }]> }];
    return json[1].children as never;
  }

  /** Uploads bytes and links them at relPath, as another client of the grid would. */
  async webPut(relPath: string, data: Buffer | string): Promise<void> {
    const url = `${this.gatewayUrl}uri/${encodeURIComponent(this.rootCap)}/${encodePath(relPath)}`;
    const res = await fetch(url, { method: 'PUT', body: typeof data === 'string' ? data : new Uint8Array(data), signal: AbortSignal.timeout(120_000) });
    if (!res.ok) throw new Error(`PUT ${relPath}: HTTP ${res.status}`);
  }

  async webMkdir(relPath: string): Promise<void> {
    const url = `${this.gatewayUrl}uri/${encodeURIComponent(this.rootCap)}/${encodePath(relPath)}?t=mkdir`;
    const res = await fetch(url, { method: 'POST', signal: AbortSignal.timeout(60_000) });
    if (!res.ok) throw new Error(`mkdir ${relPath}: HTTP ${res.status}`);
  }

  /**
   * Runs fn; if it is still running after ms, aborts this mount's FUSE connection so that every blocked call
   * fails (ENOTCONN) instead of hanging the run, and fails with a clear message.
   */
  async watch<T>(what: string, fn: () => Promise<T>, ms = 120_000): Promise<T> {
    let fired = false;
    const timer = setTimeout(() => {
      fired = true;
      void abortConnection(this.mountpoint);
    }, ms);
    this.watchdogs.add(timer);
    try {
      const result = await fn();
      if (fired) throw new Error(`${what}: the filesystem stopped answering; watchdog aborted the mount`);
      return result;
    } catch (e) {
      if (fired) throw new Error(`${what}: the filesystem stopped answering; watchdog aborted the mount (${(e as Error).message})`);
      throw e;
    } finally {
      clearTimeout(timer);
      this.watchdogs.delete(timer);
    }
  }

  /** Runs a shell command against the mount (never synchronously: the watchdog must stay able to fire). */
  async sh(command: string, opts: { cwd?: string; timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
    return this.watch(command, () => run('bash', ['-c', command], { cwd: opts.cwd ?? this.mountpoint, timeout: opts.timeoutMs ?? 300_000, maxBuffer: 64 * 1024 * 1024 }), (opts.timeoutMs ?? 300_000) + 5_000);
  }

  /** Every line of this mount's logs (client, server or unsplit), parsed. */
  async logRecords(): Promise<Array<Record<string, unknown>>> {
    const out: Array<Record<string, unknown>> = [];
    for (const name of await readdir(this.nodeDir).catch(() => [] as string[])) {
      if (!name.endsWith('.log')) continue;
      for (const line of (await readFile(join(this.nodeDir, name), 'utf8').catch(() => '')).split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          out.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // a line being written right now
        }
      }
    }
    return out;
  }

  /** Web-API requests this mount made whose description starts with `what` (e.g. "read CHK#1234abcd"). */
  async requests(what: string): Promise<Array<Record<string, unknown>>> {
    return (await this.logRecords()).filter((r) => typeof r.http === 'string' && typeof r.what === 'string' && r.what.startsWith(what));
  }

  async logTail(lines = 40): Promise<string> {
    const out: string[] = [];
    for (const name of await readdir(this.nodeDir).catch(() => [] as string[])) {
      if (!name.endsWith('.log')) continue;
      const text = await readFile(join(this.nodeDir, name), 'utf8').catch(() => '');
      out.push(`--- ${name}\n${text.split('\n').slice(-lines).join('\n')}`);
    }
    return out.join('\n');
  }

  /** PIDs of blackmatch processes serving this mount (found by their command line). */
  async pids(): Promise<number[]> {
    return (await blackmatchProcesses()).filter((p) => p.args.includes(this.mountpoint)).map((p) => p.pid);
  }

  /** The split-mode server of this mount. */
  async serverPid(): Promise<number> {
    const server = (await blackmatchProcesses()).find((p) => p.args.includes(this.mountpoint) && p.args.includes('--server'));
    if (!server) throw new Error('no server process');
    return server.pid;
  }

  /** Unmounts, waits for every process of this mount to exit (killing stragglers), removes the work dir. */
  async cleanup(): Promise<void> {
    for (const t of this.watchdogs) clearTimeout(t);
    liveMounts.delete(this.mountpoint);
    if (!this.unmounted) {
      this.unmounted = true;
      if (await isMountpoint(this.mountpoint)) {
        await run('fusermount', ['-u', this.mountpoint], { timeout: 30_000 }).catch(async () => {
          await abortConnection(this.mountpoint);
          await run('fusermount', ['-uz', this.mountpoint], { timeout: 30_000 }).catch(() => undefined);
        });
      }
    }
    const deadline = Date.now() + 20_000;
    let pids = await this.pids();
    while (pids.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      pids = await this.pids();
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (process.env.BLACKMATCH_KEEP_TEST_DIRS) return; // a small disk stays mounted too, logs on it
    if (smallDisks.delete(this.nodeDir)) await run('umount', ['-l', this.nodeDir], { timeout: 30_000 }).catch(() => undefined);
    await rm(this.workDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Percent-encodes each path segment (spaces, unicode, ?, #, %, +). */
export function encodePath(relPath: string): string {
  return relPath.split('/').filter((p) => p !== '').map(encodeURIComponent).join('/');
}

export async function isMountpoint(path: string): Promise<boolean> {
  const table = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  return table.split('\n').some((line) => line.split(' ')[4] === path);
}

/**
 * Aborts a FUSE connection through fusectl (REFERENCE.md, "Hung FUSE mounts in tests"): the connection number
 * is the minor number of the mount's device.
 */
export async function abortConnection(mountpoint: string): Promise<void> {
  try {
    await run('mountpoint', ['-q', '/sys/fs/fuse/connections']).catch(() => run('mount', ['-t', 'fusectl', 'fusectl', '/sys/fs/fuse/connections']));
    const line = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === mountpoint);
    const minor = line?.split(' ')[2]?.split(':')[1];
    if (minor) await writeFile(`/sys/fs/fuse/connections/${minor}/abort`, '1');
  } catch {
    // best effort: the caller still unmounts lazily
  }
}

/** Waits until check() is true, polling; a bounded wait for something another client did, not a timing assertion. */
export async function eventually(what: string, check: () => Promise<boolean>, boundMs = 60_000): Promise<void> {
  const deadline = Date.now() + boundMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not seen within ${boundMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Every blackmatch process, with its arguments. blackmatch sets its process title to "blackmatch ARGS" (one
 * string, caps redacted), so the arguments are split back on spaces: enough to find a mountpoint or a flag.
 */
export async function blackmatchProcesses(): Promise<Array<{ pid: number; args: string[] }>> {
  const found: Array<{ pid: number; args: string[] }> = [];
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).replace(/\0+$/, '');
    const args = cmdline.split(/[\0 ]/);
    if (args[0] === 'blackmatch' || args.some((a) => a.endsWith('/main.js'))) found.push({ pid: Number(entry), args });
  }
  return found;
}
