// What stat(2) shows for a Tahoe entry or an open file: type, permission bits from what we may change, size,
// and times from the link metadata. Pure: no state beyond the owner and the mount time given at start.
import { constants } from 'node:fs';
import { FsError } from '../errors.js';
import type { ChildInfo } from '../tahoe/client.js';
import { entryAccess, linkTimes, sizeOf, type Timestamp } from '../tahoe/links.js';
import type { DirRef } from './directories.js';
import { dirRefOf } from './directories.js';
import type { Attr } from './ops.js';

const { S_IFDIR, S_IFREG } = constants;

/** What attributes need of an open file (see open-files.ts). */
export interface OpenFileState {
  parent: DirRef;
  child: ChildInfo | undefined;
  size: number;
  dirty: boolean;
  mtime: Timestamp | undefined;
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
  ) {}

  dir(writable: boolean, child: ChildInfo | undefined): Attr {
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

  entry(child: ChildInfo, parent: DirRef): Attr {
    if (child.type === 'dir') return this.dir(dirRefOf(child).writable, child);
    const times = linkTimes(child.metadata);
    return this.file(sizeOf(child), fileWritable(child, parent), times.mtime, times.ctime);
  }

  openFile(file: OpenFileState): Attr {
    const times = file.child ? linkTimes(file.child.metadata) : { mtime: this.mountTime, ctime: this.mountTime };
    const mtime = file.dirty && file.mtime ? file.mtime : times.mtime;
    return this.file(file.size, fileWritable(file.child, file.parent), mtime, file.child ? times.ctime : mtime);
  }

  private file(size: number, writable: boolean, mtime: Timestamp, ctime: Timestamp): Attr {
    return { mode: S_IFREG | (writable ? 0o644 : 0o444), size, nlink: 1, uid: this.uid, gid: this.gid, atime: mtime, mtime, ctime };
  }
}
