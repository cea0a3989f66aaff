// Write-back mode of the core over the in-memory Tahoe: close() returns before the upload, uploads and links run
// in the background (links into one directory batched), mkdir links in the background, nothing another client
// changed is overwritten, the latest content of a name wins, and sync(), fsync(), unmount and a crash each
// deliver what was written.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { StagingJournal } from '../../src/cache/staging-journal.js';
import { mutableKeyFromDer, writeCapOf } from '../../src/tahoe/keys.js';
import { ownMetadataOf } from '../../src/tahoe/posix.js';
import type { ProcessIdentity } from '../../src/fs/tahoe-fs.js';
import { target, type FakeTahoe } from '../support/fake-tahoe.js';
import { bounded, coresPerTest, isLink, isUpload, log, readAll, storedText, writeFile, type Core } from '../support/core.js';

const isMakeDir = (req: { method: string; rawUrl: string }) => req.method === 'POST' && target(req as never).query.get('t') === 'mkdir';
/** The cap a mkdir's private-key= names. */
const capMadeBy = (req: { rawUrl: string }) => {
  const param = target(req as never).query.get('private-key');
  return param ? writeCapOf(mutableKeyFromDer(Buffer.from(param, 'base64url')), 'DIR2') : undefined;
};

describe('core in write-back mode', () => {
  let fake: FakeTahoe;
  const { start } = coresPerTest((f) => (fake = f), { writeBack: true, drainMs: 5_000 });
  const pendingRecords = async (c: Core) => (await new StagingJournal(c.cache.stagingDir, log).list()).filter((s) => s.record.dirty);

  it('close() returns before the upload, with the bytes and their record on disk; the file reads back meanwhile', async () => {
    const c = await start();
    const held = fake.hold(isUpload);
    const fh = await writeFile(c.fs, '/a', 'written');
    await bounded(c.fs.flush('/a', fh), 'flush');
    await bounded(c.fs.release('/a', fh), 'release');
    await held.arrived;
    assert.equal(fake.entry(fake.rootCap, 'a'), undefined, 'not linked yet');
    assert.deepEqual((await pendingRecords(c)).map((s) => s.record.name), ['a']);
    assert.equal(await readAll(c.fs, '/a'), 'written');
    assert.ok((await c.fs.readdir('/')).includes('a'));
    held.release();
    assert.deepEqual(await bounded(c.fs.sync(), 'sync'), { stored: 1, failed: [], conflicts: [], unchecked: 0 });
    assert.equal(storedText(fake, 'a'), 'written');
    assert.deepEqual(await pendingRecords(c), []);
  });

  it('links into one directory go out together in one set_children', async () => {
    const c = await start();
    const held = fake.hold(isLink);
    for (const name of ['f0', 'f1', 'f2', 'f3', 'f4', 'f5']) await c.fs.release(`/${name}`, await writeFile(c.fs, `/${name}`, name));
    await held.arrived;
    // Give the other uploads time to finish and queue their links behind the held one.
    while (fake.requests.filter(isUpload).length < 6) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    held.release();
    assert.equal((await bounded(c.fs.sync(), 'sync')).failed.length, 0);
    for (const name of ['f0', 'f1', 'f2', 'f3', 'f4', 'f5']) assert.equal(storedText(fake, name), name);
    assert.equal(fake.requests.filter(isLink).length, 2, 'the held link, then one for the five behind it');
  });

  it('mkdir returns before its link; the directory exists before anything is linked into it', async () => {
    const c = await start();
    const held = fake.hold(isLink);
    await bounded(c.fs.mkdir('/d', 0o755), 'mkdir');
    const fh = await writeFile(c.fs, '/d/inner', 'inside');
    await c.fs.release('/d/inner', fh);
    assert.equal((await c.fs.getattr('/d')).mode & 0o170000, 0o040000);
    assert.deepEqual((await c.fs.readdir('/d')).filter((n) => n !== '.' && n !== '..'), ['inner']);
    await held.arrived;
    held.release();
    assert.deepEqual((await bounded(c.fs.sync(), 'sync')).failed, []);
    const d = fake.entry(fake.rootCap, 'd')!;
    assert.equal(d.type, 'dir');
    assert.equal(fake.bytes(fake.entry(d.rwUri!, 'inner')!.roUri)?.toString(), 'inside');
    // Made unlinked (POST /uri?t=mkdir, no name), never with a name in the parent.
    const made = fake.requests.findIndex((r) => isMakeDir(r) && target(r as never).cap === undefined);
    const linkedInto = fake.requests.findIndex((r) => isLink(r) && target(r as never).cap === d.rwUri);
    assert.ok(made >= 0 && made < linkedInto);
    assert.equal(fake.requests.filter((r) => isMakeDir(r) && target(r as never).query.has('name')).length, 0);
  });

  it('utimens of a directory returns at once, whether its link is pending, on its way, or landed; sync stores each time', async () => {
    const c = await start();
    const held = fake.hold(isLink);
    await c.fs.mkdir('/pending', 0o755);
    await c.fs.mkdir('/sent', 0o755);
    await held.arrived; // the first link batch is on its way: '/pending' and '/sent' both, or '/pending' alone
    await bounded(c.fs.utimens('/pending', '', '1000000000123'), 'utimens of a directory whose link is held');
    await bounded(c.fs.utimens('/sent', '', '2000000000456'), 'utimens of another');
    assert.deepEqual((await c.fs.getattr('/pending')).mtime, { sec: 1000, nsec: 123 });
    held.release();
    assert.deepEqual((await bounded(c.fs.sync(), 'sync')).failed, []);
    await bounded(c.fs.utimens('/sent', '', '3000000000789'), 'utimens of a linked directory');
    assert.deepEqual((await bounded(c.fs.sync(), 'sync')).failed, []);
    const mtimeOf = (name: string) => fake.entry(fake.rootCap, name)!.metadata.mtime_ns;
    assert.equal(mtimeOf('pending'), '1000000000123');
    assert.equal(mtimeOf('sent'), '3000000000789');
  });

  it('an entry another client changed meanwhile is never overwritten: the bytes are stored beside it and reported', async () => {
    const c = await start();
    const held = fake.hold(isUpload);
    await c.fs.release('/a', await writeFile(c.fs, '/a', 'ours'));
    await held.arrived;
    const theirs = fake.addFile(Buffer.from('theirs'));
    fake.link(fake.rootCap, 'a', theirs);
    held.release();
    const report = await bounded(c.fs.sync(), 'sync');
    assert.deepEqual(report.failed, []);
    assert.equal(report.conflicts.length, 1);
    assert.match(report.conflicts[0]!.keptAs, /^\/a \(conflict \d{4}-\d\d-\d\d \d{4} .+\)$/);
    assert.equal(storedText(fake, 'a'), 'theirs');
    assert.equal(storedText(fake, report.conflicts[0]!.keptAs.slice(1)), 'ours');
    assert.deepEqual((await new StagingJournal(c.cache.stagingDir, log).list()).filter((s) => s.record.dirty), [], 'nothing left to store');
  });

  it('the latest content of a name wins, even when the first upload is still on its way', async () => {
    const c = await start();
    const held = fake.hold(isUpload);
    await c.fs.release('/a', await writeFile(c.fs, '/a', 'first version'));
    await held.arrived;
    const fh = await c.fs.open('/a', 1);
    const writing = c.fs.write('/a', fh, Buffer.from('SECOND'), 0); // waits while the upload reads the bytes
    held.release();
    await bounded(writing, 'write');
    await c.fs.release('/a', fh);
    assert.deepEqual((await bounded(c.fs.sync(), 'sync')).failed, []);
    assert.equal(storedText(fake, 'a'), 'SECONDversion');
  });

  it('a file renamed over another before its upload replaces it (no conflict)', async () => {
    const c = await start();
    await c.fs.release('/target', await writeFile(c.fs, '/target', 'old'));
    await c.fs.sync();
    const held = fake.hold(isUpload);
    await c.fs.release('/tmp', await writeFile(c.fs, '/tmp', 'new'));
    await held.arrived;
    await c.fs.rename('/tmp', '/target');
    held.release();
    assert.deepEqual((await bounded(c.fs.sync(), 'sync')).failed, []);
    assert.equal(storedText(fake, 'target'), 'new');
    assert.equal(fake.entry(fake.rootCap, 'tmp'), undefined);
  });

  it('fsync() returns only once the file is stored', async () => {
    const c = await start();
    const fh = await writeFile(c.fs, '/a', 'synced');
    const held = fake.hold(isUpload);
    let done = false;
    const syncing = c.fs.fsync('/a', fh, false).then(() => (done = true));
    await held.arrived;
    assert.equal(done, false);
    held.release();
    await bounded(syncing, 'fsync');
    assert.equal(storedText(fake, 'a'), 'synced');
    await c.fs.release('/a', fh);
  });

  it('with the gateway down, close() still succeeds; sync reports the file; once it is back, sync stores it', async () => {
    const c = await start();
    fake.down(503);
    await bounded(c.fs.release('/a', await writeFile(c.fs, '/a', 'patient')), 'release');
    await bounded(c.fs.mkdir('/d', 0o755), 'mkdir');
    const down = await bounded(c.fs.sync(), 'sync while down');
    assert.deepEqual(down.failed.map((f) => f.path).sort(), ['/a', '/d']);
    assert.equal(await readAll(c.fs, '/a'), 'patient');
    fake.up();
    assert.deepEqual((await bounded(c.fs.sync(), 'sync')).failed, []);
    assert.equal(storedText(fake, 'a'), 'patient');
    assert.equal(fake.entry(fake.rootCap, 'd')?.type, 'dir');
  });

  it('after a crash, the next start stores what was closed, and links the directories made', async () => {
    const crashed: ProcessIdentity = { pid: 2, start: 'crashed' };
    const first = await start({ owner: crashed });
    await first.fs.mkdir('/first', 0o755);
    await first.fs.sync();
    fake.down(503);
    await first.fs.mkdir('/d', 0o755);
    await first.fs.release('/d/a', await writeFile(first.fs, '/d/a', 'survives'));
    // The process dies here: no shutdown. The next one starts on the same cache folder.
    fake.up();
    const second = await start({ cacheDir: first.cacheDir });
    await bounded(second.fs.recover(), 'recover');
    const d = fake.entry(fake.rootCap, 'd')!;
    assert.equal(d.type, 'dir');
    assert.equal(fake.bytes(fake.entry(d.rwUri!, 'a')!.roUri)?.toString(), 'survives');
    assert.deepEqual(await pendingRecords(second), []);
  });

  it('mkdir sends no request: with the gateway down it returns and files go inside; then the directory is made (the cap handed out) before anything names it', async () => {
    const c = await start();
    await c.fs.getattr('/');
    fake.down(503);
    const before = fake.requests.length;
    await bounded(c.fs.mkdir('/d', 0o755), 'mkdir with the gateway down');
    await bounded(c.fs.mkdir('/d/e', 0o755), 'mkdir inside it');
    await c.fs.release('/d/e/f', await writeFile(c.fs, '/d/e/f', 'deep'));
    assert.deepEqual((await c.fs.readdir('/d')).filter((n) => n !== '.' && n !== '..'), ['e']);
    assert.equal(fake.requests.slice(before).filter(isMakeDir).every((r) => target(r as never).query.has('private-key')), true);
    fake.up();
    assert.deepEqual((await bounded(c.fs.sync(), 'sync')).failed, []);
    const d = fake.entry(fake.rootCap, 'd')!;
    const e = fake.entry(d.rwUri!, 'e')!;
    assert.equal(fake.bytes(fake.entry(e.rwUri!, 'f')!.roUri)?.toString(), 'deep');
    // Made with our keys, and no request named a new directory before one that made it.
    for (const cap of [d.rwUri!, e.rwUri!]) {
      const made = fake.requests.findIndex((r) => isMakeDir(r) && capMadeBy(r) === cap);
      const named = fake.requests.findIndex((r) => r.rawUrl.includes(encodeURIComponent(cap)));
      assert.ok(made >= 0 && made < named, `made at ${made}, first named at ${named}`);
    }
  });

  it('after a crash between the making of a directory and its link, the next start links that one directory, with what is inside', async () => {
    const crashed: ProcessIdentity = { pid: 2, start: 'crashed' };
    const first = await start({ owner: crashed });
    const held = fake.hold(isLink);
    await first.fs.mkdir('/d', 0o755);
    await first.fs.release('/d/a', await writeFile(first.fs, '/d/a', 'inside'));
    await held.arrived;
    held.fail(503);
    // The directory is made; the process dies before its link. The next one starts on the same cache folder.
    const second = await start({ cacheDir: first.cacheDir });
    await bounded(second.fs.recover(), 'recover');
    const d = fake.entry(fake.rootCap, 'd')!;
    assert.equal(fake.bytes(fake.entry(d.rwUri!, 'a')!.roUri)?.toString(), 'inside');
    // Made by the first process; the second one's making, from the record's key, is refused (it exists) and
    // taken as made.
    assert.equal(fake.requests.filter(isMakeDir).length, 2);
    assert.equal(new Set(fake.requests.filter(isMakeDir).map(capMadeBy)).size, 1, 'one directory made');
    assert.equal(capMadeBy(fake.requests.find(isMakeDir)!), d.rwUri);
    assert.deepEqual(await pendingRecords(second), []);
  });

  it('unmount gives pending stores one more try, bounded; what is left is stored by the next mount', async () => {
    const first = await start({ drainMs: 1_000 });
    fake.down(503);
    await first.fs.release('/a', await writeFile(first.fs, '/a', 'later'));
    await bounded(first.stop(), 'unmount');
    assert.equal(fake.entry(fake.rootCap, 'a'), undefined);
    fake.up();
    const second = await start({ cacheDir: first.cacheDir });
    await bounded(second.fs.recover(), 'recover');
    assert.equal(storedText(fake, 'a'), 'later');
  });

  it('unmount waits for a pending store that can land', async () => {
    const c = await start();
    const held = fake.hold(isUpload);
    await c.fs.release('/a', await writeFile(c.fs, '/a', 'drained'));
    await held.arrived;
    const stopping = c.stop();
    held.release();
    await bounded(stopping, 'unmount');
    assert.equal(storedText(fake, 'a'), 'drained');
  });

  it('rmdir of a directory whose link is pending waits for it, then removes it', async () => {
    const c = await start();
    const held = fake.hold(isLink);
    await c.fs.mkdir('/d', 0o755);
    await held.arrived;
    const removing = c.fs.rmdir('/d');
    held.release();
    await bounded(removing, 'rmdir');
    assert.equal(fake.entry(fake.rootCap, 'd'), undefined);
    await assert.rejects(c.fs.getattr('/d'), { code: 'ENOENT' });
  });
});

