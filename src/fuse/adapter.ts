// The thin FUSE edge: turns kernel requests from our libfuse 3 binding (lowlevel.ts) into calls of any Ops (the
// core itself, or the RPC client in split mode). Node ids become paths here (nodes.ts), names Unicode NFC, and
// core results the kernel's attributes and entries. Each request's backstop, errno reply and log line are
// requests.ts; directory handles and readdir(plus) replies, readdir.ts; mounting and the mount's life, mount.ts.
import { open as openFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { FsError } from '../errors.js';
import type { Attr, ChangeKind, Ops } from '../fs/ops.js';
import type { Logger } from '../log.js';
import { opKinds, type NativeAttr, type NativeEntry, type NativeSession, type OpKind, type RequestArgs } from './lowlevel.js';
import { livePath, Node, NodeTable } from './nodes.js';
import { DirReader } from './readdir.js';
import { RequestRunner } from './requests.js';

/** Largest read and write per FUSE request: the kernel's max_pages (256 pages). */
export const FUSE_MAX_IO = 1024 * 1024;

const { ENOSYS, EINVAL, EEXIST, ERANGE } = constants.errno;
const O_RDONLY = 0;
/** Linux's mask for the access mode bits of open flags. */
const O_ACCMODE = 0o3;
// setattr's to_set bits (fuse_lowlevel.h).
const SET_MODE = 1 << 0;
const SET_UID = 1 << 1;
const SET_GID = 1 << 2;
const SET_SIZE = 1 << 3;
const SET_ATIME = 1 << 4;
const SET_MTIME = 1 << 5;
const SET_ATIME_NOW = 1 << 7;
const SET_MTIME_NOW = 1 << 8;
const RENAME_NOREPLACE = 1;

/**
 * Tahoe stores child names in NFC (a name linked in NFD is listed back in NFC), so the core sees every path
 * in NFC: a file created under a decomposed name is still found after its directory is listed again.
 */
function nameOf(raw: Buffer | undefined): string {
  return (raw ?? Buffer.alloc(0)).toString('utf8').normalize('NFC');
}

function join(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

function stamp(attr: Attr): string {
  return `${attr.mtime.sec}.${attr.mtime.nsec}:${attr.size}`;
}

function nsOf(t: { sec: number; nsec: number }): string {
  return (BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec)).toString();
}

export interface AdapterOptions {
  /** How long the kernel may trust names and attributes (the directory cache's timeout). */
  kernelCacheSeconds: number;
  log: Logger;
}

/** Answers every kernel request of one session with the Ops below it. */
export class FuseAdapter {
  readonly nodes = new NodeTable();
  private readonly dirs: DirReader;
  private readonly requests: RequestRunner;
  private featuresLogged = false;
  /** Whether the kernel agreed to passthrough: read from the binding once, at the first request (logFeatures). */
  private passthrough = false;
  private session: NativeSession | undefined;
  private goneListener: (() => void) | undefined;
  /** Request kinds by number, from the binding (checked against OpKind as it loads). */
  private readonly kinds = opKinds();

  constructor(
    private readonly ops: Ops,
    private readonly opts: AdapterOptions,
  ) {
    this.requests = new RequestRunner(opts.log, (args) => this.describe(args));
    this.dirs = new DirReader(ops, this.nodes, (node, attr) => this.entry(node, attr));
  }

  attach(session: NativeSession, onGone: () => void): void {
    this.session = session;
    this.goneListener = onGone;
    this.ops.watch?.((dir, name, kind) => this.invalidate(dir, name, kind));
  }

  /**
   * Another client changed `name` in `dir`: the kernel drops the node's attributes and cached pages, and, if the
   * name now holds something else (or nothing), the name itself. A name whose cap stayed is never dropped: it
   * may be a directory that is someone's working directory, which would then read as deleted.
   */
  invalidate(dir: string, name: string, kind: ChangeKind): void {
    const parent = this.nodes.find(dir);
    if (!parent || !this.session) return;
    const child = this.nodes.child(parent, name);
    if (child) this.session.notify('inode', child.ino);
    if (kind !== 'entry') return;
    // The name holds another object now: the next lookup gets a new node, so that a handle still open on
    // the old one never shares its page cache with the new content.
    this.nodes.detach(parent, name);
    this.session.notify('entry', parent.ino, Buffer.from(name));
  }

  /** The binding's request handler: never throws (the binding would leave the request unanswered). */
  readonly handle = (opIndex: number, req: number, args: RequestArgs): void => {
    const op = this.kinds[opIndex];
    try {
      if (op === 'gone') {
        this.goneListener?.();
      } else if (op === 'forget') {
        const list = args.forgets ?? [];
        for (let i = 0; i < list.length; i += 2) {
          const gone = this.nodes.forget(list[i]!, list[i + 1]!);
          if (gone?.backing) this.session!.backingClose(gone.backing.id);
        }
      } else if (op !== undefined) {
        if (!this.featuresLogged) this.logFeatures();
        const session = this.session!;
        this.requests.run(session, op, req, args, () => this.answer(op, req, args, session));
      }
    } catch (e) {
      this.opts.log.error({ op, err: e instanceof Error ? e.stack : String(e) }, 'FUSE request handler failed');
    }
  };

  /** Once, at the first request (libfuse has answered the kernel's INIT by then): what the kernel agreed to. */
  private logFeatures(): void {
    this.featuresLogged = true;
    const passthrough = (this.passthrough = this.session!.info().passthrough);
    this.opts.log.info({ passthrough }, passthrough ? 'kernel passthrough on: whole cached files are read by the kernel itself' : 'kernel passthrough off');
  }

  /**
   * Answers an open. A read-only handle on content that is whole in the cache is read by the kernel itself
   * (passthrough), if the kernel never had the node open in its page-cache mode; once a node has a backing file,
   * every other open of it names that file too, with direct I/O when not read through it (its reads and writes
   * come to us), as the kernel requires.
   */
  private async replyOpen(req: number, node: Node, fh: number, readOnly: boolean, keepCache: boolean): Promise<void> {
    const s = this.session!;
    node.handles.add(fh);
    if (node.backing) {
      const file = readOnly ? await this.ops.backingFile(node.path, fh).catch(() => null) : null;
      // Read through it only if it still holds the whole content (new content has another cache file, and a
      // write makes a staging file the source).
      s.replyOpen(req, { fh, backingId: node.backing.id, directIo: file !== node.backing.file });
      return;
    }
    const file = readOnly && !node.cachedOpened && this.passthrough ? await this.ops.backingFile(node.path, fh).catch(() => null) : null;
    const backing = file === null ? undefined : await openFile(file, 'r').catch(() => undefined);
    try {
      const id = s.replyOpen(req, { fh, keepCache, backingFd: backing?.fd });
      if (id > 0) {
        node.backing = { id, file: file! };
        this.opts.log.debug({ path: node.path, backingId: id }, 'open passed through to the cache file');
      } else {
        node.cachedOpened = true;
      }
    } finally {
      await backing?.close();
    }
  }

  private describe(args: RequestArgs): string {
    try {
      const base = this.nodes.get(args.ino).path;
      return args.name ? join(base, nameOf(args.name)) : base;
    } catch {
      return `(node ${args.ino})`;
    }
  }

  private entry(node: Node, attr: Attr): NativeEntry {
    node.seenStamp = stamp(attr);
    const t = this.opts.kernelCacheSeconds;
    return { ino: node.ino, generation: 0, attr: this.native(node, attr), entryTimeout: t, attrTimeout: t };
  }

  private native(node: Node, attr: Attr): NativeAttr {
    return { ...attr, ino: node.ino, blksize: FUSE_MAX_IO };
  }

  /** Replies with the attributes of `node` (through the handle if there is one). */
  private async replyAttr(req: number, node: Node, fh: number | undefined): Promise<void> {
    // The kernel sends no handle with fstat(2); an unlinked file has only its handles to answer it.
    if (fh === undefined && node.detached) fh = node.handles.values().next().value;
    const attr = fh !== undefined ? await this.ops.fgetattr(node.path, fh) : await this.ops.getattr(livePath(node));
    node.seenStamp = stamp(attr);
    this.session!.replyAttr(req, this.native(node, attr), this.opts.kernelCacheSeconds);
  }

  private async lookupReply(req: number, parent: Node, name: string): Promise<void> {
    const attr = await this.ops.getattr(join(livePath(parent), name));
    this.session!.replyEntry(req, this.entry(this.nodes.remember(parent, name), attr));
  }

  private async answer(op: OpKind, req: number, a: RequestArgs, s: NativeSession): Promise<void> {
    const ops = this.ops;
    const node = this.nodes.get(a.ino);
    switch (op) {
      case 'lookup':
        return this.lookupReply(req, node, nameOf(a.name));
      case 'getattr':
        return this.replyAttr(req, node, a.fh);
      case 'setattr':
        return this.setattr(req, node, a);
      case 'mkdir': {
        const name = nameOf(a.name);
        await ops.mkdir(join(livePath(node), name), a.mode! & ~a.umask!, a.uid, a.gid);
        return this.lookupReply(req, node, name);
      }
      case 'symlink': {
        const name = nameOf(a.name);
        await ops.symlink(a.target!.toString('utf8'), join(livePath(node), name), a.uid, a.gid);
        return this.lookupReply(req, node, name);
      }
      case 'mknod': {
        const name = nameOf(a.name);
        await ops.mknod(join(livePath(node), name), a.mode! & ~a.umask!, a.rdev ?? 0, a.uid, a.gid);
        return this.lookupReply(req, node, name);
      }
      case 'unlink':
      case 'rmdir': {
        const name = nameOf(a.name);
        await ops[op](join(livePath(node), name));
        this.nodes.detach(node, name);
        return s.replyErr(req, 0);
      }
      case 'rename':
        return this.rename(req, node, a);
      case 'link': {
        const parent = this.nodes.get(a.newParent!);
        const name = nameOf(a.newName);
        await ops.link(livePath(node), join(livePath(parent), name));
        return this.lookupReply(req, parent, name);
      }
      case 'create': {
        const name = nameOf(a.name);
        const path = join(livePath(node), name);
        const fh = await ops.create(path, a.mode! & ~a.umask!, a.uid, a.gid);
        let attr: Attr;
        try {
          attr = await ops.fgetattr(path, fh);
        } catch (e) {
          await ops.release(path, fh).catch(() => undefined);
          throw e;
        }
        const child = this.nodes.remember(node, name);
        child.openedStamp = stamp(attr);
        child.handles.add(fh);
        child.cachedOpened = true;
        s.replyCreate(req, this.entry(child, attr), { fh });
        return;
      }
      case 'open': {
        // A node renamed over since the kernel looked it up opens what its name holds now, as an open that
        // came a moment later would: libfuse 2 failed it with ENOENT.
        const fh = await ops.open(node.path, a.flags!);
        const keepCache = node.seenStamp !== '' && node.openedStamp === node.seenStamp;
        node.openedStamp = node.seenStamp;
        return this.replyOpen(req, node, fh, (a.flags! & O_ACCMODE) === O_RDONLY, keepCache);
      }
      case 'read': {
        const buffer = Buffer.allocUnsafe(a.size!);
        const n = ops.readInto ? await ops.readInto(node.path, a.fh!, buffer, a.offset!) : copyInto(await ops.read(node.path, a.fh!, a.size!, a.offset!), buffer);
        return s.replyBuf(req, buffer, n);
      }
      case 'write':
        return s.replyWrite(req, await ops.write(node.path, a.fh!, a.data!, a.offset!));
      case 'flush':
        await ops.flush(node.path, a.fh!);
        return s.replyErr(req, 0);
      case 'release':
        node.handles.delete(a.fh!);
        await ops.release(node.path, a.fh!);
        return s.replyErr(req, 0);
      case 'fsync':
        await ops.fsync(node.path, a.fh!, a.mode === 1);
        return s.replyErr(req, 0);
      case 'opendir':
        s.replyOpen(req, { fh: this.dirs.open() });
        return;
      case 'readdir':
      case 'readdirplus':
        return this.dirs.read(s, req, node, a.fh!, a.offset!, a.size!, op === 'readdirplus');
      case 'releasedir':
        this.dirs.release(a.fh!);
        return s.replyErr(req, 0);
      case 'statfs':
        return s.replyStatfs(req, { ...(await ops.statfs(node.path)) });
      case 'access':
        await ops.access(livePath(node), a.mode!);
        return s.replyErr(req, 0);
      case 'readlink':
        return s.replyReadlink(req, Buffer.from(await ops.readlink(livePath(node))));
      case 'getxattr':
      case 'listxattr':
      case 'setxattr':
      case 'removexattr':
        return this.xattr(op, req, node, a);
      default:
        return s.replyErr(req, ENOSYS);
    }
  }

  /** Extended attributes (names outside user.* never get here: the binding answers them on its loop thread). */
  private async xattr(op: 'getxattr' | 'listxattr' | 'setxattr' | 'removexattr', req: number, node: Node, a: RequestArgs): Promise<void> {
    const s = this.session!;
    const name = a.name?.toString('utf8') ?? '';
    if (op === 'listxattr') {
      const names = await this.ops.listxattr(livePath(node));
      return this.replyXattr(req, Buffer.concat(names.map((n) => Buffer.from(n + '\0'))), a.size!);
    }
    if (op === 'getxattr') return this.replyXattr(req, await this.ops.getxattr(livePath(node), name), a.size!);
    if (op === 'setxattr') await this.ops.setxattr(livePath(node), name, a.data ?? Buffer.alloc(0), a.flags ?? 0);
    else await this.ops.removexattr(livePath(node), name);
    s.replyErr(req, 0);
  }

  /** getxattr and listxattr: a size of 0 asks how large the value is; a smaller buffer than it gets ERANGE. */
  private replyXattr(req: number, value: Buffer, size: number): void {
    const s = this.session!;
    if (size === 0) s.replyXattr(req, value.length);
    else if (value.length > size) s.replyErr(req, ERANGE);
    else s.replyBuf(req, value, value.length);
  }

  private async setattr(req: number, node: Node, a: RequestArgs): Promise<void> {
    const ops = this.ops;
    const set = a.toSet!;
    const attr = a.attr!;
    const path = node.path;
    // fchmod and fchown of an unlinked open file: nothing is left to change in the grid.
    if (set & SET_MODE && !node.detached) await ops.chmod(path, attr.mode);
    if (set & (SET_UID | SET_GID) && !node.detached) await ops.chown(path, set & SET_UID ? attr.uid : -1, set & SET_GID ? attr.gid : -1);
    if (set & SET_SIZE) {
      if (a.fh !== undefined) await ops.ftruncate(path, a.fh, attr.size);
      else await ops.truncate(livePath(node), attr.size);
    }
    // A time not set is sent empty: left as it is (the kernel sends UTIME_OMIT as neither flag).
    if (set & (SET_MTIME | SET_MTIME_NOW | SET_ATIME | SET_ATIME_NOW)) {
      const now = Date.now();
      const nowTs = { sec: Math.floor(now / 1000), nsec: (now % 1000) * 1e6 };
      const mtime = set & SET_MTIME_NOW ? nsOf(nowTs) : set & SET_MTIME ? nsOf(attr.mtime) : '';
      // An atime before 1970 cannot be kept (times are stored unsigned): left as it is, not failing the mtime.
      const atime = set & SET_ATIME_NOW ? nsOf(nowTs) : set & SET_ATIME && attr.atime.sec >= 0 ? nsOf(attr.atime) : '';
      await ops.utimens(livePath(node), atime, mtime);
    }
    await this.replyAttr(req, node, a.fh);
  }

  private async rename(req: number, node: Node, a: RequestArgs): Promise<void> {
    const flags = a.flags ?? 0;
    // RENAME_EXCHANGE cannot be one Tahoe request; RENAME_WHITEOUT is for overlay filesystems.
    if (flags & ~RENAME_NOREPLACE) return this.session!.replyErr(req, EINVAL);
    const name = nameOf(a.name);
    const newParent = this.nodes.get(a.newParent!);
    const newName = nameOf(a.newName);
    const to = join(livePath(newParent), newName);
    if (flags & RENAME_NOREPLACE) {
      const exists = await this.ops.getattr(to).then(
        () => true,
        (e: unknown) => (e instanceof FsError && e.code === 'ENOENT' ? false : Promise.reject(e)),
      );
      if (exists) return this.session!.replyErr(req, EEXIST);
    }
    await this.ops.rename(join(livePath(node), name), to);
    this.nodes.rename(node, name, newParent, newName);
    this.session!.replyErr(req, 0);
  }
}

function copyInto(data: Buffer, target: Buffer): number {
  return data.copy(target, 0, 0, Math.min(target.length, data.length));
}
