// The on-disk cache in <node-directory>/_cache:
//   files/<storage-index>        immutable file contents (sparse: only the ranges downloaded so far)
//   files/<storage-index>.meta   which ranges are present, size, last use (see cached-file.ts)
//   files/<storage-index>.<v>    one version of a mutable file whose link names it (links.ts mutableStamp;
//                                <v> a hash of the stamp), kept and read as immutable content is; the
//                                versions it replaces are dropped when it is adopted or first opened
//   staging/                     written content waiting for its upload
//   tmp/                         snapshots of mutable files no link of ours names a version of (one per
//                                open), removed at release
// Folders 0700 and files 0600: cached plaintext is as secret as the caps. The cache is persistent (reused
// across opens, unmounts and restarts) and bounded: least recently used contents are evicted beyond the
// size limit, or while its filesystem has less free space than the minimum, never one that is in use.
// Snapshots count towards both while they live. Staging files are not cache: they are never evicted.
//
// State: `live`, `resting`, `snapshots`, `opening`, `adopting` and the running total `used` change across
// awaits; only this class changes them, each through the helpers below that keep `used` equal to the bytes
// present in them all. One eviction pass runs at a time (`evictor`); the requests for it (`roomWanted`,
// `freeCheckWanted`) are taken by the pass when it starts.
import { createHash, randomBytes } from 'node:crypto';
import { open as openFile, type FileHandle, chmod, copyFile, writeFile, mkdir, readdir, readFile, rename, rm, stat, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FsError } from '../errors.js';
import type { Logger } from '../log.js';
import { redact, type Cap } from '../tahoe/caps.js';
import type { ContentSource } from '../storage/direct-reads.js';
import { replaceFile, TMP_SUFFIX } from '../util/durable-file.js';
import { Coalesced, InFlight } from '../util/once.js';
import { CachedFile, type CachedFileMeta } from './cached-file.js';
import { RangeSet } from './range-set.js';

export const DEFAULT_CACHE_BYTES = 4 * 1024 ** 3;
export const DEFAULT_MIN_FREE_BYTES = 1024 ** 3;

export interface ContentCacheOptions {
  /** Most bytes of content to keep (default DEFAULT_CACHE_BYTES). */
  maxBytes?: number;
  /** Free space to leave on the cache's filesystem (default DEFAULT_MIN_FREE_BYTES; 0: no minimum). */
  minFreeBytes?: number;
}

/** What the cache knows of a content that is not open: enough to account for it and to evict it. */
interface Resting {
  bytes: number;
  lastUsed: number;
}

export class ContentCache {
  readonly filesDir: string;
  readonly tmpDir: string;
  readonly stagingDir: string;
  /** Contents in use, by storage index: one CachedFile per content, shared by every open of it. */
  private readonly live = new Map<string, CachedFile>();
  /** Contents on disk and not in use. */
  private readonly resting = new Map<string, Resting>();
  /** Contents being opened (their record is being read): not evictable, and opened once. */
  private readonly opening = new InFlight<string, CachedFile>();
  /** Contents being moved in from the staging area; an open waits for them to be complete. */
  private readonly adopting = new InFlight<string, boolean>();
  /** Snapshots of mutable files, each its own (never shared): in use until released. */
  private readonly snapshots = new Set<CachedFile>();
  /** Bytes present in `resting`, `live` and `snapshots`: kept as they change, never recounted. */
  private used = 0;
  readonly maxBytes: number;
  readonly minFreeBytes: number;
  /** Content growth between two looks at the free space. */
  private readonly freeCheckEvery: number;
  private grownSinceFreeCheck = 0;
  /** Requests for the next eviction pass: free space wanted by makeRoom(), and a look at the free space. */
  private roomWanted = 0;
  private freeCheckWanted = false;
  /** Contents evicted so far (makeRoom() tells from it whether it freed anything). */
  private evictions = 0;
  private lowSpaceReported = false;
  private readonly evictor = new Coalesced(() => this.evictPass());

