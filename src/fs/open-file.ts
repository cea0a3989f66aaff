// One open file's life: the state shared by every handle open on one path (so that two handles see each other's
// writes, as POSIX expects), its transitions, and the gate between writes into its staging file and an upload
// of it. Every change of the file's life is a method here; the rooms that call them are named on each.
//
//   content   clean ──change──▶ dirty ──stored (no change meanwhile)──▶ clean
//                                 │ ◀──change── (stays dirty)
//                                 └──the entry changed meanwhile (write-back)──▶ conflict   (kept, never stored)
//             clean | dirty | conflict ──last close, local state dropped──▶ closed          (final)
//   place     linked at parent/name ──rename──▶ linked elsewhere;  linked ──unlink, renamed over──▶ unlinked (final)
//   handles   a count: 0 after the last release while a store is on its way (closing), back up on a reopen
//
// Fields and who may change them across an await (one event loop: nothing changes between awaits):
// - content, generations, child, base: the commit protocol (commits.ts) after a store, open-files.ts on every
//   change, namespace.ts when it relinks the entry (editLink, under `linkLock`), closing.ts at the last close.
// - parent, name, path, unlinked: namespace.ts only, holding `linkLock` (an upload reads them under the same
//   lock right before it links: store.ts); open-files.ts re-keys its table with them.
// - size, mtime, own, staging, recordedDirty, recordedOverlay, recordChain, changes: open-files.ts (the writes and the records);
//   commits.ts takes `changes` when a store lands.
// - handles: open-files.ts (the handle table).
import type { CachedFile } from '../cache/cached-file.js';
import { RangeSet } from '../cache/range-set.js';
import { FsError } from '../errors.js';
import type { ChildInfo } from '../tahoe/client.js';
import { heldCap, sizeOf, type Timestamp } from '../tahoe/links.js';
import { ownMetadataOf, type OwnMetadata } from '../tahoe/posix.js';
import { Mutex, SharedPromise } from '../util/once.js';
import type { DirRef } from './directories.js';
import type { FileHandle } from 'node:fs/promises';
import type { Overlay } from './overlay.js';
import type { ChangeSet } from './store.js';

/** Where an open file's content stands against its directory entry. */
export type Content =
  | { kind: 'clean' }
  | { kind: 'dirty' }
  /** Write-back: the entry changed after the bytes were based on it; they are kept, and never stored over it. */
  | { kind: 'conflict'; reason: string }
  /** The local state is dropped; `stored` says whether the bytes reached the grid (or needed not). */
  | { kind: 'closed'; stored: boolean };

export interface StagingFile {
  path: string;
  handle: FileHandle;
  /** Which bytes are the staging file's and which still the base content's. */
  overlay: Overlay;
}

/** A write in progress into a staging file; `fh` set for a caller's own (beginWrite to endWrite). */
export interface WriteHold {
  fh: number | undefined;
  position: number;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Writes into a staging file and an upload of it take turns: writes share the file, an upload has it alone.
 * An upload waits for the writes in progress, and writes that come meanwhile wait for the upload, so that what
 * is uploaded is one consistent state. Uploads of one file go one after the other. A write never waits for an
 * upload while it holds the gate (the upload waits for it: see LOCK ORDER in tahoe-fs.ts).
 */
export class StagingGate {
  readonly writes = new Set<WriteHold>();
  private upload: Promise<unknown> | undefined;
  /** The upload's own work runs (the writes before it have ended). */
  private uploadRunning = false;
  private writesEnded: Array<() => void> = [];

  get uploading(): boolean {
    return this.upload !== undefined;
  }

  /** Resolves once no upload is on its way (one that comes meanwhile is waited for too). */
  async uploadsDone(): Promise<void> {
    while (this.upload) await this.upload.catch(() => undefined);
  }

  /** After the uploads on their way, holds the staging file for a write (in the same turn as the last ends). */
  async enterWrite(hold: WriteHold): Promise<void> {
    while (this.upload) await this.upload.catch(() => undefined);
    this.writes.add(hold);
  }

  /** Ends a write's hold; false if it had ended already. */
  exitWrite(hold: WriteHold): boolean {
    if (!this.writes.delete(hold)) return false;
    clearTimeout(hold.timer);
    if (this.writes.size === 0) for (const wake of this.writesEnded.splice(0)) wake();
    return true;
  }

  /**
   * Runs `upload` alone on the staging file: after the uploads and the writes on their way, before any write
   * that comes meanwhile. The gate is closed to writes from the call on (no await before it closes).
   */
  async exclusive<T>(upload: () => Promise<T>): Promise<T> {
    while (this.upload) await this.upload.catch(() => undefined);
    const attempt = this.writesDone().then(async () => {
      this.uploadRunning = true;
      try {
        return await upload();
      } finally {
        this.uploadRunning = false;
      }
    });
    // Cleared in the same turn as it settles: a waiter must not spin on a settled promise (see uploadsDone).
    this.upload = attempt;
    try {
      return await attempt;
    } finally {
      if (this.upload === attempt) this.upload = undefined;
    }
  }

