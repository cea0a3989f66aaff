// npm run soak: a bounded soak of a live mount. 8 writers and 8 readers work for SOAK_SECONDS (default 60) on
// files of their own and on shared files replaced by rename, in both modes, and every byte read back (through
// the mount and the web API) is checked against content that each file describes in its own header. Open
// file handles and memory of the mount's processes are measured before and after: they must come back.
//
// The load runs in a child process of its own (forked with a larger libuv thread pool): Node's default pool
// of 4 threads would let at most 4 of the 16 workers be inside a filesystem call at once.
import { fork } from 'node:child_process';
import { mkdir, open, readdir, readFile, rename, truncate, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startGrid, type Grid } from '../test/support/grid.js';
import { encodePath, MODES, TestMount, type Mode } from '../test/support/mount.js';

const KiB = 1024;
const MiB = 1024 * KiB;

// ---- self-verifying content ----------------------------------------------------------------------------------
//
// A file is a 16-byte header (magic, seed, length, version; u32 little-endian) and a body generated from the
// seed. Version v > 0 means v in-place changes were applied to the original, each one derived from (seed, v):
// an overwrite of a byte range with layer-v content, or a truncate (shrinking, or growing with zeros). A reader
// replays that short history from the header alone, so every byte has exactly one right value.

const MAGIC = 0x4b534d42; // "BMSK"
export const HEADER_BYTES = 16;
const MIN_SIZE = KiB;
const MAX_SIZE = 3 * MiB;
const MAX_CHUNK = 256 * KiB;
const MAX_VERSIONS = 6;
/** No valid file can be longer: the largest original plus MAX_VERSIONS overwrites past its end. */
const MAX_POSSIBLE = MAX_SIZE + MAX_VERSIONS * MAX_CHUNK;

export interface Header {
  seed: number;
  length: number;
  version: number;
}

/** A bijective 32-bit mixer (lowbias32): word values that depend on every bit of their input. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

import { rng } from '../test/support/random.js';

export { rng };

function between(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

/** Half uniform, half log-uniform: many small values and plenty of large ones. */
function sizeIn(r: () => number, lo: number, hi: number): number {
  if (r() < 0.5) return between(r, lo, hi);
  return Math.min(hi, Math.max(lo, Math.floor(Math.exp(Math.log(lo) + r() * (Math.log(hi + 1) - Math.log(lo))))));
}

function initialLength(seed: number): number {
  return sizeIn(rng(mix32(seed ^ 0x5eed5eed)), MIN_SIZE, MAX_SIZE);
}

type Change = { kind: 'overwrite'; start: number; end: number } | { kind: 'truncate'; length: number };

/** The change that makes version v of a file of the given length; overwrites may extend the file. */
function changeAt(seed: number, v: number, length: number): Change {
  const r = rng(mix32(seed ^ mix32(v)));
  if (r() < 0.7) {
    const start = between(r, HEADER_BYTES, length);
    return { kind: 'overwrite', start, end: start + sizeIn(r, 1, MAX_CHUNK) };
  }
  return { kind: 'truncate', length: sizeIn(r, MIN_SIZE, MAX_SIZE) };
}

/** -1: zeros (a truncate grew the file); 0: the original; v: the overwrite that made version v. */
interface Segment {
  start: number;
  end: number;
  layer: number;
}

interface Shape {
  length: number;
  segments: Segment[];
}

function cut(segments: Segment[], from: number, to: number): Segment[] {
  const out: Segment[] = [];
  for (const s of segments) {
    if (s.end <= from || s.start >= to) out.push(s);
    else {
      if (s.start < from) out.push({ ...s, end: from });
      if (s.end > to) out.push({ ...s, start: to });
    }
  }
  return out;
}

/** Replays a file's history up to version. */
function shapeOf(seed: number, version: number): Shape {
  let length = initialLength(seed);
  let segments: Segment[] = [{ start: HEADER_BYTES, end: length, layer: 0 }];
  for (let v = 1; v <= version; v++) {
    const c = changeAt(seed, v, length);
    if (c.kind === 'overwrite') {
      segments = cut(segments, c.start, c.end);
      segments.push({ start: c.start, end: c.end, layer: v });
      length = Math.max(length, c.end);
    } else if (c.length < length) {
      segments = cut(segments, c.length, length);
      length = c.length;
    } else {
      segments.push({ start: length, end: c.length, layer: -1 });
      length = c.length;
    }
  }
  segments.sort((a, b) => a.start - b.start);
  return { length, segments };
}