  constructor(
    readonly root: string,
    readonly source: ContentSource,
    private readonly log: Logger,
    options: ContentCacheOptions = {},
  ) {
    this.filesDir = join(root, 'files');
    this.tmpDir = join(root, 'tmp');
    this.stagingDir = join(root, 'staging');
    this.maxBytes = options.maxBytes ?? DEFAULT_CACHE_BYTES;
    this.minFreeBytes = options.minFreeBytes ?? DEFAULT_MIN_FREE_BYTES;
    // Often enough that growth cannot eat much of the margin between two looks; never once per chunk.
    this.freeCheckEvery = Math.min(16 * 1024 ** 2, Math.max(256 * 1024, Math.floor(this.minFreeBytes / 8)));
  }

  async init(): Promise<void> {
    for (const dir of [dirname(this.root), this.root, this.filesDir, this.tmpDir, this.stagingDir]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await chmod(dir, 0o700);
    }
    for (const name of await readdir(this.tmpDir)) await rm(join(this.tmpDir, name), { force: true });
    await this.scan();
    this.freeCheckWanted = true;
    await this.evict();
  }

  /** Bytes of file content held (present ranges of every cached file and snapshot). */
  get usedBytes(): number {
    return this.used;
  }

  /** The cached content of an immutable (CHK) file, opened for reading; pair with release(). */
  async open(cap: Cap): Promise<CachedFile> {
    const key = cap.storageIndex;
    const size = cap.size;
    if (!cap.immutable || !key || size === undefined) throw new FsError('EIO', `not a cacheable immutable cap: ${redact(cap.text)}`);
    return this.openKeyed(key, cap, size);
  }

  /**
   * The cached content of one version of a mutable file (its link's stamp; see the top of this file), opened
   * for reading; pair with release(). Without a stamp, a snapshot of whatever version the gateway has now.
   */
  async openMutable(cap: Cap, size: number, stamp?: string): Promise<CachedFile> {
    if (stamp === undefined || !cap.storageIndex) return this.openSnapshot(cap, size);
    if (cap.immutable) throw new FsError('EIO', `not a mutable file cap: ${redact(cap.text)}`);
    const key = versionKey(cap.storageIndex, stamp);
    await this.dropOtherVersions(cap.storageIndex, key);
    return this.openKeyed(key, cap, size);
  }

  private async openKeyed(key: string, cap: Cap, size: number): Promise<CachedFile> {
    await this.adopting.get(key);
    const file =
      this.live.get(key) ??
      (await this.opening.run(key, () => {
        // Out of `resting` before the first await, so that an eviction running meanwhile leaves it alone.
        this.dropResting(key);
        return this.readMeta(key, size).then((meta) => {
          const f: CachedFile = new CachedFile(key, cap.text, size, join(this.filesDir, key), join(this.filesDir, `${key}.meta`), meta, this.source, this.log, (bytes) => {
            if (this.live.get(key) === f) this.grew(bytes);
          });
          this.live.set(key, f);
          this.used += f.ranges.bytes;
          return f;
        });
      }));
    file.refs++;
    file.lastUsed = Date.now();
    return file;
  }

  /**
   * A snapshot of the current version of a mutable file, opened for reading; pair with release(). `size` is
   * the listing's: reads are answered as the one GET of the whole file brings their bytes, and the file ends
   * where that GET ends.
   */
  private async openSnapshot(cap: Cap, size: number): Promise<CachedFile> {
    if (cap.immutable) throw new FsError('EIO', `not a mutable file cap: ${redact(cap.text)}`);
    const id = `mutable-${randomBytes(8).toString('hex')}`;
    const file: CachedFile = new CachedFile(id, cap.text, size, join(this.tmpDir, id), undefined, undefined, this.source, this.log, (bytes) => {
      if (this.snapshots.has(file)) this.grew(bytes);
    });
    this.snapshots.add(file);
    file.refs = 1;
    try {
      await file.startSnapshot();
    } catch (e) {
      await this.release(file);
      throw e;
    }
    return file;
  }

  async release(file: CachedFile): Promise<void> {
    file.refs--;
    if (file.refs > 0) return;
    if (this.snapshots.delete(file)) {
      this.used -= file.ranges.bytes;
      await file.remove();
      return;
    }
    await file.idle();
    if (file.refs > 0 || this.live.get(file.key) !== file) return; // reopened meanwhile
    this.live.delete(file.key);
    this.used -= file.ranges.bytes;
    if (file.ranges.bytes === 0) {
      await file.remove(); // opened and never read: nothing worth a record
      return;
    }
    await file.close();
    if (this.live.has(file.key) || this.opening.has(file.key)) return; // reopened while its record was written
    this.setResting(file.key, { bytes: file.ranges.bytes, lastUsed: file.lastUsed });
    await this.evict();
  }

