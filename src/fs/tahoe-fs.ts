// The filesystem core: every FUSE operation (the Ops interface) in terms of Tahoe directories and files. Both
// modes run this same class: --no-split hands it to the FUSE adapter directly, split mode puts it behind the
// RPC server. Paths arrive in Unicode NFC (the edges normalize them: Tahoe stores names in NFC).
//
// This file is the facade: it checks what an op may do and hands it to the room that holds that job.
//   directories.ts  listings (bounded cache), path lookup, the name policy
//   open-files.ts   the handle table, open files, read sources, staging files and their records
//   write-back.ts   upload and link of staged bytes (close, fsync, retries, recovery at start)
//   namespace.ts    mkdir, rmdir, unlink, rename, link, symlinks and special files, every change of link metadata
//   attributes.ts   what stat shows
// Extended attributes and caps as attributes are here: they only read and edit link metadata (tahoe/posix.ts).
// It owns no state of its own beyond those rooms.
import { constants } from 'node:fs';
import { join } from 'node:path';
import type { ContentCache } from '../cache/content-cache.js';
import { ListingStore } from '../cache/listing-store.js';
import type { StagingJournal } from '../cache/staging-journal.js';
import { FsError } from '../errors.js';
import type { Logger } from '../log.js';
import { readOnlyCap, redact, type Cap } from '../tahoe/caps.js';
import { isUnreachable, type GatewayState, type TahoeClient } from '../tahoe/client.js';
import { capTextOf, nowTimestamp, tryParseCap } from '../tahoe/links.js';
import { CAP_XATTR_PREFIX, checkXattrName, isUserXattr, ownMetadataOf, splitDev, SYMLINK_MAX, withMode, withOwner, withoutXattr, withXattr, xattrValue, type OwnMetadata, type PosixFields, type SpecialType } from '../tahoe/posix.js';
import { Attributes, requireWritableFile } from './attributes.js';
import type { ChildInfo } from '../tahoe/client.js';
import { childPath, Directories, isShowableName, NAME_MAX_BYTES, type DirRef } from './directories.js';
import { requireWritable, Namespace } from './namespace.js';
import { OpenFiles, type OpenFile, type ProcessIdentity } from './open-files.js';
import type { Attr, ChangeListener, DirEntry, Ops, ReadSource, StatFs } from './ops.js';
import { WriteBack, type SyncReport, type WriteStatus } from './write-back.js';

const { O_RDONLY, O_TRUNC, O_WRONLY, S_IFMT, S_IFREG } = constants;
/** Linux's mask for the access mode bits of open flags (Node does not export it). */
const O_ACCMODE = 0o3;
const W_OK = 2;
/** Tahoe segments are 128 KiB: what statfs reports as the block size. */
const BLOCK_SIZE = 128 * 1024;

export type { ProcessIdentity };

export interface CoreStatus {
  writes: WriteStatus;
  /** `hits`: reads of grid content found in the cache; `misses`: those that waited for a download. */
  cache: { usedBytes: number; maxBytes: number; hits: number; misses: number };
  openFiles: number;
  /** Whether requests reach the gateway, as this mount saw it last (offline: served from what is kept). */
  gatewayState: GatewayState;
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
  /** Write-back mode: close() returns once the bytes are on the local disk (see write-back.ts). */
  writeBack?: boolean;
  /** Uploads at once. */
  transfers?: number;
  /** Bound of the last try of pending stores at unmount. */
  drainMs?: number;
  /** How long a beginWrite holds off uploads without its endWrite (see open-files.ts). */
  writeHoldMs?: number;
  /**
   * A mount shared by several local users (allow_other): new entries keep their creator as owner, chown is
   * stored, stat shows both. Otherwise every entry is the mounting user's.
   */
  owners?: boolean;
  /** listxattr names the computed user.tahoe.* attributes too (so that `getfattr -d` shows them). */
  listCapXattrs?: boolean;
}

export class TahoeFs implements Ops {
  private readonly dirs: Directories;
  private readonly files: OpenFiles;
  private readonly writeBack: WriteBack;
  private readonly names: Namespace;
  private readonly attrs: Attributes;
  private readonly cache: ContentCache;
  private readonly listingStore: ListingStore;
  private readonly log: Logger;
  private readonly client: TahoeClient;
  private readonly owners: boolean;
  private readonly listCapXattrs: boolean;

