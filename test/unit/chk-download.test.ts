// One CHK file's direct download (src/storage/chk-download.ts) over shares the real grid wrote
// (test/fixtures/chk), from fake storage servers: a frozen server does not hold the read, a server that lies
// (a flipped byte, a short answer) is dropped and another share used, and too few good shares is an error
// for the caller to fall back on, never wrong bytes.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ChkDownload, DirectReadError } from '../../src/storage/chk-download.js';
import { chkCapParts } from '../../src/storage/chk-share.js';
import { StorageServerError } from '../../src/storage/gbs-client.js';
import type { KnownServer, StorageServers } from '../../src/storage/servers.js';

interface Fixture { name: string; cap: string; storageIndex: string; plaintextSha256: string; shares: Record<string, string> }

function fixture(name: string): Fixture {
  return JSON.parse(readFileSync(new URL(`../../../test/fixtures/chk/${name}.json`, import.meta.url), 'utf8')) as Fixture;
}

type Behaviour = 'honest' | 'frozen' | 'down' | { flipAt: number } | 'short';

/** A storage server holding some shares of the fixture, behaving as told; `reads` logs each share read. */
function server(id: string, fx: Fixture, shareNums: number[], behaviour: Behaviour, reads: string[] = []): KnownServer {
  const shares = new Map(shareNums.map((n) => [n, Buffer.from(fx.shares[String(n)]!, 'base64')]));
  const never = new Promise<never>(() => {});
  const client = {
    name: id,
    async immutableShares(): Promise<number[]> {
      if (behaviour === 'frozen') return never;
      if (behaviour === 'down') throw new StorageServerError(`${id}: ECONNREFUSED`, 'unreachable');
      return [...shares.keys()];
    },
    async readShare(_si: string, shareNum: number, offset: number, length: number): Promise<Buffer> {
      reads.push(`${id}:${shareNum}:${offset}+${length}`);
      const share = shares.get(shareNum);
      if (!share) throw new StorageServerError(`${id}: HTTP 404`, 'protocol');
      const bytes = Buffer.from(share.subarray(offset, offset + length));
      if (typeof behaviour === 'object' && behaviour.flipAt >= offset && behaviour.flipAt < offset + bytes.length) bytes[behaviour.flipAt - offset]! ^= 0x01;
      if (behaviour === 'short' && bytes.length > 100) return bytes.subarray(0, bytes.length - 1);
      return bytes;
    },
  };
  return { serverId: id, permutationSeed: Buffer.from(id), client: client as unknown as KnownServer['client'] };
}

function serversOf(list: KnownServer[]): StorageServers {
  const fake = {
    async forFile(): Promise<KnownServer[]> {
      return list;
    },
    unreachable(): void {},
    reachable(): void {},
    async refresh(): Promise<void> {},
  };
  return fake as unknown as StorageServers;
}

