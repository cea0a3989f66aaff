// What the filesystem core is given at start (TahoeFsOptions) and what it reports for status (CoreStatus).
import type { DirectReadStats } from '../storage/direct-reads.js';
import type { ContentCache } from '../cache/content-cache.js';
import type { StagingJournal } from '../cache/staging-journal.js';
import type { Logger } from '../log.js';
import type { Cap } from '../tahoe/caps.js';
import type { GatewayState, TahoeClient } from '../tahoe/client.js';
import type { ProcessIdentity } from './open-files.js';
import type { WriteStatus } from './sync.js';

export interface CoreStatus {
  writes: WriteStatus;
  /** `hits`: reads of grid content found in the cache; `misses`: those that waited for a download. */
  cache: { usedBytes: number; maxBytes: number; hits: number; misses: number };
  openFiles: number;
  /** Whether requests reach the gateway, as this mount saw it last (offline: served from what is kept). */
  gatewayState: GatewayState;
  /** Downloads straight from the storage servers, and why any went through the gateway. */
  directReads?: DirectReadStats;
}

export interface TahoeFsOptions {
  client: TahoeClient;
  cache: ContentCache;
  /** Records of staged writes (in the cache's staging folder), for recovery after a crash. */
  journal: StagingJournal;
  rootCap: Cap;
  /** How long a directory listing is trusted; 0 refetches on every use. */
  cacheTimeoutMs: number;
  log: Logger;
  /** This process, written into staging records. */
  owner: ProcessIdentity;
  /** Whether the process that wrote a staging record still runs (it then owns those bytes). */
  isAlive: (owner: ProcessIdentity) => Promise<boolean>;
  uid?: number;
  gid?: number;
  /** Bounds of the directory-listing cache (defaults in directories.ts). */
  maxListings?: number;
  maxListingBytes?: number;
  /** Bounds of the listings kept on disk for offline use (defaults in cache/listing-store.ts). */
  maxStoredListings?: number;
  maxStoredListingBytes?: number;
  /**
   * Keys for new directories are made ahead from the start of the mount (a write-back mount: its mkdir then
   * waits for nothing), not only from its first mkdir or in a cache that made directories before.
   */
  keysFromStart?: boolean;
  /** Write-back mode: close() returns once the bytes are on the local disk (see closing.ts). */
  writeBack?: boolean;
  /** Write-back: how long a closed file waits before its first store try (default 0; the CLI's --write-back-delay). */
  writeBackDelayMs?: number;
  /** Uploads at once. */
  transfers?: number;
  /** A file changed in place from this size on is stored as MDMF and written in place (Infinity: never). */
  mutableFrom?: number;
  /** Bound of the last try of pending stores at unmount. */
  drainMs?: number;
  /** How long a beginWrite holds off uploads without its endWrite (see open-files.ts). */
  writeHoldMs?: number;
  /**
   * A mount shared by several local users (allow_other): new entries keep their creator as owner, chown is
   * stored, stat shows both. Otherwise every entry is the mounting user's.
   */
  owners?: boolean;
  /**
   * How long a directory must be quiet before this mount's changes to it are checked against a fresh listing
   * (ledger.ts); 0: this mount is the directory's only writer, nothing is checked.
   */
  settleMs?: number;
  /** listxattr names the computed user.tahoe.* attributes too (so that `getfattr -d` shows them). */
  listCapXattrs?: boolean;
}
