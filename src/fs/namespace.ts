// Operations on names: mkdir, rmdir, unlink, rename, link, symlinks and special files (makeSmallFile), and every
// change of an entry's link metadata (editLink: utimens, chmod, chown, xattrs). Each is one or two web-API
// requests on the parent directories, then a patch of the cached listings.
//
// An open file's link may be written by its upload at any moment (store.ts). So an op on the name of an
// open file holds that file's `linkLock` while it looks the entry up and changes it: the upload's link then
// lands either before (and is what the op renames or removes) or after (at the file's new place, or nowhere
// once it is unlinked). A name that is not open is never linked by anyone here but the op itself.
import { FsError } from '../errors.js';
import { encodeBase32 } from '../tahoe/base32.js';
import type { ChildInfo, LinkMetadata, TahoeClient } from '../tahoe/client.js';
import { heldCap, linkTargetOf, newLinkMetadata, nowTimestamp, nsString, parseNs, touchedMetadata, userMetadata, withMtime } from '../tahoe/links.js';
import { constants } from 'node:fs';
import { ownMetadataOf, sameMetadata, splitDev, SYMLINK_MAX, withAtime, withChangeTime, withCtime, withOwnMetadata, type OwnMetadata, type PosixFields, type SpecialType } from '../tahoe/posix.js';
import { withLocks } from '../util/once.js';
import type { Commits } from './commits.js';
import type { DirectoryUpdates } from './dir-updates.js';
import { dirRefOf, type DirRef, type Directories } from './directories.js';
import type { OpenFile, OpenFiles } from './open-files.js';
import type { PendingLinks } from './pending-links.js';
import type { Store } from './store.js';

export interface NamespaceOptions {
  client: TahoeClient;
  /** Every change of a directory goes through here (and into the ledger). */
  updates: DirectoryUpdates;
  dirs: Directories;
  files: OpenFiles;
  commits: Commits;
  store: Store;
  pendingLinks: PendingLinks;
  /** Write-back mode: mkdir and metadata changes are linked in the background. */
  deferred: boolean;
}

export class Namespace {
  /** New entries on their way, by path, with their kind (their names are taken): only mkdir and makeSmallFile change it. */
  private readonly making = new Map<string, 'dir' | 'file'>();

  private readonly client: TahoeClient;
  private readonly updates: DirectoryUpdates;
  private readonly dirs: Directories;
  private readonly files: OpenFiles;

  constructor(private readonly opts: NamespaceOptions) {
    this.client = opts.client;
    this.updates = opts.updates;
    this.dirs = opts.dirs;
    this.files = opts.files;
  }

  /** `own`: the new directory's mode and owner when not the default (then its link carries metadata). */
  async mkdir(path: string, own: OwnMetadata = {}): Promise<void> {
    const { parent, name, child } = await this.dirs.lookup(path);
    requireWritable(parent, path);
    if (child || this.files.get(path) || this.making.has(path)) throw new FsError('EEXIST', `exists: ${path}`);
    const metadata = withOwnMetadata(newLinkMetadata(), own);
    if (this.opts.deferred) {
      // Nothing at the gateway refuses a second mkdir of the name (as replace=false does in durable mode):
      // the name is taken here, before the first await, until the listing shows it.
      this.making.set(path, 'dir');
      try {
        await this.opts.pendingLinks.createDirectory(parent, name, path, metadata);
      } finally {
        this.making.delete(path);
      }
      return;
    }
    // Made ahead, unlinked, with a key of ours (the pool makes the next while this one is linked), then linked
    // with its metadata: one directory update where the web API's t=mkdir&name= makes two, and generates a key.
    const cap = await this.opts.pendingLinks.newDirectory();
    await this.updates.setChild(parent.cap, { name, path, target: { type: 'dir', rwUri: cap, metadata: userMetadata(metadata) }, replaced: null }, false);
    this.dirs.seedEmpty(cap);
    this.dirs.patch(parent.cap, name, { name, type: 'dir', rwUri: cap, roUri: undefined, mutable: true, metadata });
  }

