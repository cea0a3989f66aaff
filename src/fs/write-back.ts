// Storing staged bytes on the grid. Every store goes through storeStaged(): upload the staging file (at most
// `transfers` uploads at once), then link the new cap where the file is *now* (a rename or an unlink during
// the upload moves or cancels the link; no other entry is ever replaced or removed), batched with the other
// links into the same directory (link-batcher.ts). Callers: close() and fsync() of a written file, the
// background retry of a store that failed, and recovery at start of what a dead process left staged.
//
// Two modes. Durable (the default): close() returns once the web API serves the bytes. Write-back: close()
// returns once the bytes and their record are flushed to the local disk; the store runs in the background
// (storeLater), retried until it lands, and mkdir takes a directory made ahead of time and links it in the
// background too (mkdirLater). Stores that wait that long link only over the entry their bytes were based on;
// anything else is kept and reported as a conflict, never overwritten (as recovery does). fsync() of a file
// and sync() wait for the stores they cover; unmount gives every pending store one more try (drain), and
// what is still left is in the journal for the next mount.
//
// State, all owned by this class: `retryTimer`/`retryDelayMs` (the retry pass runs one at a time,
// `retryPass`), `background` (one store loop per closed file), `pendingDirs` (one per directory not yet
// linked), `wakeups` (loops pausing between tries), `draining`/`stopped` (set once, at unmount). An open
// file's `uploading` and `conflict` are set and cleared here only (see open-files.ts for the rest).
import { createReadStream, type ReadStream } from 'node:fs';
import { rm, stat, writeFile } from 'node:fs/promises';
import type { ContentCache } from '../cache/content-cache.js';
import type { StagedFile, StagedRecord, StagingJournal } from '../cache/staging-journal.js';
import { FsError } from '../errors.js';
import type { Logger } from '../log.js';
import { redact } from '../tahoe/caps.js';
import type { ChildInfo, LinkMetadata, LinkTarget, TahoeClient } from '../tahoe/client.js';
import { capTextOf, heldCap, linkTargetOf, newLinkMetadata, nowTimestamp, parseNs, timestampFromSeconds, touchedMetadata, tryParseCap, userMetadata, type Timestamp, withMtime } from '../tahoe/links.js';
import { withOwnMetadata, type OwnMetadata } from '../tahoe/posix.js';
import { Coalesced, Semaphore, withLocks, type Mutex } from '../util/once.js';
import type { DirRef, Directories } from './directories.js';
import { DirectoryPool } from './directory-pool.js';
import { LinkBatcher } from './link-batcher.js';
import type { OpenFile, OpenFiles, ProcessIdentity } from './open-files.js';

/** Staged writes whose upload failed are retried after this long, doubling up to RETRY_MAX_MS. */
const RETRY_FIRST_MS = 5_000;
const RETRY_MAX_MS = 5 * 60_000;
/** At unmount, how long pending stores get for their last try before the rest is left to the next mount. */
export const DEFAULT_DRAIN_MS = 120_000;
export const DEFAULT_TRANSFERS = 8;

export interface WriteBackOptions {
  client: TahoeClient;
  cache: ContentCache;
  journal: StagingJournal;
  directories: Directories;
  files: OpenFiles;
  log: Logger;
  rootId: string;
  owner: ProcessIdentity;
  /** Whether the process that wrote a record still runs (process/alive.ts), handed down by the caller. */
  isAlive: (owner: ProcessIdentity) => Promise<boolean>;
  /** Write-back mode (see the top of this file); durable when false. */
  writeBack?: boolean;
  /** Uploads at once (default DEFAULT_TRANSFERS). */
  transfers?: number;
  /** Bound of the last try at unmount (default DEFAULT_DRAIN_MS). */
  drainMs?: number;
}

/** What sync() found: how many stores it waited for, and every write not stored (with why). */
export interface SyncReport {
  stored: number;
  failed: Array<{ path: string; error: string }>;
}

