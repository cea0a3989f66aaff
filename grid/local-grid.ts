// Starts and stops a real local Tahoe-LAFS grid (introducer, 3 storage nodes, 1 gateway) for the system
// tests, the demo and the bench; optionally a far one, its storage nodes reached only through delay proxies.
// Tahoe comes from scripts/tahoe-root.sh: either on PATH or inside a Debian chroot.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDelayProxy, type DelayProxy } from './delay-proxy.js';

export interface NodeDir {
  /** Host path of the blackmatch node directory. */
  nodeDir: string;
  /** The URI:DIR2: cap stored under the alias. */
  rootCap: string;
}

export interface Grid {
  /** Gateway web API, with trailing slash, e.g. http://127.0.0.1:PORT/ */
  readonly gatewayUrl: string;
  /**
   * Every gateway's web API, the first being gatewayUrl: with `gateways: 2`, a second client node of the same
   * introducer, as a second machine sharing the grid has. Only the first is stopped, frozen or killed by the
   * calls below.
   */
  readonly gatewayUrls: readonly string[];
  /** Host path of the directory holding all node directories and logs. */
  readonly baseDir: string;
  /** Host path of the gateway's node directory. */
  readonly gatewayDir: string;
  readonly introducerFurl: string;
  /** Delay each way between any client node (the gateway too) and each storage node; 0 on a loopback grid. */
  readonly storageDelayMs: number;
  /** Makes a blackmatch node directory (node.url + private/aliases) with a fresh directory cap. */
  createNodeDir(hostDir: string, alias?: string): Promise<NodeDir>;
  /** Last lines of every node's log, for failure messages. */
  logTail(lines?: number): Promise<string>;
  /** Kills every node; removes baseDir unless keep (or BLACKMATCH_KEEP_GRID=1). Safe to call twice. */
  stop(opts?: { keep?: boolean }): Promise<void>;
  stopStorageNode(i: number): Promise<void>;
  /** Restarts storage node i (same dir and port); waits until the gateway (if running) sees it connected. */
  startStorageNode(i: number): Promise<void>;
  stopGateway(): Promise<void>;
  /** Freezes the gateway (SIGSTOP): its connections stay open but nothing moves on them. */
  freezeGateway(): void;
  /** Kills the gateway at once (SIGKILL; works on a frozen one too): its connections break mid-transfer. */
  killGateway(): Promise<void>;
  /** Restarts the gateway (same dir and port); waits until it sees every running storage node. */
  startGateway(): Promise<void>;
  /**
   * Sets [client] keys of the gateway's tahoe.cfg (shares.needed, shares.total, shares.happy,
   * shares._max_immutable_segment_size_for_testing) and restarts it: later uploads use them.
   */
  configureGateway(client: Record<string, string | number>): Promise<void>;
  /** Host path of storage node i's share file of a storage index (12-byte container header, then the share). */
  shareFile(i: number, storageIndex: string, shareNum: number): string;
  /** The share numbers storage node i holds of a storage index. */
  sharesOn(i: number, storageIndex: string): Promise<number[]>;
}

export interface StartGridOptions {
  log?: (msg: string) => void;
  /** Bound for starting the grid (not counting a first-time chroot build). Default 120 s. */
  timeoutMs?: number;
  /**
   * A far grid: each storage node announces (--location) the port of a delay proxy that holds every chunk this
   * many ms each way before passing it to the node's real port, so every client node, the gateway included,
   * reaches storage only across the delay (15 = a 30 ms round trip). Introducer and gateway stay local.
   */
  storageDelayMs?: number;
  /** Client nodes with a web API of their own (default 1): several machines' gateways to one grid. */
  gateways?: number;
}

const STORAGE_NODES = 3;
const SHARES = ['--shares-needed=2', '--shares-happy=3', '--shares-total=3'];

/** How to invoke tahoe: directly, or through chroot (then tahoe sees paths relative to root). */
interface Runner {
  root: string | null;
}

let runnerPromise: Promise<Runner> | null = null;

