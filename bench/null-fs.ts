// The ceiling for the benchmark: a filesystem that does nothing, served by the same FUSE binding with the
// same options as blackmatch. One file, /data, of a fixed size: reads answer zeros, writes are accepted.
import { mount } from '../src/fuse/mount.js';
import { FsError } from '../src/errors.js';
import type { Attr, Ops } from '../src/fs/ops.js';
import { silentLogger } from '../src/log.js';

const mountpoint = process.argv[2];
const size = Number(process.argv[3] ?? 256 * 1024 * 1024);
if (!mountpoint) throw new Error('usage: null-fs MOUNTPOINT [SIZE]');

const now = { sec: Math.floor(Date.now() / 1000), nsec: 0 };
const attr = (mode: number, bytes: number): Attr => ({ mode, size: bytes, nlink: 1, uid: 0, gid: 0, atime: now, mtime: now, ctime: now });
let fileSize = size;

const ops: Ops = {
  getattr: async (path) => {
    if (path === '/') return attr(0o40755, 4096);
    if (path === '/data') return attr(0o100644, fileSize);
    throw new FsError('ENOENT', path);
  },
  fgetattr: async (path) => ops.getattr(path),
  readdir: async () => ['.', '..', 'data'],
  readdirplus: async () => [{ name: 'data', attr: attr(0o100644, fileSize) }],
  access: async () => undefined,
  statfs: async () => ({ bsize: 4096, frsize: 4096, blocks: 1, bfree: 1, bavail: 1, files: 1, ffree: 1, favail: 1, namemax: 255 }),
  open: async () => 1,
  create: async () => 1,
  read: async (_p, _fh, length, position) => Buffer.alloc(Math.max(0, Math.min(length, fileSize - position))),
  write: async (_p, _fh, data, position) => {
    fileSize = Math.max(fileSize, position + data.length);
    return data.length;
  },
  // No local files: a caller falls back to read() and write().
  backingFile: async () => null,
  readSource: async (_p, _fh, position, length) => ({ file: null, length: Math.max(0, Math.min(length, fileSize - position)) }),
  beginWrite: async () => {
    throw new FsError('ENOSYS', 'no local files');
  },
  endWrite: async () => undefined,
  flush: async () => undefined,
  fsync: async () => undefined,
  release: async () => undefined,
  truncate: async (_p, s) => {
    fileSize = s;
  },
  ftruncate: async (_p, _fh, s) => {
    fileSize = s;
  },
  mkdir: async () => undefined,
  rmdir: async () => undefined,
  unlink: async () => undefined,
  rename: async () => undefined,
  link: async () => undefined,
  utimens: async () => undefined,
  chmod: async () => undefined,
  chown: async () => undefined,
  symlink: async () => undefined,
  readlink: async (path) => {
    throw new FsError('EINVAL', path);
  },
  mknod: async () => undefined,
  getxattr: async (path) => {
    throw new FsError('ENODATA', path);
  },
  listxattr: async () => [],
  setxattr: async () => undefined,
  removexattr: async (path) => {
    throw new FsError('ENODATA', path);
  },
};

const mounted = await mount(mountpoint, ops, { fsname: 'nullfs', options: [], log: silentLogger() });
process.stdout.write('ready\n');
process.on('SIGTERM', () => void mounted.unmount());
await mounted.gone;
process.exit(0);