/** What status() reports (sizes in bytes). */
export interface WriteStatus {
  /** Uploads on their way (`sending`) or waiting for a transfer slot; `sent`: bytes read from the staging file so far. */
  uploads: Array<{ path: string; bytes: number; sent: number; sending: boolean }>;
  /** Write-back: closed files and new directories whose store has not run or not finished yet. */
  waiting: Array<{ path: string; bytes: number }>;
  /** Files whose last store failed: retried. */
  failed: Array<{ path: string; error: string }>;
  /** Staged writes in the journal not stored: kept as conflicts, or left by an earlier run and retried. */
  kept: Array<{ path: string; error: string }>;
  /** Metadata changes (times, modes, xattrs) on their way in write-back mode. */
  metadataUpdates: number;
}

/** Where staged bytes are to be linked. */
export interface Destination {
  parentCap: string;
  name: string;
}

export interface StoreRequest {
  /** Where the file is in the mount, for status and messages. */
  path: string;
  stagingPath: string;
  size: number;
  /** The file's mtime, stored in the link metadata. */
  mtime: Timestamp;
  /** Mode, owner, kind and xattrs for the link (replacing the previous link's); undefined keeps those. */
  own?: OwnMetadata;
  /** The entry the bytes replace, as last seen: a mutable file is overwritten in place; its metadata is kept. */
  previous: ChildInfo | undefined;
  /** Where to link, asked right before linking (under `lock`): undefined when the file was unlinked meanwhile. */
  destination: () => Destination | undefined;
  /** Held while linking, so that a rename or unlink of the same file waits (or is waited for). */
  lock?: Mutex;
  /** Recovery: store only over an entry that still holds this cap (null: no entry at all), checked before the upload too. */
  expectBase?: string | null;
  /** Link only over an entry that still holds this cap (null: no entry), asked and checked right before linking. */
  guard?: () => string | null;
}

export type StoreResult =
  | { outcome: 'linked'; child: ChildInfo; destination: Destination }
  | { outcome: 'unlinked' }
  | { outcome: 'conflict'; reason: string };

export class WriteBack {
  readonly deferred: boolean;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs = RETRY_FIRST_MS;
  private stopped = false;
  private draining = false;
  private readonly retryPass = new Coalesced(() => this.retryStaged());
  private readonly transfers: Semaphore;
  private readonly links: LinkBatcher;
  private readonly dirPool: DirectoryPool;
  /** Write-back mode: the store loop of each closed file still to be stored. */
  private readonly background = new Map<OpenFile, Promise<void>>();
  /** Write-back mode: directories made by mkdir and not linked yet, by staging path of their record. */
  private readonly pendingDirs = new Map<string, PendingDir>();
  /** Metadata of stored entries on their way (relinkLater): sync and unmount wait for them. */
  private readonly metadataUpdates = new Set<Promise<void>>();
  /** Uploads queued for a transfer slot or on their way, for status: added and removed by storeStaged only. */
  private readonly uploads = new Set<Upload>();
  /** Why the last store of a file failed, until one succeeds (storeAndRecord), for status. */
  private readonly failures = new Map<OpenFile, string>();
  /** Store loops pausing between tries: called to try again at once (sync, unmount). */
  private readonly wakeups = new Set<() => void>();

  constructor(private readonly opts: WriteBackOptions) {
    this.deferred = opts.writeBack === true;
    this.transfers = new Semaphore(Math.max(1, opts.transfers ?? DEFAULT_TRANSFERS));
    this.links = new LinkBatcher(opts.client);
    // Enough for a burst of mkdirs (an unpacked tree) while the pool refills behind it.
    this.dirPool = new DirectoryPool(opts.client, 2 * this.transfers.limit, opts.log);
  }

  /** At mount: write-back mode has directories made ahead of time for mkdir. */
  start(): void {
    if (this.deferred) this.dirPool.fill();
  }

  /** Uploads the staging file of an open file and links it; returns once the web API serves the new bytes. */
  async commit(file: OpenFile): Promise<void> {
    while (file.uploading) await file.uploading.catch(() => undefined);
    if (!file.dirty) return;
    if (file.conflict) throw conflictError(file);
    // `uploading` covers the whole attempt, its records included: a waiter wakes only once it is over (were it
    // cleared later than it settled, a waiter would spin on a settled promise and starve the record's I/O).
    // Writes in progress end first (a client's own write between beginWrite and endWrite among them); writes
    // that come meanwhile wait for this attempt.
    const attempt = file.writesDone().then(() => this.storeAndRecord(file));
    file.uploading = attempt;
    try {
      await attempt;
    } finally {
      if (file.uploading === attempt) file.uploading = undefined;
    }
  }