export function encodeHeader(h: Header): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(h.seed, 4);
  b.writeUInt32LE(h.length, 8);
  b.writeUInt32LE(h.version, 12);
  return b;
}

/** Parses and checks a header against the history it names; a string says what is wrong with it. */
export function parseHeader(b: Buffer): Header | string {
  if (b.length < HEADER_BYTES) return `only ${b.length} bytes, shorter than a header`;
  if (b.readUInt32LE(0) !== MAGIC) return `bad magic ${b.subarray(0, HEADER_BYTES).toString('hex')}`;
  const h = { seed: b.readUInt32LE(4), length: b.readUInt32LE(8), version: b.readUInt32LE(12) };
  if (h.version > MAX_VERSIONS) return `impossible version ${h.version} in header ${b.subarray(0, HEADER_BYTES).toString('hex')}`;
  const want = shapeOf(h.seed, h.version).length;
  if (h.length !== want) return `header length ${h.length}, but seed ${h.seed} version ${h.version} has ${want}`;
  return h;
}

/** Layer content of [from, to): 4-byte words, each a function of (seed, layer, word index). */
function fillLayer(out: Buffer, outBase: number, seed: number, layer: number, from: number, to: number): void {
  const key = mix32(seed ^ Math.imul(layer + 1, 0x9e3779b9));
  const w0 = Math.floor(from / 4);
  const w1 = Math.ceil(to / 4);
  const words = new Uint32Array(w1 - w0);
  for (let w = w0; w < w1; w++) words[w - w0] = mix32((key ^ Math.imul(w, 0x85ebca6b)) >>> 0);
  // Host byte order: the content is only ever generated and checked on this machine.
  const bytes = Buffer.from(words.buffer, words.byteOffset, words.byteLength);
  bytes.copy(out, from - outBase, from - w0 * 4, to - w0 * 4);
}

/** The bytes [from, to) of the file the header describes (clipped to its length). */
export function expectedBytes(h: Header, from: number, to: number, shape = shapeOf(h.seed, h.version)): Buffer {
  to = Math.min(to, shape.length);
  if (to <= from) return Buffer.alloc(0);
  const out = Buffer.alloc(to - from); // zeros, for layer -1
  if (from < HEADER_BYTES) encodeHeader(h).copy(out, 0, from, Math.min(HEADER_BYTES, to));
  for (const s of shape.segments) {
    const lo = Math.max(s.start, from);
    const hi = Math.min(s.end, to);
    if (lo < hi && s.layer >= 0) fillLayer(out, from, h.seed, s.layer, lo, hi);
  }
  return out;
}

function headerFor(seed: number, version: number): Header {
  return { seed, version, length: shapeOf(seed, version).length };
}

function hex(b: Buffer, at: number): string {
  return b.subarray(at, at + 16).toString('hex') || '(nothing)';
}

/** Content that bytes read might wrongly be (an older version, another file), named in a mismatch report. */
interface Suspect {
  what: string;
  bytes: (from: number, to: number) => Buffer;
}

/** null when got equals want; otherwise where and how they differ. */
function mismatch(got: Buffer, want: Buffer, base: number, others: Suspect[] = []): string | null {
  if (got.equals(want)) return null;
  const n = Math.min(got.length, want.length);
  let first = -1;
  let differing = 0;
  for (let i = 0; i < n; i++) {
    if (got[i] !== want[i]) {
      if (first < 0) first = i;
      differing++;
    }
  }
  if (first < 0) return `length ${got.length} bytes from offset ${base}, expected ${want.length} (the bytes in common match)`;
  const at = base + first;
  let text = `first difference at offset ${at} (${differing} of ${n} bytes differ in ${base}..${base + n}`;
  text += got.length !== want.length ? `; length ${got.length}, expected ${want.length})` : ')';
  text += `: expected ${hex(want, first)} got ${hex(got, first)}`;
  const window = got.subarray(first, first + 64);
  if (window.every((x) => x === 0)) text += '; the bytes there are zeros';
  for (const o of others) {
    if (o.bytes(at, at + window.length).equals(window)) text += `; the bytes there are those of ${o.what}`;
  }
  return text;
}

