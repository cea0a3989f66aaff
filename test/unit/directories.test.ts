// The directory-listing cache: bounded by count and bytes, pinned listings kept, patches never lost to a fetch
// that was already on its way. A stub stands in for the web-API client (listDir only).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { encodeBase32 } from '../../src/tahoe/base32.js';
import { parseCap } from '../../src/tahoe/caps.js';
import type { ChildInfo, DirListing, TahoeClient } from '../../src/tahoe/client.js';
import { Directories, dirRefOf } from '../../src/fs/directories.js';
import { fileWritable } from '../../src/fs/attributes.js';

const dirCap = (kind = 'DIR2') => `URI:${kind}:${encodeBase32(randomBytes(16))}:${encodeBase32(randomBytes(32))}`;

/** Every directory holds `perDir` files; listDir can be held by a test. */
function stubClient(perDir: number): { client: TahoeClient; calls: () => number; hold: (p: Promise<void>) => void } {
  let calls = 0;
  let gate: Promise<void> | undefined;
  const client = {
    async listDir(): Promise<DirListing> {
      calls++;
      const children = new Map<string, ChildInfo>();
      for (let i = 0; i < perDir; i++) children.set(`f${i}`, { name: `f${i}`, type: 'file', roUri: 'URI:LIT:', size: 0, mutable: false, metadata: {} });
      if (gate) await gate;
      return { mutable: true, children };
    },
  } as unknown as TahoeClient;
  return { client, calls: () => calls, hold: (p) => (gate = p) };
}

describe('directory listings', () => {
  it('a walk over many directories keeps at most maxListings in memory', async () => {
    const { client } = stubClient(3);
    const dirs = new Directories({ client, rootCap: parseCap(dirCap()), cacheTimeoutMs: 60_000, maxListings: 50 });
    for (let i = 0; i < 2000; i++) await dirs.listing({ cap: dirCap(), writable: true });
    assert.ok(dirs.cachedListings <= 50, `${dirs.cachedListings} listings held`);
  });

  it('a walk over large directories stays within the byte bound', async () => {
    const { client } = stubClient(1000); // ~400 KB each by the estimate
    const dirs = new Directories({ client, rootCap: parseCap(dirCap()), cacheTimeoutMs: 60_000, maxListingBytes: 4 * 1024 * 1024 });
    for (let i = 0; i < 100; i++) await dirs.listing({ cap: dirCap(), writable: true });
    assert.ok(dirs.cachedListings <= 10, `${dirs.cachedListings} listings held`);
  });

  it('never evicts a pinned listing (a directory holding open files)', async () => {
    const stub = stubClient(1);
    const dirs = new Directories({ client: stub.client, rootCap: parseCap(dirCap()), cacheTimeoutMs: 60_000, maxListings: 5 });
    const busy = { cap: dirCap(), writable: true };
    await dirs.listing(busy);
    dirs.pin(busy.cap);
    dirs.patch(busy.cap, 'created-here', { name: 'created-here', type: 'file', roUri: 'URI:LIT:', size: 0, mutable: false, metadata: {} });
    for (let i = 0; i < 100; i++) await dirs.listing({ cap: dirCap(), writable: true });
    const before = stub.calls();
    const listing = await dirs.listing(busy);
    assert.equal(stub.calls(), before, 'served from memory');
    assert.ok(listing.children.has('created-here'), 'the patch is still there');
    dirs.unpin(busy.cap);
    for (let i = 0; i < 100; i++) await dirs.listing({ cap: dirCap(), writable: true });
    assert.ok(dirs.cachedListings <= 5);
  });

  it('a change made while a fetch is on its way is not lost to its older answer', async () => {
    const stub = stubClient(1);
    const dirs = new Directories({ client: stub.client, rootCap: parseCap(dirCap()), cacheTimeoutMs: 60_000 });
    const dir = { cap: dirCap(), writable: true };
    let release!: () => void;
    stub.hold(new Promise<void>((r) => (release = r)));
    const fetching = dirs.listing(dir, true);
    dirs.patch(dir.cap, 'new', { name: 'new', type: 'dir', rwUri: dirCap(), size: 0, mutable: true, metadata: {} });
    dirs.patch(dir.cap, 'f0', undefined);
    release();
    const listing = await fetching;
    assert.ok(listing.children.has('new'));
    assert.ok(!listing.children.has('f0'));
  });
});

describe('writability comes from the parsed cap', () => {
  const entry = (cap: string, type: 'file' | 'dir'): ChildInfo => ({ name: 'x', type, rwUri: cap.includes('-RO:') ? undefined : cap, roUri: cap, mutable: true, metadata: {} });

  it('read-only and immutable directory caps give read-only directories', () => {
    assert.equal(dirRefOf(entry(dirCap('DIR2'), 'dir')).writable, true);
    assert.equal(dirRefOf(entry(dirCap('DIR2-MDMF'), 'dir')).writable, true);
    assert.equal(dirRefOf(entry(dirCap('DIR2-RO'), 'dir')).writable, false);
    // A read-only MDMF directory listed under rw_uri (as a careless client may link it) is still read-only.
    const mdmfRo = dirCap('DIR2-MDMF-RO');
    assert.equal(dirRefOf({ ...entry(mdmfRo, 'dir'), rwUri: mdmfRo }).writable, false);
    const chk = `URI:DIR2-CHK:${encodeBase32(randomBytes(16))}:${encodeBase32(randomBytes(32))}:1:1:100`;
    assert.equal(dirRefOf({ ...entry(chk, 'dir'), rwUri: chk }).writable, false);
  });

  it('files in them are read-only; a mutable file needs its write cap', () => {
    const ro = dirRefOf({ ...entry(dirCap('DIR2-MDMF-RO'), 'dir') });
    const file: ChildInfo = { name: 'f', type: 'file', roUri: 'URI:LIT:', size: 0, mutable: false, metadata: {} };
    assert.equal(fileWritable(file, ro), false);
    assert.equal(fileWritable(file, { cap: dirCap(), writable: true }), true);
    const mutableRo = `URI:MDMF-RO:${encodeBase32(randomBytes(16))}:${encodeBase32(randomBytes(32))}`;
    assert.equal(fileWritable({ ...file, mutable: true, rwUri: mutableRo, roUri: mutableRo }, { cap: dirCap(), writable: true }), false);
  });
});
