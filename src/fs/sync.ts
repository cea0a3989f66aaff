// What every write is waiting for, across the rooms that store them: `blackmatch sync` (wait until everything
// written before it is stored; say what is not, and why), `blackmatch status` (what is on its way or stuck,
// from memory), and the drain at unmount (one more try for everything, bounded). It owns no state: it asks the
// commit protocol, the close, the pending directories, the store and recovery.
import type { StagingJournal } from '../cache/staging-journal.js';
import type { TahoeClient } from '../tahoe/client.js';
import { settledWithin } from '../util/once.js';
import type { Closing } from './closing.js';
import type { Commits } from './commits.js';
import type { OpenFile, OpenFiles } from './open-files.js';
import type { Conflict, Ledger, LedgerStatus } from './ledger.js';
import type { PendingLinks } from './pending-links.js';
import type { Recovery } from './recovery.js';
import type { Store } from './store.js';

/** At unmount, how long pending stores get for their last try before the rest is left to the next mount. */
export const DEFAULT_DRAIN_MS = 120_000;
/** sync's own bound when its caller gives none (the command line's default --timeout). */
export const DEFAULT_SYNC_MS = 3_600_000;
/** Rounds of "the gateway was gone, and answers now: try again" within one sync. */
const SYNC_ROUNDS = 4;

/** What sync() found: how many stores it waited for, and every write not stored (with why). */
export interface SyncReport {
  stored: number;
  failed: Array<{ path: string; error: string }>;
  /** Names another machine wrote at the same time: its version keeps the name, ours is kept beside it. */
  conflicts: Conflict[];
  /** Directory changes still waiting for their check when the bound ran out (ledger.ts). */
  unchecked: number;
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
  /** This mount's directory changes waiting to be seen in place, repairs made, conflicts kept (ledger.ts). */
  directoryChanges: LedgerStatus;
}

const KEPT_CONFLICT = 'kept, not stored: its directory entry changed meanwhile';

export interface SyncOptions {
  client: TahoeClient;
  files: OpenFiles;
  commits: Commits;
  closing: Closing;
  pendingLinks: PendingLinks;
  store: Store;
  recovery: Recovery;
  journal: StagingJournal;
  ledger: Ledger;
}

export class Sync {
  constructor(private readonly opts: SyncOptions) {}

  /**
   * Waits until everything written before the call is stored (files still open included, as sync(2) does),
   * trying every pending store once more at once; reports what is not stored, and why. A store that failed
   * while the gateway was gone is tried again as soon as it answers (bounded by `timeoutMs`), never reported
   * as failed while it could land now.
   */
  async sync(timeoutMs = DEFAULT_SYNC_MS, { storedOnly = false } = {}): Promise<SyncReport> {
    const { files, pendingLinks, closing, store, recovery } = this.opts;
    const deadline = Date.now() + timeoutMs;
    const report: SyncReport = { stored: 0, failed: [], conflicts: [], unchecked: 0 };
    const conflictsBefore = new Set(this.opts.ledger.status().conflicts);
    closing.wakeAll();
    pendingLinks.wakeAll();
    const dirty = files.all().filter((f) => f.needsStore);
    let entriesLeft: string[] = [];
    await Promise.all([
      store.relinksDone(),
      ...dirty.map((f) => this.syncFile(f, deadline, report)),
      this.untilGatewayGivesUp(deadline, async () => {
        const { linked, notLinked } = await pendingLinks.settleAll();
        report.stored += linked;
        entriesLeft = notLinked;
        return notLinked.length === 0;
      }),
    ]);
    for (const path of entriesLeft) report.failed.push({ path, error: 'new entry not linked (will retry)' });
    // What earlier runs, or stores that failed before, left in the journal: one more pass, then what is left.
    let left: Array<{ path: string; conflict: boolean }> = [];
    await this.untilGatewayGivesUp(deadline, async () => {
      await recovery.run();
      left = await this.journalLeft();
      return left.length === 0;
    });
    for (const { path, conflict } of left) {
      if (report.failed.some((f) => f.path === path)) continue;
      report.failed.push({ path, error: conflict ? KEPT_CONFLICT : 'not stored yet (will retry)' });
    }
    // Stored is not yet kept: another gateway's late update may still undo ours (ledger.ts). Waited for too.
    // Not while the gateway is gone: no check can be made then, and sync says so rather than wait.
    if (!storedOnly) report.unchecked = await this.opts.ledger.settled(deadline, () => !this.opts.client.gatewayState.online);
    report.conflicts = this.opts.ledger.status().conflicts.filter((c) => !conflictsBefore.has(c));
    return report;
  }

