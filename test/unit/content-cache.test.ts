import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContentCache } from '../../src/cache/content-cache.js';
import { FsError } from '../../src/fs/errors.js';
import { silentLogger } from '../../src/log.js';
import { parseCap } from '../../src/tahoe/caps.js';
import { TahoeClient } from '../../src/tahoe/client.js';
import { startFakeWebApi, type FakeWebApi } from '../support/fake-webapi.js';

// A real 102-byte CHK cap; the fake gateway serves CONTENT for it.
const CHK = parseCap('URI:CHK:wrhc5cw4xjmfgwlj7saw2tzhc4:llowspsswjfvfyfjgbgpoae4lq7jq5uwtqznp6erya5payc2jmvq:2:3:102');
const CONTENT = Buffer.from('0123456789'.repeat(10) + 'ab');
const MDMF = parseCap('URI:MDMF:4i52fugpa3jhwxjru2re6xhqfe:f3eq6hn77nuu5ksucz4hqb7bd64vyztevdqqxi3escx7vyxaxm6q');

const mode = async (path: string) => (await stat(path)).mode & 0o777;

describe('ContentCache', () => {
  let api: FakeWebApi;
  let client: TahoeClient;
  let root: string;
  let cache: ContentCache;
  /** Lets a test hold the fake gateway's answers until it has queued all its callers. */
  let release: () => void = () => {};
  let gate: Promise<void> = Promise.resolve();

  before(async () => {
    api = await startFakeWebApi();
    client = new TahoeClient(api.url, { requestMs: 5000, idleMs: 5000, uploadAnswerMs: 5000 });
  });
  after(async () => {
    await client.close();
    await api.close();
  });
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'bm-unit-cache-'));
    cache = new ContentCache(join(root, '_cache'), client, silentLogger());
    await cache.init();
    api.requests.length = 0;
    gate = Promise.resolve();
    api.handle((_req, res) => {
      void gate.then(() => res.end(CONTENT));
    });
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('init makes its folders with mode 0700', async () => {
    for (const dir of [cache.root, cache.filesDir, cache.tmpDir, cache.stagingDir]) {
      assert.equal(await mode(dir), 0o700, dir);
    }
  });

  it('init clears leftovers in tmp/ but keeps staged writes', async () => {
    await writeFile(join(cache.tmpDir, 'dl-old'), 'partial');
    await writeFile(join(cache.stagingDir, 'pending'), 'unsaved');
    const again = new ContentCache(cache.root, client, silentLogger());
    await again.init();
    assert.deepEqual(await readdir(again.tmpDir), []);
    assert.deepEqual(await readdir(again.stagingDir), ['pending']);
  });

  it('downloads an immutable file into files/<storage index>, mode 0600', async () => {
    const path = await cache.immutable(CHK);
    assert.equal(path, join(cache.filesDir, CHK.storageIndex!));
    assert.deepEqual(await readFile(path), CONTENT);
    assert.equal(await mode(path), 0o600);
    assert.deepEqual(await readdir(cache.tmpDir), []);
  });

  it('downloads once for concurrent callers', async () => {
    gate = new Promise<void>((r) => (release = r));
    const callers = Array.from({ length: 8 }, () => cache.immutable(CHK));
    // Let every caller reach the shared download before the gateway answers.
    while (api.requests.length === 0) await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
    release();
    const paths = await Promise.all(callers);
    assert.equal(new Set(paths).size, 1);
    assert.equal(api.requests.length, 1);
  });

  it('reuses the cached file on a later call', async () => {
    const first = await cache.immutable(CHK);
    const second = await cache.immutable(CHK);
    assert.equal(second, first);
    assert.equal(api.requests.length, 1);
  });

  it('downloads again when the cached file has the wrong size', async () => {
    const path = await cache.immutable(CHK);
    await writeFile(path, 'truncated');
    assert.deepEqual(await readFile(await cache.immutable(CHK)), CONTENT);
    assert.equal(api.requests.length, 2);
  });

  it('rejects a download of the wrong size and leaves no file behind', async () => {
    api.handle((_req, res) => res.end(CONTENT.subarray(0, 50)));
    await assert.rejects(cache.immutable(CHK), (e: unknown) => e instanceof FsError && e.code === 'EIO' && /got 50 bytes, expected 102/.test(e.message));
    assert.deepEqual(await readdir(cache.filesDir), []);
    assert.deepEqual(await readdir(cache.tmpDir), []);
    // The failure is not remembered: a later call tries again.
    api.handle((_req, res) => res.end(CONTENT));
    assert.deepEqual(await readFile(await cache.immutable(CHK)), CONTENT);
  });

  it('maps a gateway error to its errno and leaves no file behind', async () => {
    api.handle((_req, res) => {
      res.statusCode = 410;
      res.end('NoSharesError');
    });
    await assert.rejects(cache.immutable(CHK), (e: unknown) => e instanceof FsError && e.code === 'EIO');
    assert.deepEqual(await readdir(cache.filesDir), []);
    assert.deepEqual(await readdir(cache.tmpDir), []);
  });

  it('refuses caps that are not cacheable', async () => {
    for (const cap of [MDMF, parseCap('URI:LIT:4t4n2dlinyhq')]) {
      await assert.rejects(cache.immutable(cap), (e: unknown) => e instanceof FsError && e.code === 'EIO' && /not a cacheable/.test(e.message));
    }
    assert.equal(api.requests.length, 0);
  });

  it('mutableSnapshot downloads into tmp/, mode 0600, for the caller to remove', async () => {
    api.handle((_req, res) => res.end('mutable content'));
    const path = await cache.mutableSnapshot(MDMF);
    assert.ok(path.startsWith(cache.tmpDir));
    assert.equal(await readFile(path, 'utf8'), 'mutable content');
    assert.equal(await mode(path), 0o600);
  });

  it('newStagingPath gives distinct paths in staging/', () => {
    const a = cache.newStagingPath();
    const b = cache.newStagingPath();
    assert.notEqual(a, b);
    assert.ok(a.startsWith(cache.stagingDir + '/'));
  });
});