  private async storeAndRecord(file: OpenFile): Promise<void> {
    try {
      await this.storeOpenFile(file);
      this.failures.delete(file);
    } catch (e) {
      // A closed file's failure is the journal's to report (its retry pass stores it): dropped here.
      for (const f of this.failures.keys()) if (f.closed) this.failures.delete(f);
      this.failures.set(file, (e as Error).message);
      // close() and fsync() now fail with EIO: the bytes stay staged, flushed, with a record of where they go.
      await this.opts.files.saveRecord(file, true).catch((r: unknown) => this.opts.log.error({ path: file.path, err: (r as Error).message }, 'staged bytes kept, but their record could not be written'));
      if (file.conflict) this.opts.log.warn({ path: file.path, staging: file.staging?.path }, `staged write kept, not stored: ${file.conflict}`);
      else this.opts.log.error({ path: file.path, staging: file.staging?.path, err: (e as Error).message }, 'upload failed: staged bytes kept');
      throw e instanceof FsError ? e : new FsError('EIO', `upload of ${file.path} failed: ${(e as Error).message}`, { cause: e });
    }
    file.base = heldCap(file.child);
    // Still open: the record says "stored" now (a crash must not upload the same bytes again). If it cannot,
    // the old record stays (recovery then keeps the bytes as a conflict) and the next change writes it anew.
    if (file.handles > 0) {
      await this.opts.files.saveRecord(file).catch((e: unknown) => {
        file.recordedDirty = false;
        this.opts.log.warn({ path: file.path, err: (e as Error).message }, 'could not update the staging record after an upload');
      });
    }
  }

  /** Whether a background store loop has this file. */
  storing(file: OpenFile): boolean {
    return this.background.has(file);
  }

  /**
   * Stores what is dirty, again while a change (a utimens, say) came in during the upload and `again()` allows
   * it; false when a store failed, or changes are left that `again()` did not let it store.
   */
  private async commitAll(file: OpenFile, again: () => boolean = () => true): Promise<boolean> {
    try {
      let first = true;
      while (file.dirty && !file.unlinked && (first || again())) {
        first = false;
        await this.commit(file);
      }
      return !file.dirty || file.unlinked;
    } catch {
      return false;
    }
  }

  /** For the last close in durable mode: false when the store failed (the bytes stay staged, retried later). */
  async commitOnClose(file: OpenFile): Promise<boolean> {
    const stored = await this.commitAll(file);
    if (!stored && !file.conflict) this.scheduleRetry();
    return stored;
  }

  /**
   * Write-back mode, after the last close (the bytes and their record are on the local disk): stores the file
   * in the background, trying again after each failure until it is stored, reopened, or the mount stops.
   * `finish(stored)` then drops the local state (see TahoeFs.finishClose).
   */
  storeLater(file: OpenFile, finish: (stored: boolean) => Promise<void>): void {
    if (this.background.has(file)) return;
    const loop = (async () => {
      let stored = false;
      try {
        // Reopened: its next last close stores it (no upload per write while a program appends to it).
        await this.tryUntil(async () => {
          stored = await this.commitAll(file, () => file.handles === 0);
          return stored || file.conflict !== undefined || file.handles > 0;
        });
        await finish(stored);
      } finally {
        this.background.delete(file);
      }
    })().catch((e: unknown) => this.opts.log.error({ path: file.path, err: (e as Error).message }, 'background store failed'));
    this.background.set(file, loop);
  }