function findRepoRoot(): string {
  // Works from both grid/ (ts) and dist/grid/ (js).
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'scripts', 'tahoe-root.sh'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('grid: cannot find scripts/tahoe-root.sh above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

function getRunner(log: (msg: string) => void): Promise<Runner> {
  runnerPromise ??= new Promise<Runner>((resolve, reject) => {
    // spawn, not execFile: a first-time chroot build takes minutes and its progress goes to stderr.
    const child = spawn('bash', [join(findRepoRoot(), 'scripts', 'tahoe-root.sh')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.length > 20000) err = err.slice(-20000);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`grid: tahoe-root.sh failed (rc=${code}):\n${err.slice(-3000)}`));
      if (line === 'path') return resolve({ root: null });
      const m = /^chroot (\/.+)$/.exec(line);
      if (m?.[1]) {
        log(`grid: using tahoe in chroot ${m[1]}`);
        return resolve({ root: m[1] });
      }
      reject(new Error(`grid: unexpected output from tahoe-root.sh: ${JSON.stringify(out)}`));
    });
  }).catch((e: unknown) => {
    runnerPromise = null; // let a later call retry
    throw e;
  });
  return runnerPromise;
}

function tahoeCommand(runner: Runner, args: string[]): [string, string[]] {
  return runner.root ? ['chroot', [runner.root, 'tahoe', ...args]] : ['tahoe', args];
}

