// The filesystem core: every FUSE operation, in terms of Tahoe directories and files. Both modes run this
// same class: --no-split hands it to the FUSE adapter directly, split mode behind the RPC server.
//
// Model. A path is resolved from the root directory cap through cached directory listings (one `?t=json`
// request per directory, trusted for --cache-timeout). An open file is an OpenFile shared by every handle on
// that path, so two handles see each other's writes as POSIX expects. Reads come from a local copy (the
// content cache for immutable files); the first write copies the content into a staging file, and flush
// (which close(2) waits for) uploads the staging file and links the new cap into the parent directory.
//
// Concurrency. Everything runs on one event loop, so state only changes across an `await`. Fields noted
// "changes across awaits" may be different after any await; the code re-reads them instead of caching them.
import { copyFile, open, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { constants, createReadStream } from 'node:fs';
import type { CachedFile } from '../cache/cached-file.js';
import type { ContentCache } from '../cache/content-cache.js';
import type { StagedFile, StagedRecord, StagingJournal } from '../cache/staging-journal.js';
import { processAlive } from '../process/alive.js';
import type { Logger } from '../log.js';
import { parseCap, redact, type Cap } from '../tahoe/caps.js';
import type { ChildInfo, LinkMetadata, TahoeClient } from '../tahoe/client.js';
import { fromLocalFs, FsError } from '../errors.js';
import type { Attr, Ops, StatFs, Timestamp } from './ops.js';

const { O_RDONLY, O_TRUNC, O_RDWR, O_CREAT, O_WRONLY, S_IFDIR, S_IFREG } = constants;
/** Linux's mask for the access mode bits of open flags (Node does not export it). */
const O_ACCMODE = 0o3;
const W_OK = 2;
const NAME_MAX_BYTES = 255;
/** Staged writes whose upload failed are retried after this long, doubling up to RETRY_MAX_MS. */
const RETRY_FIRST_MS = 5_000;
const RETRY_MAX_MS = 5 * 60_000;
/** Tahoe segments are 128 KiB: the natural unit for reads, and what statfs reports as the block size. */
const BLOCK_SIZE = 128 * 1024;

export interface TahoeFsOptions {
  client: TahoeClient;
  cache: ContentCache;
  /** Records of staged writes (in the cache's staging folder), for recovery after a crash. */
  journal: StagingJournal;
  rootCap: Cap;
  /** How long a directory listing is trusted; 0 refetches on every use. */
  cacheTimeoutMs: number;
  log: Logger;
  uid?: number;
  gid?: number;
}

/** A directory we can list: its cap, and whether we may change it. */
interface DirRef {
  cap: string;
  writable: boolean;
}

interface Listing {
  fetchedAt: number;
  children: Map<string, ChildInfo>;
}

interface Lookup {
  parent: DirRef;
  name: string;
  child: ChildInfo | undefined;
}

/** State shared by every handle open on one path. */
class OpenFile {
  /** Where the file is linked; changes across awaits (rename moves it, unlink orphans it). */
  parent: DirRef;
  name: string;
  path: string;
  /** The link as last seen or written; undefined for a file created and not yet uploaded. */
  child: ChildInfo | undefined;
  /** Local copy of the written content, once anything was written. */
  staging: { path: string; handle: FileHandle } | undefined;
  stagingReady: Promise<void> | undefined;
  /** Cached content of an immutable file, for reads while nothing was written. */
  content: Promise<CachedFile> | undefined;
  /** A mutable file's content as it was at first read (mutable files are not cached across opens). */
  snapshot: Promise<{ handle: FileHandle; path: string }> | undefined;
  size: number;
  /** Bumped by every change; an upload clears `dirty` only if no change came in meanwhile. */
  generation = 0;
  dirty = false;
  unlinked = false;
  handles = 0;
  /** Time set by utimens or by the last write, applied when the file is uploaded. */
  mtime: Timestamp | undefined;
  /** Whether `mtime` was set by utimens (then the upload must store it) rather than by a write. */
  mtimeExplicit = false;
  uploading: Promise<void> | undefined;
  /** The cap linked when the staged bytes were last in step with the grid: recovery checks it is still there. */
  base: string | null = null;
  /** Record writes for this file, one after the other. */
  recordChain: Promise<void> = Promise.resolve();

  constructor(parent: DirRef, name: string, path: string, child: ChildInfo | undefined) {
    this.parent = parent;
    this.name = name;
    this.path = path;
    this.child = child;
    this.size = child ? childSize(child) : 0;
  }
}

interface Handle {
  file: OpenFile;
  writable: boolean;
}

export class TahoeFs implements Ops {
  private readonly client: TahoeClient;
  private readonly cache: ContentCache;
  private readonly log: Logger;
  private readonly root: DirRef;
  private readonly cacheTimeoutMs: number;
  private readonly uid: number;
  private readonly gid: number;
  private readonly mountTime: Timestamp = nowTimestamp();
  private readonly listings = new Map<string, Listing>();
  private readonly listingFetches = new Map<string, Promise<Listing>>();
  /** Open files by path; a file renamed while open moves to its new key. */
  private readonly openFiles = new Map<string, OpenFile>();
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;
  private readonly journal: StagingJournal;
  private readonly rootId: string;
  /** Staged writes that failed to upload are retried on this timer, backing off. */
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs = RETRY_FIRST_MS;
  private retrying: Promise<void> | undefined;
  /** Staging files some open file still uses (open or closing): recovery leaves them alone. */
  private readonly activeStaging = new Set<string>();

  constructor(opts: TahoeFsOptions) {
    this.client = opts.client;
    this.cache = opts.cache;
    this.log = opts.log;
    this.root = { cap: opts.rootCap.text, writable: opts.rootCap.writable };
    this.cacheTimeoutMs = opts.cacheTimeoutMs;
    this.journal = opts.journal;
    this.rootId = redact(opts.rootCap.text);
    this.uid = opts.uid ?? process.getuid?.() ?? 0;
    this.gid = opts.gid ?? process.getgid?.() ?? 0;
  }

  /** Lists the root once: a bad cap or an unreachable gateway fails the mount instead of every later op. */
  async start(): Promise<void> {
    try {
      await this.listing(this.root, true);
    } catch (e) {
      throw new FsError('EIO', `cannot list the root directory ${redact(this.root.cap)}: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * Stores writes that an earlier run staged but did not store (or keeps and reports them), in the
   * background: a large backlog must not hold up the mount.
   */
  recoverInBackground(): void {
    void this.retryStaged();
  }

  /** Uploads what is still dirty and closes every local file (used at unmount). */
  async shutdown(): Promise<void> {
    clearTimeout(this.retryTimer);
    await this.retrying;
    for (const [fh, handle] of [...this.handles]) {
      this.handles.delete(fh);
      handle.file.handles--;
    }
    for (const file of new Set(this.openFiles.values())) await this.closeFile(file);
    await this.cache.shutdown();
  }

  // ---- attributes and directories -------------------------------------------------------------------------

  async getattr(path: string): Promise<Attr> {
    path = nfc(path);
    if (path === '/') return this.dirAttr(this.root.writable, undefined);
    const open = this.openFiles.get(path);
    if (open) return this.openFileAttr(open);
    const { parent, child } = await this.lookup(path);
    if (!child) throw new FsError('ENOENT', `no such file: ${path}`);
    return this.childAttr(child, parent);
  }

  async fgetattr(path: string, fh: number): Promise<Attr> {
    const handle = this.handles.get(fh);
    return handle ? this.openFileAttr(handle.file) : this.getattr(path);
  }

  async readdir(path: string): Promise<string[]> {
    path = nfc(path);
    const dir = await this.resolveDir(path);
    const listing = await this.listing(dir);
    const names = ['.', '..'];
    for (const name of listing.children.keys()) if (isShowableName(name)) names.push(name);
    // Files created but not yet uploaded exist for the programs that made them.
    const prefix = path === '/' ? '/' : path + '/';
    for (const [openPath, file] of this.openFiles) {
      const name = openPath.slice(prefix.length);
      if (openPath.startsWith(prefix) && !name.includes('/') && !listing.children.has(name) && !file.unlinked) names.push(name);
    }
    return names;
  }

  async access(path: string, mode: number): Promise<void> {
    path = nfc(path);
    if (path === '/') {
      if (mode & W_OK && !this.root.writable) throw new FsError('EROFS', 'read-only root');
      return;
    }
    const attr = await this.getattr(path);
    if (mode & W_OK && (attr.mode & 0o222) === 0) throw new FsError('EROFS', `read-only: ${path}`);
  }

  async statfs(): Promise<StatFs> {
    // Tahoe has no quota to report; show a large, fixed capacity so that programs checking free space proceed.
    const blocks = 2 ** 32 - 1;
    return { bsize: BLOCK_SIZE, frsize: BLOCK_SIZE, blocks, bfree: blocks, bavail: blocks, files: 2 ** 32 - 1, ffree: 2 ** 32 - 1, favail: 2 ** 32 - 1, namemax: NAME_MAX_BYTES };
  }

  async mkdir(path: string): Promise<void> {
    path = nfc(path);
    const { parent, name, child } = await this.lookup(path);
    this.requireWritable(parent, path);
    if (child || this.openFiles.has(path)) throw new FsError('EEXIST', `exists: ${path}`);
    const cap = await this.client.mkdir(parent.cap, name);
    const now = Date.now() / 1000;
    this.patchListing(parent.cap, name, {
      name, type: 'dir', rwUri: cap, roUri: undefined, mutable: true, metadata: { tahoe: { linkcrtime: now, linkmotime: now } },
    });
  }

  async rmdir(path: string): Promise<void> {
    path = nfc(path);
    if (path === '/') throw new FsError('EBUSY', 'cannot remove the mounted root');
    const { parent, name, child } = await this.lookup(path);
    if (!child) throw new FsError('ENOENT', `no such directory: ${path}`);
    if (child.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${path}`);
    this.requireWritable(parent, path);
    const dir = dirRefOf(child);
    // Always ask the grid: another client may have added an entry since we last looked.
    const listing = await this.listing(dir, true);
    if (listing.children.size > 0 || this.hasOpenFilesUnder(path)) throw new FsError('ENOTEMPTY', `not empty: ${path}`);
    await this.client.unlink(parent.cap, name);
    this.patchListing(parent.cap, name, undefined);
    this.listings.delete(dir.cap);
  }

  async unlink(path: string): Promise<void> {
    path = nfc(path);
    // An open file lives on for its handles (POSIX), but is no longer uploaded anywhere.
    const open = await this.removeFileLink(path);
    if (open) await this.orphan(open);
  }

  /** Removes a file's link from its directory; returns the file if it is open (and still at that path). */
  private async removeFileLink(path: string): Promise<OpenFile | undefined> {
    const { parent, name, child } = await this.lookup(path);
    const open = this.openFiles.get(path);
    if (!child && !open) throw new FsError('ENOENT', `no such file: ${path}`);
    if (child?.type === 'dir') throw new FsError('EISDIR', `is a directory: ${path}`);
    this.requireWritable(parent, path);
    if (child) {
      await this.client.unlink(parent.cap, name);
      this.patchListing(parent.cap, name, undefined);
    }
    return open && this.openFiles.get(path) === open ? open : undefined;
  }

  async rename(from: string, to: string): Promise<void> {
    from = nfc(from);
    to = nfc(to);
    if (from === '/' || to === '/') throw new FsError('EBUSY', 'cannot rename the mounted root');
    if (from === to) return;
    if (isFuseHidden(to)) return this.hide(from, to);
    if (to.startsWith(from + '/')) throw new FsError('EINVAL', `cannot move a directory into itself: ${from}`);
    const src = await this.lookup(from);
    const dst = await this.lookup(to);
    const openSrc = this.openFiles.get(from);
    if (!src.child && !openSrc) throw new FsError('ENOENT', `no such file: ${from}`);
    this.requireWritable(src.parent, from);
    this.requireWritable(dst.parent, to);
    const srcIsDir = src.child?.type === 'dir';
    if (dst.child) {
      const dstIsDir = dst.child.type === 'dir';
      if (srcIsDir && !dstIsDir) throw new FsError('ENOTDIR', `not a directory: ${to}`);
      if (!srcIsDir && dstIsDir) throw new FsError('EISDIR', `is a directory: ${to}`);
      if (dstIsDir) {
        const listing = await this.listing(dirRefOf(dst.child), true);
        if (listing.children.size > 0 || this.hasOpenFilesUnder(to)) throw new FsError('ENOTEMPTY', `not empty: ${to}`);
      }
    }
    if (src.child) {
      // Tahoe strips whitespace around names in relink (web/directory.py _POST_relink), so such names
      // are moved by linking the same caps at the new name, then unlinking the old one.
      if (src.name.trim() === src.name && dst.name.trim() === dst.name) {
        await this.client.relink(src.parent.cap, src.name, dst.parent.cap, dst.name, true);
      } else {
        await this.client.setChild(dst.parent.cap, dst.name, linkTargetOf(src.child), true);
        await this.client.unlink(src.parent.cap, src.name);
      }
      this.patchListing(src.parent.cap, src.name, undefined);
      this.patchListing(dst.parent.cap, dst.name, { ...src.child, name: dst.name });
    }
    // A file open at the target was replaced: its handles keep their data, which goes nowhere now.
    const openDst = this.openFiles.get(to);
    if (openDst) await this.orphan(openDst);
    this.moveOpenFiles(from, to, dst.parent, dst.name);
  }

  /**
   * libfuse 2 keeps a file that is unlinked (or renamed over) while open alive by renaming it to
   * `.fuse_hiddenXXXX` until its last close. On Tahoe that name would be seen by every other client, so the
   * hidden name lives here only: the link is removed from the directory, and the open file stays reachable
   * under the hidden path for libfuse (fstat, reads, writes) until it is released.
   */
  private async hide(from: string, to: string): Promise<void> {
    const open = await this.removeFileLink(from);
    if (!open) return;
    this.openFiles.delete(from);
    open.unlinked = true; // never uploaded again: its name is gone
    open.path = to;
    this.openFiles.set(to, open);
    if (open.staging) await this.saveRecord(open, true);
  }

  async link(from: string, to: string): Promise<void> {
    from = nfc(from);
    to = nfc(to);
    const src = await this.lookup(from);
    const open = this.openFiles.get(from);
    if (open?.dirty) await this.commit(open);
    const child = open?.child ?? src.child;
    if (!child) throw new FsError('ENOENT', `no such file: ${from}`);
    if (child.type === 'dir') throw new FsError('EPERM', `cannot hard-link a directory: ${from}`);
    const dst = await this.lookup(to);
    this.requireWritable(dst.parent, to);
    if (dst.child || this.openFiles.has(to)) throw new FsError('EEXIST', `exists: ${to}`);
    await this.client.setChild(dst.parent.cap, dst.name, linkTargetOf(child), false);
    this.patchListing(dst.parent.cap, dst.name, { ...child, name: dst.name });
  }

  async utimens(path: string, _atimeNs: string, mtimeNs: string): Promise<void> {
    path = nfc(path);
    if (path === '/') return; // the root has no link to carry metadata
    const mtime = timestampFromNs(mtimeNs);
    const open = this.openFiles.get(path);
    if (open && (open.dirty || !open.child)) {
      open.mtime = mtime; // applied by the upload
      open.mtimeExplicit = true;
      open.generation++; // an upload in flight carries the old time: the file stays dirty for the next one
      open.dirty = true;
      return;
    }
    const { parent, name, child } = await this.lookup(path);
    if (!child) throw new FsError('ENOENT', `no such file: ${path}`);
    this.requireWritable(parent, path);
    const metadata = withMtime(child.metadata, mtime);
    await this.client.setChild(parent.cap, name, { ...linkTargetOf(child), metadata }, true);
    const updated = { ...child, metadata: touchedMetadata(child.metadata, metadata) };
    this.patchListing(parent.cap, name, updated);
    if (open) open.child = updated;
  }

  /** Tahoe stores no modes: accepted without effect, so that cp -a, rsync -a and tar succeed. */
  async chmod(path: string): Promise<void> {
    path = nfc(path);
    await this.getattr(path);
  }

  /** Tahoe stores no owners: accepted without effect (see chmod). */
  async chown(path: string): Promise<void> {
    path = nfc(path);
    await this.getattr(path);
  }

  // ---- files -------------------------------------------------------------------------------------------------

  async open(path: string, flags: number): Promise<number> {
    path = nfc(path);
    const writable = (flags & O_ACCMODE) !== O_RDONLY;
    let file = this.openFiles.get(path);
    if (!file) {
      const { parent, name, child } = await this.lookup(path);
      if (!child) throw new FsError('ENOENT', `no such file: ${path}`);
      if (child.type === 'dir') throw new FsError('EISDIR', `is a directory: ${path}`);
      file = this.openFiles.get(path) ?? new OpenFile(parent, name, path, child);
      // Refused before it is shared: a file left in openFiles without handles would pin stale content.
      if (writable) this.requireWritableFile(file);
      this.openFiles.set(path, file);
    }
    if (writable) this.requireWritableFile(file);
    const fh = this.addHandle(file, writable);
    if (writable && flags & O_TRUNC) await this.emptyOrRelease(file, path, fh);
    return fh;
  }

  /** Empties a just-opened file; if that fails, the handle is given back before the error goes up. */
  private async emptyOrRelease(file: OpenFile, path: string, fh: number): Promise<void> {
    try {
      await this.truncateFile(file, 0);
    } catch (e) {
      await this.release(path, fh);
      throw e;
    }
  }

  async create(path: string): Promise<number> {
    path = nfc(path);
    const { parent, name, child } = await this.lookup(path);
    if (child?.type === 'dir') throw new FsError('EISDIR', `is a directory: ${path}`);
    this.requireWritable(parent, path);
    if (Buffer.byteLength(name) > NAME_MAX_BYTES) throw new FsError('ENAMETOOLONG', `name too long: ${path}`);
    let file = this.openFiles.get(path);
    if (!file) {
      file = new OpenFile(parent, name, path, child);
      this.openFiles.set(path, file);
    }
    const fh = this.addHandle(file, true);
    await this.emptyOrRelease(file, path, fh);
    return fh;
  }

  async read(path: string, fh: number, length: number, position: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    const n = await this.readInto(path, fh, buffer, position);
    return n === length ? buffer : buffer.subarray(0, n);
  }

  async readInto(_path: string, fh: number, target: Buffer, position: number): Promise<number> {
    const { file } = this.handle(fh);
    const end = Math.min(file.size, position + target.length);
    if (end <= position) return 0;
    const into = target.subarray(0, end - position);
    if (file.stagingReady) {
      await file.stagingReady;
      return readExactly(file.staging!.handle, into, position);
    }
    const cap = capOfChild(file.child!);
    if (cap.literalData) return cap.literalData.copy(into, 0, position, end);
    if (cap.immutable && cap.storageIndex) {
      file.content ??= this.cache.open(cap);
      const content = await file.content.catch((e: unknown) => {
        file.content = undefined;
        throw e;
      });
      return content.readInto(into, position);
    }
    file.snapshot ??= this.cache.mutableSnapshot(cap).then(async (path) => ({ path, handle: await open(path, 'r') }));
    const snapshot = await file.snapshot.catch((e: unknown) => {
      file.snapshot = undefined;
      throw e;
    });
    return readExactly(snapshot.handle, into, position);
  }

  async write(_path: string, fh: number, data: Buffer, position: number): Promise<number> {
    const { file, writable } = this.handle(fh);
    if (!writable) throw new FsError('EBADF', 'handle not open for writing');
    const staging = await this.stagingFor(file, true);
    try {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await staging.handle.write(data, done, data.length - done, position + done);
        done += bytesWritten;
      }
    } catch (e) {
      throw fromLocalFs(e, 'write staging file');
    }
    file.size = Math.max(file.size, position + data.length);
    this.markDirty(file);
    return data.length;
  }

  async truncate(path: string, size: number): Promise<void> {
    path = nfc(path);
    const open = this.openFiles.get(path);
    if (open) {
      this.requireWritableFile(open);
      await this.truncateFile(open, size);
      // With no handle to flush it later, truncate(2) itself must store the result.
      if (open.handles === 0) await this.commit(open);
      return;
    }
    const fh = await this.open(path, O_WRONLY);
    try {
      const { file } = this.handle(fh);
      await this.truncateFile(file, size);
      await this.commit(file);
    } finally {
      await this.release(path, fh);
    }
  }

  async ftruncate(_path: string, fh: number, size: number): Promise<void> {
    const { file, writable } = this.handle(fh);
    if (!writable) throw new FsError('EBADF', 'handle not open for writing');
    await this.truncateFile(file, size);
  }

  async flush(_path: string, fh: number): Promise<void> {
    const { file } = this.handle(fh);
    if (file.dirty) await this.commit(file);
  }

  async fsync(path: string, fh: number): Promise<void> {
    await this.flush(path, fh);
  }

  async release(_path: string, fh: number): Promise<void> {
    const handle = this.handles.get(fh);
    if (!handle) return;
    this.handles.delete(fh);
    const file = handle.file;
    file.handles--;
    if (file.handles === 0) await this.closeFile(file);
  }

  // ---- internals: open files --------------------------------------------------------------------------------

  private addHandle(file: OpenFile, writable: boolean): number {
    let fh = this.nextHandle;
    while (fh === 0 || this.handles.has(fh)) fh = (fh + 1) >>> 0;
    this.nextHandle = (fh + 1) >>> 0;
    this.handles.set(fh, { file, writable });
    file.handles++;
    return fh;
  }

  private handle(fh: number): Handle {
    const handle = this.handles.get(fh);
    if (!handle) throw new FsError('EBADF', `unknown file handle ${fh}`);
    return handle;
  }

  private markDirty(file: OpenFile): void {
    const wasClean = !file.dirty;
    file.dirty = true;
    file.generation++;
    file.mtime = nowTimestamp();
    // The record must say "dirty" again once the bytes differ from what was uploaded.
    if (wasClean && file.staging) this.saveRecord(file);
  }

  /** Writes the staging record of a file (queued behind earlier ones); durable: also flush the bytes. */
  private saveRecord(file: OpenFile, durable = false): Promise<void> {
    const staging = file.staging;
    if (!staging) return Promise.resolve();
    file.recordChain = file.recordChain.then(async () => {
      if (durable) await staging.handle.datasync();
      const record: StagedRecord = {
        v: 1,
        root: this.rootId,
        pid: process.pid,
        parentCap: file.parent.cap,
        name: file.name,
        path: file.path,
        base: file.base,
        dirty: file.dirty && !file.unlinked,
        size: file.size,
        ...(file.mtimeExplicit && file.mtime ? { mtimeNs: nsString(file.mtime) } : {}),
      };
      await this.journal.write(staging.path, record, durable);
    }).catch((e: unknown) => this.log.warn({ path: file.path, err: (e as Error).message }, 'could not write the staging record'));
    return file.recordChain;
  }

  private async truncateFile(file: OpenFile, size: number): Promise<void> {
    const staging = await this.stagingFor(file, size > 0);
    try {
      await staging.handle.truncate(size);
    } catch (e) {
      throw fromLocalFs(e, 'truncate staging file');
    }
    file.size = size;
    this.markDirty(file);
  }

  /**
   * The staging file of an open file, made on first use. With keepContent the current content is copied in
   * first (a partial overwrite keeps the rest of the file); without it the staging file starts empty.
   */
  private async stagingFor(file: OpenFile, keepContent: boolean): Promise<{ path: string; handle: FileHandle }> {
    // An upload reads the staging file: changes wait for it so that what is uploaded is one consistent state.
    while (file.uploading) await file.uploading.catch(() => undefined);
    if (!file.stagingReady) {
      file.stagingReady = (async () => {
        const path = this.cache.newStagingPath();
        try {
          if (keepContent && file.child && file.size > 0) await this.copyContentTo(file.child, path);
          this.activeStaging.add(path);
          file.staging = { path, handle: await open(path, O_RDWR | O_CREAT, 0o600) };
          file.base = file.child ? (file.child.rwUri ?? file.child.roUri ?? null) : null;
        } catch (e) {
          this.activeStaging.delete(path);
          await rm(path, { force: true });
          throw fromLocalFs(e, 'prepare staging file');
        }
      })();
      file.stagingReady.catch(() => {
        file.stagingReady = undefined;
      });
    }
    await file.stagingReady;
    return file.staging!;
  }

  private async copyContentTo(child: ChildInfo, path: string): Promise<void> {
    const cap = capOfChild(child);
    if (cap.literalData) {
      await writeFile(path, cap.literalData, { mode: 0o600 });
    } else if (cap.immutable) {
      const content = await this.cache.open(cap);
      try {
        await content.ensure(0, cap.size ?? 0);
        await copyFile(content.dataPath, path);
      } finally {
        await this.cache.release(content);
      }
    } else {
      await rename(await this.cache.mutableSnapshot(cap), path);
    }
  }

  /** Uploads the staging file and links it; returns once the web API serves the new bytes. */
  private async commit(file: OpenFile): Promise<void> {
    while (file.uploading) await file.uploading.catch(() => undefined);
    if (!file.dirty) return;
    file.uploading = this.upload(file);
    try {
      await file.uploading;
      file.base = file.child ? (file.child.rwUri ?? file.child.roUri ?? null) : null;
      if (file.handles > 0) await this.saveRecord(file);
    } catch (e) {
      // close() and fsync() now fail with EIO: the bytes stay staged, on disk, with a record of where they go.
      await this.saveRecord(file, true);
      this.log.error({ path: file.path, staging: file.staging?.path, err: (e as Error).message }, 'upload failed: staged bytes kept');
      throw e instanceof FsError ? e : new FsError('EIO', `upload of ${file.path} failed: ${(e as Error).message}`, { cause: e });
    } finally {
      file.uploading = undefined;
    }
  }

  private async upload(file: OpenFile): Promise<void> {
    const generation = file.generation;
    if (file.unlinked) {
      file.dirty = false;
      return;
    }
    const staging = file.staging;
    if (!staging) throw new FsError('EIO', `dirty file without staging: ${file.path}`);
    const size = file.size;
    const started = Date.now();
    const body = () => (size === 0 ? Buffer.alloc(0) : createReadStream(staging.path, { start: 0, end: size - 1 }));
    const mtime = file.mtime ?? nowTimestamp();
    const old = file.child;
    let child: ChildInfo;
    if (old?.mutable && old.rwUri && old.type === 'file') {
      // A mutable file keeps its cap: its content is replaced in place.
      await this.client.overwriteMutable(old.rwUri, body, size);
      const metadata = withMtime(old.metadata, mtime);
      await this.client.setChild(file.parent.cap, file.name, { ...linkTargetOf(old), metadata }, true);
      child = { ...old, size, metadata: touchedMetadata(old.metadata, metadata) };
    } else if (!file.mtimeExplicit && !hasStoredMtime(old?.metadata)) {
      // Nothing to say about mtime (Tahoe's link time is right): upload and link in one request.
      const { parent, name } = file;
      const cap = await this.client.putChild(parent.cap, name, body, size);
      child = { name: file.name, type: 'file', roUri: cap, size, mutable: false, metadata: touchedMetadata(old?.metadata ?? {}, userMetadata(old?.metadata ?? {})) };
      if (file.unlinked || file.parent !== parent || file.name !== name) {
        // Unlinked or renamed while we uploaded: the link we just made is not where the file is now.
        await this.client.unlink(parent.cap, name).catch(() => undefined);
        if (file.unlinked) {
          file.dirty = false;
          return;
        }
        await this.client.setChild(file.parent.cap, file.name, { type: 'file', roUri: cap, metadata: userMetadata(child.metadata) }, true);
      }
    } else {
      const cap = await this.client.upload(body, size);
      const metadata = withMtime(old?.metadata ?? {}, mtime);
      // The directory may have changed while we uploaded (rename, unlink): link where the file is now.
      if (file.unlinked) {
        file.dirty = false;
        return;
      }
      await this.client.setChild(file.parent.cap, file.name, { type: 'file', roUri: cap, metadata }, true);
      child = { name: file.name, type: 'file', roUri: cap, size, mutable: false, metadata: touchedMetadata(old?.metadata ?? {}, metadata) };
    }
    this.patchListing(file.parent.cap, file.name, child);
    file.child = child;
    if (file.generation === generation) file.dirty = false;
    this.log.debug({ path: file.path, bytes: size, ms: Date.now() - started, cap: redact(child.roUri ?? child.rwUri ?? '') }, 'uploaded');
  }

  /** After the last handle closed: upload what is left, then drop the local state. */
  private async closeFile(file: OpenFile): Promise<void> {
    let keepStaging = false;
    if (file.dirty && !file.unlinked) {
      try {
        await this.commit(file);
      } catch {
        keepStaging = true; // commit logged it; the retry timer takes it from here
      }
    }
    if (file.handles > 0) return; // reopened while we uploaded
    if (this.openFiles.get(file.path) === file) this.openFiles.delete(file.path);
    const content = await file.content?.catch(() => undefined);
    if (content) await this.cache.release(content);
    const snapshot = await file.snapshot?.catch(() => undefined);
    if (snapshot) {
      await snapshot.handle.close().catch(() => undefined);
      await rm(snapshot.path, { force: true });
    }
    if (file.staging) {
      const staging = file.staging;
      await file.recordChain;
      // What we uploaded is what we hold: keep it as the cached content of its new cap (flushed first: the
      // cache's record will claim these bytes).
      const cap = !keepStaging && !file.dirty && !file.unlinked && file.child ? tryParseCap(file.child.roUri) : undefined;
      const adoptable = cap?.immutable && cap.storageIndex ? cap : undefined;
      if (adoptable) await staging.handle.datasync().catch(() => undefined);
      await staging.handle.close().catch(() => undefined);
      this.activeStaging.delete(staging.path);
      if (keepStaging) {
        this.scheduleRetry();
        return;
      }
      const adopted = adoptable ? await this.cache.adopt(staging.path, adoptable) : false;
      if (!adopted) await rm(staging.path, { force: true });
      await this.journal.remove(staging.path);
    }
  }

  private async orphan(file: OpenFile): Promise<void> {
    file.unlinked = true;
    if (this.openFiles.get(file.path) === file) this.openFiles.delete(file.path);
    // The record must stop saying "dirty" before unlink returns, or a crash would let recovery bring it back.
    if (file.staging) await this.saveRecord(file, true);
  }

  private hasOpenFilesUnder(path: string): boolean {
    const prefix = path + '/';
    for (const [p, file] of this.openFiles) if (p.startsWith(prefix) && !file.unlinked) return true;
    return false;
  }

  /** Re-keys open files after a rename: the file itself, or everything under a renamed directory. */
  private moveOpenFiles(from: string, to: string, toParent: DirRef, toName: string): void {
    const moved: Array<[string, OpenFile]> = [];
    for (const [p, file] of this.openFiles) {
      if (p === from) {
        file.parent = toParent;
        file.name = toName;
        moved.push([to, file]);
      } else if (p.startsWith(from + '/')) {
        moved.push([to + p.slice(from.length), file]);
      }
    }
    for (const [newPath, file] of moved) {
      this.openFiles.delete(file.path);
      file.path = newPath;
      this.openFiles.set(newPath, file);
      if (file.staging) this.saveRecord(file);
    }
  }

  // ---- internals: staged writes that did not reach the grid ------------------------------------------------

  private scheduleRetry(): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.retryStaged();
    }, this.retryDelayMs);
    this.retryTimer.unref();
  }

  /**
   * Stores every staged write of this root that no live handle owns: the ones whose upload failed in this
   * run, and those an earlier run (crashed, killed) left behind. Runs one pass at a time.
   */
  private retryStaged(): Promise<void> {
    this.retrying ??= (async () => {
      let failed = 0;
      for (const staged of await this.journal.list()) {
        const r = staged.record;
        if (r.root !== this.rootId || this.activeStaging.has(staged.stagingPath)) continue;
        if (r.pid !== process.pid && (await processAlive(r.pid))) continue; // another mount of this root owns it
        if (r.conflict) continue; // kept and reported already
        if (!(await this.recoverStaged(staged))) failed++;
      }
      if (failed > 0) {
        this.retryDelayMs = Math.min(this.retryDelayMs * 2, RETRY_MAX_MS);
        this.scheduleRetry();
      } else {
        this.retryDelayMs = RETRY_FIRST_MS;
      }
    })().finally(() => (this.retrying = undefined));
    return this.retrying;
  }

  /** Uploads and links one staged file if its directory entry is still what the bytes were based on. */
  private async recoverStaged({ stagingPath, record }: StagedFile): Promise<boolean> {
    const log = this.log.child({ path: record.path, staging: stagingPath });
    if (!record.dirty) {
      await rm(stagingPath, { force: true });
      await this.journal.remove(stagingPath);
      return true;
    }
    try {
      const listing = await this.client.listDir(record.parentCap);
      const current = listing.children.get(record.name);
      const currentCap = current ? (current.rwUri ?? current.roUri ?? null) : null;
      if (currentCap !== record.base) {
        log.warn('staged write kept, not stored: its directory entry changed meanwhile');
        await this.journal.write(stagingPath, { ...record, conflict: true }, true);
        return true;
      }
      if (current?.mutable) {
        // A mutable file keeps its cap when another client changes it: nothing shows whether it did.
        log.warn('staged write kept, not stored: a mutable file may have changed meanwhile');
        await this.journal.write(stagingPath, { ...record, conflict: true }, true);
        return true;
      }
      const size = (await stat(stagingPath)).size;
      const body = () => (size === 0 ? Buffer.alloc(0) : createReadStream(stagingPath, { start: 0, end: size - 1 }));
      const mtime = record.mtimeNs ? (parseNs(record.mtimeNs) ?? nowTimestamp()) : nowTimestamp();
      const metadata = withMtime(current?.metadata ?? {}, mtime);
      const cap = await this.client.upload(body, size);
      // Tahoe has no compare-and-swap: look again right before linking, to keep the window small.
      const again = (await this.client.listDir(record.parentCap)).children.get(record.name);
      if ((again ? (again.rwUri ?? again.roUri ?? null) : null) !== record.base) {
        log.warn('staged write kept, not stored: its directory entry changed meanwhile');
        await this.journal.write(stagingPath, { ...record, conflict: true }, true);
        return true;
      }
      await this.client.setChild(record.parentCap, record.name, { type: 'file', roUri: cap, metadata }, true);
      const child: ChildInfo = { name: record.name, type: 'file', roUri: cap, size, mutable: false, metadata: touchedMetadata(current?.metadata ?? {}, metadata) };
      this.patchListing(record.parentCap, record.name, child);
      const parsed = tryParseCap(cap);
      const adopted = parsed?.immutable && parsed.storageIndex ? await this.cache.adopt(stagingPath, parsed) : false;
      if (!adopted) await rm(stagingPath, { force: true });
      await this.journal.remove(stagingPath);
      log.info({ bytes: size }, 'staged write recovered: uploaded and linked');
      return true;
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'staged write not stored yet: will retry');
      return false;
    }
  }

  private requireWritable(dir: DirRef, path: string): void {
    if (!dir.writable) throw new FsError('EROFS', `read-only directory: ${path}`);
  }

  private requireWritableFile(file: OpenFile): void {
    if (!fileWritable(file.child, file.parent)) throw new FsError('EROFS', `read-only file: ${file.path}`);
  }

  // ---- internals: paths and listings -------------------------------------------------------------------------

  private async resolveDir(path: string): Promise<DirRef> {
    if (path === '/') return this.root;
    const { child } = await this.lookup(path);
    if (!child) throw new FsError('ENOENT', `no such directory: ${path}`);
    if (child.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${path}`);
    return dirRefOf(child);
  }

  private async lookup(path: string): Promise<Lookup> {
    const parts = path.split('/').filter((p) => p !== '');
    if (parts.length === 0) throw new FsError('EINVAL', 'the root has no parent');
    for (const part of parts) {
      if (Buffer.byteLength(part) > NAME_MAX_BYTES) throw new FsError('ENAMETOOLONG', `name too long: ${path}`);
    }
    let dir = this.root;
    for (const part of parts.slice(0, -1)) {
      const child = (await this.listing(dir)).children.get(part);
      if (!child) throw new FsError('ENOENT', `no such directory: ${part} in ${path}`);
      if (child.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${part} in ${path}`);
      dir = dirRefOf(child);
    }
    const name = parts[parts.length - 1]!;
    return { parent: dir, name, child: (await this.listing(dir)).children.get(name) };
  }

  private async listing(dir: DirRef, fresh = false): Promise<Listing> {
    const cached = this.listings.get(dir.cap);
    if (!fresh && cached && Date.now() - cached.fetchedAt < this.cacheTimeoutMs) return cached;
    let pending = this.listingFetches.get(dir.cap);
    if (!pending) {
      const started = Date.now();
      pending = this.client
        .listDir(dir.cap)
        .then((l) => {
          const listing = { fetchedAt: started, children: l.children };
          this.listings.set(dir.cap, listing);
          return listing;
        })
        .finally(() => this.listingFetches.delete(dir.cap));
      this.listingFetches.set(dir.cap, pending);
    }
    return pending;
  }

  /** Applies a change we made to a cached listing, so that we need not fetch it again. */
  private patchListing(dirCap: string, name: string, child: ChildInfo | undefined): void {
    const listing = this.listings.get(dirCap);
    if (!listing) return;
    if (child) listing.children.set(name, child);
    else listing.children.delete(name);
  }

  // ---- internals: attributes ---------------------------------------------------------------------------------

  private dirAttr(writable: boolean, child: ChildInfo | undefined): Attr {
    const times = child ? linkTimes(child.metadata) : { mtime: this.mountTime, ctime: this.mountTime };
    return {
      mode: S_IFDIR | (writable ? 0o755 : 0o555),
      size: 4096,
      nlink: 2,
      uid: this.uid,
      gid: this.gid,
      atime: times.mtime,
      mtime: times.mtime,
      ctime: times.ctime,
    };
  }

  private childAttr(child: ChildInfo, parent: DirRef): Attr {
    if (child.type === 'dir') return this.dirAttr(dirRefOf(child).writable, child);
    const times = linkTimes(child.metadata);
    return this.fileAttr(childSize(child), fileWritable(child, parent), times.mtime, times.ctime);
  }

  private openFileAttr(file: OpenFile): Attr {
    const times = file.child ? linkTimes(file.child.metadata) : { mtime: this.mountTime, ctime: this.mountTime };
    const mtime = file.dirty && file.mtime ? file.mtime : times.mtime;
    return this.fileAttr(file.size, fileWritable(file.child, file.parent), mtime, file.child ? times.ctime : mtime);
  }

  private fileAttr(size: number, writable: boolean, mtime: Timestamp, ctime: Timestamp): Attr {
    return { mode: S_IFREG | (writable ? 0o644 : 0o444), size, nlink: 1, uid: this.uid, gid: this.gid, atime: mtime, mtime, ctime };
  }
}

