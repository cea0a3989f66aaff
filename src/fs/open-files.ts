// Files open through the mount: the handle table (one OpenFile per path, shared by all its handles), where a
// read is served from (the staging file, a literal cap, the content cache), and the staging file that takes
// writes together with its record. An open file's life and its transitions are open-file.ts's.
//
// State and who may change it across an await (one event loop; nothing changes between awaits):
// - `byPath`, `byHandle`, `activeStaging`: open/create/release (the facade and closing.ts, through this
//   class) and rename/unlink (namespace.ts, through move(), orphan() and hide(), holding the file's linkLock).
// - An open file's size, mtime, own, staging and records: the writes here. Writes and uploads take turns on the
//   staging file through its gate (open-file.ts): our own writes, and those a caller makes itself between
//   beginWrite and endWrite (split mode's client writes the staging file directly). A caller's hold is
//   bounded: it ends at endWrite, when its handle is released, at unmount, or after `writeHoldMs` (a client
//   that stopped or died); a hold that ends without its endWrite marks the file changed and stored whole (a
//   late endWrite still counts: its bytes are uploaded again).
import { open, rm, type FileHandle } from 'node:fs/promises';
import type { CachedFile } from '../cache/cached-file.js';
import { constants } from 'node:fs';
import type { ContentCache } from '../cache/content-cache.js';
import type { ProcessIdentity, StagedRecord, StagingJournal } from '../cache/staging-journal.js';
import { fromLocalFs, FsError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ChildInfo } from '../tahoe/client.js';
import type { OwnMetadata } from '../tahoe/posix.js';
import { capOf, mutableStamp, nowTimestamp, nsString, tryParseCap, type Timestamp } from '../tahoe/links.js';
import { writeFully } from '../util/file-io.js';
import type { DirRef, Directories } from './directories.js';
import { openContent } from './file-reads.js';
import { Overlay, type BaseSource } from './overlay.js';
import { OpenFile, type StagingFile, type WriteHold } from './open-file.js';

export { OpenFile };
export type { ProcessIdentity };

const { O_RDWR, O_CREAT } = constants;

/**
 * How long a caller's write may hold off uploads without its endWrite: far beyond a local write of one FUSE
 * request, short enough that a stopped client delays a store by little.
 */
