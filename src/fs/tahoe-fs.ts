// The filesystem core: every FUSE operation (the Ops interface) in terms of Tahoe directories and files. Both
// modes run this same class: --no-split hands it to the FUSE adapter directly, split mode puts it behind the
// RPC server. Paths arrive in Unicode NFC (the edges normalize them: Tahoe stores names in NFC).
//
// This file is the facade: it checks what an op may do and hands it to the room that holds that job.
//   directories.ts   listings (bounded cache), path lookup, the name policy
//   open-files.ts    the handle table, reads, writes, staging files and their records (open-file.ts: a file's life;
//                    overlay.ts: a staging file over its base content; file-reads.ts: where reads come from)
//   closing.ts       the close, from flush to stored or staged for later, in both modes
//   commits.ts       the commit protocol: an open file's staged bytes stored through its gate
//   store.ts         upload and link of staged bytes, links without uploads (link-batcher.ts batches them)
//   pending-links.ts write-back's new directories, symlinks and special files whose link is on its way
//   recovery.ts      the staging journal's pass: what a crashed run or a failed store left
//   sync.ts          sync, status and the drain at unmount, across those rooms
//   namespace.ts     mkdir, rmdir, unlink, rename, link, symlinks and special files, every change of link metadata
//   attributes.ts    what stat shows;  xattrs.ts  extended attributes and caps as attributes
//   rooms.ts         builds the rooms and joins them
// It owns no state of its own beyond those rooms.
//
// LOCK ORDER. What acts as a lock in the core, outermost first; a holder of one may wait for those below it,
// never for one above (or for a second of its own kind, but link locks taken together by withLocks):
//   1. a file's staging gate (open-file.ts), upload side: commits.ts holds it for a whole store, its record
//      included. Its write side is held by a write only for local I/O and the file's records (5): a write never
//      waits for an upload while holding it, or the upload, which waits for the write, would never start.
//   2. the transfers semaphore (store.ts): one slot per upload, taken under the gate, released before the link.
//   3. link locks (OpenFile.linkLock, a Mutex; several at once only through withLocks, in id order): held by
//      store.ts while it links and by namespace.ts while it renames, unlinks or edits an open file's entry.
//   4. a directory's link queue (link-batcher.ts): a link waits for its directory's batch; nothing is held
//      by the batcher itself across an await but the batch's one update.
//   5. a file's record chain (OpenFile.recordChain): record writes, one after the other; local I/O only.
// The rule that matters: never commit() (1) while holding a link lock (3). The Mutex is not re-entrant, so
// the store's link would wait for the lock its own caller holds, forever. namespace.ts commits (link()) before it
// takes any lock; test/unit/lock-order.test.ts deadlocks if that is broken.
import { constants } from 'node:fs';
import { FsError } from '../errors.js';
import { redact } from '../tahoe/caps.js';
import { isUnreachable, type ChildInfo } from '../tahoe/client.js';
import { withMode, withOwner, type OwnMetadata, type PosixFields } from '../tahoe/posix.js';
import { requireWritableFile, type Attributes } from './attributes.js';
import type { Closing } from './closing.js';
import type { CoreStatus, TahoeFsOptions } from './core-options.js';
import { childPath, NAME_MAX_BYTES, type Directories, type DirRef } from './directories.js';
import { requireWritable, type Namespace } from './namespace.js';
import type { OpenFile, OpenFiles, ProcessIdentity } from './open-files.js';
import type { Attr, ChangeListener, DirEntry, Ops, ReadSource, StatFs } from './ops.js';
import { buildRooms, type Rooms } from './rooms.js';
import type { SyncReport } from './sync.js';

const { O_RDONLY, O_TRUNC, O_WRONLY } = constants;
/** Linux's mask for the access mode bits of open flags (Node does not export it). */
const O_ACCMODE = 0o3;
const W_OK = 2;
/** Tahoe segments are 128 KiB: what statfs reports as the block size. */
const BLOCK_SIZE = 128 * 1024;

