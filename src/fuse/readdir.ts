// Directory reads at the FUSE edge: opendir's handles, each holding the listing taken at its first readdir and
// served in pieces as the kernel asks, and readdirplus's entries, each a lookup of its node as the kernel counts.
import type { Attr, Ops } from '../fs/ops.js';
import type { NativeAttr, NativeEntry, NativeSession } from './lowlevel.js';
import { livePath, type Node, type NodeTable } from './nodes.js';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
/** What readdir reports as an entry's inode number when it has no node (libfuse's FUSE_UNKNOWN_INO). */
const UNKNOWN_INO = 0xffffffff;
/** The smallest entry of a readdir reply (struct fuse_dirent with a 1-byte name, padded) and of readdirplus (plus fuse_entry_out). */
const MIN_ENTRY_BYTES = 32;
const MIN_PLUS_ENTRY_BYTES = 32 + 128;

type Listing = Array<{ name: string; attr: Attr | undefined }>;

/** A directory handle: the listing taken at its first read, served in pieces as the kernel asks. */
interface DirHandle {
  entries: Listing | undefined;
}

/** The open directory handles of one session, and the readdir and readdirplus replies read from them. */
export class DirReader {
  private readonly handles = new Map<number, DirHandle>();
  private nextHandle = 1;

  constructor(
    private readonly ops: Ops,
    private readonly nodes: NodeTable,
    /** The adapter's entry for a node, as a lookup would answer it: a readdirplus entry tells the kernel the same. */
    private readonly entry: (node: Node, attr: Attr) => NativeEntry,
  ) {}

  open(): number {
    const fh = this.nextHandle++;
    this.handles.set(fh, { entries: undefined });
    return fh;
  }

  release(fh: number): void {
    this.handles.delete(fh);
  }

  /** Answers a readdir (or readdirplus) of `size` bytes from `offset`, the entry count the previous reply ended at. */
  async read(session: NativeSession, req: number, node: Node, fh: number, offset: number, size: number, plus: boolean): Promise<void> {
    let handle = this.handles.get(fh);
    if (!handle) this.handles.set(fh, (handle = { entries: undefined }));
    // A listing is taken at the first read (and again on rewinddir), then served in pieces.
    if (!handle.entries || offset === 0) handle.entries = await this.listing(node, plus);
    // Only what can fit: a reply of `size` bytes holds at most size / (smallest entry) entries.
    const rest = handle.entries.slice(offset, offset + Math.ceil(size / (plus ? MIN_PLUS_ENTRY_BYTES : MIN_ENTRY_BYTES)));
    if (!plus) {
      const out = rest.map(({ name, attr }) => ({ name: Buffer.from(name), ino: UNKNOWN_INO, mode: (attr?.mode ?? 0) & S_IFMT }));
      session.replyDirectory(req, size, offset, out, false);
      return;
    }
    // Each entry that reaches the kernel counts as a lookup of its node (but '.' and '..'): nodes are made
    // before the reply, and those whose entries did not fit are given back after it.
    const made: Array<Node | undefined> = [];
    const out = rest.map(({ name, attr }) => {
      const nameBytes = Buffer.from(name);
      if (name === '.' || name === '..' || !attr) {
        made.push(undefined);
        const dirAttr = { ino: node.ino, mode: S_IFDIR } as NativeAttr;
        return { name: nameBytes, ino: 0, generation: 0, attr: dirAttr, entryTimeout: 0, attrTimeout: 0 };
      }
      const child = this.nodes.remember(node, name);
      made.push(child);
      return { name: nameBytes, ...this.entry(child, attr) };
    });
    const fitted = session.replyDirectory(req, size, offset, out, true);
    for (let i = fitted; i < made.length; i++) if (made[i]) this.nodes.forget(made[i]!.ino, 1);
  }

  private async listing(node: Node, plus: boolean): Promise<Listing> {
    const path = livePath(node);
    if (plus) {
      const entries = await this.ops.readdirplus(path);
      return [{ name: '.', attr: undefined }, { name: '..', attr: undefined }, ...entries];
    }
    return (await this.ops.readdir(path)).map((name) => ({ name, attr: undefined }));
  }
}
