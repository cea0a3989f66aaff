// The store: staged bytes uploaded and linked into the grid, and the links that carry no upload of their own
// (a changed time or mode in write-back mode, a symlink). Every store of written bytes goes through
// storeStaged(): upload the staging file (at most `transfers` at once), then link the new cap where the file is
// *now* (a rename or an unlink during the upload moves or cancels the link; no other entry is ever replaced or
// removed), batched with the other links into the same directory (link-batcher.ts). A store that must not land
// over another client's change names the entry its bytes were based on: the one guard, entryIsBase()
// (link-batcher.ts), is checked right before the link, and before the upload where the request asks it.
//
// State, changed only here: `uploads` (on their way or waiting for a slot, for status) and `metadataUpdates`
// (write-back relinks on their way, for sync and unmount).
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Logger } from '../log.js';
import type { ChildInfo, LinkMetadata, LinkTarget, TahoeClient } from '../tahoe/client.js';
import type { DirectoryUpdates } from './dir-updates.js';
import { readOnlyCap, redact } from '../tahoe/caps.js';
import { isBlockedByUnfinishedUpload, offsetWriteRange } from '../tahoe/client.js';
import { heldCap, linkTargetOf, mutableStamp, touchedMetadata, withMtime, withVersion, type Timestamp } from '../tahoe/links.js';
import { withOwnMetadata, type OwnMetadata } from '../tahoe/posix.js';
import { Semaphore, withLocks, type Mutex } from '../util/once.js';
import type { Directories } from './directories.js';
import { ENTRY_CHANGED, entryIsBase, LinkBatcher } from './link-batcher.js';

export const DEFAULT_TRANSFERS = 8;
/** A file changed in place from this size on is stored as MDMF, then written in place (README). */
export const DEFAULT_MUTABLE_FROM = 8 * 1024 * 1024;
/** MDMF's segment size (allmydata/interfaces.py, DEFAULT_MUTABLE_MAX_SEGMENT_SIZE): the gateway rewrites whole ones. */
const MUTABLE_SEGMENT = 128 * 1024;

/** What changed since the last store (an open file's Changes.snapshot()). */
export interface ChangeSet {
  ranges: Array<[number, number]>;
  /** Only a whole store will do (the file shrank, or a write's place is not known). */
  whole: boolean;
  /** Changed in place (not rewritten from scratch) with content before. */
  inPlace: boolean;
  /** The size the grid holds. */
  storedSize: number;
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
  /**
   * Link only over the entry holding this cap (null: no entry), asked right before linking: a store that may
   * land long after its bytes were based on the entry (write-back, recovery). Undefined: link over what is there.
   */
  base?: () => string | null;
  /** Recovery: the entry is looked at before the upload too, and is taken as `previous` (a mutable one refused). */
  checkFirst?: boolean;
  /** What changed since the last store: a mutable file takes only those ranges. Undefined: the whole file. */
  changes?: ChangeSet;
  /** The file's bytes in [start, end) (a staging file over its base content); default: the staging file's. */
  read?: (start: number, end: number) => Body;
  /** Recovery: the version of a mutable file the bytes are based on; the same version there is overwritten in place. */
  baseStamp?: string;
  /** An immutable cap known to hold exactly these bytes (only the metadata changed since it was linked): linked again, not uploaded. */
  sameBytesAs?: string;
}

/** A body being sent: how far it has been read tells the progress. */
type Body = Readable & { bytesRead: number };

/** How a store's bytes go to the grid. */
type Plan =
  | { kind: 'immutable' }
  /** The bytes are in the grid already, as this immutable cap: only the link changes. */
  | { kind: 'relink'; cap: string }
  /** A new MDMF file, whole: a big file changed in place for the first time. */
  | { kind: 'convert' }
  | { kind: 'overwrite'; cap: string }
  | { kind: 'inPlace'; cap: string; changes: ChangeSet };

export type StoreResult =
  | { outcome: 'linked'; child: ChildInfo; destination: Destination }
  | { outcome: 'unlinked' }
  | { outcome: 'conflict'; reason: string }
  /** Linked beside the entry, which another machine changed meanwhile: `keptAs` is the path it is at. */
  | { outcome: 'keptBeside'; child: ChildInfo; destination: Destination; keptAs: string };

interface Upload {
  path: string;
  bytes: number;
  /** The body being sent (a new one per try). */
  stream: Body | undefined;
  sending: boolean;
}

export class Store {
  readonly links: LinkBatcher;
  private readonly transfers: Semaphore;
  private readonly uploads = new Set<Upload>();
  private readonly metadataUpdates = new Set<Promise<void>>();
  private fallbackLogged = false;

  constructor(
    private readonly client: TahoeClient,
    private readonly updates: DirectoryUpdates,
    private readonly directories: Directories,
    private readonly log: Logger,
    transfers = DEFAULT_TRANSFERS,
    /** Files changed in place from this size on become MDMF (Infinity: never). */
    private readonly mutableFrom = DEFAULT_MUTABLE_FROM,
  ) {
    this.transfers = new Semaphore(Math.max(1, transfers));
    this.links = new LinkBatcher(client, updates);
  }

