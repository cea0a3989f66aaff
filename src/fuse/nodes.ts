// The FUSE edge's node table: the kernel names files by node id; the core by path. A node is one name the
// kernel holds (a lookup, a readdirplus entry, a create), with its parent node, so that its path is always
// the one it has now, after renames of it or of any directory above it. Lookup counts follow the kernel's:
// a node leaves the table when the kernel forgets it.
//
// One event loop; only the FUSE edge (adapter.ts, and readdir.ts for readdirplus entries) changes the table,
// synchronously, right after the op it mirrors succeeded (a rename or unlink) or as the reply to a lookup is sent.
import { FsError } from '../errors.js';

export const ROOT_INO = 1;

export class Node {
  /** How many times the kernel was told about this node and has not forgotten it. */
  lookups = 0;
  /** Its name went away (unlinked, or renamed over): it lives on only for handles and the kernel's references. */
  detached = false;
  /** Attributes as last sent to the kernel, and as when the node was last opened: equal means the kernel's
   *  cached pages are still this content (libfuse's auto_cache). */
  seenStamp = '';
  openedStamp = '';
  /** File handles open on this node: a detached node answers stat through one of them. */
  readonly handles = new Set<number>();
  /**
   * The kernel reads this node's content from a backing file itself (passthrough). The kernel binds one
   * backing file to the node until it forgets the node, and allows no open in the page-cache mode meanwhile:
   * every other open of the node names the same backing id (with direct I/O when not read through it).
   */
  backing: { id: number; file: string } | undefined;
  /**
   * The kernel has had this node open in its page-cache mode: it leaves that mode only some time after the last
   * such close, and refuses a passthrough open meanwhile (EIO), so this node is never passed through.
   */
  cachedOpened = false;

  constructor(
    readonly ino: number,
    public parent: Node | undefined,
    public name: string,
  ) {}

  /** The node's current path ('/' for the root). Detached nodes keep their last one. */
  get path(): string {
    const parts: string[] = [];
    for (let n: Node | undefined = this; n && n.parent; n = n.parent) parts.push(n.name);
    return '/' + parts.reverse().join('/');
  }
}

/** A node's path for ops that need its name to exist: a detached node has none. */
export function livePath(node: Node): string {
  if (node.detached) throw new FsError('ENOENT', `no longer linked: ${node.path}`);
  return node.path;
}

export class NodeTable {
  private readonly byIno = new Map<number, Node>();
  /** Attached nodes by parent id and name. */
  private readonly byName = new Map<string, Node>();
  private nextIno = ROOT_INO + 1;
  readonly root: Node;

  constructor() {
    this.root = new Node(ROOT_INO, undefined, '');
    this.root.lookups = 1; // the kernel never forgets the root
    this.byIno.set(ROOT_INO, this.root);
  }

  get size(): number {
    return this.byIno.size;
  }

  /** The node with this id; the kernel only names nodes we told it about, so an unknown one is a stale id. */
  get(ino: number): Node {
    const node = this.byIno.get(ino);
    if (!node) throw new FsError('ESTALE', `unknown node ${ino}`);
    return node;
  }

  child(parent: Node, name: string): Node | undefined {
    return this.byName.get(key(parent, name));
  }

  /** The child's node (made if new), counted as one more kernel reference. */
  remember(parent: Node, name: string): Node {
    let node = this.byName.get(key(parent, name));
    if (!node) {
      node = new Node(this.nextIno++, parent, name);
      this.byIno.set(node.ino, node);
      this.byName.set(key(parent, name), node);
    }
    node.lookups++;
    return node;
  }

  /** The kernel dropped `count` references; returns the node if that was its last (it leaves the table). */
  forget(ino: number, count: number): Node | undefined {
    const node = this.byIno.get(ino);
    if (!node || node === this.root) return undefined;
    node.lookups -= count;
    if (node.lookups > 0) return undefined;
    this.byIno.delete(ino);
    if (!node.detached && this.byName.get(key(node.parent!, node.name)) === node) this.byName.delete(key(node.parent!, node.name));
    return node;
  }

  /** The name is gone (unlink, rmdir): its node, if any, keeps serving handles under its last path. */
  detach(parent: Node, name: string): void {
    const node = this.byName.get(key(parent, name));
    if (!node) return;
    this.byName.delete(key(parent, name));
    node.detached = true;
  }

  /** Mirrors a rename: what was at the target is detached, the moved node (and so its subtree) has a new path. */
  rename(parent: Node, name: string, newParent: Node, newName: string): void {
    const moved = this.byName.get(key(parent, name));
    this.detach(newParent, newName);
    if (!moved) return;
    this.byName.delete(key(parent, name));
    moved.parent = newParent;
    moved.name = newName;
    this.byName.set(key(newParent, newName), moved);
  }

  /** The attached node at this path, if the kernel knows one (for invalidations). */
  find(path: string): Node | undefined {
    let node: Node | undefined = this.root;
    for (const part of path.split('/')) {
      if (!part) continue;
      node = this.byName.get(key(node, part));
      if (!node) return undefined;
    }
    return node;
  }
}

function key(parent: Node, name: string): string {
  return `${parent.ino}/${name}`;
}