describe('core in write-back mode: names and conflicts', () => {
  let fake: FakeTahoe;
  const { start } = coresPerTest((f) => (fake = f), { writeBack: true, drainMs: 5_000 });

  it('two mkdirs of one name at once: one succeeds, the other gets EEXIST (so does a create of it)', async () => {
    const c = await start();
    const results = await Promise.allSettled([c.fs.mkdir('/same', 0o755), c.fs.mkdir('/same', 0o755), c.fs.create('/same', 0o644)]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, JSON.stringify(results.map((r) => r.status)));
    assert.deepEqual((await bounded(c.fs.sync(), 'sync')).failed, []);
    assert.equal(fake.entry(fake.rootCap, 'same')?.type, 'dir');
  });

  it('a directory whose name another client took before its link is linked under another name, with what was stored in it', async () => {
    const c = await start();
    await c.fs.mkdir('/warm', 0o755);
    await c.fs.sync();
    // Held: the look at the root's entries right before our directory's link.
    const held = fake.hold((req) => req.method === 'GET' && target(req as never).cap === fake.rootCap);
    await c.fs.mkdir('/d', 0o755);
    await c.fs.release('/d/inner', await writeFile(c.fs, '/d/inner', 'ours'));
    await held.arrived;
    const theirs = fake.createDirectory();
    fake.link(fake.rootCap, 'd', theirs);
    held.release();
    await bounded(c.fs.sync(), 'sync');
    assert.equal(fake.entry(fake.rootCap, 'd')!.rwUri, theirs, 'their directory stays at the name');
    const ours = fake.entry(fake.rootCap, 'd (conflict 1)')!;
    assert.equal(fake.bytes(fake.entry(ours.rwUri!, 'inner')!.roUri)?.toString(), 'ours');
    // The mount shows theirs at the name: an rmdir acts on what the listing shows, not on our directory.
    assert.deepEqual((await c.fs.readdir('/d')).filter((n) => n !== '.' && n !== '..'), []);
  });

  it('a mutable file another client replaced meanwhile is not overwritten', async () => {
    const mutableCap = fake.createMutableFile(Buffer.from('mutable v1'));
    fake.link(fake.rootCap, 'm', mutableCap);
    const c = await start();
    const fh = await c.fs.open('/m', 2);
    await c.fs.write('/m', fh, Buffer.from('OURS'), 0);
    const held = fake.hold((req) => req.method === 'GET' && target(req as never).query.get('t') === 'json');
    await c.fs.release('/m', fh);
    await held.arrived;
    const other = fake.addFile(Buffer.from('replaced by another client'));
    fake.link(fake.rootCap, 'm', other);
    held.release();
    const report = await bounded(c.fs.sync(), 'sync');
    assert.deepEqual(report.failed, []);
    assert.equal(fake.bytes(mutableCap)?.toString(), 'mutable v1', 'the mutable file was not overwritten');
    assert.equal(storedText(fake, 'm'), 'replaced by another client');
    assert.equal(storedText(fake, report.conflicts[0]!.keptAs.slice(1)), 'OURSble v1', 'ours is stored beside it');
  });

  it('truncate of a closed file whose store is on its way: the truncated content is what is stored and read', async () => {
    const c = await start();
    const held = fake.hold(isUpload);
    await c.fs.release('/t', await writeFile(c.fs, '/t', 'abcdef'));
    await held.arrived;
    const truncating = c.fs.truncate('/t', 2);
    held.release();
    await bounded(truncating, 'truncate');
    assert.deepEqual((await bounded(c.fs.sync(), 'sync')).failed, []);
    assert.equal(storedText(fake, 't'), 'ab');
    assert.equal(await readAll(c.fs, '/t'), 'ab');
  });
});

