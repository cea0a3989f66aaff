// New entries of write-back whose link into their directory is still to be sent: directories, symlinks and
// special files. Each has a record in the staging journal (durable before the op returns) and a job in a retry
// queue that links it until it lands; until then its parent's listing shows it (Directories.addPendingLink), a
// change of its metadata rides with its link (and is written to its record), and an op that must see it in the
// grid (rmdir, rename) settles it first. One whose name another entry took meanwhile is linked at
// `name (conflict N)`, so that what is inside stays reachable; an op on `name` then fails rather than act on the
// other entry. Recovery links the ones a dead process left (recoverLink).
// - mkdir takes one of our keys (key-pool.ts) and hands out the cap it names: the client makes the directory in
//   the background, before any request names it (tahoe/unmade-dirs.ts); the key is in the record.
// - symlink and mknod of a special file: linked `linkDelayMs` later, so that one removed before (git makes a
//   symlink and removes it to see whether it can) costs no request at all.
// Durable mkdir takes a directory made ahead (directory-pool.ts) and links it itself.
//
// State, changed only here: `pending` (one per entry not linked yet, by its record's staging path, from before
// its record is written until after it is removed), and each one's `child` (the metadata its link is to carry,
// written with `record` in order through `recordWrites`), `sending` (a link on its way
// carries what `child` was when it was sent), `tried` (a link was sent: it may be in the grid even if its try
// failed) and `landedAt`.
import { rm, writeFile } from 'node:fs/promises';
import type { ContentCache } from '../cache/content-cache.js';
import type { StagedRecord, StagingJournal } from '../cache/staging-journal.js';
import { FsError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ChildInfo, LinkMetadata, LinkTarget, TahoeClient } from '../tahoe/client.js';
import { linkTargetOf, newLinkMetadata, touchedMetadata, userMetadata } from '../tahoe/links.js';
import { mutableKeyFromDer, type MutableKey } from '../tahoe/keys.js';
import { RetryQueue } from '../util/retry-queue.js';
import type { DirRef, Directories } from './directories.js';
import { DirectoryPool } from './directory-pool.js';
import type { LinkBatcher } from './link-batcher.js';
import type { ProcessIdentity } from './open-files.js';

interface PendingEntry {
  parentCap: string;
  name: string;
  path: string;
  child: ChildInfo;
  stagingPath: string;
  readonly record: StagedRecord;
  recordWrites: Promise<void>;
  recordGone: boolean;
  sending: boolean;
  tried: boolean;
  landedAt: string | undefined;
}

export interface PendingLinksOptions {
  client: TahoeClient;
  links: LinkBatcher;
  directories: Directories;
  cache: ContentCache;
  journal: StagingJournal;
  log: Logger;
  rootId: string;
  owner: ProcessIdentity;
  /** Directories kept made ahead of time, for durable mkdir. */
  poolSize: number;
  /** Makes one new, empty, unlinked directory. */
  makeDirectory: () => Promise<string>;
  /** A key never used before, for a directory made in the background. */
  takeKey: () => Promise<MutableKey>;
  /** How long a new symlink or special file waits before its link is sent (--write-back-delay). */
  linkDelayMs: number;
}

export class PendingLinks {
  private readonly pending = new Map<string, PendingEntry>();
  private readonly queue = new RetryQueue<string>();
  private readonly pool: DirectoryPool;

  constructor(private readonly opts: PendingLinksOptions) {
    this.pool = new DirectoryPool(opts.makeDirectory, opts.poolSize, opts.log);
  }

  /** A fresh empty directory cap (made ahead of time), for a durable mkdir to link. */
  newDirectory(): Promise<string> {
    return this.pool.take();
  }

  /**
   * A new directory at `name` of `parent`, for write-back: its cap named by a key of ours and its record on disk
   * (the key in it) before this returns; made and linked in the background. Listed as empty at once.
   */
  async createDirectory(parent: DirRef, name: string, path: string, metadata: LinkMetadata): Promise<void> {
    const { rootId, owner, directories, client } = this.opts;
    const key = await this.opts.takeKey();
    const cap = client.deferDirectory(key);
    const child: ChildInfo = { name, type: 'dir', rwUri: cap, roUri: undefined, mutable: true, metadata };
    directories.seedEmpty(cap);
    const record: StagedRecord = {
      v: 5, root: rootId, owner, parentCap: parent.cap, name, path, base: null, dirty: true, size: 0, dirCap: cap,
      dirKey: key.privateKeyDer.toString('base64'), linkTarget: { metadata: userMetadata(metadata) },
    };
    await this.add(parent, name, path, child, record, 0);
  }

