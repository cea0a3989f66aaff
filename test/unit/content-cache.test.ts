import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CachedFile, CachedFileMeta } from '../../src/cache/cached-file.js';
import { SEGMENT, STREAM_WINDOW } from '../../src/cache/cached-file.js';
import { ContentCache } from '../../src/cache/content-cache.js';
import { FsError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { parseCap, type Cap } from '../../src/tahoe/caps.js';
import { TahoeClient } from '../../src/tahoe/client.js';
import {
  fileServer,
  patternedContent,
  randomChkCap,
  requestedRange,
  startFakeWebApi,
  type ByteRange,
  type FakeWebApi,
  type RecordedRequest,
  type ServeBehaviour,
} from '../support/fake-webapi.js';

const MDMF = parseCap('URI:MDMF:4i52fugpa3jhwxjru2re6xhqfe:f3eq6hn77nuu5ksucz4hqb7bd64vyztevdqqxi3escx7vyxaxm6q');
const KiB = 1024;
const MiB = 1024 * 1024;
/** Bound for every test that streams: a hang fails the test instead of the run. */
const BOUND = { timeout: 30_000 };

/** Reads as the product does (readInto into the caller's buffer): the bytes present at [position, position+length). */
async function readAt(file: CachedFile, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  return buffer.subarray(0, await file.readInto(buffer, position));
}

const mode = async (path: string) => (await stat(path)).mode & 0o777;
const exists = (path: string) => access(path).then(
  () => true,
  () => false,
);
/** Waits until cond holds; the test's timeout bounds the wait. For effects the API does not let us await. */
async function until(cond: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await cond())) await new Promise((r) => setTimeout(r, 2));
}

