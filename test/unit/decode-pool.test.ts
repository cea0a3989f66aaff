// Segment decoding on worker threads (src/storage/decode-pool.ts, decode-wire.ts, decode-worker.ts) over shares
// the real grid wrote (test/fixtures/chk): the same bytes as inline, a lying block named by its share, a worker
// that dies costs only a re-read (decoding goes inline), and Node's shared pool of small Buffers never moves.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ChkDownload } from '../../src/storage/chk-download.js';
import { chkCapParts, decodeSegmentWork, type SegmentWork } from '../../src/storage/chk-share.js';
import { DecodePool, DecodePoolError } from '../../src/storage/decode-pool.js';
import type { KnownServer, StorageServers } from '../../src/storage/servers.js';

interface Fixture { name: string; cap: string; storageIndex: string; plaintextSha256: string; shares: Record<string, string> }

const fx = JSON.parse(readFileSync(new URL('../../../test/fixtures/chk/many-2of3.json', import.meta.url), 'utf8')) as Fixture;
const cap = chkCapParts(fx.cap);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * A server answering from the fixture; `ownMemory`: each answer in memory of its own, as large bodies come from
 * the network (so that it is moved to the worker, not copied); `flipAt`: one share byte it lies about.
 */
function server(id: string, shareNum: number, opts: { ownMemory?: boolean; flipAt?: number } = {}): KnownServer {
  const share = Buffer.from(fx.shares[String(shareNum)]!, 'base64');
  const client = {
    name: id,
    async immutableShares(): Promise<number[]> {
      return [shareNum];
    },
    async readShare(_si: string, n: number, offset: number, length: number): Promise<Buffer> {
      if (n !== shareNum) throw new Error('no such share');
      const bytes = share.subarray(offset, offset + length);
      const out = opts.ownMemory ? Buffer.from(new ArrayBuffer(Math.max(bytes.length, 128 * 1024)), 0, bytes.length) : Buffer.alloc(bytes.length);
      bytes.copy(out);
      if (opts.flipAt !== undefined && opts.flipAt >= offset && opts.flipAt < offset + out.length) out[opts.flipAt - offset]! ^= 0x01;
      return out;
    },
  };
  return { serverId: id, permutationSeed: Buffer.from(id), client: client as unknown as KnownServer['client'] };
}

function serversOf(list: KnownServer[]): StorageServers {
  return { forFile: async () => list, unreachable() {}, reachable() {}, refresh: async () => {} } as unknown as StorageServers;
}

async function readAll(d: ChkDownload, batch = 3): Promise<Buffer> {
  await d.open();
  const out: Buffer[] = [];
  for (let s = 0; s < d.segmentCount; s += batch) out.push(...(await d.segments(s, Math.min(batch, d.segmentCount - s))));
  return Buffer.concat(out);
}

