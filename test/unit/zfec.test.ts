// zfec (src/storage/zfec.ts) against the real zfec 1.5: fixtures made by test/fixtures/zfec/make.py, every
// k-subset decoded, random round trips, bad input; a throughput figure printed, never asserted.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { zfecDecode, zfecEncode } from '../../src/storage/zfec.js';
import { rng } from '../support/random.js';

// Fixtures made by the real zfec: see test/fixtures/zfec/make.py (how to rerun it is at its top).
interface Case {
  name: string;
  k: number;
  n: number;
  length: number;
  primaries?: string[];
  shares?: string[];
  shareSha256?: string[];
}
const fixtures = JSON.parse(
  readFileSync(new URL('../../../test/fixtures/zfec/cases.json', import.meta.url), 'utf8'),
) as { zfec: string; cases: Case[] };

/** make.py's primary block: sha256("<name>:<i>:<counter>") for counter 0, 1, ... concatenated, cut to length. */
function fixturePrimary(name: string, i: number, length: number): Buffer {
  const parts: Buffer[] = [];
  for (let ctr = 0; parts.length * 32 < length; ctr++) parts.push(createHash('sha256').update(`${name}:${i}:${ctr}`).digest());
  return Buffer.concat(parts).subarray(0, length);
}

const prng = rng; // seeded, so that a failure is reproducible

function randomBytes(rand: () => number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** k distinct numbers of 0..n-1, in random order. */
function randomSubset(rand: () => number, n: number, k: number): number[] {
  const all = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, k);
}

function* combinations(n: number, k: number, start = 0, prefix: number[] = []): Generator<number[]> {
  if (prefix.length === k) { yield prefix; return; }
  for (let i = start; i < n; i++) yield* combinations(n, k, i + 1, [...prefix, i]);
}

const sha16 = (b: Buffer): string => createHash('sha256').update(b).digest('hex').slice(0, 16);

describe('zfec against the real zfec', () => {
  it(`has fixtures from zfec ${fixtures.zfec}`, () => {
    assert.match(fixtures.zfec, /^1\.5\./);
    assert.ok(fixtures.cases.length >= 30);
  });

  for (const c of fixtures.cases) {
    it(`${c.name}: every share equals zfec's, and k-subsets decode to the primaries`, () => {
      const primaries = Array.from({ length: c.k }, (_, i) => fixturePrimary(c.name, i, c.length));
      if (c.primaries) assert.deepEqual(primaries.map((p) => p.toString('hex')), c.primaries, 'primaries rebuilt as make.py made them');

      const shares = zfecEncode(c.k, c.n, primaries);
      assert.equal(shares.length, c.n);
      if (c.shares) assert.deepEqual(shares.map((s) => s.toString('hex')), c.shares);
      else assert.deepEqual(shares.map(sha16), c.shareSha256);

      // Share numbers asked one at a time and in a scrambled order give the same blocks.
      const rand = prng(c.k * 1000 + c.n + c.length);
      const order = randomSubset(rand, c.n, c.n);
      zfecEncode(c.k, c.n, primaries, order).forEach((s, i) => assert.ok(s.equals(shares[order[i]!]!), `share ${order[i]}`));

      const subsets = c.n <= 10 ? [...combinations(c.n, c.k)] : Array.from({ length: c.k > 100 ? 3 : 20 }, () => randomSubset(rand, c.n, c.k));
      for (const sub of subsets) {
        const got = zfecDecode(c.k, c.n, sub.map((s) => shares[s]!), sub);
        assert.equal(got.length, c.k);
        got.forEach((g, i) => assert.ok(g.equals(primaries[i]!), `primary ${i} from shares ${sub.join(',')}`));
      }
    });
  }
});