  /**
   * A new symlink or special file at `name` of `parent`, for write-back: its cap needs no upload (a LIT cap, or
   * one uploaded already) and its record is on disk before this returns; linked `linkDelayMs` later, in the
   * background, unless it is removed before.
   */
  async createSmall(parent: DirRef, name: string, path: string, child: ChildInfo): Promise<void> {
    const { rootId, owner } = this.opts;
    const record: StagedRecord = {
      v: 6, root: rootId, owner, parentCap: parent.cap, name, path, base: null, dirty: true, size: child.size ?? 0,
      linkTarget: { roUri: child.roUri!, metadata: userMetadata(child.metadata) },
    };
    await this.add(parent, name, path, child, record, this.opts.linkDelayMs);
  }

  /**
   * Before an unlink: a new entry whose link was never sent is dropped with its record, and never linked (true);
   * one whose link was sent is settled first (false: then it is unlinked as any other, at its name).
   */
  async remove(parentCap: string, name: string): Promise<boolean> {
    const pending = this.at(parentCap, name);
    if (!pending) return false;
    if (!pending.tried && this.queue.cancel(pending.stagingPath)) {
      this.opts.directories.dropPendingLink(parentCap, name);
      this.opts.directories.patch(parentCap, name, undefined);
      await this.removeRecord(pending);
      this.pending.delete(pending.stagingPath); // only now: until its record is gone, recovery must leave it alone
      return true;
    }
    await this.settle(parentCap, name);
    return false;
  }

  /** Whether the record at `stagingPath` is a pending entry's (recovery leaves it alone). */
  has(stagingPath: string): boolean {
    return this.pending.has(stagingPath);
  }

  /**
   * Changes the metadata a pending entry is linked with (its listing shows it at once, its record keeps it for
   * a recovery); false if none is pending at `name`, or its link is on its way (then the change is linked after
   * it, as a relink).
   */
  async edit(parentCap: string, name: string, edit: (metadata: LinkMetadata) => LinkMetadata): Promise<boolean> {
    const pending = this.at(parentCap, name);
    if (!pending || pending.sending) return false;
    const metadata = edit(userMetadata(pending.child.metadata));
    pending.child = { ...pending.child, metadata: touchedMetadata(pending.child.metadata, metadata) };
    this.opts.directories.addPendingLink(parentCap, name, pending.child);
    await this.writeRecord(pending);
    return true;
  }

  /**
   * Before an op changes an entry whose link is still pending (rmdir, rename, unlink): that link is tried now
   * and must land first, at its name. Rejects with EIO if it cannot, or if it landed under another name (the
   * name is another client's now: the op must not act on their entry).
   */
  async settle(parentCap: string, name: string): Promise<void> {
    const pending = this.at(parentCap, name);
    if (!pending) return;
    // A try already on its way may have begun before the op, and failed: one more, begun for it.
    const linked = (await this.queue.tryNow(pending.stagingPath)) || (await this.queue.tryNow(pending.stagingPath));
    if (!linked) throw new FsError('EIO', `new entry ${pending.path} is not in the grid yet`);
    if (pending.landedAt !== undefined && pending.landedAt !== name) {
      throw new FsError('EIO', `${pending.path}: another client took the name meanwhile; this mount's new entry is at "${pending.landedAt}"`);
    }
  }

  /** sync: every pending link tried now; the paths of those that did not land. */
  async settleAll(): Promise<{ linked: number; notLinked: string[] }> {
    const all = [...this.pending.values()];
    const results = await Promise.all(all.map((p) => this.queue.tryNow(p.stagingPath)));
    return { linked: results.filter((r) => r).length, notLinked: all.filter((_, i) => !results[i]).map((p) => p.path) };
  }

  /** For status: new entries whose link has not landed. */
  waiting(): Array<{ path: string; bytes: number }> {
    return [...this.pending.values()].map((d) => ({ path: d.path, bytes: 0 }));
  }

  wakeAll(): void {
    this.queue.wakeAll();
  }

  /** At unmount: one more try each; what is left is linked by the next mount (recoverLink). */
  drain(): Promise<void> {
    return this.queue.drain();
  }

  /**
   * Recovery, before anything else of a dead process is stored: the directories it named and may not have made
   * are made before any request names them (files stored inside link into them). False: the record's key does
   * not name its cap, so it is left alone.
   */
  adoptUnmade(record: StagedRecord): boolean {
    if (record.dirKey === undefined) return true;
    let cap: string | undefined;
    try {
      cap = this.opts.client.deferDirectory(mutableKeyFromDer(Buffer.from(record.dirKey, 'base64')));
    } catch {
      cap = undefined;
    }
    return cap === record.dirCap;
  }

