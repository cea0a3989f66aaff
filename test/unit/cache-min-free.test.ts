// The cache on a small real filesystem (a 20 MiB tmpfs, so root only): makeRoom() frees cached content for a
// write that found the disk full, and the minimum of free space evicts content as the disk fills.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, open, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { CachedFile } from '../../src/cache/cached-file.js';
import { ContentCache } from '../../src/cache/content-cache.js';
import { silentLogger } from '../../src/log.js';
import { parseCap, type Cap } from '../../src/tahoe/caps.js';
import { TahoeClient } from '../../src/tahoe/client.js';
import { fileServer, patternedContent, randomChkCap, startFakeWebApi, type FakeWebApi } from '../support/fake-webapi.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const BOUND = { timeout: 60_000 };

/** Reads as the product does (readInto into the caller's buffer): the bytes present at [position, position+length). */
async function readAt(file: CachedFile, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  return buffer.subarray(0, await file.readInto(buffer, position));
}

/** Why this test cannot run here, or undefined: it mounts a tmpfs. */
function whyNot(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux (mounts a tmpfs)';
  if (process.getuid?.() !== 0) return 'needs root to mount a 20 MiB tmpfs';
  return undefined;
}

const available = async (dir: string) => {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
};

/** Fills the filesystem until only about `leave` bytes are available; returns the filler's path. */
async function fillUntil(dir: string, leave: number): Promise<string> {
  const path = join(dir, `filler-${Date.now()}`);
  const fh = await open(path, 'w');
  try {
    const block = Buffer.alloc(256 * 1024, 1);
    while ((await available(dir)) > leave + block.length) await fh.write(block);
  } finally {
    await fh.close();
  }
  return path;
}

describe('ContentCache on a nearly full filesystem', { skip: whyNot() }, () => {
  let dir: string;
  let mounted = false;
  let api: FakeWebApi;
  let client: TahoeClient;
  const files = new Map<string, Buffer>();
  const caches: ContentCache[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bm-small-fs-'));
    await run('mount', ['-t', 'tmpfs', '-o', 'size=20m,mode=0700', 'tmpfs', dir]);
    mounted = true;
    api = await startFakeWebApi(fileServer(files));
    client = new TahoeClient(api.url, { requestMs: 10_000, idleMs: 20_000, uploadAnswerMs: 10_000, retryDelaysMs: [1, 1, 1] });
  });
  after(async () => {
    for (const c of caches) await c.shutdown().catch(() => undefined);
    await client?.close();
    await api?.close();
    if (mounted) await run('umount', [dir]);
    await rm(dir, { recursive: true, force: true });
  });

  let seed = 1;
  function serve(size: number): { cap: Cap; content: Buffer } {
    const text = randomChkCap(size);
    const content = patternedContent(size, seed++);
    files.set(text, content);
    return { cap: parseCap(text), content };
  }

  async function newCache(name: string, minFreeBytes: number): Promise<ContentCache> {
    const c = new ContentCache(join(dir, name), client, silentLogger(), { maxBytes: 1024 ** 3, minFreeBytes });
    await c.init();
    caches.push(c);
    return c;
  }

  /** Reads a content whole and leaves it resting, each one used after the one before. */
  async function cacheWhole(c: ContentCache, f: { cap: Cap; content: Buffer }): Promise<void> {
    const t = Date.now();
    while (Date.now() <= t) await new Promise((r) => setTimeout(r, 1)); // distinct last-use times: LRU order
    const file = await c.open(f.cap);
    assert.ok((await readAt(file, 0, f.content.length)).equals(f.content));
    await c.release(file);
  }

  const cachedKeys = async (c: ContentCache) => (await readdir(c.filesDir)).filter((n) => !n.endsWith('.meta')).sort();

  it('makeRoom evicts resting content, oldest first, until the space asked for is free', BOUND, async () => {
    const c = await newCache('make-room', 0);
    const contents = [serve(4 * MiB), serve(4 * MiB), serve(4 * MiB)];
    for (const f of contents) await cacheWhole(c, f);
    assert.equal(c.usedBytes, 12 * MiB);
    const filler = await fillUntil(dir, 512 * 1024);
    try {
      // As a staging write would: the disk is full.
      await assert.rejects(writeFile(join(c.stagingDir, 'w'), Buffer.alloc(3 * MiB)), /ENOSPC/);
      assert.equal(await c.makeRoom(3 * MiB + 64 * 1024), true);
      assert.ok((await available(dir)) >= 3 * MiB, `available ${await available(dir)}`);
      const keys = contents.map((f) => f.cap.storageIndex!);
      assert.deepEqual(await cachedKeys(c), [keys[1], keys[2]].sort(), 'the oldest went, and only as much as needed');
      assert.equal(c.usedBytes, 8 * MiB);
      await writeFile(join(c.stagingDir, 'w'), Buffer.alloc(3 * MiB)); // and the write then fits
      // Content in use is never evicted, however much is asked.
      const open = await c.open(contents[2]!.cap);
      assert.equal(await c.makeRoom(100 * MiB), true);
      assert.deepEqual(await cachedKeys(c), [keys[2]]);
      assert.equal(await c.makeRoom(100 * MiB), false, 'nothing left that may go');
      assert.deepEqual(await cachedKeys(c), [keys[2]]);
      assert.equal(c.usedBytes, 4 * MiB);
      await c.release(open);
    } finally {
      await rm(filler, { force: true });
      await rm(join(c.stagingDir, 'w'), { force: true });
    }
  });

  it('keeps the minimum of free space as content grows and after an adoption', BOUND, async () => {
    const c = await newCache('min-free', 6 * MiB);
    const [a, b] = [serve(3 * MiB), serve(3 * MiB)];
    await cacheWhole(c, a);
    await cacheWhole(c, b);
    assert.equal(c.usedBytes, 6 * MiB, 'room enough: nothing evicted');
    const filler = await fillUntil(dir, 6 * MiB + 256 * 1024);
    try {
      // Reading 2 MiB more takes the free space below the minimum: the oldest content makes way.
      const d = serve(2 * MiB);
      await cacheWhole(c, d);
      const t = Date.now();
      while ((await cachedKeys(c)).includes(a.cap.storageIndex!)) {
        assert.ok(Date.now() - t < 30_000, 'a was not evicted');
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.ok((await cachedKeys(c)).includes(d.cap.storageIndex!));
      assert.ok((await available(dir)) >= 6 * MiB - 256 * 1024, `available ${await available(dir)}`);

      // An upload adopted into the cache is checked at once: older content goes for it.
      const e = serve(3 * MiB);
      const staging = c.newStagingPath();
      await writeFile(staging, e.content);
      assert.equal(await c.adopt(staging, e.cap), true);
      assert.ok((await available(dir)) >= 6 * MiB, `available ${await available(dir)}`);
      assert.ok(!(await cachedKeys(c)).includes(b.cap.storageIndex!), 'b made way for the adopted upload');
      assert.ok((await cachedKeys(c)).includes(e.cap.storageIndex!));
    } finally {
      await rm(filler, { force: true });
    }
  });
});