  /** What kind of new entry is taking this name right now, if any (create must not take it too). */
  beingMade(path: string): 'dir' | 'file' | undefined {
    return this.making.get(path);
  }

  async rmdir(path: string): Promise<void> {
    if (path === '/') throw new FsError('EBUSY', 'cannot remove the mounted root');
    const { parent, name, child } = await this.dirs.lookup(path);
    if (!child) throw new FsError('ENOENT', `no such directory: ${path}`);
    if (child.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${path}`);
    requireWritable(parent, path);
    await this.opts.pendingLinks.settle(parent.cap, name);
    const dir = dirRefOf(child);
    // Always ask the grid: another client may have added an entry since we last looked.
    const listing = await this.dirs.listing(dir, true);
    if (listing.children.size > 0 || this.files.hasOpenUnder(path)) throw new FsError('ENOTEMPTY', `not empty: ${path}`);
    await this.updates.unlink(parent.cap, name, path, heldCap(child));
    this.dirs.patch(parent.cap, name, undefined);
    this.dirs.forget(dir.cap);
  }

  /** An open file lives on for its handles (POSIX), but is no longer uploaded anywhere. */
  async unlink(path: string): Promise<void> {
    await this.removeFileLink(path);
  }

  /**
   * libfuse 2 keeps a file that is unlinked (or renamed over) while open alive by renaming it to
   * `.fuse_hiddenXXXX` until its last close. On Tahoe that name would be seen by every other client, so the
   * hidden name lives here only: the link is removed, and the open file stays reachable under the hidden path
   * for libfuse (fstat, reads, writes) until it is released.
   */
  async hide(from: string, to: string): Promise<void> {
    await this.removeFileLink(from, (open) => this.files.hide(open, to));
  }

  /**
   * Runs `fn` holding the link locks of the files open at `paths`, given to it in the same order. A file
   * opened (or moved) at one of them while the locks were awaited is seen: then the locks are taken again.
   */
  private async withOpenFiles<T>(paths: string[], fn: (open: Array<OpenFile | undefined>) => Promise<T>): Promise<T> {
    for (;;) {
      const open = paths.map((p) => this.files.get(p));
      const result = await withLocks(open.map((f) => f?.linkLock), async () =>
        paths.every((p, i) => this.files.get(p) === open[i]) ? { value: await fn(open) } : undefined,
      );
      if (result) return result.value;
    }
  }

  /** Removes a file's link; a file open at that path is orphaned (`orphan`), under the lock: it is never linked again. */
  private async removeFileLink(path: string, orphan: (open: OpenFile) => Promise<void> = (open) => this.files.orphan(open)): Promise<void> {
    return this.withOpenFiles([path], async ([open]) => {
      const { parent, name, child } = await this.dirs.lookup(path);
      if (!child && !open) throw new FsError('ENOENT', `no such file: ${path}`);
      if (child?.type === 'dir') throw new FsError('EISDIR', `is a directory: ${path}`);
      requireWritable(parent, path);
      // A new entry whose link was not sent yet (write-back) is dropped, with no request.
      if (child && !(await this.opts.pendingLinks.remove(parent.cap, name))) {
        await this.updates.unlink(parent.cap, name, path, heldCap(child));
        this.dirs.patch(parent.cap, name, undefined);
      }
      // Under the lock: an upload finishing now links nothing.
      if (open && this.files.get(path) === open) await orphan(open);
    });
  }

  async rename(from: string, to: string): Promise<void> {
    if (from === '/' || to === '/') throw new FsError('EBUSY', 'cannot rename the mounted root');
    if (from === to) return;
    if (isFuseHidden(to)) return this.hide(from, to);
    if (to.startsWith(from + '/')) throw new FsError('EINVAL', `cannot move a directory into itself: ${from}`);
    await this.withOpenFiles([from, to], async ([openSrc]) => {
      const src = await this.dirs.lookup(from);
      const dst = await this.dirs.lookup(to);
      if (!src.child && !openSrc) throw new FsError('ENOENT', `no such file: ${from}`);
      requireWritable(src.parent, from);
      requireWritable(dst.parent, to);
      // A new entry of write-back (a directory, a symlink) is renamed (or replaced) only once its link is in the grid.
      if (src.child) await this.opts.pendingLinks.settle(src.parent.cap, src.name);
      if (dst.child) await this.opts.pendingLinks.settle(dst.parent.cap, dst.name);
      const srcIsDir = src.child?.type === 'dir';
      if (dst.child) {
        const dstIsDir = dst.child.type === 'dir';
        if (srcIsDir && !dstIsDir) throw new FsError('ENOTDIR', `not a directory: ${to}`);
        if (!srcIsDir && dstIsDir) throw new FsError('EISDIR', `is a directory: ${to}`);
        if (dstIsDir) {
          const listing = await this.dirs.listing(dirRefOf(dst.child), true);
          if (listing.children.size > 0 || this.files.hasOpenUnder(to)) throw new FsError('ENOTEMPTY', `not empty: ${to}`);
        }
      }
      if (src.child) {
        // Tahoe strips whitespace around names in relink (web/directory.py _POST_relink), so such names
        // are moved by linking the same caps at the new name, then unlinking the old one.
        if (src.name.trim() === src.name && dst.name.trim() === dst.name) {
          const place = { dirCap: dst.parent.cap, name: dst.name, path: to, replaced: heldCap(dst.child) };
          await this.updates.relink({ dirCap: src.parent.cap, name: src.name, path: from }, place, linkTargetOf(src.child));
        } else {
          await this.updates.setChild(dst.parent.cap, { name: dst.name, path: to, target: linkTargetOf(src.child), replaced: heldCap(dst.child) }, true);
          await this.updates.unlink(src.parent.cap, src.name, from, heldCap(src.child));
        }
        this.dirs.patch(src.parent.cap, src.name, undefined);
        this.dirs.patch(dst.parent.cap, dst.name, { ...src.child, name: dst.name });
      }
      // A file open at the target was replaced: its handles keep their data, which goes nowhere now. (One
      // opened there during our requests too: it holds the entry we just replaced.)
      const replaced = this.files.get(to);
      if (replaced && replaced !== openSrc) await this.files.orphan(replaced);
      // A file not in the grid yet, moved over an entry: its store is to replace that entry (write-back stores
      // link only over the entry their bytes were based on).
      if (openSrc && !src.child) openSrc.replaces(dst.child);
      await this.files.move(from, to, dst.parent, dst.name);
    });
  }

  async link(from: string, to: string): Promise<void> {
    const src = await this.dirs.lookup(from);
    const open = this.files.get(from);
    // Not under any link lock (LOCK ORDER, tahoe-fs.ts): a commit takes the file's own.
    if (open?.dirty) await this.opts.commits.commit(open);
    const child = open?.child ?? src.child;
    if (!child) throw new FsError('ENOENT', `no such file: ${from}`);
    if (child.type === 'dir') throw new FsError('EPERM', `cannot hard-link a directory: ${from}`);
    const dst = await this.dirs.lookup(to);
    requireWritable(dst.parent, to);
    if (dst.child || this.files.get(to)) throw new FsError('EEXIST', `exists: ${to}`);
    await this.updates.setChild(dst.parent.cap, { name: dst.name, path: to, target: linkTargetOf(child), replaced: null }, false);
    this.dirs.patch(dst.parent.cap, dst.name, { ...child, name: dst.name });
  }

  /**
   * Sets the file's mtime, its atime or both (undefined: left as it is) in its link metadata, in one change, so
   * that `rsync -a` and `touch -a` see them back. The atime goes with the mode (posix.ts); reads never move it.
   */
  async utimens(path: string, atimeNs: string | undefined, mtimeNs: string | undefined): Promise<void> {
    if (path === '/') return; // the root has no link to carry metadata
    const mtime = mtimeNs === undefined ? undefined : parseNs(mtimeNs);
    const atime = atimeNs === undefined ? undefined : parseNs(atimeNs);
    if ((mtimeNs !== undefined && !mtime) || (atimeNs !== undefined && !atime)) throw new FsError('EINVAL', `bad time ${atimeNs} ${mtimeNs}`);
    const atimeText = atime && nsString(atime);
    const ctime = nsString(nowTimestamp()); // POSIX: utimensat marks the ctime, whatever times it sets
    await this.editLink(
      path,
      async (file) => {
        const mtimeMoves = mtime !== undefined && (!file.mtime || nsString(file.mtime) !== nsString(mtime));
        if (mtime) await this.files.setMtime(file, mtime);
        const own = atimeText === undefined ? file.own : withAtime(file.own, atimeText);
        if (mtimeMoves || !sameMetadata(own, file.own)) await this.files.setOwn(file, withCtime(own, ctime));
      },
      (metadata) => {
        const timed = mtime ? withMtime(metadata, mtime) : metadata;
        const own = ownMetadataOf(timed);
        const after = withOwnMetadata(timed, atimeText === undefined ? own : withAtime(own, atimeText));
        return sameMetadata(after, metadata) ? metadata : withOwnMetadata(after, withCtime(ownMetadataOf(after), ctime));
      },
    );
  }

  /**
   * chmod, chown, setxattr, removexattr: a change of our keys of the link metadata (posix.ts). One that changes
   * something moves the ctime too, in the same change.
   */
  editOwn(path: string, edit: (own: OwnMetadata) => OwnMetadata): Promise<void> {
    if (path === '/') throw new FsError('ENOTSUP', 'the mounted root has no link to carry metadata');
    const changed = withChangeTime(edit, nsString(nowTimestamp()));
    return this.editLink(
      path,
      async (file) => {
        const own = changed(file.own);
        if (!sameMetadata(own, file.own)) await this.files.setOwn(file, own);
      },
      (metadata) => withOwnMetadata(metadata, changed(ownMetadataOf(metadata))),
    );
  }

  /**
   * Changes an entry's link metadata. A file whose content is not stored yet carries the change with its upload
   * (`ofOpenFile`); a write-back directory whose link is on its way carries it with that link (tar sets a
   * directory's time right after filling it); in write-back mode a stored link is updated in the background,
   * batched; otherwise now. A change that changes nothing costs nothing (rsync sets what is already there).
   */
  private async editLink(path: string, ofOpenFile: (file: OpenFile) => Promise<void>, edit: (metadata: LinkMetadata) => LinkMetadata): Promise<void> {
    // Write-back: a file with changes not stored yet takes the change with no lock, as its writes do, and its
    // next store carries it; the lock would wait for a link on its way (git chmods each object it writes).
    const unstored = this.opts.deferred ? this.files.get(path) : undefined;
    if (unstored?.dirty) return ofOpenFile(unstored);
    await this.withOpenFiles([path], async ([open]) => {
      if (open && (open.dirty || !open.child)) return ofOpenFile(open);
      const { parent, name, child } = await this.dirs.lookup(path);
      if (await this.opts.pendingLinks.edit(parent.cap, name, edit)) return;
      if (!child) throw new FsError('ENOENT', `no such file: ${path}`);
      const metadata = edit(userMetadata(child.metadata));
      if (sameMetadata(metadata, userMetadata(child.metadata))) return;
      requireWritable(parent, path);
      let updated: ChildInfo;
      if (this.opts.deferred && !open) {
        updated = this.opts.store.relinkLater(parent.cap, child, metadata, path);
      } else {
        const target = { ...linkTargetOf(child), metadata };
        await this.updates.setChild(parent.cap, { name, path, target, replaced: heldCap(child), replacedMetadata: userMetadata(child.metadata) }, true);
        updated = { ...child, metadata: touchedMetadata(child.metadata, metadata) };
      }
      this.dirs.patch(parent.cap, name, updated);
      open?.relinked(updated);
    });
  }

  async symlink(target: string, path: string, own: OwnMetadata): Promise<void> {
    if (Buffer.byteLength(target) > SYMLINK_MAX) throw new FsError('ENAMETOOLONG', `symlink target too long: ${path}`);
    return this.makeSmallFile(path, Buffer.from(target), own);
  }

  /** mknod(2) of a regular file makes an empty one; `ownOf` gives the new entry's metadata for what it is. */
  async mknod(path: string, mode: number, rdev: number, ownOf: (posix: PosixFields) => OwnMetadata): Promise<void> {
    const format = mode & S_IFMT;
    const type = SPECIAL_OF_MODE.get(format);
    if (!type && format !== S_IFREG && format !== 0) throw new FsError('EINVAL', `mknod of this file type is not supported: ${path}`);
    const posix: PosixFields = !type ? {} : type === 'char' || type === 'block' ? { type, ...splitDev(rdev) } : { type };
    return this.makeSmallFile(path, Buffer.alloc(0), ownOf(posix));
  }

  /**
   * A symlink or special file: a tiny immutable file (the target, or nothing) whose link metadata says what it
   * is. Up to 55 bytes the cap holds the bytes itself (a LIT cap, made here: no upload).
   */
  private async makeSmallFile(path: string, content: Buffer, own: OwnMetadata): Promise<void> {
    const { parent, name, child } = await this.dirs.lookup(path);
    requireWritable(parent, path);
    if (child || this.files.get(path) || this.making.has(path)) throw new FsError('EEXIST', `exists: ${path}`);
    // The name is taken here, before the first await, until the listing shows the new entry.
    this.making.set(path, 'file');
    try {
      const cap = content.length <= LIT_MAX_BYTES ? `URI:LIT:${encodeBase32(content)}` : await this.client.upload(content, content.length);
      const metadata = withOwnMetadata(withMtime({}, nowTimestamp()), own);
      const made: ChildInfo = { name, type: 'file', roUri: cap, size: content.length, mutable: false, metadata: touchedMetadata({}, metadata) };
      // Write-back: a symlink or special file is recorded, and linked in the background (pending-links.ts) unless
      // it is removed first. A regular file (mknod) is linked now: a write to it is stored over the linked entry.
      if (this.opts.deferred && own.posix?.type !== undefined) return await this.opts.pendingLinks.createSmall(parent, name, path, made);
      await this.updates.setChild(parent.cap, { name, path, target: { type: 'file', roUri: cap, metadata }, replaced: null }, false);
      this.dirs.patch(parent.cap, name, made);
    } finally {
      this.making.delete(path);
    }
  }
}

const { S_IFMT, S_IFREG } = constants;

const SPECIAL_OF_MODE = new Map<number, SpecialType>([
  [constants.S_IFIFO, 'fifo'],
  [constants.S_IFSOCK, 'socket'],
  [constants.S_IFCHR, 'char'],
  [constants.S_IFBLK, 'block'],
]);

/** Tahoe makes files up to this size literal (allmydata/immutable/upload.py URI_LIT_SIZE_THRESHOLD). */
const LIT_MAX_BYTES = 55;

export function requireWritable(dir: DirRef, path: string): void {
  if (!dir.writable) throw new FsError('EROFS', `read-only directory: ${path}`);
}

/** The name libfuse 2 gives a file unlinked while open (fuse.c hidden_name). */
function isFuseHidden(path: string): boolean {
  return /\/\.fuse_hidden[0-9a-f]{8}[0-9a-f]{8}$/.test(path);
}
