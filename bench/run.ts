// npm run bench: blackmatch in both modes beside its references, all measured in one run, on two local grids in
// turn: loopback, then far (storage nodes behind delay proxies, 30 ms round trip, gateway local, as on a real
// grid). References: a null FUSE filesystem in the same binding (the ceiling for FUSE throughput), plain web-API
// requests with curl (the ceiling for the grid), and Tahoe's own SFTP frontend mounted with sshfs (what Tahoe
// users use today). Prints the tables and writes them as markdown to bench/results.md. A benchmark, not a test.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { unmountPath } from '../src/fuse/mount.js';
import { mkdirCap, startGrid, type Grid } from '../grid/local-grid.js';
import { eventually, runCli, TestMount, type Mode } from '../grid/mount.js';
import { mountSftpPeer, type SftpMount } from './sftp-peer.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const BIG = Number(process.env.BLACKMATCH_BENCH_BIG_MIB ?? 256) * MiB;
const FILE = 64 * MiB;
const RUNS = 3;
const CHUNK = MiB;
/** The far grid's delay, each way (a 30 ms round trip), as in issue 9. */
const FAR_DELAY_MS = 15;
const here = dirname(fileURLToPath(import.meta.url));
const resultsFile = join(here, '..', '..', 'bench', 'results.md');
const log = (m: string) => console.error(`bench: ${m}`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function repeat(n: number, f: () => Promise<number>): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) xs.push(await f());
  return median(xs);
}

const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);

/**
 * Reads a whole file sequentially in 1 MiB reads; returns milliseconds. The kernel's pages of the file are
 * dropped first (dd's nocache is posix_fadvise DONTNEED), so that every run measures the filesystem, not the
 * page cache that auto_cache keeps across opens.
 */
async function timeRead(path: string, size: number): Promise<number> {
  await run('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']);
  return timeWholeRead(path, size);
}

/** One open, the whole file in 1 MiB reads, close: milliseconds of the reads. */
async function timeWholeRead(path: string, size: number): Promise<number> {
  const fh = await open(path, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  try {
    const t0 = performance.now();
    let total = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, total);
      if (bytesRead === 0) break;
      total += bytesRead;
    }
    if (total !== size) throw new Error(`read ${total} bytes of ${size} from ${path}`);
    return performance.now() - t0;
  } finally {
    await fh.close();
  }
}

/** Writes `data` in 1 MiB writes; times the writes alone and, separately, close(). */
async function timeWrite(path: string, data: Buffer): Promise<{ writeMs: number; closeMs: number }> {
  const fh = await open(path, 'w');
  const t0 = performance.now();
  for (let off = 0; off < data.length; off += CHUNK) await fh.write(data, off, Math.min(CHUNK, data.length - off), off);
  const t1 = performance.now();
  await fh.close();
  return { writeMs: t1 - t0, closeMs: performance.now() - t1 };
}

/** Open, then one 4 KiB read at `position`: milliseconds until its bytes are back. */
async function timeFirstByte(path: string, position: number): Promise<number> {
  const t0 = performance.now();
  const fh = await open(path, 'r');
  const buf = Buffer.alloc(4096);
  await fh.read(buf, 0, 4096, position);
  const ms = performance.now() - t0;
  await fh.close();
  return ms;
}

async function timeCommand(cmd: string, args: string[]): Promise<number> {
  const t0 = performance.now();
  await run(cmd, args, { maxBuffer: 64 * MiB });
  return performance.now() - t0;
}

/** curl against the gateway: the web API's own speed, with nothing in between. */
async function curlMs(args: string[]): Promise<number> {
  const { stdout } = await run('curl', ['-sS', '-f', '-o', '/dev/null', '-w', '%{time_total}', ...args], { maxBuffer: MiB });
  return Number(stdout) * 1000;
}

