// The seam between the filesystem core and its edges (FUSE adapter, RPC): the Ops interface, and the one
// op table from which the edges derive every list of ops. Op names are FUSE's, so that a kernel trace greps
// straight to the code. Everything in and out is plain data that survives JSON, except Buffers, which the
// RPC carries as raw bytes (only for read and write, which split mode uses as a fallback: see readSource).

/** A time as seconds and nanoseconds: exact, so that rsync and tar see back the times they set. */
export interface Timestamp {
  sec: number;
  nsec: number;
}

export interface Attr {
  mode: number;
  size: number;
  nlink: number;
  uid: number;
  gid: number;
  atime: Timestamp;
  mtime: Timestamp;
  ctime: Timestamp;
  /** Device numbers of a character or block device (Linux's encoding). */
  rdev?: number;
}

export interface StatFs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

/** One entry of a directory with its attributes (readdirplus). */
export interface DirEntry {
  name: string;
  attr: Attr;
}

/** Where bytes of an open file can be read on the local disk (readSource). */
export interface ReadSource {
  /** A local file holding those bytes at the same offsets; null when there is none (a literal cap): use read(). */
  file: string | null;
  /** Bytes there from the position: short at the end of the file, 0 past it (then `file` is null). */
  length: number;
  /**
   * Immutable content only: every byte from the position up to `until` is in `file` and stays there while the
   * handle is open, and the file's content is `size` bytes, so that the caller may read that far again without
   * asking (until a write to the file, through any handle, makes a staging file the source).
   */
  until?: number;
  size?: number;
  /** Short only because the bytes after these are in another local file: ask again from there for the rest. */
  more?: true;
}

/** Every operation may reject with an FsError; anything else reaching an edge is a bug and becomes EIO. */
export interface Ops {
  getattr(path: string): Promise<Attr>;
  /** Attributes through an open handle: an unlinked open file has no path any more. */
  fgetattr(path: string, fh: number): Promise<Attr>;
  readdir(path: string): Promise<string[]>;
  /** Every entry of a directory but '.' and '..', each with what getattr would show for it: one call for `ls -l`. */
  readdirplus(path: string): Promise<DirEntry[]>;
  access(path: string, mode: number): Promise<void>;
  statfs(path: string): Promise<StatFs>;

  /** Returns a file handle number (never 0: the FUSE binding reads 0 as "no handle"). */
  open(path: string, flags: number): Promise<number>;
  /** `mode` has the umask applied already (by the kernel). */
  create(path: string, mode: number, uid: number, gid: number): Promise<number>;
  read(path: string, fh: number, length: number, position: number): Promise<Buffer>;
  /**
   * The same read into the caller's buffer, when the filesystem runs in the caller's process: the FUSE
   * adapter then fills the kernel's buffer directly, with no copy. Not an RPC method.
   */
  readInto?(path: string, fh: number, target: Buffer, position: number): Promise<number>;
  write(path: string, fh: number, data: Buffer, position: number): Promise<number>;
  /**
   * Split mode moves no file bytes over the socket: the client reads and writes the server's local files
   * itself. readSource says where `length` bytes at `position` of an open file can be read on the local disk,
   * once they are there (what is missing is downloaded first); `file: null` when the content has no local
   * file (a literal cap): the caller then uses read().
   */
  readSource(path: string, fh: number, position: number, length: number): Promise<ReadSource>;
  /**
   * The local file holding the whole content of a handle opened for reading, if it is whole on the disk now and
   * cannot change while the handle is open (immutable content, nothing written): the FUSE edge then lets the
   * kernel read it directly (passthrough). Never waits for a download: null otherwise.
   */
  backingFile(path: string, fh: number): Promise<string | null>;
  /**
   * Before the caller writes `length` bytes at `position` into the file's staging file itself: makes the
   * staging file (over the current content if needed), holds off any upload of it until endWrite (bounded: see
   * open-files.ts), and returns its path.
   */
  beginWrite(path: string, fh: number, position: number, length: number): Promise<string>;
  /**
   * After the caller's own write of `length` bytes at `position` (fewer if its write failed partway; 0 if
   * none): the size, dirty state, generation and record are updated as write() does, and the hold ends.
   */
  endWrite(path: string, fh: number, position: number, length: number): Promise<void>;
  /** close(2) waits for flush: a dirty file is uploaded and linked before it returns. */
  flush(path: string, fh: number): Promise<void>;
  fsync(path: string, fh: number, datasync: boolean): Promise<void>;
  release(path: string, fh: number): Promise<void>;
  truncate(path: string, size: number): Promise<void>;
  ftruncate(path: string, fh: number, size: number): Promise<void>;

