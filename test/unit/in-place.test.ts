// Files that change in place, over the in-memory Tahoe (which fails offset writes as Tahoe 1.20 does): a big
// file changed in place becomes MDMF and then takes only its changed ranges; a file rewritten whole stays
// immutable; the staging file holds only what was written; a failed offset write falls back to a whole store;
// a crash leaves a record that recovery completes from the base content; both modes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import { StagingJournal } from '../../src/cache/staging-journal.js';
import type { TahoeFs } from '../../src/fs/tahoe-fs.js';
import { target, type FakeTahoe } from '../support/fake-tahoe.js';
import { bounded, coresPerTest, log, me, type Core } from '../support/core.js';

const KiB = 1024;
const SEGMENT = 128 * KiB;
const { O_RDWR, O_TRUNC, O_WRONLY } = constants;

const isOffsetWrite = (req: { method: string; rawUrl: string }) => req.method === 'PUT' && target(req as never).query.has('offset');
const isWholePut = (req: { method: string; rawUrl: string }) => req.method === 'PUT' && !target(req as never).query.has('offset');

async function writeAt(fs: TahoeFs, path: string, data: Buffer, position: number, flags = O_RDWR): Promise<void> {
  const fh = flags & constants.O_CREAT ? await fs.create(path, 0o644, 0, 0) : await fs.open(path, flags);
  await fs.write(path, fh, data, position);
  await fs.flush(path, fh);
  await fs.release(path, fh);
}

async function readWhole(fs: TahoeFs, path: string): Promise<Buffer> {
  const fh = await fs.open(path, 0);
  try {
    return await fs.read(path, fh, (await fs.getattr(path)).size, 0);
  } finally {
    await fs.release(path, fh);
  }
}

