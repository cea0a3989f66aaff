// A filesystem core (TahoeFs) over the in-memory Tahoe web API, for unit tests of src/fs, with the small helpers
// those tests share (write a file, read it back, what the fake grid stores).
import { afterEach, beforeEach } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContentCache } from '../../src/cache/content-cache.js';
import { StagingJournal } from '../../src/cache/staging-journal.js';
import { TahoeFs, type ProcessIdentity } from '../../src/fs/tahoe-fs.js';
import { silentLogger } from '../../src/log.js';
import { parseCap } from '../../src/tahoe/caps.js';
import { DEFAULT_TIMEOUTS, TahoeClient, type TahoeTimeouts } from '../../src/tahoe/client.js';
import { startFakeTahoe, target, type FakeTahoe } from './fake-tahoe.js';

export const log = silentLogger();
export const MiB = 1024 * 1024;
/** Bound for waits that the code under test should end by itself: a hang fails the test instead of blocking it. */
export const BOUND_MS = 20_000;

export function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${BOUND_MS / 1000} s`)), BOUND_MS)));
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

export interface Core {
  fs: TahoeFs;
  cache: ContentCache;
  client: TahoeClient;
  cacheDir: string;
  stop(): Promise<void>;
}

export const me: ProcessIdentity = { pid: process.pid, start: 'test-self' };

export interface StartCoreOptions {
  cacheDir?: string;
  owner?: ProcessIdentity;
  journal?: (dir: string) => StagingJournal;
  maxListings?: number;
  writeBack?: boolean;
  writeBackDelayMs?: number;
  transfers?: number;
  /** Files changed in place from this size on become MDMF (default: the core's). */
  mutableFrom?: number;
  drainMs?: number;
  /** How long a listing is trusted (default 60 s; 0 refetches on every use). */
  cacheTimeoutMs?: number;
  writeHoldMs?: number;
  owners?: boolean;
  listCapXattrs?: boolean;
  /** The ledger's quiet period (default 0: no ledger; its own tests set one). */
  settleMs?: number;
  /** The client's bounds beyond the defaults here (no retries). */
  timeouts?: Partial<TahoeTimeouts>;
}

export async function startCore(fake: FakeTahoe, opts: StartCoreOptions = {}): Promise<Core> {
  const cacheDir = opts.cacheDir ?? (await mkdtemp(join(tmpdir(), 'bm-core-')));
  const client = new TahoeClient(fake.url, { ...DEFAULT_TIMEOUTS, retryDelaysMs: [], ...opts.timeouts }, log);
  const cache = new ContentCache(cacheDir, client, log, { maxBytes: 1024 * MiB, minFreeBytes: 0 });
  await cache.init();
  const journal = opts.journal?.(cache.stagingDir) ?? new StagingJournal(cache.stagingDir, log);
  const fs = new TahoeFs({
    client, cache, journal, rootCap: parseCap(fake.rootCap), cacheTimeoutMs: opts.cacheTimeoutMs ?? 60_000, log,
    owner: opts.owner ?? me,
    isAlive: async (o) => o.pid === me.pid && o.start === me.start,
    maxListings: opts.maxListings, writeBack: opts.writeBack, writeBackDelayMs: opts.writeBackDelayMs, transfers: opts.transfers, mutableFrom: opts.mutableFrom, drainMs: opts.drainMs, writeHoldMs: opts.writeHoldMs,
    owners: opts.owners, listCapXattrs: opts.listCapXattrs, settleMs: opts.settleMs ?? 0,
  });
  await fs.start();
  let stopped = false;
  return {
    fs: checkedAfterEveryStep(fs), cache, client, cacheDir,
    async stop() {
      if (stopped) return;
      stopped = true;
      await fs.shutdown();
      await client.close();
    },
  };
}

/**
 * The core, checking its invariants (OpenFiles.checkInvariants) before and after every op, and again when the
 * op's promise settles: a test of the core fails at the first step that leaves its state wrong, not later.
 */
function checkedAfterEveryStep(fs: TahoeFs): TahoeFs {
  return new Proxy(fs, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function' || prop === 'checkInvariants' || prop === 'constructor') return value;
      return (...args: unknown[]) => {
        target.checkInvariants();
        const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
        target.checkInvariants();
        if (!(result instanceof Promise)) return result;
        return result.then(
          (v: unknown) => (target.checkInvariants(), v),
          (e: unknown) => {
            target.checkInvariants();
            throw e;
          },
        );
      };
    },
  });
}

export async function writeFile(fs: TahoeFs, path: string, text: string): Promise<number> {
  const fh = await fs.create(path, 0o644, 0, 0);
  await fs.write(path, fh, Buffer.from(text), 0);
  return fh;
}

export async function readAll(fs: TahoeFs, path: string): Promise<string> {
  const fh = await fs.open(path, 0);
  try {
    const size = (await fs.getattr(path)).size;
    return (await fs.read(path, fh, size, 0)).toString();
  } finally {
    await fs.release(path, fh);
  }
}

/** What the fake grid holds under `name` in the root, as text (as another client would read it). */
export function storedText(fake: FakeTahoe, name: string): string | undefined {
  return fake.bytes(fake.entry(fake.rootCap, name)!.roUri)?.toString();
}

export const isUpload = (req: { method: string; rawUrl: string }) => req.method === 'PUT';
export const isLink = (req: { method: string; rawUrl: string }) => req.method === 'POST' && target(req as never).query.get('t') === 'set_children';


/**
 * For the calling describe: a fresh in-memory Tahoe before each test (handed to `onFake`), and start() for cores
 * over it with `defaults`; after each test every core started is stopped, its cache folder removed, and the
 * fake closed.
 */
export function coresPerTest(onFake: (fake: FakeTahoe) => void, defaults: StartCoreOptions = {}): { start(opts?: StartCoreOptions): Promise<Core> } {
  let fake: FakeTahoe;
  const cores: Core[] = [];
  beforeEach(async () => {
    fake = await startFakeTahoe({ literalUpTo: -1 });
    onFake(fake);
  });
  afterEach(async () => {
    // Every core stops before any folder goes: two cores of one test may share a cache folder (a restart), and
    // a core still running writes keys into it. A stop that fails still lets the others stop and the fake close.
    const started = cores.splice(0);
    const stops = await Promise.allSettled(started.map((c) => c.stop()));
    for (const dir of new Set(started.map((c) => c.cacheDir))) await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    await fake.close();
    const failed = stops.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
  });
  return {
    async start(opts: StartCoreOptions = {}) {
      const c = await startCore(fake, { ...defaults, ...opts });
      cores.push(c);
      return c;
    },
  };
}
