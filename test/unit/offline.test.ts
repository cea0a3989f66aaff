// Offline reads (issue 12, part 2) without a grid: the client's notion of an unreachable gateway (when it is
// marked, failing fast, the probe that brings it back), the listing store on disk (bounds, modes, names), and
// the core serving kept listings and cached content while the gateway is gone, failing the rest with EIO,
// starting from the store, and back to normal once the gateway answers. The gateway is an in-memory Tahoe
// whose port stops listening (connections refused), as a stopped gateway's does.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile as writeText } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { ListingStore } from '../../src/cache/listing-store.js';
import { FsError } from '../../src/errors.js';
import { Directories } from '../../src/fs/directories.js';
import type { TahoeFs } from '../../src/fs/tahoe-fs.js';
import { encodeBase32 } from '../../src/tahoe/base32.js';
import { parseCap } from '../../src/tahoe/caps.js';
import { silentLogger } from '../../src/log.js';
import type { ChildInfo } from '../../src/tahoe/client.js';
import { DEFAULT_TIMEOUTS, isUnreachable, TahoeClient, type GatewayState } from '../../src/tahoe/client.js';
import { startFakeTahoe, type FakeTahoe } from '../support/fake-tahoe.js';
import { bounded, coresPerTest, readAll, storedText, writeFile } from '../support/core.js';
import { splitUrl } from '../support/fake-webapi.js';

/** A logger that keeps every line it is given, parsed (the client says when it retries and when the state changes). */
function recordingLogger(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines };
}

const retriesLogged = (lines: Array<Record<string, unknown>>) => lines.filter((l) => l.msg === 'transient gateway error: retrying').length;

/** Waits (bounded) until check() holds: for what a timer does by itself. */
async function until(what: string, check: () => boolean): Promise<void> {
  await bounded(
    (async () => {
      while (!check()) await new Promise((r) => setTimeout(r, 20));
    })(),
    what,
  );
}

async function rejectsEio(p: Promise<unknown>, message?: RegExp): Promise<FsError> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => (caught = e) !== undefined);
  assert.ok(caught instanceof FsError, `expected FsError, got ${String(caught)}`);
  assert.equal(caught.code, 'EIO', caught.message);
  if (message) assert.match(caught.message, message);
  return caught;
}