for (const writeBack of [false, true]) {
  describe(`files changed in place (${writeBack ? 'write-back' : 'durable'})`, () => {
    let fake: FakeTahoe;
    const { start } = coresPerTest((f) => (fake = f), { writeBack, drainMs: 5_000, mutableFrom: 256 * KiB });
    const settle = (c: Core) => bounded(c.fs.sync(), 'sync');
    const stored = (name: string) => fake.bytes(fake.entry(fake.rootCap, name)!.rwUri ?? fake.entry(fake.rootCap, name)!.roUri)!;
    /** A file of three segments, changed in place once (so MDMF from then on) and stored: its bytes. */
    const madeMutable = async (c: Core, name: string): Promise<Buffer> => {
      const local = randomBytes(3 * SEGMENT);
      await writeAt(c.fs, `/${name}`, local, 0, O_WRONLY | constants.O_CREAT);
      await writeAt(c.fs, `/${name}`, Buffer.from('a'), 1);
      local[1] = 'a'.charCodeAt(0);
      await settle(c);
      return local;
    };

    it('a big file changed in place becomes MDMF, then each change sends only its ranges; every byte reads back', async () => {
      const c = await start();
      const local = randomBytes(3 * SEGMENT + 5000);
      await writeAt(c.fs, '/big', local, 0, O_WRONLY | constants.O_CREAT);
      await c.fs.release('/big', await c.fs.create('/small', 0o644, 0, 0));
      await settle(c);
      assert.match(fake.entry(fake.rootCap, 'big')!.roUri, /^URI:CHK:/);

      const change = (pos: number, len: number): Buffer => {
        const bytes = randomBytes(len);
        bytes.copy(local, pos);
        return bytes;
      };
      await writeAt(c.fs, '/big', change(1000, 4 * KiB), 1000);
      await settle(c);
      const entry = fake.entry(fake.rootCap, 'big')!;
      assert.match(entry.rwUri ?? '', /^URI:MDMF:/, 'stored as MDMF');
      assert.equal(entry.metadata.size, local.length, 'its size in the link');
      assert.ok(stored('big').equals(local));

      const before = fake.requests.length;
      await writeAt(c.fs, '/big', change(2 * SEGMENT + 10, 100), 2 * SEGMENT + 10);
      await settle(c);
      const puts = fake.requests.slice(before).filter((r) => r.method === 'PUT');
      assert.equal(puts.filter(isWholePut).length, 0, 'no whole upload');
      assert.equal(puts.length, 1);
      assert.equal(puts[0]!.body.length, 100, 'only the changed bytes');
      assert.equal(fake.entry(fake.rootCap, 'big')!.rwUri, entry.rwUri, 'the same cap');
      assert.ok(stored('big').equals(local));
      assert.ok((await readWhole(c.fs, '/big')).equals(local));
    });

    it('appends land, at a segment boundary too (from one byte before); a gap past the end is zeros', async () => {
      const c = await start();
      let local: Buffer = randomBytes(2 * SEGMENT);
      await writeAt(c.fs, '/log', local, 0, O_WRONLY | constants.O_CREAT);
      await writeAt(c.fs, '/log', Buffer.from('x'), 5); // becomes MDMF
      local[5] = 'x'.charCodeAt(0);
      await settle(c);
      const tail = randomBytes(3000);
      await writeAt(c.fs, '/log', tail, local.length); // an append at exactly a segment boundary
      local = Buffer.concat([local, tail]);
      await settle(c);
      assert.ok(stored('log').equals(local));
      const far = randomBytes(10);
      await writeAt(c.fs, '/log', far, local.length + 50 * KiB);
      local = Buffer.concat([local, Buffer.alloc(50 * KiB), far]);
      await settle(c);
      assert.ok(stored('log').equals(local));
      assert.equal(fake.requests.filter(isWholePut).length, 2, 'the first upload and the conversion only');
    });

    it('a truncate that shrinks it stores it whole; one that grows it sends zeros', async () => {
      const c = await start();
      const local = randomBytes(3 * SEGMENT);
      await writeAt(c.fs, '/t', local, 0, O_WRONLY | constants.O_CREAT);
      await writeAt(c.fs, '/t', Buffer.from('y'), 0);
      local[0] = 'y'.charCodeAt(0);
      await settle(c);
      const fh = await c.fs.open('/t', O_RDWR);
      await c.fs.ftruncate('/t', fh, 2 * SEGMENT + 7);
      await c.fs.flush('/t', fh);
      await c.fs.release('/t', fh);
      await settle(c);
      assert.ok(stored('t').equals(local.subarray(0, 2 * SEGMENT + 7)));
      const puts = fake.requests.length;
      await c.fs.truncate('/t', 2 * SEGMENT + 7 + 1000);
      await settle(c);
      assert.ok(stored('t').equals(Buffer.concat([local.subarray(0, 2 * SEGMENT + 7), Buffer.alloc(1000)])));
      assert.equal(fake.requests.slice(puts).filter(isWholePut).length, 0);
    });

    it('a file rewritten whole (O_TRUNC), or one below the threshold, stays immutable', async () => {
      const c = await start();
      await writeAt(c.fs, '/whole', randomBytes(3 * SEGMENT), 0, O_WRONLY | constants.O_CREAT);
      await writeAt(c.fs, '/whole', randomBytes(3 * SEGMENT), 0, O_WRONLY | O_TRUNC);
      await writeAt(c.fs, '/little', randomBytes(10 * KiB), 0, O_WRONLY | constants.O_CREAT);
      await writeAt(c.fs, '/little', Buffer.from('z'), 100);
      await settle(c);
      assert.match(fake.entry(fake.rootCap, 'whole')!.roUri, /^URI:CHK:/);
      assert.match(fake.entry(fake.rootCap, 'little')!.roUri, /^URI:CHK:/);
    });

    it('the staging file of a change holds only what was written: a sparse file, the rest read from the cache', async () => {
      const c = await start();
      const local = randomBytes(4 * SEGMENT);
      await writeAt(c.fs, '/s', local, 0, O_WRONLY | constants.O_CREAT);
      await settle(c);
      const fh = await c.fs.open('/s', O_RDWR);
      await c.fs.write('/s', fh, Buffer.from('changed'), SEGMENT);
      Buffer.from('changed').copy(local, SEGMENT);
      const journal = await new StagingJournal(c.cache.stagingDir, log).list();
      const staging = journal.find((s) => s.record.name === 's')!;
      const info = await stat(staging.stagingPath);
      assert.equal(info.size, local.length);
      assert.ok(info.blocks * 512 <= 64 * KiB, `${info.blocks * 512} bytes allocated for a 7-byte change`);
      assert.deepEqual(staging.record.overlay?.ranges, [[0, SEGMENT], [SEGMENT + 7, local.length]]);
      assert.ok((await c.fs.read('/s', fh, local.length, 0)).equals(local), 'reads through the open handle');
      await c.fs.flush('/s', fh);
      await c.fs.release('/s', fh);
      await settle(c);
      assert.ok(stored('s').equals(local));
    });

    it('a sparse file written at random offsets: the grid and this mount\'s cached version of it read back exactly', async () => {
      const c = await start();
      const size = 4 * 1024 * KiB;
      await writeAt(c.fs, '/sparse', Buffer.from('header'), 0, O_WRONLY | constants.O_CREAT);
      await c.fs.truncate('/sparse', size);
      const local = Buffer.alloc(size);
      local.write('header');
      const fh = await c.fs.open('/sparse', O_RDWR);
      for (let i = 0; i < 40; i++) {
        const at = Math.floor(Math.random() * (size - 4 * KiB));
        const bytes = randomBytes(4 * KiB);
        await c.fs.write('/sparse', fh, bytes, at);
        bytes.copy(local, at);
      }
      await c.fs.flush('/sparse', fh);
      await c.fs.release('/sparse', fh);
      await settle(c);
      assert.ok(stored('sparse').equals(local), 'the grid');
      const requests = fake.requests.length;
      assert.ok((await readWhole(c.fs, '/sparse')).equals(local), 'the cached version');
      assert.ok((await readWhole(c.fs, '/sparse')).equals(local), 'again');
      if (!writeBack) assert.equal(fake.requests.slice(requests).filter((r) => r.method === 'GET' && !target(r).query.has('t')).length, 0, 'read from the cache');
    });

    it('a change that keeps the size and the mtime (touch -r) still reads back new: every store names a new version', async () => {
      const c = await start();
      const local = await madeMutable(c, 'f');
      const mtimeNs = fake.entry(fake.rootCap, 'f')!.metadata.mtime_ns as string;
      assert.ok((await readWhole(c.fs, '/f')).equals(local));
      const fh = await c.fs.open('/f', O_RDWR);
      await c.fs.write('/f', fh, Buffer.from('ZZZZ'), 100);
      Buffer.from('ZZZZ').copy(local, 100);
      await c.fs.utimens('/f', '', mtimeNs);
      await c.fs.flush('/f', fh);
      await c.fs.release('/f', fh);
      await settle(c);
      assert.ok(stored('f').equals(local));
      assert.ok((await readWhole(c.fs, '/f')).equals(local));
    });

    it('a write past the end that a truncate then cuts short: the grid is as long as the link says', async () => {
      const c = await start();
      let local: Buffer = await madeMutable(c, 'g');
      const fh = await c.fs.open('/g', O_RDWR);
      await c.fs.write('/g', fh, Buffer.from('tail'), local.length + 1000);
      await c.fs.ftruncate('/g', fh, local.length + 500);
      await c.fs.flush('/g', fh);
      await c.fs.release('/g', fh);
      local = Buffer.concat([local, Buffer.alloc(500)]);
      await settle(c);
      assert.ok(stored('g').equals(local));
      assert.ok((await readWhole(c.fs, '/g')).equals(local));
    });

    it('a store that a utimens overlapped: the size the grid holds is still known to the next change', async () => {
      const c = await start();
      let local: Buffer = await madeMutable(c, 'd');
      const fh = await c.fs.open('/d', O_RDWR);
      const more = randomBytes(2 * SEGMENT);
      await c.fs.write('/d', fh, more, local.length);
      const held = fake.hold(isOffsetWrite);
      const flush = c.fs.fsync('/d', fh); // a store, in both modes
      await held.arrived;
      await c.fs.utimens('/d', '', '1700000000000000000');
      held.release();
      await flush;
      await c.fs.ftruncate('/d', fh, local.length + SEGMENT);
      await c.fs.flush('/d', fh);
      await c.fs.release('/d', fh);
      await settle(c);
      local = Buffer.concat([local, more.subarray(0, SEGMENT)]);
      assert.ok(stored('d').equals(local));
    });

    it('an offset write the gateway fails falls back to storing the file whole', async () => {
      const c = await start();
      const local = await madeMutable(c, 'f');
      const held = fake.hold(isOffsetWrite);
      const write = writeAt(c.fs, '/f', Buffer.from('b'), 2);
      local[2] = 'b'.charCodeAt(0);
      (await held.arrived, held.fail(500, 'AssertionError'));
      await write;
      await settle(c);
      assert.ok(stored('f').equals(local));
      assert.match(fake.entry(fake.rootCap, 'f')!.rwUri ?? '', /^URI:MDMF:/);
    });
  });
}

