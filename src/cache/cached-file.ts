// One file's content on disk: a sparse data file plus exactly which byte ranges it holds. Reads wait only for
// their own range. Two kinds:
// - an immutable file's cached content: one sequential download per file fills it from where a reader is; a
//   read far from that download is served by a Range request of the Tahoe segments it needs. Its record
//   (<key>.meta) keeps it across restarts;
// - a snapshot of a mutable file (no record): ONE GET of the whole file from the start, never a Range
//   request, so that every byte comes from the same version. Its size is the listing's until that GET ends,
//   then what the GET delivered (a listing may be stale).
//
// Crash safety: the record on disk only ever claims ranges whose bytes were flushed to disk (fdatasync)
// before the record was written, so a crash can lose downloaded bytes but never serve wrong ones.
//
// Concurrency: one event loop; `ranges`, `stream`, `fetches`, `waiters`, `currentSize` and `sizeFinal`
// change across awaits (only the downloads of this file change them) and are re-read after each one.
import { constants } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { fromLocalFs, FsError } from '../errors.js';
import type { Logger } from '../log.js';
import { redact } from '../tahoe/caps.js';
import type { ContentSource } from '../storage/direct-reads.js';
import { replaceFile } from '../util/durable-file.js';
import { readFully, writeFully } from '../util/file-io.js';
import { SharedPromise } from '../util/once.js';
import { RangeSet, type Range } from './range-set.js';

/** Tahoe's segment size: the unit a Range request costs the gateway anyway. */
export const SEGMENT = 128 * 1024;
/** A read this far ahead of the sequential download gets its own Range request instead of waiting. */
export const STREAM_WINDOW = 4 * 1024 * 1024;
/** Segments fetched beyond a far read, for a reader that goes on from there. */
const RANGE_READAHEAD_SEGMENTS = 3;
/** Persist the ranges record after this many new bytes (and whenever a download stops). */
const PERSIST_EVERY_BYTES = 16 * 1024 * 1024;

/** Backstop for one read's wait; every download also has its own idle bound. */
const WAIT_BOUND_MS = 10 * 60_000;

export interface CachedFileMeta {
  v: 1;
  size: number;
  ranges: Range[];
  lastUsed: number;
}

interface Waiter {
  start: number;
  end: number;
  /** The download this read waits for: its failure fails the read. */
  source: object;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface Download {
  /** Next byte this download will write (for the stream: its position). */
  pos: number;
  end: number;
  abort: AbortController;
}

export class CachedFile {
  readonly ranges: RangeSet;
  /** Open handles and in-progress reads on this content; an entry in use is never evicted. */
  refs = 0;
  lastUsed: number;
  private handle: FileHandle | undefined;
  private readonly opening = new SharedPromise<FileHandle>();
  private stream: Download | undefined;
  private readonly fetches = new Set<Download>();
  private waiters: Waiter[] = [];
  private unpersistedBytes = 0;
  private persisting: Promise<void> | undefined;
  private persistAgain = false;
  private closed = false;
  private currentSize: number;
  /** False for a snapshot until its GET ended: until then the size is the listing's, which may be stale. */
  private sizeFinal: boolean;
  /** Why a snapshot's one GET failed: a snapshot is never fetched again (another version could come). */
  private snapshotError: FsError | undefined;

  constructor(
    readonly key: string,
    readonly capText: string,
    size: number,
    readonly dataPath: string,
    /** Where the ranges record goes; undefined for a snapshot of a mutable file (never persisted). */
    private readonly metaPath: string | undefined,
    meta: CachedFileMeta | undefined,
    private readonly client: ContentSource,
    private readonly log: Logger,
    /** Called with the number of bytes newly present, for the cache's size accounting. */
    private readonly onGrow: (bytes: number) => void,
  ) {
    this.ranges = new RangeSet(meta?.ranges ?? []);
    this.lastUsed = meta?.lastUsed ?? Date.now();
    this.currentSize = size;
    this.sizeFinal = metaPath !== undefined;
  }

  get size(): number {
    return this.currentSize;
  }

  /** Whether this is a snapshot of a mutable file (see the top of this file). */
  get snapshot(): boolean {
    return this.metaPath === undefined;
  }

  /** Whether [start, end) clipped to the file is present; for a snapshot, reads up to its end wait for that end. */
  private satisfied(start: number, end: number): boolean {
    return this.ranges.contains(start, Math.min(end, this.size)) && (this.sizeFinal || end < this.size);
  }

  get complete(): boolean {
    return this.ranges.contains(0, this.size);
  }

