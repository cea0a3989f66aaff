// The on-disk cache in <node-directory>/_cache:
//   files/<storage-index>        immutable file contents (sparse: only the ranges downloaded so far)
//   files/<storage-index>.meta   which ranges are present, size, last use (see cached-file.ts)
//   staging/                     written content waiting for its upload
//   tmp/                         snapshots of mutable files, removed when closed
// Folders 0700 and files 0600: cached plaintext is as secret as the caps. The cache is persistent (reused
// across opens, unmounts and restarts) and bounded: least recently used contents are evicted beyond the
// size limit, never one that is in use. Staging files are not cache: they are never evicted.
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fromLocalFs, FsError } from '../errors.js';
import type { Logger } from '../log.js';
import { redact, type Cap } from '../tahoe/caps.js';
import type { TahoeClient } from '../tahoe/client.js';
import { CachedFile, type CachedFileMeta } from './cached-file.js';

export const DEFAULT_CACHE_BYTES = 4 * 1024 ** 3;

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
  private readonly opening = new Map<string, Promise<CachedFile>>();
  /** Contents being moved in from the staging area; an open waits for them to be complete. */
  private readonly adopting = new Map<string, Promise<boolean>>();
  private evicting = false;
  private evictAgain = false;

  constructor(
    readonly root: string,
    private readonly client: TahoeClient,
    private readonly log: Logger,
    readonly maxBytes: number = DEFAULT_CACHE_BYTES,
  ) {
    this.filesDir = join(root, 'files');
    this.tmpDir = join(root, 'tmp');
    this.stagingDir = join(root, 'staging');
  }

  async init(): Promise<void> {
    for (const dir of [dirname(this.root), this.root, this.filesDir, this.tmpDir, this.stagingDir]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await chmod(dir, 0o700);
    }
    for (const name of await readdir(this.tmpDir)) await rm(join(this.tmpDir, name), { force: true });
    await this.scan();
    await this.evict();
  }

  /** Bytes of file content held (present ranges of every cached file). */
  get usedBytes(): number {
    let total = 0;
    for (const r of this.resting.values()) total += r.bytes;
    for (const f of this.live.values()) total += f.ranges.bytes;
    return total;
  }

  /** The cached content of an immutable (CHK) file, opened for reading; pair with release(). */
  async open(cap: Cap): Promise<CachedFile> {
    const key = cap.storageIndex;
    const size = cap.size;
    if (!cap.immutable || !key || size === undefined) throw new FsError('EIO', `not a cacheable immutable cap: ${redact(cap.text)}`);
    await this.adopting.get(key);
    let file = this.live.get(key);
    if (!file) {
      let pending = this.opening.get(key);
      if (!pending) {
        // Out of `resting` before the first await, so that an eviction running meanwhile leaves it alone.
        this.resting.delete(key);
        pending = this.readMeta(key, size)
          .then((meta) => {
            const f = new CachedFile(key, cap.text, size, join(this.filesDir, key), join(this.filesDir, `${key}.meta`), meta, this.client, this.log, () =>
              this.scheduleEviction(),
            );
            this.live.set(key, f);
            return f;
          })
          .finally(() => this.opening.delete(key));
        this.opening.set(key, pending);
      }
      file = await pending;
    }
    file.refs++;
    file.lastUsed = Date.now();
    return file;
  }

  async release(file: CachedFile): Promise<void> {
    file.refs--;
    if (file.refs > 0) return;
    await file.idle();
    if (file.refs > 0 || this.live.get(file.key) !== file) return; // reopened meanwhile
    this.live.delete(file.key);
    if (file.ranges.bytes === 0) {
      await file.remove(); // opened and never read: nothing worth a record
      return;
    }
    await file.close();
    this.resting.set(file.key, { bytes: file.ranges.bytes, lastUsed: file.lastUsed });
    await this.evict();
  }

  /**
   * Takes a file we just uploaded into the cache as that cap's complete content, by renaming its staging
   * file (no copy): reading back what we wrote costs no download.
   */
  async adopt(stagingPath: string, cap: Cap): Promise<boolean> {
    const key = cap.storageIndex;
    if (!key || cap.size === undefined || this.live.has(key) || this.opening.has(key) || this.adopting.has(key)) return false;
    const done = this.adoptAs(key, stagingPath, cap.size).finally(() => this.adopting.delete(key));
    this.adopting.set(key, done);
    return done;
  }

  /** Data first, then its record (an open() meanwhile waits for both: see `adopting`). */
  private async adoptAs(key: string, stagingPath: string, size: number): Promise<boolean> {
    try {
      await rename(stagingPath, join(this.filesDir, key));
      const meta: CachedFileMeta = { v: 1, size, ranges: size > 0 ? [[0, size]] : [], lastUsed: Date.now() };
      await writeFile(join(this.filesDir, `${key}.meta`), JSON.stringify(meta), { mode: 0o600 });
      this.resting.set(key, { bytes: size, lastUsed: meta.lastUsed });
      await this.evict();
      return true;
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'could not keep an uploaded file in the cache');
      return false;
    }
  }


  /** Downloads the current content of a mutable file into a temporary file that the caller owns and removes. */
  async mutableSnapshot(cap: Cap): Promise<string> {
    const path = join(this.tmpDir, `mutable-${randomBytes(8).toString('hex')}`);
    try {
      const body = await this.client.download(cap.text);
      await pipeline(body, createWriteStream(path, { mode: 0o600 }));
    } catch (e) {
      await rm(path, { force: true });
      if (e instanceof FsError) throw e;
      const local = (e as NodeJS.ErrnoException).syscall !== undefined;
      throw local ? fromLocalFs(e, 'write snapshot') : new FsError('EIO', `read ${redact(cap.text)}: ${(e as Error).message}`, { cause: e });
    }
    return path;
  }

  /** A fresh path in the staging folder for a file's written content. */
  newStagingPath(): string {
    return join(this.stagingDir, `${Date.now()}-${randomBytes(6).toString('hex')}`);
  }

  async shutdown(): Promise<void> {
    for (const file of this.live.values()) await file.close();
    this.live.clear();
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
      if (name.endsWith('.tmp')) {
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
        this.resting.set(key, { bytes, lastUsed: meta.lastUsed });
      } catch {
        await rm(join(this.filesDir, key), { force: true });
        await rm(join(this.filesDir, `${key}.meta`), { force: true });
      }
    }
  }

  private scheduleEviction(): void {
    if (this.usedBytes > this.maxBytes) void this.evict();
  }

  /** Removes least recently used contents that are not in use until the cache fits its limit. */
  private async evict(): Promise<void> {
    if (this.evicting) {
      this.evictAgain = true; // the running pass started before this content came to rest: look again
      return;
    }
    this.evicting = true;
    try {
      do {
        this.evictAgain = false;
        await this.evictOnce();
      } while (this.evictAgain);
    } finally {
      this.evicting = false;
    }
  }

  private async evictOnce(): Promise<void> {
    {
      let used = this.usedBytes;
      if (used <= this.maxBytes) return;
      const candidates = [...this.resting.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed);
      for (const [key, info] of candidates) {
        if (used <= this.maxBytes) break;
        // Opened (or replaced) since the snapshot: no longer a candidate.
        if (this.live.has(key) || this.resting.get(key) !== info) continue;
        this.resting.delete(key);
        await rm(join(this.filesDir, `${key}.meta`), { force: true });
        await rm(join(this.filesDir, key), { force: true });
        used -= info.bytes;
        this.log.debug({ key, bytes: info.bytes }, 'evicted');
      }
      if (used > this.maxBytes) this.log.debug({ used, limit: this.maxBytes }, 'cache over its limit: the rest is in use');
    }
  }
}