  /** What must hold between any two awaits (OpenFiles.checkInvariants). */
  invariantProblem(): string | undefined {
    if (this.uploadRunning && this.writes.size > 0) return 'an upload runs while writes hold the staging file';
    if (this.uploadRunning && !this.upload) return 'an upload runs outside the gate';
    return undefined;
  }

  private writesDone(): Promise<void> {
    if (this.writes.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.writesEnded.push(resolve));
  }
}

/**
 * What changed in an open file since its last store, so that a mutable (MDMF) file is written in place: the
 * ranges to send, and whether only a whole store will do (it shrank, or a caller's write ended unaccounted).
 * Changed by open-files.ts on every write and truncate, and taken by commits.ts when a store lands.
 */
export class Changes {
  private ranges = new RangeSet();
  /** The size the grid holds as of the last store (or the listing, before one). */
  private storedSize: number;
  private whole = false;
  /** Truncated to nothing while it had content: rewritten from scratch, not changed in place. */
  private rewritten = false;

  constructor(storedSize: number) {
    this.storedSize = storedSize;
  }

  /** The content the changes are made over turned out to be `size` bytes long (before any change). */
  based(size: number): void {
    this.storedSize = size;
  }

  wrote(position: number, length: number): void {
    this.ranges.add(position, position + length);
  }

  truncated(from: number, to: number): void {
    if (to < this.storedSize) this.whole = true;
    if (to === 0 && from > 0) this.rewritten = true;
    if (to > from) this.ranges.add(from, to); // the new bytes are zeros, to be sent as any others
    else this.ranges.trim(to);
  }

  /** A change whose place is not known (a caller's write that ended without saying what it wrote). */
  unknown(): void {
    this.whole = true;
  }

  /** What a store of the file now is to send; `inPlace` is false for a file rewritten from scratch. */
  snapshot(): ChangeSet {
    return { ranges: this.ranges.toJSON(), whole: this.whole, inPlace: !this.rewritten && this.storedSize > 0, storedSize: this.storedSize };
  }

  /** A store of `size` bytes landed; `sent`: nothing changed meanwhile, so what is left to send starts anew. */
  stored(size: number, sent: boolean): void {
    this.storedSize = size;
    if (!sent) return;
    this.ranges = new RangeSet();
    this.whole = false;
    this.rewritten = false;
  }
}

export class OpenFile {
  /** Held while the file is linked (store.ts) and while it is renamed or unlinked (namespace.ts). */
  readonly linkLock = new Mutex();
  readonly gate = new StagingGate();
  /** What was written, over the content as it was opened (overlay.ts), once anything was written. */
  staging: StagingFile | undefined;
  readonly stagingReady = new SharedPromise<StagingFile>();
  /** The content to read while nothing was written: cached (immutable) or a snapshot (mutable). */
  readonly content = new SharedPromise<CachedFile>();
  size: number;
  /** Time set by utimens or by the last write, stored with the link at upload. */
  mtime: Timestamp | undefined;
  /** Whether `mtime` was set by utimens (then it is kept in the record for recovery). */
  mtimeExplicit = false;
  /** Mode, owner, kind and xattrs (posix.ts) as the link is to carry them: set by create, chmod, setxattr... */
  own: OwnMetadata;
  /** Whether the record on disk says "dirty": a change must make it so before it returns. */
  recordedDirty = false;
  /** The staging file's overlay revision the record on disk describes (overlay.ts). */
  recordedOverlay = 0;
  /** What changed since the last store (see Changes). */
  readonly changes: Changes;
  /** Record writes for this file, one after the other. */
  recordChain: Promise<void> = Promise.resolve();
  handles = 0;

  private _parent: DirRef;
  private _name: string;
  private _path: string;
  private _unlinked = false;
  private _child: ChildInfo | undefined;
  private _base: string | null;
  private _content: Content = { kind: 'clean' };
  private _generation = 0;
  private _storedGeneration = -1;
  private _linkedGeneration = -1;
  /** The generation of the latest change of the bytes (not of metadata alone). */
  private _contentGeneration = -1;
  private _flushedGeneration = -1;

  constructor(parent: DirRef, name: string, path: string, child: ChildInfo | undefined) {
    this._parent = parent;
    this._name = name;
    this._path = path;
    this._child = child;
    this._base = heldCap(child);
    this.size = child ? sizeOf(child) : 0;
    this.own = child ? ownMetadataOf(child.metadata) : {};
    this.changes = new Changes(this.size);
  }

