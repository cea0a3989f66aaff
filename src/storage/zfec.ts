// zfec, the erasure code of Tahoe's immutable shares, byte-exact with zfec 1.5 (Luigi Rizzo's fec as zfec builds it):
// GF(2^8) arithmetic, the systematic encoding matrix of a (k, n) code, and encoding/decoding whole blocks.
//
// The construction, in zfec's own terms (not its code):
// - the field is GF(2^8) modulo x^8 + x^4 + x^3 + x^2 + 1 (0x11d), with alpha = x as generator;
// - a Vandermonde matrix V (n x k) evaluates at 0, alpha^0, alpha^1, ..., alpha^(n-2): row 0 is [1, 0, ..., 0] and
//   row r >= 1 is [alpha^((r-1)*c) for c in 0..k-1];
// - the encoding matrix is V * inverse(top k x k of V), so its top k rows are the identity (share i < k is primary
//   block i) and share s is row s dotted with the k primary blocks;
// - decoding takes the encoding rows of the k shares at hand and inverts that k x k matrix.
// Matrix inverses are unique, so any correct inversion gives zfec's bytes; we do not mimic its algorithm.
//
// Errors are RangeErrors; matrices are cached per (k, n) and per (k, n, share numbers) since a file's segments all
// use the same ones.

const FIELD_POLY = 0x11d;

// EXP has 510 entries so that EXP[LOG[a] + LOG[b]] needs no reduction mod 255.
const EXP = new Uint8Array(510);
const LOG = new Uint8Array(256);
// MUL[a * 256 + b] = a * b; 64 KiB, and MUL.subarray(c * 256, c * 256 + 256) is the table of multiplication by c.
const MUL = new Uint8Array(65536);
const INV = new Uint8Array(256);

(function initField(): void {
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    EXP[i + 255] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= FIELD_POLY;
  }
  for (let a = 1; a < 256; a++) {
    for (let b = 1; b < 256; b++) MUL[(a << 8) | b] = EXP[LOG[a]! + LOG[b]!]!;
    INV[a] = EXP[255 - LOG[a]!]!;
  }
})();

function mul(a: number, b: number): number {
  return MUL[(a << 8) | b]!;
}

function mulTable(c: number): Uint8Array {
  return MUL.subarray(c << 8, (c << 8) + 256);
}

/** Inverts the k x k matrix m (row-major) in place by Gauss-Jordan elimination; throws if it is singular. */
function invertInPlace(m: Uint8Array, k: number): void {
  const inv = new Uint8Array(k * k);
  for (let i = 0; i < k; i++) inv[i * k + i] = 1;
  for (let col = 0; col < k; col++) {
    let pivot = col;
    while (pivot < k && m[pivot * k + col] === 0) pivot++;
    if (pivot === k) throw new RangeError('zfec: singular matrix (cannot happen for distinct share numbers)');
    if (pivot !== col) {
      for (let j = 0; j < k; j++) {
        let t = m[pivot * k + j]!; m[pivot * k + j] = m[col * k + j]!; m[col * k + j] = t;
        t = inv[pivot * k + j]!; inv[pivot * k + j] = inv[col * k + j]!; inv[col * k + j] = t;
      }
    }
    const scale = INV[m[col * k + col]!]!;
    for (let j = 0; j < k; j++) {
      m[col * k + j] = mul(scale, m[col * k + j]!);
      inv[col * k + j] = mul(scale, inv[col * k + j]!);
    }
    for (let row = 0; row < k; row++) {
      const c = row === col ? 0 : m[row * k + col]!;
      if (c === 0) continue;
      for (let j = 0; j < k; j++) {
        m[row * k + j]! ^= mul(c, m[col * k + j]!);
        inv[row * k + j]! ^= mul(c, inv[col * k + j]!);
      }
    }
  }
  m.set(inv);
}

// Bounded caches: a mount sees few distinct encodings, but nothing should grow without limit.
const CACHE_LIMIT = 256;
function remember<V>(cache: Map<string, V>, key: string, value: V): V {
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  cache.set(key, value);
  return value;
}

const encodingMatrices = new Map<string, Uint8Array>();

/** zfec's n x k systematic encoding matrix (row-major): row s gives share s from the primary blocks. */
function encodingMatrix(k: number, n: number): Uint8Array {
  const key = `${k},${n}`;
  const cached = encodingMatrices.get(key);
  if (cached) return cached;
  const vdm = new Uint8Array(n * k);
  vdm[0] = 1; // evaluation at 0: 0^0 = 1, higher powers 0
  for (let row = 1; row < n; row++) {
    for (let col = 0; col < k; col++) vdm[row * k + col] = EXP[((row - 1) * col) % 255]!;
  }
  const topInverse = vdm.slice(0, k * k);
  invertInPlace(topInverse, k);
  const enc = new Uint8Array(n * k);
  for (let i = 0; i < k; i++) enc[i * k + i] = 1;
  for (let row = k; row < n; row++) {
    for (let col = 0; col < k; col++) {
      let acc = 0;
      for (let i = 0; i < k; i++) acc ^= mul(vdm[row * k + i]!, topInverse[i * k + col]!);
      enc[row * k + col] = acc;
    }
  }
  return remember(encodingMatrices, key, enc);
}

