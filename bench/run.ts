// npm run bench: throughput of a mounted blackmatch, both modes, beside a null FUSE filesystem served by the
// same binding (the ceiling), all measured in one run on one grid. Prints a table and writes it as markdown
// to bench/results.md. A benchmark, not a test: it asserts nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGrid } from '../test/support/grid.js';
import { TestMount, type Mode } from '../test/support/mount.js';
import { unmountPath } from '../src/fuse/adapter.js';

const MiB = 1024 * 1024;
const SIZE = Number(process.env.BLACKMATCH_BENCH_MIB ?? 256) * MiB;
const RUNS = 3;
const CHUNK = MiB;
const here = dirname(fileURLToPath(import.meta.url));
const resultsFile = join(here, '..', '..', 'bench', 'results.md');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);

async function timeRead(path: string): Promise<number> {
  const fh = await open(path, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  const t0 = performance.now();
  let total = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, CHUNK, total);
    if (bytesRead === 0) break;
    total += bytesRead;
  }
  const ms = performance.now() - t0;
  await fh.close();
  if (total !== SIZE) throw new Error(`read ${total} bytes of ${SIZE} from ${path}`);
  return ms;
}

/** Times the writes alone, then close() separately (blackmatch uploads at close). */
async function timeWrite(path: string, data: Buffer): Promise<{ writeMs: number; closeMs: number }> {
  const fh = await open(path, 'w');
  const t0 = performance.now();
  for (let off = 0; off < SIZE; off += CHUNK) await fh.write(data, 0, CHUNK, off);
  const t1 = performance.now();
  await fh.close();
  return { writeMs: t1 - t0, closeMs: performance.now() - t1 };
}

async function startNullFs(mountpoint: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(here, 'null-fs.js'), mountpoint, String(SIZE)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`null fs exited (${code})`)));
  });
  return child;
}

interface Row {
  read: number;
  write: number;
  writeWithClose?: number;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'bm-bench-'));
  const data = Buffer.alloc(CHUNK);
  for (let i = 0; i < data.length; i++) data[i] = (i * 131) % 251;
  const results: Record<string, Row> = {};
  console.error(`bench: ${SIZE / MiB} MiB file, ${RUNS} runs each, median reported`);

  const nullMnt = join(work, 'null');
  await mkdir(nullMnt);
  const nullFs = await startNullFs(nullMnt);
  try {
    const reads = [];
    const writes = [];
    for (let i = 0; i < RUNS; i++) reads.push(mbps(SIZE, await timeRead(join(nullMnt, 'data'))));
    for (let i = 0; i < RUNS; i++) writes.push(mbps(SIZE, (await timeWrite(join(nullMnt, 'data'), data)).writeMs));
    results['null FUSE (ceiling)'] = { read: median(reads), write: median(writes) };
  } finally {
    await unmountPath(nullMnt);
    nullFs.kill();
  }

  const grid = await startGrid({ log: (m) => console.error(m) });
  try {
    for (const mode of ['no-split', 'split'] as Mode[]) {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, cacheTimeout: 60, extraArgs: ['--log-level', 'info'] });
      try {
        const writes = [];
        const withClose = [];
        for (let i = 0; i < RUNS; i++) {
          const { writeMs, closeMs } = await timeWrite(m.path('big'), data);
          writes.push(mbps(SIZE, writeMs));
          withClose.push(mbps(SIZE, writeMs + closeMs));
        }
        await timeRead(m.path('big')); // warms the cache: the benchmark measures a cached file
        const reads = [];
        for (let i = 0; i < RUNS; i++) reads.push(mbps(SIZE, await timeRead(m.path('big'))));
        results[`blackmatch ${mode}`] = { read: median(reads), write: median(writes), writeWithClose: median(withClose) };
      } finally {
        await m.cleanup();
      }
    }
  } finally {
    await grid.stop();
    await rm(work, { recursive: true, force: true });
  }

  const ceiling = results['null FUSE (ceiling)']!;
  const noSplit = results['blackmatch no-split']!;
  const split = results['blackmatch split']!;
  const pct = (a: number, b: number) => `${((100 * a) / b).toFixed(0)}%`;
  const lines = [
    `# blackmatch benchmark`,
    '',
    `Sequential ${SIZE / MiB} MiB, 1 MiB application reads and writes (FUSE moves 128 KiB per request), median of ${RUNS};`,
    `reads of a file already in blackmatch's cache; writes timed until the last write() returns, and separately`,
    `until close() returns (close uploads the file to the grid). Machine: ${process.arch}, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.`,
    '',
    '| | read MB/s | write MB/s | write + close MB/s |',
    '| --- | ---: | ---: | ---: |',
    ...Object.entries(results).map(([name, r]) => `| ${name} | ${r.read.toFixed(0)} | ${r.write.toFixed(0)} | ${r.writeWithClose?.toFixed(0) ?? '-'} |`),
    '',
    '| ratio | read | write | aim |',
    '| --- | ---: | ---: | --- |',
    `| split / no-split | ${pct(split.read, noSplit.read)} | ${pct(split.write, noSplit.write)} | >= 80% |`,
    `| no-split / ceiling | ${pct(noSplit.read, ceiling.read)} | ${pct(noSplit.write, ceiling.write)} | >= 70% |`,
    '',
  ];
  const text = lines.join('\n');
  console.log(text);
  await writeFile(resultsFile, text);
  console.error(`bench: written to ${resultsFile}`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
