// Write-back directories: a mkdir takes one of our keys (key-pool.ts), hands out the cap it names, writes its
// record (the key with it) and returns, with no request: the client makes the directory in the background,
// before any request names it (tahoe/unmade-dirs.ts). Its link into the parent is tried in the background until
// it lands (a retry queue). Until then the parent's listing shows it
// (Directories.addPendingLink), a change of its metadata rides with its link, and an op that must see it in
// the grid (rmdir, a rename) settles it first. A directory whose name another entry took meanwhile is linked at
// `name (conflict N)`, so that what was stored inside it stays reachable. Recovery makes and links the ones a
// dead process left (recoverLink), from the key in their record. Durable mkdir takes a directory made ahead
// (directory-pool.ts) and links it itself.
//
// State, changed only here: `pending` (one per directory not linked yet, by its record's staging path) and
// each one's `child` (the metadata its link is to carry) and `sending` (a link on its way carries what
// `child` was when it was sent).
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

interface PendingDir {
  parentCap: string;
  name: string;
  path: string;
  child: ChildInfo;
  stagingPath: string;
  sending: boolean;
}

export interface PendingDirectoriesOptions {
  client: TahoeClient;
  links: LinkBatcher;
  directories: Directories;
  cache: ContentCache;
  journal: StagingJournal;
  log: Logger;
  rootId: string;
  owner: ProcessIdentity;
  /** Directories kept made ahead of time. */
  poolSize: number;
  /** Makes one new, empty, unlinked directory. */
  makeDirectory: () => Promise<string>;
  /** A key never used before, for a directory made in the background. */
  takeKey: () => Promise<MutableKey>;
  /** How long a new symlink or special file waits before its link is sent (--write-back-delay). */
  linkDelayMs: number;
}

export class PendingDirectories {
  private readonly pending = new Map<string, PendingDir>();
  private readonly queue = new RetryQueue<string>();
  private readonly pool: DirectoryPool;