export type { CoreStatus, ProcessIdentity, TahoeFsOptions };

export class TahoeFs implements Ops {
  private readonly rooms: Rooms;
  // The rooms most ops use, by name.
  private readonly dirs: Directories;
  private readonly files: OpenFiles;
  private readonly names: Namespace;
  private readonly attrs: Attributes;
  private readonly closing: Closing;

  constructor(private readonly opts: TahoeFsOptions) {
    this.rooms = buildRooms(opts);
    ({ dirs: this.dirs, files: this.files, names: this.names, attrs: this.attrs, closing: this.closing } = this.rooms);
  }

  /**
   * Lists the root once: a bad cap or an unreachable gateway fails the mount instead of every later op. With
   * the gateway unreachable and the root's listing kept on disk from an earlier mount, the mount starts
   * offline instead (serving what it kept) and comes online when the gateway answers.
   */
  async start(): Promise<void> {
    await this.rooms.listingStore.init();
    try {
      await this.dirs.listing(this.dirs.root, true);
    } catch (e) {
      const kept = isUnreachable(e) ? await this.dirs.startOffline() : undefined;
      if (!kept) throw new FsError('EIO', `cannot list the root directory ${redact(this.dirs.root.cap)}: ${(e as Error).message}`, { cause: e });
      const ageS = Math.round((Date.now() - kept.fetchedAt) / 1000);
      this.opts.log.warn({ root: redact(this.dirs.root.cap), ageS, listedAt: new Date(kept.fetchedAt).toISOString(), err: (e as Error).message }, `gateway unreachable: starting offline from the root's listing kept ${ageS} s ago`);
    }
    await this.rooms.ledger.start().catch((e: unknown) => this.opts.log.warn({ err: (e as Error).message }, 'ledger: cannot read what the last run left'));
    if (this.dirs.root.writable && this.opts.keysFromStart) this.rooms.keys.fill();
    else if (this.dirs.root.writable) this.rooms.keys.resume();
  }

  /**
   * Stores writes that an earlier run staged but did not store (or keeps and reports them). The mount calls it
   * in the background (a backlog must not hold it up); tests wait for it.
   */
  recover(): Promise<void> {
    return this.rooms.recovery.run();
  }

  recoverInBackground(): void {
    void this.recover();
  }

  /**
   * At unmount: pending stores get one more try (bounded), then what is still dirty is stored or left in the
   * journal for the next mount, and every local file is closed.
   */
  async shutdown(): Promise<void> {
    const { syncs, recovery, ledger } = this.rooms;
    await syncs.drain(this.opts.drainMs);
    await Promise.all([recovery.stop(), ledger.stop(), this.rooms.keys.stop()]); // what the ledger did not check yet, the next mount does
    this.files.dropAllHandles();
    await this.closing.closeAll();
    await this.dirs.flushStore().catch((e: unknown) => this.opts.log.warn({ err: (e as Error).message }, 'could not keep directory listings on disk'));
    await this.opts.cache.shutdown();
  }

  /** Waits until everything written before the call is stored and checked (bounded); reports what is not (`blackmatch sync`). */
  sync(timeoutMs?: number, opts?: { storedOnly?: boolean }): Promise<SyncReport> {
    return this.rooms.syncs.sync(timeoutMs, opts);
  }

  /** What is on its way, stuck, and cached, for `blackmatch status`: from memory, never waiting on the grid. */
  async status(): Promise<CoreStatus> {
    const { hits, misses } = this.rooms.reads.readStats;
    const { cache, client } = this.opts;
    return {
      writes: await this.rooms.syncs.status(),
      cache: { usedBytes: cache.usedBytes, maxBytes: cache.maxBytes, hits, misses },
      openFiles: this.files.all().filter((f) => !f.closed).length,
      gatewayState: client.gatewayState,
      directReads: cache.source.stats,
    };
  }

  /** Throws if the open files' state is not as it must be between any two awaits (tests run it after every step). */
  checkInvariants(): void {
    this.files.checkInvariants();
  }

