// Micro-benchmark of the RPC's per-frame cost: encode + decode of 128 KiB data frames (src/rpc/frame.ts, with
// whatever CRC-32 it uses), and CRC-32 of 128 KiB buffers alone, by node:zlib and, when it is installed, by
// @node-rs/crc32 (the native package it replaced). Run: node dist/bench/frame-codec.js [ROUNDS]
import { randomBytes } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { encodeFrame, FrameDecoder } from '../src/rpc/frame.js';

type Crc = (data: Buffer, value?: number) => number;

const FRAME_DATA = 128 * 1024;
const frames = Number(process.argv[2] ?? 20_000);
const rounds = 5;
const data = randomBytes(FRAME_DATA);

/** Best of a few rounds, in MiB/s of data: the minimum time is the least disturbed by other processes. */
function measure(label: string, iterations: number, body: () => void): void {
  for (let i = 0; i < iterations / 10; i++) body(); // warm-up
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) body();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  const mibps = (iterations * FRAME_DATA) / (1024 * 1024) / best;
  const usPer = (best / iterations) * 1e6;
  console.log(`${label.padEnd(44)} ${mibps.toFixed(0).padStart(7)} MiB/s  ${usPer.toFixed(1).padStart(6)} µs each`);
}

async function loadNodeRs(): Promise<Crc | undefined> {
  try {
    const name = '@node-rs/crc32'; // a variable, so that the build does not need the package
    return ((await import(name)) as { crc32: Crc }).crc32;
  } catch {
    return undefined;
  }
}

const decoder = new FrameDecoder();
let id = 0;
measure(`encode+decode ${FRAME_DATA / 1024} KiB frame`, frames, () => {
  const parts = encodeFrame({ id: ++id, method: 'write', args: ['/some/file', 3, 0] }, data);
  for (const part of parts) decoder.push(part);
});

const nodeRs = await loadNodeRs();
const impls: Array<[string, Crc]> = [['node:zlib', zlibCrc32]];
if (nodeRs) impls.push(['@node-rs/crc32', nodeRs]);
for (const [name, crc] of impls) {
  if (crc(data, crc(Buffer.from('head'))) !== zlibCrc32(data, zlibCrc32(Buffer.from('head')))) throw new Error(`${name} disagrees with node:zlib`);
  let sink = 0;
  measure(`crc32 ${FRAME_DATA / 1024} KiB, ${name}`, frames, () => {
    sink ^= crc(data);
  });
  if (sink === 0.5) console.log(sink); // keeps the result alive
}
if (!nodeRs) console.log('(@node-rs/crc32 is not installed: only node:zlib measured)');