  /** Opens the data file once, however many reads ask at the same time. */
  private openData(): Promise<FileHandle> {
    return this.opening.get(() =>
      open(this.dataPath, constants.O_RDWR | constants.O_CREAT, 0o600).then(
        (h) => (this.handle = h),
        (e: unknown) => {
          throw fromLocalFs(e, 'open cache file');
        },
      ),
    );
  }

  /**
   * Waits until [position, position+length) clipped to the file is present in the data file; returns how many
   * bytes from `position` that is (0 past the end). Only those may be read from `dataPath`.
   */
  async ready(position: number, length: number): Promise<number> {
    if (length === 0 || (this.sizeFinal && position >= this.size)) return 0;
    this.lastUsed = Date.now();
    await this.ensure(position, position + length);
    return Math.max(0, Math.min(this.size, position + length) - position); // a snapshot's size may have changed meanwhile
  }

  /** Where the bytes present from `position` end (at most the end of the file). */
  presentUntil(position: number): number {
    return Math.min(this.ranges.firstMissing(position), this.size);
  }

  /** Fills `into` from `position` (clipped to the file), waiting only until those bytes are present. */
  async readInto(into: Buffer, position: number): Promise<number> {
    const length = await this.ready(position, into.length);
    if (length === 0) return 0;
    const handle = await this.openData();
    let done: number;
    try {
      done = await readFully(handle, into.subarray(0, length), position);
    } catch (e) {
      throw fromLocalFs(e, 'read cache file');
    }
    if (done !== length) throw new FsError('EIO', `cache file of ${redact(this.capText)} is shorter than its record`);
    return done;
  }

