// Tahoe-native metadata in the core, over the in-memory Tahoe: modes, owners, user xattrs and the computed cap
// attributes, symlinks and special files, as they land in link metadata (what other Tahoe clients see).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:fs';
import { FsError } from '../../src/errors.js';
import { parseCap, readOnlyCap } from '../../src/tahoe/caps.js';
import { joinDev, splitDev } from '../../src/tahoe/posix.js';
import type { FakeTahoe } from '../support/fake-tahoe.js';
import { bounded, coresPerTest, isLink, isUpload, writeFile } from '../support/core.js';

const { S_IFMT, S_IFLNK, S_IFIFO, S_IFCHR, S_IFREG } = constants;

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof FsError && e.code === code);
}


/** A link's posix metadata without its ctime (set to the time of the change: asserted apart). */
function withoutCtime(posix: unknown): unknown {
  const { ctime, ...rest } = (posix ?? {}) as { ctime?: unknown };
  assert.equal(typeof ctime, 'string', 'a change of our metadata sets its ctime');
  return rest;
}

describe('core: modes and owners in link metadata', () => {
  let fake: FakeTahoe;
  const cores = coresPerTest((f) => (fake = f));

  it('chmod stores the bits, and "no-write" in step with the owner write bit', async () => {
    const { fs } = await cores.start();
    await fs.release('/f', await writeFile(fs, '/f', 'x'));
    await fs.chmod('/f', 0o4755);
    assert.equal(fake.entry(fake.rootCap, 'f')!.metadata.posix && (fake.entry(fake.rootCap, 'f')!.metadata.posix as { mode: string }).mode, '4755');
    assert.equal((await fs.getattr('/f')).mode, S_IFREG | 0o4755);
    await fs.chmod('/f', 0o444);
    assert.equal(fake.entry(fake.rootCap, 'f')!.metadata['no-write'], true);
    assert.equal((await fs.getattr('/f')).mode & 0o7777, 0o444);
    await fs.chmod('/f', 0o644);
    assert.equal(fake.entry(fake.rootCap, 'f')!.metadata['no-write'], undefined);
  });

  it('a chmod that changes nothing sends nothing', async () => {
    const { fs } = await cores.start();
    await fs.release('/f', await writeFile(fs, '/f', 'x'));
    await fs.chmod('/f', 0o700);
    const before = fake.requests.filter(isLink).length;
    await fs.chmod('/f', 0o700);
    assert.equal(fake.requests.filter(isLink).length, before);
  });

  it('"no-write" set by another client (the SFTP frontend) hides the write bits', async () => {
    const { fs } = await cores.start({ cacheTimeoutMs: 0 });
    fake.link(fake.rootCap, 'ro', fake.addFile(Buffer.from('x')), { 'no-write': true });
    assert.equal((await fs.getattr('/ro')).mode & 0o777, 0o444);
  });

  it('every mode bit reads back as chmod set it: "no-write" is not a mask over a stored mode that agrees with it', async () => {
    const { fs } = await cores.start();
    await fs.release('/f', await writeFile(fs, '/f', 'x'));
    for (const mode of [0o060, 0o420, 0o000, 0o6070, 0o0222, 0o644]) {
      await fs.chmod('/f', mode);
      assert.equal((await fs.getattr('/f')).mode & 0o7777, mode, mode.toString(8));
      assert.equal(fake.entry(fake.rootCap, 'f')!.metadata['no-write'], (mode & 0o200) === 0 ? true : undefined, mode.toString(8));
    }
  });

  it('utimens sets atime, mtime or both in one change; an empty time is left as it is', async () => {
    const { fs } = await cores.start();
    await fs.release('/f', await writeFile(fs, '/f', 'x'));
    const before = fake.requests.filter(isLink).length;
    await fs.utimens('/f', '1000000000000000001', '2000000000000000002');
    assert.equal(fake.requests.filter(isLink).length, before + 1, 'both times: one directory update');
    const meta = () => fake.entry(fake.rootCap, 'f')!.metadata;
    assert.equal((meta().posix as { atime?: string }).atime, '1000000000000000001');
    assert.equal(meta().mtime_ns, '2000000000000000002');
    await fs.utimens('/f', '', '3000000000000000003');
    assert.equal((meta().posix as { atime?: string }).atime, '1000000000000000001', 'mtime alone leaves atime');
    await fs.utimens('/f', '4000000000000000004', '');
    assert.equal(meta().mtime_ns, '3000000000000000003', 'atime alone leaves mtime');
    const attr = await fs.getattr('/f');
    assert.deepEqual([attr.atime, attr.mtime], [{ sec: 4000000000, nsec: 4 }, { sec: 3000000000, nsec: 3 }]);
    const sent = fake.requests.filter(isLink).length;
    await fs.utimens('/f', '4000000000000000004', '3000000000000000003');
    assert.equal(fake.requests.filter(isLink).length, sent, 'times already there: nothing sent');
  });

  it('ctime moves with every change of the file\'s metadata (chmod, chown, xattrs, utimens), in the same update, and not with one that changes nothing', async () => {
    const { fs } = await cores.start();
    await fs.release('/f', await writeFile(fs, '/f', 'x'));
    const past = '1000000000000000000';
    await fs.utimens('/f', past, past);
    const ns = (t: { sec: number; nsec: number }) => BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
    let attr = await fs.getattr('/f');
    assert.ok(ns(attr.ctime) > ns(attr.mtime), 'utimens to the past: the ctime is now');
    const links = fake.requests.filter(isLink).length;
    const ctimes = [ns(attr.ctime)];
    for (const change of [() => fs.chmod('/f', 0o600), () => fs.setxattr('/f', 'user.k', Buffer.from('v'), 0), () => fs.chmod('/f', 0o640)]) {
      await new Promise((r) => setTimeout(r, 5)); // a clock of ms: the next change is later
      await change();
      attr = await fs.getattr('/f');
      assert.ok(ns(attr.ctime) > ctimes.at(-1)!, 'moved');
      assert.equal(ns(attr.mtime), BigInt(past), 'mtime stays');
      ctimes.push(ns(attr.ctime));
    }
    assert.equal(fake.requests.filter(isLink).length, links + 3, 'one update per change');
    await fs.chmod('/f', 0o640);
    assert.equal(ns((await fs.getattr('/f')).ctime), ctimes.at(-1), 'a chmod that changes nothing moves nothing');
  });

  it('a change that changes nothing sends nothing, whatever order the stored keys came in', async () => {
    const { fs } = await cores.start();
    await fs.release('/f', await writeFile(fs, '/f', 'x'));
    await fs.utimens('/f', '1000000000000000001', '');
    await fs.chmod('/f', 0o600); // posix stored as {atime, ctime, mode}: read back as {mode, atime, ctime}
    const mtimeNs = String(fake.entry(fake.rootCap, 'f')!.metadata.mtime_ns);
    const ctime = (await fs.getattr('/f')).ctime;
    const links = fake.requests.filter(isLink).length;
    await fs.utimens('/f', '', mtimeNs);
    await fs.chmod('/f', 0o600);
    await fs.utimens('/f', '1000000000000000001', '');
    assert.equal(fake.requests.filter(isLink).length, links);
    assert.deepEqual((await fs.getattr('/f')).ctime, ctime);
  });

  it('"no-write" changed by another client after our chmod wins: added, no write bit; removed, the owner may write', async () => {
    const { fs } = await cores.start({ cacheTimeoutMs: 0 });
    fake.link(fake.rootCap, 'made-ro', fake.addFile(Buffer.from('x')), { posix: { mode: '0664' }, 'no-write': true });
    assert.equal((await fs.getattr('/made-ro')).mode & 0o7777, 0o444);
    fake.link(fake.rootCap, 'made-rw', fake.addFile(Buffer.from('x')), { posix: { mode: '0460' } });
    assert.equal((await fs.getattr('/made-rw')).mode & 0o7777, 0o660);
  });

  it('create and mkdir keep a mode other than the default, with the file\'s upload and in one directory update', async () => {
    const { fs } = await cores.start();
    const fh = await fs.create('/secret', 0o600, 0, 0);
    await fs.write('/secret', fh, Buffer.from('s'), 0);
    await fs.release('/secret', fh);
    assert.deepEqual(fake.entry(fake.rootCap, 'secret')!.metadata.posix, { mode: '0600' });
    await fs.release('/plain', await writeFile(fs, '/plain', 'p'));
    assert.equal(fake.entry(fake.rootCap, 'plain')!.metadata.posix, undefined);
    await fs.mkdir('/private', 0o700, 0, 0);
    assert.deepEqual(fake.entry(fake.rootCap, 'private')!.metadata.posix, { mode: '0700' });
    assert.equal((await fs.getattr('/private')).mode & 0o7777, 0o700);
  });

  it('fchmod and xattrs of a file not stored yet go with its upload, and into its staging record', async () => {
    const { fs } = await cores.start();
    const fh = await fs.create('/new', 0o644, 0, 0);
    await fs.write('/new', fh, Buffer.from('data'), 0);
    await fs.chmod('/new', 0o750);
    await fs.setxattr('/new', 'user.color', Buffer.from('blue'), 0);
    assert.equal(fake.entry(fake.rootCap, 'new'), undefined);
    assert.equal((await fs.getattr('/new')).mode & 0o7777, 0o750);
    assert.equal((await fs.getxattr('/new', 'user.color')).toString(), 'blue');
    await fs.release('/new', fh);
    const md = fake.entry(fake.rootCap, 'new')!.metadata;
    assert.deepEqual(withoutCtime(md.posix), { mode: '0750' }, 'and a ctime, as the change moved it');
    assert.deepEqual(md.xattrs, { 'user.color': Buffer.from('blue').toString('base64') });
  });

  it('owners are stored only where the mount keeps them (allow_other)', async () => {
    const shared = await cores.start({ owners: true });
    await shared.fs.release('/mine', await shared.fs.create('/mine', 0o644, 4242, 4343));
    assert.deepEqual(fake.entry(fake.rootCap, 'mine')!.metadata.posix, { uid: 4242, gid: 4343 });
    const attr = await shared.fs.getattr('/mine');
    assert.deepEqual([attr.uid, attr.gid], [4242, 4343]);
    await shared.fs.chown('/mine', 5000, -1);
    assert.deepEqual([(await shared.fs.getattr('/mine')).uid, (await shared.fs.getattr('/mine')).gid], [5000, 4343]);
    await shared.fs.release('/theirs', await shared.fs.create('/theirs', 0o644, 7, 7));

    const single = await cores.start({ cacheTimeoutMs: 0 });
    const theirs = await single.fs.getattr('/theirs');
    assert.equal(theirs.uid, process.getuid!());
    await single.fs.chown('/theirs', 1, 1);
    assert.deepEqual(fake.entry(fake.rootCap, 'theirs')!.metadata.posix, { uid: 7, gid: 7 });
  });
});

