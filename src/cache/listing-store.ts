// Directory listings kept on disk, beside the content cache (`<cache folder of the root>/dirs/`), so that a
// mount can list what it listed before while the gateway cannot be reached, and can even start that way.
//
//   dirs/<sha256 of the directory cap>.json   { v: 1, fetchedAt, children: [ChildInfo...] }
//
// A listing holds its children's caps, which are secrets: the folder is 0700, the files 0600, and a file is
// named by a hash of the directory's cap, never the cap. Saves are taken off the hot path: save() only notes
// the listing, and one writer (`writer`, one pass at a time) writes what was noted a moment later, each file
// replaced atomically (a crash leaves the old listing or the new one); a failure is only logged (a listing
// not kept costs nothing until an outage). A listing whose children did not change is written again only
// once its stored fetch time is REFRESH_AGE_MS old, so a directory listed every few seconds is not rewritten
// each time: the age the store reports is at most that much older than the truth. Bounded by count and
// bytes: least recently used listings are removed beyond either (recency is kept in memory while mounted,
// and taken from the files' mtimes at start).
//
// State, owned by this class: `entries` (what is on disk, in least recently used order), `pending` (saves and
// drops not written yet, by key; null = drop) and `writing` (the batch the running pass writes). Only the
// writer pass changes the files; save(), drop() and load() change the maps synchronously.
import { createHash } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { ChildInfo } from '../tahoe/client.js';
import { replaceFile, TMP_SUFFIX } from '../util/durable-file.js';
import { Coalesced } from '../util/once.js';

export const DEFAULT_MAX_STORED_LISTINGS = 10_000;
export const DEFAULT_MAX_STORED_LISTING_BYTES = 128 * 1024 * 1024;
/** Saves wait this long for others to join them (a tree walk fetches many listings in a row). */
const SAVE_DELAY_MS = 1_000;
/** An unchanged listing's file is rewritten (for its fetch time) once it is this old. */
const REFRESH_AGE_MS = 5 * 60_000;

export interface StoredListing {
  /** When the gateway gave this listing (ms since the epoch). */
  fetchedAt: number;
  children: Map<string, ChildInfo>;
}

export interface ListingStoreOptions {
  maxListings?: number;
  maxBytes?: number;
}

interface Entry {
  bytes: number;
  /** Of the children's JSON, when written by this process: tells an unchanged listing. */
  digest?: string;
  fetchedAt?: number;
}

interface FileFormat {
  v: 1;
  fetchedAt: number;
  children: ChildInfo[];
}

export class ListingStore {
  private readonly entries = new Map<string, Entry>();
  private pending = new Map<string, StoredListing | null>();
  private writing = new Map<string, StoredListing | null>();
  private readonly writer = new Coalesced(() => this.writePass());
  private timer: NodeJS.Timeout | undefined;
  private bytes = 0;
  readonly maxListings: number;
  readonly maxBytes: number;

  constructor(
    readonly dir: string,
    private readonly log: Logger,
    options: ListingStoreOptions = {},
  ) {
    this.maxListings = Math.max(1, options.maxListings ?? DEFAULT_MAX_STORED_LISTINGS);
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_STORED_LISTING_BYTES;
  }

