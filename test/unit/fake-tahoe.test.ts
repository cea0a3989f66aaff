// The in-memory Tahoe (test/support/fake-tahoe.ts), driven through the real TahoeClient: it must answer as Tahoe
// does, or tests of src/fs built on it would prove nothing.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buffer } from 'node:stream/consumers';
import { request } from 'undici';
import { FsError } from '../../src/errors.js';
import { parseCap } from '../../src/tahoe/caps.js';
import { DEFAULT_TIMEOUTS, errnoForStatus, TahoeClient } from '../../src/tahoe/client.js';
import { startFakeTahoe, target, type FakeTahoe } from '../support/fake-tahoe.js';
import { patternedContent } from '../support/fake-webapi.js';

// Real caps from another grid (caps.test.ts): this fake holds nothing under them.
const STRANGE_DIR = 'URI:DIR2:3nmylhjqubpdykuwdzv3oeci4m:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea';
const STRANGE_DIR_RO = 'URI:DIR2-RO:623cdgjqua7r4vzitgpqf3rvli:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea';
const STRANGE_CHK = 'URI:CHK:4zhgf23twgjzxlhat543enjx3q:zvku5rghnefe2r7xezbihj3vxqlbohvko6fs63jhwcn3vdbnnesa:2:3:3000';

/** Asserts the promise rejects with an FsError of this errno. */
async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof FsError && e.code === code);
}