export const DEFAULT_WRITE_HOLD_MS = 30_000;

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
  /** Closes dropping their local state now: a write that finds the disk full waits for them (see withRoom). */
  private readonly closing = new Set<Promise<void>>();

  constructor(private readonly opts: OpenFilesOptions) {}

  get(path: string): OpenFile | undefined {
    return this.byPath.get(path);
  }

  /** The open file at `path`, made from its entry if nobody has it open yet (a new file's metadata: `own`). */
  getOrAdd(path: string, parent: DirRef, name: string, child: ChildInfo | undefined, own?: OwnMetadata): OpenFile {
    let file = this.byPath.get(path);
    if (!file) {
      file = new OpenFile(parent, name, path, child);
      if (own) file.own = own;
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
    for (const hold of handle.file.gate.writes) if (hold.fh === fh) this.abandon(handle.file, hold, 'its handle was released');
    handle.file.handles--;
    return handle.file.handles === 0 ? handle.file : undefined;
  }

  /** Every handle, dropped at once (unmount), with every hold of a caller's write. */
  dropAllHandles(): void {
    for (const { file } of this.byHandle.values()) {
      file.handles--;
      for (const hold of file.gate.writes) if (hold.fh !== undefined) this.abandon(file, hold, 'unmount');
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
        file.moveTo(toParent, toName, to);
      } else if (path.startsWith(from + '/')) {
        file.moveTo(file.parent, file.name, to + path.slice(from.length));
      } else {
        continue;
      }
      moved.push(file);
      this.byPath.delete(path); // deleting the entry being visited is safe; new keys are set after the walk
    }
    for (const file of moved) this.byPath.set(file.path, file);
    // Where the bytes go is in the record: a crash after the rename must store them under the new name.
    for (const file of moved) if (file.staging) await this.saveRecord(file);
  }

  /** The file's name is gone (unlinked, or renamed over): its handles keep their data, which goes nowhere now. */
  async orphan(file: OpenFile): Promise<void> {
    this.forget(file);
    file.unlink();
    await this.recordOrphan(file);
  }

  /** Unlinked, but reachable under another path (libfuse's hidden name) until its last close. */
  async hide(file: OpenFile, path: string): Promise<void> {
    if (this.byPath.get(file.path) === file) this.byPath.delete(file.path);
    file.unlink(path);
    this.byPath.set(path, file);
    await this.recordOrphan(file);
  }

  /**
   * The record must stop saying "dirty" before unlink returns, or a crash would let recovery bring the file
   * back. If it cannot be written (a full disk), the record is removed instead: bytes without a record are
   * kept and never recovered.
   */
  private async recordOrphan(file: OpenFile): Promise<void> {
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

  // ---- writing ----------------------------------------------------------------------------------------------

  async write(file: OpenFile, data: Buffer, position: number): Promise<void> {
    const hold: WriteHold = { fh: undefined, position, timer: undefined };
    const staging = await this.holdForWrite(file, hold);
    try {
      await this.withRoom(data.length, 'write staging file', () => writeFully(staging.handle, data, position));
      staging.overlay.wrote(position, data.length);
      file.changes.wrote(position, data.length);
      file.size = Math.max(file.size, position + data.length);
      await this.markDirty(file);
    } finally {
      file.gate.exitWrite(hold);
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
    const hold = [...file.gate.writes].find((h) => h.fh === fh && h.position === position);
    try {
      if (length > 0) {
        file.staging.overlay.wrote(position, length);
        file.changes.wrote(position, length);
        file.size = Math.max(file.size, position + length);
      }
      // Even with nothing said written: a write that failed partway may have changed the staging file.
      await this.markDirty(file);
    } finally {
      if (hold) file.gate.exitWrite(hold);
    }
  }

  private get holdMs(): number {
    return this.opts.writeHoldMs ?? DEFAULT_WRITE_HOLD_MS;
  }

  /** Takes a hold on the staging file (made if needed) for a write, once no upload reads it. */
  private async holdForWrite(file: OpenFile, hold: WriteHold): Promise<StagingFile> {
    const staging = await this.stagingFor(file, true);
    await file.gate.enterWrite(hold);
    return staging;
  }

  /**
   * A caller's hold ended without its endWrite: the staging file may hold part of its write, so the file is
   * dirty and stored whole. Where the write went over the base content, the base's bytes stand (overlay.ts: its
   * place was never said); elsewhere, what the staging file holds.
   */
  private abandon(file: OpenFile, hold: WriteHold, why: string): void {
    if (!file.gate.writes.has(hold)) return;
    this.opts.log.warn({ path: file.path, why }, 'a direct write ended without its endWrite: what it wrote over the base content may be lost');
    file.changes.unknown();
    void this.markDirty(file).catch(() => undefined); // flags first, synchronously; a record that fails is written by the next change
    file.gate.exitWrite(hold);
  }

  async truncate(file: OpenFile, size: number): Promise<void> {
    const staging = await this.stagingFor(file, size > 0);
    try {
      await staging.handle.truncate(size);
    } catch (e) {
      throw fromLocalFs(e, 'truncate staging file');
    }
    staging.overlay.truncated(size);
    file.changes.truncated(file.size, size);
    file.size = size;
    await this.markDirty(file);
  }

  /** utimens on a file whose content is not stored yet: the time goes with the upload (and into the record). */
  async setMtime(file: OpenFile, mtime: Timestamp): Promise<void> {
    file.mtime = mtime;
    file.mtimeExplicit = true;
    file.changed(false); // an upload in flight carries the old time: the file stays dirty for the next one
    await this.saveRecord(file);
  }

  /** chmod, setxattr... of a file whose content is not stored yet: the change goes with the upload (and into the record). */
  async setOwn(file: OpenFile, own: OwnMetadata): Promise<void> {
    file.own = own;
    file.changed(false); // as setMtime
    await this.saveRecord(file);
  }

  private async markDirty(file: OpenFile): Promise<void> {
    file.changed();
    file.mtime = nowTimestamp();
    if (file.unlinked) return; // its last record says "nothing to store", for good
    // The record must say "dirty" once the bytes differ from what was uploaded; if it cannot, the change fails.
    // Records on their way first: one of them may say "clean" (written for an upload that just finished).
    await file.recordChain.catch(() => undefined);
    // Recovery fills in from the base what the record says is the base's: a write over it must be on record.
    if (!file.recordedDirty || file.recordedOverlay !== file.staging?.overlay.revision) await this.saveRecord(file);
  }

  /**
   * Write-back close: the staged bytes and a record saying where they go, flushed to the local disk (once per
   * change). Rejects if they could not be (then the caller stores the file at once instead).
   */
  async flushLocally(file: OpenFile): Promise<void> {
    const generation = file.generation;
    if (file.flushedGeneration === generation || !file.staging) return;
    await this.saveRecord(file, true);
    file.flushed(generation);
  }

  /** Writes the staging record of a file (after earlier ones); durable: the bytes and the record survive power loss. */
  saveRecord(file: OpenFile, durable = false): Promise<void> {
    const staging = file.staging;
    if (!staging) return Promise.resolve();
    const write = file.recordChain
      .catch(() => undefined)
      .then(async () => {
        const record = this.recordOf(file);
        const revision = staging.overlay.revision;
        try {
          if (durable) await staging.handle.datasync();
          await this.opts.journal.write(staging.path, record, durable);
        } catch (e) {
          throw fromLocalFs(e, 'write staging record');
        }
        file.recordedDirty = record.dirty;
        file.recordedOverlay = revision;
      });
    file.recordChain = write;
    return write;
  }

  private recordOf(file: OpenFile): StagedRecord {
    const overlay = file.staging?.overlay;
    const baseStamp = file.child ? mutableStamp(file.child) : undefined;
    return {
      v: overlay && !overlay.whole ? 4 : 2,
      root: this.opts.rootId,
      owner: this.opts.owner,
      parentCap: file.parent.cap,
      name: file.name,
      path: file.path,
      base: file.base,
      dirty: file.needsStore,
      size: file.size,
      ...(file.conflict ? { conflict: true } : {}),
      ...(file.mtimeExplicit && file.mtime ? { mtimeNs: nsString(file.mtime) } : {}),
      ...(Object.keys(file.own).length > 0 ? { own: file.own } : {}),
      ...(baseStamp ? { baseStamp } : {}),
      ...(overlay && !overlay.whole && overlay.source ? { overlay: { ...overlay.source, ranges: overlay.fromBase.toJSON() } } : {}),
    };
  }

  /**
   * The staging file of an open file, made on first use. With keepContent it lies over the current content
   * (overlay.ts: nothing is copied; a partial overwrite keeps the rest of the file); without it the file starts
   * empty.
   */
  private async stagingFor(file: OpenFile, keepContent: boolean): Promise<StagingFile> {
    // An upload reads the staging file: changes wait for it, so that what is uploaded is one consistent state.
    await file.gate.uploadsDone();
    return file.stagingReady.get(async () => {
      const path = this.opts.cache.newStagingPath();
      this.activeStaging.add(path);
      let handle: FileHandle | undefined;
      try {
        handle = await open(path, O_RDWR | O_CREAT, 0o600);
        const base = keepContent && file.child && file.size > 0 ? await this.baseOf(file, handle) : undefined;
        file.staging = { path, handle, overlay: new Overlay(path, handle, base?.content, base?.source) };
        file.stagedFrom();
        return file.staging;
      } catch (e) {
        this.activeStaging.delete(path);
        await handle?.close().catch(() => undefined);
        await rm(path, { force: true });
        throw fromLocalFs(e, 'prepare staging file');
      }
    });
  }

  /**
   * The content a new staging file lies over, its length made the file's (a sparse file: no byte written); a
   * literal cap's few bytes are written instead. A mutable file's version may be longer or shorter than its
   * link said: a snapshot's one GET is waited for.
   */
  private async baseOf(file: OpenFile, handle: FileHandle): Promise<{ content: CachedFile; source: BaseSource } | undefined> {
    const child = file.child!;
    const cap = capOf(child);
    if (cap.literalData) {
      await writeFully(handle, cap.literalData, 0);
      file.size = cap.literalData.length;
      file.changes.based(file.size);
      return undefined;
    }
    const content = await openContent(this.opts.cache, file, cap);
    if (content.snapshot) await content.ensure(0, Infinity);
    file.size = content.size;
    file.changes.based(content.size);
    await handle.truncate(content.size);
    return { content, source: { cap: cap.text, size: content.size, ...(cap.immutable ? {} : { stamp: mutableStamp(child) }) } };
  }

  /** Runs a local write; on a full disk, evicts cached content (never staged bytes) and tries once more. */
  private async withRoom<T>(bytes: number, what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw fromLocalFs(e, what);
      // A file closed just before (close(2) returns before its release) leaves cached bytes that can give way.
      await Promise.all(this.closing);
      if (!(await this.opts.cache.makeRoom(bytes))) throw fromLocalFs(e, what);
    }
    try {
      return await work();
    } catch (e) {
      throw fromLocalFs(e, what);
    }
  }

  /**
   * After the last handle: drops the local state. `stored` says whether the staged bytes reached the grid
   * (or need not: unlinked); if not, they stay with their record for the retry pass. What we uploaded becomes
   * the cached content of its new cap, so reading it back costs no download.
   */
  close(file: OpenFile, stored: boolean): Promise<void> {
    const closing = this.dropLocalState(file, stored).finally(() => this.closing.delete(closing));
    this.closing.add(closing);
    return closing;
  }

  private async dropLocalState(file: OpenFile, stored: boolean): Promise<void> {
    // Reopened while it was stored, or closed already by a later last close (reopened and closed again).
    if (!file.close(stored)) return;
    const staging = file.staging;
    const cap = staging && stored && file.storedAsChild && !file.unlinked && file.child ? tryParseCap(file.child.roUri) : undefined;
    // Handed to the cache before the file leaves the table (no await between): an open that comes meanwhile
    // waits for the adoption instead of downloading what we hold. The cache flushes the bytes before its
    // record claims them; the rename leaves our handle valid.
    const stamp = file.child ? mutableStamp(file.child) : undefined;
    // Only a staging file that holds every byte is the content (one over its base is not).
    const adoption = !staging || !staging.overlay.whole || !cap?.storageIndex ? undefined
      : cap.immutable ? this.opts.cache.adopt(staging.path, cap)
      : stamp ? this.opts.cache.adoptVersion(staging.path, cap, file.size, stamp)
      : undefined;
    // One over its base version: the cached base, with what was written, becomes the version now linked.
    const base = staging?.overlay.base;
    const advance = staging && base && !adoption && cap && !cap.immutable && stamp
      ? this.opts.cache.advanceVersion(base, cap, file.size, stamp, (h, ranges) => staging.overlay.applyTo(h, ranges, file.size))
      : undefined;
    this.forget(file);
    const content = await file.content.current?.catch(() => undefined);
    if (content && !(advance && content === base)) await this.opts.cache.release(content); // an advance takes its reference
    if (!staging) return;
    await file.recordChain.catch(() => undefined);
    await advance;
    const adopted = (await adoption) ?? false;
    await staging.handle.close().catch(() => undefined);
    if (stored) {
      if (!adopted) await rm(staging.path, { force: true });
      await this.opts.journal.remove(staging.path);
    }
    // Only now may the retry pass take what is left (a store that failed).
    this.activeStaging.delete(staging.path);
  }

  /**
   * What must hold between any two awaits of the core; throws, naming the first thing that does not. Tests run
   * it after every step (a bug found here would otherwise show later as a wrong byte or a lost file).
   */
  checkInvariants(): void {
    const fail = (file: OpenFile, problem: string): never => {
      throw new Error(`open file ${file.path}: ${problem}`);
    };
    const handles = new Map<OpenFile, number>();
    for (const { file } of this.byHandle.values()) handles.set(file, (handles.get(file) ?? 0) + 1);
    for (const [file, count] of handles) {
      if (file.handles !== count) fail(file, `${file.handles} handles counted, ${count} in the table`);
      if (file.closed) fail(file, 'closed, with handles in the table');
    }
    for (const [path, file] of this.byPath) {
      if (file.path !== path) fail(file, `kept under ${path}`);
      if (file.closed) fail(file, 'closed, still in the table');
      if (file.staging && !this.activeStaging.has(file.staging.path)) fail(file, 'its staging file is not marked in use');
      const problem = file.invariantProblem();
      if (problem) fail(file, problem);
    }
  }

}
