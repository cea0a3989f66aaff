// Writes in place into MDMF files through the real gateway (issue 21's groundwork): the offset writes the
// client sends (TahoeClient.writeMutableAt, as offsetWriteRange() shapes them) land byte for byte, including the
// ones Tahoe 1.20's updater fails when sent as they are (an append at a segment boundary, a write past the end).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { DEFAULT_TIMEOUTS, offsetWriteRange, TahoeClient } from '../../src/tahoe/client.js';
import { describeWithGrid } from '../support/test-grid.js';

const KiB = 1024;
/** MDMF's segment size (allmydata/interfaces.py DEFAULT_MUTABLE_MAX_SEGMENT_SIZE). */
const SEGMENT = 128 * KiB;

describeWithGrid('offset writes into MDMF files', (grid) => {
  const client = (): TahoeClient => new TahoeClient(grid.gatewayUrl, DEFAULT_TIMEOUTS);

  /** Applies a change to `local` and sends it as offsetWriteRange() says; returns the new local content. */
  async function write(c: TahoeClient, cap: string, local: Buffer, offset: number, bytes: Buffer): Promise<Buffer> {
    const end = offset + bytes.length;
    const next = Buffer.alloc(Math.max(local.length, end));
    local.copy(next);
    bytes.copy(next, offset);
    const range = offsetWriteRange(local.length, offset, end);
    if (range) await c.writeMutableAt(cap, range.start, next.subarray(range.start, range.end), range.end - range.start);
    else await c.overwriteMutable(cap, next, next.length);
    return next;
  }

  async function get(cap: string): Promise<Buffer> {
    const res = await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(cap)}`);
    assert.equal(res.status, 200);
    return Buffer.from(await res.arrayBuffer());
  }

  it('an MDMF file takes writes in the middle, across a segment boundary, and appends: byte for byte', async () => {
    const c = client();
    let local: Buffer = randomBytes(3 * SEGMENT + 1000);
    const cap = await c.uploadMutable(local, local.length);
    assert.match(cap, /^URI:MDMF:/);
    local = await write(c, cap, local, 5000, randomBytes(4 * KiB));
    local = await write(c, cap, local, SEGMENT - 100, randomBytes(200));
    local = await write(c, cap, local, local.length, randomBytes(3000)); // an append where the size is not a multiple
    local = await write(c, cap, local, local.length - 10, randomBytes(50)); // over the end and past it
    assert.ok((await get(cap)).equals(local));
  });

  it('an append at exactly a segment boundary (the gateway fails it sent as it is) lands', async () => {
    const c = client();
    let local: Buffer = randomBytes(2 * SEGMENT);
    const cap = await c.uploadMutable(local, local.length);
    local = await write(c, cap, local, local.length, randomBytes(4 * KiB));
    assert.equal(local.length, 2 * SEGMENT + 4 * KiB);
    assert.ok((await get(cap)).equals(local));
  });

  it('a write past the end sends the gap as zeros; an empty file is written whole', async () => {
    const c = client();
    let local: Buffer = randomBytes(SEGMENT + 7);
    const cap = await c.uploadMutable(local, local.length);
    local = await write(c, cap, local, local.length + 20 * KiB, randomBytes(100));
    assert.ok((await get(cap)).equals(local));
    assert.ok(local.subarray(SEGMENT + 7, SEGMENT + 7 + 20 * KiB).equals(Buffer.alloc(20 * KiB)));

    let empty: Buffer = Buffer.alloc(0);
    const emptyCap = await c.uploadMutable(empty, 0);
    empty = await write(c, emptyCap, empty, 0, Buffer.from('first bytes'));
    assert.equal((await get(emptyCap)).toString(), 'first bytes');
  });
});