/** Asserts the promise rejects with an FsError of this code. */
async function rejectsFs(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof FsError, `expected FsError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

/** A file the fake gateway serves: its cap (real CHK shape, size as the last field) and its bytes. */
interface Served {
  cap: Cap;
  content: Buffer;
}

describe('ContentCache', () => {
  let api: FakeWebApi;
  let client: TahoeClient;
  const files = new Map<string, Buffer>();
  /** How the fake answers each download; tests replace it. */
  let behave: (req: RecordedRequest, range: ByteRange | undefined) => ServeBehaviour = () => ({});
  let root: string;
  let cache: ContentCache;
  /** Every cache a test made, shut down after it. */
  let caches: ContentCache[] = [];

  let seed = 1;
  function serve(size: number): Served {
    const text = randomChkCap(size);
    const cap = parseCap(text);
    assert.equal(cap.kind, 'CHK');
    assert.equal(cap.size, size);
    const content = patternedContent(size, seed++);
    files.set(text, content);
    return { cap, content };
  }

  /** A cache with no minimum of free space unless asked: the disk these tests run on may be nearly full. */
  async function newCache(maxBytes?: number, minFreeBytes = 0): Promise<ContentCache> {
    const c = new ContentCache(join(root, '_cache'), client, silentLogger(), { maxBytes, minFreeBytes });
    await c.init();
    caches.push(c);
    return c;
  }

  /** Reads and checks [position, position+length) (clipped to the file). */
  async function readChecked(file: CachedFile, f: Served, position: number, length: number): Promise<void> {
    const got = await readAt(file, position, length);
    const want = f.content.subarray(position, Math.min(f.content.length, position + length));
    assert.equal(got.length, want.length, `length of read at ${position}`);
    assert.ok(got.equals(want), `bytes of read at ${position}+${length}`);
  }

  /** Opens, reads the whole file (checked), releases. */
  async function readWhole(c: ContentCache, f: Served): Promise<void> {
    const file = await c.open(f.cap);
    try {
      await readChecked(file, f, 0, f.content.length);
    } finally {
      await c.release(file);
    }
  }

  const ranges = () => api.requests.map((r) => requestedRange(r));
  const dataPath = (c: ContentCache, f: Served) => join(c.filesDir, f.cap.storageIndex!);
  const readMetaFile = async (c: ContentCache, f: Served) =>
    JSON.parse(await readFile(`${dataPath(c, f)}.meta`, 'utf8')) as CachedFileMeta;

  before(async () => {
    api = await startFakeWebApi();
    client = new TahoeClient(api.url, { requestMs: 10_000, idleMs: 20_000, uploadAnswerMs: 10_000, retryDelaysMs: [1, 1, 1] });
  });
  after(async () => {
    await client.close();
    await api.close();
  });
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'bm-unit-cache-'));
    caches = [];
    files.clear();
    behave = () => ({});
    api.handle(fileServer(files, (req, range) => behave(req, range)));
    cache = await newCache();
    api.requests.length = 0;
  });
  afterEach(async () => {
    for (const c of caches) await c.shutdown();
    await rm(root, { recursive: true, force: true });
  });

  describe('layout', () => {
    it('init makes its folders with mode 0700', async () => {
      for (const dir of [cache.root, cache.filesDir, cache.tmpDir, cache.stagingDir]) {
        assert.equal(await mode(dir), 0o700, dir);
      }
    });

    it('init clears leftovers in tmp/ but keeps staged writes', async () => {
      await writeFile(join(cache.tmpDir, 'mutable-old'), 'partial');
      await writeFile(join(cache.stagingDir, 'pending'), 'unsaved');
      const again = await newCache();
      assert.deepEqual(await readdir(again.tmpDir), []);
      assert.deepEqual(await readdir(again.stagingDir), ['pending']);
    });

    it('init removes data without a record, records without data, and half-written records', async () => {
      await writeFile(join(cache.filesDir, 'aaaaaaaaaaaaaaaaaaaaaaaaaa'), 'orphan data');
      await writeFile(join(cache.filesDir, 'bbbbbbbbbbbbbbbbbbbbbbbbbb.meta'), '{}');
      await writeFile(join(cache.filesDir, 'cccccccccccccccccccccccccc.meta.tmp'), '{');
      await newCache();
      assert.deepEqual(await readdir(cache.filesDir), []);
    });

    it('keeps contents in files/<storage index> with a record, both mode 0600', BOUND, async () => {
      const f = serve(300 * KiB);
      await readWhole(cache, f);
      const data = dataPath(cache, f);
      assert.deepEqual((await readdir(cache.filesDir)).sort(), [f.cap.storageIndex!, `${f.cap.storageIndex!}.meta`]);
      assert.ok((await readFile(data)).equals(f.content));
      assert.equal(await mode(data), 0o600);
      assert.equal(await mode(`${data}.meta`), 0o600);
      const meta = await readMetaFile(cache, f);
      assert.equal(meta.v, 1);
      assert.equal(meta.size, f.content.length);
      assert.deepEqual(meta.ranges, [[0, f.content.length]]);
      assert.deepEqual(await readdir(cache.tmpDir), []);
    });

    it('refuses caps that are not cacheable, without a request', async () => {
      for (const cap of [MDMF, parseCap('URI:LIT:4t4n2dlinyhq')]) {
        await rejectsFs(cache.open(cap), 'EIO', /not a cacheable/);
      }
      assert.equal(api.requests.length, 0);
    });

    it('newStagingPath gives distinct paths in staging/', () => {
      const a = cache.newStagingPath();
      const b = cache.newStagingPath();
      assert.notEqual(a, b);
      assert.ok(a.startsWith(cache.stagingDir + '/'));
    });
  });

  describe('streaming reads', () => {
    it('serves concurrent readers of one cold file from one sequential download', BOUND, async () => {
      const size = 1536 * KiB + 123; // within STREAM_WINDOW: no read is far enough for a Range request of its own
      assert.ok(size < STREAM_WINDOW);
      const f = serve(size);
      behave = () => ({ chunkSize: 16 * KiB });
      const opens = await Promise.all([cache.open(f.cap), cache.open(f.cap), cache.open(f.cap)]);
      assert.equal(opens[1], opens[0], 'every open of a cap shares one CachedFile');
      assert.equal(opens[2], opens[0]);
      const reads: Array<[number, number]> = [
        [1_000_000, 70_000], // first, though not at the start: within STREAM_WINDOW the stream starts at 0
        [0, 4096],
        [size - 5000, 10_000], // runs past the end: clipped
        [131_071, 2], // across a segment boundary
        [700_000, 1],
        [16 * KiB - 1, 16 * KiB + 2], // across the fake's chunks
        [333_333, 250_000],
        [1_000_000, 70_000], // the same range twice
      ];
      await Promise.all(reads.map(([pos, len], i) => readChecked(opens[i % opens.length]!, f, pos, len)));
      assert.equal(api.requests.length, 1, 'one download for every reader');
      assert.equal(api.requests[0]!.method, 'GET');
      assert.deepEqual(ranges(), [{ start: 0, end: size }]);
      // Once present, reads cost nothing.
      await readChecked(opens[0]!, f, 0, size);
      assert.equal(api.requests.length, 1);
      for (const file of opens) await cache.release(file);
    });

    it('a reader behind the stream gets a Range request of whole segments; the stream stays one', BOUND, async () => {
      // The design: beyond STREAM_WINDOW, the sequential download starts where its first reader reads; a reader
      // behind it is served by a Range request of the segments it needs (plus a few), not by a second stream.
      const size = STREAM_WINDOW + 2 * MiB + 321;
      const f = serve(size);
      behave = () => ({ chunkSize: 16 * KiB });
      const opens = await Promise.all([cache.open(f.cap), cache.open(f.cap)]);
      const streamFrom = STREAM_WINDOW + MiB + 1000;
      assert.ok(streamFrom >= STREAM_WINDOW);
      const reads: Array<[number, number]> = [
        [streamFrom, 70_000], // first: the stream starts here
        [0, 4096], // behind it: a Range request
        [131_071, 2], // covered by that Range request
        [size - 5000, 10_000], // ahead, within the window: the stream
      ];
      await Promise.all(reads.map(([pos, len], i) => readChecked(opens[i % opens.length]!, f, pos, len)));
      const asked = ranges().sort((x, y) => x!.start - y!.start);
      assert.equal(asked.length, 2, JSON.stringify(asked));
      assert.deepEqual(asked[1], { start: streamFrom, end: size }, 'the stream, from the first reader to the end');
      const behind = asked[0]!;
      assert.equal(behind.start, 0);
      assert.equal(behind.end % SEGMENT, 0, 'whole segments');
      assert.ok(behind.end >= 131_073 && behind.end <= 8 * SEGMENT, `a few segments: ${JSON.stringify(behind)}`);
      for (const file of opens) await cache.release(file);
    });

    it('reads within the file only: past the end is empty, a read at the end costs nothing', BOUND, async () => {
      const f = serve(200 * KiB);
      const file = await cache.open(f.cap);
      assert.equal((await readAt(file, f.content.length, 100)).length, 0);
      assert.equal((await readAt(file, f.content.length + 5000, 100)).length, 0);
      assert.equal(api.requests.length, 0);
      await readChecked(file, f, f.content.length - 1, 100);
      await cache.release(file);
    });

    it('answers a read far ahead of a slow stream with a Range request of whole segments', BOUND, async () => {
      const size = STREAM_WINDOW + 2 * MiB + 1000;
      const f = serve(size);
      let resume!: () => void;
      const resumed = new Promise<void>((r) => (resume = r));
      const held = 64 * KiB;
      // The sequential stream (from 0) sends 64 KiB and then stalls until the test lets it go on; Range
      // requests elsewhere are answered at once.
      behave = (_req, range) => (range?.start === 0 ? { chunkSize: 16 * KiB, holdAfter: held, resume: resumed } : {});
      const file = await cache.open(f.cap);
      await readChecked(file, f, 0, 4096);
      assert.deepEqual(ranges(), [{ start: 0, end: size }]);
      await until(() => file.ranges.firstMissing(0) === held); // the stream has stalled

      const far = STREAM_WINDOW + MiB + 1000;
      const farLength = 5000;
      assert.ok(far > held + STREAM_WINDOW);
      await readChecked(file, f, far, farLength);
      // Answered while the stream still stands where it stalled.
      assert.equal(file.ranges.firstMissing(0), held, 'the stream is still held back');
      assert.equal(api.requests.length, 2);
      const r = ranges()[1]!;
      const first = Math.floor(far / SEGMENT) * SEGMENT;
      assert.equal(r.start, first, 'starts at the segment holding the read');
      assert.equal(r.start % SEGMENT, 0);
      assert.ok(r.end >= far + farLength, 'covers the read');
      assert.ok(r.end % SEGMENT === 0 || r.end === size, 'ends at a segment boundary (or the end of the file)');
      assert.ok(r.end - r.start <= 8 * SEGMENT, `a few segments, not the rest of the file (${r.end - r.start} bytes)`);
      await until(() => file.ranges.contains(r.start, r.end)); // the read-ahead segments arrive too
      assert.equal(file.ranges.firstMissing(0), held, 'and still the stream is held back');
      assert.equal(api.requests.length, 2);

      // A read near the stream waits for it rather than asking on its own.
      const near = readChecked(file, f, held + 100 * KiB, 10_000);
      resume();
      await near;
      await readChecked(file, f, 0, size);
      assert.equal(api.requests.length, 2, 'the stream brought the rest');
      await cache.release(file);
    });

    it('a download failing mid-way fails the waiting read with EIO; the next read retries', BOUND, async () => {
      const size = 1 * MiB;
      const f = serve(size);
      const failAt = 300_000;
      behave = () => ({ chunkSize: 32 * KiB, failAfter: failAt });
      const file = await cache.open(f.cap);
      const early = readChecked(file, f, 0, 1000);
      const late = rejectsFs(readAt(file, 600_000, 1000), 'EIO');
      await early;
      await late;
      const frontier = file.ranges.firstMissing(0);
      assert.ok(frontier <= failAt, `nothing recorded past what was sent (${frontier})`);
      assert.ok(file.ranges.contains(0, 1000));
      assert.equal(api.requests.length, 1);

      behave = () => ({ chunkSize: 32 * KiB });
      await readChecked(file, f, 600_000, 1000);
      assert.equal(api.requests.length, 2, 'the read retried');
      const retry = ranges()[1]!;
      assert.ok(retry.start >= frontier && retry.start <= 600_000, `resumes at or after what is held: ${JSON.stringify(retry)}`);
      await readChecked(file, f, 0, size);
      for (const r of ranges().slice(2)) assert.ok(r!.start >= frontier, 'never again what is held');
      await cache.release(file);
    });

    it('a failing Range request fails only the reads waiting on it', BOUND, async () => {
      const size = STREAM_WINDOW + 2 * MiB;
      const f = serve(size);
      let resume!: () => void;
      const resumed = new Promise<void>((r) => (resume = r));
      const held = 64 * KiB;
      let failRanges = true;
      behave = (_req, range) =>
        range?.start === 0 ? { chunkSize: 16 * KiB, holdAfter: held, resume: resumed } : failRanges ? { failAfter: 10 * KiB } : {};
      const file = await cache.open(f.cap);
      await readChecked(file, f, 0, 100);
      await until(() => file.ranges.firstMissing(0) === held);
      const near = readChecked(file, f, 1 * MiB, 1000); // waits on the held stream
      await rejectsFs(readAt(file, STREAM_WINDOW + MiB + 50 * KiB, 1000), 'EIO'); // a Range request that breaks
      failRanges = false;
      await readChecked(file, f, STREAM_WINDOW + MiB + 50 * KiB, 1000); // tried again, on a new Range request
      assert.equal(api.requests.length, 3);
      resume();
      await near; // the stream's reader never saw the Range request's failure
      await readChecked(file, f, 0, size);
      await cache.release(file);
    });

    it('a download failing before its answer fails the read with EIO; the next read retries', BOUND, async () => {
      const f = serve(400 * KiB);
      behave = () => ({ failAfter: 0 });
      const file = await cache.open(f.cap);
      await rejectsFs(readAt(file, 1000, 1000), 'EIO');
      behave = () => ({});
      await readChecked(file, f, 0, f.content.length);
      // A connection broken before the answer is transient: the client retried it before giving up.
      assert.equal(api.requests.length, 1 + client.timeouts.retryDelaysMs.length + 1);
      await cache.release(file);
    });

    it('a gateway error fails the read with its errno; a later read tries again', BOUND, async () => {
      const f = serve(200 * KiB);
      api.handle((_req, res) => {
        res.statusCode = 410;
        res.end('NoSharesError');
      });
      const file = await cache.open(f.cap);
      await rejectsFs(readAt(file, 0, 100), 'EIO', /HTTP 410/);
      assert.equal(file.ranges.bytes, 0);
      api.handle(fileServer(files));
      await readChecked(file, f, 0, f.content.length);
      await cache.release(file);
    });

    it('a body shorter than asked fails the read with EIO and records only what came', BOUND, async () => {
      const f = serve(200 * KiB);
      const short = 50_000;
      api.handle((req, res) => {
        const start = requestedRange(req)?.start ?? 0;
        res.statusCode = 206;
        res.end(f.content.subarray(start, start + short)); // a well-formed answer, just too short
      });
      const file = await cache.open(f.cap);
      const early = readChecked(file, f, 0, 100);
      const late = rejectsFs(readAt(file, 100_000, 100), 'EIO', /too few/); // waits on the same download, which stops short
      await early;
      await late;
      assert.deepEqual(file.ranges.toJSON(), [[0, short]]);
      api.handle(fileServer(files));
      await readChecked(file, f, 0, f.content.length);
      await cache.release(file);
    });

    it('a gateway that stays silent fails the read with EIO once the idle bound passes', BOUND, async () => {
      const impatient = new TahoeClient(api.url, { requestMs: 200, idleMs: 200, uploadAnswerMs: 200, retryDelaysMs: [1, 1, 1] });
      try {
        const c = new ContentCache(join(root, '_cache'), impatient, silentLogger(), { minFreeBytes: 0 });
        await c.init();
        caches.push(c);
        const f = serve(200 * KiB);
        behave = () => ({ holdAfter: 10 * KiB });
        const file = await c.open(f.cap);
        await readChecked(file, f, 0, 1000);
        await rejectsFs(readAt(file, 100 * KiB, 1000), 'EIO');
        behave = () => ({});
        await readChecked(file, f, 0, f.content.length);
        await c.release(file);
      } finally {
        await impatient.close();
      }
    });
  });

  describe('persistence', () => {
    it('a new cache serves a whole file read before with no request', BOUND, async () => {
      const f = serve(700 * KiB + 7);
      await readWhole(cache, f);
      assert.equal(api.requests.length, 1);
      await cache.shutdown();

      api.requests.length = 0;
      const again = await newCache();
      assert.equal(again.usedBytes, f.content.length);
      const file = await again.open(f.cap);
      assert.ok(file.complete);
      await readChecked(file, f, 0, f.content.length);
      await readChecked(file, f, 123_456, 1);
      await again.release(file);
      assert.equal(api.requests.length, 0);
    });

    it('a partly read file resumes: a new cache asks only for what is missing', BOUND, async () => {
      const size = 1 * MiB + 99;
      const f = serve(size);
      const held = 256 * KiB;
      behave = () => ({ chunkSize: 32 * KiB, holdAfter: held }); // then stalls until the reader goes away
      const file = await cache.open(f.cap);
      await readChecked(file, f, 0, 100_000);
      await until(() => file.ranges.bytes === held);
      await cache.release(file);
      const meta = await readMetaFile(cache, f);
      assert.deepEqual(meta.ranges, [[0, held]]);
      assert.equal(meta.size, size);

      behave = () => ({});
      api.requests.length = 0;
      const again = await newCache();
      const resumed = await again.open(f.cap);
      await readChecked(resumed, f, 100_000, size - 100_000);
      assert.deepEqual(ranges(), [{ start: held, end: size }], 'starts where the data stopped');
      await readChecked(resumed, f, 0, size);
      assert.equal(api.requests.length, 1);
      await again.release(resumed);
      assert.deepEqual((await readMetaFile(again, f)).ranges, [[0, size]]);
    });

    it('a file with a hole resumes with requests for the gaps only', BOUND, async () => {
      const size = STREAM_WINDOW + MiB + 5000;
      const f = serve(size);
      const held = 128 * KiB;
      behave = (_req, range) => (range?.start === 0 ? { chunkSize: 32 * KiB, holdAfter: held } : {});
      const file = await cache.open(f.cap);
      await readChecked(file, f, 0, 1000);
      const far = STREAM_WINDOW + 500 * KiB;
      await readChecked(file, f, far, 1000);
      assert.equal(api.requests.length, 2);
      const fetched = ranges()[1]!;
      await until(() => file.ranges.firstMissing(0) === held && file.ranges.contains(fetched.start, fetched.end));
      const present = file.ranges.toJSON();
      assert.equal(present.length, 2);
      const [, [holeEnd, farEnd]] = present as [[number, number], [number, number]];
      await cache.release(file);
      assert.deepEqual((await readMetaFile(cache, f)).ranges, present);

      behave = () => ({});
      api.requests.length = 0;
      const again = await newCache();
      const resumed = await again.open(f.cap);
      await readChecked(resumed, f, 0, size);
      const asked = ranges().sort((a, b) => a!.start - b!.start);
      const expected = [{ start: held, end: holeEnd }];
      if (farEnd < size) expected.push({ start: farEnd, end: size });
      assert.deepEqual(asked, expected);
      await again.release(resumed);
    });

    it('discards a record that claims more than its data file holds, and downloads again', BOUND, async () => {
      const f = serve(500 * KiB);
      await readWhole(cache, f);
      await cache.shutdown();
      await truncate(dataPath(cache, f), 200 * KiB);

      api.requests.length = 0;
      const again = await newCache();
      const file = await again.open(f.cap);
      assert.equal(file.ranges.bytes, 0, 'the record was dropped');
      await readChecked(file, f, 0, f.content.length);
      assert.deepEqual(ranges(), [{ start: 0, end: f.content.length }]);
      await again.release(file);
      assert.deepEqual((await readMetaFile(again, f)).ranges, [[0, f.content.length]]);
      assert.ok((await readFile(dataPath(again, f))).equals(f.content));
    });

    it('discards an unreadable record or one for another size', BOUND, async () => {
      const f = serve(300 * KiB);
      const g = serve(300 * KiB);
      await readWhole(cache, f);
      await readWhole(cache, g);
      await cache.shutdown();
      await writeFile(`${dataPath(cache, f)}.meta`, '{"v":1,"size":');
      const meta = await readMetaFile(cache, g);
      await writeFile(`${dataPath(cache, g)}.meta`, JSON.stringify({ ...meta, size: meta.size + 1 }));

      api.requests.length = 0;
      const again = await newCache();
      await readWhole(again, f);
      await readWhole(again, g);
      assert.equal(api.requests.length, 2);
    });
  });

  describe('eviction', () => {
    const SIZE = 200_000;
    const onDisk = async (c: ContentCache, f: Served) => (await exists(dataPath(c, f))) || (await exists(`${dataPath(c, f)}.meta`));

    it('removes the least recently used contents beyond the limit', BOUND, async () => {
      const c = await newCache(300_000);
      const [a, b, d] = [serve(SIZE), serve(SIZE), serve(SIZE)];
      await readWhole(c, a);
      assert.ok(await onDisk(c, a));
      assert.equal(c.usedBytes, SIZE);

      await readWhole(c, b);
      await until(async () => !(await onDisk(c, a)));
      assert.ok(await onDisk(c, b));
      assert.ok(c.usedBytes <= 300_000, `usedBytes ${c.usedBytes}`);

      await readWhole(c, d);
      await until(async () => !(await onDisk(c, b)));
      assert.ok(await onDisk(c, d));
      assert.equal(c.usedBytes, SIZE);
      assert.deepEqual((await readdir(c.filesDir)).sort(), [d.cap.storageIndex!, `${d.cap.storageIndex!}.meta`].sort());

      // An evicted content is simply downloaded again.
      api.requests.length = 0;
      await readWhole(c, a);
      assert.equal(api.requests.length, 1);
    });

    it('a content read again counts as recently used', BOUND, async () => {
      const c = await newCache(450_000);
      const [a, b, d] = [serve(SIZE), serve(SIZE), serve(SIZE)];
      await readWhole(c, a);
      await readWhole(c, b);
      api.requests.length = 0;
      await readWhole(c, a); // from the cache: a is now more recent than b
      assert.equal(api.requests.length, 0);
      await readWhole(c, d);
      await until(async () => !(await onDisk(c, b)));
      assert.ok(await onDisk(c, a));
      assert.ok(await onDisk(c, d));
      assert.equal(c.usedBytes, 2 * SIZE);
    });

    it('never evicts a content that is open, even over the limit', BOUND, async () => {
      const c = await newCache(300_000);
      const [a, b, d] = [serve(SIZE), serve(SIZE), serve(SIZE)];
      const fa = await c.open(a.cap);
      await readChecked(fa, a, 0, SIZE);
      const fb = await c.open(b.cap);
      await readChecked(fb, b, 0, SIZE);
      assert.equal(c.usedBytes, 2 * SIZE, 'over the limit: both are in use');
      assert.ok(await onDisk(c, a));
      assert.ok(await onDisk(c, b));

      // Another content comes and goes: it is the only one that may go.
      await readWhole(c, d);
      await until(async () => !(await onDisk(c, d)));
      assert.ok(await onDisk(c, a));
      assert.ok(await onDisk(c, b));
      api.requests.length = 0;
      await readChecked(fa, a, 0, SIZE);
      await readChecked(fb, b, 0, SIZE);
      assert.equal(api.requests.length, 0, 'open contents kept every byte');

      await c.release(fa); // now a may go, and must: the cache is over its limit
      await until(async () => !(await onDisk(c, a)));
      assert.ok(await onDisk(c, b));
      await c.release(fb);
      assert.ok(await onDisk(c, b));
      assert.equal(c.usedBytes, SIZE);
    });

    it('init evicts down to a smaller limit', BOUND, async () => {
      const [a, b] = [serve(SIZE), serve(SIZE)];
      await readWhole(cache, a);
      const t = Date.now();
      await until(() => Date.now() > t); // distinct last-use times: the order is what the test is about
      await readWhole(cache, b);
      await cache.shutdown();
      const small = await newCache(250_000);
      assert.equal(small.usedBytes, SIZE);
      assert.equal(await onDisk(small, a), false, 'the older one went');
      assert.ok(await onDisk(small, b));
    });
  });

  describe('snapshots of mutable files', () => {
    /** Serves `content` as the current version of the MDMF file. */
    const serveMutable = (content: Buffer) => files.set(MDMF.text, content);
    const snapshotRequests = () => api.requests.filter((r) => r.rawUrl.includes(encodeURIComponent(MDMF.text)));

    it('answers the first bytes while the rest is held, from one GET of the whole file', BOUND, async () => {
      const content = patternedContent(600 * KiB, 7);
      serveMutable(content);
      let resume!: () => void;
      const held = new Promise<void>((r) => (resume = r));
      behave = () => ({ holdAfter: 64 * KiB, resume: held });
      const file = await cache.openMutable(MDMF, content.length);
      try {
        assert.ok(file.dataPath.startsWith(cache.tmpDir + '/'));
        assert.ok((await readAt(file, 1000, 4096)).equals(content.subarray(1000, 5096)));
        const late = readAt(file, 500 * KiB, 4096); // waits for the one GET, never a request of its own
        assert.equal(await mode(file.dataPath), 0o600);
        assert.equal(cache.usedBytes, file.ranges.bytes, 'counted while it lives');
        resume();
        assert.ok((await late).equals(content.subarray(500 * KiB, 500 * KiB + 4096)));
        assert.ok((await readAt(file, 0, content.length)).equals(content));
        assert.deepEqual(snapshotRequests().map((r) => requestedRange(r)), [undefined], 'one GET, no Range');
        assert.equal(cache.usedBytes, content.length);
      } finally {
        await cache.release(file);
      }
      assert.deepEqual(await readdir(cache.tmpDir), [], 'removed at release');
      assert.deepEqual(await readdir(cache.filesDir), [], 'never persistent');
      assert.equal(cache.usedBytes, 0);
    });

    it('each open is a snapshot of its own', BOUND, async () => {
      serveMutable(Buffer.from('version one'));
      const one = await cache.openMutable(MDMF, 11);
      assert.equal((await readAt(one, 0, 100)).toString(), 'version one');
      serveMutable(Buffer.from('version two'));
      const two = await cache.openMutable(MDMF, 11);
      assert.equal((await readAt(two, 0, 100)).toString(), 'version two');
      assert.equal((await readAt(one, 0, 100)).toString(), 'version one');
      assert.notEqual(one.dataPath, two.dataPath);
      await cache.release(one);
      assert.equal((await readAt(two, 0, 100)).toString(), 'version two');
      await cache.release(two);
      assert.deepEqual(await readdir(cache.tmpDir), []);
    });

    it('a stale listing size: the file ends where the GET ends, and nothing hangs', BOUND, async () => {
      serveMutable(Buffer.from('short now'));
      const shorter = await cache.openMutable(MDMF, 100 * KiB);
      assert.equal((await readAt(shorter, 50 * KiB, 10)).length, 0, 'past the real end: end of file');
      assert.equal((await readAt(shorter, 0, 100 * KiB)).toString(), 'short now');
      assert.equal(shorter.size, 9);
      await cache.release(shorter);
      const longer = await cache.openMutable(MDMF, 5);
      assert.equal((await readAt(longer, 0, 100)).toString(), 'short now', 'a read up to the listed end waits for the real end');
      assert.equal(longer.size, 9);
      await cache.release(longer);
      assert.equal(cache.usedBytes, 0);
    });

    it('a gateway error fails the reads with its errno; the snapshot is not fetched again', BOUND, async () => {
      api.handle((_req, res) => {
        res.statusCode = 410;
        res.end('NoSharesError');
      });
      const file = await cache.openMutable(MDMF, 100);
      await rejectsFs(readAt(file, 0, 10), 'EIO');
      await rejectsFs(readAt(file, 0, 10), 'EIO');
      assert.equal(api.requests.length, 1);
      await cache.release(file);
      assert.deepEqual(await readdir(cache.tmpDir), []);
    });

    it('counts towards the cache size: resting contents are evicted for it, the snapshot never', BOUND, async () => {
      const c = await newCache(300 * KiB);
      const a = serve(200 * KiB);
      await readWhole(c, a);
      const content = patternedContent(200 * KiB, 9);
      serveMutable(content);
      const file = await c.openMutable(MDMF, content.length);
      assert.ok((await readAt(file, 0, content.length)).equals(content));
      await until(async () => !(await exists(dataPath(c, a))));
      assert.equal(c.usedBytes, content.length);
      await c.release(file);
      assert.equal(c.usedBytes, 0);
    });

    it('refuses an immutable cap', async () => {
      await rejectsFs(cache.openMutable(serve(10).cap, 10), 'EIO', /not a mutable/);
    });
  });

  describe('accounting', () => {
    /** Counts every walk over a Map of the cache (by any of the ways to iterate one). */
    function countWalks(map: Map<unknown, unknown>): { walks: number } {
      const count = { walks: 0 };
      for (const name of ['values', 'keys', 'entries', 'forEach', Symbol.iterator] as const) {
        const original = (map as unknown as Record<PropertyKey, (...a: unknown[]) => unknown>)[name]!;
        Object.defineProperty(map, name, {
          value: (...a: unknown[]) => {
            count.walks++;
            return original.apply(map, a);
          },
        });
      }
      return count;
    }

    /** The bytes present over every content, counted from outside: records on disk, and the open files. */
    async function sumOverFiles(c: ContentCache, open: CachedFile[]): Promise<number> {
      let total = 0;
      const openKeys = new Set<string>();
      for (const f of open) {
        total += f.ranges.bytes;
        openKeys.add(f.key);
      }
      for (const name of await readdir(c.filesDir)) {
        if (!name.endsWith('.meta') || openKeys.has(name.slice(0, -'.meta'.length))) continue;
        const meta = JSON.parse(await readFile(join(c.filesDir, name), 'utf8')) as CachedFileMeta;
        total += meta.ranges.reduce((sum, [s, e]) => sum + (e - s), 0);
      }
      return total;
    }

    it('the running total equals the sum over contents after opens, reads, evictions, adoption and releases', BOUND, async () => {
      const c = await newCache(700 * KiB);
      const [a, b, d, e] = [serve(300 * KiB), serve(250 * KiB), serve(200 * KiB), serve(150 * KiB)];
      await readWhole(c, a);
      const fb = await c.open(b.cap);
      await readChecked(fb, b, 0, 10 * KiB); // part of b
      await readChecked(fb, b, 200 * KiB, 10 * KiB); // and a far part
      assert.equal(c.usedBytes, await sumOverFiles(c, [fb]));
      const staging = c.newStagingPath();
      await writeFile(staging, e.content);
      assert.equal(await c.adopt(staging, e.cap), true);
      assert.equal(c.usedBytes, await sumOverFiles(c, [fb]));
      files.set(MDMF.text, patternedContent(100 * KiB, 3));
      const snap = await c.openMutable(MDMF, 100 * KiB);
      await readAt(snap, 0, 100 * KiB);
      const fd = await c.open(d.cap);
      await readChecked(fd, d, 0, d.content.length); // over the limit: a goes
      await until(async () => !(await exists(dataPath(c, a))));
      assert.equal(c.usedBytes, await sumOverFiles(c, [fb, fd, snap]));
      await c.release(fb);
      await c.release(snap);
      assert.equal(c.usedBytes, await sumOverFiles(c, [fd]));
      const fa = await c.open(a.cap); // evicted: opened afresh, and never read
      await c.release(fa);
      await c.release(fd);
      await readWhole(c, b); // reopened from its record, completed
      assert.equal(c.usedBytes, await sumOverFiles(c, []));
      assert.ok(c.usedBytes <= 700 * KiB);
      assert.equal((await newCache(700 * KiB)).usedBytes, c.usedBytes, 'as a new cache counts it');
    });

    it('a download growing a content does not walk the resting contents', BOUND, async () => {
      // 300 resting contents, made as a previous run would have left them.
      for (let i = 0; i < 300; i++) {
        const key = `k${String(i).padStart(25, '0')}`;
        await writeFile(join(cache.filesDir, key), 'abc');
        const meta: CachedFileMeta = { v: 1, size: 3, ranges: [[0, 3]], lastUsed: i };
        await writeFile(join(cache.filesDir, `${key}.meta`), JSON.stringify(meta));
      }
      const c = await newCache();
      assert.equal(c.usedBytes, 900);
      const resting = (c as unknown as { resting: Map<unknown, unknown> }).resting;
      const count = countWalks(resting);
      const f = serve(512 * KiB);
      behave = () => ({ chunkSize: 16 * KiB });
      const file = await c.open(f.cap);
      await readChecked(file, f, 0, f.content.length);
      assert.equal(c.usedBytes, 900 + f.content.length);
      assert.equal(count.walks, 0, 'walks over the resting contents while 32 chunks arrived');
      await c.release(file);
    });
  });

  describe('adopt', () => {
    it('renames a staging file into files/<storage index> as complete content', BOUND, async () => {
      const f = serve(250 * KiB);
      const staging = cache.newStagingPath();
      await writeFile(staging, f.content, { mode: 0o600 });
      assert.equal(await cache.adopt(staging, f.cap), true);
      assert.equal(await exists(staging), false, 'renamed, not copied');
      assert.ok((await readFile(dataPath(cache, f))).equals(f.content));
      assert.equal(await mode(dataPath(cache, f)), 0o600);
      const meta = await readMetaFile(cache, f);
      assert.equal(meta.size, f.content.length);
      assert.deepEqual(meta.ranges, [[0, f.content.length]]);
      assert.equal(await mode(`${dataPath(cache, f)}.meta`), 0o600);
      assert.equal(cache.usedBytes, f.content.length);

      const file = await cache.open(f.cap);
      assert.ok(file.complete);
      await readChecked(file, f, 0, f.content.length);
      await cache.release(file);
      // And across restarts.
      const again = await newCache();
      await readWhole(again, f);
      assert.equal(api.requests.length, 0);
    });

    it('declines while the content is open, leaving the staging file', BOUND, async () => {
      const f = serve(150 * KiB);
      const file = await cache.open(f.cap);
      const staging = cache.newStagingPath();
      await writeFile(staging, f.content, { mode: 0o600 });
      assert.equal(await cache.adopt(staging, f.cap), false);
      assert.ok(await exists(staging));
      await cache.release(file);
    });
  });
});