// ---- helpers -----------------------------------------------------------------------------------------------

function dirRefOf(child: ChildInfo): DirRef {
  const cap = child.rwUri ?? child.roUri;
  if (!cap) throw new FsError('EIO', `directory entry without a cap: ${child.name}`);
  return { cap, writable: child.rwUri !== undefined && !child.rwUri.startsWith('URI:DIR2-RO:') };
}

/** Parsed caps by listing entry: parsing hashes the key (the storage index), too slow for every read. */
const parsedCaps = new WeakMap<ChildInfo, Cap>();

function capOfChild(child: ChildInfo): Cap {
  const known = parsedCaps.get(child);
  if (known) return known;
  const text = child.rwUri ?? child.roUri;
  if (!text) throw new FsError('EIO', `entry without a cap: ${child.name}`);
  try {
    const cap = parseCap(text);
    parsedCaps.set(child, cap);
    return cap;
  } catch (e) {
    throw new FsError('EIO', `entry ${child.name} has an unusable cap: ${(e as Error).message}`, { cause: e });
  }
}

/** Immutable files are rewritten by linking a new cap, so the parent's writability is what counts. */
function fileWritable(child: ChildInfo | undefined, parent: DirRef): boolean {
  if (child?.type === 'unknown') return false;
  if (child?.mutable && !child.rwUri) return false;
  return parent.writable;
}

