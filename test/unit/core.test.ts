// The filesystem core (TahoeFs) over an in-memory Tahoe web API: the races between uploads and namespace
// changes, records that must not be lost, bounded memory, and mutable files, without a grid or a mount.
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile as readText, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContentCache } from '../../src/cache/content-cache.js';
import { StagingJournal, type StagedRecord } from '../../src/cache/staging-journal.js';
import { FsError } from '../../src/errors.js';
import { TahoeFs, type ProcessIdentity } from '../../src/fs/tahoe-fs.js';
import { silentLogger } from '../../src/log.js';
import { parseCap } from '../../src/tahoe/caps.js';
import { DEFAULT_TIMEOUTS, TahoeClient } from '../../src/tahoe/client.js';
import { startFakeTahoe, target, type FakeTahoe } from '../support/fake-tahoe.js';
import { bounded, coresPerTest, isLink, isUpload, log, me, MiB, readAll, startCore, storedText, writeFile, type Core } from '../support/core.js';

describe('core: uploads racing renames and unlinks', () => {
  let fake: FakeTahoe;
  let core: Core;
  beforeEach(async () => {
    fake = await startFakeTahoe({ literalUpTo: -1 });
    core = await startCore(fake);
  });
  afterEach(async () => {
    await core.stop();
    await rm(core.cacheDir, { recursive: true, force: true });
    await fake.close();
  });

  it('a rename during an upload never overwrites or removes a file made at the old name meanwhile', async () => {
    const { fs } = core;
    const fh = await writeFile(fs, '/a', 'ours');
    const held = fake.hold(isUpload);
    const flushing = fs.flush('/a', fh);
    await held.arrived;
    await fs.rename('/a', '/b');
    const stranger = fake.addFile(Buffer.from('a stranger made this'));
    fake.link(fake.rootCap, 'a', stranger); // another client, at the old name
    held.release();
    await bounded(flushing, 'flush');
    await fs.release('/b', fh);
    assert.equal(fake.entry(fake.rootCap, 'a')?.roUri, stranger, "the stranger's file is untouched");
    assert.equal(storedText(fake, 'b'), 'ours');
  });

  it('an unlink during an upload never overwrites or removes a file made at that name meanwhile', async () => {
    const { fs } = core;
    const fh = await writeFile(fs, '/a', 'ours');
    const held = fake.hold(isUpload);
    const flushing = fs.flush('/a', fh);
    await held.arrived;
    await fs.unlink('/a');
    const stranger = fake.addFile(Buffer.from('a stranger made this'));
    fake.link(fake.rootCap, 'a', stranger);
    held.release();
    await bounded(flushing, 'flush');
    await fs.release('/a', fh);
    assert.equal(fake.entry(fake.rootCap, 'a')?.roUri, stranger);
    assert.deepEqual(Object.keys(fake.tree(fake.rootCap)), ['a']);
  });

  it('a rename while the link is on its way waits for it, then moves the new content', async () => {
    const { fs } = core;
    const fh = await writeFile(fs, '/a', 'v1');
    await fs.flush('/a', fh);
    await fs.write('/a', fh, Buffer.from('v2'), 0);
    const held = fake.hold(isLink);
    const flushing = fs.flush('/a', fh);
    await held.arrived;
    const renaming = fs.rename('/a', '/b');
    held.release();
    await bounded(Promise.all([flushing, renaming]), 'flush and rename');
    await fs.release('/b', fh);
    assert.equal(fake.entry(fake.rootCap, 'a'), undefined);
    assert.equal(storedText(fake, 'b'), 'v2');
    assert.equal(await readAll(fs, '/b'), 'v2');
  });

  it('a file opened at the target while a rename is on its way is replaced, not linked back over it', async () => {
    const { fs } = core;
    for (const [name, text] of [['a', 'A content'], ['b', 'B old']] as const) {
      const fh = await writeFile(fs, `/${name}`, text);
      await fs.release(`/${name}`, fh);
    }
    const held = fake.hold((req) => req.method === 'POST' && target(req as never).query.get('t') === 'relink');
    const renaming = fs.rename('/a', '/b');
    await held.arrived;
    const b = await fs.open('/b', 2 /* O_RDWR */);
    held.release();
    await bounded(renaming, 'rename');
    await fs.write('/b', b, Buffer.from('B new'), 0);
    await fs.release('/b', b);
    assert.equal(storedText(fake, 'b'), 'A content');
    assert.equal(await readAll(fs, '/b'), 'A content');
  });

  it('a rename over a file whose upload is on its way: the renamed file wins', async () => {
    const { fs } = core;
    const other = await writeFile(fs, '/x', 'x content');
    await fs.release('/x', other);
    const fh = await writeFile(fs, '/a', 'replaced');
    const held = fake.hold(isLink);
    const flushing = fs.flush('/a', fh);
    await held.arrived;
    const renaming = fs.rename('/x', '/a');
    held.release();
    await bounded(Promise.all([flushing, renaming]), 'flush and rename');
    await fs.release('/a', fh);
    assert.equal(storedText(fake, 'a'), 'x content');
    assert.equal(fake.entry(fake.rootCap, 'x'), undefined);
  });
});

