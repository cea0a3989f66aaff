// Directories as the core sees them: listings (one `?t=json` request each, trusted for --cache-timeout), path
// lookup from the root cap, and the name policy (which Tahoe names a POSIX directory can show).
//
// State, all changed across awaits:
// - `listings`: a bounded LRU (count and bytes), so that a walk over a large tree cannot grow the process
//   without limit. A listing is replaced whole when fetched again, and patched by the ops that change a
//   directory (so that they need not fetch it again). Listings of directories that hold open files are
//   pinned: an evicted pinned listing moves to `pinned` until its last pin goes.
// - `fetching`: one fetch per directory at a time; patches made while it runs are replayed onto its result
//   (they may be newer than what the gateway answered).
// - `pendingLinks`: directories made in write-back mode whose link is not in the grid yet (write-back.ts adds
//   and drops them): every listing of their parent shows them, fetched or not.
// - Listing.path: the path the directory was last reached by (lookups set it), for change events: a listing
//   fetched again is compared with the one it replaces, and `watchers` hear of each entry that differs. Our
//   own changes were patched into both (patches during a fetch are replayed), so they do not show, except where
//   the patch guessed the gateway's link time (a directory we made): that entry is reported once, rightly, as
//   what stat shows of it changed. A directory renamed or linked twice is reported under the path last used
//   (best effort: see Ops.watch).
// - Offline (the gateway unreachable: client.ts): a listing that cannot be fetched is served from memory, even
//   past --cache-timeout, else from the listing store on disk (cache/listing-store.ts, where every fetched
//   listing is kept); `servingOffline` is set while that happens, so that each outage is logged once.
import { LRUCache } from 'lru-cache';
import type { ListingStore, StoredListing } from '../cache/listing-store.js';
import { FsError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Cap } from '../tahoe/caps.js';
import { isUnreachable, type ChildInfo, type TahoeClient } from '../tahoe/client.js';
import { capTextOf, entryWritable, linkTimes, sizeOf } from '../tahoe/links.js';
import { InFlight } from '../util/once.js';
import type { ChangeKind, ChangeListener } from './ops.js';

export const NAME_MAX_BYTES = 255;

/** A directory we can list: its cap, and whether we may change it. */
export interface DirRef {
  cap: string;
  writable: boolean;
}

export interface Listing {
  fetchedAt: number;
  children: Map<string, ChildInfo>;
  /** Estimated memory held, for the cache's byte bound. */
  bytes: number;
  /** The path (NFC) this directory was last reached by; undefined until a lookup went through it. */
  path?: string;
}

export interface Lookup {
  parent: DirRef;
  name: string;
  child: ChildInfo | undefined;
}

export interface DirectoriesOptions {
  client: TahoeClient;
  rootCap: Cap;
  /** How long a listing is trusted; 0 fetches again on every use. */
  cacheTimeoutMs: number;
  /** Bounds of the listing cache. */
  maxListings?: number;
  maxListingBytes?: number;
  /** Where fetched listings are kept on disk, for use while the gateway cannot be reached. */
  store?: ListingStore;
  log?: Logger;
}

const DEFAULT_MAX_LISTINGS = 4096;
const DEFAULT_MAX_LISTING_BYTES = 64 * 1024 * 1024;
/** Rough cost of one entry beyond its strings: the Map slot, the object, its metadata. */
const ENTRY_OVERHEAD_BYTES = 400;

type Patch = [name: string, child: ChildInfo | undefined];

export class Directories {
  readonly root: DirRef;
  private readonly client: TahoeClient;
  private readonly cacheTimeoutMs: number;
  private readonly listings: LRUCache<string, Listing>;
  private readonly pinned = new Map<string, Listing>();
  private readonly pins = new Map<string, number>();
  private readonly fetching = new InFlight<string, Listing>();
  private readonly patchesDuringFetch = new Map<string, Patch[]>();
  private readonly pendingLinks = new Map<string, Map<string, ChildInfo>>();
  private readonly watchers: ChangeListener[] = [];
  private readonly store: ListingStore | undefined;
  private readonly log: Logger | undefined;
  private servingOffline = false;