describe('client: an unreachable gateway', () => {
  async function withClient(
    retryDelaysMs: number[],
    fn: (ctx: { fake: FakeTahoe; client: TahoeClient; lines: Array<Record<string, unknown>>; states: GatewayState[] }) => Promise<void>,
    probeEveryMs = 60_000,
  ): Promise<void> {
    const fake = await startFakeTahoe();
    const { log, lines } = recordingLogger();
    const client = new TahoeClient(fake.url, { ...DEFAULT_TIMEOUTS, retryDelaysMs, probeEveryMs }, log);
    const states: GatewayState[] = [];
    client.onGatewayState((s) => states.push(s));
    try {
      await fn({ fake, client, lines, states });
    } finally {
      await client.close();
      await fake.close();
    }
  }

  it('is marked only once an idempotent request got no answer through all its retries; then requests fail at once', async () => {
    await withClient([10, 10, 10], async ({ fake, client, lines, states }) => {
      assert.equal(client.gatewayState.online, true);
      await fake.unreachable();
      const first = await rejectsEio(client.listDir(fake.rootCap), /not reachable/);
      assert.ok(isUnreachable(first));
      assert.equal(retriesLogged(lines), 3, 'the first failure had its retries');
      assert.equal(client.gatewayState.online, false);
      assert.deepEqual(states.map((s) => s.online), [false]);
      const fast = await rejectsEio(client.listDir(fake.rootCap), /gateway unreachable/);
      assert.ok(isUnreachable(fast));
      await rejectsEio(client.upload(Buffer.from('bytes'), 5), /gateway unreachable/);
      assert.equal(retriesLogged(lines), 3, 'no retries while it is marked unreachable');
    });
  });

  it('a gateway back within the retries fails nothing, and is never marked', async () => {
    await withClient([50, 200, 1_000], async ({ fake, client, lines, states }) => {
      await fake.unreachable();
      const listing = client.listDir(fake.rootCap);
      await until('the first retry', () => retriesLogged(lines) >= 1);
      await fake.reachable();
      assert.equal((await bounded(listing, 'list')).children.size, 0);
      assert.deepEqual(states, []);
      assert.equal(client.gatewayState.online, true);
    });
  });

  it('a refused request that may not be repeated, or an HTTP error from a live gateway, does not mark it', async () => {
    await withClient([1, 1, 1], async ({ fake, client, states }) => {
      await fake.unreachable();
      await rejectsEio(client.mkdir(fake.rootCap, 'd'), /not reachable/);
      assert.equal(client.gatewayState.online, true, 'one refused mkdir proves little');
      await fake.reachable();
      fake.down(503);
      await rejectsEio(client.listDir(fake.rootCap), /HTTP 503/);
      fake.down(); // a connection taken, then closed without an answer: something listens there
      await rejectsEio(client.listDir(fake.rootCap));
      assert.deepEqual(states, []);
    });
  });

  it('a request when a probe is due probes the gateway first, and goes through once it answers', async () => {
    await withClient(
      [],
      async ({ fake, client, states }) => {
        await fake.unreachable();
        await rejectsEio(client.listDir(fake.rootCap));
        await rejectsEio(client.listDir(fake.rootCap), /gateway unreachable/); // probed: still refused
        await fake.reachable();
        assert.equal((await client.listDir(fake.rootCap)).children.size, 0);
        assert.deepEqual(states.map((s) => s.online), [false, true]);
        assert.ok(fake.requests.some((r) => r.method === 'GET' && splitUrl(r.rawUrl).segments.length === 0), 'a probe of the front page');
      },
      0,
    );
  });

  it('a timer probes while nothing asks, and says when the gateway answers again', async () => {
    await withClient(
      [],
      async ({ fake, client, states }) => {
        await fake.unreachable();
        await rejectsEio(client.listDir(fake.rootCap));
        await fake.reachable();
        await until('the gateway is seen back', () => client.gatewayState.online);
        assert.deepEqual(states.map((s) => s.online), [false, true]);
        assert.ok(states[1]!.since >= states[0]!.since);
      },
      0,
    );
  });
});

const child = (name: string, cap = `URI:CHK:${randomBytes(8).toString('hex')}:x:1:1:10`): ChildInfo => ({ name, type: 'file', roUri: cap, size: 10, mutable: false, metadata: { mtime: 1 } });
const dirCap = () => `URI:DIR2:${encodeBase32(randomBytes(16))}:${encodeBase32(randomBytes(32))}`;

