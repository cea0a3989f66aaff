// The seam between the filesystem core and its edges (FUSE adapter, RPC). Op names are FUSE's, so that a
// kernel trace greps straight to the code. Everything in and out is plain data that survives JSON,
// except Buffers, which the RPC carries as raw bytes.

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

export const OP_NAMES: readonly OpName[] = [
  'getattr', 'fgetattr', 'readdir', 'access', 'statfs', 'open', 'create', 'read', 'write', 'flush', 'fsync', 'release',
  'truncate', 'ftruncate', 'mkdir', 'rmdir', 'unlink', 'rename', 'link', 'utimens', 'chmod', 'chown',
];