describe('core: staged writes and their records', () => {
  let fake: FakeTahoe;
  const { start } = coresPerTest((f) => (fake = f));

  /** A process that will have crashed by the time the next one starts. */
  const crashed: ProcessIdentity = { pid: 2, start: 'crashed' };

  it('two closes of one file whose upload fails both get EIO (the second waits for the first, without spinning)', async () => {
    const c = await start();
    const a = await writeFile(c.fs, '/both', 'bytes');
    const b = await c.fs.open('/both', 1);
    fake.down(503);
    // The second flush waits for the first's attempt; its record is written before either answers.
    const results = await bounded(Promise.allSettled([c.fs.flush('/both', a), c.fs.flush('/both', b)]), 'two flushes');
    for (const r of results) assert.equal(r.status === 'rejected' && (r.reason as FsError).code, 'EIO');
    fake.up();
    await c.fs.release('/both', a);
    await c.fs.release('/both', b);
    assert.equal(storedText(fake, 'both'), 'bytes');
  });

  it('a file unlinked while open with a failed upload does not come back after a crash', async () => {
    const first = await start({ owner: crashed });
    const fh = await writeFile(first.fs, '/gone', 'bytes');
    fake.down(503);
    await assert.rejects(first.fs.flush('/gone', fh), (e: FsError) => e.code === 'EIO');
    fake.up();
    await first.fs.unlink('/gone');
    // A crash now: the next process finds the record and must leave the file gone.
    const second = await start({ cacheDir: first.cacheDir, owner: { pid: 3, start: 'the next process' } });
    await bounded(second.fs.recover(), 'recovery');
    assert.equal(fake.entry(fake.rootCap, 'gone'), undefined);
  });

  it('records written while a retry pass runs are all kept: an unlinked file stays gone, a failed one is stored', async () => {
    const first = await start({ owner: crashed });
    const { fs } = first;
    // One file whose upload failed and is closed: the retry pass will store it.
    const failed = await writeFile(fs, '/failed', 'retry me');
    fake.down(503);
    await assert.rejects(fs.flush('/failed', failed));
    await fs.release('/failed', failed);
    fake.up();
    // Open files whose records change while the pass runs.
    const open: number[] = [];
    for (let i = 0; i < 8; i++) open.push(await writeFile(fs, `/open${i}`, `open ${i}`));
    const held = fake.hold(isUpload);
    const pass = fs.recover();
    await held.arrived;
    for (let i = 0; i < 8; i++) {
      if (i % 2 === 0) await fs.unlink(`/open${i}`);
      else await fs.rename(`/open${i}`, `/moved${i}`);
    }
    held.release();
    await bounded(pass, 'retry pass');
    assert.equal(storedText(fake, 'failed'), 'retry me');
    // A crash now: the next process stores what is still dirty where it is now, and brings nothing back.
    const second = await start({ cacheDir: first.cacheDir, owner: { pid: 3, start: 'the next process' } });
    await bounded(second.fs.recover(), 'recovery');
    for (let i = 0; i < 8; i++) {
      assert.equal(fake.entry(fake.rootCap, `open${i}`), undefined, `open${i} stays gone`);
      if (i % 2 === 1) assert.equal(storedText(fake, `moved${i}`), `open ${i}`);
    }
  });

  it('a failed upload is stored by the next process, at the name the file was renamed to', async () => {
    const first = await start({ owner: crashed });
    const fh = await writeFile(first.fs, '/old', 'staged');
    fake.down(503);
    await assert.rejects(first.fs.flush('/old', fh));
    fake.up();
    await first.fs.rename('/old', '/new');
    const second = await start({ cacheDir: first.cacheDir, owner: { pid: 3, start: 'the next process' } });
    await bounded(second.fs.recover(), 'recovery');
    assert.equal(storedText(fake, 'new'), 'staged');
    assert.equal(fake.entry(fake.rootCap, 'old'), undefined);
  });

  it('a write while the record of a finished upload is on its way leaves the record saying dirty', async () => {
    // Holds the first record write that says "clean" until the test lets it go.
    let holding = false;
    let reached!: () => void;
    let letGo!: () => void;
    const arrived = new Promise<void>((r) => (reached = r));
    const released = new Promise<void>((r) => (letGo = r));
    class SlowJournal extends StagingJournal {
      override async write(stagingPath: string, record: StagedRecord, durable?: boolean): Promise<void> {
        if (holding && !record.dirty) {
          holding = false;
          reached();
          await released;
        }
        return super.write(stagingPath, record, durable);
      }
    }
    const { fs, cacheDir } = await start({ journal: (dir) => new SlowJournal(dir, log) });
    const fh = await writeFile(fs, '/f', 'v1');
    holding = true;
    const syncing = fs.fsync('/f', fh, false);
    await bounded(arrived, 'the record saying clean');
    const writing = fs.write('/f', fh, Buffer.from('v2'), 0);
    letGo();
    await bounded(Promise.all([syncing, writing]), 'fsync and write');
    const staging = join(cacheDir, 'staging');
    const recordName = (await readdir(staging)).find((n) => n.endsWith('.json'))!;
    const record = JSON.parse(await readText(join(staging, recordName), 'utf8')) as StagedRecord;
    assert.equal(record.dirty, true, 'a crash now must store v2');
    await fs.release('/f', fh);
    assert.equal(storedText(fake, 'f'), 'v2');
  });

  it('writes to an unlinked open file write no records', async () => {
    let writes = 0;
    class CountingJournal extends StagingJournal {
      override async write(stagingPath: string, record: StagedRecord, durable?: boolean): Promise<void> {
        writes++;
        return super.write(stagingPath, record, durable);
      }
    }
    const { fs } = await start({ journal: (dir) => new CountingJournal(dir, log) });
    const fh = await writeFile(fs, '/tmpfile', 'x');
    await fs.unlink('/tmpfile');
    const before = writes;
    for (let i = 0; i < 100; i++) await fs.write('/tmpfile', fh, Buffer.alloc(4096, i), i * 4096);
    assert.equal(writes, before);
    assert.equal((await fs.read('/tmpfile', fh, 4096, 99 * 4096))[0], 99);
    await fs.release('/tmpfile', fh);
    assert.equal(fake.entry(fake.rootCap, 'tmpfile'), undefined);
  });

  it('a record that cannot be written fails the write that needed it', async () => {
    let failNext = false;
    class FullDiskJournal extends StagingJournal {
      override async write(stagingPath: string, record: StagedRecord, durable?: boolean): Promise<void> {
        if (failNext) {
          failNext = false;
          throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
        }
        return super.write(stagingPath, record, durable);
      }
    }
    const { fs } = await start({ journal: (dir) => new FullDiskJournal(dir, log) });
    const fh = await writeFile(fs, '/f', 'first');
    await fs.flush('/f', fh);
    failNext = true;
    await assert.rejects(fs.write('/f', fh, Buffer.from('second'), 0), (e: FsError) => e.code === 'ENOSPC');
    // Written again, the record is written too: nothing is left unrecorded.
    await fs.write('/f', fh, Buffer.from('second'), 0);
    await fs.release('/f', fh);
    assert.equal(storedText(fake, 'f'), 'second');
  });
});