// ---- the load (runs in the forked child) ---------------------------------------------------------------------

export interface LoadCounts {
  filesCreated: number;
  overwrites: number;
  truncates: number;
  sharedReplaced: number;
  deletes: number;
  fsyncs: number;
  writerChecks: number;
  webChecks: number;
  wholeReads: number;
  rangeReads: number;
  sharedReads: number;
  enoent: number;
  /** ENOENT opening a shared name while a rename over it was in flight (see readShared). */
  enoentRenameRace: number;
  skippedBusy: number;
  bytesWritten: number;
  bytesVerified: number;
  webBytes: number;
}

interface LoadConfig {
  mountpoint: string;
  gatewayUrl: string;
  rootCap: string;
  /** Directory of this soak, relative to the mounted root. */
  base: string;
  seconds: number;
  writers: number;
  readers: number;
  seed: number;
}

interface LoadResult {
  elapsedMs: number;
  counts: LoadCounts;
  failures: string[];
}

type ToChild = { type: 'start'; config: LoadConfig } | { type: 'go' };
type FromChild = { type: 'warm' } | { type: 'log'; line: string } | { type: 'done'; result: LoadResult };

interface OwnFile {
  name: string;
  rel: string;
  abs: string;
  seed: number;
  version: number;
  /** Being created or changed: readers leave it alone. */
  busy: boolean;
  /** Readers reading it now: a writer waits for them before changing it in place. */
  leases: number;
  deleted: boolean;
}

interface SharedVersion {
  length: number;
  /** Event-clock values around the rename that installed it. */
  startedAt: number;
  doneAt?: number;
}

interface SharedFile {
  name: string;
  rel: string;
  abs: string;
  versions: Map<number, SharedVersion>;
}

const OWN_NAME = /^w\d+-\d+\.bin$/;
const SHARED_FILES = 3;
const OWN_FILES_PER_WRITER = 3;
/** Share of new files that are fsync'd before close (fsync uploads too; close then has nothing left to do). */
const FSYNC_SHARE = 0.1;

class Failure extends Error {}

function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Runs one filesystem step; an error names the step and the file. */
async function step<T>(what: string, rel: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof Failure) throw e;
    const code = errnoOf(e);
    const message = (e as Error).message;
    const err = new Failure(`${what} ${rel}: ${code && !message.startsWith(code) ? `${code}: ` : ''}${message}`);
    (err as NodeJS.ErrnoException).code = errnoOf(e);
    throw err;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function pick<T>(r: () => number, items: T[]): T {
  return items[Math.floor(r() * items.length)]!;
}

class Load {
  private readonly counts = emptyCounts();
  private readonly failures: string[] = [];
  private stopped = false;
  private deadline = 0;
  private clock = 0;
  private nextSeed: number;
  private readonly files = new Map<string, OwnFile>();
  private readonly shared: SharedFile[] = [];
  private readonly dataAbs: string;
  private readonly sharedAbs: string;

  constructor(
    private readonly cfg: LoadConfig,
    private readonly log: (line: string) => void,
  ) {
    this.nextSeed = mix32(cfg.seed);
    this.dataAbs = join(cfg.mountpoint, cfg.base, 'data');
    this.sharedAbs = join(cfg.mountpoint, cfg.base, 'shared');
  }

  private running(): boolean {
    return !this.stopped && Date.now() < this.deadline;
  }

  private fail(who: string, what: string): void {
    if (this.failures.length < 20) this.failures.push(`${who}: ${what}`);
    if (!this.stopped) this.log(`FAILURE ${who}: ${what}`);
    this.stopped = true;
  }

  /** Seeds are unique within a run, so a seed names one version of one file. */
  private newSeed(): number {
    this.nextSeed = (this.nextSeed + 0x9e3779b9) >>> 0;
    return mix32(this.nextSeed);
  }