  get parent(): DirRef {
    return this._parent;
  }
  get name(): string {
    return this._name;
  }
  get path(): string {
    return this._path;
  }
  /** Its name is gone (unlinked, or renamed over): its handles keep their data, which is stored nowhere. */
  get unlinked(): boolean {
    return this._unlinked;
  }
  /** The link as last seen or written; undefined for a file created and not yet uploaded. */
  get child(): ChildInfo | undefined {
    return this._child;
  }
  /** The cap linked when the staged bytes were last in step with the grid: a later store links only over it. */
  get base(): string | null {
    return this._base;
  }
  /** Changes not stored yet (a conflict's too: they are kept). */
  get dirty(): boolean {
    return this._content.kind === 'dirty' || this._content.kind === 'conflict';
  }
  get conflict(): string | undefined {
    return this._content.kind === 'conflict' ? this._content.reason : undefined;
  }
  get closed(): boolean {
    return this._content.kind === 'closed';
  }
  /** Bumped by every change; a store makes the file clean only if no change came in meanwhile. */
  get generation(): number {
    return this._generation;
  }
  /** The latest generation stored in the grid. */
  get storedGeneration(): number {
    return this._storedGeneration;
  }
  /** The generation last flushed to the local disk with a durable record (write-back close). */
  get flushedGeneration(): number {
    return this._flushedGeneration;
  }
  /** Whether there is anything for a store to do: changes, and a name to store them at. */
  get needsStore(): boolean {
    return this.dirty && !this._unlinked;
  }

  // ---- transitions --------------------------------------------------------------------------------------

  /** open-files.ts: the content (a write, a truncate), or only its metadata (a utimens, a chmod...), changed. */
  changed(bytes = true): void {
    this.requireOpen('change');
    this._generation++;
    if (bytes) this._contentGeneration = this._generation;
    if (this._content.kind === 'clean') this._content = { kind: 'dirty' };
  }

  /**
   * The immutable cap this file linked at its name that holds its bytes as they are now (only metadata changed
   * since): a store links it again with the new metadata instead of uploading the same bytes.
   */
  get sameBytesAs(): string | undefined {
    const child = this._child;
    if (!child || this._linkedGeneration < this._contentGeneration || child.rwUri !== undefined || child.mutable) return undefined;
    return child.roUri;
  }

  /**
   * Whether the latest change is in the grid linked at the file's name as `child`: then the staging file is that
   * child's content (not when it was stored beside another machine's version, or nowhere).
   */
  get storedAsChild(): boolean {
    return this._linkedGeneration === this._generation;
  }

  /** commits.ts: `generation` is in the grid, linked as `child` (undefined: at another name, or at none). */
  stored(generation: number, child: ChildInfo | undefined): void {
    if (child) this._child = child;
    if (child) this._linkedGeneration = generation;
    this._storedGeneration = Math.max(this._storedGeneration, generation);
    if (this._content.kind === 'dirty' && this._generation === generation) this._content = { kind: 'clean' };
    this._base = heldCap(this._child);
  }

  /** commits.ts: the entry changed meanwhile (write-back); the bytes are kept, never stored. */
  conflictFound(reason: string): void {
    if (this._content.kind !== 'dirty') throw new Error(`open file ${this._content.kind}: cannot turn into a conflict`);
    this._content = { kind: 'conflict', reason };
  }

  /** open-files.ts: the bytes of `generation` and their record are on the local disk (write-back close). */
  flushed(generation: number): void {
    this._flushedGeneration = Math.max(this._flushedGeneration, generation);
  }

  /** closing.ts, after the last close: the local state is dropped. False if reopened, or closed already. */
  close(stored: boolean): boolean {
    if (this.handles > 0 || this._content.kind === 'closed') return false;
    this._content = { kind: 'closed', stored };
    return true;
  }

  /** namespace.ts, under `linkLock`: the entry was relinked with new metadata (the content is as it was). */
  relinked(child: ChildInfo): void {
    this._child = child;
    this.own = ownMetadataOf(child.metadata);
  }

  /** namespace.ts, under `linkLock`: renamed (or a directory above it was). */
  moveTo(parent: DirRef, name: string, path: string): void {
    this._parent = parent;
    this._name = name;
    this._path = path;
  }

  /** namespace.ts, under `linkLock`: renamed while not in the grid, it is to replace the entry it was moved over. */
  replaces(entry: ChildInfo | undefined): void {
    this._base = heldCap(entry);
  }

  /** namespace.ts, under `linkLock`: its name is gone; `path` keeps it reachable for its handles (a hidden name). */
  unlink(path = this._path): void {
    this._unlinked = true;
    this._path = path;
  }

  /** open-files.ts: a staging file was made from the content of `child` as it is now. */
  stagedFrom(): void {
    this._base = heldCap(this._child);
  }

  /** What must hold between any two awaits (OpenFiles.checkInvariants). */
  invariantProblem(): string | undefined {
    const gate = this.gate.invariantProblem();
    if (gate) return gate;
    if (this.handles < 0) return `handles ${this.handles}`;
    if (this._storedGeneration > this._generation || this._flushedGeneration > this._generation) return 'a generation stored or flushed that was never made';
    if (this._content.kind === 'clean' && this._generation > 0 && this._storedGeneration !== this._generation) return 'clean, with a change never stored';
    if (this._content.kind === 'closed' && this.handles > 0) return 'closed with handles open';
    if (this.size < 0) return `size ${this.size}`;
    return undefined;
  }

  private requireOpen(what: string): void {
    if (this._content.kind === 'closed') throw new FsError('EBADF', `${what} of a closed file: ${this._path}`);
  }
}