describe('core: memory and mutable files', () => {
  let fake: FakeTahoe;
  let core: Core;
  beforeEach(async () => {
    fake = await startFakeTahoe({ literalUpTo: -1 });
  });
  afterEach(async () => {
    await core?.stop();
    if (core) await rm(core.cacheDir, { recursive: true, force: true });
    await fake.close();
  });
  after(() => undefined);

  it('a walk over many directories keeps a bounded number of listings', async () => {
    for (let i = 0; i < 300; i++) fake.link(fake.rootCap, `d${i}`, fake.createDirectory());
    core = await startCore(fake, { maxListings: 50 });
    for (let i = 0; i < 300; i++) assert.deepEqual(await core.fs.readdir(`/d${i}`), ['.', '..']);
    assert.ok(core.fs.cachedListings <= 50, `${core.fs.cachedListings} listings held`);
  });

  it('a mutable file streams: its first bytes are read while the rest is still on its way', async () => {
    const content = Buffer.alloc(4 * MiB, 7);
    fake.link(fake.rootCap, 'm', fake.createMutableFile(content));
    core = await startCore(fake);
    let resume!: () => void;
    const rest = new Promise<void>((r) => (resume = r));
    fake.serveWith(() => ({ chunkSize: 64 * 1024, holdAfter: 256 * 1024, resume: rest }));
    const fh = await core.fs.open('/m', 0);
    const first = await bounded(core.fs.read('/m', fh, 4096, 0), 'first read of a mutable file');
    assert.deepEqual(first, content.subarray(0, 4096));
    assert.ok(core.cache.usedBytes > 0, 'its bytes count in the cache');
    resume();
    const last = await bounded(core.fs.read('/m', fh, 4096, content.length - 4096), 'last read');
    assert.deepEqual(last, content.subarray(content.length - 4096));
    await core.fs.release('/m', fh);
    assert.equal(core.cache.usedBytes, 0, 'a mutable snapshot is dropped at close');
    assert.deepEqual(await readdir(core.cache.tmpDir), []);
  });
});