  /** Directories, the shared files' first versions, and a little of every operation, so that pools exist. */
  async warmUp(): Promise<void> {
    const baseAbs = join(this.cfg.mountpoint, this.cfg.base);
    await step('mkdir', this.cfg.base, () => mkdir(baseAbs));
    await step('mkdir', 'data', () => mkdir(this.dataAbs));
    await step('mkdir', 'shared', () => mkdir(this.sharedAbs));
    const r = rng(this.cfg.seed ^ 0x77a4);
    for (let i = 0; i < SHARED_FILES; i++) {
      const name = `s${i}.bin`;
      const s: SharedFile = { name, rel: `${this.cfg.base}/shared/${name}`, abs: join(this.sharedAbs, name), versions: new Map() };
      const seed = this.newSeed();
      const h = headerFor(seed, 0);
      await this.writeNew(s.abs, s.rel, h, r);
      s.versions.set(seed, { length: h.length, startedAt: ++this.clock, doneAt: ++this.clock });
      this.shared.push(s);
    }
    const warm = join(baseAbs, 'warm.bin');
    const h = headerFor(this.newSeed(), 0);
    await this.writeNew(warm, 'warm.bin', h, r);
    await this.checkWhole('warm-up', warm, `${this.cfg.base}/warm.bin`, r, h);
    await this.checkWeb('warm-up', `${this.cfg.base}/warm.bin`, h);
    await step('rename', 'warm.bin', () => rename(warm, join(baseAbs, 'warm2.bin')));
    await step('readdir', this.cfg.base, () => readdir(baseAbs));
    await step('unlink', 'warm2.bin', () => unlink(join(baseAbs, 'warm2.bin')));
    Object.assign(this.counts, emptyCounts()); // the report counts the load only
  }

  async run(): Promise<LoadResult> {
    const started = Date.now();
    this.deadline = started + this.cfg.seconds * 1000;
    const ticker = setInterval(() => this.log(this.progress(started)), 5000);
    try {
      await Promise.all([
        ...Array.from({ length: this.cfg.writers }, (_, i) => this.writer(i)),
        ...Array.from({ length: this.cfg.readers }, (_, i) => this.reader(i)),
      ]);
    } finally {
      clearInterval(ticker);
    }
    return { elapsedMs: Date.now() - started, counts: { ...this.counts }, failures: [...this.failures] };
  }

  private progress(started: number): string {
    const c = this.counts;
    const s = (Date.now() - started) / 1000;
    return `${s.toFixed(0)} s: ${c.filesCreated} created, ${c.overwrites + c.truncates} changed, ${c.sharedReplaced} shared replaced, ` +
      `${c.wholeReads + c.rangeReads + c.writerChecks} reads checked, ${(c.bytesWritten / MiB).toFixed(1)} MiB written, ` +
      `${(c.bytesVerified / MiB).toFixed(1)} MiB verified`;
  }

  // ---- writers ----

  private async writer(w: number): Promise<void> {
    const r = rng(this.cfg.seed ^ mix32(w + 1));
    const mine: OwnFile[] = [];
    let serial = 0;
    while (this.running()) {
      try {
        const p = r();
        const changeable = mine.filter((f) => f.version < MAX_VERSIONS);
        if (changeable.length === 0 || p < 0.4) await this.createOwn(w, serial++, r, mine);
        else if (p < 0.7) await this.changeOwn(w, pick(r, changeable), r);
        else if (p < 0.93) await this.replaceShared(w, serial++, r);
        else await this.deleteOwn(mine.splice(Math.floor(r() * mine.length), 1)[0]!);
      } catch (e) {
        this.fail(`writer ${w}`, (e as Error).message);
      }
    }
  }