describe('core: extended attributes', () => {
  let fake: FakeTahoe;
  const cores = coresPerTest((f) => (fake = f));

  it('user.* attributes are stored in the link, binary values exact, with Linux\'s errors', async () => {
    const { fs } = await cores.start();
    await fs.release('/f', await writeFile(fs, '/f', 'x'));
    const binary = Buffer.from([0, 1, 2, 255, 0]);
    await fs.setxattr('/f', 'user.bin', binary, 0);
    await fs.setxattr('/f', 'user.empty', Buffer.alloc(0), 0);
    assert.deepEqual(await fs.getxattr('/f', 'user.bin'), binary);
    assert.equal((await fs.getxattr('/f', 'user.empty')).length, 0);
    assert.deepEqual((await fs.listxattr('/f')).sort(), ['user.bin', 'user.empty']);
    await rejectsWith(fs.getxattr('/f', 'user.none'), 'ENODATA');
    await rejectsWith(fs.setxattr('/f', 'user.bin', Buffer.from('x'), 1), 'EEXIST'); // XATTR_CREATE
    await rejectsWith(fs.setxattr('/f', 'user.none', Buffer.from('x'), 2), 'ENODATA'); // XATTR_REPLACE
    await rejectsWith(fs.setxattr('/f', 'trusted.x', Buffer.from('x'), 0), 'ENOTSUP');
    await rejectsWith(fs.setxattr('/f', 'user.big', Buffer.alloc(65537), 0), 'E2BIG');
    await rejectsWith(fs.setxattr('/f', 'user.' + 'n'.repeat(251), Buffer.from('x'), 0), 'ERANGE');
    await fs.setxattr('/f', 'user.a', Buffer.alloc(40_000), 0);
    await rejectsWith(fs.setxattr('/f', 'user.b', Buffer.alloc(30_000), 0), 'ENOSPC');
    await fs.removexattr('/f', 'user.bin');
    await rejectsWith(fs.removexattr('/f', 'user.bin'), 'ENODATA');
    assert.deepEqual(Object.keys(fake.entry(fake.rootCap, 'f')!.metadata.xattrs as object).sort(), ['user.a', 'user.empty']);
  });

  it('xattrs follow a file through rename and are seen by another mount of the same root', async () => {
    const { fs } = await cores.start();
    await fs.release('/f', await writeFile(fs, '/f', 'x'));
    await fs.setxattr('/f', 'user.k', Buffer.from('v'), 0);
    await fs.rename('/f', '/g');
    const other = await cores.start({ cacheTimeoutMs: 0 });
    assert.equal((await other.fs.getxattr('/g', 'user.k')).toString(), 'v');
  });

  it('user.tahoe.* are the caps, computed and read-only, and listed only when asked', async () => {
    const { fs } = await cores.start();
    await fs.release('/f', await writeFile(fs, '/f', 'content'));
    await fs.mkdir('/d', 0o755, 0, 0);
    const f = fake.entry(fake.rootCap, 'f')!;
    const d = fake.entry(fake.rootCap, 'd')!;
    assert.equal((await fs.getxattr('/f', 'user.tahoe.readcap')).toString(), f.roUri);
    await rejectsWith(fs.getxattr('/f', 'user.tahoe.writecap'), 'ENODATA');
    assert.equal((await fs.getxattr('/f', 'user.tahoe.storage-index')).toString(), parseCap(f.roUri).storageIndex);
    assert.equal((await fs.getxattr('/d', 'user.tahoe.readcap')).toString(), d.roUri);
    assert.equal((await fs.getxattr('/d', 'user.tahoe.writecap')).toString(), d.rwUri);
    assert.equal((await fs.getxattr('/', 'user.tahoe.readcap')).toString(), fake.readOnly(fake.rootCap));
    await rejectsWith(fs.setxattr('/f', 'user.tahoe.readcap', Buffer.from('x'), 0), 'EPERM');
    await rejectsWith(fs.removexattr('/f', 'user.tahoe.readcap'), 'EPERM');
    assert.deepEqual(await fs.listxattr('/f'), []);
    const listing = await cores.start({ listCapXattrs: true });
    assert.deepEqual((await listing.fs.listxattr('/d')).sort(), ['user.tahoe.readcap', 'user.tahoe.storage-index', 'user.tahoe.writecap']);
  });

  it('a file being written has no readcap until it is stored', async () => {
    const { fs } = await cores.start();
    const fh = await writeFile(fs, '/f', 'content');
    await rejectsWith(fs.getxattr('/f', 'user.tahoe.readcap'), 'ENODATA');
    await fs.flush('/f', fh);
    assert.equal((await fs.getxattr('/f', 'user.tahoe.readcap')).toString(), fake.entry(fake.rootCap, 'f')!.roUri);
    await fs.release('/f', fh);
  });

  it('the read cap of a write cap is what Tahoe derives', () => {
    const rw = fake.createDirectory();
    assert.equal(readOnlyCap(rw), fake.readOnly(rw));
    const mdmf = fake.createMutableFile(Buffer.from('m'));
    assert.equal(readOnlyCap(mdmf), fake.readOnly(mdmf));
  });
});