  /** Only what was written before the call: a file written on meanwhile must not hold sync forever. */
  private async syncFile(f: OpenFile, deadline: number, report: SyncReport): Promise<void> {
    const { commits, closing } = this.opts;
    const seen = f.generation;
    const stored = await this.untilGatewayGivesUp(deadline, async () => (await commits.commitAll(f, () => f.storedGeneration < seen)) || f.storedGeneration >= seen || f.conflict !== undefined);
    if (stored && !f.conflict) {
      closing.wakeAll(); // a loop that failed just before our store: it finds nothing left to do
      await closing.settled(f); // its local state and record are dropped too
      report.stored++;
    } else {
      report.failed.push({ path: f.path, error: f.conflict ? `kept, not stored: ${f.conflict}` : 'upload failed (will retry)' });
    }
  }

  /**
   * Runs `attempt` until it says it is done; again only while each failure came with the gateway marked gone
   * and a look now finds it back (a store that failed fast in the moment before it answered again).
   */
  private async untilGatewayGivesUp(deadline: number, attempt: () => Promise<boolean>): Promise<boolean> {
    const { client } = this.opts;
    for (let round = 1; ; round++) {
      if (await attempt()) return true;
      if (round >= SYNC_ROUNDS || Date.now() >= deadline || client.gatewayState.online) return false;
      if (!(await client.probeGateway())) return false;
    }
  }

  /** Dirty records of this root that recovery is to store (none open here, no live process's). */
  private async journalLeft(): Promise<Array<{ path: string; conflict: boolean }>> {
    const left: Array<{ path: string; conflict: boolean }> = [];
    for (const { stagingPath, record } of await this.opts.journal.list()) {
      if (record.dirty && (await this.opts.recovery.isOurs(stagingPath, record))) left.push({ path: record.path, conflict: record.conflict === true });
    }
    return left;
  }

  /** What is on its way or stuck: read from memory (and the journal's records on the local disk), never waiting for a store. */
  async status(): Promise<WriteStatus> {
    const { store, commits, closing, pendingLinks, journal, files } = this.opts;
    const failed = commits.failed();
    const waiting = closing.waiting().filter((f) => commits.failureOf(f) === undefined).map((f) => ({ path: f.path, bytes: f.size }));
    waiting.push(...pendingLinks.waiting());
    const kept: Array<{ path: string; error: string }> = [];
    for (const { stagingPath, record } of await journal.list()) {
      if (!record.dirty || failed.some((f) => f.path === record.path) || waiting.some((w) => w.path === record.path)) continue;
      if (record.conflict) kept.push({ path: record.path, error: KEPT_CONFLICT });
      else if (!files.all().some((f) => f.staging?.path === stagingPath)) kept.push({ path: record.path, error: 'staged, not stored yet (will retry)' });
    }
    return { ...store.status(), waiting, failed, kept, directoryChanges: this.opts.ledger.status() };
  }

  /** At unmount: every pending store gets one more try at once, all bounded together; the rest stays in the journal. */
  async drain(boundMs = DEFAULT_DRAIN_MS): Promise<void> {
    const { closing, pendingLinks, store } = this.opts;
    await settledWithin(Promise.all([closing.drain(), pendingLinks.drain(), store.relinksDone()]), boundMs);
  }
}