  /**
   * Evicts least recently used contents not in use until the cache's filesystem has at least `bytes` (and
   * the minimum free space) available: for a write that failed with ENOSPC, before it tries again. Returns
   * whether anything was evicted.
   */
  async makeRoom(bytes: number): Promise<boolean> {
    const before = this.evictions;
    this.roomWanted = Math.max(this.roomWanted, bytes);
    await this.evict();
    return this.evictions > before;
  }

  /**
   * Takes a file we just uploaded into the cache as that cap's complete content, by renaming its staging
   * file (no copy): reading back what we wrote costs no download.
   */
  async adopt(stagingPath: string, cap: Cap): Promise<boolean> {
    const key = cap.storageIndex;
    if (!key || cap.size === undefined || this.live.has(key) || this.opening.has(key) || this.adopting.has(key)) return false;
    const size = cap.size;
    return this.adopting.run(key, () => this.adoptAs(key, stagingPath, size));
  }

  /**
   * Takes what we just stored into a mutable file as the cached content of the version its link now names
   * (`stamp`), as adopt() does; the versions it replaces go.
   */
  async adoptVersion(stagingPath: string, cap: Cap, size: number, stamp: string): Promise<boolean> {
    const si = cap.storageIndex;
    if (!si || cap.immutable) return false;
    const key = versionKey(si, stamp);
    if (this.live.has(key) || this.opening.has(key) || this.adopting.has(key)) return false;
    return this.adopting.run(key, async () => {
      await this.dropOtherVersions(si, key);
      return this.adoptAs(key, stagingPath, size);
    });
  }

  /**
   * After a store of only the changed ranges of a mutable file: its cached base content `base` (opened by the
   * caller, whose reference this takes), with the changes `apply` writes into its data file and its present
   * ranges, becomes the version the link now names (`stamp`). A base version of this file that nobody else has
   * open is taken over; any other base (the immutable file it was before, or a version still read) is copied.
   * Resolves false when it did not happen (the next open downloads).
   */
  advanceVersion(base: CachedFile, cap: Cap, size: number, stamp: string, apply: (data: FileHandle, present: RangeSet) => Promise<void>): Promise<boolean> {
    const si = cap.storageIndex;
    if (!si || cap.immutable || base.snapshot) return this.release(base).then(() => false);
    const key = versionKey(si, stamp);
    if (key === base.key || this.live.has(key) || this.opening.has(key) || this.adopting.has(key)) return this.release(base).then(() => false);
    const take = base.refs === 1 && this.live.get(base.key) === base && base.key.startsWith(`${si}.`);
    if (take) {
      // Out of `live` at once: an open of the old version meanwhile starts afresh, one of the new one waits.
      this.live.delete(base.key);
      base.refs = 0;
      this.used -= base.ranges.bytes;
    }
    const present = new RangeSet(base.ranges.toJSON());
    const newData = join(this.filesDir, key);
    // An open of the old version meanwhile waits, then finds it gone (never the new bytes under the old key).
    const taken = take
      ? this.adopting.run(base.key, async () => {
          await base.close();
          await rm(join(this.filesDir, `${base.key}.meta`), { force: true });
          await rename(base.dataPath, newData).catch((e: unknown) => emptyIfNeverRead(e, newData));
          return true;
        })
      : undefined;
    return this.adopting.run(key, async () => {
      let released = take;
      try {
        if (take) {
          await taken;
        } else {
          await copyFile(base.dataPath, newData).catch((e: unknown) => emptyIfNeverRead(e, newData));
          released = true;
          await this.release(base);
        }
        const data = await openFile(newData, 'r+');
        try {
          await apply(data, present);
          await data.datasync(); // the record never runs ahead of the data
        } finally {
          await data.close();
        }
        const meta: CachedFileMeta = { v: 1, size, ranges: present.toJSON(), lastUsed: Date.now() };
        await replaceFile(join(this.filesDir, `${key}.meta`), JSON.stringify(meta));
        this.setResting(key, { bytes: present.bytes, lastUsed: meta.lastUsed });
        await this.dropOtherVersions(si, key);
        this.freeCheckWanted = true;
        await this.evict();
        return true;
      } catch (e) {
        if (!released) await this.release(base).catch(() => undefined);
        await rm(newData, { force: true }).catch(() => undefined);
        this.log.warn({ err: (e as Error).message }, 'could not keep a changed file in the cache');
        return false;
      }
    });
  }

