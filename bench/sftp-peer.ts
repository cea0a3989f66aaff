// The bench's peer: the way Tahoe users mount a grid today, Tahoe's own SFTP frontend mounted with sshfs
// (REFERENCE.md, "Tahoe's own SFTP frontend mounted with sshfs"). It runs on a second client node of the same
// grid so the grid's gateway is never restarted. sshfs runs where tahoe runs: inside the Debian trixie chroot
// when there is one, because Debian's sshfs on the host would pull fuse3 and remove the fuse package
// (fusermount v2) that blackmatch needs. A chroot is not a mount namespace, so its mounts show on the host.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, rmdir, stat, writeFile, appendFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { freePorts, onLastChance, tahoeRoot, type Grid } from '../grid/local-grid.js';
import { abortConnection } from '../grid/mount.js';

export interface SftpMount {
  /** Host path where the files are visible. */
  mountpoint: string;
  /** Unmounts sshfs, stops the SFTP node and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

const USER = 'bench';
const SHARES = ['--shares-needed=2', '--shares-happy=3', '--shares-total=3'];
const START_TIMEOUT_MS = 120_000;
const MOUNT_TIMEOUT_MS = 60_000;

/** Where sshfs, ssh-keygen and tahoe run: the host (root null) or `chroot root`. */
interface Env {
  root: string | null;
  /** fusermount3 inside the chroot; on the host whichever of fusermount3/fusermount exists. */
  fusermount: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function command(env: Env, cmd: string, args: string[]): [string, string[]] {
  return env.root ? ['chroot', [env.root, cmd, ...args]] : [cmd, args];
}

/** A host path as the programs in env see it. */
function inner(env: Env, hostPath: string): string {
  return env.root ? '/' + relative(env.root, hostPath) : hostPath;
}

/** Runs a command to completion, bounded; rejects with its output on failure. */
function run(cmd: string, args: string[], timeoutMs: number, extraEnv: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, env: { ...process.env, ...extraEnv } },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`sftp-peer: ${cmd} ${args.join(' ')} failed: ${error.message}\n${(stdout + stderr).slice(-3000)}`));
        else resolve(stdout);
      },
    );
  });
}

function runIn(env: Env, cmd: string, args: string[], timeoutMs: number, extraEnv: Record<string, string> = {}): Promise<string> {
  const [c, a] = command(env, cmd, args);
  return run(c, a, timeoutMs, extraEnv);
}

async function has(env: Env, cmd: string): Promise<boolean> {
  return runIn(env, 'sh', ['-c', `command -v ${cmd}`], 30_000).then(
    () => true,
    () => false,
  );
}

/** The mountinfo line for a host path; reading /proc never touches the mount itself. */
function mountLine(table: string, hostPath: string): string | undefined {
  return table.split('\n').find((l) => l.split(' ')[4] === hostPath);
}

async function isMounted(hostPath: string): Promise<boolean> {
  return mountLine(await readFile('/proc/self/mountinfo', 'utf8').catch(() => ''), hostPath) !== undefined;
}

function isMountedSync(hostPath: string): boolean {
  try {
    return mountLine(readFileSync('/proc/self/mountinfo', 'utf8'), hostPath) !== undefined;
  } catch {
    return false;
  }
}

let envPromise: Promise<Env> | null = null;

