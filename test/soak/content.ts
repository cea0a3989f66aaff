// The soak's content model: what every file it writes must hold. A file describes its own content in a
// 16-byte header (seed and version), so any reader can tell, from the bytes alone, what each byte must be; and
// mismatch() says where and how bytes read differ from that, naming the likely source of wrong bytes.
import { rng } from '../support/random.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

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
export const MAX_CHUNK = 256 * KiB;
export const MAX_VERSIONS = 6;
/** No valid file can be longer: the largest original plus MAX_VERSIONS overwrites past its end. */
export const MAX_POSSIBLE = MAX_SIZE + MAX_VERSIONS * MAX_CHUNK;

export interface Header {
  seed: number;
  length: number;
  version: number;
}

/** A bijective 32-bit mixer (lowbias32): word values that depend on every bit of their input. */
export function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

export function between(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

/** Half uniform, half log-uniform: many small values and plenty of large ones. */
export function sizeIn(r: () => number, lo: number, hi: number): number {
  if (r() < 0.5) return between(r, lo, hi);
  return Math.min(hi, Math.max(lo, Math.floor(Math.exp(Math.log(lo) + r() * (Math.log(hi + 1) - Math.log(lo))))));
}

function initialLength(seed: number): number {
  return sizeIn(rng(mix32(seed ^ 0x5eed5eed)), MIN_SIZE, MAX_SIZE);
}

type Change = { kind: 'overwrite'; start: number; end: number } | { kind: 'truncate'; length: number };

/** The change that makes version v of a file of the given length; overwrites may extend the file. */
export function changeAt(seed: number, v: number, length: number): Change {
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
export function shapeOf(seed: number, version: number): Shape {
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

export function headerFor(seed: number, version: number): Header {
  return { seed, version, length: shapeOf(seed, version).length };
}

function hex(b: Buffer, at: number): string {
  return b.subarray(at, at + 16).toString('hex') || '(nothing)';
}

/** Content that bytes read might wrongly be (an older version, another file), named in a mismatch report. */
export interface Suspect {
  what: string;
  bytes: (from: number, to: number) => Buffer;
}

/** null when got equals want; otherwise where and how they differ. */
export function mismatch(got: Buffer, want: Buffer, base: number, others: Suspect[] = []): string | null {
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