describe('segment decoding on worker threads', () => {
  for (const ownMemory of [false, true]) {
    it(`decodes every segment as inline does (${ownMemory ? 'bodies moved to the worker' : 'small bodies copied'})`, async () => {
      const pool = new DecodePool({ workers: 2, inlineBelowBytes: 0 });
      try {
        const d = new ChkDownload(cap, fx.storageIndex, serversOf([server('a', 0, { ownMemory }), server('b', 1, { ownMemory }), server('c', 2, { ownMemory })]), () => {}, undefined, pool);
        assert.equal(sha(await readAll(d)), fx.plaintextSha256);
      } finally {
        await pool.close();
      }
    });
  }

  it('a block that does not match its hash: its server is dropped, another share serves the segment', async () => {
    const pool = new DecodePool({ workers: 1, inlineBelowBytes: 0 });
    const bad: string[] = [];
    try {
      const share0 = Buffer.from(fx.shares['0']!, 'base64');
      const list = [server('liar', 0, { ownMemory: true, flipAt: Math.floor(share0.length / 3) }), server('b', 1, { ownMemory: true }), server('c', 2, { ownMemory: true })];
      const d = new ChkDownload(cap, fx.storageIndex, serversOf(list), (name) => bad.push(name), undefined, pool);
      assert.equal(sha(await readAll(d)), fx.plaintextSha256);
      assert.deepEqual(bad, ['liar']);
    } finally {
      await pool.close();
    }
  });

  it('a worker that dies fails its batch with DecodePoolError; from then on decoding is inline, told once', async () => {
    const broken: string[] = [];
    const pool = new DecodePool({ workers: 1, inlineBelowBytes: 0, onBroken: (r) => broken.push(r) });
    try {
      // The work of the first segments, as ChkDownload builds it, from a first download's file.
      const works = await worksOf(3);
      const expected = works.map(decodeSegmentWork);
      pool.warm();
      const worker = (pool as unknown as { workers: Array<{ worker: { terminate(): Promise<number> } }> }).workers[0]!.worker;
      const lost = pool.decode(await worksOf(3));
      void worker.terminate();
      await assert.rejects(lost, (e: unknown) => e instanceof DecodePoolError);
      const again = await pool.decode(await worksOf(3));
      assert.deepEqual(again.map(sha), expected.map(sha));
      assert.equal(broken.length, 1);
      // And a whole read through a broken pool is still right.
      const d = new ChkDownload(cap, fx.storageIndex, serversOf([server('a', 0), server('b', 1), server('c', 2)]), () => {}, undefined, pool);
      assert.equal(sha(await readAll(d)), fx.plaintextSha256);
    } finally {
      await pool.close();
    }
  });

  it('an error of ours on the worker comes back as a plain Error (bad data to the caller, as inline), not a lost worker', async () => {
    const broken: string[] = [];
    const pool = new DecodePool({ workers: 1, inlineBelowBytes: 0, onBroken: (r) => broken.push(r) });
    try {
      const works = await worksOf(2);
      const nonsense = works.map((w) => ({ ...w, needed: w.total + 1 })); // zfec refuses k > n: a RangeError there
      await assert.rejects(pool.decode(nonsense), (e: unknown) => e instanceof Error && !(e instanceof DecodePoolError));
      assert.deepEqual(broken, []);
      assert.deepEqual((await pool.decode(await worksOf(2))).map(sha), works.map(decodeSegmentWork).map(sha));
    } finally {
      await pool.close();
    }
  });

  it('after close(), a batch is decoded inline and no worker is started', async () => {
    const pool = new DecodePool({ workers: 1, inlineBelowBytes: 0 });
    await pool.close();
    const works = await worksOf(2);
    assert.deepEqual((await pool.decode(works)).map(sha), works.map(decodeSegmentWork).map(sha));
    pool.warm();
    assert.equal((pool as unknown as { workers: unknown[] }).workers.length, 0);
  });

  it('never moves Node\'s shared pool of small Buffers: Buffers beside a small block keep their bytes', async () => {
    const pool = new DecodePool({ workers: 1, inlineBelowBytes: 0 });
    try {
      const neighbour = Buffer.from('a small Buffer from the shared pool');
      const works = await worksOf(2);
      // Blocks copied into pooled memory (small, so Node's allocator pools them when it can).
      const pooled = works.map((w) => ({ ...w, blocks: w.blocks.map((b) => ({ ...b, block: Buffer.from(b.block) })) }));
      const plain = await pool.decode(pooled);
      assert.deepEqual(plain.map(sha), works.map(decodeSegmentWork).map(sha));
      assert.equal(neighbour.toString(), 'a small Buffer from the shared pool');
      assert.ok(pooled.every((w) => w.blocks.every((b) => b.block.byteLength > 0)), 'a block was moved away');
    } finally {
      await pool.close();
    }
  });
});

/** The decoding work of the first `count` segments, with unverified blocks (each checked where decoded). */
async function worksOf(count: number): Promise<SegmentWork[]> {
  const captured: SegmentWork[][] = [];
  const capture = { decode: async (works: SegmentWork[]) => (captured.push(works), works.map(decodeSegmentWork)) };
  const d = new ChkDownload(cap, fx.storageIndex, serversOf([server('a', 0), server('b', 1), server('c', 2)]), () => {}, undefined, capture);
  await d.open();
  await d.segments(0, count);
  return captured[0]!;
}