  /** Writes a new file in chunks of random sizes, sometimes out of order, sometimes with an fsync midway. */
  private async writeNew(abs: string, rel: string, h: Header, r: () => number): Promise<void> {
    const content = expectedBytes(h, 0, h.length);
    const fh = await step('create', rel, () => open(abs, 'wx'));
    try {
      await this.writeChunks(fh, rel, content, 0, r, r() < 0.2);
      if (r() < FSYNC_SHARE) {
        this.counts.fsyncs++;
        await step('fsync', rel, () => fh.sync());
      }
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
    // close() returns once the web API serves the new bytes: the moment the file counts as written.
    await step('close', rel, () => fh.close());
    this.counts.bytesWritten += content.length;
  }

  private async writeChunks(fh: FileHandle, rel: string, data: Buffer, at: number, r: () => number, shuffled: boolean): Promise<void> {
    const chunks: Array<[number, number]> = [];
    for (let off = 0; off < data.length; ) {
      const n = Math.min(data.length - off, sizeIn(r, 1, MAX_CHUNK));
      chunks.push([off, n]);
      off += n;
    }
    if (shuffled) {
      for (let i = chunks.length - 1; i > 0; i--) {
        const j = Math.floor(r() * (i + 1));
        [chunks[i], chunks[j]] = [chunks[j]!, chunks[i]!];
      }
    }
    for (const [off, n] of chunks) {
      let done = 0;
      while (done < n) {
        const { bytesWritten } = await step('write', rel, () => fh.write(data, off + done, n - done, at + off + done));
        if (bytesWritten <= 0) throw new Failure(`write ${rel}: wrote ${bytesWritten} bytes at ${at + off + done}`);
        done += bytesWritten;
      }
    }
  }

  private async createOwn(w: number, serial: number, r: () => number, mine: OwnFile[]): Promise<void> {
    // Bounded data: the oldest file goes first.
    while (mine.length >= OWN_FILES_PER_WRITER) await this.deleteOwn(mine.shift()!);
    const name = `w${w}-${serial}.bin`;
    const f: OwnFile = {
      name, rel: `${this.cfg.base}/data/${name}`, abs: join(this.dataAbs, name), seed: this.newSeed(), version: 0,
      busy: true, leases: 0, deleted: false,
    };
    this.files.set(name, f);
    mine.push(f);
    await this.writeNew(f.abs, f.rel, headerFor(f.seed, 0), r);
    this.counts.filesCreated++;
    f.busy = false;
    await this.checkOwn(`writer ${w}`, f, r);
  }

  /** The next change of the file's history, in place: an overwrite or a truncate, then the new header. */
  private async changeOwn(w: number, f: OwnFile, r: () => number): Promise<void> {
    f.busy = true;
    const waitUntil = Date.now() + 120_000;
    while (f.leases > 0) {
      if (Date.now() > waitUntil) throw new Failure(`readers of ${f.rel} did not finish within 120 s`);
      await sleep(5);
    }
    const before = headerFor(f.seed, f.version);
    const next = headerFor(f.seed, f.version + 1);
    const shape = shapeOf(f.seed, next.version);
    const change = changeAt(f.seed, next.version, before.length);
    if (change.kind === 'truncate' && r() < 0.5) {
      // truncate(2) by path stores the result itself; the header follows through a handle.
      await step('truncate', f.rel, () => truncate(f.abs, change.length));
      const fh = await step('open r+', f.rel, () => open(f.abs, 'r+'));
      try {
        await this.writeChunks(fh, f.rel, encodeHeader(next), 0, r, false);
      } catch (e) {
        await fh.close().catch(() => undefined);
        throw e;
      }
      await step('close', f.rel, () => fh.close());
    } else {
      const fh = await step('open r+', f.rel, () => open(f.abs, 'r+'));
      try {
        const headerFirst = r() < 0.3;
        if (headerFirst) await this.writeChunks(fh, f.rel, encodeHeader(next), 0, r, false);
        if (change.kind === 'truncate') await step('ftruncate', f.rel, () => fh.truncate(change.length));
        else {
          const data = expectedBytes(next, change.start, change.end, shape);
          await this.writeChunks(fh, f.rel, data, change.start, r, r() < 0.2);
          this.counts.bytesWritten += data.length;
        }
        if (!headerFirst) await this.writeChunks(fh, f.rel, encodeHeader(next), 0, r, false);
      } catch (e) {
        await fh.close().catch(() => undefined);
        throw e;
      }
      await step('close', f.rel, () => fh.close());
    }
    f.version = next.version;
    if (change.kind === 'truncate') this.counts.truncates++;
    else this.counts.overwrites++;
    f.busy = false;
    await this.checkOwn(`writer ${w} (after ${change.kind} to version ${next.version})`, f, r);
  }

  private async deleteOwn(f: OwnFile): Promise<void> {
    // Readers may hold it open: POSIX lets them read on; a reader that had not opened it yet sees ENOENT.
    f.deleted = true;
    await step('unlink', f.rel, () => unlink(f.abs));
    this.counts.deletes++;
  }

  /** A new version of a shared file: written under a temporary name in the same directory, renamed over it. */
  private async replaceShared(w: number, serial: number, r: () => number): Promise<void> {
    const s = pick(r, this.shared);
    const tmpName = `.tmp-w${w}-${serial}`;
    const tmpAbs = join(this.sharedAbs, tmpName);
    const h = headerFor(this.newSeed(), 0);
    await this.writeNew(tmpAbs, `${this.cfg.base}/shared/${tmpName}`, h, r);
    const v: SharedVersion = { length: h.length, startedAt: ++this.clock };
    s.versions.set(h.seed, v);
    await step('rename over', s.rel, () => rename(tmpAbs, s.abs));
    v.doneAt = ++this.clock;
    this.counts.sharedReplaced++;
  }

  /** The writer's own check after close: the whole file through the mount, and now and then the web API. */
  private async checkOwn(who: string, f: OwnFile, r: () => number): Promise<void> {
    const h = headerFor(f.seed, f.version);
    await this.checkWhole(who, f.abs, f.rel, r, h, this.previousOf(f));
    this.counts.writerChecks++;
    if (r() < 0.25) await this.checkWeb(who, f.rel, h, this.previousOf(f));
  }

  private previousOf(f: OwnFile): Suspect[] {
    if (f.version === 0) return [];
    const prev = headerFor(f.seed, f.version - 1);
    return [{ what: `the previous version (${f.version - 1})`, bytes: (a, b) => expectedBytes(prev, a, b) }];
  }

  private async checkWhole(who: string, abs: string, rel: string, r: () => number, want: Header, others: Suspect[] = []): Promise<void> {
    const fh = await step('open', rel, () => open(abs, 'r'));
    try {
      const got = await this.readWhole(fh, rel, r);
      const problem = mismatch(got, expectedBytes(want, 0, want.length), 0, others);
      if (problem) throw new Failure(`${who}: read back ${rel} (seed ${want.seed} version ${want.version}): ${problem}`);
      this.counts.bytesVerified += got.length;
    } finally {
      await step('close (read)', rel, () => fh.close());
    }
  }

  private async checkWeb(who: string, rel: string, want: Header, others: Suspect[] = []): Promise<void> {
    const url = `${this.cfg.gatewayUrl}uri/${encodeURIComponent(this.cfg.rootCap)}/${encodePath(rel)}`;
    const res = await step('web GET', rel, () => fetch(url, { signal: AbortSignal.timeout(120_000) }));
    if (!res.ok) throw new Failure(`${who}: web GET ${rel} after close: HTTP ${res.status}`);
    const got = Buffer.from(await step('web GET body', rel, () => res.arrayBuffer()));
    const problem = mismatch(got, expectedBytes(want, 0, want.length), 0, others);
    if (problem) throw new Failure(`${who}: web GET ${rel} (seed ${want.seed} version ${want.version}): ${problem}`);
    this.counts.webChecks++;
    this.counts.webBytes += got.length;
  }

  // ---- readers ----

  private async reader(i: number): Promise<void> {
    const r = rng(this.cfg.seed ^ mix32(1000 + i));
    while (this.running()) {
      try {
        if (r() < 0.4) await this.readShared(r);
        else await this.readOwn(r);
      } catch (e) {
        this.fail(`reader ${i}`, (e as Error).message);
      }
    }
  }

  /** Reads from pread calls of random sizes until EOF; never trusts a size from stat. */
  private async readWhole(fh: FileHandle, rel: string, r: () => number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let pos = 0;
    for (;;) {
      const buf = Buffer.alloc(sizeIn(r, 1, MAX_CHUNK));
      const { bytesRead } = await step('read', rel, () => fh.read(buf, 0, buf.length, pos));
      if (bytesRead === 0) break;
      parts.push(buf.subarray(0, bytesRead));
      pos += bytesRead;
      if (pos > MAX_POSSIBLE) throw new Failure(`read ${rel}: more than ${MAX_POSSIBLE} bytes, longer than any file written`);
    }
    return Buffer.concat(parts);
  }

  private async readAt(fh: FileHandle, rel: string, pos: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await step('read', rel, () => fh.read(buf, done, length - done, pos + done));
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buf.subarray(0, done);
  }

  /**
   * Reads an open file whole or in a random range and checks it against its own header; returns the header.
   * others: content the bytes might wrongly be (for the report).
   */
  private async readAndCheck(fh: FileHandle, rel: string, r: () => number, othersFor: () => Suspect[]): Promise<Header> {
    if (r() < 0.5) {
      const got = await this.readWhole(fh, rel, r);
      const h = parseHeader(got);
      if (typeof h === 'string') throw new Failure(`read ${rel}: ${h}`);
      const problem = mismatch(got, expectedBytes(h, 0, h.length), 0, othersFor());
      if (problem) throw new Failure(`read ${rel} whole (seed ${h.seed} version ${h.version}): ${problem}`);
      const size = (await step('fstat', rel, () => fh.stat())).size;
      if (size !== got.length) throw new Failure(`fstat ${rel}: size ${size}, but ${got.length} bytes were read`);
      this.counts.wholeReads++;
      this.counts.bytesVerified += got.length;
      return h;
    }
    const h = parseHeader(await this.readAt(fh, rel, 0, HEADER_BYTES));
    if (typeof h === 'string') throw new Failure(`read ${rel} header: ${h}`);
    const from = between(r, 0, h.length);
    const n = sizeIn(r, 1, MiB);
    const got = await this.readAt(fh, rel, from, n);
    const problem = mismatch(got, expectedBytes(h, from, from + n), from, othersFor());
    if (problem) throw new Failure(`read ${rel} range from ${from} (seed ${h.seed} version ${h.version}): ${problem}`);
    const beyond = await this.readAt(fh, rel, h.length, 1);
    if (beyond.length !== 0) throw new Failure(`read ${rel}: data at offset ${h.length}, past the end its header gives`);
    this.counts.rangeReads++;
    this.counts.bytesVerified += got.length;
    return h;
  }

  private async readOwn(r: () => number): Promise<void> {
    const names = await step('readdir', `${this.cfg.base}/data`, () => readdir(this.dataAbs));
    for (const n of names) {
      if (!OWN_NAME.test(n) && !n.startsWith('.fuse_hidden')) throw new Failure(`readdir ${this.cfg.base}/data: unexpected name ${JSON.stringify(n)}`);
      if (OWN_NAME.test(n) && !this.files.has(n)) throw new Failure(`readdir ${this.cfg.base}/data: lists ${n}, which was never created`);
    }
    const candidates = names.filter((n) => OWN_NAME.test(n));
    if (candidates.length === 0) return sleep(20);
    const f = this.files.get(pick(r, candidates))!;
    if (f.busy || f.deleted) {
      this.counts.skippedBusy++;
      return sleep(2);
    }
    f.leases++;
    try {
      let fh: FileHandle;
      try {
        fh = await step('open', f.rel, () => open(f.abs, 'r'));
      } catch (e) {
        // Deleted between listing and open: fine. Anything else, or ENOENT for a file that exists, is not.
        if (errnoOf(e) === 'ENOENT' && f.deleted) {
          this.counts.enoent++;
          return;
        }
        throw e;
      }
      try {
        const h = await this.readAndCheck(fh, f.rel, r, () => this.previousOf(f));
        // Nobody changed it while we held the lease: the content must be the last version closed.
        if (h.seed !== f.seed || h.version !== f.version) {
          throw new Failure(`read ${f.rel}: stale or foreign content: seed ${h.seed} version ${h.version}, but the last close wrote seed ${f.seed} version ${f.version}`);
        }
      } finally {
        await step('close (read)', f.rel, () => fh.close());
      }
    } finally {
      f.leases--;
    }
  }

  private async readShared(r: () => number): Promise<void> {
    const rel = `${this.cfg.base}/shared`;
    const names = await step('readdir', rel, () => readdir(this.sharedAbs));
    for (const s of this.shared) {
      if (!names.includes(s.name)) throw new Failure(`readdir ${rel}: ${s.name} is missing, though every replacement is a rename over it`);
    }
    for (const n of names) {
      if (!this.shared.some((s) => s.name === n) && !n.startsWith('.tmp-') && !n.startsWith('.fuse_hidden')) {
        throw new Failure(`readdir ${rel}: unexpected name ${JSON.stringify(n)}`);
      }
    }
    const s = pick(r, this.shared);
    const t0 = ++this.clock;
    let fh: FileHandle;
    try {
      fh = await step('open', s.rel, () => open(s.abs, 'r'));
    } catch (e) {
      // libfuse 2's high-level API fails an open that waited on a rename over the same name with ENOENT (the
      // replaced node is unhashed; fuse.c try_get_path): tolerated only while such a rename was in flight.
      const t1 = ++this.clock;
      const racing = [...s.versions.values()].some((v) => v.startedAt < t1 && (v.doneAt === undefined || v.doneAt > t0));
      if (errnoOf(e) === 'ENOENT' && racing) {
        this.counts.enoentRenameRace++;
        return;
      }
      throw new Failure(`${(e as Error).message}${errnoOf(e) === 'ENOENT' ? ' (no rename over it was in flight)' : ''}`);
    }
    try {
      const h = await this.readAndCheck(fh, s.rel, r, () => this.otherShared(s));
      if (h.version !== 0) throw new Failure(`read ${s.rel}: version ${h.version}, but shared files are only ever replaced whole`);
      const v = s.versions.get(h.seed);
      if (!v) throw new Failure(`read ${s.rel}: content of seed ${h.seed}, which was never renamed to ${s.name}`);
      // Stale: a later version's rename started after this one's finished and finished before our open began.
      for (const [seed, o] of s.versions) {
        if (v.doneAt !== undefined && o.doneAt !== undefined && o.startedAt > v.doneAt && o.doneAt < t0) {
          throw new Failure(`read ${s.rel}: stale version (seed ${h.seed}); seed ${seed} had replaced it before open`);
        }
      }
      this.counts.sharedReads++;
    } finally {
      await step('close (read)', s.rel, () => fh.close());
    }
  }

  /** Other recent versions of a shared file, to tell a mix of versions apart from other corruption. */
  private otherShared(s: SharedFile): Suspect[] {
    return [...s.versions].slice(-12).map(([seed, v]) => ({
      what: `version seed ${seed} of ${s.name}`,
      bytes: (a: number, b: number) => expectedBytes({ seed, version: 0, length: v.length }, a, b),
    }));
  }
}

/** The forked child: setup and warm-up, then the load when the parent has measured its baseline. */
function loadChild(): void {
  const send = (m: FromChild, then?: () => void) => process.send?.(m, undefined, {}, () => then?.());
  let load: Load | undefined;
  process.on('disconnect', () => process.exit(1));
  process.on('message', (m: ToChild) => {
    if (m.type === 'start') {
      load = new Load(m.config, (line) => send({ type: 'log', line }));
      load.warmUp().then(
        () => send({ type: 'warm' }),
        (e: unknown) =>
          send({ type: 'done', result: { elapsedMs: 0, counts: emptyCounts(), failures: [`warm-up: ${(e as Error).message}`] } }, () => process.disconnect()),
      );
    } else if (m.type === 'go' && load) {
      void load.run().then((result) => send({ type: 'done', result }, () => process.disconnect()));
    }
  });
}

function emptyCounts(): LoadCounts {
  return {
    filesCreated: 0, overwrites: 0, truncates: 0, sharedReplaced: 0, deletes: 0, fsyncs: 0, writerChecks: 0,
    webChecks: 0, wholeReads: 0, rangeReads: 0, sharedReads: 0, enoent: 0, enoentRenameRace: 0, skippedBusy: 0, bytesWritten: 0,
    bytesVerified: 0, webBytes: 0,
  };
}

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
  const child = fork(fileURLToPath(import.meta.url), ['--load-child'], { env, execArgv: [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
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
  if (process.argv.includes('--load-child')) loadChild();
  else {
    main().then(
      (code) => process.exit(code),
      (e: unknown) => {
        console.error(`soak failed: ${(e as Error).stack ?? String(e)}`);
        process.exit(1);
      },
    );
  }
}