  constructor(opts: DirectoriesOptions) {
    this.client = opts.client;
    this.store = opts.store;
    this.log = opts.log;
    this.cacheTimeoutMs = opts.cacheTimeoutMs;
    this.root = { cap: opts.rootCap.text, writable: opts.rootCap.writable };
    this.listings = new LRUCache<string, Listing>({
      max: opts.maxListings ?? DEFAULT_MAX_LISTINGS,
      maxSize: opts.maxListingBytes ?? DEFAULT_MAX_LISTING_BYTES,
      // A listing larger than the whole bound still fits (alone): it is needed while its directory is used.
      sizeCalculation: (listing) => Math.min(Math.max(1, listing.bytes), opts.maxListingBytes ?? DEFAULT_MAX_LISTING_BYTES),
      dispose: (listing, cap, reason) => {
        if (reason === 'evict' && this.pins.has(cap)) this.pinned.set(cap, listing);
      },
    });
  }

  /** Listings held in memory (for tests and status). */
  get cachedListings(): number {
    return this.listings.size + this.pinned.size;
  }

  /** Keeps the listing of `dirCap` in memory until unpin(): a directory that holds open files. */
  pin(dirCap: string): void {
    this.pins.set(dirCap, (this.pins.get(dirCap) ?? 0) + 1);
  }

  unpin(dirCap: string): void {
    const n = (this.pins.get(dirCap) ?? 0) - 1;
    if (n > 0) {
      this.pins.set(dirCap, n);
      return;
    }
    this.pins.delete(dirCap);
    const listing = this.pinned.get(dirCap);
    this.pinned.delete(dirCap);
    if (listing && !this.listings.has(dirCap)) this.listings.set(dirCap, listing);
  }

  /**
   * The entries a directory shows: its listing's showable names, then `openNames` that it lacks (files open in
   * it and not uploaded yet: they exist for the programs that made them).
   */
  async shownEntries(path: string, openNames: string[]): Promise<{ dir: DirRef; entries: Array<[string, ChildInfo | undefined]> }> {
    const dir = await this.resolveDir(path);
    const listing = await this.listing(dir, false, path);
    const entries: Array<[string, ChildInfo | undefined]> = [];
    for (const [name, child] of listing.children) if (isShowableName(name)) entries.push([name, child]);
    for (const name of openNames) if (!listing.children.has(name)) entries.push([name, undefined]);
    return { dir, entries };
  }