function runTahoe(runner: Runner, args: string[]): Promise<string> {
  const [cmd, argv] = tahoeCommand(runner, args);
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`grid: tahoe ${args.join(' ')} failed: ${error.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

/**
 * Distinct free ports: hold all listeners open together so none is handed out twice. They are taken below the
 * kernel's ephemeral range: a node binds its port seconds after this returns (create-node runs first), and
 * meanwhile the grid's own nodes connect out from ephemeral ports, one of which could be a port handed out here
 * (a storage node that then cannot listen never connects: a grid start that times out).
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  const [low] = ephemeralRange();
  const from = Math.max(1024, low - 16_384);
  try {
    const ports: number[] = [];
    for (let tries = 0; ports.length < n; tries++) {
      // Past 200 tries (a crowded range) the kernel's choice will do.
      const want = tries < 200 && low - from >= 1024 ? from + Math.floor(Math.random() * (low - from)) : 0;
      const s = createServer();
      const ok = await new Promise<boolean>((resolve) => {
        s.once('error', () => resolve(false));
        s.listen(want, '127.0.0.1', () => resolve(true));
      });
      if (!ok) continue;
      servers.push(s);
      ports.push((s.address() as AddressInfo).port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

/** The kernel's ephemeral port range (net.ipv4.ip_local_port_range), or Linux's default. */
function ephemeralRange(): [number, number] {
  try {
    const [a, b] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(a) && Number.isInteger(b) && a! > 0 && b! >= a!) return [a!, b!];
  } catch {
    // not Linux, or no /proc: the default
  }
  return [32768, 60999];
}

/** The first gateway keeps the plain name its callers and logs know. */
const gatewayName = (i: number) => (i === 0 ? 'gateway' : `gateway${i}`);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function tailFile(path: string, lines: number): Promise<string> {
  try {
    const text = await readFile(path, 'utf8');
    return text.split('\n').slice(-lines - 1).join('\n');
  } catch {
    return '(no log)';
  }
}

interface ServerStatus {
  nickname: string;
  status: string;
}

/** Reads the gateway's storage server list; null while the web port is not answering. */
async function serverStatuses(gatewayUrl: string): Promise<ServerStatus[] | null> {
  let body: unknown;
  try {
    const res = await fetch(`${gatewayUrl}?t=json`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) return null;
    body = await res.json();
  } catch {
    return null;
  }
  // Shape (tahoe 1.20): {"introducers": {"statuses": [...]}, "servers": [{"nickname", "connection_status", ...}]}
  if (typeof body !== 'object' || body === null || !('servers' in body) || !Array.isArray(body.servers)) return null;
  const out: ServerStatus[] = [];
  for (const s of body.servers as unknown[]) {
    if (typeof s !== 'object' || s === null) continue;
    const rec = s as Record<string, unknown>;
    out.push({
      nickname: typeof rec.nickname === 'string' ? rec.nickname : '',
      status: typeof rec.connection_status === 'string' ? rec.connection_status : '',
    });
  }
  return out;
}

/** POST /uri?t=mkdir on the gateway; returns the new directory's write cap. */
export async function mkdirCap(gatewayUrl: string): Promise<string> {
  const base = gatewayUrl.endsWith('/') ? gatewayUrl : gatewayUrl + '/';
  const res = await fetch(`${base}uri?t=mkdir`, { method: 'POST', signal: AbortSignal.timeout(60_000) });
  const text = (await res.text()).trim();
  if (!res.ok || !text.startsWith('URI:DIR2:')) {
    throw new Error(`grid: mkdir on ${base} failed: HTTP ${res.status} ${text.slice(0, 500)}`);
  }
  return text;
}

/** A blackmatch node directory outside any chroot: node.url plus private/aliases with a fresh dir cap. */
export async function createNodeDir(gatewayUrl: string, hostDir: string, alias = 'tahoe'): Promise<NodeDir> {
  if (!/^[^\s:]+$/.test(alias)) throw new Error(`grid: bad alias ${JSON.stringify(alias)}`);
  const url = gatewayUrl.endsWith('/') ? gatewayUrl : gatewayUrl + '/';
  const rootCap = await mkdirCap(url);
  await mkdir(join(hostDir, 'private'), { recursive: true });
  await writeFile(join(hostDir, 'node.url'), url + '\n');
  await writeFile(join(hostDir, 'private', 'aliases'), `${alias}: ${rootCap}\n`);
  return { nodeDir: hostDir, rootCap };
}

interface NodeProc {
  name: string;
  hostDir: string;
  innerDir: string; // as tahoe sees it
  logPath: string;
  child: ChildProcess | null;
  exited: Promise<void>;
  /** Set by start, cleared by stop: an exit while set is a failure. */
  expectRunning: boolean;
}

// Grids not yet stopped, for the synchronous last-chance kill on exit/signals.
const liveGrids = new Set<GridImpl>();
let handlersInstalled = false;

// Extra synchronous cleanups (e.g. bench/sftp-peer.ts's node and mount), run before the grids are killed.
const lastChanceHooks = new Set<() => void>();

/**
 * Registers fn to run, synchronously, from the same exit/fatal-signal path that kills the grids; returns a
 * function that unregisters it. fn must be idempotent and must not touch a FUSE mountpoint synchronously.
 */
export function onLastChance(fn: () => void): () => void {
  lastChanceHooks.add(fn);
  installHandlers();
  return () => {
    lastChanceHooks.delete(fn);
  };
}

function onExit(): void {
  for (const fn of lastChanceHooks) {
    try {
      fn();
    } catch {
      // best effort: the grids must still be killed
    }
  }
  for (const g of liveGrids) g.killSync();
}

function onSignal(sig: NodeJS.Signals): void {
  // If the program handles the signal itself (e.g. the demo unmounting first), leave the grid to it;
  // the 'exit' handler is still the backstop.
  if (process.listenerCount(sig) > 1) return;
  onExit();
  process.removeListener(sig, onSignal);
  process.kill(process.pid, sig); // die by the signal, as without our handler
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', onExit);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
}

function keepByEnv(): boolean {
  return process.env.BLACKMATCH_KEEP_GRID === '1';
}

class GridImpl implements Grid {
  readonly gatewayUrl: string;
  readonly gatewayUrls: readonly string[];
  readonly gatewayDir: string;
  introducerFurl = '';
  private readonly nodes: NodeProc[] = [];
  /** One per storage node when far; they outlive node restarts and are closed by stop() (only). */
  private readonly proxies: DelayProxy[] = [];
  private stopped = false;

  constructor(
    private readonly runner: Runner,
    readonly baseDir: string,
    private readonly innerBase: string,
    /** proxies: the ports storage nodes announce, when far (else each node announces its own port). */
    private readonly ports: { introducer: number; storage: number[]; web: number[]; proxies?: number[] },
    readonly storageDelayMs: number,
    private readonly log: (msg: string) => void,
  ) {
    this.gatewayUrls = ports.web.map((port) => `http://127.0.0.1:${port}/`);
    this.gatewayUrl = this.gatewayUrls[0]!;
    for (const name of ['introducer', ...ports.storage.map((_, i) => `storage${i}`), ...ports.web.map((_, i) => gatewayName(i))]) {
      this.nodes.push({
        name,
        hostDir: join(baseDir, name),
        innerDir: join(innerBase, name),
        logPath: join(baseDir, `${name}.log`),
        child: null,
        exited: Promise.resolve(),
        expectRunning: false,
      });
    }
    this.gatewayDir = this.node('gateway').hostDir;
  }

  private node(name: string): NodeProc {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`grid: no node ${name}`);
    return n;
  }

  private storage(i: number): NodeProc {
    if (!Number.isInteger(i) || i < 0 || i >= STORAGE_NODES) throw new Error(`grid: no storage node ${i}`);
    return this.node(`storage${i}`);
  }

  async create(deadline: number): Promise<void> {
    const intro = this.node('introducer');
    const p = this.ports.introducer;
    await runTahoe(this.runner, [
      'create-introducer',
      `--port=tcp:${p}:interface=127.0.0.1`,
      `--location=tcp:127.0.0.1:${p}`,
      intro.innerDir,
    ]);
    this.startNode(intro);
    // The furl file is written by the running introducer, not by create-introducer.
    const furlPath = join(intro.hostDir, 'private', 'introducer.furl');
    for (;;) {
      const furl = await readFile(furlPath, 'utf8').catch(() => '');
      if (furl.trim().startsWith('pb://')) {
        this.introducerFurl = furl.trim();
        break;
      }
      await this.checkAlive(deadline, 'the introducer to write private/introducer.furl');
      await sleep(200);
    }
    this.log(`grid: introducer up at ${this.introducerFurl}`);

    const furl = `--introducer=${this.introducerFurl}`;
    const announced = this.ports.proxies ?? this.ports.storage;
    for (const [i, proxyPort] of (this.ports.proxies ?? []).entries()) {
      this.proxies.push(await startDelayProxy({ port: proxyPort, targetPort: this.ports.storage[i]!, delayMs: this.storageDelayMs }));
    }
    await Promise.all([
      ...this.ports.storage.map((sp, i) =>
        runTahoe(this.runner, [
          'create-node',
          `--nickname=storage${i}`,
          `--port=tcp:${sp}:interface=127.0.0.1`,
          `--location=tcp:127.0.0.1:${announced[i]}`,
          furl,
          '--webport=none',
          ...SHARES,
          this.storage(i).innerDir,
        ]),
      ),
      // create-client makes a node with storage disabled and no listening tub.
      ...this.ports.web.map((port, i) =>
        runTahoe(this.runner, [
          'create-client',
          `--nickname=${gatewayName(i)}`,
          furl,
          `--webport=tcp:${port}:interface=127.0.0.1`,
          ...SHARES,
          this.node(gatewayName(i)).innerDir,
        ]),
      ),
    ]);
    for (let i = 0; i < STORAGE_NODES; i++) this.startNode(this.storage(i));
    for (let i = 0; i < this.ports.web.length; i++) this.startNode(this.node(gatewayName(i)));
    await this.waitConnected(deadline);
    for (let i = 1; i < this.ports.web.length; i++) await this.waitConnected(deadline, i);
  }

  private spawnNode(n: NodeProc): void {
    if (this.stopped) throw new Error('grid: already stopped');
    if (n.child) throw new Error(`grid: ${n.name} is already running`);
    // Our previous process for this dir is gone; drop its pidfile so tahoe cannot mistake a reused pid.
    rmSync(join(n.hostDir, 'running.process'), { force: true });
    const fd = openSync(n.logPath, 'a');
    let child: ChildProcess;
    try {
      // Through chroot, the pid is tahoe's own: chroot execs it.
      const [cmd, argv] = tahoeCommand(this.runner, ['run', '--allow-stdin-close', n.innerDir]);
      child = spawn(cmd, argv, { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    n.child = child;
    n.exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        if (n.child === child) n.child = null;
        resolve();
      });
      child.once('error', (e) => {
        this.log(`grid: ${n.name} failed to spawn: ${e.message}`);
        if (n.child === child) n.child = null;
        resolve();
      });
    });
    this.log(`grid: started ${n.name} (pid ${child.pid})`);
  }

  /** Throws if the deadline passed or a node we expect to run has died. */
  private async checkAlive(deadline: number, what: string, detail = ''): Promise<void> {
    for (const n of this.nodes) {
      if (n.expectRunning && !n.child) {
        throw new Error(`grid: ${n.name} exited while waiting for ${what}${detail}\n${await this.logTail()}`);
      }
    }
    if (Date.now() > deadline) {
      throw new Error(`grid: timed out waiting for ${what}${detail}\n${await this.logTail()}`);
    }
  }

  /** Waits until gateway i reports every running storage node as connected. */
  private async waitConnected(deadline: number, i = 0): Promise<void> {
    const gw = this.node(gatewayName(i));
    if (!gw.child) return;
    let last = 'gateway web port not answering';
    for (;;) {
      if (this.stopped) throw new Error('grid: stopped while waiting for storage servers to connect');
      const want = this.nodes.filter((n) => n.name.startsWith('storage') && n.child).map((n) => n.name);
      const statuses = await serverStatuses(this.gatewayUrls[i]!);
      if (statuses) {
        // 1.20 reports "connected" (HTTP storage protocol); older foolscap-only versions "Connected to ...".
        const ok = want.filter((name) =>
          statuses.some((s) => s.nickname === name && s.status.toLowerCase().startsWith('connected')),
        );
        if (ok.length === want.length) {
          this.log(`grid: ${gw.name} connected to ${want.length} storage node(s)`);
          return;
        }
        last = statuses.map((s) => `${s.nickname}: ${s.status.split('\n')[0]?.slice(0, 200)}`).join('; ') || 'no servers known';
      }
      await this.checkAlive(deadline, 'storage servers to connect', ` (last status: ${last})`);
      await sleep(500);
    }
  }

  private async stopNode(n: NodeProc): Promise<void> {
    n.expectRunning = false;
    const child = n.child;
    if (!child) return;
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = await Promise.race([
      n.exited.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 5000))),
    ]);
    clearTimeout(timer); // a pending timer would keep the test process alive
    if (!killed) {
      this.log(`grid: ${n.name} ignored SIGTERM, sending SIGKILL`);
      child.kill('SIGKILL');
      await n.exited;
    }
    this.log(`grid: stopped ${n.name}`);
  }

  private startNode(n: NodeProc): void {
    n.expectRunning = true;
    this.spawnNode(n);
  }

  /** Stops storage node i; waits until the gateway (if running) no longer reports it connected. */
  async stopStorageNode(i: number): Promise<void> {
    const n = this.storage(i);
    await this.stopNode(n);
    // Otherwise a quick restart would be "connected" from stale status and tests would race the gateway.
    const deadline = Date.now() + 60_000;
    while (this.node('gateway').child) {
      const statuses = await serverStatuses(this.gatewayUrl);
      const s = statuses?.find((x) => x.nickname === n.name);
      if (statuses && !s?.status.toLowerCase().startsWith('connected')) return;
      await this.checkAlive(deadline, `the gateway to notice ${n.name} is down`);
      await sleep(250);
    }
  }

  async startStorageNode(i: number): Promise<void> {
    this.startNode(this.storage(i));
    await this.waitConnected(Date.now() + 60_000);
  }

  async stopGateway(): Promise<void> {
    await this.stopNode(this.node('gateway'));
  }

  freezeGateway(): void {
    this.node('gateway').child?.kill('SIGSTOP');
  }

  async killGateway(): Promise<void> {
    const n = this.node('gateway');
    n.expectRunning = false;
    if (!n.child) return;
    n.child.kill('SIGKILL');
    await n.exited;
    this.log('grid: killed gateway');
  }

  async startGateway(): Promise<void> {
    this.startNode(this.node('gateway'));
    await this.waitConnected(Date.now() + 60_000);
  }

  async configureGateway(client: Record<string, string | number>): Promise<void> {
    const cfgPath = join(this.gatewayDir, 'tahoe.cfg');
    const lines = (await readFile(cfgPath, 'utf8')).split('\n');
    const start = lines.findIndex((l) => l.trim() === '[client]');
    if (start < 0) throw new Error('grid: gateway tahoe.cfg has no [client] section');
    let end = lines.findIndex((l, i) => i > start && l.startsWith('['));
    if (end < 0) end = lines.length;
    for (const [key, value] of Object.entries(client)) {
      const at = lines.findIndex((l, i) => i > start && i < end && l.split('=')[0]!.trim() === key);
      if (at >= 0) lines[at] = `${key} = ${value}`;
      else {
        lines.splice(start + 1, 0, `${key} = ${value}`);
        end++;
      }
    }
    await this.stopGateway();
    await writeFile(cfgPath, lines.join('\n'));
    await this.startGateway();
  }

  shareFile(i: number, storageIndex: string, shareNum: number): string {
    return join(this.storage(i).hostDir, 'storage', 'shares', storageIndex.slice(0, 2), storageIndex, String(shareNum));
  }

  async sharesOn(i: number, storageIndex: string): Promise<number[]> {
    const dir = join(this.storage(i).hostDir, 'storage', 'shares', storageIndex.slice(0, 2), storageIndex);
    const names = await readdir(dir).catch(() => [] as string[]);
    return names.filter((n) => /^[0-9]+$/.test(n)).map(Number).sort((a, b) => a - b);
  }

  createNodeDir(hostDir: string, alias?: string): Promise<NodeDir> {
    return createNodeDir(this.gatewayUrl, hostDir, alias);
  }

  async logTail(lines = 15): Promise<string> {
    const parts = await Promise.all(
      this.nodes.map(async (n) => `--- ${n.name} (${n.logPath}) ---\n${await tailFile(n.logPath, lines)}`),
    );
    return parts.join('\n');
  }

  async stop(opts: { keep?: boolean } = {}): Promise<void> {
    this.stopped = true;
    await Promise.all(this.nodes.map((n) => this.stopNode(n)));
    await Promise.all(this.proxies.map((p) => p.close()));
    liveGrids.delete(this);
    if (opts.keep || keepByEnv()) {
      this.log(`grid: kept ${this.baseDir}`);
    } else {
      await rm(this.baseDir, { recursive: true, force: true });
    }
  }

  /** Last resort from 'exit'/signal handlers: only synchronous calls are possible there. */
  killSync(): void {
    for (const n of this.nodes) {
      if (n.child?.pid) {
        try {
          process.kill(n.child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    if (!keepByEnv()) {
      try {
        rmSync(this.baseDir, { recursive: true, force: true });
      } catch {
        // best effort
      }
    }
  }
}

/**
 * Runs the grid's `tahoe` command line (on PATH or in the chroot) to completion, bounded, as another client of
 * the grid would: e.g. tahoeCli(['get', '-u', gatewayUrl, cap, '-']) for a file's bytes. Its stdout, as bytes.
 */
export async function tahoeCli(args: string[], timeoutMs = 60_000): Promise<Buffer> {
  const [cmd, argv] = tahoeCommand(await getRunner(() => {}), args);
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { timeout: timeoutMs, encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`tahoe ${args[0] ?? ''} failed: ${error.message}\n${stderr.toString().slice(-2000)}`));
      else resolve(stdout);
    });
  });
}

