// The directory-update ledger: every change this mount made to a directory (a link, a removal, a new metadata)
// is kept here until a fresh listing, fetched once that directory has been quiet for `settleMs`, shows it in
// place. Tahoe's gateways lose each other's updates of one directory (README, "Several machines, one
// directory"): another gateway's update that began before ours can land up to about 40 s after ours, built on
// the directory as it was before ours, and undo it. So a change that a listing shows undone is made again, and
// checked again after another quiet period, until it holds:
//
// - our link gone, or the name back at a cap our change replaced: linked again (a removal by another machine
//   within the window cannot be told apart from a loss, and keeping data wins);
// - the name removed by us back at the cap we removed: removed again; at another cap: someone else's new file, kept;
// - the name at a cap we never saw, whose link does not say it replaced ours: a conflict. The grid's version
//   keeps the name and ours is linked beside it, as `NAME (conflict DATE TIME HOST)`, and reported.
//
// Entries live in memory and in the ledger file (cache/ledger-file.ts), so a crash keeps them. The checks cost
// one listing per directory per quiet period, a few at a time, off the path of every op. State: `byDir`,
// `quietUntil`, `failures`, `conflicts`, `repairs` change only here; one check per directory at a time
// (`checking`).
import { hostname } from 'node:os';
import type { LedgerFile } from '../cache/ledger-file.js';
import { FsError } from '../errors.js';
import type { Logger } from '../log.js';
import { redact } from '../tahoe/caps.js';
import type { ChildInfo, LinkTarget, TahoeClient } from '../tahoe/client.js';
import { capTextOf, heldCap, userMetadata } from '../tahoe/links.js';
import { Semaphore } from '../util/once.js';
import type { Directories } from './directories.js';

/** What one of our changes left at a name, and what it replaced there. */
export interface Change {
  dirCap: string;
  name: string;
  /** Path in the mount when made, for messages. */
  path: string;
  /** The link the name must hold (undefined: the name must be absent). */
  target?: LinkTarget;
  /** What the name held before our changes (null: no entry): seen there again means ours was undone. */
  replaced: Array<string | null>;
  /** Our link metadata (without Tahoe's key), when the change was one of metadata on the same cap. */
  metadata?: string;
  /** The metadata that change replaced: seen again means it was undone. */
  replacedMetadata?: string[];
}

interface Entry extends Change {
  /** Times made again after a listing showed it undone. */
  repairs: number;
}

export interface Conflict {
  path: string;
  keptAs: string;
  at: number;
}

export interface Repair {
  path: string;
  /** The directory's fingerprint (never its cap). */
  dir: string;
  at: number;
}

export interface LedgerStatus {
  /** Changes waiting for their directory's quiet period and check. */
  checking: number;
  directories: number;
  /** Changes made again since the mount started (each was undone by another writer). */
  repaired: number;
  /** The latest of those (at most REPAIRS_KEPT). */
  repairs: Repair[];
  conflicts: Conflict[];
}

/** The metadata key by which a link says which version it replaced (a fingerprint, never the cap). */
export const REPLACES_KEY = 'replaces';

/** Our view of an entry's metadata: without Tahoe's own key and the replaced-version marker. */
export function metadataJson(metadata: Record<string, unknown> | undefined): string {
  const { [REPLACES_KEY]: _marker, ...rest } = userMetadata(metadata ?? {});
  return JSON.stringify(rest);
}

/**
 * How long after our update another gateway's stale retry can still land: Tahoe's modify() retries after about
 * e, e^2 and e^3 s (30 s in all, with 12% jitter per step; mutable/filenode.py BackoffAgent, lines 37-57), each
 * try a servermap update, a download and a publish: 45 s covers that on a loopback or a far grid.
 */
export const DEFAULT_SETTLE_MS = 45_000;

const keyOf = (dirCap: string, name: string) => `${dirCap}\n${name}`;
/** A check that could not list its directory is tried again after this, doubling per failure up to the most. */
const RETRY_CHECK_MS = 5_000;
const MOST_RETRY_CHECK_MS = 300_000;
/** Failed checks of a directory in a row after which sync no longer waits for it. */
const CHECK_TRIES = 3;
/** Listings at once for the checks: a burst of directories (an unpacked tree) is checked a few at a time. */
const CHECKS_AT_ONCE = 4;
const REPAIRS_KEPT = 100;
/** The ledger file is written anew when it holds this many lines more than 4 per live entry. */
const COMPACT_SLACK_LINES = 10_000;