  /** The directory at `path` ('/' is the root). */
  async resolveDir(path: string): Promise<DirRef> {
    if (path === '/') return this.root;
    const { child } = await this.lookup(path);
    if (!child) throw new FsError('ENOENT', `no such directory: ${path}`);
    if (child.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${path}`);
    return dirRefOf(child);
  }

  /** The parent directory of `path`, the last name, and the entry there (if any). */
  async lookup(path: string): Promise<Lookup> {
    const parts = path.split('/').filter((p) => p !== '');
    if (parts.length === 0) throw new FsError('EINVAL', 'the root has no parent');
    for (const part of parts) {
      if (Buffer.byteLength(part) > NAME_MAX_BYTES) throw new FsError('ENAMETOOLONG', `name too long: ${path}`);
    }
    let dir = this.root;
    let dirPath = '/';
    for (const part of parts.slice(0, -1)) {
      const child = (await this.listing(dir, false, dirPath)).children.get(part);
      if (!child) throw new FsError('ENOENT', `no such directory: ${part} in ${path}`);
      if (child.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${part} in ${path}`);
      dir = dirRefOf(child);
      dirPath = childPath(dirPath, part);
    }
    const name = parts[parts.length - 1]!;
    return { parent: dir, name, child: (await this.listing(dir, false, dirPath)).children.get(name) };
  }

  /**
   * The listing of `dir`, from memory while it is trusted; `fresh` asks the gateway in any case. `path` is
   * where the caller reached it (for change events), when it knows.
   */
  async listing(dir: DirRef, fresh = false, path?: string): Promise<Listing> {
    const cached = this.cached(dir.cap);
    if (cached && path !== undefined) cached.path = path;
    if (!fresh && cached && Date.now() - cached.fetchedAt < this.cacheTimeoutMs) return cached;
    if (fresh && this.fetching.has(dir.cap)) await this.fetching.get(dir.cap)!.catch(() => undefined); // began before us
    try {
      return await this.fetching.run(dir.cap, () => this.fetch(dir.cap, path));
    } catch (e) {
      // `fresh` asks for the gateway's answer (a check before a change, which needs the gateway anyway).
      if (fresh || !isUnreachable(e)) throw e;
      const kept = this.cached(dir.cap) ?? (await this.fromStore(dir.cap, path));
      if (!kept) throw e;
      if (!this.servingOffline) {
        this.servingOffline = true;
        this.log?.warn({ path, ageS: ageSeconds(kept.fetchedAt) }, 'gateway unreachable: serving directory listings kept from before (each as old as when it was last fetched)');
      }
      return kept;
    }
  }

  /** The root's listing from the store, at a start with the gateway unreachable; undefined when none is kept. */
  async startOffline(): Promise<Listing | undefined> {
    const listing = this.cached(this.root.cap) ?? (await this.fromStore(this.root.cap, '/'));
    if (listing) this.servingOffline = true;
    return listing;
  }

  /** The stored listing of a directory, taken into memory (with its own fetch time: it is fetched again when the gateway answers). */
  private async fromStore(dirCap: string, path: string | undefined): Promise<Listing | undefined> {
    const stored = await this.store?.load(dirCap);
    const already = this.cached(dirCap); // fetched or loaded while we read the disk
    if (already || !stored) return already;
    const children = new Map(stored.children);
    for (const [name, child] of this.pendingLinks.get(dirCap) ?? []) children.set(name, child);
    const listing: Listing = { fetchedAt: stored.fetchedAt, children, bytes: estimateBytes(children), path };
    this.listings.set(dirCap, listing);
    return listing;
  }

  /** Writes the listings noted for the store (at unmount). */
  async flushStore(): Promise<void> {
    await this.store?.flush();
  }

  /** Calls `listener(dirPath, name)` for each entry a listing fetched again shows changed (see the top of this file). */
  watch(listener: ChangeListener): void {
    this.watchers.push(listener);
  }

  private async fetch(dirCap: string, path: string | undefined): Promise<Listing> {
    const started = Date.now();
    this.patchesDuringFetch.set(dirCap, []);
    try {
      const { children } = await this.client.listDir(dirCap);
      for (const [name, child] of this.patchesDuringFetch.get(dirCap) ?? []) {
        if (child) children.set(name, child);
        else children.delete(name);
      }
      for (const [name, child] of this.pendingLinks.get(dirCap) ?? []) children.set(name, child);
      const before = this.cached(dirCap);
      const listing: Listing = { fetchedAt: started, children, bytes: estimateBytes(children), path: path ?? before?.path };
      this.pinned.delete(dirCap);
      this.listings.set(dirCap, listing);
      this.servingOffline = false;
      this.store?.save(dirCap, listing satisfies StoredListing);
      if (before && listing.path !== undefined && this.watchers.length > 0) this.report(listing.path, before.children, children);
      return listing;
    } finally {
      this.patchesDuringFetch.delete(dirCap);
    }
  }

  /** Applies a change we made to a directory to its listing, so that it need not be fetched again. */
  patch(dirCap: string, name: string, child: ChildInfo | undefined): void {
    this.patchesDuringFetch.get(dirCap)?.push([name, child]);
    const listing = this.cached(dirCap);
    if (!listing) return;
    if (child) listing.children.set(name, child);
    else listing.children.delete(name);
    this.store?.save(dirCap, listing); // what we changed is what a start offline after an unmount must show
  }

  /** A directory we just made: known to be empty, so its first use needs no fetch. */
  seedEmpty(dirCap: string): void {
    const listing: Listing = { fetchedAt: Date.now(), children: new Map(), bytes: 0 };
    this.listings.set(dirCap, listing);
    this.store?.save(dirCap, listing);
  }

  /** Shows `child` at `name` in every listing of `dirCap` until dropPendingLink() (its link is on its way). */
  addPendingLink(dirCap: string, name: string, child: ChildInfo): void {
    const links = this.pendingLinks.get(dirCap) ?? new Map<string, ChildInfo>();
    links.set(name, child);
    this.pendingLinks.set(dirCap, links);
    this.patch(dirCap, name, child);
  }

  dropPendingLink(dirCap: string, name: string): void {
    const links = this.pendingLinks.get(dirCap);
    links?.delete(name);
    if (links?.size === 0) this.pendingLinks.delete(dirCap);
  }

  /** Drops a listing (its directory was removed). */
  forget(dirCap: string): void {
    this.listings.delete(dirCap);
    this.pinned.delete(dirCap);
    this.store?.drop(dirCap);
  }

  private report(dirPath: string, before: Map<string, ChildInfo>, after: Map<string, ChildInfo>): void {
    const changed: Array<[string, ChangeKind]> = [];
    for (const [name, child] of after) {
      const old = before.get(name);
      if (!old || old.type !== child.type || capTextOf(old) !== capTextOf(child)) changed.push([name, 'entry']);
      else if (!sameAttributes(old, child)) changed.push([name, 'attributes']);
    }
    for (const name of before.keys()) if (!after.has(name)) changed.push([name, 'entry']);
    for (const [name, kind] of changed) {
      if (!isShowableName(name)) continue; // the kernel never saw it
      for (const watcher of this.watchers) watcher(dirPath, name, kind);
    }
  }

  private cached(dirCap: string): Listing | undefined {
    return this.listings.get(dirCap) ?? this.pinned.get(dirCap);
  }
}