describe('listing store', () => {
  async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'bm-listings-'));
    try {
      await fn(join(dir, 'dirs'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('keeps listings across instances, in a 0700 folder of 0600 files named by a hash, never the cap', async () => {
    await withDir(async (dir) => {
      const store = new ListingStore(dir, silentLogger());
      await store.init();
      const cap = dirCap();
      const children = new Map([['a', child('a')], ['b b', child('b b')]]);
      store.save(cap, { fetchedAt: 12345, children });
      await store.flush();
      assert.equal((await stat(dir)).mode & 0o777, 0o700);
      const names = await readdir(dir);
      assert.equal(names.length, 1);
      assert.equal((await stat(join(dir, names[0]!))).mode & 0o777, 0o600);
      const secret = cap.split(':')[2]!;
      assert.ok(!names[0]!.includes(secret) && /^[0-9a-f]{64}\.json$/.test(names[0]!), names[0]);
      const again = new ListingStore(dir, silentLogger());
      await again.init();
      const loaded = await again.load(cap);
      assert.equal(loaded?.fetchedAt, 12345);
      assert.deepEqual([...loaded!.children.entries()], [...children.entries()]);
      assert.equal(await again.load(dirCap()), undefined);
    });
  });

  it('is bounded by count: the least recently used listing goes first', async () => {
    await withDir(async (dir) => {
      const store = new ListingStore(dir, silentLogger(), { maxListings: 3 });
      await store.init();
      const caps = [dirCap(), dirCap(), dirCap(), dirCap()];
      for (const cap of caps.slice(0, 3)) {
        store.save(cap, { fetchedAt: 1, children: new Map([['x', child('x')]]) });
        await store.flush();
      }
      assert.ok(await store.load(caps[0]!), 'used again: now the most recent');
      store.save(caps[3]!, { fetchedAt: 1, children: new Map() });
      await store.flush();
      assert.equal(store.stored.listings, 3);
      assert.equal((await readdir(dir)).length, 3);
      assert.equal(await store.load(caps[1]!), undefined, 'the least recently used is gone');
      for (const cap of [caps[0]!, caps[2]!, caps[3]!]) assert.ok(await store.load(cap));
    });
  });

  it('is bounded by bytes, and a smaller bound at start evicts down to it', async () => {
    await withDir(async (dir) => {
      const big = () => new Map(Array.from({ length: 50 }, (_, i) => [`name ${i}`, child(`name ${i}`)] as const));
      const store = new ListingStore(dir, silentLogger(), { maxBytes: 20_000 });
      await store.init();
      for (let i = 0; i < 10; i++) store.save(dirCap(), { fetchedAt: i, children: big() });
      await store.flush();
      assert.ok(store.stored.bytes <= 20_000 && store.stored.listings >= 1, JSON.stringify(store.stored));
      const files = await readdir(dir);
      assert.equal(files.length, store.stored.listings);
      const smaller = new ListingStore(dir, silentLogger(), { maxBytes: 1 });
      await smaller.init();
      assert.equal((await readdir(dir)).length, 1, 'one listing stays, alone over the bound');
    });
  });

  it('a change the mount made to a listing already written is written again', async () => {
    await withDir(async (dir) => {
      const store = new ListingStore(dir, silentLogger());
      await store.init();
      const root = dirCap();
      const client = { listDir: async () => ({ mutable: true, children: new Map([['a', child('a')]]) }) } as unknown as TahoeClient;
      const dirs = new Directories({ client, rootCap: parseCap(root), cacheTimeoutMs: 60_000, store });
      await dirs.listing(dirs.root);
      await store.flush();
      dirs.patch(root, 'b', child('b'));
      await store.flush();
      const again = new ListingStore(dir, silentLogger());
      await again.init();
      assert.deepEqual([...(await again.load(root))!.children.keys()], ['a', 'b']);
    });
  });

  it('drops a removed directory, removes what it cannot read, and sweeps leftovers at start', async () => {
    await withDir(async (dir) => {
      const store = new ListingStore(dir, silentLogger());
      await store.init();
      const [gone, broken] = [dirCap(), dirCap()];
      store.save(gone, { fetchedAt: 1, children: new Map() });
      store.save(broken, { fetchedAt: 1, children: new Map() });
      await store.flush();
      store.drop(gone);
      assert.equal(await store.load(gone), undefined, 'a drop counts at once');
      await store.flush();
      const [name] = await readdir(dir);
      await writeText(join(dir, name!), '{"v":1,');
      await writeText(join(dir, `${name}.123-abcd.tmp`), 'half');
      const again = new ListingStore(dir, silentLogger());
      await again.init();
      assert.deepEqual(await readdir(dir), [name]);
      assert.equal(await again.load(broken), undefined);
      await again.flush();
      assert.deepEqual(await readdir(dir), []);
    });
  });
});

describe('core: offline reads', () => {
  let fake: FakeTahoe;
  // Listings trusted for no time at all: every use asks the gateway, so every use while it is gone is served
  // from what was kept. Probes due at once: the test decides when the gateway is back, not a clock. Retries
  // that do not wait, as in a mount (a keep-alive connection the gateway closed as it went fails once first).
  const { start } = coresPerTest((f) => (fake = f), { cacheTimeoutMs: 0, timeouts: { retryDelaysMs: [1, 1, 1], probeEveryMs: 0 } });

  const cached = randomBytes(300_000);
  const uncached = randomBytes(200_000);

  /** A tree another client made: /docs/cached.bin (read while online) and /docs/uncached.bin (never read). */
  function makeTree(): void {
    const docs = fake.createDirectory();
    fake.link(fake.rootCap, 'docs', docs);
    fake.link(docs, 'cached.bin', fake.addFile(cached));
    fake.link(docs, 'uncached.bin', fake.addFile(uncached));
  }

  async function readBytes(fs: TahoeFs, path: string): Promise<Buffer> {
    const fh = await fs.open(path, 0);
    try {
      return await fs.read(path, fh, (await fs.getattr(path)).size, 0);
    } finally {
      await fs.release(path, fh);
    }
  }

  it('serves kept listings and cached bytes while the gateway is gone, fails the rest fast with EIO, and recovers', async () => {
    makeTree();
    const c = await start();
    const { fs } = c;
    assert.deepEqual(await fs.readdir('/docs'), ['.', '..', 'cached.bin', 'uncached.bin']);
    assert.ok((await readBytes(fs, '/docs/cached.bin')).equals(cached));
    await fake.unreachable();
    try {
      assert.deepEqual(await bounded(fs.readdir('/'), 'readdir /'), ['.', '..', 'docs']);
      assert.deepEqual((await bounded(fs.readdirplus('/docs'), 'readdirplus')).map((e) => [e.name, e.attr.size]), [['cached.bin', cached.length], ['uncached.bin', uncached.length]]);
      assert.equal((await bounded(fs.getattr('/docs/uncached.bin'), 'stat')).size, uncached.length);
      assert.ok((await bounded(readBytes(fs, '/docs/cached.bin'), 'cached read')).equals(cached));
      await rejectsEio(bounded(readBytes(fs, '/docs/uncached.bin'), 'uncached read'), /gateway unreachable|not reachable/);
      // A durable write: close() fails with EIO, and the bytes stay staged.
      const fh = await writeFile(fs, '/docs/new.txt', 'written offline');
      await rejectsEio(bounded(fs.flush('/docs/new.txt', fh), 'close'));
      await fs.release('/docs/new.txt', fh);
      await rejectsEio(bounded(fs.mkdir('/docs/sub', 0o755), 'mkdir'));
      assert.equal(c.client.gatewayState.online, false);
      fake.link(fake.rootCap, 'meanwhile.txt', fake.addFile(Buffer.from('another client, meanwhile '.repeat(5))));
    } finally {
      await fake.reachable();
    }
    // Back to normal: listings fetched again, uncached bytes downloaded, writes stored.
    assert.deepEqual(await bounded(fs.readdir('/'), 'readdir'), ['.', '..', 'docs', 'meanwhile.txt']);
    assert.ok((await bounded(readBytes(fs, '/docs/uncached.bin'), 'read')).equals(uncached));
    await bounded(fs.recover(), 'the retry pass');
    assert.equal(fake.bytes(fake.entry(fake.entry(fake.rootCap, 'docs')!.rwUri!, 'new.txt')!.roUri)?.toString(), 'written offline');
    await fs.release('/after.txt', await writeFile(fs, '/after.txt', 'written after'));
    assert.equal(storedText(fake, 'after.txt'), 'written after');
    assert.equal(c.client.gatewayState.online, true);
  });

  it('a listing never kept fails fast with EIO while the gateway is gone', async () => {
    makeTree();
    const c = await start();
    await fake.unreachable();
    try {
      await rejectsEio(bounded(c.fs.readdir('/docs'), 'readdir of a directory never listed'));
    } finally {
      await fake.reachable();
    }
  });

  it('starts offline from the listings kept by an earlier mount, and comes online when the gateway answers', async () => {
    makeTree();
    // Listings trusted here: what the mount changed is kept without a fetch after it.
    const first = await start({ cacheTimeoutMs: 60_000 });
    assert.ok((await readBytes(first.fs, '/docs/cached.bin')).equals(cached));
    await first.fs.mkdir('/docs/made', 0o755); // changes made through the mount are kept too
    await first.fs.release('/docs/made/mine.txt', await writeFile(first.fs, '/docs/made/mine.txt', 'mine'));
    await first.stop(); // unmount: the listings noted are written
    await fake.unreachable();
    let second;
    try {
      second = await bounded(start({ cacheDir: first.cacheDir }), 'start offline');
      assert.equal(second.client.gatewayState.online, false);
      assert.deepEqual(await second.fs.readdir('/docs'), ['.', '..', 'cached.bin', 'uncached.bin', 'made']);
      assert.deepEqual(await second.fs.readdir('/docs/made'), ['.', '..', 'mine.txt']);
      assert.equal(await readAll(second.fs, '/docs/made/mine.txt'), 'mine', 'what was written is cached');
      assert.ok((await readBytes(second.fs, '/docs/cached.bin')).equals(cached));
      await rejectsEio(bounded(readBytes(second.fs, '/docs/uncached.bin'), 'uncached read'));
    } finally {
      await fake.reachable();
    }
    assert.ok((await bounded(readBytes(second.fs, '/docs/uncached.bin'), 'read')).equals(uncached));
    assert.equal(second.client.gatewayState.online, true);
  });

  it('with nothing kept, a start with the gateway gone fails, saying it is not reachable', async () => {
    await fake.unreachable();
    try {
      await rejectsEio(bounded(start(), 'start'), /cannot list the root directory .*not reachable/);
    } finally {
      await fake.reachable();
    }
  });

  it('keeps listings on disk only under hashed names in its cache folder', async () => {
    makeTree();
    const c = await start();
    await c.fs.readdir('/docs');
    await c.stop();
    const dir = join(c.cacheDir, 'dirs');
    const names = await readdir(dir);
    assert.equal(names.length, 2, 'the root and /docs');
    for (const name of names) {
      assert.match(name, /^[0-9a-f]{64}\.json$/);
      assert.equal((await stat(join(dir, name))).mode & 0o777, 0o600);
    }
    assert.ok((await readFile(join(dir, names[0]!), 'utf8')).includes('"children"'));
  });

  it('write-back: close() succeeds while the gateway is gone; the store lands once it answers, with no sync asked', async () => {
    const c = await start({ writeBack: true });
    await fake.unreachable();
    try {
      await bounded(c.fs.release('/later.txt', await writeFile(c.fs, '/later.txt', 'stored later')), 'close');
      assert.equal(await readAll(c.fs, '/later.txt'), 'stored later');
    } finally {
      await fake.reachable();
    }
    // The store loop waits 5 s (then more) between tries; the gateway answering again wakes it.
    await until('stored once the gateway answers', () => fake.entry(fake.rootCap, 'later.txt') !== undefined);
    assert.equal(storedText(fake, 'later.txt'), 'stored later');
  });

  it('write-back: sync right after the gateway is back stores what waited for its retry, and never reports it failed', async () => {
    // No probe is due for a minute: only sync itself can find out that the gateway is back.
    const c = await start({ writeBack: true, timeouts: { retryDelaysMs: [1, 1, 1], probeEveryMs: 60_000 } });
    await fake.unreachable();
    try {
      await bounded(c.fs.release('/patient.txt', await writeFile(c.fs, '/patient.txt', 'stored once back')), 'close');
      await bounded(c.fs.readdir('/'), 'readdir served offline'); // a listing through all its retries marks it unreachable
      assert.equal(c.client.gatewayState.online, false);
      await bounded(
        (async () => {
          while ((await c.fs.status()).writes.failed.length === 0) await new Promise((r) => setTimeout(r, 20));
        })(),
        'the background store fails once',
      );
    } finally {
      await fake.reachable();
    }
    const report = await bounded(c.fs.sync(), 'sync');
    assert.deepEqual(report.failed, []);
    assert.equal(storedText(fake, 'patient.txt'), 'stored once back');
    assert.equal(c.client.gatewayState.online, true);
  });

  it('sync while the gateway is still gone reports what is not stored, at once', async () => {
    const c = await start({ writeBack: true, timeouts: { retryDelaysMs: [1, 1, 1], probeEveryMs: 60_000 } });
    await fake.unreachable();
    try {
      await bounded(c.fs.release('/waiting.txt', await writeFile(c.fs, '/waiting.txt', 'not yet')), 'close');
      const report = await bounded(c.fs.sync(), 'sync');
      assert.deepEqual(report.failed.map((f) => f.path), ['/waiting.txt']);
    } finally {
      await fake.reachable();
    }
  });
});