  /**
   * Recovery: a new directory, symlink or special file a dead process left unlinked; made (a directory) and
   * linked, under another name if its name was taken.
   */
  async recoverLink(stagingPath: string, record: StagedRecord): Promise<void> {
    if (!this.adoptUnmade(record)) throw new FsError('EIO', `the record of new directory ${record.path} holds a key that does not name it`);
    const target: LinkTarget = record.dirCap
      ? { type: 'dir', rwUri: record.dirCap, metadata: record.linkTarget?.metadata ?? newLinkMetadata() }
      : { type: 'file', roUri: record.linkTarget!.roUri, metadata: record.linkTarget!.metadata };
    const at = await this.linkAtFreeName(record.parentCap, record.name, target, record.path);
    this.opts.directories.patch(record.parentCap, at, {
      name: at, type: target.type, rwUri: target.rwUri, roUri: target.roUri, size: record.dirCap ? undefined : record.size,
      mutable: target.type === 'dir', metadata: touchedMetadata({}, target.metadata!),
    });
    await this.opts.journal.remove(stagingPath);
    await rm(stagingPath, { force: true });
    this.opts.log.info({ path: record.path }, 'new entry recovered: linked');
  }

  /** Whether a record is a new entry's, for recoverLink (its staging file is empty). */
  static isNewEntry(record: StagedRecord): boolean {
    return record.dirCap !== undefined || record.linkTarget !== undefined;
  }

  private at(parentCap: string, name: string): PendingEntry | undefined {
    for (const p of this.pending.values()) if (p.parentCap === parentCap && p.name === name && p.landedAt === undefined) return p;
    return undefined;
  }

  /** Registers a new entry (before its record is written: recovery must never take it), records it, queues its link. */
  private async add(parent: DirRef, name: string, path: string, child: ChildInfo, record: StagedRecord, delayMs: number): Promise<void> {
    const stagingPath = this.opts.cache.newStagingPath();
    const pending: PendingEntry = {
      parentCap: parent.cap, name, path, child, stagingPath, record, recordWrites: Promise.resolve(), recordGone: false,
      sending: false, tried: false, landedAt: undefined,
    };
    this.pending.set(stagingPath, pending);
    try {
      await writeFile(stagingPath, '', { mode: 0o600 });
      await this.writeRecord(pending);
    } catch (e) {
      this.pending.delete(stagingPath);
      await rm(stagingPath, { force: true });
      throw new FsError('EIO', `cannot record new entry ${path}: ${(e as Error).message}`, { cause: e });
    }
    this.opts.directories.addPendingLink(parent.cap, name, child);
    this.queue.add(
      stagingPath,
      async () => {
        const settled = await this.tryLink(pending);
        if (settled) this.pending.delete(stagingPath);
        return settled;
      },
      delayMs,
    );
  }

  /**
   * Writes the entry's record with the metadata its link is to carry now, after the writes before it (never once
   * it is removed).
   */
  private writeRecord(pending: PendingEntry): Promise<void> {
    const write = pending.recordWrites.then(async () => {
      if (pending.recordGone) return;
      const linkTarget = { ...pending.record.linkTarget, metadata: userMetadata(pending.child.metadata) };
      await this.opts.journal.write(pending.stagingPath, { ...pending.record, linkTarget }, true);
    });
    pending.recordWrites = write.catch(() => undefined);
    return write;
  }

  /** Removes the entry's record and staging file, after any write of it on its way. */
  private removeRecord(pending: PendingEntry): Promise<void> {
    const removal = pending.recordWrites.then(async () => {
      pending.recordGone = true;
      await this.opts.journal.remove(pending.stagingPath);
      await rm(pending.stagingPath, { force: true });
    });
    pending.recordWrites = removal.catch(() => undefined);
    return removal;
  }

  /** One try at linking a pending entry; true when it is settled. */
  private async tryLink(pending: PendingEntry): Promise<boolean> {
    const { parentCap, name } = pending;
    const { directories, log } = this.opts;
    pending.sending = true;
    pending.tried = true;
    try {
      if (pending.landedAt === undefined) {
        const child = pending.child;
        const linked = await this.linkAtFreeName(parentCap, name, { ...linkTargetOf(child), metadata: child.metadata }, pending.path);
        pending.landedAt = linked;
        directories.dropPendingLink(parentCap, name);
        if (linked === name) directories.patch(parentCap, name, child);
        // Another entry took the name: the listing must show theirs, never ours, at that name (an rmdir or a
        // rename of it would act on their entry otherwise).
        else directories.forget(parentCap);
      }
      await this.removeRecord(pending);
      return true;
    } catch (e) {
      log.warn({ path: pending.path, err: (e as Error).message }, 'new entry not linked yet: will retry');
      return false;
    } finally {
      pending.sending = false;
    }
  }

  /** Links `target` at `name`, or at `name (conflict N)` if another entry took it; returns the name it is linked at. */
  private async linkAtFreeName(parentCap: string, name: string, target: LinkTarget, path: string): Promise<string> {
    for (let n = 0; ; n++) {
      const at = n === 0 ? name : `${name} (conflict ${n})`;
      const outcome = await this.opts.links.link(parentCap, { name: at, target, expect: null });
      if (outcome.linked) {
        if (n > 0) this.opts.log.warn({ path, linkedAs: at }, 'new entry linked under another name: its name was taken meanwhile');
        return at;
      }
      if (n >= 99) throw new FsError('EIO', `no free name for new entry ${path}`);
    }
  }
}