describe('recovery of a change in place', () => {
  let fake: FakeTahoe;
  const { start } = coresPerTest((f) => (fake = f), { mutableFrom: 256 * KiB });

  it('a store that failed: the next mount fills the staging file from the base content and stores every byte', async () => {
    const first = await start({ owner: { pid: me.pid, start: 'a-crashed-run' } });
    const local = randomBytes(3 * SEGMENT + 99);
    await writeAt(first.fs, '/r', local, 0, O_WRONLY | constants.O_CREAT);
    fake.down(503);
    const fh = await first.fs.open('/r', O_RDWR);
    await first.fs.write('/r', fh, Buffer.from('kept'), 2 * SEGMENT);
    Buffer.from('kept').copy(local, 2 * SEGMENT);
    await assert.rejects(first.fs.flush('/r', fh));
    await first.fs.release('/r', fh);
    await first.stop();
    const record = (await new StagingJournal(first.cache.stagingDir, log).list()).find((s) => s.record.name === 'r');
    assert.ok(record?.record.dirty && record.record.overlay, 'a dirty record over its base');
    fake.up();
    const second = await start({ cacheDir: first.cacheDir });
    await bounded(second.fs.sync(), 'sync');
    const entry = fake.entry(fake.rootCap, 'r')!;
    assert.ok(fake.bytes(entry.rwUri ?? entry.roUri)!.equals(local));
    assert.deepEqual(await new StagingJournal(first.cache.stagingDir, log).list(), []);
  });

  it('a crash after two writes over the base, no fsync: recovery keeps both (the record follows each one)', async () => {
    const first = await start({ owner: { pid: me.pid, start: 'a-crashed-run' } });
    const local = randomBytes(3 * SEGMENT);
    await writeAt(first.fs, '/w', local, 0, O_WRONLY | constants.O_CREAT);
    const fh = await first.fs.open('/w', O_RDWR);
    await first.fs.write('/w', fh, Buffer.from('AAAA'), 0);
    await first.fs.write('/w', fh, Buffer.from('BBBB'), 2 * SEGMENT);
    Buffer.from('AAAA').copy(local, 0);
    Buffer.from('BBBB').copy(local, 2 * SEGMENT);
    // Never flushed nor closed: a second mount over the same cache finds the record of a dead process.
    const second = await start({ cacheDir: first.cacheDir });
    await bounded(second.fs.sync(), 'sync');
    const entry = fake.entry(fake.rootCap, 'w')!;
    assert.ok(fake.bytes(entry.rwUri ?? entry.roUri)!.equals(local));
  });
});