/** The path of `name` in the directory at `dirPath`. */
export function childPath(dirPath: string, name: string): string {
  return dirPath === '/' ? `/${name}` : `${dirPath}/${name}`;
}

/** Whether an entry shows the same to stat as before: same kind, cap, size and mtime. */
/** Same size and mtime (of two entries holding the same cap). */
function sameAttributes(a: ChildInfo, b: ChildInfo): boolean {
  if (sizeOf(a) !== sizeOf(b)) return false;
  const ta = linkTimes(a.metadata).mtime;
  const tb = linkTimes(b.metadata).mtime;
  return ta.sec === tb.sec && ta.nsec === tb.nsec;
}

export function dirRefOf(child: ChildInfo): DirRef {
  const cap = capTextOf(child);
  if (!cap) throw new FsError('EIO', `directory entry without a cap: ${child.name}`);
  return { cap, writable: entryWritable(child) };
}

/** Names a POSIX directory cannot show are hidden (see README, "Known limits"). */
export function isShowableName(name: string): boolean {
  return (
    name !== '' &&
    name !== '.' &&
    name !== '..' &&
    !name.includes('/') &&
    !name.includes('\0') &&
    !LONE_SURROGATE.test(name) && // not valid Unicode: it would reach programs as U+FFFD, naming nothing
    Buffer.byteLength(name) <= NAME_MAX_BYTES
  );
}

const LONE_SURROGATE = /\p{Cs}/u;

function ageSeconds(fetchedAt: number): number {
  return Math.round((Date.now() - fetchedAt) / 1000);
}

function estimateBytes(children: Map<string, ChildInfo>): number {
  let bytes = 0;
  for (const [name, c] of children) bytes += ENTRY_OVERHEAD_BYTES + 2 * (name.length + (c.rwUri?.length ?? 0) + (c.roUri?.length ?? 0));
  return bytes;
}