function childSize(child: ChildInfo): number {
  if (child.size !== undefined) return child.size;
  try {
    return capOfChild(child).size ?? 0;
  } catch {
    return 0;
  }
}

function linkTargetOf(child: ChildInfo): { type: 'file' | 'dir' | 'unknown'; rwUri?: string; roUri?: string; metadata: LinkMetadata } {
  return { type: child.type, rwUri: child.rwUri, roUri: child.roUri, metadata: userMetadata(child.metadata) };
}

function tryParseCap(text: string | undefined): Cap | undefined {
  if (!text) return undefined;
  try {
    return parseCap(text);
  } catch {
    return undefined;
  }
}

/** Whether a link carries an mtime of its own, which a plain re-upload would leave stale. */
function hasStoredMtime(metadata: LinkMetadata | undefined): boolean {
  return metadata !== undefined && ('mtime' in metadata || 'mtime_ns' in metadata);
}

/** Fills `into` from `position` (less only at the end of the file); returns the bytes read. */
async function readExactly(handle: FileHandle, into: Buffer, position: number): Promise<number> {
  let done = 0;
  try {
    while (done < into.length) {
      const { bytesRead } = await handle.read(into, done, into.length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
  } catch (e) {
    throw fromLocalFs(e, 'read local copy');
  }
  return done;
}

/** Metadata without Tahoe's own "tahoe" key, which the gateway maintains itself. */
function userMetadata(metadata: LinkMetadata): LinkMetadata {
  const { tahoe: _ignored, ...rest } = metadata;
  return rest;
}

/** Sets the file's mtime: "mtime" in seconds (what Tahoe's CLI and SFTP frontend use) plus exact nanoseconds. */
function withMtime(metadata: LinkMetadata, mtime: Timestamp): LinkMetadata {
  return { ...userMetadata(metadata), mtime: mtime.sec + mtime.nsec / 1e9, mtime_ns: nsString(mtime) };
}

/** The metadata the gateway will now hold: ours, with Tahoe's link times as update_metadata sets them. */
function touchedMetadata(old: LinkMetadata, ours: LinkMetadata): LinkMetadata {
  const now = Date.now() / 1000;
  return { ...ours, tahoe: { linkcrtime: old.tahoe?.linkcrtime ?? now, linkmotime: now } };
}

function linkTimes(metadata: LinkMetadata): { mtime: Timestamp; ctime: Timestamp } {
  const linkmotime = metadata.tahoe?.linkmotime;
  const linkcrtime = metadata.tahoe?.linkcrtime;
  const fallback = typeof linkmotime === 'number' ? timestampFromSeconds(linkmotime) : { sec: 0, nsec: 0 };
  let mtime = fallback;
  if (typeof metadata.mtime === 'number') {
    mtime = timestampFromSeconds(metadata.mtime);
    // The exact value wins when it agrees with "mtime" (another tool may have changed only "mtime").
    const exact = typeof metadata.mtime_ns === 'string' ? parseNs(metadata.mtime_ns) : undefined;
    if (exact && Math.abs(exact.sec + exact.nsec / 1e9 - metadata.mtime) < 1) mtime = exact;
  }
  const ctime = typeof linkcrtime === 'number' ? timestampFromSeconds(linkcrtime) : fallback;
  return { mtime, ctime };
}

function timestampFromSeconds(seconds: number): Timestamp {
  const sec = Math.floor(seconds);
  return { sec, nsec: Math.min(999_999_999, Math.round((seconds - sec) * 1e9)) };
}

function parseNs(text: string): Timestamp | undefined {
  if (!/^[0-9]{1,30}$/.test(text)) return undefined;
  const ns = BigInt(text);
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
}

function timestampFromNs(text: string): Timestamp {
  const t = parseNs(text);
  if (!t) throw new FsError('EINVAL', `bad time ${text}`);
  return t;
}

function nsString(t: Timestamp): string {
  return (BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec)).toString();
}

function nowTimestamp(): Timestamp {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}

/**
 * Tahoe stores child names in Unicode NFC (a name linked in NFD is listed back in NFC), so every path is
 * looked up in NFC: a file created under a decomposed name is still found after the listing is refetched.
 */
function nfc(path: string): string {
  return path.normalize('NFC');
}

/** The name libfuse 2 gives a file unlinked while open (fuse.c hidden_name). */
function isFuseHidden(path: string): boolean {
  return /\/\.fuse_hidden[0-9a-f]{8}[0-9a-f]{8}$/.test(path);
}

/** Names a POSIX directory cannot show are hidden (see README, "Known limits"). */
function isShowableName(name: string): boolean {
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