  /** Listings held in memory (tests). */
  get cachedListings(): number {
    return this.dirs.cachedListings;
  }

  // ---- attributes and directories -------------------------------------------------------------------------

  async getattr(path: string): Promise<Attr> {
    if (path === '/') return this.attrs.root(this.dirs.root.writable);
    const open = this.files.get(path);
    if (open) return this.attrs.openFile(open);
    const { parent, child } = await this.dirs.lookup(path);
    if (!child) throw new FsError('ENOENT', `no such file: ${path}`);
    return this.attrs.entry(child, parent);
  }

  async fgetattr(path: string, fh: number): Promise<Attr> {
    const handle = this.files.findHandle(fh);
    return handle ? this.attrs.openFile(handle.file) : this.getattr(path);
  }

  async readdir(path: string): Promise<string[]> {
    const { entries } = await this.shownEntries(path);
    return ['.', '..', ...entries.map(([name]) => name)];
  }

  /** What readdir lists, each with what getattr of it shows, from the one listing. */
  async readdirplus(path: string): Promise<DirEntry[]> {
    const { dir, entries } = await this.shownEntries(path);
    return entries.map(([name, child]) => {
      const open = this.files.get(childPath(path, name));
      return { name, attr: open ? this.attrs.openFile(open) : this.attrs.entry(child!, dir) };
    });
  }

  private shownEntries(path: string): Promise<{ dir: DirRef; entries: Array<[string, ChildInfo | undefined]> }> {
    return this.dirs.shownEntries(path, this.files.namesIn(path));
  }

  /** Change events for the FUSE edge's kernel cache invalidation (see Ops.watch); a failing listener is logged. */
  watch(listener: ChangeListener): void {
    this.dirs.watch((dirPath, name, kind) => {
      try {
        listener(dirPath, name, kind);
      } catch (e) {
        this.opts.log.warn({ path: dirPath, err: (e as Error).message }, 'change listener failed');
      }
    });
  }

  async access(path: string, mode: number): Promise<void> {
    const attr = await this.getattr(path);
    if (mode & W_OK && (attr.mode & 0o222) === 0) throw new FsError('EROFS', `read-only: ${path}`);
  }

  async statfs(): Promise<StatFs> {
    // Tahoe has no quota to report; show a large, fixed capacity so that programs checking free space proceed.
    const blocks = 2 ** 32 - 1;
    return { bsize: BLOCK_SIZE, frsize: BLOCK_SIZE, blocks, bfree: blocks, bavail: blocks, files: 2 ** 32 - 1, ffree: 2 ** 32 - 1, favail: 2 ** 32 - 1, namemax: NAME_MAX_BYTES };
  }

  mkdir(path: string, mode: number, uid = -1, gid = -1): Promise<void> {
    return this.names.mkdir(path, this.newOwn(mode, 0o755, uid, gid));
  }

  symlink(target: string, path: string, uid = -1, gid = -1): Promise<void> {
    return this.names.symlink(target, path, this.newOwn(0o777, 0o777, uid, gid, { type: 'symlink', target }));
  }

  async readlink(path: string): Promise<string> {
    const posix = (await this.rooms.xattrs.ownOf(path)).posix;
    if (posix?.type !== 'symlink' || posix.target === undefined) throw new FsError('EINVAL', `not a symlink: ${path}`);
    return posix.target;
  }

  mknod(path: string, mode: number, rdev: number, uid = -1, gid = -1): Promise<void> {
    return this.names.mknod(path, mode, rdev, (posix) => this.newOwn(mode, 0o644, uid, gid, posix));
  }

  /** A new entry's metadata: its mode unless the default, its owner where owners are kept, what it is. */
  private newOwn(mode: number, defaultMode: number, uid: number, gid: number, posix: PosixFields = {}): OwnMetadata {
    let own: OwnMetadata = Object.keys(posix).length > 0 ? { posix } : {};
    if ((mode & 0o7777) !== defaultMode) own = withMode(own, mode);
    if (this.opts.owners === true && uid >= 0 && gid >= 0) own = withOwner(own, uid, gid);
    return own;
  }