  private async storeOpenFile(file: OpenFile): Promise<void> {
    const generation = file.generation;
    const staging = file.staging;
    if (!file.unlinked) {
      if (!staging) throw new FsError('EIO', `dirty file without staging: ${file.path}`);
      const started = Date.now();
      const result = await this.storeStaged({
        path: file.path,
        stagingPath: staging.path,
        size: file.size,
        mtime: file.mtime ?? nowTimestamp(),
        own: file.own,
        previous: file.child,
        lock: file.linkLock,
        destination: () => (file.unlinked ? undefined : { parentCap: file.parent.cap, name: file.name }),
        // A write-back store may land long after the bytes were based on the entry: never over another's change.
        // (Asked at link time: a rename meanwhile may have made the file the replacement of another entry.)
        ...(this.deferred ? { guard: () => file.base } : {}),
      });
      if (result.outcome === 'conflict') {
        file.conflict = result.reason;
        throw conflictError(file);
      }
      if (result.outcome === 'linked') {
        file.child = result.child;
        this.opts.log.debug({ path: file.path, bytes: file.size, ms: Date.now() - started, cap: redact(capTextOf(result.child) ?? '') }, 'uploaded');
      }
    }
    file.storedGeneration = Math.max(file.storedGeneration, generation);
    if (file.generation === generation) file.dirty = false;
  }

  /** Uploads staged bytes and links them (see the file's header). */
  async storeStaged(req: StoreRequest): Promise<StoreResult> {
    const { client, directories } = this.opts;
    let previous = req.previous;
    if (req.expectBase !== undefined) {
      const where = req.destination();
      if (!where) return { outcome: 'unlinked' };
      const check = await this.checkBase(where, req.expectBase);
      if ('reason' in check) return { outcome: 'conflict', reason: check.reason };
      previous = check.current;
    }
    if (!req.destination()) return { outcome: 'unlinked' };
    const { stagingPath, size } = req;
    const upload: Upload = { path: req.path, bytes: size, stream: undefined, sending: false };
    const body = () => (size === 0 ? Buffer.alloc(0) : (upload.stream = createReadStream(stagingPath, { start: 0, end: size - 1 })));
    const mutable = previous?.type === 'file' && previous.mutable && previous.rwUri ? previous : undefined;
    if (mutable && req.guard) {
      // A mutable file is overwritten in place before its link: its guard is checked before that.
      const where = req.destination();
      if (!where) return { outcome: 'unlinked' };
      const current = (await client.listDir(where.parentCap)).children.get(where.name);
      if (heldCap(current) !== req.guard()) return { outcome: 'conflict', reason: 'its directory entry changed meanwhile' };
    }
    // A mutable file keeps its cap: its content is replaced in place. Anything else is a new immutable file.
    this.uploads.add(upload);
    let uploaded: string | undefined;
    try {
      uploaded = await this.transfers.run(async () => {
        upload.sending = true;
        if (!mutable) return client.upload(body, size);
        await client.overwriteMutable(mutable.rwUri!, body, size);
        return undefined;
      });
    } finally {
      this.uploads.delete(upload);
    }
    return withLocks([req.lock], async () => {
      const where = req.destination();
      if (!where) return { outcome: 'unlinked' } as const;
      const timed = withMtime(previous?.metadata ?? {}, req.mtime);
      const metadata = req.own ? withOwnMetadata(timed, req.own) : timed;
      const target: LinkTarget = mutable ? { ...linkTargetOf(mutable), metadata } : { type: 'file', roUri: uploaded, metadata };
      // Tahoe has no compare-and-swap: a guarded link looks at the entry again right before linking. A mutable
      // file was overwritten in place already: its link only carries the new time.
      const expect = req.expectBase !== undefined ? (mutable ? undefined : req.expectBase) : req.guard?.();
      const outcome = await this.links.link(where.parentCap, { name: where.name, target, expect });
      if (!outcome.linked) return { outcome: 'conflict', reason: outcome.reason } as const;
      const touched = touchedMetadata(previous?.metadata ?? {}, metadata);
      const child: ChildInfo = mutable
        ? { ...mutable, name: where.name, size, metadata: touched }
        : { name: where.name, type: 'file', roUri: uploaded, size, mutable: false, metadata: touched };
      directories.patch(where.parentCap, where.name, child);
      return { outcome: 'linked', child, destination: where } as const;
    });
  }