  get transferLimit(): number {
    return this.transfers.limit;
  }

  /**
   * Uploads staged bytes and links them (see the top of this file). Bytes whose entry changed meanwhile (another
   * machine wrote the name) are linked beside it, as `NAME (conflict DATE TIME HOST)`, and reported.
   */
  async storeStaged(req: StoreRequest): Promise<StoreResult> {
    let previous = req.previous;
    let beside = false;
    if (req.checkFirst) {
      const where = req.destination();
      if (!where) return { outcome: 'unlinked' };
      const current = await this.entryAt(where);
      // A mutable file keeps its cap when another client changes it: only the version its link names tells
      // (the one our bytes are based on: a store of ours cut short is finished over it).
      const sameVersion = current?.mutable && req.baseStamp !== undefined && mutableStamp(current) === req.baseStamp;
      if (!entryIsBase(current, req.base?.() ?? null) || (current?.mutable && !sameVersion)) beside = true;
      else previous = current;
    }
    if (!req.destination()) return { outcome: 'unlinked' };
    let mutable = previous?.type === 'file' && previous.mutable && previous.rwUri && !beside ? previous : undefined;
    let plan = this.plan(req, previous, mutable);
    if (mutable && (req.base || plan.kind === 'inPlace')) {
      // A mutable file is written before its link: its guard is checked before that, and changes go in place
      // only over the version they were made on (or another machine's change between them would be merged in).
      const where = req.destination();
      if (!where) return { outcome: 'unlinked' };
      const current = await this.entryAt(where);
      if (req.base && !entryIsBase(current, req.base())) [beside, mutable, plan] = [true, undefined, { kind: 'immutable' }];
      else if (plan.kind === 'inPlace' && (mutableStamp(mutable) === undefined || !current || mutableStamp(current) !== mutableStamp(mutable))) {
        this.log.info({ path: req.path }, 'the version linked is not the one the changes were made over (or is not known): stored whole');
        plan = { kind: 'overwrite', cap: plan.cap };
      }
    }
    const uploaded = plan.kind === 'relink' ? plan.cap : await this.upload(req, plan);
    return withLocks([req.lock], async () => {
      const where = req.destination();
      if (!where) return { outcome: 'unlinked' } as const;
      const timed = withMtime(previous?.metadata ?? {}, req.mtime);
      const owned = req.own ? withOwnMetadata(timed, req.own) : timed;
      // A mutable file's link says its size (a listing does not) and so names the version it now holds.
      // A new MDMF file: a conversion, or an upload that an unfinished one of the same bytes kept from being CHK.
      const madeMutable = uploaded?.startsWith('URI:MDMF:') === true;
      const metadata = mutable || madeMutable ? withVersion(owned, req.size) : owned;
      const target: LinkTarget = mutable
        ? { ...linkTargetOf(mutable), metadata }
        : madeMutable
          ? { type: 'file', rwUri: uploaded, roUri: readOnlyCap(uploaded!), metadata }
          : { type: 'file', roUri: uploaded, metadata };
      if (!beside) {
        // Tahoe has no compare-and-swap: a guarded link looks at the entry again right before linking.
        const outcome = await this.links.link(where.parentCap, { name: where.name, target, expect: req.base?.(), path: req.path, replaced: heldCap(previous) });
        if (outcome.linked) {
          const touched = touchedMetadata(previous?.metadata ?? {}, metadata);
          const child: ChildInfo = { name: where.name, type: 'file', rwUri: target.rwUri, roUri: target.roUri, size: req.size, mutable: target.rwUri !== undefined, metadata: touched };
          this.directories.patch(where.parentCap, where.name, child);
          return { outcome: 'linked', child, destination: where } as const;
        }
        if (outcome.reason !== ENTRY_CHANGED || mutable) return { outcome: 'conflict', reason: outcome.reason } as const;
      }
      // The entry changed since our bytes were based on it: it keeps its name, and ours are linked beside it.
      const kept = await this.updates.linkBeside(where.parentCap, where.name, req.path, target, req.size);
      if (!kept) return { outcome: 'conflict', reason: ENTRY_CHANGED } as const;
      return { outcome: 'keptBeside', child: kept.child, destination: { parentCap: where.parentCap, name: kept.child.name }, keptAs: kept.keptAs } as const;
    });
  }

  /**
   * A mutable file keeps its cap: an MDMF one takes the changed ranges in place, anything else is overwritten
   * whole. A big immutable file changed in place becomes MDMF; anything else is a new immutable file.
   */
  private plan(req: StoreRequest, previous: ChildInfo | undefined, mutable: ChildInfo | undefined): Plan {
    if (mutable) {
      const cap = mutable.rwUri!;
      const changes = req.changes;
      const mdmf = cap.startsWith('URI:MDMF:');
      return mdmf && changes && !changes.whole && changes.storedSize > 0 ? { kind: 'inPlace', cap, changes } : { kind: 'overwrite', cap };
    }
    if (req.sameBytesAs) return { kind: 'relink', cap: req.sameBytesAs };
    const wasFile = previous?.type === 'file' && !previous.mutable;
    if (wasFile && req.changes?.inPlace && req.size >= this.mutableFrom) return { kind: 'convert' };
    return { kind: 'immutable' };
  }