  /** Removes the cached versions of a mutable file other than `keep` that are not in use. */
  private async dropOtherVersions(storageIndex: string, keep: string): Promise<void> {
    const prefix = `${storageIndex}.`;
    for (const key of [...this.resting.keys()]) {
      if (!key.startsWith(prefix) || key === keep || this.live.has(key) || this.opening.has(key) || this.adopting.has(key)) continue;
      this.dropResting(key);
      await rm(join(this.filesDir, `${key}.meta`), { force: true });
      await rm(join(this.filesDir, key), { force: true });
    }
  }

  /** Data first, then its record (an open() meanwhile waits for both: see `adopting`). */
  private async adoptAs(key: string, stagingPath: string, size: number): Promise<boolean> {
    // An older copy of the same content (same storage index, same bytes) is replaced: out of `resting`
    // meanwhile, so that no eviction removes the new data under us; back if the new one does not come.
    const older = this.resting.get(key);
    this.dropResting(key);
    let moved = false;
    try {
      // The record never runs ahead of the data: flushed first, as persist() does.
      const fh = await openFile(stagingPath, 'r+');
      await fh.datasync().finally(() => fh.close());
      await rename(stagingPath, join(this.filesDir, key));
      moved = true;
      const meta: CachedFileMeta = { v: 1, size, ranges: size > 0 ? [[0, size]] : [], lastUsed: Date.now() };
      await replaceFile(join(this.filesDir, `${key}.meta`), JSON.stringify(meta));
      this.setResting(key, { bytes: size, lastUsed: meta.lastUsed });
      this.freeCheckWanted = true; // a large upload may have taken the disk's last free space
      await this.evict();
      return true;
    } catch (e) {
      // Data without a record would be counted nowhere and never evicted (on a full disk, for good).
      if (moved && !older) await rm(join(this.filesDir, key), { force: true }).catch(() => undefined);
      if (older && !this.resting.has(key)) this.setResting(key, older);
      this.log.warn({ err: (e as Error).message }, 'could not keep an uploaded file in the cache');
      return false;
    }
  }


  /** A fresh path in the staging folder for a file's written content. */
  newStagingPath(): string {
    return join(this.stagingDir, `${Date.now()}-${randomBytes(6).toString('hex')}`);
  }

  async shutdown(): Promise<void> {
    for (const file of this.live.values()) await file.close();
    this.live.clear();
    for (const file of this.snapshots) await file.remove();
    this.snapshots.clear();
    this.used = [...this.resting.values()].reduce((sum, r) => sum + r.bytes, 0);
    await this.evictor.idle();
  }

  /** Loads the record of what is cached for key; a record that does not match its data file is dropped. */
  private async readMeta(key: string, size: number): Promise<CachedFileMeta | undefined> {
    const metaPath = join(this.filesDir, `${key}.meta`);
    try {
      const meta = JSON.parse(await readFile(metaPath, 'utf8')) as CachedFileMeta;
      const data = await stat(join(this.filesDir, key));
      const lastEnd = meta.ranges.length > 0 ? meta.ranges[meta.ranges.length - 1]![1] : 0;
      if (meta.v === 1 && meta.size === size && Array.isArray(meta.ranges) && data.size >= lastEnd) return meta;
    } catch {
      // no record, or an unreadable one: start afresh
    }
    await rm(metaPath, { force: true });
    await rm(join(this.filesDir, key), { force: true });
    return undefined;
  }