  mkdir(path: string, mode: number, uid: number, gid: number): Promise<void>;
  /** A symbolic link at `path` holding `target`, which is only text (the kernel follows it). */
  symlink(target: string, path: string, uid: number, gid: number): Promise<void>;
  readlink(path: string): Promise<string>;
  /** A fifo, socket, or character or block device (`mode` has the type bits; `rdev` the device numbers). */
  mknod(path: string, mode: number, rdev: number, uid: number, gid: number): Promise<void>;
  rmdir(path: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  link(from: string, to: string): Promise<void>;

  /** Times in nanoseconds since the epoch, as decimal strings (exact, and JSON-safe); '' leaves that time as it is. */
  utimens(path: string, atimeNs: string, mtimeNs: string): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  /** -1 leaves an id unchanged. */
  chown(path: string, uid: number, gid: number): Promise<void>;

  /** Extended attributes: user.* stored in the link metadata, user.tahoe.* computed (read-only). */
  getxattr(path: string, name: string): Promise<Buffer>;
  /** Every name getxattr answers, but the computed ones unless the mount lists them. */
  listxattr(path: string): Promise<string[]>;
  /** `flags`: XATTR_CREATE (1) or XATTR_REPLACE (2). */
  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void>;
  removexattr(path: string, name: string): Promise<void>;

  /**
   * Calls `listener(dirPath, name, kind)` for each entry that a refreshed listing shows changed by someone else,
   * so that the FUSE edge can drop what the kernel keeps of it. Best effort: a spurious call costs a kernel
   * cache miss. Not an RPC method: the RPC pushes these as notifications (see rpc/protocol.ts).
   */
  watch?(listener: ChangeListener): void;
}

/**
 * `entry`: the name was added or removed, or now holds another cap (the kernel must look it up again).
 * `attributes`: the same cap, with another size or mtime (the kernel must drop its attributes and pages, but
 * not the name: it may be a directory someone is in).
 */
export type ChangeKind = 'entry' | 'attributes';
export type ChangeListener = (dirPath: string, name: string, kind: ChangeKind) => void;

/** The ops that cross the RPC as calls (readInto is local only; watch is a notification stream). */
export type OpName = Exclude<keyof Ops, 'readInto' | 'watch'>;

/** How an argument travels: a JSON value of that type, or (`data`) a Buffer sent as the frame's raw bytes. */
export type ArgKind = 'string' | 'number' | 'boolean' | 'data';

type KindOf<T> = T extends string ? 'string' : T extends number ? 'number' : T extends boolean ? 'boolean' : T extends Buffer ? 'data' : never;
type KindsOf<P extends readonly unknown[]> = { readonly [I in keyof P]: KindOf<P[I]> };

/** What the edges need to know about one op. The types tie each row to the op's signature in Ops. */
export interface OpSpec<K extends OpName = OpName> {
  /** Argument kinds in the method's order: the RPC server checks requests against them. */
  readonly args: KindsOf<Parameters<Ops[K]>>;
  /** May upload or download a whole file (a close() uploads it): the long deadlines (src/deadlines.ts), in the RPC and the FUSE adapter. */
  readonly long: boolean;
  /** The result is bytes, sent raw rather than as JSON. */
  readonly result: Awaited<ReturnType<Ops[K]>> extends Buffer ? 'data' : 'json';
}

/**
 * The one table of ops: every other list of op names (RPC methods, argument checks, the RPC's deadlines and
 * the FUSE adapter's backstops) derives from it. An op added to Ops without a row here, or a row that does not fit its signature,
 * does not compile.
 */
export const OP_TABLE: { readonly [K in OpName]: OpSpec<K> } = {
  getattr: { args: ['string'], long: false, result: 'json' },
  fgetattr: { args: ['string', 'number'], long: false, result: 'json' },
  readdir: { args: ['string'], long: false, result: 'json' },
  readdirplus: { args: ['string'], long: false, result: 'json' },
  access: { args: ['string', 'number'], long: false, result: 'json' },
  statfs: { args: ['string'], long: false, result: 'json' },
  // Long: an open may fetch a mutable file whole, a truncate wait for a snapshot of one, a flush, fsync or release
  // upload the file, a link upload the dirty file it links.
  open: { args: ['string', 'number'], long: true, result: 'json' },
  create: { args: ['string', 'number', 'number', 'number'], long: true, result: 'json' },
  read: { args: ['string', 'number', 'number', 'number'], long: true, result: 'data' },
  write: { args: ['string', 'number', 'data', 'number'], long: true, result: 'json' },
  // Long: a readSource may wait for a download, a beginWrite for an upload and a mutable file's snapshot, an
  // endWrite for the staging record.
  readSource: { args: ['string', 'number', 'number', 'number'], long: true, result: 'json' },
  backingFile: { args: ['string', 'number'], long: false, result: 'json' },
  beginWrite: { args: ['string', 'number', 'number', 'number'], long: true, result: 'json' },
  endWrite: { args: ['string', 'number', 'number', 'number'], long: true, result: 'json' },
  flush: { args: ['string', 'number'], long: true, result: 'json' },
  fsync: { args: ['string', 'number', 'boolean'], long: true, result: 'json' },
  release: { args: ['string', 'number'], long: true, result: 'json' },
  truncate: { args: ['string', 'number'], long: true, result: 'json' },
  ftruncate: { args: ['string', 'number', 'number'], long: true, result: 'json' },
  mkdir: { args: ['string', 'number', 'number', 'number'], long: false, result: 'json' },
  symlink: { args: ['string', 'string', 'number', 'number'], long: false, result: 'json' },
  readlink: { args: ['string'], long: false, result: 'json' },
  mknod: { args: ['string', 'number', 'number', 'number', 'number'], long: false, result: 'json' },
  rmdir: { args: ['string'], long: false, result: 'json' },
  unlink: { args: ['string'], long: false, result: 'json' },
  rename: { args: ['string', 'string'], long: false, result: 'json' },
  link: { args: ['string', 'string'], long: true, result: 'json' },
  utimens: { args: ['string', 'string', 'string'], long: false, result: 'json' },
  chmod: { args: ['string', 'number'], long: false, result: 'json' },
  chown: { args: ['string', 'number', 'number'], long: false, result: 'json' },
  getxattr: { args: ['string', 'string'], long: false, result: 'data' },
  listxattr: { args: ['string'], long: false, result: 'json' },
  setxattr: { args: ['string', 'string', 'data', 'number'], long: false, result: 'json' },
  removexattr: { args: ['string', 'string'], long: false, result: 'json' },
};

export const OP_NAMES: readonly OpName[] = Object.keys(OP_TABLE) as OpName[];

/** Whether a name from outside (an RPC method) is an op; own keys only, so `__proto__` is not one. */
export function isOpName(name: string): name is OpName {
  return Object.hasOwn(OP_TABLE, name);
}