/** The guarded link of the link batcher (link-batcher.ts), which repairs go through. */
export interface GuardedLinks {
  link(dirCap: string, request: { name: string; target: LinkTarget; expect: string | null; path?: string }): Promise<{ linked: boolean }>;
}

export interface LedgerOptions {
  client: TahoeClient;
  /** The batcher repairs go through (after our own updates of the name): made after the ledger. */
  links: () => GuardedLinks;
  dirs: Directories;
  file: LedgerFile<Change & { repairs: number }>;
  log: Logger;
  /** How long a directory must be quiet before its changes are checked. */
  settleMs: number;
}

export class Ledger {
  /** Per directory cap, its names' entries. */
  private readonly byDir = new Map<string, Map<string, Entry>>();
  /** Per directory cap: when its quiet period ends (our last write to it, plus settleMs). */
  private readonly quietUntil = new Map<string, number>();
  private readonly checking = new Set<string>();
  /** Per directory cap: checks in a row that could not list it. */
  private readonly failures = new Map<string, number>();
  private readonly checks = new Semaphore(CHECKS_AT_ONCE);
  private readonly conflicts: Conflict[] = [];
  private readonly repairs: Repair[] = [];
  private repaired = 0;
  private size = 0;
  private linesWritten = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private stopped = false;
  /** Woken whenever an entry leaves (sync waits on it). */
  private waiters = new Set<() => void>();

  constructor(private readonly opts: LedgerOptions) {}

  /** Reads back what an earlier process left unchecked; its directories are checked after a quiet period. */
  async start(): Promise<void> {
    const now = Date.now();
    for (const entry of (await this.opts.file.load()).values()) {
      this.put(entry);
      this.quietUntil.set(entry.dirCap, now + this.opts.settleMs);
    }
    if (this.size > 0) this.opts.log.info({ changes: this.size }, 'ledger: checking directory changes left by the last run');
    this.schedule();
  }

  /**
   * Records a change just made (its request answered, or a listing showed it landed). What the change itself
   * leaves at the name is dropped from `replaced` here, so callers may pass what they saw there as it was.
   */
  record(change: Change): void {
    if (this.opts.settleMs <= 0) return;
    const earlier = this.get(change.dirCap, change.name);
    const replaced = new Set(change.replaced);
    if (earlier) {
      for (const c of earlier.replaced) replaced.add(c);
      replaced.add(heldCap(earlier.target));
    }
    replaced.delete(heldCap(change.target));
    const entry: Entry = { ...change, replaced: [...replaced], repairs: earlier?.repairs ?? 0 };
    this.put(entry);
    this.write(entry);
    const due = Date.now() + this.opts.settleMs;
    this.quietUntil.set(change.dirCap, due);
    // On every op's path: a later due than the timer's needs no walk of every directory (checkDue does it).
    if (due < this.timerAt) this.schedule();
  }

  /** A name both machines wrote: reported by status and sync (kept here for the mount's life). */
  noteConflict(conflict: Conflict): void {
    this.conflicts.push(conflict);
    this.opts.log.warn({ path: conflict.path, keptAs: conflict.keptAs }, 'another machine wrote the same name at the same time: ours is kept beside it');
  }

  status(): LedgerStatus {
    return { checking: this.size, directories: this.byDir.size, repaired: this.repaired, repairs: [...this.repairs], conflicts: [...this.conflicts] };
  }