  /** Sends the bytes as planned; returns the new cap (undefined when the file kept its own). */
  private async upload(req: StoreRequest, plan: Exclude<Plan, { kind: 'relink' }>): Promise<string | undefined> {
    const { stagingPath, size } = req;
    const upload: Upload = { path: req.path, bytes: size, stream: undefined, sending: false };
    const read = req.read ?? ((start: number, end: number) => createReadStream(stagingPath, { start, end: end - 1 }));
    const body = (start = 0, end = size) => (end <= start ? Buffer.alloc(0) : (upload.stream = read(start, end)));
    this.uploads.add(upload);
    try {
      return await this.transfers.run(async () => {
        upload.sending = true;
        switch (plan.kind) {
          case 'immutable':
            try {
              return await this.client.upload(() => body(), size);
            } catch (e) {
              if (!isBlockedByUnfinishedUpload(e)) throw e;
              // The same bytes would meet the same leftover allocation for up to 30 minutes: a mutable file has a
              // storage index of its own, so it can be stored now (and reads the same to every client).
              const cap = await this.client.uploadMutable(() => body(), size);
              this.log.warn({ path: req.path, bytes: size, cap: redact(cap) }, 'an unfinished upload of the same bytes holds their place on the servers: stored as a mutable (MDMF) file instead');
              return cap;
            }
          case 'convert': {
            const cap = await this.client.uploadMutable(() => body(), size);
            this.log.info({ path: req.path, bytes: size, cap: redact(cap) }, 'changed in place: stored as a mutable (MDMF) file from now on');
            return cap;
          }
          case 'overwrite':
            await this.client.overwriteMutable(plan.cap, () => body(), size);
            return undefined;
          case 'inPlace':
            try {
              upload.bytes = await this.writeInPlace(plan.cap, plan.changes, size, body);
            } catch (e) {
              if (!this.fallbackLogged) this.log.warn({ path: req.path, err: (e as Error).message }, 'a write in place failed: the file is stored whole instead (logged once)');
              this.fallbackLogged = true;
              upload.bytes = size;
              await this.client.overwriteMutable(plan.cap, () => body(), size);
            }
            return undefined;
        }
      });
    } finally {
      this.uploads.delete(upload);
    }
  }

  /**
   * Sends the changed ranges of an MDMF file, in order, each as one offset write (the gateway rewrites the
   * segments it touches); ranges within two segments of each other go as one. Returns the bytes sent.
   */
  private async writeInPlace(cap: string, changes: ChangeSet, size: number, body: (start: number, end: number) => Body | Buffer): Promise<number> {
    const ranges = mergeRanges(changes.ranges, 2 * MUTABLE_SEGMENT, size);
    // Longer than any range reaches (a write past the end that a truncate then cut short): the rest is a hole.
    const reach = Math.max(changes.storedSize, ranges.at(-1)?.[1] ?? 0);
    if (reach < size) ranges.push([reach, size]);
    let remoteSize = changes.storedSize;
    let sent = 0;
    for (const [start, end] of ranges) {
      const range = offsetWriteRange(remoteSize, start, end);
      if (!range) throw new Error('an offset write into an empty file');
      await this.client.writeMutableAt(cap, range.start, () => body(range.start, range.end), range.end - range.start);
      remoteSize = Math.max(remoteSize, range.end);
      sent += range.end - range.start;
    }
    return sent;
  }

  private async entryAt(where: Destination): Promise<ChildInfo | undefined> {
    return (await this.client.listDir(where.parentCap)).children.get(where.name);
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
        (outcome) => void (outcome.linked || this.log.warn({ path, reason: outcome.reason }, 'metadata not stored')),
        (e: unknown) => this.log.warn({ path, err: (e as Error).message }, 'metadata not stored'),
      )
      .finally(() => this.metadataUpdates.delete(update));
    this.metadataUpdates.add(update);
    return updated;
  }

  /** Resolves once every metadata relink on its way now has landed (or failed: it is logged). */
  async relinksDone(): Promise<void> {
    await Promise.all([...this.metadataUpdates]);
  }

  /** For status: uploads on their way (`sending`) or waiting for a slot; `sent`: bytes read so far. */
  status(): { uploads: Array<{ path: string; bytes: number; sent: number; sending: boolean }>; metadataUpdates: number } {
    const uploads = [...this.uploads].map((u) => ({ path: u.path, bytes: u.bytes, sent: u.stream?.bytesRead ?? 0, sending: u.sending }));
    return { uploads, metadataUpdates: this.metadataUpdates.size };
  }
}

/** Sorted ranges clipped to `size`, joined where the gap between them is under `gap` bytes. */
export function mergeRanges(ranges: Array<[number, number]>, gap: number, size: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [s, e] of [...ranges].sort((a, b) => a[0] - b[0])) {
    const end = Math.min(e, size);
    if (end <= s) continue;
    const last = out[out.length - 1];
    if (last && s - last[1] < gap) last[1] = Math.max(last[1], end);
    else out.push([s, end]);
  }
  return out;
}