/** dst = sum over i of coeffs[i] * srcs[i], byte by byte; up to 3 sources in one pass over the Buffers. */
function combine(dst: Buffer, srcs: readonly Buffer[], coeffs: ArrayLike<number>): void {
  const len = dst.length;
  const live: Buffer[] = [];
  const tables: Uint8Array[] = [];
  for (let i = 0; i < srcs.length; i++) {
    if (coeffs[i] !== 0) { live.push(srcs[i]!); tables.push(mulTable(coeffs[i]!)); }
  }
  let done: number;
  if (live.length === 0) {
    dst.fill(0);
    return;
  } else if (live.length === 1) {
    const a = live[0]!, ta = tables[0]!;
    if (ta[1] === 1) a.copy(dst); // coefficient 1
    else for (let j = 0; j < len; j++) dst[j] = ta[a[j]!]!;
    done = 1;
  } else if (live.length === 2) {
    const a = live[0]!, b = live[1]!, ta = tables[0]!, tb = tables[1]!;
    for (let j = 0; j < len; j++) dst[j] = ta[a[j]!]! ^ tb[b[j]!]!;
    done = 2;
  } else {
    const a = live[0]!, b = live[1]!, c = live[2]!, ta = tables[0]!, tb = tables[1]!, tc = tables[2]!;
    for (let j = 0; j < len; j++) dst[j] = ta[a[j]!]! ^ tb[b[j]!]! ^ tc[c[j]!]!;
    done = 3;
  }
  for (let i = done; i < live.length; i++) {
    const s = live[i]!, t = tables[i]!;
    for (let j = 0; j < len; j++) dst[j]! ^= t[s[j]!]!;
  }
}

function checkCode(k: number, n: number): void {
  if (!Number.isInteger(k) || !Number.isInteger(n) || k < 1 || n < k || n > 256) {
    throw new RangeError(`zfec: need integers 1 <= k <= n <= 256, got k=${k}, n=${n}`);
  }
}

function checkShareNums(n: number, shareNums: readonly number[]): void {
  const seen = new Set<number>();
  for (const s of shareNums) {
    if (!Number.isInteger(s) || s < 0 || s >= n) {
      throw new RangeError(`zfec: share number ${s} is out of range 0..${n - 1}`);
    }
    if (seen.has(s)) throw new RangeError(`zfec: share number ${s} is given twice`);
    seen.add(s);
  }
}

function checkSameLength(blocks: readonly Buffer[]): number {
  const len = blocks[0]?.length ?? 0;
  for (let i = 1; i < blocks.length; i++) {
    if (blocks[i]!.length !== len) {
      throw new RangeError(`zfec: blocks differ in length (block 0 has ${len} bytes, block ${i} has ${blocks[i]!.length})`);
    }
  }
  return len;
}

/** The blocks with the given share numbers (any in 0..n-1) of k primary blocks (for tests and future writers). */
export function zfecEncode(k: number, n: number, primaries: readonly Buffer[], shareNums?: readonly number[]): Buffer[] {
  checkCode(k, n);
  if (primaries.length !== k) throw new RangeError(`zfec: encoding needs exactly k=${k} primary blocks, got ${primaries.length}`);
  const len = checkSameLength(primaries);
  const wanted = shareNums ?? Array.from({ length: n }, (_, i) => i);
  checkShareNums(n, wanted);
  const enc = encodingMatrix(k, n);
  return wanted.map((s) => {
    if (s < k) return primaries[s]!; // systematic: share s < k is primary block s itself, as zfec returns it
    const out = Buffer.allocUnsafe(len);
    combine(out, primaries, enc.subarray(s * k, s * k + k));
    return out;
  });
}

interface DecodePlan {
  /** Share numbers used, ascending; the k x k inverse below is over exactly these. */
  readonly used: readonly number[];
  /** Row-major k x k inverse of the encoding rows of `used`: row j gives primary j from the used blocks. */
  readonly inverse: Uint8Array;
}

const decodePlans = new Map<string, DecodePlan>();

function decodePlan(k: number, n: number, used: readonly number[]): DecodePlan {
  const key = `${k},${n}:${used.join(',')}`;
  const cached = decodePlans.get(key);
  if (cached) return cached;
  const enc = encodingMatrix(k, n);
  const m = new Uint8Array(k * k);
  used.forEach((s, row) => m.set(enc.subarray(s * k, s * k + k), row * k));
  invertInPlace(m, k);
  return remember(decodePlans, key, { used, inverse: m });
}

/** The k primary blocks 0..k-1, in order, from any k distinct blocks of one stripe (all the same length). Primary blocks given are returned as they are (zfec is systematic). */
export function zfecDecode(k: number, n: number, blocks: readonly Buffer[], shareNums: readonly number[]): Buffer[] {
  checkCode(k, n);
  if (blocks.length !== shareNums.length) {
    throw new RangeError(`zfec: ${blocks.length} blocks but ${shareNums.length} share numbers`);
  }
  checkShareNums(n, shareNums);
  if (blocks.length < k) throw new RangeError(`zfec: decoding needs at least k=${k} blocks, got ${blocks.length}`);
  const len = checkSameLength(blocks);

  const byShare = new Map<number, Buffer>();
  shareNums.forEach((s, i) => byShare.set(s, blocks[i]!));
  // More than k blocks may be given: use every primary at hand, then the secondaries in the order given.
  const primariesHeld = shareNums.filter((s) => s < k);
  const used = [...primariesHeld, ...shareNums.filter((s) => s >= k).slice(0, k - primariesHeld.length)];
  if (primariesHeld.length === k) return Array.from({ length: k }, (_, i) => byShare.get(i)!);
  used.sort((a, b) => a - b);

  const plan = decodePlan(k, n, used);
  const sources = used.map((s) => byShare.get(s)!);
  const out: Buffer[] = [];
  for (let j = 0; j < k; j++) {
    const held = byShare.get(j);
    if (held) { out.push(held); continue; }
    const dst = Buffer.allocUnsafe(len);
    combine(dst, sources, plan.inverse.subarray(j * k, j * k + k));
    out.push(dst);
  }
  return out;
}