  /** Resolves once [start, end) is present, starting whatever download brings it soonest. */
  async ensure(start: number, end: number): Promise<void> {
    if (this.satisfied(start, end)) return;
    await this.openData();
    const missing = this.ranges.firstMissing(start);
    let source: object;
    const stream = this.stream;
    if (this.snapshot) {
      if (this.satisfied(start, end)) return;
      if (!stream) throw this.snapshotError ?? new FsError('EIO', `read ${redact(this.capText)}: download stopped`);
      source = stream; // the one GET, or nothing: another request could bring another version
    } else if (stream && missing >= stream.pos && missing < stream.pos + STREAM_WINDOW) {
      source = stream; // the sequential download gets there soon
    } else if (!stream) {
      // Near the start of a file, begin at the start: the kernel's readahead may ask for a later block first.
      source = this.startStream(missing < STREAM_WINDOW ? this.ranges.firstMissing(0) : missing);
    } else {
      const covering = [...this.fetches].find((f) => f.pos <= missing && end <= f.end);
      source = covering ?? this.startRangeFetch(missing, end);
    }
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        start,
        end,
        source,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(new FsError('EIO', `read of ${redact(this.capText)} waited over ${WAIT_BOUND_MS / 1000} s`));
        }, WAIT_BOUND_MS).unref(),
      };
      this.waiters.push(waiter);
      this.wake(); // the range may have arrived while we opened the data file
    });
  }

  /** Stops downloads once nobody reads this file any more; what arrived stays cached. */
  async idle(): Promise<void> {
    if (this.refs > 0) return;
    this.stream?.abort.abort();
    for (const f of this.fetches) f.abort.abort();
    await this.persist();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stream?.abort.abort();
    for (const f of this.fetches) f.abort.abort();
    await this.persist();
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    this.opening.forget();
  }

  /** Removes data and record (eviction, or a snapshot's release). */
  async remove(): Promise<void> {
    await this.close();
    if (this.metaPath !== undefined) await rm(this.metaPath, { force: true });
    await rm(this.dataPath, { force: true });
  }

  /** Flushes the data, then records which ranges are present: the record never runs ahead of the data. */
  persist(): Promise<void> {
    // After close the data handle is gone (no datasync possible) and the record may have been evicted.
    if (this.closed && !this.handle) return Promise.resolve();
    if (this.persisting) {
      this.persistAgain = true;
      return this.persisting;
    }
    const metaPath = this.metaPath;
    if (metaPath === undefined) return Promise.resolve();
    this.persisting = (async () => {
      do {
        this.persistAgain = false;
        const snapshot = this.ranges.toJSON();
        this.unpersistedBytes = 0;
        try {
          await this.handle?.datasync();
          const meta: CachedFileMeta = { v: 1, size: this.size, ranges: snapshot, lastUsed: this.lastUsed };
          // A temporary file of its own (a content closing and the same content reopened may both write
          // their record), flushed with its directory entry: the record survives a power loss.
          await replaceFile(metaPath, JSON.stringify(meta));
        } catch (e) {
          this.log.warn({ key: this.key, err: (e as Error).message }, 'could not record cached ranges');
        }
      } while (this.persistAgain);
    })().finally(() => (this.persisting = undefined));
    return this.persisting;
  }

  /**
   * A snapshot's one GET of the whole file, started now (the version of this moment); resolves once the data
   * file is open, so that a local failure (no space, no access) fails the open.
   */
  async startSnapshot(): Promise<void> {
    await this.openData();
    const d: Download = { pos: 0, end: Infinity, abort: new AbortController() };
    this.stream = d;
    void this.runSnapshot(d);
  }

  private async runSnapshot(d: Download): Promise<void> {
    try {
      const body = await this.client.download(this.capText, undefined, d.abort.signal);
      await this.receive(body, d, Infinity);
      if (!d.abort.signal.aborted && !this.closed) {
        // The whole version arrived: its length is the file's, whatever the listing said.
        this.currentSize = d.pos;
        this.sizeFinal = true;
        this.wake();
        return;
      }
      throw new FsError('EIO', `read ${redact(this.capText)}: download stopped`);
    } catch (e) {
      this.snapshotError = this.downloadError(d, e);
      this.fail(d, this.snapshotError);
    } finally {
      if (this.stream === d) this.stream = undefined;
    }
  }

  private startStream(from: number): Download {
    const d: Download = { pos: from, end: this.size, abort: new AbortController() };
    this.stream = d;
    void this.runDownload(d, true);
    return d;
  }

  private startRangeFetch(start: number, end: number): Download {
    const first = Math.floor(start / SEGMENT) * SEGMENT;
    const last = Math.min(this.size, (Math.ceil(end / SEGMENT) + RANGE_READAHEAD_SEGMENTS) * SEGMENT);
    const d: Download = { pos: first, end: last, abort: new AbortController() };
    this.fetches.add(d);
    void this.runDownload(d, false);
    return d;
  }

  /**
   * Downloads [d.pos, d.end) into the data file. The sequential stream skips over ranges already present by
   * ending its request there and starting a new one after them.
   */
  private async runDownload(d: Download, sequential: boolean): Promise<void> {
    const started = Date.now();
    try {
      while (!d.abort.signal.aborted) {
        d.pos = this.ranges.firstMissing(d.pos);
        if (d.pos >= d.end) break;
        const stop = Math.min(d.end, this.ranges.nextPresent(d.pos));
        const body = await this.client.download(this.capText, { start: d.pos, end: stop }, d.abort.signal);
        await this.receive(body, d, stop);
        if (d.pos < stop && !d.abort.signal.aborted && !this.closed) {
          throw new FsError('EIO', `read ${redact(this.capText)}: the gateway sent ${stop - d.pos} bytes too few`);
        }
      }
      if (!d.abort.signal.aborted) {
        this.log.debug({ key: this.key, sequential, ms: Date.now() - started }, 'download done');
      }
    } catch (e) {
      this.fail(d, this.downloadError(d, e));
    } finally {
      if (sequential && this.stream === d) this.stream = undefined;
      this.fetches.delete(d);
      void this.persist();
    }
  }

  private async receive(body: Readable, d: Download, stop: number): Promise<void> {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (this.closed) break;
      await writeFully(this.handle!, chunk, d.pos);
      this.record(d.pos, d.pos + chunk.length);
      d.pos += chunk.length;
      if (d.pos >= stop) break;
    }
  }

  /** What a download's failure means to the reads waiting on it (logged unless nobody reads any more). */
  private downloadError(d: Download, e: unknown): FsError {
    // Stopped because nobody reads any more (or at shutdown): a read still waiting must not hang.
    if (d.abort.signal.aborted) return new FsError('EIO', `read ${redact(this.capText)}: download stopped`);
    const err = e instanceof FsError ? e : new FsError('EIO', `read ${redact(this.capText)}: ${(e as Error).message}`, { cause: e });
    this.log.warn({ key: this.key, err: err.message }, 'download failed');
    return err;
  }

  private record(start: number, end: number): void {
    const before = this.ranges.bytes;
    this.ranges.add(start, end);
    if (end > this.currentSize) this.currentSize = end; // a snapshot longer than its listing said
    const grown = this.ranges.bytes - before;
    if (grown > 0) this.onGrow(grown);
    this.unpersistedBytes += grown;
    if (this.unpersistedBytes >= PERSIST_EVERY_BYTES) void this.persist();
    this.wake();
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (this.satisfied(w.start, w.end)) {
        clearTimeout(w.timer);
        w.resolve();
      } else still.push(w);
    }
    this.waiters = still;
  }

  /** A failed download fails only the reads waiting on it; the next read starts a new one. */
  private fail(d: Download, err: FsError): void {
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.source === d) {
        clearTimeout(w.timer);
        w.reject(err);
      } else still.push(w);
    }
    this.waiters = still;
  }
}