  /** Makes the folder (0700) and reads what it holds: names, sizes and ages, not the listings themselves. */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    const found: Array<[string, Entry, number]> = [];
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (name.endsWith(TMP_SUFFIX) || !name.endsWith('.json')) {
        await rm(path, { force: true, recursive: true });
        continue;
      }
      const info = await stat(path).catch(() => undefined);
      if (info?.isFile()) found.push([name.slice(0, -'.json'.length), { bytes: info.size }, info.mtimeMs]);
    }
    found.sort((a, b) => a[2] - b[2]);
    for (const [key, entry] of found) this.setEntry(key, entry);
    await this.evict(undefined);
  }

  /** Listings on disk and their bytes (for status and tests). */
  get stored(): { listings: number; bytes: number } {
    return { listings: this.entries.size, bytes: this.bytes };
  }

  /** Notes a listing fresh from the gateway; written a moment later (its children as they are then). */
  save(dirCap: string, listing: StoredListing): void {
    this.pending.set(keyOf(dirCap), listing);
    this.schedule();
  }

  /** Forgets a directory's listing (the directory was removed). */
  drop(dirCap: string): void {
    const key = keyOf(dirCap);
    if (!this.pending.has(key) && !this.entries.has(key) && !this.writing.has(key)) return;
    this.pending.set(key, null);
    this.schedule();
  }

  /** The stored listing of `dirCap`, if any; undefined too when it cannot be read (then it is removed). */
  async load(dirCap: string): Promise<StoredListing | undefined> {
    const key = keyOf(dirCap);
    const noted = this.pending.has(key) ? this.pending.get(key) : this.writing.get(key);
    if (noted !== undefined) return noted ?? undefined;
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.touch(key, entry);
    try {
      const data = JSON.parse(await readFile(this.pathOf(key), 'utf8')) as FileFormat;
      if (data.v !== 1 || typeof data.fetchedAt !== 'number' || !Array.isArray(data.children)) throw new Error('not a listing');
      return { fetchedAt: data.fetchedAt, children: new Map(data.children.map((c) => [c.name, c])) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // evicted meanwhile
      this.log.warn({ err: (e as Error).message }, 'a stored directory listing could not be read: removed');
      if (this.entries.get(key) === entry && !this.pending.has(key)) this.pending.set(key, null);
      this.schedule();
      return undefined;
    }
  }

  private schedule(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.writer.run().catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not keep directory listings on disk'));
    }, SAVE_DELAY_MS).unref(); // the mount keeps the process alive, not a save: shutdown flushes
  }

  /** Writes everything noted so far, and resolves once it is on disk (at unmount; tests). */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.writer.run();
  }

  private async writePass(): Promise<void> {
    this.writing = this.pending;
    this.pending = new Map();
    try {
      for (const [key, listing] of this.writing) {
        if (listing === null) await this.remove(key);
        else await this.write(key, listing);
      }
    } finally {
      this.writing = new Map();
    }
  }

  private async write(key: string, listing: StoredListing): Promise<void> {
    const children = JSON.stringify([...listing.children.values()]);
    const digest = createHash('sha256').update(children).digest('hex');
    const old = this.entries.get(key);
    if (old?.digest === digest && old.fetchedAt !== undefined && listing.fetchedAt - old.fetchedAt < REFRESH_AGE_MS) {
      this.touch(key, old);
      return;
    }
    const text = `{"v":1,"fetchedAt":${listing.fetchedAt},"children":${children}}`;
    try {
      // Not flushed: a listing lost to a power failure is only a listing to fetch again.
      await replaceFile(this.pathOf(key), text, { flush: false });
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'could not keep a directory listing on disk');
      return;
    }
    this.setEntry(key, { bytes: Buffer.byteLength(text), digest, fetchedAt: listing.fetchedAt });
    await this.evict(key);
  }

  /**
   * Removes least recently used listings beyond the bounds, never `keep` (the one just written) nor the last
   * one: a listing larger than the whole bound is kept alone (the root's, say, which a start offline needs).
   */
  private async evict(keep: string | undefined): Promise<void> {
    for (const [key] of this.entries) {
      if (this.entries.size <= 1 || (this.entries.size <= this.maxListings && this.bytes <= this.maxBytes)) break;
      if (key !== keep) await this.remove(key);
    }
  }

  private async remove(key: string): Promise<void> {
    this.dropEntry(key);
    await rm(this.pathOf(key), { force: true }).catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not remove a stored directory listing'));
  }

  private setEntry(key: string, entry: Entry): void {
    this.dropEntry(key);
    this.entries.set(key, entry);
    this.bytes += entry.bytes;
  }

  private dropEntry(key: string): void {
    const old = this.entries.get(key);
    if (!old) return;
    this.entries.delete(key);
    this.bytes -= old.bytes;
  }

  /** Most recently used now: last in the eviction order. */
  private touch(key: string, entry: Entry): void {
    this.entries.delete(key);
    this.entries.set(key, entry);
  }

  private pathOf(key: string): string {
    return join(this.dir, `${key}.json`);
  }
}

/** A file name that says nothing of the cap it stands for (a cap is a secret; its hash gives nothing away). */
function keyOf(dirCap: string): string {
  return createHash('sha256').update('blackmatch listing\0').update(dirCap).digest('hex');
}