async function readAll(d: ChkDownload): Promise<Buffer> {
  await d.open();
  const out: Buffer[] = [];
  for (let s = 0; s < d.segmentCount; s += 3) out.push(...(await d.segments(s, Math.min(3, d.segmentCount - s))));
  return Buffer.concat(out);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('chk-download over fake servers', () => {
  const fx = fixture('many-2of3');
  const cap = chkCapParts(fx.cap);

  function download(list: KnownServer[], bad: string[] = [], guessedMaxSegment?: number): ChkDownload {
    return new ChkDownload(cap, fx.storageIndex, serversOf(list), (name) => bad.push(name), guessedMaxSegment);
  }

  it('reads every byte from honest servers', async () => {
    const d = download([server('a', fx, [0], 'honest'), server('b', fx, [1], 'honest'), server('c', fx, [2], 'honest')]);
    assert.equal(sha(await readAll(d)), fx.plaintextSha256);
  });

  it('does not wait for a frozen server once k shares are found', async () => {
    const d = download([server('frozen', fx, [0], 'frozen'), server('b', fx, [1], 'honest'), server('c', fx, [2], 'honest')]);
    assert.equal(sha(await readAll(d)), fx.plaintextSha256);
  });

  it('drops a server that flips a byte of a block and reads from another share', async () => {
    const bad: string[] = [];
    const share0 = Buffer.from(fx.shares['0']!, 'base64');
    const d = download([server('liar', fx, [0], { flipAt: Math.floor(share0.length / 3) }), server('b', fx, [1], 'honest'), server('c', fx, [2], 'honest')], bad);
    assert.equal(sha(await readAll(d)), fx.plaintextSha256);
    assert.deepEqual(bad, ['liar']);
  });

  it('drops a server whose answers are short', async () => {
    const bad: string[] = [];
    const d = download([server('short', fx, [0], 'short'), server('b', fx, [1], 'honest'), server('c', fx, [2], 'honest')], bad);
    assert.equal(sha(await readAll(d)), fx.plaintextSha256);
    assert.ok(bad.includes('short'));
  });

  it('fails with DirectReadError when fewer than k good shares are left, never with wrong bytes', async () => {
    const share0 = Buffer.from(fx.shares['0']!, 'base64');
    for (const list of [
      [server('a', fx, [0], 'honest'), server('down', fx, [1, 2], 'down')],
      [server('liar', fx, [0], { flipAt: Math.floor(share0.length / 2) }), server('b', fx, [1], 'honest')],
    ]) {
      const d = download(list);
      await assert.rejects(readAll(d), (e: unknown) => e instanceof DirectReadError);
    }
  });

  // The fixture was written with 4 KiB segments: with that guess, the first reader's blocks come with the hash regions.
  const SEGMENT = 4096;
  const plaintextOf = async (d: ChkDownload, first: number, count: number): Promise<Buffer> => Buffer.concat(await d.segments(first, count));

  it('reads the first wanted segment\'s blocks with the hash regions: no request of its own', async () => {
    const reads: string[] = [];
    const d = download([server('a', fx, [0], 'honest', reads), server('b', fx, [1], 'honest', reads), server('c', fx, [2], 'honest', reads)], [], SEGMENT);
    await d.open(20 * SEGMENT + 5);
    const before = reads.length;
    const seg20 = await plaintextOf(d, 20, 1);
    assert.equal(reads.length, before, `no read after open: ${reads.slice(before).join(' ')}`);
    // The same bytes as a read from the start of the file.
    const whole = await readAll(download([server('a', fx, [0], 'honest'), server('b', fx, [1], 'honest'), server('c', fx, [2], 'honest')]));
    assert.ok(seg20.equals(whole.subarray(20 * SEGMENT, 21 * SEGMENT)));
    // Another segment is read as usual.
    await plaintextOf(d, 3, 1);
    assert.ok(reads.length > before);
  });

  it('an early block that does not check out is refused like any other: another share serves it', async () => {
    const bad: string[] = [];
    const blockOf20 = 0x24 + 20 * (SEGMENT / 2) + 7; // a byte inside share 0's block of segment 20 (v1 header, k = 2)
    const d = download([server('liar', fx, [0], { flipAt: blockOf20 }), server('b', fx, [1], 'honest'), server('c', fx, [2], 'honest')], bad, SEGMENT);
    await d.open(20 * SEGMENT);
    const whole = await readAll(download([server('a', fx, [0], 'honest'), server('b', fx, [1], 'honest'), server('c', fx, [2], 'honest')]));
    assert.ok((await plaintextOf(d, 20, 1)).equals(whole.subarray(20 * SEGMENT, 21 * SEGMENT)));
    assert.deepEqual(bad, ['liar']);
  });

  it('a wrong segment size guess costs only the early read: the right bytes all the same', async () => {
    const reads: string[] = [];
    const d = download([server('a', fx, [0], 'honest', reads), server('b', fx, [1], 'honest', reads), server('c', fx, [2], 'honest', reads)], [], 8192);
    const whole = await readAll(download([server('a', fx, [0], 'honest'), server('b', fx, [1], 'honest'), server('c', fx, [2], 'honest')]));
    await d.open(10 * SEGMENT);
    assert.ok((await plaintextOf(d, 10, 2)).equals(whole.subarray(10 * SEGMENT, 12 * SEGMENT)));
  });
});