/** Finds where tahoe runs and makes sure sshfs is usable there (installing it into the chroot once). */
function prepareEnv(log: (m: string) => void): Promise<Env> {
  envPromise ??= (async (): Promise<Env> => {
    const root = await tahoeRoot(log);
    if (!root) {
      const env: Env = { root: null, fusermount: 'fusermount3' };
      if (!(await has(env, 'sshfs'))) {
        throw new Error(
          'sftp-peer: sshfs is not on PATH. Installing Debian\'s sshfs on this host would replace the fuse package ' +
            'blackmatch needs with fuse3; run tahoe from the trixie chroot instead (BLACKMATCH_FORCE_CHROOT=1), ' +
            'where sshfs is installed automatically.',
        );
      }
      if (!(await has(env, 'ssh-keygen'))) throw new Error('sftp-peer: ssh-keygen is not on PATH');
      if (!(await has(env, 'fusermount3'))) env.fusermount = 'fusermount';
      return env;
    }
    const env: Env = { root, fusermount: 'fusermount3' };
    if (!(await has(env, 'sshfs')) || !(await has(env, 'fusermount3'))) {
      log(`sftp-peer: installing sshfs into ${root} (one time)`);
      const t0 = Date.now();
      const install = ['-o', 'DPkg::Lock::Timeout=300', 'install', '-y', '--no-install-recommends', 'sshfs'];
      const aptEnv = { DEBIAN_FRONTEND: 'noninteractive' };
      try {
        await runIn(env, 'apt-get', install, 600_000, aptEnv);
      } catch {
        // The chroot's package lists may be older than the mirror (404 on a replaced .deb): refresh and retry.
        await runIn(env, 'apt-get', ['-o', 'DPkg::Lock::Timeout=300', 'update'], 600_000, aptEnv);
        await runIn(env, 'apt-get', install, 600_000, aptEnv);
      }
      await runIn(env, 'apt-get', ['clean'], 60_000).catch(() => undefined);
      log(`sftp-peer: sshfs installed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
    if (!(await has(env, 'ssh-keygen'))) throw new Error(`sftp-peer: ssh-keygen missing in ${root} (openssh-client)`);
    // debootstrap's /dev has no fuse node; sshfs (libfuse3, as root) opens it directly.
    if (!existsSync(join(root, 'dev', 'fuse'))) await run('mknod', ['-m', '666', join(root, 'dev', 'fuse'), 'c', '10', '229'], 10_000);
    // fusermount3 and libfuse read /proc/self/mounts; tahoe-root.sh mounts it, but it does not survive a reboot.
    if (!(await isMounted(join(root, 'proc')))) await run('mount', ['-t', 'proc', 'proc', join(root, 'proc')], 10_000);
    return env;
  })().catch((e: unknown) => {
    envPromise = null; // let a later call retry
    throw e;
  });
  return envPromise;
}

/** Connected storage servers in a node's GET /?t=json; null while its web port does not answer. */
async function connectedServers(webUrl: string): Promise<number | null> {
  try {
    const res = await fetch(`${webUrl}?t=json`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) return null;
    const body: unknown = await res.json();
    if (typeof body !== 'object' || body === null || !('servers' in body) || !Array.isArray(body.servers)) return null;
    return (body.servers as unknown[]).filter((s) => {
      const status = typeof s === 'object' && s !== null ? (s as Record<string, unknown>).connection_status : undefined;
      return typeof status === 'string' && status.toLowerCase().startsWith('connected');
    }).length;
  } catch {
    return null;
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(2000, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

async function tail(path: string, lines = 20): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '(no log)');
  return text.split('\n').slice(-lines - 1).join('\n');
}

/** A spawned process and a promise for its end (exit or failure to spawn). */
interface Proc {
  child: ChildProcess;
  exited: Promise<void>;
  done: boolean;
}

function spawnLogged(env: Env, cmd: string, args: string[], logPath: string): Proc {
  const fd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    // Through chroot the pid is the program's own: chroot execs it.
    const [c, a] = command(env, cmd, args);
    child = spawn(c, a, { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  const proc: Proc = { child, exited: Promise.resolve(), done: false };
  proc.exited = new Promise<void>((resolve) => {
    const end = () => {
      proc.done = true;
      resolve();
    };
    child.once('exit', end);
    child.once('error', end);
  });
  return proc;
}

/** Waits up to ms for p to exit; true if it did. */
async function waitExit(p: Proc, ms: number): Promise<boolean> {
  if (p.done) return true;
  let timer: NodeJS.Timeout | undefined;
  const ok = await Promise.race([p.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
  clearTimeout(timer); // a pending timer would keep the process alive
  return ok;
}

async function terminate(p: Proc | null, graceMs: number): Promise<void> {
  if (!p || p.done) return;
  p.child.kill('SIGTERM');
  if (await waitExit(p, graceMs)) return;
  p.child.kill('SIGKILL');
  await p.exited;
}

/** Resolves to fn's value, or to 'timeout' after ms (fn keeps running: the caller must unstick it). */
async function bounded<T>(ms: number, fn: () => Promise<T>): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([fn(), new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

class SftpPeer implements SftpMount {
  private node: Proc | null = null;
  private sshfs: Proc | null = null;
  private stopping: Promise<void> | null = null;
  private readonly unregister: () => void;
  private readonly nodeLog: string;
  private readonly sshfsLog: string;

  constructor(
    private readonly env: Env,
    private readonly grid: Grid,
    private readonly rootCap: string,
    private readonly nodeDir: string,
    readonly mountpoint: string,
    private readonly ports: { sftp: number; web: number },
    private readonly log: (m: string) => void,
  ) {
    this.nodeLog = `${nodeDir}.log`;
    this.sshfsLog = `${nodeDir}.sshfs.log`;
    // If the bench dies without stop(), grid.ts's exit/signal path runs this before killing the grid.
    this.unregister = onLastChance(() => this.killSync());
  }

  private get webUrl(): string {
    return `http://127.0.0.1:${this.ports.web}/`;
  }

  async start(): Promise<void> {
    const { env, nodeDir } = this;
    const deadline = Date.now() + START_TIMEOUT_MS;
    const innerDir = inner(env, nodeDir);
    await runIn(
      env,
      'tahoe',
      ['create-client', '--nickname=sftp-peer', `--introducer=${this.grid.introducerFurl}`, `--webport=tcp:${this.ports.web}:interface=127.0.0.1`, ...SHARES, innerDir],
      60_000,
    );
    const hostKey = join(innerDir, 'ssh_host_rsa_key');
    const clientKey = join(innerDir, 'client_key');
    await Promise.all([
      runIn(env, 'ssh-keygen', ['-q', '-t', 'rsa', '-b', '3072', '-m', 'PEM', '-N', '', '-C', 'sftp-peer-host', '-f', hostKey], 60_000),
      runIn(env, 'ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'sftp-peer-client', '-f', clientKey], 60_000),
    ]);
    // .pub files are "TYPE BASE64 COMMENT"; tahoe and known_hosts want "TYPE BASE64".
    const pub = async (name: string) => (await readFile(join(nodeDir, `${name}.pub`), 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
    const accounts = join(nodeDir, 'private', 'accounts');
    await writeFile(accounts, `${USER} ${await pub('client_key')} ${this.rootCap}\n`, { mode: 0o600 });
    await chmod(accounts, 0o600);
    await writeFile(join(nodeDir, 'known_hosts'), `[127.0.0.1]:${this.ports.sftp} ${await pub('ssh_host_rsa_key')}\n`);
    // Key paths absolute as the node sees them: it opens them relative to its working directory.
    await appendFile(
      join(nodeDir, 'tahoe.cfg'),
      [
        '',
        '[sftpd]',
        'enabled = true',
        `port = tcp:${this.ports.sftp}:interface=127.0.0.1`,
        `host_pubkey_file = ${hostKey}.pub`,
        `host_privkey_file = ${hostKey}`,
        'accounts.file = private/accounts',
        '',
      ].join('\n'),
    );

    this.node = spawnLogged(env, 'tahoe', ['run', '--allow-stdin-close', innerDir], this.nodeLog);
    this.log(`sftp-peer: started SFTP node (pid ${this.node.child.pid}), sftp port ${this.ports.sftp}, web ${this.webUrl}`);
    await this.waitReady(deadline);

    await mkdir(this.mountpoint, { recursive: true });
    const innerMnt = inner(env, this.mountpoint);
    // -f keeps sshfs in the foreground so it is our child: we own its pid and see its exit.
    this.sshfs = spawnLogged(
      env,
      'sshfs',
      [
        '-f',
        '-p', String(this.ports.sftp),
        '-F', '/dev/null',
        '-o', `IdentityFile=${clientKey},IdentitiesOnly=yes,BatchMode=yes`,
        '-o', `UserKnownHostsFile=${join(innerDir, 'known_hosts')},StrictHostKeyChecking=yes`,
        `${USER}@127.0.0.1:`,
        innerMnt,
      ],
      this.sshfsLog,
    );
    const mountDeadline = Date.now() + MOUNT_TIMEOUT_MS;
    while (!(await isMounted(this.mountpoint))) {
      if (this.sshfs.done) throw new Error(`sftp-peer: sshfs exited before mounting\n${await tail(this.sshfsLog)}\n--- node ---\n${await tail(this.nodeLog)}`);
      if (Date.now() > mountDeadline) throw new Error(`sftp-peer: sshfs did not mount within ${MOUNT_TIMEOUT_MS / 1000} s\n${await tail(this.sshfsLog)}`);
      await sleep(100);
    }
    // sshfs mounts only after its SFTP session is up; one stat proves the mount answers (bounded: a hung
    // FUSE request would block forever, and stop() then aborts the connection).
    const st = await bounded(30_000, () => stat(this.mountpoint));
    if (st === 'timeout') throw new Error(`sftp-peer: the sshfs mount does not answer\n${await tail(this.sshfsLog)}`);
    if (!st.isDirectory()) throw new Error('sftp-peer: the sshfs mount root is not a directory');
  }

  /** Until the node sees as many storage servers as the grid's gateway and its SFTP port accepts connections. */
  private async waitReady(deadline: number): Promise<void> {
    let last = 'web port not answering';
    for (;;) {
      if (!this.node || this.node.done) throw new Error(`sftp-peer: SFTP node exited while starting\n${await tail(this.nodeLog)}`);
      const [mine, theirs] = await Promise.all([connectedServers(this.webUrl), connectedServers(this.grid.gatewayUrl)]);
      if (mine !== null) {
        const want = Math.max(theirs ?? 3, 1);
        last = `${mine}/${want} storage servers connected`;
        if (mine >= want) {
          if (await portOpen(this.ports.sftp)) {
            this.log(`sftp-peer: node connected to ${mine} storage server(s), SFTP port open`);
            return;
          }
          last += ', SFTP port closed';
        }
      }
      if (Date.now() > deadline) throw new Error(`sftp-peer: timed out starting the SFTP node (${last})\n${await tail(this.nodeLog)}`);
      await sleep(300);
    }
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const innerMnt = inner(this.env, this.mountpoint);
    let aborted = false;
    if (await isMounted(this.mountpoint)) {
      try {
        await runIn(this.env, this.env.fusermount, ['-u', innerMnt], 30_000);
      } catch (e) {
        // Busy or hung: abort the FUSE connection so blocked callers fail, then detach the mount.
        this.log(`sftp-peer: unmount failed, aborting the connection: ${(e as Error).message.split('\n')[0]}`);
        aborted = true;
        await abortConnection(this.mountpoint);
        await runIn(this.env, this.env.fusermount, ['-uz', innerMnt], 30_000).catch(() => undefined);
      }
    }
    // sshfs exits by itself once unmounted (after an abort it may stay stuck on its ssh channel); SIGTERM
    // makes it unmount and exit.
    if (this.sshfs && !(await waitExit(this.sshfs, aborted ? 2000 : 10_000))) {
      this.log('sftp-peer: sshfs still running after unmount');
      await terminate(this.sshfs, 5000);
    }
    await terminate(this.node, 5000);
    this.unregister();
    if (await isMounted(this.mountpoint)) {
      this.log(`sftp-peer: ${this.mountpoint} is still mounted; leaving it`);
    } else {
      // rmdir, never a recursive rm: if it were still mounted that would delete files on the grid.
      await rmdir(this.mountpoint).catch(() => undefined);
    }
    if (process.env.BLACKMATCH_KEEP_GRID !== '1') {
      await Promise.all([this.nodeDir, this.nodeLog, this.sshfsLog].map((p) => rm(p, { recursive: true, force: true })));
    }
    this.log('sftp-peer: stopped');
  }

  /** Last resort from the exit/signal path: synchronous only, and nothing that could block on the mount. */
  private killSync(): void {
    for (const p of [this.sshfs, this.node]) {
      if (p && !p.done && p.child.pid) {
        try {
          process.kill(p.child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    // With sshfs dead the connection is gone, so a lazy unmount returns at once.
    if (isMountedSync(this.mountpoint)) spawnSync('umount', ['-l', this.mountpoint], { timeout: 5000, stdio: 'ignore' });
    try {
      if (!isMountedSync(this.mountpoint)) rmdirSync(this.mountpoint);
      if (process.env.BLACKMATCH_KEEP_GRID !== '1') {
        for (const p of [this.nodeDir, this.nodeLog, this.sshfsLog]) rmSync(p, { recursive: true, force: true });
      }
    } catch {
      // best effort
    }
  }
}

/**
 * Mounts rootCap the way Tahoe users do today: a second client node of grid with the SFTP frontend on, and sshfs
 * on it. Returns once the mount answers.
 */
export async function mountSftpPeer(grid: Grid, rootCap: string, log: (m: string) => void = () => {}): Promise<SftpMount> {
  const t0 = Date.now();
  const env = await prepareEnv(log);
  const id = randomBytes(6).toString('hex');
  // The grid's base dir is already where tahoe can see it (inside the chroot when there is one).
  const nodeDir = join(grid.baseDir, `sftp-${id}`);
  const mountpoint = env.root ? join(env.root, 'mnt', `bm-sftp-${id}`) : await mkdtemp(join(tmpdir(), 'bm-sftp-'));
  const [sftp, web] = await freePorts(2);
  if (sftp === undefined || web === undefined) throw new Error('sftp-peer: no free ports');
  const peer = new SftpPeer(env, grid, rootCap, nodeDir, mountpoint, { sftp, web }, log);
  try {
    await peer.start();
  } catch (e) {
    await peer.stop().catch(() => undefined);
    throw e;
  }
  log(`sftp-peer: ${mountpoint} mounted in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return peer;
}