async function putFile(grid: Grid, root: string, name: string, data: Buffer): Promise<string> {
  const res = await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(root)}/${encodeURIComponent(name)}`, { method: 'PUT', body: new Uint8Array(data) });
  if (!res.ok) throw new Error(`PUT ${name}: HTTP ${res.status}`);
  return (await res.text()).trim();
}

/** Until the web API serves `size` bytes at root/name (how long an SFTP write really takes). */
async function waitServed(grid: Grid, root: string, name: string, size: number, boundMs = 600_000): Promise<void> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const res = await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(root)}/${encodeURIComponent(name)}?t=json`).catch(() => undefined);
    if (res?.ok) {
      const json = (await res.json()) as [string, { size?: number }];
      if (json[1].size === size) return;
    }
    if (Date.now() > deadline) throw new Error(`${name} not served within ${boundMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function startNullFs(mountpoint: string, size: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(here, 'null-fs.js'), mountpoint, String(size)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`null fs exited (${code})`)));
  });
  return child;
}

/** The rows of a mount that reads everything through the gateway, as before direct reads (issue 20). */
const VIA_GATEWAY = '--direct-reads off';

/** Cold reads of a mount with --direct-reads off: the figures of before, beside today's, from the same run. */
async function measureViaGateway(grid: Grid, figures: Figures): Promise<void> {
  for (const mode of ['no-split', 'split'] as const) {
    const root = await prepareRoot(grid, 1);
    const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: root, cacheTimeout: 60, settleTime: 'default', announcementsFrom: grid.gatewayDir, extraArgs: ['--log-level', 'info', '--direct-reads', 'off'] });
    try {
      log(`${mode} ${VIA_GATEWAY}: cold read, first byte`);
      const pids = await m.pids();
      const gatewayPid = await gatewayPidOf(grid);
      const [ours0, gw0] = [await cpuMs(pids), gatewayPid ? await cpuMs([gatewayPid]) : 0];
      set(figures, `${VIA_GATEWAY}: cold sequential read 64 MiB, MB/s`, mode, mbps(FILE, await timeRead(m.path('cold.bin'), FILE)));
      set(figures, `${VIA_GATEWAY}: CPU of that cold read: blackmatch, ms per MiB`, mode, ((await cpuMs(pids)) - ours0) / (FILE / MiB));
      if (gatewayPid) set(figures, `${VIA_GATEWAY}: CPU of that cold read: the gateway, ms per MiB`, mode, ((await cpuMs([gatewayPid])) - gw0) / (FILE / MiB));
      set(figures, `${VIA_GATEWAY}: first 4 KiB at 32 MiB of a cold file, ms`, mode, await medianFirstByte((n) => m.path(n)));
    } finally {
      await m.cleanup();
    }
  }
}

/** A way to mount: the mode, and whether --write-back is on. */
type Config = 'no-split' | 'split' | 'no-split wb' | 'split wb';
const CONFIGS: Config[] = ['no-split', 'split', 'no-split wb', 'split wb'];
type Column = 'reference' | Config | 'sshfs';
type Figures = Map<string, Partial<Record<Column, number>>>;

function set(figures: Figures, row: string, column: Column, value: number): void {
  const r = figures.get(row) ?? {};
  r[column] = value;
  figures.set(row, r);
}

/** One target of the user-facing measurements: a mounted root (ours or sshfs) and how to know a write is stored. */
interface Target {
  column: Column;
  root: string;
  path: (name: string) => string;
  /** Resolves once the web API serves the file just written (close() for us; later for sshfs). */
  stored: (name: string, size: number) => Promise<void>;
  /** The processes whose CPU a cold read costs (ours: the mount's; its gateway's is measured beside). */
  pids?: () => Promise<number[]>;
  /** The gateway's pid, whose CPU the same read also costs. */
  gatewayPid?: () => Promise<number | undefined>;
}

/** user + sys CPU of some processes so far, ms (/proc/PID/stat fields 14 and 15, in clock ticks of 10 ms). */
async function cpuMs(pids: number[]): Promise<number> {
  let ticks = 0;
  for (const pid of pids) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
  }
  return ticks * 10;
}

async function gatewayPidOf(grid: Grid): Promise<number | undefined> {
  const text = await readFile(join(grid.gatewayDir, 'running.process'), 'utf8').catch(() => '');
  const pid = Number(text.trim().split(/\s+/)[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** Resolves once every write to the mount is stored: nothing to wait for after a durable close, `blackmatch sync` after a write-back one. */
async function syncMount(m: TestMount, writeBack: boolean): Promise<void> {
  // Until stored, as before the ledger: its checks come a quiet period later, in the background.
  if (writeBack) await runSync(m, ['--stored-only']);
}

async function runSync(m: TestMount, flags: string[]): Promise<void> {
  const r = await runCli(['sync', ...flags, m.mountpoint], COMMAND_BOUND_MS);
  if (r.code !== 0) throw new Error(`blackmatch sync failed: ${r.stdout}${r.stderr}`);
}

async function measureTarget(t: Target, figures: Figures, tree: { dir: string; entries: number }): Promise<void> {
  log(`${t.column}: cold read, first byte, warm read, ls -l, write`);
  const pids = (await t.pids?.()) ?? [];
  const gatewayPid = await t.gatewayPid?.();
  const [ours0, gw0] = [await cpuMs(pids), gatewayPid ? await cpuMs([gatewayPid]) : 0];
  set(figures, 'cold sequential read 64 MiB, MB/s', t.column, mbps(FILE, await timeRead(t.path('cold.bin'), FILE)));
  if (pids.length > 0) {
    set(figures, 'CPU of that cold read: blackmatch, ms per MiB', t.column, ((await cpuMs(pids)) - ours0) / (FILE / MiB));
    if (gatewayPid) set(figures, 'CPU of that cold read: the gateway, ms per MiB', t.column, ((await cpuMs([gatewayPid])) - gw0) / (FILE / MiB));
  }
  set(figures, 'first 4 KiB at 32 MiB of a cold file, ms', t.column, await medianFirstByte((n) => t.path(n)));
  set(figures, 'warm sequential read 64 MiB, MB/s', t.column, mbps(FILE, await repeat(RUNS, () => timeRead(t.path('cold.bin'), FILE))));
  const dir = t.path(tree.dir);
  set(figures, `ls -l of ${tree.entries} entries, cold, ms`, t.column, await timeCommand('ls', ['-l', dir]));
  set(figures, `ls -l of ${tree.entries} entries, warm, ms`, t.column, await repeat(RUNS, () => timeCommand('ls', ['-l', dir])));
  // A first mkdir untimed: it starts the mount's keys made ahead (key-pool.ts), as any mount's first does.
  await mkdir(t.path('mkdir-0'));
  let made = 0;
  set(figures, 'mkdir, ms', t.column, await repeat(RUNS, async () => {
    const t0 = performance.now();
    await mkdir(t.path(`mkdir-${++made}`));
    return performance.now() - t0;
  }));
  const data = randomBytes(FILE);
  const t0 = performance.now();
  await timeWrite(t.path('written.bin'), data);
  set(figures, 'write 64 MiB until close() returns, ms', t.column, performance.now() - t0);
  await t.stored('written.bin', FILE);
  set(figures, 'write 64 MiB until the web API serves it, ms', t.column, performance.now() - t0);
}

/**
 * A root for one target, made before it is mounted (so that no listing cache hides it): a directory of
 * `entries` files, and two cold 64 MiB files that nobody has read yet.
 */
async function prepareRoot(grid: Grid, entries: number): Promise<string> {
  const root = await mkdirCap(grid.gatewayUrl);
  await makeTree(grid, root, entries);
  await putFile(grid, root, 'cold.bin', randomBytes(FILE));
  for (let i = 0; i < RUNS; i++) await putFile(grid, root, `ttfb-${i}.bin`, randomBytes(TTFB_FILE));
  return root;
}

/** A file just past the offset the first-byte figure reads at. */
const TTFB_FILE = 33 * MiB;

/** Median first byte at 32 MiB over RUNS files nobody has read yet (ttfb-N.bin, made by prepareRoot). */
async function medianFirstByte(path: (name: string) => string): Promise<number> {
  let i = 0;
  return repeat(RUNS, () => timeFirstByte(path(`ttfb-${i++}.bin`), 32 * MiB));
}

/** A directory of `entries` small files made through the web API in one request. */
async function makeTree(grid: Grid, root: string, entries: number): Promise<string> {
  const res = await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(root)}/tree?t=mkdir`, { method: 'POST' });
  const dirCap = (await res.text()).trim();
  const children: Record<string, [string, { ro_uri: string; metadata: object }]> = {};
  for (let i = 0; i < entries; i++) children[`file-${i}`] = ['filenode', { ro_uri: 'URI:LIT:mfrgg', metadata: {} }];
  const set = await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(dirCap)}?t=set_children`, { method: 'POST', body: JSON.stringify(children) });
  if (!set.ok) throw new Error(`set_children: HTTP ${set.status}`);
  return dirCap;
}


type Throughput = { read: number; write: number; writeWithClose?: number };

/** Figures of issue 9's table, measured the same way (median of RUNS where repeated). */
interface IssueFigures {
  /** One GET of a cold 32 MiB file, MB/s. */
  oneGet?: number;
  /** The same size as 4 parallel Range GETs of another cold file, MB/s. */
  parallelGets?: number;
  /** `tar x` of the 120-file tree into the mount, until it returns and until every file is stored, ms. */
  tar: Partial<Record<Config, number>>;
  tarStored: Partial<Record<Config, number>>;
  /** `git clone --no-hardlinks` of the 5-commit repository into the mount, the same two times, ms. */
  clone: Partial<Record<Config, number>>;
  cloneStored: Partial<Record<Config, number>>;
  /** Two machines, one directory (split --write-back): one mount unpacking the tree, then two through two gateways at once, until stored and checked, ms. */
  sharedAlone?: number;
  sharedTogether?: number;
  /** Files missing or wrong afterwards, through either gateway (must be 0). */
  sharedLost?: number;
  /** Issue 21: files changed in place, by mount (and one with in-place writes off: the way before). */
  inPlace: Partial<Record<InPlaceColumn, InPlaceFigures>>;
}

const MUTABLE_OFF = 'no-split, --mutable-from off';
type InPlaceColumn = Config | typeof MUTABLE_OFF;
const IN_PLACE_COLUMNS: InPlaceColumn[] = [MUTABLE_OFF, ...CONFIGS];

interface InPlaceFigures {
  /** A 128 MiB file's first change in place (it becomes MDMF), until stored, ms. */
  convert?: number;
  /** A 4 KiB change in the middle of it, until stored, ms (median). */
  change?: number;
  /** A new 4 KiB file, until stored, ms (median): the aim's yardstick, in the same mount. */
  newFile?: number;
  /** A one-row sqlite transaction in a 64 MB database, until stored, ms (median). */
  sqlite?: number;
  /** The 128 MiB MDMF file: one GET of it (curl), a cold read in a fresh mount, a warm re-read there, MB/s. */
  get?: number;
  cold?: number;
  warm?: number;
}

/** The big file that changes, and the database. */
const CHANGING = 128 * MiB;
const DB_ROWS = 16_000;

interface GridResults {
  storageDelayMs: number;
  figures: Figures;
  /** Absent when skipped (far grid). */
  throughput?: Record<string, Throughput>;
  issue: IssueFigures;
  /** What was skipped or failed, for the results text. */
  notes: string[];
  minutes: number;
}

const ENTRIES = 1000;
const ISSUE_GET = 32 * MiB;
const TAR_DIRS = 12;
const TAR_FILES_PER_DIR = 10;
const REPO_COMMITS = 5;
/** Bound for one tar or git command in the mount. */
const COMMAND_BOUND_MS = 600_000;

/** Inputs made locally once: the tar tree with its archive, and the small git repository. */
interface Inputs {
  tree: string;
  archive: string;
  repo: string;
}

async function makeInputs(work: string): Promise<Inputs> {
  const base = join(work, 'inputs');
  const tree = join(base, 'tree');
  for (let d = 0; d < TAR_DIRS; d++) {
    await mkdir(join(tree, `dir-${d}`), { recursive: true });
    for (let f = 0; f < TAR_FILES_PER_DIR; f++) await writeFile(join(tree, `dir-${d}`, `file-${f}.bin`), randomBytes(4096));
  }
  const archive = join(base, 'tree.tar');
  await run('tar', ['cf', archive, '-C', base, 'tree'], { timeout: 60_000 });

  const repo = join(base, 'repo');
  await mkdir(repo);
  const git = (...args: string[]) =>
    run('git', ['-c', 'user.name=bench', '-c', 'user.email=bench@localhost', '-c', 'init.defaultBranch=main', ...args], { cwd: repo, timeout: 60_000 });
  await git('init', '-q');
  for (let c = 0; c < REPO_COMMITS; c++) {
    await mkdir(join(repo, 'src'), { recursive: true });
    for (let k = 0; k < 4; k++) await writeFile(join(repo, 'src', `module-${c}-${k}.txt`), randomBytes(1536).toString('base64'));
    await writeFile(join(repo, 'README'), `revision ${c}\n`);
    await git('add', '-A');
    await git('commit', '-q', '-m', `commit ${c}`);
  }
  return { tree, archive, repo };
}

/** One GET of a fresh 32 MiB file, then 4 parallel Range GETs of another (curl, wall time): MB/s each. */
async function measureGets(grid: Grid, issue: IssueFigures): Promise<void> {
  const root = await mkdirCap(grid.gatewayUrl);
  const one: number[] = [];
  const four: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const a = `${grid.gatewayUrl}uri/${encodeURIComponent(await putFile(grid, root, `get-${i}.bin`, randomBytes(ISSUE_GET)))}`;
    const b = `${grid.gatewayUrl}uri/${encodeURIComponent(await putFile(grid, root, `ranges-${i}.bin`, randomBytes(ISSUE_GET)))}`;
    one.push(mbps(ISSUE_GET, await timeCommand('curl', ['-sS', '-f', '-o', '/dev/null', a])));
    const part = ISSUE_GET / 4;
    const t0 = performance.now();
    await Promise.all([0, 1, 2, 3].map((k) => run('curl', ['-sS', '-f', '-o', '/dev/null', '-r', `${k * part}-${(k + 1) * part - 1}`, b], { timeout: COMMAND_BOUND_MS })));
    four.push(mbps(ISSUE_GET, performance.now() - t0));
  }
  issue.oneGet = median(one);
  issue.parallelGets = median(four);
}

/** `tar x` of the tree and `git clone` of the repository into fresh directories of the mount, timed. */
async function measureCommands(m: TestMount, config: Config, inputs: Inputs, issue: IssueFigures): Promise<void> {
  log(`${config}: tar x of ${TAR_DIRS * TAR_FILES_PER_DIR} files, git clone of ${REPO_COMMITS} commits`);
  const writeBack = config.endsWith('wb');
  const tarDir = m.path(`tar-${config.replace(' ', '-')}`);
  await mkdir(tarDir);
  await syncMount(m, writeBack);
  let t0 = performance.now();
  await run('tar', ['xf', inputs.archive, '-C', tarDir], { timeout: COMMAND_BOUND_MS });
  issue.tar[config] = performance.now() - t0;
  await syncMount(m, writeBack);
  issue.tarStored[config] = performance.now() - t0;
  await run('diff', ['-r', inputs.tree, join(tarDir, 'tree')], { timeout: COMMAND_BOUND_MS });

  const cloneDir = m.path(`clone-${config.replace(' ', '-')}`);
  t0 = performance.now();
  await run('git', ['clone', '-q', '--no-hardlinks', inputs.repo, cloneDir], { timeout: COMMAND_BOUND_MS });
  issue.clone[config] = performance.now() - t0;
  await syncMount(m, writeBack);
  issue.cloneStored[config] = performance.now() - t0;
  const { stdout } = await run('git', ['-C', cloneDir, 'rev-list', '--count', 'HEAD'], { timeout: 60_000 });
  if (Number(stdout.trim()) !== REPO_COMMITS) throw new Error(`the clone has ${stdout.trim()} commits, not ${REPO_COMMITS}`);
}

/** Writes 4 KiB at `position` of an existing file, in place, and closes it. */
async function writeInPlace(path: string, position: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(randomBytes(4096), 0, 4096, position);
  } finally {
    await fh.close();
  }
}

/**
 * Issue 21's figures in one mount: a 128 MiB file changed 4 KiB at a time and a new 4 KiB file beside it, a
 * one-row sqlite transaction in a 64 MB database, each until stored; with `reads`, the file (MDMF by then) read
 * cold in a fresh mount of the same root and warm again there, beside one GET of it.
 */
async function measureInPlace(grid: Grid, m: TestMount, column: InPlaceColumn, writeBack: boolean, reads: boolean): Promise<InPlaceFigures> {
  log(`${column}: files changed in place`);
  const f: InPlaceFigures = {};
  const until = async (work: () => Promise<unknown>): Promise<number> => {
    const t0 = performance.now();
    await work();
    await syncMount(m, writeBack);
    return performance.now() - t0;
  };
  const big = m.path('changing.bin');
  await writeFile(big, randomBytes(CHANGING));
  await syncMount(m, writeBack);
  f.convert = await until(() => writeInPlace(big, 4096));
  let k = 0;
  f.change = await repeat(RUNS, () => until(() => writeInPlace(big, CHANGING / 2 + 4096 * 37 * ++k)));
  f.newFile = await repeat(RUNS, () => until(() => writeFile(m.path(`new-${++k}.bin`), randomBytes(4096))));

  const db = m.path('bench.db');
  const sql = (q: string) => run('sqlite3', [db, q], { timeout: COMMAND_BOUND_MS });
  await sql(`PRAGMA page_size=4096; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<${DB_ROWS}) INSERT INTO t(v) SELECT randomblob(4000) FROM c;`);
  await syncMount(m, writeBack);
  await until(() => sql('INSERT INTO t(v) VALUES (randomblob(100));')); // the first change in place
  f.sqlite = await repeat(RUNS, () => until(() => sql('INSERT INTO t(v) VALUES (randomblob(100));')));
  const { stdout } = await sql('PRAGMA integrity_check;');
  if (stdout.trim() !== 'ok') throw new Error(`the database is damaged: ${stdout}`);

  if (reads) {
    const entry = (await m.webList(''))['changing.bin']![1];
    if (!entry.rw_uri?.startsWith('URI:MDMF:')) throw new Error('changing.bin did not become MDMF');
    f.get = mbps(CHANGING, await curlMs([`${grid.gatewayUrl}uri/${encodeURIComponent(entry.ro_uri!)}`]));
    const fresh = await TestMount.start({ mode: column.startsWith('split') ? 'split' : 'no-split', gatewayUrl: grid.gatewayUrl, rootCap: m.rootCap, cacheTimeout: 60, settleTime: 'default', announcementsFrom: grid.gatewayDir });
    try {
      f.cold = mbps(CHANGING, await timeRead(fresh.path('changing.bin'), CHANGING));
      // Warm: the page cache, as for an immutable file (timeRead drops it, so this one reads it whole first).
      f.warm = mbps(CHANGING, await repeat(RUNS, () => timeReadCached(fresh.path('changing.bin'), CHANGING)));
    } finally {
      await fresh.cleanup();
    }
  }
  await rm(big);
  await rm(db);
  return f;
}

/** Reads a whole file twice; times the second (its pages are in the page cache by then). */
async function timeReadCached(path: string, size: number): Promise<number> {
  await timeWholeRead(path, size);
  return timeWholeRead(path, size);
}

/** The tree unpacked under `name` into `dir` of the mount (tar's --transform renames its top directory). */
async function untar(inputs: Inputs, dir: string, name: string): Promise<void> {
  await run('tar', ['xf', inputs.archive, '-C', dir, '--transform', `s,^tree,${name},`], { timeout: COMMAND_BOUND_MS });
}

/** Until everything is stored and the ledger has seen every directory change in place (its quiet period included). */
const syncChecked = (m: TestMount) => runSync(m, []);

/**
 * Two machines, one directory: one split --write-back mount unpacks the tree into a shared directory, then two
 * mounts of one root, through two gateways, unpack one tree each into it at once; each timed until stored and
 * checked. Then every file is looked up through both gateways.
 */
async function measureShared(grid: Grid, inputs: Inputs, issue: IssueFigures): Promise<void> {
  log('two machines, one directory: tar x on one mount, then on two through two gateways at once');
  // Listings trusted for 1 s, as machines sharing a directory want (each sees the other's entries soon).
  const mountArgs = { mode: 'split' as Mode, cacheTimeout: 1, settleTime: 'default' as const, extraArgs: ['--log-level', 'info', '--write-back'] };
  const aloneRoot = await mkdirCap(grid.gatewayUrl);
  const alone = await TestMount.start({ ...mountArgs, gatewayUrl: grid.gatewayUrl, rootCap: aloneRoot });
  try {
    await mkdir(alone.path('shared'));
    await syncChecked(alone);
    const t0 = performance.now();
    await untar(inputs, alone.path('shared'), 'tree-A');
    await syncChecked(alone);
    issue.sharedAlone = performance.now() - t0;
  } finally {
    await alone.cleanup();
  }
  const root = await mkdirCap(grid.gatewayUrl);
  const mounts: TestMount[] = [];
  try {
    for (const url of grid.gatewayUrls.slice(0, 2)) mounts.push(await TestMount.start({ ...mountArgs, gatewayUrl: url, rootCap: root }));
    await mkdir(mounts[0]!.path('shared'));
    await syncChecked(mounts[0]!);
    await eventually('the second mount sees the shared directory', () => stat(mounts[1]!.path('shared')).then(() => true, () => false));
    const t0 = performance.now();
    await Promise.all(mounts.map(async (m, i) => {
      await untar(inputs, m.path('shared'), `tree-${'AB'[i]}`);
      await syncChecked(m);
    }));
    issue.sharedTogether = performance.now() - t0;
  } finally {
    await Promise.all(mounts.map((m) => m.cleanup()));
  }
  let lost = 0;
  for (const url of grid.gatewayUrls.slice(0, 2)) {
    for (const tree of ['tree-A', 'tree-B']) {
      for (let d = 0; d < TAR_DIRS; d++) {
        const res = await fetch(`${url}uri/${encodeURIComponent(root)}/shared/${tree}/dir-${d}?t=json`, { signal: AbortSignal.timeout(60_000) });
        const names = res.ok ? Object.keys(((await res.json()) as [string, { children: Record<string, unknown> }])[1].children) : [];
        for (let f = 0; f < TAR_FILES_PER_DIR; f++) if (!names.includes(`file-${f}.bin`)) lost++;
      }
    }
  }
  issue.sharedLost = lost;
}

/**
 * Every figure on one grid: the web API's own, then blackmatch in both modes, then sshfs. On the far grid the
 * cached 256 MiB throughput table is skipped: cached data never touches the grid, and its write + close would
 * upload 1.5 GiB across the delay.
 */
async function measureGrid(storageDelayMs: number, work: string, big: Buffer, nullCeiling: Throughput, inputs: Inputs): Promise<GridResults> {
  const started = performance.now();
  const far = storageDelayMs > 0;
  const figures: Figures = new Map();
  const throughput: Record<string, Throughput> | undefined = far ? undefined : { 'null FUSE (ceiling)': nullCeiling };
  const issue: IssueFigures = { tar: {}, tarStored: {}, clone: {}, cloneStored: {}, inPlace: {} };
  const notes: string[] = [];
  set(figures, 'warm sequential read 64 MiB, MB/s', 'reference', nullCeiling.read);

  // A second gateway, idle but for the two-machine row: another machine's node on the same grid.
  const grid = await startGrid({ log, storageDelayMs, gateways: 2 });
  try {
    // The grid's own speed, straight through its web API.
    log(`${far ? 'far' : 'loopback'} grid: web API references`);
    const refRoot = await mkdirCap(grid.gatewayUrl);
    const refCap = await putFile(grid, refRoot, 'ref.bin', randomBytes(FILE));
    const capUrl = `${grid.gatewayUrl}uri/${encodeURIComponent(refCap)}`;
    const gatewayPid = await gatewayPidOf(grid);
    const gatewayCpu0 = gatewayPid ? await cpuMs([gatewayPid]) : 0;
    set(figures, 'cold sequential read 64 MiB, MB/s', 'reference', mbps(FILE, await curlMs([capUrl])));
    if (gatewayPid) set(figures, 'CPU of that cold read: the gateway, ms per MiB', 'reference', ((await cpuMs([gatewayPid])) - gatewayCpu0) / (FILE / MiB));
    // Files of their own: a Range GET of the file just read whole would find the gateway's downloader warm.
    const ttfbUrls: string[] = [];
    for (let i = 0; i < RUNS; i++) ttfbUrls.push(`${grid.gatewayUrl}uri/${encodeURIComponent(await putFile(grid, refRoot, `ttfb-${i}.bin`, randomBytes(TTFB_FILE)))}`);
    set(figures, 'first 4 KiB at 32 MiB of a cold file, ms', 'reference', await repeat(RUNS, () => curlMs(['-r', `${32 * MiB}-${32 * MiB + 128 * 1024 - 1}`, ttfbUrls.shift()!])));
    const treeCap = await makeTree(grid, refRoot, ENTRIES);
    const treeUrl = `${grid.gatewayUrl}uri/${encodeURIComponent(treeCap)}?t=json`;
    set(figures, `ls -l of ${ENTRIES} entries, cold, ms`, 'reference', await curlMs([treeUrl]));
    set(figures, `ls -l of ${ENTRIES} entries, warm, ms`, 'reference', await curlMs([treeUrl]));
    let refDirs = 0;
    set(figures, 'mkdir, ms', 'reference', await repeat(RUNS, () => curlMs(['-X', 'POST', `${grid.gatewayUrl}uri/${encodeURIComponent(refRoot)}?t=mkdir&name=made-${++refDirs}`])));
    const upload = join(work, 'upload.bin');
    await writeFile(upload, randomBytes(FILE));
    set(figures, 'write 64 MiB until the web API serves it, ms', 'reference', await curlMs(['-T', upload, `${grid.gatewayUrl}uri`]));
    await rm(upload);
    await measureGets(grid, issue);

    for (const config of CONFIGS) {
      const mode: Mode = config.startsWith('split') ? 'split' : 'no-split';
      const writeBack = config.endsWith('wb');
      const root = await prepareRoot(grid, ENTRIES);
      // The node directory holds the gateway's storage announcements, as a user's own does: direct reads.
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: root, cacheTimeout: 60, settleTime: 'default', announcementsFrom: grid.gatewayDir, extraArgs: ['--log-level', 'info', ...(writeBack ? ['--write-back'] : [])] });
      try {
        if (throughput) {
          log(`${config}: cached ${BIG / MiB} MiB read and write`);
          const writes: number[] = [];
          const withClose: number[] = [];
          for (let i = 0; i < RUNS; i++) {
            const { writeMs, closeMs } = await timeWrite(m.path('big'), big);
            writes.push(mbps(BIG, writeMs));
            withClose.push(mbps(BIG, writeMs + closeMs));
            await syncMount(m, writeBack); // the next run must not compete with this one's upload
          }
          throughput[`blackmatch ${config}`] = {
            read: mbps(BIG, await repeat(RUNS, () => timeRead(m.path('big'), BIG))),
            write: median(writes),
            writeWithClose: median(withClose),
          };
          await rm(m.path('big'));
        }
        await measureTarget({ column: config, root, path: (n) => m.path(n), stored: () => syncMount(m, writeBack), pids: () => m.pids(), gatewayPid: () => gatewayPidOf(grid) }, figures, { dir: 'tree', entries: ENTRIES });
        await measureCommands(m, config, inputs, issue);
        issue.inPlace[config] = await measureInPlace(grid, m, config, writeBack, !writeBack);
      } finally {
        await m.cleanup();
      }
    }
    {
      // The way before issue 21: every change uploads the whole file again.
      const m = await TestMount.start({ mode: 'no-split', gatewayUrl: grid.gatewayUrl, rootCap: await mkdirCap(grid.gatewayUrl), cacheTimeout: 60, settleTime: 'default', announcementsFrom: grid.gatewayDir, extraArgs: ['--log-level', 'info', '--mutable-from', 'off'] });
      try {
        issue.inPlace[MUTABLE_OFF] = await measureInPlace(grid, m, MUTABLE_OFF, false, false);
      } finally {
        await m.cleanup();
      }
    }

    await measureViaGateway(grid, figures);

    if (!far) {
      try {
        await measureShared(grid, inputs, issue);
      } catch (e) {
        log(`two machines, one directory not measured: ${(e as Error).message}`);
        notes.push(`two machines, one directory not measured: ${(e as Error).message.split('\n')[0]}`);
      }
    }

    let sftp: SftpMount | undefined;
    try {
      const root = await prepareRoot(grid, ENTRIES);
      sftp = await mountSftpPeer(grid, root, log);
      const mountpoint = sftp.mountpoint;
      await measureTarget(
        { column: 'sshfs', root, path: (n) => join(mountpoint, n), stored: (n, size) => waitServed(grid, root, n, size) },
        figures,
        { dir: 'tree', entries: ENTRIES },
      );
    } catch (e) {
      log(`sshfs peer not measured: ${(e as Error).message}`);
      notes.push(`sshfs not measured: ${(e as Error).message.split('\n')[0]}`);
    } finally {
      await sftp?.stop();
    }
  } finally {
    await grid.stop();
  }
  const minutes = (performance.now() - started) / 60_000;
  log(`${far ? 'far' : 'loopback'} grid measured in ${minutes.toFixed(1)} min`);
  return { storageDelayMs, figures, throughput, issue, notes, minutes };
}

async function main(): Promise<void> {
  const started = performance.now();
  const work = await mkdtemp(join(tmpdir(), 'bm-bench-'));
  try {
    const chunk = Buffer.alloc(CHUNK);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 131) % 251;
    const big = Buffer.alloc(BIG);
    for (let off = 0; off < BIG; off += CHUNK) chunk.copy(big, off);
    const inputs = await makeInputs(work);

    // Grid-independent: measured once, shown in both sections.
    log(`null FUSE ceiling, ${BIG / MiB} MiB`);
    const nullMnt = join(work, 'null');
    await mkdir(nullMnt);
    const nullFs = await startNullFs(nullMnt, BIG);
    let nullCeiling: Throughput;
    try {
      nullCeiling = {
        read: mbps(BIG, await repeat(RUNS, () => timeRead(join(nullMnt, 'data'), BIG))),
        write: mbps(BIG, await repeat(RUNS, async () => (await timeWrite(join(nullMnt, 'data'), big)).writeMs)),
      };
    } finally {
      await unmountPath(nullMnt);
      nullFs.kill();
    }

    // One grid at a time: the second starts after the first is stopped, so they never share the 2 cores.
    const loopback = await measureGrid(0, work, big, nullCeiling, inputs);
    // Kept if the far grid fails; replaced by the whole report below.
    await report([loopback], (performance.now() - started) / 60_000, { quiet: true });
    const far = await measureGrid(FAR_DELAY_MS, work, big, nullCeiling, inputs);
    await report([loopback, far], (performance.now() - started) / 60_000);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const AIMS: Record<string, string> = {
  'cold sequential read 64 MiB, MB/s': '>= 3x curl GET (loopback), >= 5x (far)',
  'first 4 KiB at 32 MiB of a cold file, ms': '<= one Range GET',
  [`${VIA_GATEWAY}: cold sequential read 64 MiB, MB/s`]: 'before issue 20: >= 90% of curl GET',
  [`${VIA_GATEWAY}: first 4 KiB at 32 MiB of a cold file, ms`]: 'before issue 20: <= 2x one Range GET',
  'warm sequential read 64 MiB, MB/s': '>= 70% of null FUSE',
  [`ls -l of ${ENTRIES} entries, cold, ms`]: '<= 1.2x one ?t=json GET',
  [`ls -l of ${ENTRIES} entries, warm, ms`]: '-',
  'write 64 MiB until close() returns, ms': '-',
  'write 64 MiB until the web API serves it, ms': '<= 1.1x PUT /uri',
  'mkdir, ms': '<= 75% of t=mkdir&name= (durable, far grid)',
};

const pct = (a: number | undefined, b: number | undefined) => (a && b ? `${((100 * a) / b).toFixed(0)}%` : '-');
const num = (v: number | undefined, digits = 0) => (v === undefined ? '-' : v.toFixed(digits));
const secs = (ms: number | undefined) => (ms === undefined ? '-' : (ms / 1000).toFixed(1));

function section(r: GridResults): string[] {
  const far = r.storageDelayMs > 0;
  const lines = [
    far ? `## Far grid (storage nodes ${2 * r.storageDelayMs} ms round trip away)` : '## Loopback grid',
    '',
    far
      ? `Each storage node behind a delay proxy holding every chunk ${r.storageDelayMs} ms each way (grid/delay-proxy.ts);\nthe gateway and the introducer local. Measured in ${r.minutes.toFixed(1)} min.`
      : `Every node on 127.0.0.1, nothing in between. Measured in ${r.minutes.toFixed(1)} min.`,
    ...r.notes.map((n) => `${n}.`),
    '',
    '### Against the grid and against sshfs',
    '',
    '"wb" columns are the same mode with --write-back; their writes are counted until `blackmatch sync` returns.',
    '',
    `| figure | reference | ${[...CONFIGS, 'sshfs'].join(' | ')} | ${[...CONFIGS, 'sshfs'].map((c) => `${c} / ref`).join(' | ')} | aim |`,
    `| --- | ---: | ${[...CONFIGS, 'sshfs'].map(() => '---: | ---:').join(' | ')} | --- |`,
    ...[...r.figures.entries()].map(([row, f]) => {
      // For MB/s higher is better (ratio as a percentage); for times lower is better (ratio as a factor).
      const ratio = (v: number | undefined) => (row.endsWith('MB/s') ? pct(v, f.reference) : v && f.reference ? `${(v / f.reference).toFixed(2)}x` : '-');
      const columns: Column[] = [...CONFIGS, 'sshfs'];
      return `| ${row} | ${num(f.reference)} | ${columns.map((c) => num(f[c])).join(' | ')} | ${columns.map((c) => ratio(f[c])).join(' | ')} | ${AIMS[row] ?? '-'} |`;
    }),
    '',
  ];
  if (r.throughput) {
    const ceiling = r.throughput['null FUSE (ceiling)'];
    const noSplit = r.throughput['blackmatch no-split'];
    const split = r.throughput['blackmatch split'];
    lines.push(
      `### FUSE throughput: a cached ${BIG / MiB} MiB file`,
      '',
      'Sequential 1 MiB reads and writes (FUSE moves up to 1 MiB per request); writes timed until the last write() returns,',
      'and separately until close() returns (close uploads the file).',
      '',
      '| | read MB/s | write MB/s | write + close MB/s |',
      '| --- | ---: | ---: | ---: |',
      ...Object.entries(r.throughput).map(([name, t]) => `| ${name} | ${num(t.read)} | ${num(t.write)} | ${num(t.writeWithClose)} |`),
      '',
      'With --write-back, close() returns once the bytes are on the local disk; each run waits for `blackmatch sync` before the next.',
      '',
      '| ratio | read | write | aim |',
      '| --- | ---: | ---: | --- |',
      `| split / no-split | ${pct(split?.read, noSplit?.read)} | ${pct(split?.write, noSplit?.write)} | >= 90% |`,
      `| no-split / null FUSE | ${pct(noSplit?.read, ceiling?.read)} | ${pct(noSplit?.write, ceiling?.write)} | >= 70% |`,
      '',
    );
  } else {
    lines.push(
      `### FUSE throughput: a cached ${BIG / MiB} MiB file`,
      '',
      'Not measured on this grid: cached reads and writes never reach the grid (see the loopback section), and',
      `write + close would upload ${(3 * 2 * BIG) / MiB} MiB across the delay.`,
      '',
    );
  }
  const i = r.issue;
  lines.push(
    "### Issue 9's figures",
    '',
    `curl against the gateway (wall time, a fresh cold file each run); commands run in a fresh directory of the mount,`,
    'timed until they return, and until every file is stored (the same in durable mode; `blackmatch sync` returns',
    'with --write-back). Medians of 3 for the GETs, single runs for the commands.',
    '',
    `| what | web API (curl) | ${CONFIGS.join(' | ')} |`,
    `| --- | ---: | ${CONFIGS.map(() => '---:').join(' | ')} |`,
    `| one \`GET /uri/$CAP\` of 32 MiB, MB/s | ${num(i.oneGet, 1)} | ${CONFIGS.map(() => '-').join(' | ')} |`,
    `| the same 32 MiB as 4 parallel \`Range\` GETs, MB/s | ${num(i.parallelGets, 1)}${i.oneGet && i.parallelGets ? ` (${(i.parallelGets / i.oneGet).toFixed(1)}x one GET)` : ''} | ${CONFIGS.map(() => '-').join(' | ')} |`,
    `| \`tar x\` of ${TAR_DIRS * TAR_FILES_PER_DIR} files of 4 KiB in ${TAR_DIRS} directories: returns, s | - | ${CONFIGS.map((c) => secs(i.tar[c])).join(' | ')} |`,
    `| the same, until every file is stored, s | - | ${CONFIGS.map((c) => secs(i.tarStored[c])).join(' | ')} |`,
    `| \`git clone --no-hardlinks\` of a ${REPO_COMMITS}-commit repository (local path into the mount): returns, s | - | ${CONFIGS.map((c) => secs(i.clone[c])).join(' | ')} |`,
    `| the same, until every file is stored, s | - | ${CONFIGS.map((c) => secs(i.cloneStored[c])).join(' | ')} |`,
    '',
  );
  const ip = (c: InPlaceColumn) => i.inPlace[c] ?? {};
  const ms = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(0));
  const times = (a: number | undefined, b: number | undefined) => (a && b ? ` (${(a / b).toFixed(1)}x)` : '');
  lines.push(
    "### Issue 21's figures: files changed in place",
    '',
    `A ${CHANGING / MiB} MiB file written through the mount, then changed 4 KiB at a time in its middle (open, pwrite, close); a new`,
    `4 KiB file in the same mount; a one-row \`INSERT\` (the sqlite3 program) into a ${(DB_ROWS * 4096) / 1e6} MB database on the mount. Each`,
    'until stored (close() in durable mode; `blackmatch sync --stored-only` with --write-back); medians of 3. The first change',
    `makes the file MDMF (a whole upload, once). "${MUTABLE_OFF}" is the way before: every change uploads the whole file.`,
    'Reads: the file (MDMF by then) read cold in a fresh mount of the same root, and again warm there (the page cache), beside',
    'one `GET` of it with curl.',
    '',
    `| what | ${IN_PLACE_COLUMNS.join(' | ')} | aim |`,
    `| --- | ${IN_PLACE_COLUMNS.map(() => '---:').join(' | ')} | --- |`,
    `| first change in place (becomes MDMF), ms | ${IN_PLACE_COLUMNS.map((c) => ms(ip(c).convert)).join(' | ')} | - |`,
    `| 4 KiB change in the middle, until stored, ms | ${IN_PLACE_COLUMNS.map((c) => ms(ip(c).change) + times(ip(c).change, ip(c).newFile)).join(' | ')} | <= 2x a new 4 KiB file |`,
    `| a new 4 KiB file, until stored, ms | ${IN_PLACE_COLUMNS.map((c) => ms(ip(c).newFile)).join(' | ')} | - |`,
    `| one-row sqlite transaction, until stored, ms | ${IN_PLACE_COLUMNS.map((c) => ms(ip(c).sqlite)).join(' | ')} | <= 1000 (loopback) |`,
    `| one \`GET\` of the ${CHANGING / MiB} MiB MDMF file (curl), MB/s | ${IN_PLACE_COLUMNS.map((c) => num(ip(c).get)).join(' | ')} | - |`,
    `| cold read of it in a fresh mount, MB/s | ${IN_PLACE_COLUMNS.map((c) => num(ip(c).cold) + (ip(c).cold && ip(c).get ? ` (${(ip(c).cold! / ip(c).get!).toFixed(2)}x)` : '')).join(' | ')} | >= 0.8x one GET |`,
    `| warm re-read there, MB/s | ${IN_PLACE_COLUMNS.map((c) => num(ip(c).warm)).join(' | ')} | page-cache speed |`,
    '',
  );
  if (i.sharedAlone !== undefined && i.sharedTogether !== undefined) {
    lines.push(
      '### Two machines, one directory',
      '',
      `\`tar x\` of the ${TAR_DIRS * TAR_FILES_PER_DIR}-file tree into one shared directory, split --write-back, until \`blackmatch sync\` returns: everything stored, and every`,
      'directory change seen in place after its quiet period (--settle-time, 45 s). One mount alone, then two mounts of one',
      'root through two gateways (two machines) unpacking one tree each at once, every file then looked up through both.',
      '',
      '| what | one mount alone | two mounts at once |',
      '| --- | ---: | ---: |',
      `| until stored and checked, s | ${secs(i.sharedAlone)} | ${secs(i.sharedTogether)} (${(i.sharedTogether / i.sharedAlone).toFixed(2)}x) |`,
      `| files missing afterwards | - | ${i.sharedLost ?? '-'} |`,
      '',
    );
  }
  return lines;
}

async function report(grids: GridResults[], minutes: number, opts: { quiet?: boolean } = {}): Promise<void> {
  const lines = [
    '# blackmatch benchmark',
    '',
    `Measured in one run (${minutes.toFixed(1)} min) on ${new Date().toISOString().slice(0, 10)}, ${process.arch}, Node ${process.version}, on two local grids`,
    'in turn (introducer, 3 storage nodes, gateway; 2-of-3 shares): loopback, then far, its storage nodes 30 ms round',
    `trip away. Repeated figures are medians of ${RUNS}. "reference" is the web API through curl (or the null FUSE`,
    'filesystem in the same binding for warm reads, measured once); sshfs is Tahoe\'s SFTP frontend on a second client',
    'node of the same grid, mounted with Debian\'s sshfs, its writes counted until the web API serves the bytes (its',
    'close() returns before the upload).',
    '',
    ...grids.flatMap(section),
  ];
  const text = lines.join('\n');
  if (!opts.quiet) console.log(text);
  await writeFile(resultsFile, text);
  log(`written to ${resultsFile}`);
}

main().then(
  () => setTimeout(() => process.exit(0), 200),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