  rmdir(path: string): Promise<void> {
    return this.names.rmdir(path);
  }

  unlink(path: string): Promise<void> {
    return this.names.unlink(path);
  }

  rename(from: string, to: string): Promise<void> {
    return this.names.rename(from, to);
  }

  link(from: string, to: string): Promise<void> {
    return this.names.link(from, to);
  }

  /** An empty time is one left as it is (UTIME_OMIT, or a setattr of the other time only). */
  utimens(path: string, atimeNs: string, mtimeNs: string): Promise<void> {
    return this.names.utimens(path, atimeNs === '' ? undefined : atimeNs, mtimeNs === '' ? undefined : mtimeNs);
  }

  /** The root keeps its mode: it has no link to carry one. */
  async chmod(path: string, mode: number): Promise<void> {
    if (path === '/') return;
    await this.names.editOwn(path, (own) => withMode(own, mode));
  }

  /** Stored where owners are kept (the kernel checks who may: default_permissions); accepted without effect elsewhere. */
  async chown(path: string, uid: number, gid: number): Promise<void> {
    if (this.opts.owners !== true || path === '/') await this.getattr(path);
    else await this.names.editOwn(path, (own) => withOwner(own, uid, gid));
  }

  getxattr(path: string, name: string): Promise<Buffer> {
    return this.rooms.xattrs.get(path, name);
  }

