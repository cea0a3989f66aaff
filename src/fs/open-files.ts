// Files open through the mount: the handle table, one OpenFile per path shared by all its handles (so two
// handles see each other's writes, as POSIX expects), where a read is served from (the staging file, a
// literal cap, the content cache), and the staging file that takes writes together with its record.
//
// State and who may change it across an await (one event loop; nothing changes between awaits):
// - `byPath`, `byHandle`: open/create/release (the facade, through this class) and rename/unlink
//   (namespace.ts, through move() and orphan()).
// - OpenFile.parent/name/path/unlinked: only namespace.ts, holding the file's `linkLock`; an upload reads
//   them under the same lock right before linking (write-back.ts).
// - OpenFile.size/dirty/generation/mtime and the staging file's bytes: writes here; write-back.ts clears
//   `dirty` only when the generation it uploaded is still the latest. Writes and uploads take turns on the
//   staging file: a write waits while an upload reads it (`uploading`), and an upload waits for the writes in
//   progress (`writes`): our own, and those a caller makes itself between beginWrite and endWrite (split
//   mode's client writes the staging file directly). A caller's hold is bounded: it ends at endWrite, when
//   its handle is released, at unmount, or after `writeHoldMs` (a client that stopped or died); a hold that
//   ends without its endWrite marks the file dirty, so that what is uploaded is what the staging file holds
//   (a late endWrite still counts: its bytes are uploaded again).
// - OpenFile.child/base: write-back.ts after a store, namespace.ts after utimens (and base after a rename
//   over another entry, which the file's store then replaces).
import { copyFile, open, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import type { CachedFile } from '../cache/cached-file.js';
import type { ContentCache } from '../cache/content-cache.js';
import type { ProcessIdentity, StagedRecord, StagingJournal } from '../cache/staging-journal.js';
import { fromLocalFs, FsError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Cap } from '../tahoe/caps.js';
import type { ChildInfo } from '../tahoe/client.js';
import { ownMetadataOf, type OwnMetadata } from '../tahoe/posix.js';
import { capOf, heldCap, nowTimestamp, nsString, sizeOf, tryParseCap, type Timestamp } from '../tahoe/links.js';
import { readFully, writeFully } from '../util/file-io.js';
import { Mutex, SharedPromise } from '../util/once.js';
import type { DirRef, Directories } from './directories.js';
import type { ReadSource } from './ops.js';

const { O_RDWR, O_CREAT } = constants;

/**
 * How long a caller's write may hold off uploads without its endWrite: far beyond a local write of one FUSE
 * request, short enough that a stopped client delays a store by little.
 */
export const DEFAULT_WRITE_HOLD_MS = 30_000;

/** A write in progress into a staging file; `fh` set for a caller's own (beginWrite to endWrite). */
interface WriteHold {
  fh: number | undefined;
  position: number;
  timer: NodeJS.Timeout | undefined;
}

export type { ProcessIdentity };

export interface StagingFile {
  path: string;
  handle: FileHandle;
}

/** State shared by every handle open on one path. */
export class OpenFile {
  /** Held while the file is linked (write-back.ts) and while it is renamed or unlinked (namespace.ts). */
  readonly linkLock = new Mutex();
  parent: DirRef;
  name: string;
  path: string;
  /** The link as last seen or written; undefined for a file created and not yet uploaded. */
  child: ChildInfo | undefined;
  /** Local copy of the written content, once anything was written. */
  staging: StagingFile | undefined;
  readonly stagingReady = new SharedPromise<StagingFile>();
  /** The content to read while nothing was written: cached (immutable) or a snapshot (mutable). */
  readonly content = new SharedPromise<CachedFile>();
  size: number;
  /** Bumped by every change; an upload clears `dirty` only if no change came in meanwhile. */
  generation = 0;
  dirty = false;
  /** Whether the record on disk says "dirty": a change must make it so before it returns. */
  recordedDirty = false;
  unlinked = false;
  handles = 0;
  /** Set once its last close dropped the local state (two closes may race: see TahoeFs.closeFile). */
  closed = false;
  /** Time set by utimens or by the last write, stored with the link at upload. */
  mtime: Timestamp | undefined;
  /** Whether `mtime` was set by utimens (then it is kept in the record for recovery). */
  mtimeExplicit = false;
  /** Mode, owner, kind and xattrs (posix.ts) as the link is to carry them: set by create, chmod, setxattr... */
  own: OwnMetadata;
  uploading: Promise<void> | undefined;
  /** Why the staged bytes are kept and not stored (the entry changed meanwhile, write-back mode): final. */
  conflict: string | undefined;
  /** The latest generation stored in the grid (write-back.ts). */
  storedGeneration = -1;
  /** The generation last flushed to the local disk with a durable record (write-back close). */
  flushedGeneration = -1;
  /** The cap linked when the staged bytes were last in step with the grid: recovery checks it is still there. */
  base: string | null = null;
  /** Record writes for this file, one after the other. */
  recordChain: Promise<void> = Promise.resolve();
  /** Writes into the staging file in progress: an upload waits for them (see the top of this file). */
  readonly writes = new Set<WriteHold>();
  private writesEnded: Array<() => void> = [];

  constructor(parent: DirRef, name: string, path: string, child: ChildInfo | undefined) {
    this.parent = parent;
    this.name = name;
    this.path = path;
    this.child = child;
    this.size = child ? sizeOf(child) : 0;
    this.own = child ? ownMetadataOf(child.metadata) : {};
  }

  /** Resolves once no write into the staging file is in progress. */
  writesDone(): Promise<void> {
    if (this.writes.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.writesEnded.push(resolve));
  }

  /** Ends a write's hold; false if it had ended already. */
  endHold(hold: WriteHold): boolean {
    if (!this.writes.delete(hold)) return false;
    clearTimeout(hold.timer);
    if (this.writes.size === 0) for (const wake of this.writesEnded.splice(0)) wake();
    return true;
  }
}

interface Handle {
  file: OpenFile;
  writable: boolean;
}

export interface OpenFilesOptions {
  cache: ContentCache;
  journal: StagingJournal;
  directories: Directories;
  /** Fingerprint of the mounted root, written into records. */
  rootId: string;
  owner: ProcessIdentity;
  log: Logger;
  /** Bound of a caller's hold (default DEFAULT_WRITE_HOLD_MS). */
  writeHoldMs?: number;
}

export class OpenFiles {
  private readonly byPath = new Map<string, OpenFile>();
  private readonly byHandle = new Map<number, Handle>();
  private nextHandle = 1;
  /** Staging files some open file still uses (open or closing): recovery leaves them alone. */
  private readonly activeStaging = new Set<string>();

  constructor(private readonly opts: OpenFilesOptions) {}

  get(path: string): OpenFile | undefined {
    return this.byPath.get(path);
  }

  /** The open file at `path`, made from its entry if nobody has it open yet. */
  getOrAdd(path: string, parent: DirRef, name: string, child: ChildInfo | undefined): OpenFile {
    let file = this.byPath.get(path);
    if (!file) {
      file = new OpenFile(parent, name, path, child);
      this.byPath.set(path, file);
      this.opts.directories.pin(parent.cap);
    }
    return file;
  }

  all(): OpenFile[] {
    return [...new Set(this.byPath.values())];
  }

  isActiveStaging(stagingPath: string): boolean {
    return this.activeStaging.has(stagingPath);
  }

  /** Names of files open directly in `dirPath` and not unlinked (created files not yet uploaded among them). */
  namesIn(dirPath: string): string[] {
    const prefix = dirPath === '/' ? '/' : dirPath + '/';
    const names: string[] = [];
    for (const [path, file] of this.byPath) {
      const name = path.slice(prefix.length);
      if (path.startsWith(prefix) && !name.includes('/') && !file.unlinked) names.push(name);
    }
    return names;
  }

  hasOpenUnder(dirPath: string): boolean {
    const prefix = dirPath + '/';
    for (const [path, file] of this.byPath) if (path.startsWith(prefix) && !file.unlinked) return true;
    return false;
  }

  // ---- handles ----------------------------------------------------------------------------------------------

  /** A new handle number (never 0: the FUSE binding reads 0 as "no handle"). */
  addHandle(file: OpenFile, writable: boolean): number {
    let fh = this.nextHandle;
    while (fh === 0 || this.byHandle.has(fh)) fh = (fh + 1) >>> 0;
    this.nextHandle = (fh + 1) >>> 0;
    this.byHandle.set(fh, { file, writable });
    file.handles++;
    return fh;
  }

  handle(fh: number): Handle {
    const handle = this.byHandle.get(fh);
    if (!handle) throw new FsError('EBADF', `unknown file handle ${fh}`);
    return handle;
  }

  findHandle(fh: number): Handle | undefined {
    return this.byHandle.get(fh);
  }

  /** Drops a handle (and any hold a caller's write left on it); returns its file when that was the file's last handle. */
  removeHandle(fh: number): OpenFile | undefined {
    const handle = this.byHandle.get(fh);
    if (!handle) return undefined;
    this.byHandle.delete(fh);
    for (const hold of handle.file.writes) if (hold.fh === fh) this.abandon(handle.file, hold, 'its handle was released');
    handle.file.handles--;
    return handle.file.handles === 0 ? handle.file : undefined;
  }

  /** Every handle, dropped at once (unmount), with every hold of a caller's write. */
  dropAllHandles(): void {
    for (const { file } of this.byHandle.values()) {
      file.handles--;
      for (const hold of file.writes) if (hold.fh !== undefined) this.abandon(file, hold, 'unmount');
    }
    this.byHandle.clear();
  }

  // ---- renames and unlinks (namespace.ts, holding the files' link locks) ------------------------------------

  /** Re-keys open files after a rename: the file itself, or everything under a renamed directory. */
  async move(from: string, to: string, toParent: DirRef, toName: string): Promise<void> {
    const moved: OpenFile[] = [];
    for (const [path, file] of this.byPath) {
      if (path === from) {
        this.opts.directories.unpin(file.parent.cap);
        this.opts.directories.pin(toParent.cap);
        file.parent = toParent;
        file.name = toName;
        moved.push(file);
      } else if (path.startsWith(from + '/')) {
        moved.push(file);
      }
    }
    for (const file of moved) this.byPath.delete(file.path);
    for (const file of moved) {
      file.path = to + file.path.slice(from.length);
      this.byPath.set(file.path, file);
    }
    // Where the bytes go is in the record: a crash after the rename must store them under the new name.
    for (const file of moved) if (file.staging) await this.saveRecord(file);
  }

  /** The file's name is gone (unlinked, or renamed over): its handles keep their data, which goes nowhere now. */
  async orphan(file: OpenFile): Promise<void> {
    file.unlinked = true;
    this.forget(file);
    await this.recordOrphan(file);
  }

  /** Keeps an unlinked file reachable under another path (libfuse's hidden name) until its last close. */
  rekey(file: OpenFile, path: string): void {
    if (this.byPath.get(file.path) === file) this.byPath.delete(file.path);
    file.path = path;
    this.byPath.set(path, file);
  }

  /**
   * The record must stop saying "dirty" before unlink returns, or a crash would let recovery bring the file
   * back. If it cannot be written (a full disk), the record is removed instead: bytes without a record are
   * kept and never recovered.
   */
  async recordOrphan(file: OpenFile): Promise<void> {
    const staging = file.staging;
    if (!staging) return;
    try {
      await this.saveRecord(file, true);
    } catch {
      await this.opts.journal.remove(staging.path);
    }
  }

  private forget(file: OpenFile): void {
    if (this.byPath.get(file.path) !== file) return;
    this.byPath.delete(file.path);
    this.opts.directories.unpin(file.parent.cap);
  }

  // ---- reading ----------------------------------------------------------------------------------------------

  /** Fills `target` from `position` with the file's current content; returns the bytes read. */
  async readInto(file: OpenFile, target: Buffer, position: number): Promise<number> {
    const end = Math.min(file.size, position + target.length);
    if (end <= position) return 0;
    const into = target.subarray(0, end - position);
    const staging = file.stagingReady.current;
    if (staging) return readLocal((await staging).handle, into, position);
    const cap = capOf(file.child!);
    if (cap.literalData) return cap.literalData.copy(into, 0, position, end);
    const content = await this.contentOf(file, cap);
    this.countRead(content, position, end);
    return content.readInto(into, position);
  }

  /** Reads of grid content found in the cache, and those that waited for a download (status's hit rate). */
  readonly readStats = { hits: 0, misses: 0 };

  private countRead(content: CachedFile, position: number, end: number): void {
    if (content.presentUntil(position) >= end) this.readStats.hits++;
    else this.readStats.misses++;
  }

  /**
   * Where the caller can read [position, position+length) itself (split mode's client): the staging file, or
   * the cached content once those bytes are in it (only ranges said present here are ever read there).
   */
  async readSource(file: OpenFile, position: number, length: number): Promise<ReadSource> {
    const end = Math.min(file.size, position + length);
    if (end <= position) return { file: null, length: 0 };
    const staging = file.stagingReady.current;
    if (staging) return { file: (await staging).path, length: end - position };
    const cap = capOf(file.child!);
    if (cap.literalData) return { file: null, length: end - position };
    const content = await this.contentOf(file, cap);
    this.countRead(content, position, end);
    const present = await content.ready(position, end - position);
    if (present <= 0) return { file: null, length: 0 };
    const source: ReadSource = { file: content.dataPath, length: present };
    // Cached immutable bytes never change nor leave while the file is open: the caller may keep reading them.
    if (cap.immutable && !file.stagingReady.current) Object.assign(source, { until: content.presentUntil(position), size: content.size });
    return source;
  }

  /** The cache file of immutable content that is whole on the disk and not written to; null otherwise. */
  async backingFile(file: OpenFile): Promise<string | null> {
    if (file.stagingReady.current || !file.child || file.size === 0) return null;
    const cap = capOf(file.child);
    if (!cap.immutable || cap.literalData) return null;
    const content = await this.contentOf(file, cap);
    return content.complete && !file.stagingReady.current ? content.dataPath : null;
  }

  /** The content to read while nothing was written, opened once per open file (released at close). */
  private contentOf(file: OpenFile, cap: Cap): Promise<CachedFile> {
    return file.content.get(() => (cap.immutable ? this.opts.cache.open(cap) : this.opts.cache.openMutable(cap, file.size)));
  }

  // ---- writing ----------------------------------------------------------------------------------------------

  async write(file: OpenFile, data: Buffer, position: number): Promise<void> {
    const hold: WriteHold = { fh: undefined, position, timer: undefined };
    const staging = await this.holdForWrite(file, hold);
    try {
      await this.withRoom(data.length, 'write staging file', () => writeFully(staging.handle, data, position));
      file.size = Math.max(file.size, position + data.length);
      await this.markDirty(file);
    } finally {
      file.endHold(hold);
    }
  }

  /** Before a caller writes the staging file itself: makes it, holds off uploads (bounded), returns its path. */
  async beginWrite(file: OpenFile, fh: number, position: number): Promise<string> {
    const hold: WriteHold = { fh, position, timer: undefined };
    const staging = await this.holdForWrite(file, hold);
    hold.timer = setTimeout(() => this.abandon(file, hold, `no endWrite within ${this.holdMs / 1000} s`), this.holdMs).unref();
    return staging.path;
  }

  /** After a caller's own write of `length` bytes at `position` (0: none): what write() records, then the hold ends. */
  async endWrite(file: OpenFile, fh: number, position: number, length: number): Promise<void> {
    if (!file.staging) throw new FsError('EINVAL', `endWrite without beginWrite: ${file.path}`);
    const hold = [...file.writes].find((h) => h.fh === fh && h.position === position);
    try {
      if (length > 0) file.size = Math.max(file.size, position + length);
      // Even with nothing said written: a write that failed partway may have changed the staging file.
      await this.markDirty(file);
    } finally {
      if (hold) file.endHold(hold);
    }
  }

  private get holdMs(): number {
    return this.opts.writeHoldMs ?? DEFAULT_WRITE_HOLD_MS;
  }

  /** Waits for an upload in flight, then takes a hold on the staging file (made if needed) for a write. */
  private async holdForWrite(file: OpenFile, hold: WriteHold): Promise<StagingFile> {
    for (;;) {
      const staging = await this.stagingFor(file, true);
      // An upload that began while the staging file was made goes first.
      if (file.uploading) continue;
      file.writes.add(hold);
      return staging;
    }
  }

  /**
   * A caller's hold ended without its endWrite: the staging file may hold part of its write, so the file is
   * dirty (uploaded as the staging file holds it, which is what a close then adopts into the cache).
   */
  private abandon(file: OpenFile, hold: WriteHold, why: string): void {
    if (!file.writes.has(hold)) return;
    this.opts.log.warn({ path: file.path, why }, 'a direct write ended without its endWrite: the file is stored as its staging file holds it');
    void this.markDirty(file).catch(() => undefined); // flags first, synchronously; a record that fails is written by the next change
    file.endHold(hold);
  }

  async truncate(file: OpenFile, size: number): Promise<void> {
    const staging = await this.stagingFor(file, size > 0);
    try {
      await staging.handle.truncate(size);
    } catch (e) {
      throw fromLocalFs(e, 'truncate staging file');
    }
    file.size = size;
    await this.markDirty(file);
  }

  /** utimens on a file whose content is not stored yet: the time goes with the upload (and into the record). */
  async setMtime(file: OpenFile, mtime: Timestamp): Promise<void> {
    file.mtime = mtime;
    file.mtimeExplicit = true;
    file.generation++; // an upload in flight carries the old time: the file stays dirty for the next one
    file.dirty = true;
    await this.saveRecord(file);
  }

  /** chmod, setxattr... of a file whose content is not stored yet: the change goes with the upload (and into the record). */
  async setOwn(file: OpenFile, own: OwnMetadata): Promise<void> {
    file.own = own;
    file.generation++; // as setMtime
    file.dirty = true;
    await this.saveRecord(file);
  }

  private async markDirty(file: OpenFile): Promise<void> {
    file.dirty = true;
    file.generation++;
    file.mtime = nowTimestamp();
    if (file.unlinked) return; // its last record says "nothing to store", for good
    // The record must say "dirty" once the bytes differ from what was uploaded; if it cannot, the change fails.
    // Records on their way first: one of them may say "clean" (written for an upload that just finished).
    await file.recordChain.catch(() => undefined);
    if (!file.recordedDirty) await this.saveRecord(file);
  }

  /**
   * Write-back close: the staged bytes and a record saying where they go, flushed to the local disk (once per
   * change). Rejects if they could not be (then the caller stores the file at once instead).
   */
  async flushLocally(file: OpenFile): Promise<void> {
    const generation = file.generation;
    if (file.flushedGeneration === generation || !file.staging) return;
    await this.saveRecord(file, true);
    file.flushedGeneration = generation;
  }

  /** Writes the staging record of a file (after earlier ones); durable: the bytes and the record survive power loss. */
  saveRecord(file: OpenFile, durable = false): Promise<void> {
    const staging = file.staging;
    if (!staging) return Promise.resolve();
    const write = file.recordChain
      .catch(() => undefined)
      .then(async () => {
        const record = this.recordOf(file);
        try {
          if (durable) await staging.handle.datasync();
          await this.opts.journal.write(staging.path, record, durable);
        } catch (e) {
          throw fromLocalFs(e, 'write staging record');
        }
        file.recordedDirty = record.dirty;
      });
    file.recordChain = write;
    return write;
  }

  private recordOf(file: OpenFile): StagedRecord {
    return {
      v: 2,
      root: this.opts.rootId,
      owner: this.opts.owner,
      parentCap: file.parent.cap,
      name: file.name,
      path: file.path,
      base: file.base,
      dirty: file.dirty && !file.unlinked,
      size: file.size,
      ...(file.conflict ? { conflict: true } : {}),
      ...(file.mtimeExplicit && file.mtime ? { mtimeNs: nsString(file.mtime) } : {}),
      ...(Object.keys(file.own).length > 0 ? { own: file.own } : {}),
    };
  }

  /**
   * The staging file of an open file, made on first use. With keepContent the current content is copied in
   * first (a partial overwrite keeps the rest of the file); without it the staging file starts empty.
   */
  private async stagingFor(file: OpenFile, keepContent: boolean): Promise<StagingFile> {
    // An upload reads the staging file: changes wait for it, so that what is uploaded is one consistent state.
    while (file.uploading) await file.uploading.catch(() => undefined);
    return file.stagingReady.get(async () => {
      const path = this.opts.cache.newStagingPath();
      this.activeStaging.add(path);
      try {
        if (keepContent && file.child && file.size > 0) {
          await this.withRoom(file.size, 'copy content to staging', () => this.copyContentTo(file, file.child!, path));
        }
        file.staging = { path, handle: await open(path, O_RDWR | O_CREAT, 0o600) };
        file.base = heldCap(file.child);
        return file.staging;
      } catch (e) {
        this.activeStaging.delete(path);
        await rm(path, { force: true });
        throw fromLocalFs(e, 'prepare staging file');
      }
    });
  }

  private async copyContentTo(file: OpenFile, child: ChildInfo, path: string): Promise<void> {
    const cap = capOf(child);
    if (cap.literalData) {
      await writeFile(path, cap.literalData, { mode: 0o600 });
      return;
    }
    const cache = this.opts.cache;
    const content = cap.immutable ? await cache.open(cap) : await cache.openMutable(cap, file.size);
    try {
      await content.ensure(0, content.size);
      await copyFile(content.dataPath, path);
      file.size = content.size; // a mutable file's listing may be older than its content
    } finally {
      await cache.release(content);
    }
  }

  /** Runs a local write; on a full disk, evicts cached content (never staged bytes) and tries once more. */
  private async withRoom<T>(bytes: number, what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOSPC' || !(await this.opts.cache.makeRoom(bytes))) throw fromLocalFs(e, what);
    }
    try {
      return await work();
    } catch (e) {
      throw fromLocalFs(e, what);
    }
  }

  // ---- closing ----------------------------------------------------------------------------------------------

  /**
   * After the last handle: drops the local state. `stored` says whether the staged bytes reached the grid
   * (or need not: unlinked); if not, they stay with their record for the retry pass. What we uploaded becomes
   * the cached content of its new cap, so reading it back costs no download.
   */
  async close(file: OpenFile, stored: boolean): Promise<void> {
    const staging = file.staging;
    const cap = staging && stored && !file.dirty && !file.unlinked && file.child ? tryParseCap(file.child.roUri) : undefined;
    // Handed to the cache before the file leaves the table (no await between): an open that comes meanwhile
    // waits for the adoption instead of downloading what we hold. The cache flushes the bytes before its
    // record claims them; the rename leaves our handle valid.
    const adoption = staging && cap?.immutable && cap.storageIndex ? this.opts.cache.adopt(staging.path, cap) : undefined;
    this.forget(file);
    const content = await file.content.current?.catch(() => undefined);
    if (content) await this.opts.cache.release(content);
    if (!staging) return;
    await file.recordChain.catch(() => undefined);
    const adopted = (await adoption) ?? false;
    await staging.handle.close().catch(() => undefined);
    if (stored) {
      if (!adopted) await rm(staging.path, { force: true });
      await this.opts.journal.remove(staging.path);
    }
    // Only now may the retry pass take what is left (a store that failed).
    this.activeStaging.delete(staging.path);
  }

}

async function readLocal(handle: FileHandle, into: Buffer, position: number): Promise<number> {
  try {
    return await readFully(handle, into, position);
  } catch (e) {
    throw fromLocalFs(e, 'read local copy');
  }
}