  /** The entry at `where` if it still holds `base`; otherwise why not. */
  private async checkBase(where: Destination, base: string | null): Promise<{ current: ChildInfo | undefined } | { reason: string }> {
    const current = (await this.opts.client.listDir(where.parentCap)).children.get(where.name);
    if (heldCap(current) !== base) return { reason: 'its directory entry changed meanwhile' };
    // A mutable file keeps its cap when another client changes it: nothing shows whether it did.
    if (current?.mutable) return { reason: 'a mutable file may have changed meanwhile' };
    return { current };
  }

  // ---- write-back mode: directories, sync, unmount ------------------------------------------------------

  /**
   * Write-back mkdir: a directory made ahead of time (so that it exists in the grid before anything is linked
   * into it), linked at `name` in the background. Its record is on disk before this returns; until the link
   * lands, the parent's listing shows it (Directories.addPendingLink).
   */
  async mkdirLater(parent: DirRef, name: string, path: string, child: ChildInfo): Promise<void> {
    const stagingPath = this.opts.cache.newStagingPath();
    const record: StagedRecord = {
      v: 3, root: this.opts.rootId, owner: this.opts.owner, parentCap: parent.cap, name, path,
      base: null, dirty: true, size: 0, dirCap: capTextOf(child),
    };
    try {
      await writeFile(stagingPath, '', { mode: 0o600 });
      await this.opts.journal.write(stagingPath, record, true);
    } catch (e) {
      await rm(stagingPath, { force: true });
      throw new FsError('EIO', `cannot record new directory ${path}: ${(e as Error).message}`, { cause: e });
    }
    this.opts.directories.addPendingLink(parent.cap, name, child);
    const pending: PendingDir = { parentCap: parent.cap, name, path, child, stagingPath, attempt: undefined, sending: false, done: undefined! };
    pending.done = this.tryUntil(() => (pending.attempt = this.linkPendingDir(pending))).then(() => {
      this.pendingDirs.delete(stagingPath);
    });
    this.pendingDirs.set(stagingPath, pending);
  }

  /**
   * Changes the metadata a pending directory is linked with (its listing shows it at once); false if none is
   * pending at `name`, or its link is on its way (then the change is linked after it: relinkLater).
   */
  editPendingDir(parentCap: string, name: string, edit: (metadata: LinkMetadata) => LinkMetadata): boolean {
    const pending = this.pendingDirAt(parentCap, name);
    if (!pending || pending.sending) return false;
    const metadata = edit(userMetadata(pending.child.metadata));
    pending.child = { ...pending.child, metadata: touchedMetadata(pending.child.metadata, metadata) };
    this.opts.directories.addPendingLink(parentCap, name, pending.child);
    return true;
  }

  /**
   * Write-back change of a stored entry's metadata (its time, mode, xattrs): linked in the background, batched
   * with the other links into its directory (a `tar x` sets every directory's time: one directory update each
   * otherwise), and only over the same cap. Not kept across a crash: metadata, not written bytes.
   */
  relinkLater(parentCap: string, child: ChildInfo, metadata: LinkMetadata, path: string): ChildInfo {
    const updated = { ...child, metadata: touchedMetadata(child.metadata, metadata) };
    const update = this.links
      .link(parentCap, { name: child.name, target: { ...linkTargetOf(child), metadata }, expect: heldCap(child) })
      .then(
        (outcome) => void (outcome.linked || this.opts.log.warn({ path, reason: outcome.reason }, 'metadata not stored')),
        (e: unknown) => this.opts.log.warn({ path, err: (e as Error).message }, 'metadata not stored'),
      )
      .finally(() => this.metadataUpdates.delete(update));
    this.metadataUpdates.add(update);
    return updated;
  }

  /**
   * Write-back link of a new entry that needs no upload of its own (a symlink, a fifo): batched with the other
   * links into its directory, and only where no entry is. Waited for: it has no record to survive a crash.
   */
  async linkNew(parentCap: string, name: string, target: LinkTarget, path: string): Promise<void> {
    const outcome = await this.links.link(parentCap, { name, target, expect: null });
    if (!outcome.linked) throw new FsError('EEXIST', `exists: ${path}`);
  }