describe('fake Tahoe through TahoeClient', () => {
  let fake: FakeTahoe;
  let client: TahoeClient;
  before(async () => {
    fake = await startFakeTahoe();
    client = new TahoeClient(fake.url, { ...DEFAULT_TIMEOUTS, retryDelaysMs: [] });
  });
  after(async () => {
    await client.close();
    await fake.close();
  });

  /** A fresh directory linked under the root, so that tests do not see each other's names. */
  async function scratch(name: string): Promise<string> {
    return client.mkdir(fake.rootCap, name);
  }

  /**
   * PUT /uri/$DIRCAP/NAME?replace=true: upload and link in one request. blackmatch never sends it (it uploads,
   * then links with metadata of its own choosing), but a user's `tahoe put` does: the fake answers it as Tahoe.
   */
  async function putChild(dirCap: string, name: string, body: Buffer): Promise<string> {
    const res = await request(`${fake.url}uri/${encodeURIComponent(dirCap)}/${encodeURIComponent(name)}?replace=true`, { method: 'PUT', body });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new FsError(errnoForStatus(res.statusCode, text), `PUT: HTTP ${res.statusCode}`);
    return text.trim();
  }

  const download = async (cap: string, range?: { start: number; end: number }) => buffer(await client.download(cap, range));

  it('makes caps of the real shape; a readcap is derived as Tahoe derives it', () => {
    const root = parseCap(fake.rootCap);
    assert.equal(root.kind, 'DIR2');
    assert.ok(root.writable);
    // A writecap and its readcap seen on a real grid: the fake derives the same readkey.
    assert.equal(fake.readOnly(STRANGE_DIR), STRANGE_DIR_RO);
    const mdmf = fake.createMutableFile(Buffer.from('x'));
    assert.equal(parseCap(mdmf).kind, 'MDMF');
    assert.equal(parseCap(fake.readOnly(mdmf)).storageIndex, parseCap(mdmf).storageIndex);
    assert.equal(parseCap(fake.createMutableFile(Buffer.alloc(0), 'SDMF')).kind, 'SSK');
  });

  it('mkdir, unlinked and by name; an existing name is EEXIST', async () => {
    const loose = await client.createDirectory();
    assert.equal(parseCap(loose).kind, 'DIR2');
    assert.equal((await client.listDir(loose)).children.size, 0);
    const dir = await scratch('mkdir');
    const sub = await client.mkdir(dir, 'sub');
    const child = (await client.listDir(dir)).children.get('sub')!;
    assert.equal(child.type, 'dir');
    assert.equal(child.rwUri, sub);
    assert.equal(child.roUri, fake.readOnly(sub));
    assert.ok(child.mutable);
    assert.equal(typeof child.metadata.tahoe?.linkcrtime, 'number');
    await rejectsWith(client.mkdir(dir, 'sub'), 'EEXIST');
  });

  it('uploads unlinked files (CHK, or LIT when small) and serves them whole and by range', async () => {
    const content = patternedContent(1000, 7);
    const cap = await client.upload(content, content.length);
    const parsed = parseCap(cap);
    assert.equal(parsed.kind, 'CHK');
    assert.equal(parsed.size, 1000);
    assert.notEqual(await client.upload(content, content.length), cap, 'random keys, not convergent');
    assert.deepEqual(fake.bytes(cap), content);
    assert.deepEqual(await download(cap), content);
    assert.deepEqual(await download(cap, { start: 100, end: 300 }), content.subarray(100, 300));
    assert.deepEqual(await download(cap, { start: 900, end: 2000 }), content.subarray(900));
    assert.equal((await download(cap, { start: 1000, end: 1010 })).length, 0, '416 past the end');
    const range = fake.requests.at(-2)!;
    assert.equal(range.headers.range, 'bytes=900-1999');
    const lit = await client.upload(Buffer.from('small'), 5);
    assert.deepEqual(parseCap(lit).literalData, Buffer.from('small'));
    // A cap naming nothing on the grid: Tahoe answers 410 (no shares), not "no such name".
    await rejectsWith(download(STRANGE_CHK), 'EIO');
  });

  it('PUT to a name links an upload; replacing keeps the link user metadata, as Tahoe does', async () => {
    const dir = await scratch('put');
    const first = await putChild(dir, 'f', patternedContent(100));
    assert.equal(fake.entry(dir, 'f')?.roUri, first);
    assert.equal((await client.listDir(dir)).children.get('f')?.size, 100);
    await client.setChild(dir, 'f', { type: 'file', roUri: first, metadata: { mtime: 42 } }, true);
    const second = await putChild(dir, 'f', patternedContent(200, 2));
    const entry = fake.entry(dir, 'f')!;
    assert.equal(entry.roUri, second);
    assert.equal(entry.size, 200);
    assert.equal(entry.metadata.mtime, 42);
  });

  it('setChild sets user metadata, keeps linkcrtime, moves linkmotime; replace=false refuses', async () => {
    const dir = await scratch('set');
    const cap = fake.addFile(patternedContent(60));
    await client.setChild(dir, 'a', { type: 'file', roUri: cap, metadata: { mtime: 1, tahoe: { linkcrtime: 5 } } }, false);
    const before = fake.entry(dir, 'a')!.metadata;
    assert.equal(before.mtime, 1);
    assert.notEqual(before.tahoe?.linkcrtime, 5, 'the tahoe key is the gateway\'s, not the caller\'s');
    await client.setChild(dir, 'a', { type: 'file', roUri: cap, metadata: { mtime: 2, x: 'y' } }, true);
    const afterwards = fake.entry(dir, 'a')!.metadata;
    assert.deepEqual({ mtime: afterwards.mtime, x: afterwards.x }, { mtime: 2, x: 'y' });
    assert.equal(afterwards.tahoe?.linkcrtime, before.tahoe?.linkcrtime);
    assert.ok(afterwards.tahoe!.linkmotime! >= before.tahoe!.linkmotime!);
    await rejectsWith(client.setChild(dir, 'a', { type: 'file', roUri: cap }, false), 'EEXIST');
    assert.equal(fake.entry(dir, 'a')!.metadata.mtime, 2);
  });

  it('relink moves a link with its user metadata, within and across directories', async () => {
    const dir = await scratch('relink');
    const other = await client.mkdir(dir, 'other');
    const cap = fake.addFile(patternedContent(80));
    fake.link(dir, 'a', cap, { mtime: 7 });
    await client.relink(dir, 'a', dir, 'b', false);
    assert.equal(fake.entry(dir, 'a'), undefined);
    assert.equal(fake.entry(dir, 'b')?.metadata.mtime, 7);
    await client.relink(dir, 'b', other, 'c', true);
    assert.deepEqual(Object.keys(fake.tree(dir)), ['other']);
    assert.equal(fake.tree(dir).other!.children!.c!.roUri, cap);
    fake.link(other, 'd', fake.addFile(patternedContent(90)));
    await rejectsWith(client.relink(other, 'c', other, 'd', false), 'EEXIST');
    assert.equal(fake.entry(other, 'c')?.roUri, cap, 'a refused move leaves the source');
    await rejectsWith(client.relink(other, 'missing', other, 'e', true), 'ENOENT');
    await client.relink(other, 'c', other, 'd', true);
    assert.equal(fake.entry(other, 'd')?.roUri, cap);
  });

  it('unlink removes a link; a missing name is ENOENT', async () => {
    const dir = await scratch('unlink');
    fake.link(dir, 'a', fake.addFile(patternedContent(70)));
    await client.unlink(dir, 'a');
    assert.equal(fake.entry(dir, 'a'), undefined);
    await rejectsWith(client.unlink(dir, 'a'), 'ENOENT');
  });

  it('mutable files: overwritten in place by cap or by name, read by range, refused through a readcap', async () => {
    const dir = await scratch('mutable');
    const cap = fake.createMutableFile(patternedContent(100, 1));
    fake.link(dir, 'm', cap);
    const listed = (await client.listDir(dir)).children.get('m')!;
    assert.deepEqual([listed.rwUri, listed.mutable, listed.size], [cap, true, 100]);
    const next = patternedContent(150, 2);
    await client.overwriteMutable(cap, next, next.length);
    assert.deepEqual(await download(cap, { start: 50, end: 60 }), next.subarray(50, 60));
    assert.deepEqual(await download(fake.readOnly(cap)), next);
    assert.equal(await putChild(dir, 'm', Buffer.from('third')), cap, 'PUT onto a mutable child overwrites it');
    assert.deepEqual(fake.bytes(cap), Buffer.from('third'));
    await rejectsWith(client.overwriteMutable(fake.readOnly(cap), Buffer.from('no'), 2), 'EROFS');
  });

  it('a directory by its readcap lists read-only caps and refuses every change', async () => {
    const dir = await scratch('ro');
    const sub = await client.mkdir(dir, 'sub');
    fake.link(dir, 'f', fake.addFile(patternedContent(64)));
    const ro = fake.readOnly(dir);
    const listing = await client.listDir(ro);
    assert.equal(listing.rwUri, undefined);
    assert.equal(listing.roUri, ro);
    assert.equal(listing.children.get('sub')?.rwUri, undefined);
    assert.equal(listing.children.get('sub')?.roUri, fake.readOnly(sub));
    await rejectsWith(client.mkdir(ro, 'x'), 'EROFS');
    await rejectsWith(putChild(ro, 'x', Buffer.from('data')), 'EROFS');
    await rejectsWith(client.setChild(ro, 'x', { type: 'file', roUri: fake.addFile(Buffer.from('d')) }, true), 'EROFS');
    await rejectsWith(client.unlink(ro, 'f'), 'EROFS');
    await rejectsWith(client.relink(ro, 'f', dir, 'g', true), 'EROFS');
    await rejectsWith(client.relink(dir, 'f', ro, 'g', true), 'EROFS');
    assert.deepEqual(Object.keys(fake.tree(dir)).sort(), ['f', 'sub']);
    await rejectsWith(client.listDir(STRANGE_DIR), 'EIO');
  });

  it('holds an upload in flight while another client renames and unlinks; release applies it then', async () => {
    const dir = await scratch('hold');
    fake.link(dir, 'old', fake.addFile(patternedContent(100, 3)));
    const held = fake.hold((req) => target(req).method === 'PUT' && target(req).names[0] === 'new');
    const upload = putChild(dir, 'new', patternedContent(300, 4));
    const req = await held.arrived;
    assert.equal(req.body.length, 300);
    // While the upload waits, the directory changes under it.
    await client.relink(dir, 'old', dir, 'renamed', false);
    assert.equal(fake.unlinkDirect(dir, 'renamed'), true);
    assert.equal(fake.entry(dir, 'new'), undefined, 'nothing linked before release');
    held.release();
    const cap = await upload;
    assert.deepEqual(Object.keys(fake.tree(dir)), ['new']);
    assert.deepEqual(fake.bytes(cap), patternedContent(300, 4));
  });

  it('a held request can be failed, or released before it comes; a hold nobody matches rejects arrived', async () => {
    const dir = await scratch('fail');
    const failed = fake.hold((req) => target(req).query.get('t') === 'set_children');
    const link = client.setChild(dir, 'a', { type: 'file', roUri: fake.addFile(patternedContent(99)) }, true);
    await failed.arrived;
    failed.fail(409);
    await rejectsWith(link, 'EEXIST');
    assert.equal(fake.entry(dir, 'a'), undefined);
    const early = fake.hold((req) => target(req).method === 'DELETE');
    early.release();
    fake.link(dir, 'b', fake.addFile(patternedContent(98)));
    await client.unlink(dir, 'b');
    assert.equal((await early.arrived).method, 'DELETE');
    await assert.rejects(fake.hold(() => false, 20).arrived, /no matching request/);
  });

  it('down refuses every request until up', async () => {
    fake.down();
    await rejectsWith(client.listDir(fake.rootCap), 'EIO');
    fake.down(503);
    await rejectsWith(client.listDir(fake.rootCap), 'EIO');
    fake.up();
    assert.ok((await client.listDir(fake.rootCap)).children.has('hold'));
  });
});
