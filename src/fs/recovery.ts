// Recovery of the staging journal: one pass over the staged writes of this root that no open file and no live
// process owns (what a crashed run left, and durable closes whose store failed), storing each one only over the
// entry its bytes were based on; what cannot be is kept and reported as a conflict, never overwritten. A pass
// with failures is tried again later (5 s, doubling up to 5 min), at once when the gateway answers again.
//
// State, changed only here: `timer`/`delayMs` (the next pass; passes run one at a time, `pass`), `stopped`
// (set once, at unmount).
import { open, rm, stat } from 'node:fs/promises';
import type { ContentCache } from '../cache/content-cache.js';
import type { StagedFile, StagedRecord, StagingJournal } from '../cache/staging-journal.js';
import type { Logger } from '../log.js';
import { parseCap } from '../tahoe/caps.js';
import type { TahoeClient } from '../tahoe/client.js';
import { capOf, mutableStamp, parseNs, timestampFromSeconds, tryParseCap } from '../tahoe/links.js';
import { readFully, writeFully } from '../util/file-io.js';
import { Coalesced } from '../util/once.js';
import { RETRY_FIRST_MS, RETRY_MAX_MS } from '../util/retry-queue.js';
import type { OpenFiles, ProcessIdentity } from './open-files.js';
import { PendingLinks } from './pending-links.js';
import type { Store } from './store.js';

export interface RecoveryOptions {
  client: TahoeClient;
  store: Store;
  files: OpenFiles;
  pendingLinks: PendingLinks;
  cache: ContentCache;
  journal: StagingJournal;
  log: Logger;
  rootId: string;
  owner: ProcessIdentity;
  /** Whether the process that wrote a record still runs (process/alive.ts), handed down by the caller. */
  isAlive: (owner: ProcessIdentity) => Promise<boolean>;
}

export class Recovery {
  private timer: NodeJS.Timeout | undefined;
  private delayMs = RETRY_FIRST_MS;
  private stopped = false;
  private readonly pass = new Coalesced(() => this.storeAll());

  constructor(private readonly opts: RecoveryOptions) {}

  /** One pass; resolves when it is done, never rejects. */
  run(): Promise<void> {
    return this.pass.run().catch((e: unknown) => {
      this.opts.log.warn({ err: (e as Error).message }, 'pass over staged writes failed: will retry');
      this.later();
    });
  }