  constructor(opts: TahoeFsOptions) {
    this.log = opts.log;
    const rootId = redact(opts.rootCap.text);
    this.cache = opts.cache;
    // Beside the content cache: one folder per root, owned by the one process that mounts it.
    this.listingStore = new ListingStore(join(opts.cache.root, 'dirs'), opts.log, { maxListings: opts.maxStoredListings, maxBytes: opts.maxStoredListingBytes });
    this.dirs = new Directories({
      client: opts.client, rootCap: opts.rootCap, cacheTimeoutMs: opts.cacheTimeoutMs, maxListings: opts.maxListings, maxListingBytes: opts.maxListingBytes,
      store: this.listingStore, log: opts.log,
    });
    this.files = new OpenFiles({ cache: opts.cache, journal: opts.journal, directories: this.dirs, rootId, owner: opts.owner, writeHoldMs: opts.writeHoldMs, log: opts.log });
    this.writeBack = new WriteBack({ ...opts, directories: this.dirs, files: this.files, rootId });
    this.names = new Namespace(opts.client, this.dirs, this.files, this.writeBack);
    this.owners = opts.owners === true;
    this.listCapXattrs = opts.listCapXattrs === true;
    this.attrs = new Attributes(opts.uid ?? process.getuid?.() ?? 0, opts.gid ?? process.getgid?.() ?? 0, nowTimestamp(), this.owners);
    // Stores waiting for the gateway (write-back loops, the retry pass) try again as soon as it answers.
    this.client = opts.client;
    opts.client.onGatewayState((state) => {
      if (state.online) this.writeBack.retryNow();
    });
  }

  /**
   * Lists the root once: a bad cap or an unreachable gateway fails the mount instead of every later op. With
   * the gateway unreachable and the root's listing kept on disk from an earlier mount, the mount starts
   * offline instead (serving what it kept) and comes online when the gateway answers.
   */
  async start(): Promise<void> {
    await this.listingStore.init();
    try {
      await this.dirs.listing(this.dirs.root, true);
    } catch (e) {
      const kept = isUnreachable(e) ? await this.dirs.startOffline() : undefined;
      if (!kept) throw new FsError('EIO', `cannot list the root directory ${redact(this.dirs.root.cap)}: ${(e as Error).message}`, { cause: e });
      const ageS = Math.round((Date.now() - kept.fetchedAt) / 1000);
      this.log.warn({ root: redact(this.dirs.root.cap), ageS, listedAt: new Date(kept.fetchedAt).toISOString(), err: (e as Error).message }, `gateway unreachable: starting offline from the root's listing kept ${ageS} s ago`);
    }
    this.writeBack.start();
  }

  /**
   * Stores writes that an earlier run staged but did not store (or keeps and reports them). The mount calls it
   * in the background (a backlog must not hold it up); tests wait for it.
   */
  recover(): Promise<void> {
    return this.writeBack.recover();
  }

  recoverInBackground(): void {
    void this.recover();
  }

  /**
   * At unmount: pending stores get one more try (bounded), then what is still dirty is stored or left in the
   * journal for the next mount, and every local file is closed.
   */
  async shutdown(): Promise<void> {
    await this.writeBack.drain();
    await this.writeBack.stop();
    this.files.dropAllHandles();
    // Files still open (a lazy unmount); those whose background store gave up close themselves.
    await Promise.all(this.files.all().filter((f) => !f.closed && !this.writeBack.storing(f)).map((file) => this.closeFile(file)));
    await this.dirs.flushStore().catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not keep directory listings on disk'));
    await this.cache.shutdown();
  }

  /** Waits until everything written before the call is stored; reports what is not (`blackmatch sync`). */
  sync(): Promise<SyncReport> {
    return this.writeBack.sync();
  }

