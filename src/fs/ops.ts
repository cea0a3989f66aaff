// The seam between the filesystem core and its edges (FUSE adapter, RPC): the Ops interface, and the one
// op table from which the edges derive every list of ops. Op names are FUSE's, so that a kernel trace greps
// straight to the code. Everything in and out is plain data that survives JSON, except Buffers, which the
// RPC carries as raw bytes.

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

/** Every operation may reject with an FsError; anything else reaching an edge is a bug and becomes EIO. */
export interface Ops {
  getattr(path: string): Promise<Attr>;
  /** Attributes through an open handle: an unlinked open file has no path any more. */
  fgetattr(path: string, fh: number): Promise<Attr>;
  readdir(path: string): Promise<string[]>;
  access(path: string, mode: number): Promise<void>;
  statfs(path: string): Promise<StatFs>;

  /** Returns a file handle number (never 0: the FUSE binding reads 0 as "no handle"). */
  open(path: string, flags: number): Promise<number>;
  create(path: string, mode: number): Promise<number>;
  read(path: string, fh: number, length: number, position: number): Promise<Buffer>;
  /**
   * The same read into the caller's buffer, when the filesystem runs in the caller's process: the FUSE
   * adapter then fills the kernel's buffer directly, with no copy. Not an RPC method.
   */
  readInto?(path: string, fh: number, target: Buffer, position: number): Promise<number>;
  write(path: string, fh: number, data: Buffer, position: number): Promise<number>;
  /** close(2) waits for flush: a dirty file is uploaded and linked before it returns. */
  flush(path: string, fh: number): Promise<void>;
  fsync(path: string, fh: number, datasync: boolean): Promise<void>;
  release(path: string, fh: number): Promise<void>;
  truncate(path: string, size: number): Promise<void>;
  ftruncate(path: string, fh: number, size: number): Promise<void>;

  mkdir(path: string, mode: number): Promise<void>;
  rmdir(path: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  link(from: string, to: string): Promise<void>;

  /** Times in nanoseconds since the epoch, as decimal strings (exact, and JSON-safe). */
  utimens(path: string, atimeNs: string, mtimeNs: string): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  chown(path: string, uid: number, gid: number): Promise<void>;
}

/** The ops that cross the RPC (readInto is local only). */
export type OpName = Exclude<keyof Ops, 'readInto'>;

/** How an argument travels: a JSON value of that type, or (`data`) a Buffer sent as the frame's raw bytes. */
export type ArgKind = 'string' | 'number' | 'boolean' | 'data';

type KindOf<T> = T extends string ? 'string' : T extends number ? 'number' : T extends boolean ? 'boolean' : T extends Buffer ? 'data' : never;
type KindsOf<P extends readonly unknown[]> = { readonly [I in keyof P]: KindOf<P[I]> };

/** What the edges need to know about one op. The types tie each row to the op's signature in Ops. */
export interface OpSpec<K extends OpName = OpName> {
  /** Argument kinds in the method's order: the RPC server checks requests against them. */
  readonly args: KindsOf<Parameters<Ops[K]>>;
  /** May upload or download a whole file (a close() uploads it): the long deadlines, in the RPC and the binding. */
  readonly long: boolean;
  /** The result is bytes, sent raw rather than as JSON. */
  readonly result: Awaited<ReturnType<Ops[K]>> extends Buffer ? 'data' : 'json';
}

/**
 * The one table of ops: every other list of op names (RPC methods, argument checks, deadlines, the binding's
 * timeouts) derives from it. An op added to Ops without a row here, or a row that does not fit its signature,
 * does not compile.
 */
export const OP_TABLE: { readonly [K in OpName]: OpSpec<K> } = {
  getattr: { args: ['string'], long: false, result: 'json' },
  fgetattr: { args: ['string', 'number'], long: false, result: 'json' },
  readdir: { args: ['string'], long: false, result: 'json' },
  access: { args: ['string', 'number'], long: false, result: 'json' },
  statfs: { args: ['string'], long: false, result: 'json' },
  // Long: an open may fetch a mutable file whole, a truncate copy the content first, a flush, fsync or release
  // upload the file, a link upload the dirty file it links.
  open: { args: ['string', 'number'], long: true, result: 'json' },
  create: { args: ['string', 'number'], long: true, result: 'json' },
  read: { args: ['string', 'number', 'number', 'number'], long: true, result: 'data' },
  write: { args: ['string', 'number', 'data', 'number'], long: true, result: 'json' },
  flush: { args: ['string', 'number'], long: true, result: 'json' },
  fsync: { args: ['string', 'number', 'boolean'], long: true, result: 'json' },
  release: { args: ['string', 'number'], long: true, result: 'json' },
  truncate: { args: ['string', 'number'], long: true, result: 'json' },
  ftruncate: { args: ['string', 'number', 'number'], long: true, result: 'json' },
  mkdir: { args: ['string', 'number'], long: false, result: 'json' },
  rmdir: { args: ['string'], long: false, result: 'json' },
  unlink: { args: ['string'], long: false, result: 'json' },
  rename: { args: ['string', 'string'], long: false, result: 'json' },
  link: { args: ['string', 'string'], long: true, result: 'json' },
  utimens: { args: ['string', 'string', 'string'], long: false, result: 'json' },
  chmod: { args: ['string', 'number'], long: false, result: 'json' },
  chown: { args: ['string', 'number', 'number'], long: false, result: 'json' },
};

export const OP_NAMES: readonly OpName[] = Object.keys(OP_TABLE) as OpName[];

/** Whether a name from outside (an RPC method) is an op; own keys only, so `__proto__` is not one. */
export function isOpName(name: string): name is OpName {
  return Object.hasOwn(OP_TABLE, name);
}
