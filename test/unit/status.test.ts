// The core's status (what `blackmatch status` shows), over the in-memory Tahoe: an upload held at the gateway is
// reported on its way with its size, a failed one with why, and reads are counted as cache hits or misses.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FakeTahoe } from '../support/fake-tahoe.js';
import { bounded, coresPerTest, isUpload, readAll, writeFile } from '../support/core.js';

describe('core: status', () => {
  let fake: FakeTahoe;
  const cores = coresPerTest((f) => (fake = f));

  it('an upload on its way is reported with its path and size, and is gone once stored', async () => {
    const { fs } = await cores.start();
    const fh = await writeFile(fs, '/f', 'x'.repeat(100_000));
    const held = fake.hold(isUpload);
    const closing = fs.release('/f', fh);
    await held.arrived;
    const during = await fs.status();
    assert.deepEqual(during.writes.uploads.map((u) => [u.path, u.bytes, u.sending]), [['/f', 100_000, true]]);
    held.release();
    await bounded(closing, 'close');
    assert.deepEqual((await fs.status()).writes.uploads, []);
  });

  it('a write whose store failed is reported as staged until it is stored', async () => {
    const { fs } = await cores.start();
    const fh = await writeFile(fs, '/g', 'data');
    fake.down(503);
    await assert.rejects(fs.flush('/g', fh));
    await fs.release('/g', fh);
    const s = await fs.status();
    assert.deepEqual(s.writes.kept.map((k) => k.path), ['/g']);
    fake.up();
    await bounded(fs.sync(), 'sync');
    assert.deepEqual((await fs.status()).writes.kept, []);
  });

  it('counts reads found in the cache and reads that waited for a download', async () => {
    const { fs } = await cores.start({ cacheTimeoutMs: 0 });
    fake.link(fake.rootCap, 'other', fake.addFile(Buffer.alloc(200_000, 7)));
    assert.equal((await readAll(fs, '/other')).length, 200_000);
    const first = (await fs.status()).cache;
    assert.ok(first.misses >= 1, `the first read downloads: ${JSON.stringify(first)}`);
    await readAll(fs, '/other');
    const second = (await fs.status()).cache;
    assert.ok(second.hits > first.hits, `the second read is a hit: ${JSON.stringify(second)}`);
    assert.ok(second.usedBytes >= 200_000);
  });
});
