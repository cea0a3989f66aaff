// Storing staged bytes on the grid. Every store goes through storeStaged(): upload the staging file, then
// link the new cap where the file is *now* (a rename or an unlink during the upload moves or cancels the
// link; no other entry is ever replaced or removed). Three callers: close() and fsync() of a written file
// (durable: they return once the web API serves the bytes), the background retry of a store that failed,
// and recovery at start of what a dead process left staged (which links only over the entry the bytes were
// based on, and otherwise keeps them and reports a conflict).
//
// State: `retryTimer` and `retryDelayMs` belong to this class; the retry pass runs one at a time
// (`retryPass`). An open file's `uploading` is set and cleared here only (see open-files.ts for the rest).
import { createReadStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import type { ContentCache } from '../cache/content-cache.js';
import type { StagedFile, StagingJournal } from '../cache/staging-journal.js';
import { FsError } from '../errors.js';
import type { Logger } from '../log.js';
import { redact } from '../tahoe/caps.js';
import type { ChildInfo, LinkTarget, TahoeClient } from '../tahoe/client.js';
import {
  capTextOf, linkTargetOf, nowTimestamp, parseNs, timestampFromSeconds, touchedMetadata, tryParseCap, withMtime, type Timestamp,
} from '../tahoe/links.js';
import { Coalesced, withLocks, type Mutex } from '../util/once.js';
import type { Directories } from './directories.js';
import type { OpenFile, OpenFiles, ProcessIdentity } from './open-files.js';

/** Staged writes whose upload failed are retried after this long, doubling up to RETRY_MAX_MS. */
const RETRY_FIRST_MS = 5_000;
const RETRY_MAX_MS = 5 * 60_000;

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
}

/** Where staged bytes are to be linked. */
export interface Destination {
  parentCap: string;
  name: string;
}

export interface StoreRequest {
  stagingPath: string;
  size: number;
  /** The file's mtime, stored in the link metadata. */
  mtime: Timestamp;
  /** The entry the bytes replace, as last seen: a mutable file is overwritten in place; its metadata is kept. */
  previous: ChildInfo | undefined;
  /** Where to link, asked right before linking (under `lock`): undefined when the file was unlinked meanwhile. */
  destination: () => Destination | undefined;
  /** Held while linking, so that a rename or unlink of the same file waits (or is waited for). */
  lock?: Mutex;
  /** Recovery: store only over an entry that still holds this cap (null: no entry at all). */
  expectBase?: string | null;
}

export type StoreResult =
  | { outcome: 'linked'; child: ChildInfo; destination: Destination }
  | { outcome: 'unlinked' }
  | { outcome: 'conflict'; reason: string };

export class WriteBack {
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs = RETRY_FIRST_MS;
  private stopped = false;
  private readonly retryPass = new Coalesced(() => this.retryStaged());

  constructor(private readonly opts: WriteBackOptions) {}

  /** Uploads the staging file of an open file and links it; returns once the web API serves the new bytes. */
  async commit(file: OpenFile): Promise<void> {
    while (file.uploading) await file.uploading.catch(() => undefined);
    if (!file.dirty) return;
    file.uploading = this.storeOpenFile(file);
    try {
      await file.uploading;
    } catch (e) {
      // close() and fsync() now fail with EIO: the bytes stay staged, flushed, with a record of where they go.
      await this.opts.files.saveRecord(file, true).catch((r: unknown) => this.opts.log.error({ path: file.path, err: (r as Error).message }, 'staged bytes kept, but their record could not be written'));
      this.opts.log.error({ path: file.path, staging: file.staging?.path, err: (e as Error).message }, 'upload failed: staged bytes kept');
      throw e instanceof FsError ? e : new FsError('EIO', `upload of ${file.path} failed: ${(e as Error).message}`, { cause: e });
    } finally {
      file.uploading = undefined;
    }
    file.base = file.child ? (capTextOf(file.child) ?? null) : null;
    // Still open: the record says "stored" now (a crash must not upload the same bytes again). If it cannot,
    // the old record stays (recovery then keeps the bytes as a conflict) and the next change writes it anew.
    if (file.handles > 0) {
      await this.opts.files.saveRecord(file).catch((e: unknown) => {
        file.recordedDirty = false;
        this.opts.log.warn({ path: file.path, err: (e as Error).message }, 'could not update the staging record after an upload');
      });
    }
  }

