// npm run soak: a bounded soak of a live mount. 8 writers and 8 readers work for SOAK_SECONDS (default 60) on
// files of their own and on shared files replaced by rename, in both modes, and every byte read back (through
// the mount and the web API) is checked against content that each file describes in its own header
// (content.ts). Open file handles and memory of the mount's processes are measured before and after: they must
// come back. This file is the driver: the mount's processes, the baseline, the load, the settling, the report.
//
// The load (load.ts) runs in a child process of its own (forked with a larger libuv thread pool): Node's
// default pool of 4 threads would let at most 4 of the 16 workers be inside a filesystem call at once.
import { fork } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startGrid, type Grid } from '../../grid/local-grid.js';
import { MODES, TestMount, type Mode } from '../../grid/mount.js';
import { KiB, MiB } from './content.js';
import { emptyCounts, LOAD_CHILD_ARG, sleep, type FromChild, type LoadConfig, type LoadCounts, type LoadResult, type ToChild } from './load.js';

const LOAD_CHILD = fileURLToPath(new URL('./load.js', import.meta.url));

// ---- the parent: processes, baseline, load, settle ------------------------------------------------------------

export interface ProcSample {
  pid: number;
  role: string;
  fds: number;
  rssKiB: number;
}

export interface SoakReport {
  mode: Mode;
  seconds: number;
  writers: number;
  readers: number;
  elapsedMs: number;
  counts: LoadCounts;
  /** Empty when the soak passed: corruption, errors, a process gone, handles or memory not back. */
  failures: string[];
  /** Warnings the mount logged during the soak, by message, with the first of each (not failures). */
  warnings: Array<{ msg: string; count: number; first: string }>;
  before: ProcSample[];
  after: ProcSample[];
  settled: ProcSample[];
  settleMs: number;
}

export interface SoakOptions {
  mount: TestMount;
  seconds: number;
  writers?: number;
  readers?: number;
  seed?: number;
  log?: (m: string) => void;
}

/** Handles a process may hold beyond its baseline afterwards (e.g. a keep-alive socket reopened by chance). */
export const FD_SLACK = 2;
export const RSS_SLACK_KIB = 128 * 1024;
const SETTLE_BOUND_MS = 30_000;

async function sample(pid: number, role: string): Promise<ProcSample> {
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rss = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  return { pid, role, fds, rssKiB: rss ? Number(rss[1]) : 0 };
}

async function processesOf(m: TestMount): Promise<Array<{ pid: number; role: string }>> {
  const out: Array<{ pid: number; role: string }> = [];
  for (const pid of await m.pids()) {
    // blackmatch retitles itself ("blackmatch ARGS", one string): split on NULs and spaces alike.
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split(/[\0 ]/);
    out.push({ pid, role: argv.includes('--server') ? 'server' : m.mode === 'split' ? 'client' : 'unsplit' });
  }
  return out.sort((a, b) => a.role.localeCompare(b.role));
}

async function sampleAll(procs: Array<{ pid: number; role: string }>, failures: string[]): Promise<ProcSample[]> {
  const out: ProcSample[] = [];
  for (const p of procs) {
    try {
      out.push(await sample(p.pid, p.role));
    } catch (e) {
      failures.push(`resources: ${p.role} (pid ${p.pid}) is gone: ${(e as Error).message}`);
    }
  }
  return out;
}

function fdsBack(before: ProcSample[], now: ProcSample[]): boolean {
  return now.every((s) => s.fds <= (before.find((b) => b.pid === s.pid)?.fds ?? 0) + FD_SLACK);
}