describe('core in write-back mode: what comes right after close()', () => {
  let fake: FakeTahoe;
  const { start } = coresPerTest((f) => (fake = f), { writeBack: true, drainMs: 5_000 });
  const uploads = () => fake.requests.filter(isUpload).length;
  const linkedNames = () => fake.requests.filter(isLink).flatMap((r) => Object.keys(JSON.parse(r.body.toString()) as object));
  const pendingRecords = async (c: Core) => (await new StagingJournal(c.cache.stagingDir, log).list()).filter((s) => s.record.dirty);

  it('a symlink made and removed within the delay sends no request (git does it to see whether it can)', async () => {
    const c = await start({ writeBackDelayMs: 60_000 });
    await c.fs.getattr('/');
    const before = fake.requests.length;
    await bounded(c.fs.symlink('target', '/probe'), 'symlink');
    assert.equal(await c.fs.readlink('/probe'), 'target');
    await bounded(c.fs.unlink('/probe'), 'unlink');
    await assert.rejects(c.fs.getattr('/probe'), { code: 'ENOENT' });
    assert.deepEqual(await bounded(c.fs.sync(), 'sync'), { stored: 0, failed: [], conflicts: [], unchecked: 0 });
    assert.deepEqual(fake.requests.slice(before).map((r) => `${r.method} ${r.rawUrl}`), []);
    assert.deepEqual(await pendingRecords(c), []);
  });

  it('a symlink is linked after the delay, or by sync; one left by a crash is linked by the next start', async () => {
    const crashed: ProcessIdentity = { pid: 2, start: 'crashed' };
    const first = await start({ writeBackDelayMs: 60_000, owner: crashed });
    await first.fs.symlink('../kept', '/s');
    await first.fs.symlink('synced', '/t');
    assert.equal(fake.entry(fake.rootCap, 's'), undefined, 'not linked within the delay');
    // The process dies; the next one starts on the same cache folder.
    const second = await start({ cacheDir: first.cacheDir });
    await bounded(second.fs.recover(), 'recover');
    assert.equal(await second.fs.readlink('/s'), '../kept');
    assert.equal(ownMetadataOf(fake.entry(fake.rootCap, 's')!.metadata).posix?.type, 'symlink');
    await second.fs.symlink('later', '/u');
    assert.deepEqual((await bounded(second.fs.sync(), 'sync')).failed, []);
    assert.equal(await second.fs.readlink('/u'), 'later');
    assert.equal(ownMetadataOf(fake.entry(fake.rootCap, 'u')!.metadata).posix?.target, 'later');
  });

  it('a file renamed (over another) and chmodded within the delay is uploaded once, linked at its last name only', async () => {
    const c = await start({ writeBackDelayMs: 60_000 });
    await c.fs.release('/config', await writeFile(c.fs, '/config', 'old'));
    await c.fs.release('/config.lock', await writeFile(c.fs, '/config.lock', 'new'));
    await c.fs.rename('/config.lock', '/config');
    await c.fs.chmod('/config', 0o444);
    assert.equal(uploads(), 0, 'nothing is sent before the delay (or a sync)');
    assert.deepEqual((await bounded(c.fs.sync(), 'sync')).failed, []);
    assert.equal(uploads(), 1);
    assert.deepEqual(linkedNames(), ['config']);
    assert.equal(storedText(fake, 'config'), 'new');
    assert.equal((await c.fs.getattr('/config')).mode & 0o7777, 0o444);
    assert.equal(ownMetadataOf(fake.entry(fake.rootCap, 'config')!.metadata).posix?.mode, 0o444);
  });

  it('a chmod while the link of a store is on its way returns at once; the bytes are not uploaded again, only relinked', async () => {
    const c = await start();
    const held = fake.hold(isLink, 60_000); // longer than bounded(): a chmod waiting for this link fails the test
    await c.fs.release('/obj', await writeFile(c.fs, '/obj', 'object'));
    await held.arrived;
    await bounded(c.fs.chmod('/obj', 0o444), 'chmod while the link is held');
    held.release();
    assert.deepEqual((await bounded(c.fs.sync(), 'sync')).failed, []);
    assert.equal(uploads(), 1, 'one upload: the relink reuses its cap');
    assert.equal(storedText(fake, 'obj'), 'object');
    assert.equal(ownMetadataOf(fake.entry(fake.rootCap, 'obj')!.metadata).posix?.mode, 0o444);
    assert.equal((await c.fs.getattr('/obj')).mode & 0o7777, 0o444);
  });
});