  listxattr(path: string): Promise<string[]> {
    return this.rooms.xattrs.list(path);
  }

  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    return this.rooms.xattrs.set(path, name, value, flags);
  }

  removexattr(path: string, name: string): Promise<void> {
    return this.rooms.xattrs.remove(path, name);
  }

  // ---- files -------------------------------------------------------------------------------------------------

  async open(path: string, flags: number): Promise<number> {
    const writable = (flags & O_ACCMODE) !== O_RDONLY;
    let file = this.files.get(path);
    if (!file) {
      const { parent, name, child } = await this.dirs.lookup(path);
      if (!child) throw new FsError('ENOENT', `no such file: ${path}`);
      if (child.type === 'dir') throw new FsError('EISDIR', `is a directory: ${path}`);
      // Refused before it is shared: a file left open without handles would pin stale content.
      if (writable) requireWritableFile(child, parent, path);
      file = this.files.getOrAdd(path, parent, name, child);
    }
    if (writable) requireWritableFile(file.child, file.parent, path);
    const fh = this.files.addHandle(file, writable);
    if (writable && flags & O_TRUNC) await this.emptyOrRelease(file, fh);
    return fh;
  }

  async create(path: string, mode: number, uid = -1, gid = -1): Promise<number> {
    const { parent, name, child } = await this.dirs.lookup(path);
    const made = this.names.beingMade(path);
    if (child?.type === 'dir' || made === 'dir') throw new FsError('EISDIR', `is a directory: ${path}`);
    if (made) throw new FsError('EEXIST', `exists: ${path}`);
    requireWritable(parent, path);
    const file = this.files.getOrAdd(path, parent, name, child, child ? undefined : this.newOwn(mode, 0o644, uid, gid));
    const fh = this.files.addHandle(file, true);
    await this.emptyOrRelease(file, fh);
    return fh;
  }

  /** Empties a just-opened file; if that fails, the handle is given back before the error goes up. */
  private async emptyOrRelease(file: OpenFile, fh: number): Promise<void> {
    try {
      await this.files.truncate(file, 0);
    } catch (e) {
      await this.release('', fh);
      throw e;
    }
  }

  async read(path: string, fh: number, length: number, position: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    const n = await this.readInto(path, fh, buffer, position);
    return n === length ? buffer : buffer.subarray(0, n);
  }

  readInto(_path: string, fh: number, target: Buffer, position: number): Promise<number> {
    return this.rooms.reads.readInto(this.files.handle(fh).file, target, position);
  }

  async write(_path: string, fh: number, data: Buffer, position: number): Promise<number> {
    requireStorableSize(position + data.length);
    await this.files.write(this.writableFile(fh), data, position);
    return data.length;
  }

  async readSource(_path: string, fh: number, position: number, length: number): Promise<ReadSource> {
    requireRange(position, length);
    return this.rooms.reads.readSource(this.files.handle(fh).file, position, length);
  }

  async backingFile(_path: string, fh: number): Promise<string | null> {
    const { file, writable } = this.files.handle(fh);
    return writable ? null : this.rooms.reads.backingFile(file);
  }

  async beginWrite(_path: string, fh: number, position: number, length: number): Promise<string> {
    requireRange(position, length);
    requireStorableSize(position + length);
    return this.files.beginWrite(this.writableFile(fh), fh, position);
  }

  async endWrite(_path: string, fh: number, position: number, length: number): Promise<void> {
    requireRange(position, length);
    return this.files.endWrite(this.writableFile(fh), fh, position, length);
  }

  private writableFile(fh: number): OpenFile {
    const { file, writable } = this.files.handle(fh);
    if (!writable) throw new FsError('EBADF', 'handle not open for writing');
    return file;
  }

  async truncate(path: string, size: number): Promise<void> {
    requireStorableSize(size);
    const open = this.files.get(path);
    if (open && open.handles > 0) {
      requireWritableFile(open.child, open.parent, path);
      await this.files.truncate(open, size);
      return;
    }
    // With no handle to flush it later, truncate(2) holds one of its own (so that a background store finishing
    // meanwhile cannot close the file under it), and stores the result as close() would.
    const fh = await this.open(path, O_WRONLY);
    try {
      const { file } = this.files.handle(fh);
      await this.files.truncate(file, size);
      if (!this.closing.deferred) await this.rooms.commits.commit(file);
    } finally {
      await this.release(path, fh);
    }
  }

  async ftruncate(_path: string, fh: number, size: number): Promise<void> {
    requireStorableSize(size);
    await this.files.truncate(this.writableFile(fh), size);
  }

  /**
   * close(2) waits for flush. Durable mode: a written file is stored before it returns. Write-back mode: its
   * bytes and record are flushed to the local disk (if that fails, it is stored now instead).
   */
  async flush(_path: string, fh: number): Promise<void> {
    await this.closing.flush(this.files.handle(fh).file);
  }

  /** fsync(2) returns once the file is stored, in both modes. */
  async fsync(_path: string, fh: number, _datasync?: boolean): Promise<void> {
    await this.rooms.commits.commit(this.files.handle(fh).file);
  }

  async release(_path: string, fh: number): Promise<void> {
    const last = this.files.removeHandle(fh);
    if (last) await this.closing.lastClose(last);
  }
}

/**
 * The largest file: 16 TiB, what ext4 (the usual staging disk) holds, on every staging disk alike. A file is
 * staged whole before it is stored, and Tahoe's share formats hold 64-bit sizes, so the staging disk is the
 * bound; one with a larger limit (xfs, btrfs, tmpfs) would otherwise accept a sparse 900 TB truncate and then
 * upload its zeros.
 */
export const MAX_FILE_SIZE = 2 ** 44;

/** The caller names a range of bytes to read or write there itself: whole, non-negative numbers only. */
function requireRange(position: number, length: number): void {
  if (!Number.isSafeInteger(position) || !Number.isSafeInteger(length) || position < 0 || length < 0) {
    throw new FsError('EINVAL', `bad range: ${length} bytes at ${position}`);
  }
}

/** A write ending, or a truncate to, past MAX_FILE_SIZE: EFBIG, as write(2) and truncate(2) say. */
function requireStorableSize(end: number): void {
  if (end > MAX_FILE_SIZE) throw new FsError('EFBIG', `past the largest file (${MAX_FILE_SIZE} bytes): ${end}`);
}
