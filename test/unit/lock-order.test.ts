// The LOCK ORDER of the core (tahoe-fs.ts), held to by its ops: each test here would deadlock (and fail at its
// bound) if an op committed a file while holding its link lock, or waited for an upload while holding the
// lock the upload needs to link.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FsError } from '../../src/errors.js';
import type { FakeTahoe } from '../support/fake-tahoe.js';
import { bounded, coresPerTest, isLink, isUpload, readAll, storedText, writeFile } from '../support/core.js';

for (const writeBack of [false, true]) {
  describe(`lock order (${writeBack ? 'write-back' : 'durable'})`, () => {
    let fake: FakeTahoe;
    const { start } = coresPerTest((f) => (fake = f), { writeBack });

    it('link() of a file whose changes are not stored commits it first, outside every link lock', async () => {
      const { fs } = await start();
      const fh = await writeFile(fs, '/a', 'linked twice');
      await bounded(fs.link('/a', '/b'), 'link');
      await fs.release('/a', fh);
      await bounded(fs.sync(), 'sync');
      assert.equal(storedText(fake, 'a'), 'linked twice');
      assert.equal(storedText(fake, 'b'), 'linked twice');
    });

    it('chmod, utimens and setxattr of a file whose upload is held take its link lock without waiting for the upload', async () => {
      const { fs } = await start();
      const fh = await writeFile(fs, '/a', 'held');
      const held = fake.hold(isUpload);
      const storing = fs.fsync('/a', fh);
      await held.arrived;
      await bounded(fs.chmod('/a', 0o600), 'chmod while the upload is held');
      await bounded(fs.utimens('/a', '', '1000000000000000000'), 'utimens while the upload is held');
      await bounded(fs.setxattr('/a', 'user.k', Buffer.from('v'), 0), 'setxattr while the upload is held');
      held.release();
      await bounded(storing, 'fsync');
      await fs.release('/a', fh);
      await bounded(fs.sync(), 'sync');
      assert.equal((await fs.getattr('/a')).mode & 0o777, 0o600);
      assert.equal((await fs.getxattr('/a', 'user.k')).toString(), 'v');
      assert.equal(await readAll(fs, '/a'), 'held');
    });

    it('a write that comes while an upload is held waits for it, and a rename meanwhile waits for neither', async () => {
      const { fs } = await start();
      const fh = await writeFile(fs, '/a', 'first');
      const held = fake.hold(isUpload);
      const storing = fs.fsync('/a', fh);
      await held.arrived;
      const writing = fs.write('/a', fh, Buffer.from('second'), 0);
      await bounded(fs.rename('/a', '/b'), 'rename while the upload is held');
      held.release();
      await bounded(Promise.all([storing, writing]), 'fsync and the write');
      await bounded(fs.fsync('/b', fh), 'fsync again');
      await fs.release('/b', fh);
      assert.equal(storedText(fake, 'b'), 'second');
      assert.equal(fake.entry(fake.rootCap, 'a'), undefined);
    });

    it('an unlink while the link of an upload is held waits for that link, then removes it', async () => {
      const { fs } = await start();
      const fh = await writeFile(fs, '/a', 'gone soon');
      const held = fake.hold(isLink);
      const storing = fs.fsync('/a', fh).catch((e: unknown) => e);
      await held.arrived;
      const unlinking = fs.unlink('/a');
      held.release();
      await bounded(unlinking, 'unlink');
      const stored = await bounded(storing, 'fsync');
      assert.ok(stored === undefined || stored instanceof FsError);
      await fs.release('/a', fh);
      await bounded(fs.sync(), 'sync');
      assert.equal(fake.entry(fake.rootCap, 'a'), undefined);
    });
  });
}
