// Where the content cache's downloads come from: immutable (CHK) files straight from the storage servers,
// everything else (and any CHK read that cannot go direct) through the gateway's web API. Owns the per-file
// downloads (an LRU by storage index), the files given up on for direct reads, the read window's growth and the
// counts status shows. Changed only here; a download's state is its own (chk-download.ts).
import { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../log.js';
import { encodeBase32 } from '../tahoe/base32.js';
import { redact } from '../tahoe/caps.js';
import { chkCapParts } from './chk-share.js';
import { ChkDownload, DirectReadError } from './chk-download.js';
import { DecodePool } from './decode-pool.js';
import type { StorageServers } from './servers.js';

/** What the content cache reads from: the gateway's client has this shape, and so has DirectReads. */
export interface ContentSource {
  /** What went direct and what did not (DirectReads only). */
  readonly stats?: DirectReadStats;
  download(capText: string, range?: { start: number; end: number }, signal?: AbortSignal): Promise<Readable>;
}

export interface DirectReadStats {
  /** Downloads served straight from the storage servers, start to end. */
  direct: number;
  /** Downloads (or their rest) that went through the gateway, by reason. */
  viaGateway: Record<string, number>;
  /** Bytes of verified plaintext read straight from the servers. */
  directBytes: number;
}

/** Segments in one Range request per share, at first and at most: grows while the reader keeps up. */
const FIRST_BATCH = 1;
const MAX_BATCH = 4;
/** Batches in flight at once per download (the window is MAX_IN_FLIGHT x batch segments). */
const MAX_IN_FLIGHT = 6;
/** A file given up on for direct reads is tried again after this long (a server may be back). */
const GIVE_UP_MS = 5 * 60_000;

export class DirectReads implements ContentSource {
  readonly stats: DirectReadStats = { direct: 0, viaGateway: {}, directBytes: 0 };
  /** Keyed by cap text, as givenUp: caps are secrets, but these maps never leave this process's memory. */
  private readonly downloads = new LRUCache<string, ChkDownload>({ max: 256 });
  /** Files whose direct read failed: key the cap, value until when the gateway serves them. */
  private readonly givenUp = new LRUCache<string, number>({ max: 4096 });
  private saidNoServers = false;
  /** Checking and decoding segments off the main thread. */
  private readonly decoder = new DecodePool({
    onBroken: (reason) => this.log.warn({ reason }, 'segment decoding on a worker thread failed: decoding on the main thread from now on'),
  });

  constructor(
    private readonly gateway: ContentSource,
    /** undefined: direct reads are off (--direct-reads off, or no announcements); all goes to the gateway. */
    private readonly servers: StorageServers | undefined,
    private readonly log: Logger,
  ) {}

  /** Connects to the storage servers ahead of the first read; logs those that cannot be used. */
  async warm(): Promise<void> {
    if (!this.servers) return;
    this.decoder.warm();
    const failed = await this.servers.warm().catch((e: unknown) => [{ name: 'announcements', error: (e as Error).message }]);
    for (const f of failed) this.log.warn({ server: f.name, reason: f.error }, 'storage server not reachable for direct reads');
  }

  async download(capText: string, range?: { start: number; end: number }, signal?: AbortSignal): Promise<Readable> {
    const why = this.cannotGoDirect(capText);
    if (why) {
      if (why !== 'not-chk') this.count(why);
      return this.gateway.download(capText, range, signal);
    }
    let cap: ReturnType<typeof chkCapParts>;
    let si: string;
    try {
      cap = chkCapParts(capText);
      si = encodeBase32(cap.storageIndex);
    } catch {
      this.count('malformed');
      return this.gateway.download(capText, range, signal); // the gateway's error is the one to give
    }
    const start = range?.start ?? 0;
    const end = Math.min(range?.end ?? cap.size, cap.size);
    if (!(await this.servers!.any())) {
      if (!this.saidNoServers) this.log.info('no storage announcements with HTTP storage NURLs in the node directory: reading through the gateway');
      this.saidNoServers = true;
      this.count('no-servers');
      return this.gateway.download(capText, range, signal);
    }
    this.saidNoServers = false;
    // By the whole cap: two caps of one storage index that differ in their UEB hash or sizes are two files to us.
    let download = this.downloads.get(capText);
    if (!download) {
      download = new ChkDownload(
        cap,
        si,
        this.servers!,
        (server, reason) => this.log.warn({ file: redact(capText), server, reason }, 'storage server not used for this file'),
        undefined,
        this.decoder,
      );
      this.downloads.set(capText, download);
    }
    try {
      await download.open(start);
    } catch (e) {
      return this.fallBack(capText, e, { start, end }, signal);
    }
    return Readable.from(this.stream(capText, download, start, end, signal), { objectMode: false });
  }

  /** Verified plaintext of [start, end) segment by segment; on a failure, the rest through the gateway. */
  private async *stream(capText: string, download: ChkDownload, start: number, end: number, outer?: AbortSignal): AsyncGenerator<Buffer> {
    let pos = start;
    if (pos >= end) return;
    // Batches in flight stop with the stream, whether its reader aborted or just stopped reading.
    const stopped = new AbortController();
    const signal = outer ? AbortSignal.any([outer, stopped.signal]) : stopped.signal;
    let next = download.segmentAt(pos);
    const last = download.segmentAt(end - 1);
    let batch = FIRST_BATCH;
    const inFlight: Array<Promise<Buffer[]>> = [];
    const launch = (): void => {
      while (inFlight.length < MAX_IN_FLIGHT && next <= last && !signal.aborted) {
        const count = Math.min(batch, last - next + 1);
        const p = download.segments(next, count, signal);
        p.catch(() => {}); // awaited in order below; a later batch's failure must not go unhandled meanwhile
        inFlight.push(p);
        next += count;
        batch = Math.min(MAX_BATCH, batch * 2);
      }
    };
    // Only the grid's failures lead to the gateway: an error thrown in at a yield is the reader's (it went away).
    let failure: unknown;
    try {
      launch();
      while (inFlight.length > 0) {
        let segments: Buffer[];
        try {
          segments = await inFlight.shift()!;
        } catch (e) {
          failure = e;
          break;
        }
        launch();
        for (const plain of segments) {
          const seg = download.segmentAt(pos);
          const range = download.segmentRange(seg);
          const from = pos - range.offset;
          const to = Math.min(plain.length, end - range.offset);
          if (to > from) {
            const out = plain.subarray(from, to);
            pos += out.length;
            this.stats.directBytes += out.length;
            yield out;
          }
        }
      }
    } finally {
      stopped.abort();
    }
    if (failure === undefined) {
      this.stats.direct++;
      this.log.debug({ file: redact(capText), start, end }, 'read straight from the storage servers');
      return;
    }
    if (outer?.aborted) throw failure;
    const rest = await this.fallBack(capText, failure, { start: pos, end }, outer);
    yield* rest as AsyncIterable<Buffer>;
  }

  private async fallBack(capText: string, e: unknown, range: { start: number; end: number }, signal?: AbortSignal): Promise<Readable> {
    if (!(e instanceof DirectReadError)) {
      // A bug of ours must not cost a read: the gateway still serves it, and the log says what happened.
      this.log.error({ file: redact(capText), err: (e as Error).stack }, 'direct read failed unexpectedly; reading through the gateway');
    } else {
      this.log.warn({ file: redact(capText), reason: e.reason, err: e.message }, 'reading this file through the gateway');
    }
    this.count(e instanceof DirectReadError ? e.reason : 'internal');
    this.downloads.delete(capText);
    this.givenUp.set(capText, Date.now() + GIVE_UP_MS);
    return this.gateway.download(capText, range, signal);
  }

  private cannotGoDirect(capText: string): string | undefined {
    if (!capText.startsWith('URI:CHK:')) return 'not-chk';
    if (!this.servers) return 'off';
    const until = this.givenUp.get(capText);
    if (until !== undefined) {
      if (until > Date.now()) return 'given-up';
      this.givenUp.delete(capText);
    }
    return undefined;
  }

  private count(reason: string): void {
    this.stats.viaGateway[reason] = (this.stats.viaGateway[reason] ?? 0) + 1;
  }

  async close(): Promise<void> {
    this.downloads.clear();
    await this.decoder.close();
    await this.servers?.close();
  }
}