  /** Builds the index of cached contents at startup; data without a record (or the reverse) is removed. */
  private async scan(): Promise<void> {
    const names = new Set(await readdir(this.filesDir));
    for (const name of names) {
      if (name.endsWith(TMP_SUFFIX)) {
        await rm(join(this.filesDir, name), { force: true });
        continue;
      }
      const key = name.endsWith('.meta') ? name.slice(0, -'.meta'.length) : name;
      if (!names.has(key) || !names.has(`${key}.meta`)) {
        await rm(join(this.filesDir, name), { force: true });
        continue;
      }
      if (name !== key) continue;
      try {
        const meta = JSON.parse(await readFile(join(this.filesDir, `${key}.meta`), 'utf8')) as CachedFileMeta;
        const bytes = meta.ranges.reduce((sum, [s, e]) => sum + (e - s), 0);
        this.setResting(key, { bytes, lastUsed: meta.lastUsed });
      } catch {
        await rm(join(this.filesDir, key), { force: true });
        await rm(join(this.filesDir, `${key}.meta`), { force: true });
      }
    }
  }

  private setResting(key: string, info: Resting): void {
    this.dropResting(key);
    this.resting.set(key, info);
    this.used += info.bytes;
  }

  private dropResting(key: string): void {
    const info = this.resting.get(key);
    if (!info) return;
    this.resting.delete(key);
    this.used -= info.bytes;
  }

  /** A content in use grew (once per received chunk: no walk over the contents here). */
  private grew(bytes: number): void {
    this.used += bytes;
    this.grownSinceFreeCheck += bytes;
    if (this.minFreeBytes > 0 && this.grownSinceFreeCheck >= this.freeCheckEvery) {
      this.freeCheckWanted = true;
      void this.evict();
    } else if (this.used > this.maxBytes) {
      void this.evict();
    }
  }

  /** Never rejects: a failed eviction (a file that cannot be removed) is logged, and the next pass tries again. */
  private evict(): Promise<void> {
    return this.evictor.run().catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'cache eviction failed'));
  }

  /**
   * Removes least recently used contents that are not in use until the cache fits its limit and, when asked
   * to look, its filesystem has the free space wanted. Freed space is estimated from the bytes evicted (a
   * filesystem may free blocks later); the next look corrects it.
   */
  private async evictPass(): Promise<void> {
    const room = this.roomWanted;
    const lookAtFree = this.freeCheckWanted || room > 0;
    this.roomWanted = 0;
    this.freeCheckWanted = false;
    let short = 0;
    if (lookAtFree) {
      this.grownSinceFreeCheck = 0;
      short = Math.max(room, this.minFreeBytes) - (await this.availableBytes());
    }
    if (this.used <= this.maxBytes && short <= 0) {
      this.lowSpaceReported = false;
      return;
    }
    const candidates = [...this.resting.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    for (const [key, info] of candidates) {
      if (this.used <= this.maxBytes && short <= 0) break;
      // Opened (or replaced) since the snapshot: no longer a candidate.
      if (this.live.has(key) || this.resting.get(key) !== info) continue;
      this.dropResting(key);
      await rm(join(this.filesDir, `${key}.meta`), { force: true });
      await rm(join(this.filesDir, key), { force: true });
      short -= info.bytes;
      this.evictions++;
      this.log.debug({ key, bytes: info.bytes }, 'evicted');
    }
    if (this.used > this.maxBytes) this.log.debug({ used: this.used, limit: this.maxBytes }, 'cache over its limit: the rest is in use');
    if (short > 0 && !this.lowSpaceReported) {
      this.lowSpaceReported = true;
      this.log.warn({ dir: this.root, wanted: Math.max(room, this.minFreeBytes), cached: this.used }, 'low free space on the cache\'s filesystem: everything evictable is evicted');
    } else if (short <= 0) this.lowSpaceReported = false;
  }

  /** Bytes available to us on the cache's filesystem; Infinity if it cannot be told (then only the limit counts). */
  private async availableBytes(): Promise<number> {
    try {
      const s = await statfs(this.root);
      return s.bavail * s.bsize;
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'could not read the free space of the cache\'s filesystem');
      return Infinity;
    }
  }
}

/** Where one version of a mutable file is cached: its storage index, then a hash of the link's stamp. */
function versionKey(storageIndex: string, stamp: string): string {
  return `${storageIndex}.${createHash('sha256').update(stamp).digest('hex').slice(0, 16)}`;
}

/** A base's data file that does not exist was never read: its new version starts empty. Other errors stand. */
async function emptyIfNeverRead(e: unknown, path: string): Promise<void> {
  if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  await writeFile(path, '', { mode: 0o600 });
}