for (const writeBack of [false, true]) {
  describe(`two mounts change one file in place (${writeBack ? 'write-back' : 'durable'})`, () => {
    let fake: FakeTahoe;
    const { start } = coresPerTest((f) => (fake = f), { writeBack, drainMs: 5_000, mutableFrom: 256 * KiB, cacheTimeoutMs: 0 });

    it('changes made over an older version are stored whole (the last writer wins), never merged into the other\'s', async () => {
      const [m1, m2] = [await start(), await start()];
      const local = randomBytes(4 * SEGMENT);
      await writeAt(m1.fs, '/f', local, 0, O_WRONLY | constants.O_CREAT);
      await writeAt(m1.fs, '/f', Buffer.from('a'), 1);
      await bounded(m1.fs.sync(), 'sync');
      const fh = await m2.fs.open('/f', O_RDWR);
      await m2.fs.read('/f', fh, local.length, 0);
      await writeAt(m1.fs, '/f', Buffer.from('XXXX'), 10);
      await bounded(m1.fs.sync(), 'sync');
      await m2.fs.write('/f', fh, Buffer.from('YYYY'), 3 * SEGMENT);
      await m2.fs.flush('/f', fh);
      await m2.fs.release('/f', fh);
      await bounded(m2.fs.sync(), 'sync');
      const entry = fake.entry(fake.rootCap, 'f')!;
      const grid = fake.bytes(entry.rwUri!)!;
      assert.equal(grid.subarray(3 * SEGMENT, 3 * SEGMENT + 4).toString(), 'YYYY');
      assert.notEqual(grid.subarray(10, 14).toString(), 'XXXX', 'not a merge of both');
      assert.ok((await readWhole(m2.fs, '/f')).equals(grid));
      assert.ok((await readWhole(m1.fs, '/f')).equals(grid));
    });
  });
}

describe('a store kept beside another machine\'s version', () => {
  let fake: FakeTahoe;
  const { start } = coresPerTest((f) => (fake = f), { mutableFrom: 256 * KiB, cacheTimeoutMs: 0 });

  for (const mdmf of [false, true]) {
    it(`leaves the cache of the entry it was based on alone (${mdmf ? 'MDMF' : 'immutable'})`, async () => {
      const m1 = await start({ writeBack: true });
      const m2 = await start();
      const old = randomBytes(3 * SEGMENT);
      await writeAt(m2.fs, '/f', old, 0, O_WRONLY | constants.O_CREAT);
      if (mdmf) {
        await writeAt(m2.fs, '/f', Buffer.from('a'), 1);
        old[1] = 97;
      }
      await bounded(m2.fs.sync(), 'sync');
      const fh = await m1.fs.open('/f', O_WRONLY | O_TRUNC);
      await m1.fs.write('/f', fh, randomBytes(3 * SEGMENT), 0);
      await m2.fs.rename('/f', '/f.old');
      await writeAt(m2.fs, '/f', Buffer.from('a new f'), 0, O_WRONLY | constants.O_CREAT);
      await bounded(m2.fs.sync(), 'sync');
      await m1.fs.flush('/f', fh);
      await m1.fs.release('/f', fh);
      await bounded(m1.fs.sync(), 'sync');
      assert.ok((await readWhole(m1.fs, '/f.old')).equals(old));
    });
  }
});
