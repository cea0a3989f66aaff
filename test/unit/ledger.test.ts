// The directory-update ledger (src/fs/ledger.ts) over the fake web API: another gateway's late update that undoes
// ours is simulated by changing the fake's directory behind the mount's back, after our change was answered.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LedgerFile } from '../../src/cache/ledger-file.js';
import { redact } from '../../src/tahoe/caps.js';
import { REPLACES_KEY } from '../../src/fs/ledger.js';
import { target, type FakeTahoe } from '../support/fake-tahoe.js';
import { bounded, coresPerTest, log, storedText, writeFile } from '../support/core.js';

const SETTLE_MS = 100;
const isSetChildren = (req: { method: string; rawUrl: string }) => req.method === 'POST' && target(req as never).query.get('t') === 'set_children';

for (const writeBack of [false, true]) {
  describe(`the directory-update ledger (${writeBack ? 'write-back' : 'durable'})`, () => {
    let fake: FakeTahoe;
    const { start } = coresPerTest((f) => (fake = f), { settleMs: SETTLE_MS, writeBack, drainMs: 5_000 });
    /** Once the link is in the grid (at once when durable; write-back stores in the background), bounded. */
    const linked = (name: string) => bounded((async () => {
      while (!fake.entry(fake.rootCap, name)) await new Promise((r) => setTimeout(r, 5));
    })(), `the link of ${name}`);

    it('a link another writer undid is made again, and sync waits until it holds', async () => {
      const c = await start();
      await c.fs.release('/a', await writeFile(c.fs, '/a', 'ours'));
      await linked('a');
      const ours = fake.entry(fake.rootCap, 'a')!.roUri;
      fake.unlinkDirect(fake.rootCap, 'a'); // a stale update from before ours lands
      const report = await bounded(c.fs.sync(), 'sync');
      assert.deepEqual(report.failed, []);
      assert.equal(report.unchecked, 0);
      assert.equal(fake.entry(fake.rootCap, 'a')?.roUri, ours, 'linked again');
      assert.equal((await c.fs.status()).writes.directoryChanges.repaired, 1);
    });

    it('a name we removed that comes back at the version we removed is removed again; someone else\'s new file there stays', async () => {
      const c = await start();
      await c.fs.release('/gone', await writeFile(c.fs, '/gone', 'soon gone'));
      await c.fs.release('/taken', await writeFile(c.fs, '/taken', 'ours'));
      await bounded(c.fs.sync(), 'sync');
      const removed = fake.entry(fake.rootCap, 'gone')!.roUri;
      await c.fs.unlink('/gone');
      await c.fs.unlink('/taken');
      fake.link(fake.rootCap, 'gone', removed); // the stale update puts our removed version back
      const theirs = fake.addFile(Buffer.from('their new file'));
      fake.link(fake.rootCap, 'taken', theirs);
      const report = await bounded(c.fs.sync(), 'sync');
      assert.deepEqual(report.failed, []);
      assert.equal(fake.entry(fake.rootCap, 'gone'), undefined, 'stays removed');
      assert.equal(storedText(fake, 'taken'), 'their new file');
    });

    it('a name both machines wrote at once: theirs keeps the name, ours is kept beside it and reported', async () => {
      const c = await start();
      await c.fs.release('/both', await writeFile(c.fs, '/both', 'ours'));
      await linked('both');
      fake.link(fake.rootCap, 'both', fake.addFile(Buffer.from('theirs')));
      const report = await bounded(c.fs.sync(), 'sync');
      assert.deepEqual(report.failed, []);
      assert.equal(storedText(fake, 'both'), 'theirs');
      const conflicts = writeBack ? (await c.fs.status()).writes.directoryChanges.conflicts : report.conflicts;
      assert.equal(conflicts.length, 1);
      assert.equal(storedText(fake, conflicts[0]!.keptAs.slice(1)), 'ours');
    });

    it('a version whose link says it replaced ours is a deliberate overwrite: no conflict', async () => {
      const c = await start();
      await c.fs.release('/doc', await writeFile(c.fs, '/doc', 'ours'));
      await linked('doc');
      const ours = fake.entry(fake.rootCap, 'doc')!.roUri;
      fake.link(fake.rootCap, 'doc', fake.addFile(Buffer.from('their edit of ours')), { [REPLACES_KEY]: redact(ours) });
      const report = await bounded(c.fs.sync(), 'sync');
      assert.deepEqual(report.conflicts, []);
      assert.equal(storedText(fake, 'doc'), 'their edit of ours');
      assert.equal(Object.keys(fake.tree(fake.rootCap)).filter((n) => n.startsWith('doc (conflict')).length, 0);
    });

    it('our link over a version we saw says which one it replaced', async () => {
      const c = await start();
      await c.fs.release('/v', await writeFile(c.fs, '/v', 'one'));
      await bounded(c.fs.sync(), 'sync');
      const first = fake.entry(fake.rootCap, 'v')!.roUri;
      await c.fs.release('/v', await writeFile(c.fs, '/v', 'two'));
      await bounded(c.fs.sync(), 'sync');
      assert.equal(fake.entry(fake.rootCap, 'v')!.metadata[REPLACES_KEY], redact(first));
    });
  });
}

