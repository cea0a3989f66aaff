// What stat(2) shows for a Tahoe entry or an open file: type, mode and owner from the link metadata (posix.ts),
// write bits only where we may change it, size, and times. Pure: no state beyond what is given at start.
import { constants } from 'node:fs';
import { FsError } from '../errors.js';
import type { ChildInfo } from '../tahoe/client.js';
import { entryAccess, linkTimes, parseNs, sizeOf, type Timestamp } from '../tahoe/links.js';
import type { DirRef } from './directories.js';
import { dirRefOf } from './directories.js';
import type { Attr } from './ops.js';
import { joinDev, ownMetadataOf, type OwnMetadata, type SpecialType } from '../tahoe/posix.js';

const { S_IFDIR, S_IFREG, S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK } = constants;

/** What attributes need of an open file (see open-files.ts). */
export interface OpenFileState {
  parent: DirRef;
  child: ChildInfo | undefined;
  size: number;
  dirty: boolean;
  mtime: Timestamp | undefined;
  /** Our metadata as its link will carry it (see posix.ts). */
  own: OwnMetadata;
  /** Its name is gone: an open file's last name unlinked (fstat then says nlink 0, as POSIX has it). */
  unlinked: boolean;
}

/**
 * Whether a file may be written: an immutable file is rewritten by linking a new cap, so its directory's
 * writability is what counts; a mutable file also needs its write cap.
 */
export function fileWritable(child: ChildInfo | undefined, parent: DirRef): boolean {
  if (!parent.writable) return false;
  if (!child) return true;
  if (child.type !== 'file') return false;
  const access = entryAccess(child);
  return access !== undefined && (access.immutable || access.writable);
}

export function requireWritableFile(child: ChildInfo | undefined, parent: DirRef, path: string): void {
  if (!fileWritable(child, parent)) throw new FsError('EROFS', `read-only file: ${path}`);
}

export class Attributes {
  constructor(
    private readonly uid: number,
    private readonly gid: number,
    private readonly mountTime: Timestamp,
    /** Whether stored owners are shown (a mount shared by several users): otherwise all is the mounting user's. */
    private readonly owners = false,
  ) {}

  /** The mounted root: it has no link to carry metadata. */
  root(writable: boolean): Attr {
    return this.make(S_IFDIR, 0o755, !writable, {}, 4096, this.mountTime, this.mountTime);
  }

  entry(child: ChildInfo, parent: DirRef): Attr {
    const own = ownMetadataOf(child.metadata);
    const times = linkTimes(child.metadata);
    if (child.type === 'dir') return this.make(S_IFDIR, 0o755, !dirRefOf(child).writable, own, 4096, times.mtime, times.ctime);
    return this.file(own, sizeOf(child), fileWritable(child, parent), times.mtime, times.ctime);
  }

  openFile(file: OpenFileState): Attr {
    const mtime = file.dirty && file.mtime ? file.mtime : file.child ? linkTimes(file.child.metadata).mtime : this.mountTime;
    const attr = this.file(file.own, file.size, fileWritable(file.child, file.parent), mtime, mtime);
    if (file.unlinked) attr.nlink = 0;
    return attr;
  }

  private file(own: OwnMetadata, size: number, writable: boolean, mtime: Timestamp, ctime: Timestamp): Attr {
    const type = own.posix?.type;
    if (type === 'symlink') return this.make(S_IFLNK, 0o777, false, {}, Buffer.byteLength(own.posix?.target ?? ''), mtime, ctime, own);
    if (type) return this.make(TYPE_BITS[type], 0o644, !writable, own, 0, mtime, ctime);
    return this.make(S_IFREG, 0o644, !writable, own, size, mtime, ctime);
  }

  /** Permission bits (modeOf); no write bit where nothing may be written (a read-only cap). */
  private make(typeBits: number, defaultMode: number, readOnly: boolean, own: OwnMetadata, size: number, mtime: Timestamp, ctime: Timestamp, ids: OwnMetadata = own): Attr {
    let mode = modeOf(own, defaultMode);
    if (readOnly) mode &= ~0o222;
    const posix = ids.posix;
    const attr: Attr = {
      mode: typeBits | mode,
      size,
      nlink: typeBits === S_IFDIR ? 2 : 1,
      uid: this.owners ? (posix?.uid ?? this.uid) : this.uid,
      gid: this.owners ? (posix?.gid ?? this.gid) : this.gid,
      atime: (posix?.atime !== undefined ? parseNs(posix.atime) : undefined) ?? mtime,
      ctime: later(ctime, posix?.ctime !== undefined ? parseNs(posix.ctime) : undefined),
      mtime,
    };
    if ((typeBits === S_IFCHR || typeBits === S_IFBLK) && posix) attr.rdev = joinDev(posix.major ?? 0, posix.minor ?? 0);
    return attr;
  }
}

function later(a: Timestamp, b: Timestamp | undefined): Timestamp {
  return b && (b.sec > a.sec || (b.sec === a.sec && b.nsec > a.nsec)) ? b : a;
}

/**
 * The 12 bits as chmod stored them, whole. "no-write" is only the signal other Tahoe clients read and write (the
 * SFTP frontend): ours is always in step with the stored owner write bit (posix.ts withMode), so a mismatch is a
 * change another client made after our chmod, and that client wins, as the later change: "no-write" added
 * clears every write bit (what the SFTP frontend shows), "no-write" removed gives the owner the write bit. A link
 * with no stored mode (another client's file) has the default, less its write bits under "no-write".
 */
export function modeOf(own: OwnMetadata, defaultMode: number): number {
  const stored = own.posix?.mode;
  const noWrite = own['no-write'] === true;
  if (stored === undefined) return noWrite ? defaultMode & ~0o222 : defaultMode;
  const ownerWrites = (stored & 0o200) !== 0;
  if (noWrite && ownerWrites) return stored & ~0o222;
  if (!noWrite && !ownerWrites) return stored | 0o200;
  return stored;
}

const TYPE_BITS: Record<Exclude<SpecialType, 'symlink'>, number> = { fifo: S_IFIFO, socket: S_IFSOCK, char: S_IFCHR, block: S_IFBLK };