  /** The directory made by a write-back mkdir at `name` whose link is still pending, if any. */
  private pendingDirAt(parentCap: string, name: string): PendingDir | undefined {
    return [...this.pendingDirs.values()].find((p) => p.parentCap === parentCap && p.name === name);
  }

  /** A fresh empty directory cap (made ahead of time in write-back mode). */
  newDirectory(): Promise<string> {
    return this.dirPool.take();
  }

  /** One try at linking a pending directory; true when it is settled (linked, or kept as a conflict). */
  private async linkPendingDir(pending: PendingDir): Promise<boolean> {
    const { parentCap, name, child, stagingPath } = pending;
    const directories = this.opts.directories;
    pending.sending = true;
    try {
      const linked = await this.linkDirectory(parentCap, name, child.rwUri!, pending.path, () => pending.child.metadata);
      directories.dropPendingLink(parentCap, name);
      if (linked === name) directories.patch(parentCap, name, child);
      // Another entry took the name: the listing must show theirs, never ours, at that name (an rmdir or a
      // rename of it would act on their entry otherwise).
      else directories.forget(parentCap);
      await this.opts.journal.remove(stagingPath);
      await rm(stagingPath, { force: true });
      return true;
    } catch (e) {
      this.opts.log.warn({ path: pending.path, err: (e as Error).message }, 'new directory not linked yet: will retry');
      return false;
    } finally {
      pending.sending = false;
    }
  }

  /**
   * Links a directory made by a write-back mkdir at `name`, or, if another entry took that name meanwhile, at
   * `name (conflict N)`: what was stored inside it stays reachable. Returns the name it is linked at.
   */
  private async linkDirectory(parentCap: string, name: string, dirCap: string, path: string, metadata: () => LinkMetadata): Promise<string> {
    for (let n = 0; ; n++) {
      const at = n === 0 ? name : `${name} (conflict ${n})`;
      const target: LinkTarget = { type: 'dir', rwUri: dirCap, metadata: metadata() };
      const outcome = await this.links.link(parentCap, { name: at, target, expect: null });
      if (outcome.linked) {
        if (n > 0) this.opts.log.warn({ path, linkedAs: at }, 'new directory linked under another name: its name was taken meanwhile');
        return at;
      }
      if (n >= 99) throw new FsError('EIO', `no free name for new directory ${path}`);
    }
  }

  /**
   * Before an op changes a directory made by mkdir whose link is still pending (rmdir, rename): that link is
   * tried now and must land first. Rejects with EIO if it cannot.
   */
  async settleDirectory(parentCap: string, name: string): Promise<void> {
    const pending = this.pendingDirAt(parentCap, name);
    if (pending && !(await this.tryDirNow(pending))) throw new FsError('EIO', `new directory ${pending.path} is not in the grid yet`);
  }

  /** Ends a pending directory's pause and waits for the try that follows; true when it is settled. */
  private async tryDirNow(pending: PendingDir): Promise<boolean> {
    this.wakeAll();
    await new Promise<void>((r) => setImmediate(r)); // the loop starts its next try
    return (await pending.attempt) === true || !this.pendingDirs.has(pending.stagingPath);
  }

  /**
   * Waits until everything written before the call is stored (files still open included, as sync(2) does),
   * trying every pending store once more at once; reports what is not stored, and why.
   */
  /**
   * What is on its way or stuck, for `blackmatch status`: read from memory (and the journal's records on the
   * local disk), never waiting for a store.
   */
  async status(): Promise<WriteStatus> {
    const uploads = [...this.uploads].map((u) => ({ path: u.path, bytes: u.bytes, sent: u.stream?.bytesRead ?? 0, sending: u.sending }));
    const failed = [...this.failures].filter(([f]) => f.dirty && !f.unlinked && !f.closed).map(([f, error]) => ({ path: f.path, error }));
    const waiting = [...this.background.keys()].filter((f) => !this.failures.has(f)).map((f) => ({ path: f.path, bytes: f.size }));
    for (const d of this.pendingDirs.values()) waiting.push({ path: d.path, bytes: 0 });
    const kept: Array<{ path: string; error: string }> = [];
    for (const { stagingPath, record } of await this.opts.journal.list()) {
      if (!record.dirty || failed.some((f) => f.path === record.path) || waiting.some((w) => w.path === record.path)) continue;
      if (record.conflict) kept.push({ path: record.path, error: 'kept, not stored: its directory entry changed meanwhile' });
      else if (!this.opts.files.all().some((f) => f.staging?.path === stagingPath)) kept.push({ path: record.path, error: 'staged, not stored yet (will retry)' });
    }
    return { uploads, waiting, failed, kept, metadataUpdates: this.metadataUpdates.size };
  }