  /** A pass after the current delay, unless one is due already. */
  later(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.run();
    }, this.delayMs);
    this.timer.unref();
  }

  /** The gateway answers again: a pass that was due later runs now. */
  now(): void {
    if (this.timer === undefined || this.stopped) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    void this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.pass.idle();
  }

  /**
   * Whether a record is for recovery to store: this root, not in use here, and no other live mount's. The root
   * lock (process/root-lock.ts) does not make the liveness check redundant: it is keyed by the root's name, so
   * one cap mounted under two aliases has two holders, and a holder that let go of it may still be draining.
   */
  async isOurs(stagingPath: string, r: StagedRecord): Promise<boolean> {
    const { files, pendingLinks, rootId, owner, isAlive } = this.opts;
    if (r.root !== rootId || files.isActiveStaging(stagingPath) || pendingLinks.has(stagingPath)) return false;
    const mine = r.owner.pid === owner.pid && r.owner.start === owner.start;
    return mine || !(await isAlive(r.owner));
  }

  private async storeAll(): Promise<void> {
    let failed = 0;
    const ours: StagedFile[] = [];
    for (const staged of await this.opts.journal.list()) {
      if (!staged.record.conflict && (await this.isOurs(staged.stagingPath, staged.record))) ours.push(staged);
    }
    // Directories named before they were made: made before anything stored inside them is linked into them.
    for (const { record } of ours) this.opts.pendingLinks.adoptUnmade(record);
    for (const staged of ours) {
      if (this.stopped) return;
      if (!(await this.storeOne(staged))) failed++;
    }
    if (failed > 0) {
      // The first retry after RETRY_FIRST_MS, then doubling (it doubled first, so the first wait was 10 s).
      this.later();
      this.delayMs = Math.min(this.delayMs * 2, RETRY_MAX_MS);
    } else {
      this.delayMs = RETRY_FIRST_MS;
    }
  }

  /** Stores one staged file if its directory entry is still what the bytes were based on; false: try again later. */
  private async storeOne({ stagingPath, record }: StagedFile): Promise<boolean> {
    const { journal, cache, store, pendingLinks } = this.opts;
    const log = this.opts.log.child({ path: record.path, staging: stagingPath });
    try {
      if (!record.dirty) {
        await rm(stagingPath, { force: true });
        await journal.remove(stagingPath);
        return true;
      }
      if (PendingLinks.isNewEntry(record)) {
        await pendingLinks.recoverLink(stagingPath, record);
        return true;
      }
      if (record.overlay && !(await this.fill(stagingPath, record))) {
        log.warn('staged write kept, not stored: the content it was written over is gone (another client changed the file meanwhile)');
        await journal.write(stagingPath, { ...record, conflict: true }, true);
        return true;
      }
      const info = await stat(stagingPath);
      const result = await store.storeStaged({
        path: record.path,
        stagingPath,
        size: info.size,
        // The time of the last write, unless utimens set one.
        mtime: (record.mtimeNs ? parseNs(record.mtimeNs) : undefined) ?? timestampFromSeconds(info.mtimeMs / 1000),
        own: record.own,
        previous: undefined,
        destination: () => ({ parentCap: record.parentCap, name: record.name }),
        base: () => record.base,
        ...(record.baseStamp ? { baseStamp: record.baseStamp } : {}),
        checkFirst: true,
      });
      if (result.outcome === 'conflict') {
        log.warn(`staged write kept, not stored: ${result.reason}`);
        await journal.write(stagingPath, { ...record, conflict: true }, true);
        return true;
      }
      const cap = result.outcome === 'linked' || result.outcome === 'keptBeside' ? tryParseCap(result.child.roUri) : undefined;
      const adopted = cap?.immutable && cap.storageIndex ? await cache.adopt(stagingPath, cap) : false;
      if (!adopted) await rm(stagingPath, { force: true });
      await journal.remove(stagingPath);
      if (result.outcome === 'keptBeside') log.warn({ bytes: info.size, keptAs: result.keptAs }, 'staged write recovered: its entry changed meanwhile, so it is stored beside it');
      else log.info({ bytes: info.size }, 'staged write recovered: uploaded and linked');
      return true;
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'staged write not stored yet: will retry');
      return false;
    }
  }

  /**
   * Fills in the bytes of a staging file that are still its base content's (fs/overlay.ts), then records it as
   * a whole staging file. The base is an immutable file, or the version of a mutable one its record names:
   * read from the cache, or from the grid while the link still names the version the bytes are based on (the
   * grid then differs from it only where we wrote). False when neither can be had (kept, as a conflict).
   */
  private async fill(stagingPath: string, record: StagedRecord): Promise<boolean> {
    const { cache, journal, client } = this.opts;
    const overlay = record.overlay!;
    const cap = parseCap(overlay.cap);
    const content = cap.immutable ? await cache.open(cap) : await cache.openMutable(cap, overlay.size, overlay.stamp);
    const handle = await open(stagingPath, 'r+');
    try {
      if (!cap.immutable && !content.ranges.containsAll(overlay.ranges)) {
        const entry = (await client.listDir(record.parentCap)).children.get(record.name);
        // A version that cannot be named (a file no store of ours linked) could be anyone's by now.
        if (!entry?.mutable || capOf(entry).storageIndex !== cap.storageIndex || record.baseStamp === undefined || mutableStamp(entry) !== record.baseStamp) return false;
      }
      const chunk = Buffer.alloc(FILL_CHUNK);
      const there = Buffer.alloc(FILL_CHUNK);
      for (const [start, end] of overlay.ranges) {
        for (let pos = start; pos < end; pos += FILL_CHUNK) {
          const part = chunk.subarray(0, Math.min(FILL_CHUNK, end - pos));
          if ((await content.readInto(part, pos)) !== part.length) throw new Error('the base content ends early');
          // What the staging file holds there already (a hole reads as zeros) is not written again: holes stay holes.
          const local = there.subarray(0, part.length);
          local.fill(0, await readFully(handle, local, pos));
          if (!local.equals(part)) await writeFully(handle, part, pos);
        }
      }
      await handle.datasync();
    } finally {
      await handle.close();
      await cache.release(content);
    }
    const { overlay: _filled, ...whole } = record;
    await journal.write(stagingPath, { ...whole, v: 2 }, true);
    return true;
  }
}

const FILL_CHUNK = 1024 * 1024;