describe('core in write-back mode: new symlinks, special files and directories before their link', () => {
  let fake: FakeTahoe;
  const { start } = coresPerTest((f) => (fake = f), { writeBack: true, drainMs: 2_000 });
  const isList = (r: { method: string; rawUrl: string }) => r.method === 'GET' && target(r as never).query.get('t') === 'json' && target(r as never).cap !== undefined;

  it('an unlink after a link whose answer was lost (it may have landed) is sent: the symlink does not come back', async () => {
    const c = await start({ writeBackDelayMs: 60_000 });
    await c.fs.getattr('/');
    await c.fs.symlink('target', '/probe');
    const link = fake.hold(isLink);
    void c.fs.sync(500); // sends the link now
    const req = await link.arrived;
    const sent = JSON.parse(req.body.toString()) as Record<string, [string, { ro_uri: string; metadata: Record<string, unknown> }]>;
    fake.link(fake.rootCap, 'probe', sent.probe![1].ro_uri, sent.probe![1].metadata); // it lands...
    const check = fake.hold(isList);
    link.fail(500); // ...the answer is an error
    await check.arrived;
    check.fail(500); // and so is the look that would have told
    await bounded(c.fs.unlink('/probe'), 'unlink');
    assert.equal(fake.entry(fake.rootCap, 'probe'), undefined);
    assert.ok(fake.requests.some((r) => r.method === 'DELETE'));
  });

  it('a recovery pass while a new symlink is being removed does not link it', async () => {
    class SlowRemove extends StagingJournal {
      override async remove(p: string): Promise<void> {
        await new Promise((r) => setTimeout(r, 300));
        return super.remove(p);
      }
    }
    const c = await start({ writeBackDelayMs: 60_000, journal: (d) => new SlowRemove(d, log) });
    await c.fs.getattr('/');
    await c.fs.symlink('target', '/probe');
    const removing = c.fs.unlink('/probe');
    await new Promise((r) => setTimeout(r, 20));
    await bounded(c.fs.sync(2_000), 'sync, with its recovery pass');
    await bounded(removing, 'unlink');
    assert.equal(fake.entry(fake.rootCap, 'probe'), undefined);
  });

  it("an unlink of a symlink whose link lands under another name (another client took it) fails; the other client's entry stays", async () => {
    const c = await start({ writeBackDelayMs: 60_000 });
    await c.fs.getattr('/');
    await c.fs.symlink('mine', '/a');
    const theirs = fake.addFile(Buffer.from('theirs'));
    fake.link(fake.rootCap, 'a', theirs);
    const link = fake.hold(isLink);
    void c.fs.sync(2_000);
    await link.arrived; // ours, at 'a (conflict 1)'
    const removing = c.fs.unlink('/a');
    await new Promise((r) => setTimeout(r, 50));
    link.release();
    await assert.rejects(bounded(removing, 'unlink'), { code: 'EIO', message: /another client took the name/ });
    assert.equal(fake.entry(fake.rootCap, 'a')?.roUri, theirs);
    assert.equal(ownMetadataOf(fake.entry(fake.rootCap, 'a (conflict 1)')!.metadata).posix?.target, 'mine');
  });

  it('a regular file made by mknod, written and fsynced at once, is stored at its name (not beside it)', async () => {
    const c = await start({ writeBackDelayMs: 60_000 });
    await c.fs.getattr('/');
    await c.fs.mknod('/f', 0o100644, 0);
    const fh = await c.fs.open('/f', 1 /* O_WRONLY */);
    await c.fs.write('/f', fh, Buffer.from('data'), 0);
    await bounded(c.fs.fsync('/f', fh), 'fsync');
    await c.fs.release('/f', fh);
    assert.deepEqual((await bounded(c.fs.sync(2_000), 'sync')).failed, []);
    assert.deepEqual(Object.keys(fake.tree(fake.rootCap)), ['f']);
    assert.equal(storedText(fake, 'f'), 'data');
  });

  it('times and modes set on a new symlink or directory before its link survive a crash', async () => {
    const crashed: ProcessIdentity = { pid: 2, start: 'crashed' };
    const first = await start({ writeBackDelayMs: 60_000, owner: crashed });
    await first.fs.getattr('/');
    fake.down(503); // the directory's link waits too
    await first.fs.symlink('t', '/s');
    await first.fs.utimens('/s', '', '1000000000000000000');
    await first.fs.mkdir('/d', 0o700);
    await first.fs.utimens('/d', '', '1100000000000000000');
    const before = { s: (await first.fs.getattr('/s')).mtime, d: await first.fs.getattr('/d') };
    fake.up();
    const second = await start({ cacheDir: first.cacheDir });
    await bounded(second.fs.recover(), 'recover');
    assert.deepEqual((await second.fs.getattr('/s')).mtime, before.s);
    const d = await second.fs.getattr('/d');
    assert.deepEqual([d.mtime, d.mode], [before.d.mtime, before.d.mode]);
  });
});