  async sync(): Promise<SyncReport> {
    const report: SyncReport = { stored: 0, failed: [] };
    this.wakeAll();
    const dirty = this.opts.files.all().filter((f) => f.dirty && !f.unlinked);
    const dirs = [...this.pendingDirs.values()];
    await Promise.all([
      ...this.metadataUpdates,
      ...dirty.map(async (f) => {
        // Only what was written before the call: a file written on meanwhile must not hold sync forever.
        const seen = f.generation;
        const stored = (await this.commitAll(f, () => f.storedGeneration < seen)) || f.storedGeneration >= seen;
        if (stored) {
          this.wakeAll(); // a loop that failed just before our store: it finds nothing left to do
          await this.background.get(f); // its local state and record are dropped too
          report.stored++;
        }
        else report.failed.push({ path: f.path, error: f.conflict ? `kept, not stored: ${f.conflict}` : 'upload failed (will retry)' });
      }),
      ...dirs.map(async (d) => {
        if (await this.tryDirNow(d)) report.stored++;
        else report.failed.push({ path: d.path, error: 'new directory not linked (will retry)' });
      }),
    ]);
    // What earlier runs, or stores that failed before, left in the journal: one more pass, then what is left.
    await this.recover();
    for (const { stagingPath, record } of await this.opts.journal.list()) {
      if (!(await this.isOurs(stagingPath, record)) || !record.dirty) continue;
      if (report.failed.some((f) => f.path === record.path)) continue;
      report.failed.push({ path: record.path, error: record.conflict ? 'kept, not stored: its directory entry changed meanwhile' : 'not stored yet (will retry)' });
    }
    return report;
  }

  /** At unmount: every pending store gets one more try at once, all bounded together; the rest stays in the journal. */
  async drain(): Promise<void> {
    this.draining = true;
    this.wakeAll();
    const all = Promise.all([...this.background.values(), ...[...this.pendingDirs.values()].map((d) => d.done), ...this.metadataUpdates]);
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((r) => (timer = setTimeout(r, this.opts.drainMs ?? DEFAULT_DRAIN_MS)));
    await Promise.race([all, bound]);
    clearTimeout(timer);
  }