  constructor(private readonly opts: PendingDirectoriesOptions) {
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
  async create(parent: DirRef, name: string, path: string, metadata: LinkMetadata): Promise<void> {
    const { rootId, owner, directories, client } = this.opts;
    const key = await this.opts.takeKey();
    const cap = client.deferDirectory(key);
    const child: ChildInfo = { name, type: 'dir', rwUri: cap, roUri: undefined, mutable: true, metadata };
    directories.seedEmpty(cap);
    const record: StagedRecord = {
      v: 5, root: rootId, owner, parentCap: parent.cap, name, path, base: null, dirty: true, size: 0, dirCap: cap,
      dirKey: key.privateKeyDer.toString('base64'),
    };
    await this.record(parent, name, path, child, record, 0);
  }

  /**
   * A new symlink or special file at `name` of `parent`, for write-back: its cap needs no upload (a LIT cap, or
   * one uploaded already) and its record is on disk before this returns; linked `linkDelayMs` later, in the
   * background, unless it is removed before (git makes a symlink and removes it to see whether it can).
   */
  async createLink(parent: DirRef, name: string, path: string, child: ChildInfo): Promise<void> {
    const { rootId, owner } = this.opts;
    const record: StagedRecord = {
      v: 6, root: rootId, owner, parentCap: parent.cap, name, path, base: null, dirty: true, size: child.size ?? 0,
      linkTarget: { roUri: child.roUri!, metadata: userMetadata(child.metadata) },
    };
    await this.record(parent, name, path, child, record, this.opts.linkDelayMs);
  }

  /**
   * Before an unlink: a new entry whose link has not been sent is dropped with its record, and never linked
   * (true); one whose link is on its way is settled first (false: then it is unlinked as any other).
   */
  async remove(parentCap: string, name: string): Promise<boolean> {
    const pending = this.at(parentCap, name);
    if (!pending) return false;
    if (!pending.sending && this.queue.cancel(pending.stagingPath)) {
      this.pending.delete(pending.stagingPath);
      this.opts.directories.dropPendingLink(parentCap, name);
      this.opts.directories.patch(parentCap, name, undefined);
      await this.opts.journal.remove(pending.stagingPath);
      await rm(pending.stagingPath, { force: true });
      return true;
    }
    await this.settle(parentCap, name);
    return false;
  }

  /** Writes a new entry's record (durably), shows it in its parent's listing, and queues its link. */
  private async record(parent: DirRef, name: string, path: string, child: ChildInfo, record: StagedRecord, delayMs: number): Promise<void> {
    const { cache, journal, directories } = this.opts;
    const stagingPath = cache.newStagingPath();
    try {
      await writeFile(stagingPath, '', { mode: 0o600 });
      await journal.write(stagingPath, record, true);
    } catch (e) {
      await rm(stagingPath, { force: true });
      throw new FsError('EIO', `cannot record new entry ${path}: ${(e as Error).message}`, { cause: e });
    }
    directories.addPendingLink(parent.cap, name, child);
    const pending: PendingDir = { parentCap: parent.cap, name, path, child, stagingPath, sending: false };
    this.pending.set(stagingPath, pending);
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

  /** Whether the record at `stagingPath` is a pending directory's (recovery leaves it alone). */
  has(stagingPath: string): boolean {
    return this.pending.has(stagingPath);
  }

  /**
   * Changes the metadata a pending directory is linked with (its listing shows it at once); false if none is
   * pending at `name`, or its link is on its way (then the change is linked after it, as a relink).
   */
  edit(parentCap: string, name: string, edit: (metadata: LinkMetadata) => LinkMetadata): boolean {
    const pending = this.at(parentCap, name);
    if (!pending || pending.sending) return false;
    const metadata = edit(userMetadata(pending.child.metadata));
    pending.child = { ...pending.child, metadata: touchedMetadata(pending.child.metadata, metadata) };
    this.opts.directories.addPendingLink(parentCap, name, pending.child);
    return true;
  }

  /**
   * Before an op changes a directory whose link is still pending (rmdir, rename): that link is tried now and
   * must land first. Rejects with EIO if it cannot.
   */
  async settle(parentCap: string, name: string): Promise<void> {
    const pending = this.at(parentCap, name);
    if (pending && !(await this.queue.tryNow(pending.stagingPath))) throw new FsError('EIO', `new entry ${pending.path} is not in the grid yet`);
  }

  /** sync: every pending link tried now; the paths of those that did not land. */
  async settleAll(): Promise<{ linked: number; notLinked: string[] }> {
    const all = [...this.pending.values()];
    const results = await Promise.all(all.map((p) => this.queue.tryNow(p.stagingPath)));
    return { linked: results.filter((r) => r).length, notLinked: all.filter((_, i) => !results[i]).map((p) => p.path) };
  }

  /** For status: directories whose link has not landed. */
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
      ? { type: 'dir', rwUri: record.dirCap, metadata: newLinkMetadata() }
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

  private at(parentCap: string, name: string): PendingDir | undefined {
    return [...this.pending.values()].find((p) => p.parentCap === parentCap && p.name === name);
  }

  /** One try at linking a pending directory; true when it is settled. */
  private async tryLink(pending: PendingDir): Promise<boolean> {
    const { parentCap, name, child, stagingPath } = pending;
    const { directories, journal, log } = this.opts;
    pending.sending = true;
    try {
      const linked = await this.linkAtFreeName(parentCap, name, { ...linkTargetOf(child), metadata: pending.child.metadata }, pending.path);
      directories.dropPendingLink(parentCap, name);
      if (linked === name) directories.patch(parentCap, name, child);
      // Another entry took the name: the listing must show theirs, never ours, at that name (an rmdir or a
      // rename of it would act on their entry otherwise).
      else directories.forget(parentCap);
      await journal.remove(stagingPath);
      await rm(stagingPath, { force: true });
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
