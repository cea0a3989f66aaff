// Mounting: a libfuse 3 session over the FUSE edge (adapter.ts), its options, and the mount's life (the kernel
// ending the session, the mount table, unmount with fusermount3, the readahead window).
import { readFile, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Ops } from '../fs/ops.js';
import type { Logger } from '../log.js';
import { FUSE_MAX_IO, FuseAdapter } from './adapter.js';
import { fuse3, libfuseVersionText } from './lowlevel.js';

/** Kernel readahead for the mount, in KiB: two 1 MiB requests in flight for a sequential reader (cached-file.ts waits for its stream within twice that). */
const READAHEAD_KB = 2048;

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

/** What --version and the log say about the FUSE binding: libfuse's version and whether passthrough can work. */
export function fuseDescription(): string {
  try {
    const addon = fuse3();
    const passthrough = addon.passthroughBuilt ? 'passthrough where the kernel allows it (6.9 or later, as root)' : 'no passthrough (libfuse before 3.16)';
    return `libfuse ${libfuseVersionText()}, ${passthrough}`;
  } catch (e) {
    return (e as Error).message;
  }
}

/** libfuse 2 options that libfuse 3 dropped (its defaults now): accepted from old command lines, not passed on. */
const DROPPED_OPTIONS = new Set(['big_writes', 'auto_cache', 'hard_remove', 'use_ino', 'readdir_ino', 'nonempty']);
/** libfuse's high-level options: blackmatch decides these itself (--cache-timeout for the timeouts). */
const HIGH_LEVEL_OPTIONS = new Set(['entry_timeout', 'attr_timeout', 'negative_timeout', 'ac_attr_timeout', 'kernel_cache', 'direct_io', 'uid', 'gid', 'umask', 'remember', 'noforget', 'intr', 'intr_signal', 'modules']);

/** Mounts and returns once the kernel has the mount; requests are served from then on. */
export async function mount(mountpoint: string, ops: Ops, opts: MountOptions): Promise<Mounted> {
  const safeName = opts.fsname.replace(/[^A-Za-z0-9_.:@+-]/g, '_');
  const adapter = new FuseAdapter(ops, { kernelCacheSeconds: opts.kernelCacheSeconds ?? 1, log: opts.log });
  let resolveGone!: () => void;
  const gone = new Promise<void>((resolve) => (resolveGone = resolve));
  const session = new (fuse3().Session)(adapter.handle);
  // The loop returned: the kernel ended the connection, so the session can go. (A lazily detached mount still
  // in use keeps its loop, and is served until its last user goes or the process exits.)
  adapter.attach(session, () => {
    session.close();
    resolveGone();
  });
  const passed = opts.options.filter((o) => {
    const name = o.split('=')[0]!;
    if (HIGH_LEVEL_OPTIONS.has(name)) opts.log.warn({ option: o }, 'ignoring a libfuse high-level option: blackmatch sets this itself');
    return !DROPPED_OPTIONS.has(name) && !HIGH_LEVEL_OPTIONS.has(name);
  });
  // The kernel checks permissions against the modes and owners we show, as on a local filesystem.
  const options = [`fsname=${safeName}`, 'subtype=blackmatch', 'default_permissions', ...passed.filter((o) => o !== 'default_permissions')];
  session.mount(mountpoint, options, FUSE_MAX_IO, true);
  opts.log.info({ fuse: fuseDescription() }, 'FUSE session started');
  await raiseReadahead(mountpoint, opts.log);

  let stopped = false;
  // A lazy unmount of a busy mount detaches it at once but ends the session only when the last file closes:
  // the mount table says when it is gone for programs.
  const timer = setInterval(() => {
    void isMounted(mountpoint, true).then((mounted) => {
      if (!mounted) resolveGone();
    });
  }, 500);
  void gone.then(() => clearInterval(timer));
  return {
    gone,
    async unmount() {
      if (stopped) return;
      stopped = true;
      await unmountPath(mountpoint);
    },
  };
}

/** Unmounts with fusermount3; if the mount is busy, detaches it lazily so that we never hang on it. */
export async function unmountPath(mountpoint: string): Promise<void> {
  const run = promisify(execFile);
  try {
    await run('fusermount3', ['-u', mountpoint], { timeout: 10_000 });
  } catch {
    await run('fusermount3', ['-uz', mountpoint], { timeout: 10_000 }).catch(() => undefined);
  }
}

/**
 * The kernel reads ahead only 128 KiB on a FUSE mount by default, so a sequential reader has at most one
 * request in flight and waits on each round trip. A larger window keeps several 1 MiB requests in flight
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