describe('core: symlinks and special files', () => {
  let fake: FakeTahoe;
  const cores = coresPerTest((f) => (fake = f));

  it('a short symlink is a literal file holding its target: no upload', async () => {
    const { fs } = await cores.start();
    const uploads = fake.requests.filter(isUpload).length;
    await fs.symlink('../target', '/link', 0, 0);
    assert.equal(fake.requests.filter(isUpload).length, uploads);
    const attr = await fs.getattr('/link');
    assert.equal(attr.mode & S_IFMT, S_IFLNK);
    assert.equal(attr.size, '../target'.length);
    assert.equal(await fs.readlink('/link'), '../target');
    const entry = fake.entry(fake.rootCap, 'link')!;
    assert.equal(fake.bytes(entry.roUri)!.toString(), '../target');
    assert.deepEqual(entry.metadata.posix, { type: 'symlink', target: '../target' });
    await rejectsWith(fs.symlink('x', '/link', 0, 0), 'EEXIST');
    await rejectsWith(fs.readlink('/'), 'EINVAL');
  });

  it('a long symlink target is uploaded as a file of its own', async () => {
    const { fs } = await cores.start();
    const target = '/very/long/' + 'x'.repeat(1000);
    await fs.symlink(target, '/long', 0, 0);
    assert.equal(fake.bytes(fake.entry(fake.rootCap, 'long')!.roUri)!.toString(), target);
    const other = await cores.start({ cacheTimeoutMs: 0 });
    assert.equal(await other.fs.readlink('/long'), target);
  });

  it('fifos and devices keep their type, mode and numbers', async () => {
    const { fs } = await cores.start();
    await fs.mknod('/p', S_IFIFO | 0o600, 0, 0, 0);
    await fs.mknod('/null', S_IFCHR | 0o666, joinDev(1, 3), 0, 0);
    const other = await cores.start({ cacheTimeoutMs: 0 });
    const p = await other.fs.getattr('/p');
    assert.equal(p.mode, S_IFIFO | 0o600);
    const dev = await other.fs.getattr('/null');
    assert.equal(dev.mode, S_IFCHR | 0o666);
    assert.deepEqual(splitDev(dev.rdev!), { major: 1, minor: 3 });
    assert.deepEqual(fake.entry(fake.rootCap, 'null')!.metadata.posix, { type: 'char', major: 1, minor: 3, mode: '0666' });
    assert.equal(fake.bytes(fake.entry(fake.rootCap, 'p')!.roUri)!.length, 0);
    await rejectsWith(fs.mknod('/r', constants.S_IFDIR | 0o755, 0, 0, 0), 'EINVAL');
  });

  it('device numbers survive Linux\'s encoding, large minors included', () => {
    for (const [major, minor] of [[0, 0], [8, 1], [259, 70000], [4095, 0xfffff]] as const) assert.deepEqual(splitDev(joinDev(major, minor)), { major, minor });
  });
});

