// The typed face of our libfuse 3 binding (native/fuse3): loads the addon and names what crosses it. Requests
// arrive as (op, req, args); each is answered exactly once with one of the session's reply methods.
import { createRequire } from 'node:module';
import type { Timestamp } from '../fs/ops.js';

/**
 * The request kinds this side answers, as a set. Their numbers are the addon's: `ops` (session.cc's kOpNames)
 * names each, the one list of them; fuse3() checks at load that it names exactly these.
 */
const KNOWN_OPS = {
  lookup: true, forget: true, getattr: true, setattr: true, readlink: true, mknod: true, mkdir: true, unlink: true,
  rmdir: true, symlink: true, rename: true, link: true, open: true, read: true, write: true, flush: true,
  release: true, fsync: true, opendir: true, readdir: true, releasedir: true, statfs: true, access: true,
  create: true, readdirplus: true, getxattr: true, setxattr: true, listxattr: true, removexattr: true, gone: true,
} as const;
export type OpKind = keyof typeof KNOWN_OPS;

/** What a request carries; which fields are set depends on its kind (see Deliver in session.cc). */
export interface RequestArgs {
  ino: number;
  uid: number;
  gid: number;
  pid: number;
  /** The open handle, for ops on one. */
  fh?: number;
  /** With `fh`: the open flags; rename: RENAME_*; setxattr: XATTR_CREATE (1) or XATTR_REPLACE (2). */
  flags?: number;
  /** Names are raw bytes: Linux names need not be UTF-8. */
  name?: Buffer;
  newParent?: number;
  newName?: Buffer;
  target?: Buffer;
  mode?: number;
  umask?: number;
  /** mknod: the device numbers. */
  rdev?: number;
  size?: number;
  offset?: number;
  data?: Buffer;
  toSet?: number;
  attr?: { mode: number; uid: number; gid: number; size: number; atime: Timestamp; mtime: Timestamp };
  /** forget: ino, nlookup, ino, nlookup, ... */
  forgets?: number[];
  /** gone: what fuse_session_loop returned. */
  result?: number;
}

/** Attributes as the binding takes them (a struct stat). */
export interface NativeAttr {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  blksize: number;
  /** The device a character or block special file stands for. */
  rdev?: number;
  atime: Timestamp;
  mtime: Timestamp;
  ctime: Timestamp;
}

export interface NativeEntry {
  ino: number;
  generation: number;
  attr: NativeAttr;
  /** Seconds the kernel may trust the name and the attributes. */
  entryTimeout: number;
  attrTimeout: number;
}

export interface NativeOpen {
  fh: number;
  /** The kernel may keep the file's pages from earlier opens. */
  keepCache?: boolean;
  directIo?: boolean;
  /** Hand reads and writes of this handle to the kernel, straight from this file (where passthrough works). */
  backingFd?: number;
  /** The backing file the node's other passed-through handles use: the kernel wants one per node. */
  backingId?: number;
}

export type DirEntryOut = { name: Buffer; ino: number; mode: number } | (NativeEntry & { name: Buffer });

export interface NativeSession {
  mount(mountpoint: string, options: string[], maxWrite: number, passthrough: boolean): void;
  /** Tears the session down once its loop has returned (after `gone`); before that does nothing and says false. */
  close(): boolean;
  replyErr(req: number, errno: number): void;
  replyNone(req: number): void;
  replyEntry(req: number, entry: NativeEntry): void;
  replyCreate(req: number, entry: NativeEntry, open: NativeOpen): number;
  replyAttr(req: number, attr: NativeAttr, timeoutSeconds: number): void;
  replyOpen(req: number, open: NativeOpen): number;
  replyBuf(req: number, data: Buffer, length: number): void;
  replyWrite(req: number, count: number): void;
  /** The answer to a getxattr or listxattr of size 0: how long the value or the name list is. */
  replyXattr(req: number, size: number): void;
  replyStatfs(req: number, statfs: Record<string, number>): void;
  replyReadlink(req: number, target: Buffer): void;
  /** Packs entries from the first until `size` is full; entry i gets offset firstOffset + i + 1. Returns how many fitted. */
  replyDirectory(req: number, size: number, firstOffset: number, entries: DirEntryOut[], plus: boolean): number;
  notify(kind: 'entry', parent: number, name: Buffer): void;
  notify(kind: 'inode', ino: number): void;
  /** The kernel forgot the node a backing file (from replyOpen) was bound to: the backing file goes too. */
  backingClose(backingId: number): void;
  info(): { passthrough: boolean };
}

interface Addon {
  Session: new (handler: (op: number, req: number, args: RequestArgs) => void) => NativeSession;
  /** The name of each request kind, by the number the handler gets. */
  ops: readonly OpKind[];
  /** libfuse's version as major * 100 + minor (314 for 3.14). */
  libfuseVersion: number;
  /** Whether the addon was built against a libfuse with passthrough (3.16 and later). */
  passthroughBuilt: boolean;
}

let addon: Addon | undefined;

/** The addon, loaded on first use (so that a command that never mounts works without it). */
export function fuse3(): Addon {
  if (!addon) {
    const require = createRequire(import.meta.url);
    let loaded: Addon;
    try {
      loaded = require('../../../native/fuse3/build/Release/blackmatch_fuse3.node') as Addon;
    } catch (e) {
      throw new Error(`the FUSE binding is not built (run npm run setup): ${(e as Error).message}`, { cause: e });
    }
    checkOps(loaded.ops);
    addon = loaded;
  }
  return addon;
}

/** The name of each request kind, by its number: the addon's list. */
export function opKinds(): readonly OpKind[] {
  return fuse3().ops;
}

/**
 * A binding whose request kinds are not exactly OpKind (built from other sources than this build, or an Op
 * added on one side only) would have requests answered as the wrong op: refuse to run with it.
 */
function checkOps(ops: unknown): void {
  const names: unknown[] = Array.isArray(ops) ? ops : [];
  const unknown = names.filter((n) => typeof n !== 'string' || !Object.hasOwn(KNOWN_OPS, n));
  const missing = Object.keys(KNOWN_OPS).filter((n) => !names.includes(n));
  if (!Array.isArray(ops) || unknown.length > 0 || missing.length > 0 || new Set(names).size !== names.length) {
    throw new Error(
      `the FUSE binding's request kinds do not match src/fuse/lowlevel.ts (unknown: ${unknown.join(', ') || 'none'}; ` +
        `missing: ${missing.join(', ') || 'none'}): rebuild it (npm run setup)`,
    );
  }
}

export function libfuseVersionText(): string {
  const v = fuse3().libfuseVersion;
  return `${Math.floor(v / 100)}.${v % 100}`;
}
