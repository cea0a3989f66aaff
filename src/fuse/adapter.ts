// The thin FUSE edge: turns any Ops (the core itself, or the RPC client in split mode) into @cocalc/fuse-native
// handlers. Paths become Unicode NFC and errors negative errno numbers here and nowhere else.
import { createRequire } from 'node:module';
import { readFile, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type * as FuseModule from '@cocalc/fuse-native';
import { isExpected, loggedElsewhere, toErrno } from '../errors.js';
import { OP_NAMES, OP_TABLE, type Attr, type Ops } from '../fs/ops.js';
import type { Logger } from '../log.js';

const require = createRequire(import.meta.url);
type FuseOperations = FuseModule.default.OPERATIONS;
const Fuse = require('@cocalc/fuse-native') as typeof FuseModule.default.default;

/** Largest read and write per FUSE request: libfuse 2 sends 4 KiB writes unless big_writes is on. */
export const FUSE_MAX_IO = 128 * 1024;
/** Kernel readahead for the mount, in KiB: eight 128 KiB requests in flight. */
const READAHEAD_KB = 1024;

/**
 * The binding answers a request itself if a handler is silent for this long (a last resort: the core bounds
 * every network wait itself). Data operations may legitimately take long: a close() uploads the whole file.
 */
const BINDING_TIMEOUT_MS: Record<string, number> = {
  default: 180_000,
  ...Object.fromEntries(OP_NAMES.filter((op) => OP_TABLE[op].long).map((op) => [op, 3_600_000])),
};

/**
 * Tahoe stores child names in NFC (a name linked in NFD is listed back in NFC), so the core sees every path
 * in NFC: a file created under a decomposed name is still found after its directory is listed again.
 */
function nfc(path: string | undefined): string {
  return (path ?? '').normalize('NFC');
}

type Reply = (errno: number, ...values: unknown[]) => void;

function fuseStat(attr: Attr): Record<string, number> {
  const ms = (t: { sec: number; nsec: number }) => t.sec * 1000 + Math.floor(t.nsec / 1e6);
  return {
    mode: attr.mode,
    uid: attr.uid,
    gid: attr.gid,
    size: attr.size,
    nlink: attr.nlink,
    blksize: FUSE_MAX_IO,
    blocks: Math.ceil(attr.size / 512),
    atime: ms(attr.atime),
    mtime: ms(attr.mtime),
    ctime: ms(attr.ctime),
    // Understood by our patch of the binding (patches/): exact nanoseconds for rsync and tar.
    atimeSubMsNs: attr.atime.nsec % 1e6,
    mtimeSubMsNs: attr.mtime.nsec % 1e6,
    ctimeSubMsNs: attr.ctime.nsec % 1e6,
  };
}

export function fuseHandlers(ops: Ops, log: Logger): FuseOperations {
  let seq = 0;
  /**
   * Runs one op on the NFC form of its path: logs it at debug level, maps its failure to -errno; never throws
   * into the binding.
   */
  function run<T>(op: string, rawPath: string | undefined, work: (path: string) => Promise<T>, ok: (value: T) => void, fail: (errno: number) => void, bytes?: number): void {
    const id = ++seq;
    const started = performance.now();
    const path = nfc(rawPath);
    let promise: Promise<T>;
    try {
      promise = work(path);
    } catch (e) {
      promise = Promise.reject(e);
    }
    promise.then(
      (value) => {
        log.debug({ id, op, path, bytes, ms: +(performance.now() - started).toFixed(2) }, 'ok');
        ok(value);
      },
      (err: unknown) => {
        const errno = toErrno(err);
        // A failure in the server was logged there, with its stack: a failure is logged once, where it happened.
        if (isExpected(err) || loggedElsewhere(err)) log.debug({ id, op, path, errno, reason: (err as Error).message }, 'failed');
        else log.error({ id, op, path, errno, err: err instanceof Error ? err.stack : String(err) }, 'failed');
        fail(-errno);
      },
    );
  }
  const simple = (op: string, path: string | undefined, work: (path: string) => Promise<unknown>, cb: (err: number) => void) =>
    run(op, path, work, () => cb(0), cb);

  // Handle-based ops (read, write, flush, fsync, release, ftruncate, fgetattr) may come without a path: libfuse
  // passes none for a file unlinked while open. The core needs only the handle for them (it gets '').
  const handlers: FuseOperations = {
    getattr: (path, cb) => run('getattr', path, (p) => ops.getattr(p), (a) => cb(0, fuseStat(a) as never), (e) => cb(e)),
    // Our patch of the binding calls fgetattr with the handle: after unlink (hard_remove) there is no path.
    fgetattr: (path, fd, cb) => run('fgetattr', path, (p) => ops.fgetattr(p, fd), (a) => cb(0, fuseStat(a) as never), (e) => cb(e)),
    readdir: (path, cb) => run('readdir', path, (p) => ops.readdir(p), (names) => cb(0, names), (e) => cb(e)),
    access: (path, mode, cb) => simple('access', path, (p) => ops.access(p, mode), cb),
    statfs: (path, cb) => run('statfs', path, (p) => ops.statfs(p), (s) => cb(0, { ...s, fsid: 0, flag: 0 }), (e) => cb(e)),
    open: (path, flags, cb) => run('open', path, (p) => ops.open(p, flags), (fh) => cb(0, fh), (e) => cb(e)),
    create: (path, mode, cb) => run('create', path, (p) => ops.create(p, mode), (fh) => cb(0, fh), (e) => cb(e)),
    read: (path, fh, buffer, length, position, cb) =>
      ops.readInto
        ? run('read', path, (p) => ops.readInto!(p, fh, buffer.subarray(0, length), position), (n) => cb(n), (e) => cb(e), length)
        : run('read', path, (p) => ops.read(p, fh, length, position), (data) => cb(data.copy(buffer, 0, 0, Math.min(length, data.length))), (e) => cb(e), length),
    write: (path, fh, buffer, length, position, cb) =>
      // The binding's buffer stays valid until we answer (then it is detached): an op must not keep it longer.
      run('write', path, (p) => ops.write(p, fh, buffer.subarray(0, length), position), (n) => cb(n), (e) => cb(e), length),
    flush: (path, fh, cb) => simple('flush', path, (p) => ops.flush(p, fh), cb),
    // The binding passes datasync as 0/1 whatever its typings say; the RPC checks for a boolean.
    fsync: (path, datasync, fh, cb) => simple('fsync', path, (p) => ops.fsync(p, fh, Boolean(datasync)), cb),
    release: (path, fh, cb) => simple('release', path, (p) => ops.release(p, fh), cb),
    truncate: (path, size, cb) => simple('truncate', path, (p) => ops.truncate(p, size), cb),
    ftruncate: (path, fh, size, cb) => simple('ftruncate', path, (p) => ops.ftruncate(p, fh, size), cb),
    mkdir: (path, mode, cb) => simple('mkdir', path, (p) => ops.mkdir(p, mode), cb),
    rmdir: (path, cb) => simple('rmdir', path, (p) => ops.rmdir(p), cb),
    unlink: (path, cb) => simple('unlink', path, (p) => ops.unlink(p), cb),
    rename: (from, to, cb) => simple('rename', from, (f) => ops.rename(f, nfc(to)), cb),
    link: (from, to, cb) => simple('link', from, (f) => ops.link(f, nfc(to)), cb),
    // Our patch of the binding passes nanoseconds as BigInt (the typings still say Date).
    utimens: (path, atime, mtime, cb) =>
      simple('utimens', path, (p) => ops.utimens(p, String(atime as unknown as bigint), String(mtime as unknown as bigint)), cb),
    chmod: (path, mode, cb) => simple('chmod', path, (p) => ops.chmod(p, mode), cb),
    chown: (path, uid, gid, cb) => simple('chown', path, (p) => ops.chown(p, uid, gid), cb),
  };
  return handlers;
}

export interface MountOptions {
  /** Shown as the mount's source in `mount` output, e.g. "blackmatch:tahoe". */
  fsname: string;
  /** Extra -o options from the command line. */
  options: string[];
  /** How long the kernel may trust attributes and names (the directory cache's timeout). */
  kernelCacheSeconds?: number;
  log: Logger;
}

export interface Mounted {
  /** Resolves when the mount disappears (fusermount -u, umount, or our own unmount). */
  gone: Promise<void>;
  unmount(): Promise<void>;
}

/** Mounts and resolves once the kernel has sent FUSE_INIT, i.e. the mount is live and serving. */
export async function mount(mountpoint: string, ops: Ops, opts: MountOptions): Promise<Mounted> {
  const safeName = opts.fsname.replace(/[^A-Za-z0-9_.:@+-]/g, '_');
  // The binding has no option for big_writes and puts fsname into the -o list unescaped: carry ours there.
  const extra = [`big_writes`, `max_write=${FUSE_MAX_IO}`, `max_read=${FUSE_MAX_IO}`];
  if (opts.kernelCacheSeconds !== undefined) {
    // auto_cache keeps a file's pages in the kernel across opens while its mtime and size stay the same:
    // safe for Tahoe, where new content means a new link and so a new mtime.
    const t = opts.kernelCacheSeconds;
    extra.push('auto_cache', `entry_timeout=${t}`, `attr_timeout=${t}`);
  }
  extra.push(...opts.options);
  const fuse = new Fuse(mountpoint, fuseHandlers(ops, opts.log), {
    fsname: [safeName, ...extra].join(','),
    subtype: 'blackmatch',
    timeout: BINDING_TIMEOUT_MS,
  } as unknown as FuseModule.default.OPTIONS);
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
  await raiseReadahead(mountpoint, opts.log);

  let stopped = false;
  const gone = new Promise<void>((resolve) => {
    // libfuse 2 tells the binding nothing when the mount goes away, so watch the mount table.
    const timer = setInterval(() => {
      void isMounted(mountpoint, true).then((mounted) => {
        if (!mounted || stopped) {
          clearInterval(timer);
          resolve();
        }
      });
    }, 500);
  });
  return {
    gone,
    async unmount() {
      if (stopped) return;
      stopped = true;
      await unmountPath(mountpoint);
    },
  };
}

/** Unmounts with fusermount; if the mount is busy, detaches it lazily so that we never hang on it. */
export async function unmountPath(mountpoint: string): Promise<void> {
  const run = promisify(execFile);
  try {
    await run('fusermount', ['-u', mountpoint], { timeout: 10_000 });
  } catch {
    await run('fusermount', ['-uz', mountpoint], { timeout: 10_000 }).catch(() => undefined);
  }
}

/**
 * The kernel reads ahead only 128 KiB on a FUSE mount by default, so a sequential reader has at most two
 * requests in flight and waits on each round trip. A larger window keeps several 128 KiB requests in flight
 * (gcsfuse recommends the same). Only root may change it: for anyone else this is silently skipped.
 */
async function raiseReadahead(mountpoint: string, log: Logger): Promise<void> {
  const line = await mountinfoLine(mountpoint);
  const device = line === 'unreadable' ? undefined : line?.split(' ')[2];
  if (!device) return;
  try {
    await writeFile(`/sys/class/bdi/${device}/read_ahead_kb`, String(READAHEAD_KB));
  } catch (e) {
    log.debug({ err: (e as Error).message }, 'could not raise the readahead window');
  }
}

/** The mount table's line for this path; `unreadable` when the table cannot be read (say, out of fds). */
async function mountinfoLine(mountpoint: string): Promise<string | undefined | 'unreadable'> {
  let table: string;
  try {
    table = await readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return 'unreadable';
  }
  return table.split('\n').find((line) => unescapeMountinfo(line.split(' ')[4] ?? '') === mountpoint);
}

function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Whether something is mounted at this exact path (per /proc/self/mountinfo, with its octal escapes). */
export async function isMounted(mountpoint: string, whenUnknown = false): Promise<boolean> {
  const line = await mountinfoLine(mountpoint);
  return line === 'unreadable' ? whenUnknown : line !== undefined;
}