  /**
   * Waits until every change recorded so far has been seen in place (or until the deadline). Resolves with
   * how many are still being checked.
   */
  async settled(deadline: number, givingUp: () => boolean = () => false): Promise<number> {
    // A newer change to one of these names is waited for too: it carries the older one with it.
    const waitingFor = [...this.byDir].flatMap(([dirCap, names]) => [...names.keys()].map((name) => [dirCap, name] as const));
    const pending = () => waitingFor.filter(([dirCap, name]) => this.get(dirCap, name));
    for (;;) {
      const left = pending();
      // A directory that could not be listed CHECK_TRIES times in a row is not waited for (it stays checked).
      const hopeful = left.filter(([dirCap]) => (this.failures.get(dirCap) ?? 0) < CHECK_TRIES);
      if (hopeful.length === 0 || Date.now() >= deadline || this.stopped || givingUp()) return left.length;
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(t);
          this.waiters.delete(wake);
          resolve();
        };
        const t = setTimeout(wake, Math.max(0, Math.min(deadline - Date.now(), 1_000)));
        this.waiters.add(wake);
      });
    }
  }

  /** Stops checking (the entries stay on disk for the next start). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const wake of [...this.waiters]) wake();
    await this.opts.file.flushed();
  }

  private schedule(): void {
    if (this.stopped) return;
    let next = Infinity;
    for (const [dirCap, at] of this.quietUntil) if (!this.checking.has(dirCap)) next = Math.min(next, at);
    if (next === Infinity || next >= this.timerAt) return;
    clearTimeout(this.timer);
    this.timerAt = next;
    this.timer = setTimeout(() => {
      this.timerAt = Infinity;
      this.timer = undefined;
      this.checkDue();
    }, Math.max(0, next - Date.now()));
    this.timer.unref();
  }

  private checkDue(): void {
    const now = Date.now();
    for (const [dirCap, at] of this.quietUntil) {
      if (at <= now && !this.checking.has(dirCap)) void this.check(dirCap);
    }
    this.schedule();
  }

  /** One fresh listing of the directory; each of our changes in it is seen in place, made again, or a conflict. */
  private async check(dirCap: string): Promise<void> {
    this.checking.add(dirCap);
    this.quietUntil.delete(dirCap);
    try {
      await this.checks.run(async () => {
        if (this.stopped) return;
        const listing = await this.opts.client.listDir(dirCap);
        this.failures.delete(dirCap);
        // All at once: the repairs of one directory then go out in one batched update.
        const entries = [...(this.byDir.get(dirCap)?.values() ?? [])];
        const settled = await Promise.allSettled(entries.map((entry) => this.settle(entry, listing.children.get(entry.name))));
        const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      });
    } catch (e) {
      if (this.stopped) return;
      const failures = (this.failures.get(dirCap) ?? 0) + 1;
      this.failures.set(dirCap, failures);
      this.opts.log.warn({ dir: redact(dirCap), err: (e as Error).message }, 'ledger: cannot check a directory now; will try again');
      this.quietUntil.set(dirCap, Date.now() + Math.min(MOST_RETRY_CHECK_MS, RETRY_CHECK_MS * 2 ** (failures - 1)));
    } finally {
      this.checking.delete(dirCap);
      if (this.byDir.has(dirCap) && !this.quietUntil.has(dirCap)) this.quietUntil.set(dirCap, Date.now() + this.opts.settleMs);
      if (!this.byDir.has(dirCap)) this.failures.delete(dirCap);
      this.schedule();
    }
  }

  private async settle(entry: Entry, current: ChildInfo | undefined): Promise<void> {
    const held = heldCap(current);
    const ours = entry.target && capTextOf(entry.target);
    if (ours === undefined) {
      // A removal: only our own removed version coming back undoes it; anything else there is someone's new file.
      if (held !== null && entry.replaced.includes(held)) return this.repair(entry, current);
      return this.done(entry);
    }
    if (held === ours) {
      const undoneMetadata = entry.metadata !== undefined && current && entry.replacedMetadata?.includes(metadataJson(current.metadata));
      return undoneMetadata ? this.repair(entry, current) : this.done(entry);
    }
    if (held === null || entry.replaced.includes(held)) return this.repair(entry, current);
    // A version we never saw. It replaced ours on purpose if its link says so; otherwise both were written at once.
    if (current?.metadata?.[REPLACES_KEY] === redact(ours)) return this.done(entry);
    await this.keepBeside(entry, current!);
  }

  /** Our change was undone: made again, through the batcher (after our own updates of the name), guarded. */
  private async repair(entry: Entry, current: ChildInfo | undefined): Promise<void> {
    const held = heldCap(current);
    if (entry.target) {
      const outcome = await this.opts.links().link(entry.dirCap, { name: entry.name, target: entry.target, expect: held });
      if (!outcome.linked) return; // changed again meanwhile: the next check sees it
    } else {
      try {
        await this.opts.client.unlink(entry.dirCap, entry.name);
      } catch (e) {
        if (!(e instanceof FsError && e.code === 'ENOENT')) throw e;
      }
    }
    // The link went through the updates, which recorded it anew: count the repair on that entry.
    const now = this.get(entry.dirCap, entry.name);
    if (!now || heldCap(now.target) !== heldCap(entry.target)) return; // a newer change of ours: checked in its own right
    now.repairs = entry.repairs + 1;
    this.repaired++;
    this.repairs.push({ path: entry.path, dir: redact(entry.dirCap), at: Date.now() });
    if (this.repairs.length > REPAIRS_KEPT) this.repairs.shift();
    this.write(now);
    this.quietUntil.set(entry.dirCap, Date.now() + this.opts.settleMs);
    this.opts.dirs.patch(entry.dirCap, entry.name, entry.target ? childOf(entry.name, entry.target) : undefined);
    this.opts.log.warn({ path: entry.path, dir: redact(entry.dirCap), repairs: now.repairs }, 'ledger: repaired a lost directory update');
  }

  /** Both machines wrote the name: the grid's version keeps it; ours is linked beside it, and reported. */
  private async keepBeside(entry: Entry, theirs: ChildInfo): Promise<void> {
    if (!(await this.linkBeside(entry.dirCap, entry.name, entry.path, entry.target!))) return; // taken: the next check tries again
    this.opts.dirs.patch(entry.dirCap, entry.name, theirs);
    this.done(entry);
  }

  /**
   * Links `target` beside `name`, as `NAME (conflict DATE TIME HOST)`, where nothing is yet, and reports the
   * conflict; undefined when that name is taken. Also for a store whose entry changed before its link (store.ts).
   */
  async linkBeside(dirCap: string, name: string, path: string, target: LinkTarget, size?: number): Promise<{ child: ChildInfo; keptAs: string } | undefined> {
    const beside = conflictName(name, new Date());
    const outcome = await this.opts.links().link(dirCap, { name: beside, target, expect: null, path });
    if (!outcome.linked) return undefined;
    const child = { ...childOf(beside, target), size };
    this.opts.dirs.patch(dirCap, beside, child);
    const keptAs = path.slice(0, path.length - name.length) + beside;
    this.noteConflict({ path, keptAs, at: Date.now() });
    return { child, keptAs };
  }

  private done(entry: Entry): void {
    const names = this.byDir.get(entry.dirCap);
    if (names?.get(entry.name) !== entry) return;
    names.delete(entry.name);
    if (names.size === 0) this.byDir.delete(entry.dirCap);
    this.size--;
    this.opts.file.delete(keyOf(entry.dirCap, entry.name));
    this.wrote();
    for (const wake of [...this.waiters]) wake();
  }

  private get(dirCap: string, name: string): Entry | undefined {
    return this.byDir.get(dirCap)?.get(name);
  }

  private put(entry: Entry): void {
    let names = this.byDir.get(entry.dirCap);
    if (!names) this.byDir.set(entry.dirCap, (names = new Map()));
    if (!names.has(entry.name)) this.size++;
    names.set(entry.name, entry);
  }

  private write(entry: Entry): void {
    this.opts.file.set(keyOf(entry.dirCap, entry.name), entry);
    this.wrote();
  }

  /** A long-lived mount appends without end: the file is written anew, with only the live entries, now and then. */
  private wrote(): void {
    if (++this.linesWritten < 4 * this.size + COMPACT_SLACK_LINES) return;
    this.linesWritten = 0;
    const live = [...this.byDir].flatMap(([dirCap, names]) => [...names].map(([name, e]) => [keyOf(dirCap, name), e] as [string, Entry]));
    this.opts.file.rewrite(live);
  }
}

function childOf(name: string, target: LinkTarget): ChildInfo {
  return { name, type: target.type, rwUri: target.rwUri, roUri: target.roUri, mutable: target.rwUri !== undefined, metadata: target.metadata ?? {} };
}

/** `NAME (conflict 2026-12-03 1342 HOST)`: sorts beside NAME, and says when and where the other version came from. */
export function conflictName(name: string, at: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  const when = `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ${pad(at.getHours())}${pad(at.getMinutes())}`;
  const host = hostname().replace(/[/\s()]/g, '-') || 'host';
  return `${name} (conflict ${when} ${host})`;
}