  /**
   * Runs `attempt` until it says it is done, pausing between tries (5 s, doubling up to 5 min; wakeAll() ends a
   * pause), or until the mount drains: the store loops of write-back mode.
   */
  private async tryUntil(attempt: () => Promise<boolean>): Promise<void> {
    for (let delay = RETRY_FIRST_MS; !(await attempt()) && !this.draining; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
      await this.pause(delay);
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.wakeups.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms).unref(); // the mount keeps the process alive, not a retry
      this.wakeups.add(wake);
    });
  }

  /** The gateway answers again: every store waiting for another try gets it now. */
  retryNow(): void {
    this.wakeAll();
    if (this.retryTimer === undefined || this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    void this.recover();
  }

  private wakeAll(): void {
    for (const wake of [...this.wakeups]) wake();
  }

  // ---- retries and recovery ---------------------------------------------------------------------------------

  /** One pass over what an earlier run (or a failed upload) left staged; resolves when it is done, never rejects. */
  recover(): Promise<void> {
    return this.retryPass.run().catch((e: unknown) => {
      this.opts.log.warn({ err: (e as Error).message }, 'pass over staged writes failed: will retry');
      this.scheduleRetry();
    });
  }

  scheduleRetry(): void {
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.recover();
    }, this.retryDelayMs);
    this.retryTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.draining = true;
    this.wakeAll();
    clearTimeout(this.retryTimer);
    await this.retryPass.idle();
  }

  /** Whether a record is for this pass to store: this root, not in use here, and no other live mount's. */
  private async isOurs(stagingPath: string, r: StagedRecord): Promise<boolean> {
    const { files, rootId, owner, isAlive } = this.opts;
    if (r.root !== rootId || files.isActiveStaging(stagingPath) || this.pendingDirs.has(stagingPath)) return false;
    const mine = r.owner.pid === owner.pid && r.owner.start === owner.start;
    return mine || !(await isAlive(r.owner));
  }

  /** One pass over every staged write of this root that no open file and no live process owns. */
  private async retryStaged(): Promise<void> {
    let failed = 0;
    for (const staged of await this.opts.journal.list()) {
      if (this.stopped) return;
      if (staged.record.conflict || !(await this.isOurs(staged.stagingPath, staged.record))) continue;
      if (!(await this.recoverStaged(staged))) failed++;
    }
    if (failed > 0) {
      this.retryDelayMs = Math.min(this.retryDelayMs * 2, RETRY_MAX_MS);
      this.scheduleRetry();
    } else {
      this.retryDelayMs = RETRY_FIRST_MS;
    }
  }

  /** Stores one staged file if its directory entry is still what the bytes were based on; false: try again later. */
  private async recoverStaged({ stagingPath, record }: StagedFile): Promise<boolean> {
    const { journal, cache } = this.opts;
    const log = this.opts.log.child({ path: record.path, staging: stagingPath });
    try {
      if (!record.dirty) {
        await rm(stagingPath, { force: true });
        await journal.remove(stagingPath);
        return true;
      }
      if (record.dirCap) return await this.recoverDirectory(stagingPath, record);
      const info = await stat(stagingPath);
      const result = await this.storeStaged({
        path: record.path,
        stagingPath,
        size: info.size,
        // The time of the last write, unless utimens set one.
        mtime: (record.mtimeNs ? parseNs(record.mtimeNs) : undefined) ?? timestampFromSeconds(info.mtimeMs / 1000),
        own: record.own,
        previous: undefined,
        destination: () => ({ parentCap: record.parentCap, name: record.name }),
        expectBase: record.base,
      });
      if (result.outcome === 'conflict') {
        log.warn(`staged write kept, not stored: ${result.reason}`);
        await journal.write(stagingPath, { ...record, conflict: true }, true);
        return true;
      }
      const cap = result.outcome === 'linked' ? tryParseCap(result.child.roUri) : undefined;
      const adopted = cap?.immutable && cap.storageIndex ? await cache.adopt(stagingPath, cap) : false;
      if (!adopted) await rm(stagingPath, { force: true });
      await journal.remove(stagingPath);
      log.info({ bytes: info.size }, 'staged write recovered: uploaded and linked');
      return true;
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'staged write not stored yet: will retry');
      return false;
    }
  }

  /** A directory made in write-back mode whose link a dead process left pending: linked (under another name if its own was taken). */
  private async recoverDirectory(stagingPath: string, record: StagedRecord): Promise<boolean> {
    await this.linkDirectory(record.parentCap, record.name, record.dirCap!, record.path, newLinkMetadata);
    await this.opts.journal.remove(stagingPath);
    await rm(stagingPath, { force: true });
    this.opts.log.info({ path: record.path }, 'new directory recovered: linked');
    return true;
  }
}

interface Upload {
  path: string;
  bytes: number;
  /** The body being sent (a new one per try): how far it has been read tells the progress. */
  stream: ReadStream | undefined;
  sending: boolean;
}

interface PendingDir {
  parentCap: string;
  name: string;
  path: string;
  child: ChildInfo;
  stagingPath: string;
  /** The try in progress (or the last): true when the directory is settled. */
  attempt: Promise<boolean> | undefined;
  /** A try is on its way: its link carries `child.metadata` as it was when sent. */
  sending: boolean;
  /** The whole loop: resolves once settled, or given up at unmount. */
  done: Promise<void>;
}

function conflictError(file: OpenFile): FsError {
  return new FsError('EIO', `${file.path}: kept, not stored: ${file.conflict}`);
}
