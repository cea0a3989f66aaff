// The core's rooms, built and joined: the one place that says which room talks to which (the facade,
// tahoe-fs.ts, only hands ops to them). Arrows run one way: closing → commits → store → link batcher;
// recovery → store and pending directories; sync asks all of them.
import { join } from 'node:path';
import { LedgerFile } from '../cache/ledger-file.js';
import { ListingStore } from '../cache/listing-store.js';
import { redact } from '../tahoe/caps.js';
import { nowTimestamp } from '../tahoe/links.js';
import { Attributes } from './attributes.js';
import { Closing } from './closing.js';
import { Commits } from './commits.js';
import type { TahoeFsOptions } from './core-options.js';
import { DirectoryUpdates } from './dir-updates.js';
import { Directories } from './directories.js';
import { DEFAULT_SETTLE_MS, Ledger, type GuardedLinks } from './ledger.js';
import { FileReads } from './file-reads.js';
import { Namespace } from './namespace.js';
import { OpenFiles } from './open-files.js';
import { PendingLinks } from './pending-links.js';
import { Recovery } from './recovery.js';
import { KeyPool, MAX_KEYS } from './key-pool.js';
import { Store } from './store.js';
import { Sync } from './sync.js';
import { ExtendedAttributes } from './xattrs.js';

export interface Rooms {
  listingStore: ListingStore;
  ledger: Ledger;
  dirs: Directories;
  files: OpenFiles;
  reads: FileReads;
  store: Store;
  pendingLinks: PendingLinks;
  keys: KeyPool;
  recovery: Recovery;
  commits: Commits;
  closing: Closing;
  syncs: Sync;
  names: Namespace;
  xattrs: ExtendedAttributes;
  attrs: Attributes;
}

/**
 * Keys for new directories kept made ahead (key-pool.ts; from when: tahoe-fs.ts start): a burst (git clone
 * makes 55 directories, each a key of 50-500 ms of a core) then takes keys instead of waiting for them. 64 keys
 * are 77 KB in the cache, made once at the lowest CPU priority and kept across mounts.
 */
const KEYS_AHEAD = MAX_KEYS;
/**
 * Directories a durable mount keeps made ahead, from its first mkdir on: each mkdir is then one directory update
 * (the link), not two. Few, since a mount that stops leaves them unlinked (Tahoe's lease expiry removes them).
 */
const DURABLE_DIRECTORIES_AHEAD = 2;

export function buildRooms(opts: TahoeFsOptions): Rooms {
  const { client, cache, journal, log, owner } = opts;
  const rootId = redact(opts.rootCap.text);
  const deferred = opts.writeBack === true;
  // Beside the content cache: one folder per root, owned by the one process that mounts it.
  const listingStore = new ListingStore(join(cache.root, 'dirs'), log, { maxListings: opts.maxStoredListings, maxBytes: opts.maxStoredListingBytes });
  const dirs = new Directories({
    client, rootCap: opts.rootCap, cacheTimeoutMs: opts.cacheTimeoutMs, maxListings: opts.maxListings, maxListingBytes: opts.maxListingBytes,
    store: listingStore, log,
  });
  const files = new OpenFiles({ cache, journal, directories: dirs, rootId, owner, writeHoldMs: opts.writeHoldMs, log });
  const ledger: Ledger = new Ledger({
    client, dirs, log, links: (): GuardedLinks => store.links, settleMs: opts.settleMs ?? DEFAULT_SETTLE_MS,
    file: new LedgerFile(join(cache.root, 'ledger.jsonl'), log),
  });
  const updates = new DirectoryUpdates(client, ledger);
  const store = new Store(client, updates, dirs, log, opts.transfers, opts.mutableFrom);
  // Kept in the cache (0600 files), across mounts; the pool grows with the bursts it meets (key-pool.ts).
  const keys = new KeyPool(KEYS_AHEAD, log, join(cache.root, 'keys'));
  const makeDirectory = () => keys.makeDirectory(client);
  // Directories made ahead, for durable mkdir to take and only link. A write-back mkdir takes a key and returns:
  // its directory is made in the background.
  const poolSize = deferred ? 0 : DURABLE_DIRECTORIES_AHEAD;
  const pendingLinks = new PendingLinks({
    client, links: store.links, directories: dirs, cache, journal, log, rootId, owner, poolSize, makeDirectory, takeKey: () => keys.take(),
    linkDelayMs: opts.writeBackDelayMs ?? 0,
  });
  const recovery = new Recovery({ client, store, files, pendingLinks, cache, journal, log, rootId, owner, isAlive: opts.isAlive });
  const commits = new Commits(store, files, log, deferred);
  const closing = new Closing(files, commits, recovery, log, deferred, opts.writeBackDelayMs ?? 0);
  const syncs = new Sync({ client, files, commits, closing, pendingLinks, store, recovery, journal, ledger });
  const names = new Namespace({ client, updates, dirs, files, commits, store, pendingLinks, deferred });
  const owners = opts.owners === true;
  const attrs = new Attributes(opts.uid ?? process.getuid?.() ?? 0, opts.gid ?? process.getgid?.() ?? 0, nowTimestamp(), owners);
  // Stores waiting for the gateway (write-back loops, the retry pass) try again as soon as it answers.
  client.onGatewayState((state) => {
    if (!state.online) return;
    closing.wakeAll();
    pendingLinks.wakeAll();
    recovery.now();
  });
  return {
    listingStore, ledger, dirs, files, reads: new FileReads(cache), store, pendingLinks, keys, recovery, commits, closing, syncs, names, attrs,
    xattrs: new ExtendedAttributes(dirs, files, names, opts.listCapXattrs === true),
  };
}