/** Runs the soak against a live mount; never throws for what the soak finds (see failures). */
export async function soak(opts: SoakOptions): Promise<SoakReport> {
  const m = opts.mount;
  const log = opts.log ?? (() => undefined);
  const cfg: LoadConfig = {
    mountpoint: m.mountpoint,
    gatewayUrl: m.gatewayUrl,
    rootCap: m.rootCap,
    base: `soak-${Math.random().toString(36).slice(2, 8)}`,
    seconds: opts.seconds,
    writers: opts.writers ?? 8,
    readers: opts.readers ?? 8,
    seed: (opts.seed ?? Math.floor(Math.random() * 2 ** 32)) >>> 0,
  };
  log(`soak (${m.mode}): ${cfg.writers} writers, ${cfg.readers} readers, ${cfg.seconds} s, seed ${cfg.seed}`);
  const failures: string[] = [];
  const procs = await processesOf(m);
  const wantProcs = m.mode === 'split' ? 2 : 1;
  if (procs.length !== wantProcs) failures.push(`resources: expected ${wantProcs} mount process(es), found ${procs.length}`);
  const logStart = new Date().toISOString();

  let before: ProcSample[] = [];
  // A child with a larger libuv pool, so that all workers can be inside filesystem calls at once.
  const env: NodeJS.ProcessEnv = { ...process.env, UV_THREADPOOL_SIZE: String(cfg.writers + cfg.readers + 8) };
  delete env.NODE_TEST_CONTEXT; // the child is not a test file; its output must not reach the test runner
  const child = fork(LOAD_CHILD, [LOAD_CHILD_ARG], { env, execArgv: [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let childErr = '';
  child.stderr?.on('data', (d: Buffer) => (childErr = (childErr + d.toString()).slice(-4000)));
  const bound = (cfg.seconds + 300) * 1000;
  const result = await m
    .watch(`soak (${m.mode})`, () =>
      new Promise<LoadResult>((resolve, reject) => {
        const killer = setTimeout(() => child.kill('SIGKILL'), bound + 60_000);
        child.on('message', (msg: FromChild) => {
          if (msg.type === 'log') log(`  ${msg.line}`);
          else if (msg.type === 'warm') {
            // A moment for the warm-up's last releases to finish, so that the baseline is a quiet one.
            void sleep(1000).then(() => sampleAll(procs, failures)).then((s) => {
              before = s;
              child.send({ type: 'go' } satisfies ToChild);
            });
          } else {
            clearTimeout(killer);
            resolve(msg.result);
          }
        });
        child.on('exit', (code, signal) => {
          clearTimeout(killer);
          reject(new Error(`load process exited (${code ?? signal}) without a result${childErr ? `: ${childErr.trim()}` : ''}`));
        });
        child.send({ type: 'start', config: cfg } satisfies ToChild);
      }), bound)
    .catch((e: unknown): LoadResult => ({ elapsedMs: 0, counts: emptyCounts(), failures: [(e as Error).message] }));
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  failures.push(...result.failures);
  const after = await sampleAll(procs, failures);

  // Idle keep-alive sockets close on their own (undici: 10 s); wait for them, bounded, polling.
  const settleStart = Date.now();
  let settled = after;
  while (before.length > 0 && !fdsBack(before, settled) && Date.now() - settleStart < SETTLE_BOUND_MS && settled.length === procs.length) {
    await sleep(500);
    settled = await sampleAll(procs, failures);
  }
  const settleMs = Date.now() - settleStart;
  for (const s of settled) {
    const b = before.find((x) => x.pid === s.pid);
    if (!b) continue;
    if (s.fds > b.fds + FD_SLACK) failures.push(`resources: ${s.role} holds ${s.fds} open files ${SETTLE_BOUND_MS / 1000} s after the load, ${b.fds} before it`);
    if (s.rssKiB > b.rssKiB + RSS_SLACK_KIB) failures.push(`resources: ${s.role} RSS ${(s.rssKiB / 1024).toFixed(0)} MiB after the load, ${(b.rssKiB / 1024).toFixed(0)} MiB before it`);
  }

  // The mount must not have logged an error while serving all of this.
  const warnings: SoakReport['warnings'] = [];
  for (const rec of await m.logRecords()) {
    if (typeof rec.time === 'string' && rec.time < logStart) continue;
    if (typeof rec.time === 'number' && new Date(rec.time).toISOString() < logStart) continue;
    const level = typeof rec.level === 'number' ? rec.level : 0;
    if (level >= 50 && failures.length < 40) failures.push(`mount log: ${JSON.stringify(rec).slice(0, 600)}`);
    else if (level === 40) {
      const msg = String(rec.msg);
      const w = warnings.find((x) => x.msg === msg);
      if (w) w.count++;
      else warnings.push({ msg, count: 1, first: JSON.stringify(rec).slice(0, 600) });
    }
  }

  return {
    mode: m.mode, seconds: cfg.seconds, writers: cfg.writers, readers: cfg.readers, elapsedMs: result.elapsedMs,
    counts: result.counts, failures, warnings, before, after, settled, settleMs,
  };
}

export function formatReport(r: SoakReport): string {
  const c = r.counts;
  const s = Math.max(r.elapsedMs, 1) / 1000;
  const mib = (n: number) => (n / MiB).toFixed(1);
  const lines = [
    `${r.mode}: ${s.toFixed(1)} s, ${r.writers} writers + ${r.readers} readers — ${r.failures.length === 0 ? 'PASS' : 'FAIL'}`,
    `  writes: ${c.filesCreated} files created, ${c.overwrites} overwrites, ${c.truncates} truncates, ${c.sharedReplaced} shared replaced by rename, ${c.deletes} deletes, ${c.fsyncs} fsyncs; ` +
      `${mib(c.bytesWritten)} MiB written (${mib(c.bytesWritten / s)} MiB/s, ${((c.filesCreated + c.overwrites + c.truncates + c.sharedReplaced) / s).toFixed(1)} closes/s)`,
    `  reads: ${c.wholeReads} whole + ${c.rangeReads} ranges (${c.sharedReads} of shared files), ${c.writerChecks} writer read-backs, ${c.webChecks} web-API checks; ` +
      `${mib(c.bytesVerified)} MiB verified through the mount (${mib(c.bytesVerified / s)} MiB/s), ${mib(c.webBytes)} MiB through the web API; ` +
      `${c.enoent} ENOENT after delete, ${c.enoentRenameRace} ENOENT racing a rename over the name, ${c.skippedBusy} skipped (busy)`,
  ];
  for (const b of r.before) {
    const a = r.after.find((x) => x.pid === b.pid);
    const z = r.settled.find((x) => x.pid === b.pid);
    lines.push(
      `  ${b.role} (pid ${b.pid}): fds ${b.fds} before, ${a?.fds ?? '-'} right after, ${z?.fds ?? '-'} settled (${(r.settleMs / 1000).toFixed(1)} s); ` +
        `RSS ${mib(b.rssKiB * KiB)} MiB before, ${a ? mib(a.rssKiB * KiB) : '-'} right after, ${z ? mib(z.rssKiB * KiB) : '-'} settled`,
    );
  }
  for (const w of r.warnings) lines.push(`  mount warning (${w.count}x): ${w.first}`);
  for (const f of r.failures) lines.push(`  FAILURE ${f}`);
  return lines.join('\n');
}

// ---- npm run soak ----------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const seconds = Number(process.env.SOAK_SECONDS ?? 60);
  if (!(seconds > 0)) throw new Error(`SOAK_SECONDS must be a positive number, not ${process.env.SOAK_SECONDS}`);
  const log = (msg: string) => console.error(msg);
  let grid: Grid | undefined;
  let current: TestMount | undefined;
  const interrupted = async (code: number) => {
    await current?.cleanup();
    await grid?.stop();
    process.exit(code);
  };
  process.once('SIGINT', () => void interrupted(130));
  process.once('SIGTERM', () => void interrupted(143));
  grid = await startGrid({ log });
  const reports: SoakReport[] = [];
  try {
    for (const mode of MODES) {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl });
      current = m;
      try {
        const report = await soak({ mount: m, seconds, log, ...(process.env.SOAK_SEED ? { seed: Number(process.env.SOAK_SEED) } : {}) });
        reports.push(report);
        if (report.failures.length > 0) log(`mount logs of the failed run are in ${m.nodeDir}${process.env.BLACKMATCH_KEEP_TEST_DIRS ? '' : ' (set BLACKMATCH_KEEP_TEST_DIRS=1 to keep them)'}`);
      } finally {
        await m.cleanup();
        current = undefined;
      }
    }
  } finally {
    await grid.stop();
  }
  console.log(reports.map(formatReport).join('\n\n'));
  return reports.every((r) => r.failures.length === 0) ? 0 : 1;
}

const invokedAs = process.argv[1];
if (invokedAs !== undefined && import.meta.url === pathToFileURL(invokedAs).href) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(`soak failed: ${(e as Error).stack ?? String(e)}`);
      process.exit(1);
    },
  );
}