  /** What is on its way, stuck, and cached, for `blackmatch status`: from memory, never waiting on the grid. */
  async status(): Promise<CoreStatus> {
    const { hits, misses } = this.files.readStats;
    return {
      writes: await this.writeBack.status(),
      cache: { usedBytes: this.cache.usedBytes, maxBytes: this.cache.maxBytes, hits, misses },
      openFiles: this.files.all().filter((f) => !f.closed).length,
      gatewayState: this.client.gatewayState,
    };
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

  /** The entries a directory shows: its listing's showable names, then files open in it and not uploaded yet (no entry). */
  private async shownEntries(path: string): Promise<{ dir: DirRef; entries: Array<[string, ChildInfo | undefined]> }> {
    const dir = await this.dirs.resolveDir(path);
    const listing = await this.dirs.listing(dir, false, path);
    const entries: Array<[string, ChildInfo | undefined]> = [];
    for (const [name, child] of listing.children) if (isShowableName(name)) entries.push([name, child]);
    // Files created but not yet uploaded exist for the programs that made them.
    for (const name of this.files.namesIn(path)) if (!listing.children.has(name)) entries.push([name, undefined]);
    return { dir, entries };
  }

  /** Change events for the FUSE edge's kernel cache invalidation (see Ops.watch); a failing listener is logged. */
  watch(listener: ChangeListener): void {
    this.dirs.watch((dirPath, name, kind) => {
      try {
        listener(dirPath, name, kind);
      } catch (e) {
        this.log.warn({ path: dirPath, err: (e as Error).message }, 'change listener failed');
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

  async symlink(target: string, path: string, uid = -1, gid = -1): Promise<void> {
    if (Buffer.byteLength(target) > SYMLINK_MAX) throw new FsError('ENAMETOOLONG', `symlink target too long: ${path}`);
    return this.names.makeSmallFile(path, Buffer.from(target), this.newOwn(0o777, 0o777, uid, gid, { type: 'symlink', target }));
  }

  async readlink(path: string): Promise<string> {
    const posix = (await this.ownOf(path)).posix;
    if (posix?.type !== 'symlink' || posix.target === undefined) throw new FsError('EINVAL', `not a symlink: ${path}`);
    return posix.target;
  }

  /** mknod(2) of a regular file makes an empty one. */
  async mknod(path: string, mode: number, rdev: number, uid = -1, gid = -1): Promise<void> {
    const format = mode & S_IFMT;
    const type = SPECIAL_OF_MODE.get(format);
    if (!type && format !== S_IFREG && format !== 0) throw new FsError('EINVAL', `mknod of this file type is not supported: ${path}`);
    const posix: PosixFields = !type ? {} : type === 'char' || type === 'block' ? { type, ...splitDev(rdev) } : { type };
    return this.names.makeSmallFile(path, Buffer.alloc(0), this.newOwn(mode, 0o644, uid, gid, posix));
  }

  /** A new entry's metadata: its mode unless the default, its owner where owners are kept, what it is. */
  private newOwn(mode: number, defaultMode: number, uid: number, gid: number, posix: PosixFields = {}): OwnMetadata {
    let own: OwnMetadata = Object.keys(posix).length > 0 ? { posix } : {};
    if ((mode & 0o7777) !== defaultMode) own = withMode(own, mode);
    if (this.owners && uid >= 0 && gid >= 0) own = withOwner(own, uid, gid);
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

  utimens(path: string, _atimeNs: string, mtimeNs: string): Promise<void> {
    return this.names.utimens(path, mtimeNs);
  }

  /** The root keeps its mode: it has no link to carry one. */
  async chmod(path: string, mode: number): Promise<void> {
    if (path === '/') return;
    await this.names.editOwn(path, (own) => withMode(own, mode));
  }

  /** Stored where owners are kept (the kernel checks who may: default_permissions); accepted without effect elsewhere. */
  async chown(path: string, uid: number, gid: number): Promise<void> {
    if (!this.owners || path === '/') {
      await this.getattr(path);
      return;
    }
    await this.names.editOwn(path, (own) => withOwner(own, uid, gid));
  }

  // ---- extended attributes ---------------------------------------------------------------------------------

  async getxattr(path: string, name: string): Promise<Buffer> {
    if (name.startsWith(CAP_XATTR_PREFIX)) {
      const value = (await this.capXattrs(path))[name];
      if (value === undefined) throw new FsError('ENODATA', `no ${name}: ${path}`);
      return Buffer.from(value);
    }
    if (!isUserXattr(name)) throw new FsError('ENODATA', `no ${name}: ${path}`);
    return xattrValue(await this.ownOf(path), name);
  }

  async listxattr(path: string): Promise<string[]> {
    const names = Object.keys((await this.ownOf(path)).xattrs ?? {});
    // Not listed by default: cp -a, rsync -X and tar --xattrs would copy caps (secrets) wherever files go.
    if (this.listCapXattrs) names.push(...Object.keys(await this.capXattrs(path)));
    return names;
  }

  async setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    checkXattrWrite(name);
    await this.names.editOwn(path, (own) => withXattr(own, name, value, flags));
  }

  async removexattr(path: string, name: string): Promise<void> {
    checkXattrWrite(name);
    await this.names.editOwn(path, (own) => withoutXattr(own, name));
  }

  /** Our metadata of an entry (posix.ts): an open file's as its link is to carry it. */
  private async ownOf(path: string): Promise<OwnMetadata> {
    if (path === '/') return {};
    const open = this.files.get(path);
    if (open) return open.own;
    const { child } = await this.dirs.lookup(path);
    if (!child) throw new FsError('ENOENT', `no such file: ${path}`);
    return ownMetadataOf(child.metadata);
  }

  /** The computed user.tahoe.* attributes: none for a file whose content is not stored yet (its cap is to come). */
  private async capXattrs(path: string): Promise<Record<string, string>> {
    let text: string | undefined;
    let roUri: string | undefined;
    if (path === '/') {
      text = this.dirs.root.cap;
    } else {
      const open = this.files.get(path);
      if (open && (open.dirty || !open.child)) return {};
      const child = open?.child ?? (await this.dirs.lookup(path)).child;
      if (!child) throw new FsError('ENOENT', `no such file: ${path}`);
      text = capTextOf(child);
      roUri = child.roUri;
    }
    const cap = tryParseCap(text);
    if (!cap) return {};
    const values: Record<string, string> = { [`${CAP_XATTR_PREFIX}readcap`]: roUri ?? readOnlyCap(cap.text) };
    if (cap.writable) values[`${CAP_XATTR_PREFIX}writecap`] = cap.text;
    if (cap.storageIndex) values[`${CAP_XATTR_PREFIX}storage-index`] = cap.storageIndex;
    return values;
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
    if (child?.type === 'dir' || this.names.isBeingMade(path)) throw new FsError('EISDIR', `is a directory: ${path}`);
    requireWritable(parent, path);
    const isNew = !child && !this.files.get(path);
    const file = this.files.getOrAdd(path, parent, name, child);
    if (isNew) file.own = this.newOwn(mode, 0o644, uid, gid);
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
    return this.files.readInto(this.files.handle(fh).file, target, position);
  }

  async write(_path: string, fh: number, data: Buffer, position: number): Promise<number> {
    await this.files.write(this.writableFile(fh), data, position);
    return data.length;
  }

  async readSource(_path: string, fh: number, position: number, length: number): Promise<ReadSource> {
    requireRange(position, length);
    return this.files.readSource(this.files.handle(fh).file, position, length);
  }

  async backingFile(_path: string, fh: number): Promise<string | null> {
    const { file, writable } = this.files.handle(fh);
    return writable ? null : this.files.backingFile(file);
  }

  async beginWrite(_path: string, fh: number, position: number, length: number): Promise<string> {
    requireRange(position, length);
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
      if (!this.writeBack.deferred) await this.writeBack.commit(file);
    } finally {
      await this.release(path, fh);
    }
  }

  async ftruncate(_path: string, fh: number, size: number): Promise<void> {
    await this.files.truncate(this.writableFile(fh), size);
  }

  /**
   * close(2) waits for flush. Durable mode: a written file is stored before it returns. Write-back mode: its
   * bytes and record are flushed to the local disk (if that fails, it is stored now instead).
   */
  async flush(_path: string, fh: number): Promise<void> {
    const { file } = this.files.handle(fh);
    if (await this.flushedLocally(file)) return;
    await this.writeBack.commit(file);
  }

  /** fsync(2) returns once the file is stored, in both modes. */
  async fsync(_path: string, fh: number, _datasync?: boolean): Promise<void> {
    await this.writeBack.commit(this.files.handle(fh).file);
  }

  async release(_path: string, fh: number): Promise<void> {
    const last = this.files.removeHandle(fh);
    if (!last) return;
    if (last.dirty && (await this.flushedLocally(last))) this.writeBack.storeLater(last, (stored) => this.finishClose(last, stored));
    else await this.closeFile(last);
  }

  /** Write-back mode: whether the file's changes are on the local disk with their record (nothing to do if clean). */
  private async flushedLocally(file: OpenFile): Promise<boolean> {
    if (!this.writeBack.deferred || file.unlinked || file.conflict) return false;
    if (!file.dirty) return true;
    try {
      await this.files.flushLocally(file);
      return true;
    } catch (e) {
      this.log.warn({ path: file.path, err: (e as Error).message }, 'could not flush a write-back file locally: storing it now');
      return false;
    }
  }

  /** After the last handle closed: store what is left, then drop the local state. */
  private async closeFile(file: OpenFile): Promise<void> {
    await this.finishClose(file, await this.writeBack.commitOnClose(file));
  }

  private async finishClose(file: OpenFile, stored: boolean): Promise<void> {
    // Reopened while we uploaded, or closed meanwhile by a later last close (reopened and closed again).
    if (file.handles > 0 || file.closed) return;
    file.closed = true;
    await this.files.close(file, stored);
  }
}

const SPECIAL_OF_MODE = new Map<number, SpecialType>([
  [constants.S_IFIFO, 'fifo'],
  [constants.S_IFSOCK, 'socket'],
  [constants.S_IFCHR, 'char'],
  [constants.S_IFBLK, 'block'],
]);

/** Programs may store user.* attributes; ours (user.tahoe.*) are computed, and no other namespace is kept. */
function checkXattrWrite(name: string): void {
  if (name.startsWith(CAP_XATTR_PREFIX)) throw new FsError('EPERM', `${name} is computed from the cap: read-only`);
  if (!isUserXattr(name)) throw new FsError('ENOTSUP', `only user.* attributes are kept: ${name}`);
  checkXattrName(name);
}

/** The caller names a range of bytes to read or write there itself: whole, non-negative numbers only. */
function requireRange(position: number, length: number): void {
  if (!Number.isSafeInteger(position) || !Number.isSafeInteger(length) || position < 0 || length < 0) {
    throw new FsError('EINVAL', `bad range: ${length} bytes at ${position}`);
  }
}
