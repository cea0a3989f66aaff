// The core's listings as the libfuse 3 edge uses them: readdirplus (readdir's names with exactly getattr's
// attributes, from one listing) and change events (a listing fetched again that differs from the one held),
// over the in-memory Tahoe.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { constants } from 'node:fs';
import type { TahoeFs } from '../../src/fs/tahoe-fs.js';
import type { FakeTahoe } from '../support/fake-tahoe.js';
import { coresPerTest, writeFile } from '../support/core.js';

/** readdir, and getattr of each name: what readdirplus must equal. */
async function readdirThenGetattr(fs: TahoeFs, dir: string): Promise<Array<{ name: string; attr: unknown }>> {
  const names = (await fs.readdir(dir)).filter((n) => n !== '.' && n !== '..');
  return Promise.all(names.map(async (name) => ({ name, attr: await fs.getattr(dir === '/' ? `/${name}` : `${dir}/${name}`) })));
}

describe('core: readdirplus', () => {
  let fake: FakeTahoe;
  const cores = coresPerTest((f) => (fake = f));

  it('equals readdir plus getattr of each entry: stored, open and written, created and not uploaded, subdirectory', async () => {
    const { fs } = await cores.start();
    const stored = await writeFile(fs, '/stored', 'stored bytes');
    await fs.release('/stored', stored);
    const rewritten = await writeFile(fs, '/rewritten', 'short');
    await fs.flush('/rewritten', rewritten);
    await fs.write('/rewritten', rewritten, Buffer.from('now longer than before'), 0); // open, dirty: the open file's attrs
    const created = await writeFile(fs, '/created', 'not uploaded yet');
    await fs.mkdir('/sub', 0o755);
    const inSub = await writeFile(fs, '/sub/inner', 'x');
    await fs.release('/sub/inner', inSub);

    const plus = await fs.readdirplus('/');
    assert.deepEqual(plus.map((e) => e.name).sort(), ['created', 'rewritten', 'stored', 'sub'].sort());
    assert.deepEqual(plus, await readdirThenGetattr(fs, '/'));
    const createdAttr = plus.find((e) => e.name === 'created')!.attr;
    assert.equal(createdAttr.size, 'not uploaded yet'.length);
    assert.equal(plus.find((e) => e.name === 'rewritten')!.attr.size, 'now longer than before'.length);
    assert.equal(plus.find((e) => e.name === 'sub')!.attr.mode & constants.S_IFMT, constants.S_IFDIR);
    assert.deepEqual(await fs.readdirplus('/sub'), await readdirThenGetattr(fs, '/sub'));
    await fs.release('/created', created);
    await fs.release('/rewritten', rewritten);
  });

  it('shows entries another client added once the listing is fetched again, as getattr does', async () => {
    const { fs } = await cores.start({ cacheTimeoutMs: 0 });
    fake.link(fake.rootCap, 'theirs', fake.addFile(Buffer.from('another client')));
    const ro = fake.createDirectory();
    fake.link(fake.rootCap, 'readonly', fake.readOnly(ro));
    const plus = await fs.readdirplus('/');
    assert.deepEqual(plus.map((e) => e.name).sort(), ['readonly', 'theirs']);
    assert.deepEqual(plus, await readdirThenGetattr(fs, '/'));
    assert.equal(plus.find((e) => e.name === 'readonly')!.attr.mode & 0o777, 0o555);
  });

  it('fails as readdir does: ENOENT for a missing directory, ENOTDIR for a file', async () => {
    const { fs } = await cores.start();
    const fh = await writeFile(fs, '/file', 'x');
    await fs.release('/file', fh);
    await assert.rejects(fs.readdirplus('/nowhere'), { code: 'ENOENT' });
    await assert.rejects(fs.readdirplus('/file'), { code: 'ENOTDIR' });
  });
});

describe('core: change events for the kernel cache', () => {
  let fake: FakeTahoe;
  const cores = coresPerTest((f) => (fake = f));

  async function watched(): Promise<{ fs: TahoeFs; events: Array<[string, string, string]> }> {
    const { fs } = await cores.start({ cacheTimeoutMs: 0 });
    const events: Array<[string, string, string]> = [];
    fs.watch((dir, name, kind) => events.push([dir, name, kind]));
    return { fs, events };
  }

  it('reports entries another client added, replaced, touched or removed, once each, when the listing is fetched again', async () => {
    const { fs, events } = await watched();
    const first = fake.addFile(Buffer.from('one'));
    fake.link(fake.rootCap, 'kept', fake.addFile(Buffer.from('unchanged')));
    fake.link(fake.rootCap, 'a', first);
    await fs.readdir('/');
    assert.deepEqual(events, [['/', 'kept', 'entry'], ['/', 'a', 'entry']]);
    events.length = 0;
    await fs.readdir('/');
    assert.deepEqual(events, [], 'nothing changed: nothing reported');
    fake.link(fake.rootCap, 'a', fake.addFile(Buffer.from('two, longer')));
    await fs.readdir('/');
    assert.deepEqual(events, [['/', 'a', 'entry']], 'another cap: the name must be looked up again');
    events.length = 0;
    const now = fake.entry(fake.rootCap, 'a')!;
    fake.link(fake.rootCap, 'a', now.roUri, { ...now.metadata, mtime: 1234 }); // same cap, new mtime
    await fs.getattr('/a');
    assert.deepEqual(events, [['/', 'a', 'attributes']], 'the same cap: only its attributes');
    events.length = 0;
    fake.unlinkDirect(fake.rootCap, 'a');
    await fs.readdirplus('/');
    assert.deepEqual(events, [['/', 'a', 'entry']]);
  });

  it('reports changes in a subdirectory under its path, in NFC', async () => {
    const { fs, events } = await watched();
    const dir = fake.createDirectory();
    fake.link(fake.rootCap, 'caf\u00e9', dir);
    await fs.readdir('/caf\u00e9');
    events.length = 0;
    fake.link(dir, 'new', fake.addFile(Buffer.from('n')));
    await fs.readdir('/caf\u00e9');
    assert.deepEqual(events, [['/caf\u00e9', 'new', 'entry']]);
  });

  it('does not report what this mount changed itself, nor names no directory can show', async () => {
    const { fs, events } = await watched();
    await fs.readdir('/');
    const fh = await writeFile(fs, '/mine', 'ours');
    await fs.flush('/mine', fh);
    await fs.write('/mine', fh, Buffer.from('ours again'), 0);
    await fs.release('/mine', fh);
    await fs.rename('/mine', '/moved');
    await fs.unlink('/moved');
    fake.link(fake.rootCap, 'bad/name', fake.addFile(Buffer.from('hidden')));
    await fs.readdir('/');
    assert.deepEqual(events, []);
  });
});