describe('core: metadata in write-back mode', () => {
  let fake: FakeTahoe;
  const cores = coresPerTest((f) => (fake = f), { writeBack: true });

  it('a chmod of a stored file is linked in the background, and sync waits for it', async () => {
    const { fs } = await cores.start();
    await fs.release('/f', await writeFile(fs, '/f', 'x'));
    await bounded(fs.sync(), 'sync');
    await fs.chmod('/f', 0o755);
    assert.equal((await fs.getattr('/f')).mode & 0o7777, 0o755);
    await bounded(fs.sync(), 'sync');
    assert.deepEqual(withoutCtime(fake.entry(fake.rootCap, 'f')!.metadata.posix), { mode: '0755' }, 'and a ctime, as the change moved it');
  });

  it('a directory made with a mode, then given xattrs before its link lands, is linked with both', async () => {
    const { fs } = await cores.start();
    await fs.mkdir('/d', 0o750, 0, 0);
    await fs.setxattr('/d', 'user.k', Buffer.from('v'), 0);
    await fs.symlink('d', '/s', 0, 0);
    await bounded(fs.sync(), 'sync');
    const md = fake.entry(fake.rootCap, 'd')!.metadata;
    assert.deepEqual(withoutCtime(md.posix), { mode: '0750' }, 'and a ctime, as the change moved it');
    assert.deepEqual(md.xattrs, { 'user.k': Buffer.from('v').toString('base64') });
    assert.equal(await fs.readlink('/s'), 'd');
  });
});