/** Host path of the chroot tahoe runs in, or null when tahoe is on PATH (see scripts/tahoe-root.sh). */
export async function tahoeRoot(log: (msg: string) => void = () => {}): Promise<string | null> {
  return (await getRunner(log)).root;
}

export async function startGrid(opts: StartGridOptions = {}): Promise<Grid> {
  const log = opts.log ?? (() => {});
  const runner = await getRunner(log);
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  const started = Date.now();

  let baseDir: string;
  let innerBase: string;
  if (runner.root) {
    // tahoe inside the chroot can only see paths under its root.
    innerBase = `/grids/${randomBytes(6).toString('hex')}`;
    baseDir = join(runner.root, innerBase);
    await mkdir(baseDir, { recursive: true });
  } else {
    baseDir = await mkdtemp(join(tmpdir(), 'blackmatch-grid-'));
    innerBase = baseDir;
  }

  const delay = opts.storageDelayMs ?? 0;
  if (!(delay >= 0)) throw new Error(`grid: bad storageDelayMs ${delay}`);
  const far = delay > 0;
  const gateways = opts.gateways ?? 1;
  if (!Number.isInteger(gateways) || gateways < 1) throw new Error(`grid: bad gateways ${gateways}`);
  const [introducer, ...rest] = await freePorts(1 + gateways + STORAGE_NODES * (far ? 2 : 1));
  if (introducer === undefined) throw new Error('grid: no free ports');
  const web = rest.slice(0, gateways);
  const storage = rest.slice(gateways, gateways + STORAGE_NODES);
  const proxies = far ? rest.slice(gateways + STORAGE_NODES) : undefined;
  const grid = new GridImpl(runner, baseDir, innerBase, { introducer, storage, web, proxies }, delay, log);
  liveGrids.add(grid);
  installHandlers();
  try {
    await grid.create(deadline);
  } catch (e) {
    await grid.stop().catch(() => {});
    throw e;
  }
  const where = far ? `; storage nodes behind a ${delay} ms delay each way (${2 * delay} ms round trip)` : '';
  log(`grid: ready at ${grid.gatewayUrl} in ${((Date.now() - started) / 1000).toFixed(1)} s (${baseDir})${where}`);
  return grid;
}