describe('the directory-update ledger across a restart, and unknown outcomes', () => {
  let fake: FakeTahoe;
  const { start } = coresPerTest((f) => (fake = f));

  it('a change not checked before the mount stopped is checked (and made again) by the next start', async () => {
    const first = await start({ settleMs: 3_600_000 });
    await first.fs.release('/kept', await writeFile(first.fs, '/kept', 'ours'));
    const ours = fake.entry(fake.rootCap, 'kept')!.roUri;
    await first.stop();
    fake.unlinkDirect(fake.rootCap, 'kept');
    const second = await start({ settleMs: SETTLE_MS, cacheDir: first.cacheDir });
    const report = await bounded(second.fs.sync(), 'sync');
    assert.equal(report.unchecked, 0);
    assert.equal(fake.entry(fake.rootCap, 'kept')?.roUri, ours);
  });

  it('a link answered 500 that did land is a success, not an error (its outcome is checked, not assumed)', async () => {
    const c = await start({ settleMs: SETTLE_MS });
    const held = fake.hold(isSetChildren);
    const fh = await writeFile(c.fs, '/landed', 'ours');
    const closing = c.fs.release('/landed', fh);
    const req = await held.arrived;
    // The update is applied, then its answer says it failed (as UncoordinatedWriteError does).
    const [[, info]] = Object.values(JSON.parse(req.body.toString()) as Record<string, [string, { ro_uri: string; metadata: Record<string, unknown> }]>).map((v) => ['landed', v[1]] as const);
    fake.link(fake.rootCap, 'landed', info.ro_uri, info.metadata);
    held.fail(500, 'UncoordinatedWriteError');
    await bounded(closing, 'close');
    assert.equal(storedText(fake, 'landed'), 'ours');
  });
});

describe('the ledger file', () => {
  it('keeps what was set and not deleted across a reload, skips a torn last line, and is 0600', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bm-ledger-'));
    try {
      const path = join(dir, 'ledger.jsonl');
      const file = new LedgerFile<{ n: number }>(path, log);
      await file.load();
      file.set('a', { n: 1 });
      file.set('b', { n: 2 });
      file.set('a', { n: 3 });
      file.delete('b');
      await file.flushed();
      await appendFile(path, '{"set":"c","entr'); // a crash in the middle of an append
      const again = new LedgerFile<{ n: number }>(path, log);
      assert.deepEqual([...(await again.load())], [['a', { n: 3 }]]);
      assert.equal((await readFile(path, 'utf8')).split('\n').filter(Boolean).length, 1, 'written anew with the live entries only');
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      again.rewrite([['z', { n: 9 }]]);
      again.set('y', { n: 8 });
      await again.flushed();
      assert.deepEqual([...(await new LedgerFile<{ n: number }>(path, log).load())], [['z', { n: 9 }], ['y', { n: 8 }]]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('directory updates whose answer is unknown', () => {
  let fake: FakeTahoe;
  const { start } = coresPerTest((f) => (fake = f));
  const isDelete = (req: { method: string }) => req.method === 'DELETE';

  it('an unlink answered 500 that did not land is tried again, and succeeds', async () => {
    const c = await start({ settleMs: SETTLE_MS });
    await c.fs.release('/x', await writeFile(c.fs, '/x', 'x'));
    const held = fake.hold(isDelete);
    const unlinking = c.fs.unlink('/x');
    await held.arrived;
    held.fail(500, 'UncoordinatedWriteError'); // not applied: the name is still there
    await bounded(unlinking, 'unlink');
    assert.equal(fake.entry(fake.rootCap, 'x'), undefined);
    assert.equal(fake.requests.filter(isDelete).length, 2, 'tried once more');
  });

  it('an unlink answered 404 is no unknown: ENOENT at once', async () => {
    const c = await start({ settleMs: SETTLE_MS });
    await c.fs.release('/y', await writeFile(c.fs, '/y', 'y'));
    const held = fake.hold(isDelete);
    const unlinking = c.fs.unlink('/y');
    await held.arrived;
    held.fail(404, 'No such child');
    await assert.rejects(bounded(unlinking, 'unlink'), { code: 'ENOENT' });
    assert.equal(fake.requests.filter(isDelete).length, 1);
  });
});