  /** For the last close: stores what is dirty; false when that failed (the bytes stay staged, retried later). */
  async commitOnClose(file: OpenFile): Promise<boolean> {
    try {
      // Again while a change (a utimens, say) came in during the upload: the last close stores everything.
      while (file.dirty && !file.unlinked) await this.commit(file);
      return true;
    } catch {
      this.scheduleRetry();
      return false;
    }
  }

  private async storeOpenFile(file: OpenFile): Promise<void> {
    const generation = file.generation;
    const staging = file.staging;
    if (!file.unlinked) {
      if (!staging) throw new FsError('EIO', `dirty file without staging: ${file.path}`);
      const started = Date.now();
      const result = await this.storeStaged({
        stagingPath: staging.path,
        size: file.size,
        mtime: file.mtime ?? nowTimestamp(),
        previous: file.child,
        lock: file.linkLock,
        destination: () => (file.unlinked ? undefined : { parentCap: file.parent.cap, name: file.name }),
      });
      if (result.outcome === 'linked') {
        file.child = result.child;
        this.opts.log.debug({ path: file.path, bytes: file.size, ms: Date.now() - started, cap: redact(capTextOf(result.child) ?? '') }, 'uploaded');
      }
    }
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
    const body = () => (size === 0 ? Buffer.alloc(0) : createReadStream(stagingPath, { start: 0, end: size - 1 }));
    const mutable = previous?.type === 'file' && previous.mutable && previous.rwUri ? previous : undefined;
    // A mutable file keeps its cap: its content is replaced in place. Anything else is a new immutable file.
    const uploaded = mutable ? undefined : await client.upload(body, size);
    if (mutable) await client.overwriteMutable(mutable.rwUri!, body, size);
    return withLocks([req.lock], async () => {
      const where = req.destination();
      if (!where) return { outcome: 'unlinked' } as const;
      if (req.expectBase !== undefined) {
        // Tahoe has no compare-and-swap: look again right before linking, to keep the window small.
        const again = await this.checkBase(where, req.expectBase);
        if ('reason' in again) return { outcome: 'conflict', reason: again.reason } as const;
      }
      const metadata = withMtime(previous?.metadata ?? {}, req.mtime);
      const target: LinkTarget = mutable ? { ...linkTargetOf(mutable), metadata } : { type: 'file', roUri: uploaded, metadata };
      await client.setChild(where.parentCap, where.name, target, true);
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
    if ((current ? (capTextOf(current) ?? null) : null) !== base) return { reason: 'its directory entry changed meanwhile' };
    // A mutable file keeps its cap when another client changes it: nothing shows whether it did.
    if (current?.mutable) return { reason: 'a mutable file may have changed meanwhile' };
    return { current };
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
    clearTimeout(this.retryTimer);
    await this.retryPass.idle();
  }

  /** One pass over every staged write of this root that no open file and no live process owns. */
  private async retryStaged(): Promise<void> {
    const { journal, files, rootId, owner, isAlive } = this.opts;
    let failed = 0;
    for (const staged of await journal.list()) {
      const r = staged.record;
      if (this.stopped) return;
      if (r.root !== rootId || r.conflict || files.isActiveStaging(staged.stagingPath)) continue;
      const ours = r.owner.pid === owner.pid && r.owner.start === owner.start;
      if (!ours && (await isAlive(r.owner))) continue; // another mount of this root owns it
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
      const info = await stat(stagingPath);
      const result = await this.storeStaged({
        stagingPath,
        size: info.size,
        // The time of the last write, unless utimens set one.
        mtime: (record.mtimeNs ? parseNs(record.mtimeNs) : undefined) ?? timestampFromSeconds(info.mtimeMs / 1000),
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
}