describe('zfec properties', () => {
  it('encode then decode from random subsets gives the primaries back (random k, n, data)', () => {
    const rand = prng(42);
    for (let round = 0; round < 200; round++) {
      const n = 1 + Math.floor(rand() * (round % 10 === 0 ? 256 : 20));
      const k = 1 + Math.floor(rand() * n);
      const length = Math.floor(rand() * 100);
      const primaries = Array.from({ length: k }, () => randomBytes(rand, length));
      const sub = randomSubset(rand, n, k);
      const blocks = zfecEncode(k, n, primaries, sub);
      const got = zfecDecode(k, n, blocks, sub);
      got.forEach((g, i) => assert.ok(g.equals(primaries[i]!), `round ${round}: ${k}-of-${n}, shares ${sub.join(',')}, primary ${i}`));
    }
  });

  it('returns the primary blocks given as they are (systematic), in encode and decode', () => {
    const primaries = [Buffer.from('abc'), Buffer.from('def'), Buffer.from('ghi')];
    const enc = zfecEncode(3, 5, primaries, [4, 1]);
    assert.equal(enc[1], primaries[1]);
    const dec = zfecDecode(3, 5, [enc[0]!, primaries[1]!, primaries[2]!], [4, 1, 2]);
    assert.equal(dec[1], primaries[1]);
    assert.equal(dec[2], primaries[2]);
    assert.ok(dec[0]!.equals(primaries[0]!));
    const all = zfecDecode(3, 5, [primaries[2]!, primaries[0]!, primaries[1]!], [2, 0, 1]);
    assert.deepEqual(all.map((b) => b.toString()), ['abc', 'def', 'ghi']);
  });

  it('decodes from more than k blocks, and from zero-length blocks', () => {
    const primaries = [Buffer.from('hello'), Buffer.from('world')];
    const shares = zfecEncode(2, 4, primaries);
    const got = zfecDecode(2, 4, [shares[3]!, shares[0]!, shares[2]!], [3, 0, 2]);
    assert.deepEqual(got.map((b) => b.toString()), ['hello', 'world']);
    const empty = zfecDecode(2, 3, zfecEncode(2, 3, [Buffer.alloc(0), Buffer.alloc(0)], [1, 2]), [1, 2]);
    assert.deepEqual(empty.map((b) => b.length), [0, 0]);
  });
});

describe('zfec bad input', () => {
  const two = [Buffer.from('ab'), Buffer.from('cd')];

  it('rejects bad k and n', () => {
    for (const [k, n] of [[0, 3], [3, 2], [1, 257], [2.5, 3], [-1, 1], [Number.NaN, 3]] as const) {
      assert.throws(() => zfecEncode(k, n, two), (e: unknown) => e instanceof RangeError && /1 <= k <= n <= 256/.test(e.message), `k=${k}, n=${n}`);
      assert.throws(() => zfecDecode(k, n, two, [0, 1]), RangeError, `k=${k}, n=${n}`);
    }
  });

  it('rejects duplicate and out-of-range share numbers', () => {
    assert.throws(() => zfecEncode(2, 3, two, [1, 1]), /share number 1 is given twice/);
    assert.throws(() => zfecEncode(2, 3, two, [3]), /share number 3 is out of range 0\.\.2/);
    assert.throws(() => zfecEncode(2, 3, two, [-1]), RangeError);
    assert.throws(() => zfecDecode(2, 3, two, [2, 2]), /given twice/);
    assert.throws(() => zfecDecode(2, 3, two, [0, 3]), /out of range/);
    assert.throws(() => zfecDecode(2, 3, two, [0, 1.5]), /out of range/);
  });

  it('rejects too few blocks, a wrong number of primaries, and mismatched counts', () => {
    assert.throws(() => zfecDecode(2, 3, [two[0]!], [0]), (e: unknown) => e instanceof RangeError && /at least k=2 blocks, got 1/.test(e.message));
    assert.throws(() => zfecEncode(3, 5, two), /exactly k=3 primary blocks, got 2/);
    assert.throws(() => zfecDecode(2, 3, two, [0, 1, 2]), /2 blocks but 3 share numbers/);
  });

  it('rejects blocks of unequal length', () => {
    const uneven = [Buffer.from('ab'), Buffer.from('c')];
    assert.throws(() => zfecEncode(2, 3, uneven), (e: unknown) => e instanceof RangeError && /differ in length/.test(e.message));
    assert.throws(() => zfecDecode(2, 3, uneven, [1, 2]), /differ in length/);
  });
});

describe('zfec throughput (printed, not asserted)', () => {
  it('decodes a 1 MiB segment, 2-of-3, from shares {1, 2}', () => {
    const rand = prng(7);
    const segment = randomBytes(rand, 1 << 20);
    const primaries = [segment.subarray(0, 1 << 19), segment.subarray(1 << 19)];
    const blocks = zfecEncode(2, 3, primaries, [1, 2]);
    zfecDecode(2, 3, blocks, [1, 2]); // warm up (and the plan cache)
    const rounds = 20;
    const start = performance.now();
    for (let i = 0; i < rounds; i++) zfecDecode(2, 3, blocks, [1, 2]);
    const ms = (performance.now() - start) / rounds;
    const got = zfecDecode(2, 3, blocks, [1, 2]);
    assert.ok(Buffer.concat(got).equals(segment));
    console.log(`zfec decode 1 MiB 2-of-3 from {1,2}: ${ms.toFixed(2)} ms, ${(1 / (ms / 1000)).toFixed(0)} MiB/s`);
  });
});
