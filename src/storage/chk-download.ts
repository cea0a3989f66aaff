// One immutable (CHK) file read straight from the storage servers: finding k shares in the file's permuted
// server order, reading and checking their hash regions once, then fetching, checking and decoding segments.
// Owns the file's chosen shares and the servers it will not ask again (`shares`, `badServers`: changed only by
// this file's own reads, each change whole before its next await). Every byte goes through chk-share.ts's
// checks before it leaves: a server that sent anything that does not check out is dropped for this file and
// another share is used, or the read fails with DirectReadError (the caller then reads through the gateway).
import {
  BlockMismatchError,
  checkLayoutForCap,
  ChkFile,
  DEFAULT_MAX_SEGMENT,
  guessLayout,
  hashRegion,
  HEADER_BYTES,
  layoutBlockRange,
  parseShareHeader,
  parseUebLength,
  sameLayout,
  ShareFormatError,
  uebFromRegion,
  type ChkCapParts,
  type ShareBlocks,
  type ShareLayout,
} from './chk-share.js';
import { DecodePool, DecodePoolError } from './decode-pool.js';
import { StorageServerError } from './gbs-client.js';
import type { KnownServer, StorageServers } from './servers.js';

/** Why a direct read cannot serve a file (status counts them; the log names the server, never a secret). */
export class DirectReadError extends Error {
  constructor(
    message: string,
    readonly reason: 'no-servers' | 'not-found' | 'unreachable' | 'bad-data' | 'refused',
  ) {
    super(message);
  }
}

/** Servers asked at once for their share lists (Tahoe's ShareFinder asks 10: immutable/downloader/finder.py). */
const ASK_AT_ONCE = 10;
/** Bytes read past the UEB length field in the first region read: a UEB is a few hundred bytes. */
const UEB_GUESS = 2048;
/** How long the other servers' answers are awaited once k distinct shares are known. */
const LATE_ANSWER_GRACE_MS = 1_000;
/** Finding and checking k shares, however many servers fail one after another, takes at most this long. */
const OPEN_BOUND_MS = 60_000;
/** Hash trees of 64 Ki segments (64 GiB of 1 MiB segments) fit; a larger region is a lie. */
const MAX_REGION_BYTES = 16 * 1024 * 1024;

interface Holder {
  readonly server: KnownServer;
  readonly shareNum: number;
}

interface ReadyShare {
  readonly holder: Holder;
  readonly blocks: ShareBlocks;
}

export class ChkDownload {
  private file: ChkFile | undefined;
  /** The k shares segments are read from, by share number. */
  private readonly shares = new Map<number, ReadyShare>();
  /** Shares found but not (yet) in use: spares for a share whose server fails. */
  private spares: Holder[] = [];
  private readonly badServers = new Set<string>();
  private opening: Promise<void> | undefined;
  /** The one replacement of failed shares under way (batches in flight all wait for it). */
  private replacing: Promise<void> | undefined;
  /** Where the first reader starts (set by the first open, cleared once it is done). */
  private firstOffset: number | undefined;
  /**
   * Blocks of that segment read at the same time as each share's hash region, by share number: the first byte
   * then costs one round trip less. Used only if the share's checked layout puts the block exactly there, and
   * verified like any other block; taken (or dropped) by the share's first fetch.
   */
  private readonly early = new Map<number, { holder: Holder; segment: number; offset: number; length: number; bytes: Promise<Buffer> }>();

  constructor(
    private readonly cap: ChkCapParts,
    /** The storage index in base32, as URLs carry it. */
    private readonly storageIndex: string,
    private readonly servers: StorageServers,
    /** Names a server that misbehaved, once per file. */
    private readonly onBadServer: (server: string, why: string) => void,
    /** The segment size share layouts are guessed with (only ever a guess: every layout is read and checked). */
    private readonly guessedMaxSegment = DEFAULT_MAX_SEGMENT,
    /** Where segments are checked and decoded (inline unless a pool of worker threads is given). */
    private readonly decoder: Pick<DecodePool, 'decode'> = new DecodePool({ workers: 0 }),
  ) {}

  get segmentCount(): number {
    return this.file?.ueb.numSegments ?? 0;
  }

  /**
   * Finds and checks k shares; safe to call again after a failure (it starts over). `firstOffset`: where the
   * first reader starts, so that its segment's blocks are read with the hash regions.
   */
  open(firstOffset?: number): Promise<void> {
    if (this.opening === undefined && this.file === undefined) this.firstOffset = firstOffset;
    this.opening ??= withDeadline(this.locate(), OPEN_BOUND_MS).then(
      () => {
        this.firstOffset = undefined; // a share brought in later reads no early block nobody will use
      },
      (e: unknown) => {
        this.opening = undefined;
        throw e;
      },
    );
    return this.opening;
  }

  /** The segment that holds byte `offset` of the file. */
  segmentAt(offset: number): number {
    const size = this.file!.ueb.segmentSize;
    return Math.min(Math.floor(offset / size), this.file!.ueb.numSegments - 1);
  }

  segmentRange(segment: number): { offset: number; length: number } {
    return this.file!.segmentRange(segment);
  }

  /**
   * The plaintext of segments [first, first+count), fetched in one Range request per share; a share whose
   * server fails or lies is swapped for a spare and the batch is fetched again from the replacement.
   */
  async segments(first: number, count: number, signal?: AbortSignal): Promise<Buffer[]> {
    await this.open();
    const file = this.file!;
    let poolFailed = false;
    for (;;) {
      if (signal?.aborted) throw new DirectReadError('read stopped', 'unreachable');
      // Another batch may be replacing a share that failed: read from a whole set only.
      if (this.shares.size < this.cap.needed) await this.replace();
      const shares = [...this.shares.values()];
      const results = await Promise.allSettled(shares.map((s) => this.fetchBlocks(s, first, count, signal)));
      if (signal?.aborted) throw new DirectReadError('read stopped', 'unreachable');
      const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ share: shares[i]!, err: r.reason as unknown }] : []));
      if (failed.length === 0) {
        const blocksOf = results.map((r) => (r as PromiseFulfilledResult<Buffer[]>).value);
        const works = Array.from({ length: count }, (_, j) => {
          const blocks = new Map<number, Buffer>();
          shares.forEach((s, i) => blocks.set(s.holder.shareNum, blocksOf[i]![j]!));
          if (blocks.size < this.cap.needed) throw new Error(`segment ${first + j}: ${blocks.size} blocks of ${this.cap.needed}`); // a bug of ours, not the grid's
          // Each block is checked against its share's block hash tree where it is decoded.
          return file.segmentWork(first + j, blocks, (shareNum) => shares.find((s) => s.holder.shareNum === shareNum)!.blocks.blockLeaf(first + j));
        });
        try {
          return await this.decoder.decode(works);
        } catch (e) {
          // The worker failed: decoding goes inline now (the pool is broken for good), so one more read does it.
          if (e instanceof DecodePoolError && !poolFailed) {
            poolFailed = true;
            continue;
          }
          if (e instanceof BlockMismatchError) {
            const liar = shares.find((s) => s.holder.shareNum === e.shareNum);
            if (liar) {
              this.drop(liar, e);
              await this.replace();
              continue;
            }
          }
          // Every block checked out against its own share's tree, and the shares' trees against the UEB: a
          // crypttext mismatch means the UEB itself lied, which no other share of this file can mend.
          throw new DirectReadError(`segments ${first}-${first + count - 1} do not check out: ${(e as Error).message}`, 'bad-data');
        }
      }
      for (const { share, err } of failed) this.drop(share, err);
      await this.replace();
    }
  }

  private async fetchBlocks(share: ReadyShare, first: number, count: number, signal?: AbortSignal): Promise<Buffer[]> {
    const ranges = Array.from({ length: count }, (_, j) => share.blocks.blockRange(first + j));
    const start = ranges[0]!.offset;
    const last = ranges[count - 1]!;
    const length = last.offset + last.length - start;
    const early = this.early.get(share.holder.shareNum);
    this.early.delete(share.holder.shareNum);
    const read = (): Promise<Buffer> => share.holder.server.client.readShare(this.storageIndex, share.holder.shareNum, start, length, signal);
    const useEarly = early && early.holder === share.holder && early.segment === first && count === 1 && early.offset === start && early.length === length;
    const bytes = await (useEarly ? early.bytes.catch(read) : read());
    if (bytes.length !== length) throw new ShareFormatError(`share ${share.holder.shareNum} ended inside its blocks`);
    return ranges.map((r, j) => {
      if (r.offset - start + r.length > bytes.length) throw new ShareFormatError('blocks not contiguous');
      return bytes.subarray(r.offset - start, r.offset - start + r.length);
    });
  }

  /** A share whose server failed or lied leaves (unless a replacement already took its number). */
  private drop(share: ReadyShare, err: unknown): void {
    if (this.shares.get(share.holder.shareNum) === share) this.shares.delete(share.holder.shareNum);
    this.serverFailed(share.holder, err);
  }

  /**
   * What a server's failure means for this file: one that lied (bytes that do not check out, an answer that makes
   * no sense) is not asked again; one that is unreachable rests for every file; neither gives us spares any more.
   */
  private serverFailed(holder: Holder, err: unknown): void {
    const { server } = holder;
    if (!(err instanceof ShareFormatError || err instanceof StorageServerError)) throw err;
    if (err instanceof StorageServerError && err.kind === 'stopped') return;
    if (err instanceof ShareFormatError || err.kind === 'protocol') this.badServers.add(server.serverId);
    if (err instanceof StorageServerError && err.kind === 'unreachable') this.servers.unreachable(server.serverId);
    this.spares = this.spares.filter((h) => h.server.serverId !== server.serverId);
    this.onBadServer(server.client.name, err instanceof ShareFormatError ? `share ${holder.shareNum}: ${err.message}` : err.message);
  }

  /** Brings the set back to k shares from the spares, one replacement at a time; fails when none is left. */
  private replace(): Promise<void> {
    this.replacing ??= (async () => {
      while (this.shares.size < this.cap.needed) {
        const next = this.spares.shift();
        if (!next) throw new DirectReadError(`fewer than ${this.cap.needed} good shares left`, 'not-found');
        if (this.shares.has(next.shareNum) || this.badServers.has(next.server.serverId)) continue;
        try {
          await this.readShareHashes(next);
        } catch (e) {
          this.serverFailed(next, e);
        }
      }
    })().finally(() => (this.replacing = undefined));
    return this.replacing;
  }

  /** Asks servers in permuted order which shares they hold, until k distinct ones are checked and ready. */
  private async locate(): Promise<void> {
    try {
      await this.locateOnce();
    } catch (e) {
      if (!(e instanceof DirectReadError) || e.reason === 'bad-data') throw e;
      // A server may have moved or joined since the announcements were read: read them again, ask once more.
      await this.servers.refresh(true);
      await this.locateOnce();
    }
  }

  private async locateOnce(): Promise<void> {
    const servers = (await this.servers.forFile(this.cap.storageIndex)).filter((s) => !this.badServers.has(s.serverId));
    if (servers.length === 0) throw new DirectReadError('no storage server announces an HTTP storage NURL', 'no-servers');
    const found: Holder[] = [];
    let unreachable = 0;
    let refused = 0;
    let settled = false; // after which a late answer only adds spares
    const distinct = (): number => new Set(found.map((h) => h.shareNum)).size;
    for (let i = 0; i < servers.length && distinct() < this.cap.needed; i += ASK_AT_ONCE) {
      const batch = servers.slice(i, i + ASK_AT_ONCE);
      // Every answer, as long as they come: the primaries may be among the last (with them decoding is only
      // interleaving). But once k distinct shares are known, a frozen server holds the read a moment only.
      await new Promise<void>((resolve) => {
        let pending = batch.length;
        let grace: NodeJS.Timeout | undefined;
        const enough = (): void => {
          grace ??= setTimeout(resolve, LATE_ANSWER_GRACE_MS);
        };
        for (const server of batch) {
          server.client.immutableShares(this.storageIndex).then(
            (shareNums) => {
              this.servers.reachable(server.serverId);
              for (const shareNum of shareNums) {
                if (shareNum >= this.cap.total) continue;
                if (settled) {
                  if (!this.badServers.has(server.serverId)) this.spares.push({ server, shareNum });
                } else found.push({ server, shareNum });
              }
              if (distinct() >= this.cap.needed) enough();
            },
            (err: unknown) => {
              if (err instanceof StorageServerError && err.kind === 'refused') refused++;
              else {
                unreachable++;
                this.servers.unreachable(server.serverId);
              }
            },
          ).finally(() => {
            if (--pending > 0) return;
            clearTimeout(grace);
            resolve();
          });
        }
      });
    }
    settled = true;
    if (new Set(found.map((h) => h.shareNum)).size < this.cap.needed) {
      const why = refused ? 'refused' : unreachable ? 'unreachable' : 'not-found';
      throw new DirectReadError(`${new Set(found.map((h) => h.shareNum)).size} of ${this.cap.needed} shares found (${unreachable} servers unreachable, ${refused} refused)`, why);
    }
    // Primaries first (with them decoding is only interleaving), each share from a different server if it can be.
    found.sort((a, b) => Number(a.shareNum >= this.cap.needed) - Number(b.shareNum >= this.cap.needed) || a.shareNum - b.shareNum);
    const chosen: Holder[] = [];
    const usedServers = new Set<string>();
    for (const pass of [true, false]) {
      for (const h of found) {
        if (chosen.length >= this.cap.needed) break;
        if (chosen.some((c) => c.shareNum === h.shareNum) || (pass && usedServers.has(h.server.serverId))) continue;
        chosen.push(h);
        usedServers.add(h.server.serverId);
      }
    }
    this.spares = found.filter((h) => !chosen.includes(h));
    const results = await Promise.allSettled(chosen.map((h) => this.readShareHashes(h)));
    results.forEach((r, i) => {
      if (r.status === 'rejected') this.serverFailed(chosen[i]!, r.reason);
    });
    this.spares = this.spares.filter((h) => !this.badServers.has(h.server.serverId));
    await this.replace();
  }

  /**
   * Reads a share's header and hash region, checks them (and the UEB, the first time), and makes it ready. The
   * region is read at the same time as the header where the header's layout can be guessed from the cap (one
   * round trip instead of two); a wrong guess costs only its bytes, and the header's own layout is then read.
   */
  private async readShareHashes(holder: Holder): Promise<void> {
    const client = holder.server.client;
    const guess = guessLayout(this.cap, holder.shareNum, this.guessedMaxSegment);
    const guessed = guess ? this.readRegion(holder, guess) : undefined;
    guessed?.catch(() => {}); // its failure matters only if the guess is used
    if (guess && this.firstOffset !== undefined && !this.early.has(holder.shareNum)) {
      const segment = Math.floor(this.firstOffset / (guess.blockSizeField * this.cap.needed));
      const at = layoutBlockRange(guess, segment);
      const bytes = client.readShare(this.storageIndex, holder.shareNum, at.offset, at.length);
      bytes.catch(() => {}); // its failure matters only if it is used, and then the block is read again
      this.early.set(holder.shareNum, { holder, segment: (at.offset - guess.dataOffset) / guess.blockSizeField, ...at, bytes });
    }
    const head = await client.readShare(this.storageIndex, holder.shareNum, 0, HEADER_BYTES);
    const layout: ShareLayout = parseShareHeader(head);
    checkLayoutForCap(layout, this.cap, holder.shareNum);
    const region = guess && guessed && sameLayout(layout, guess) ? await guessed : await this.readRegion(holder, layout);
    this.file ??= ChkFile.fromUeb(uebFromRegion(layout, region.bytes), this.cap);
    const blocks = this.file.share(holder.shareNum, layout, region.bytes);
    this.shares.set(holder.shareNum, { holder, blocks });
  }

  /** Everything after the data: hash trees, share hashes, the UEB; one request unless the UEB is unusually long. */
  private async readRegion(holder: Holder, layout: ShareLayout): Promise<{ start: number; bytes: Buffer }> {
    const client = holder.server.client;
    const start = layout.crypttextHashTreeOffset;
    const lengthField = layout.fieldSize;
    // The offsets are the server's word until the UEB is checked (ChkFile.share then checks them exactly):
    // bound what they can make us read.
    if (layout.uebOffset - start > MAX_REGION_BYTES) throw new ShareFormatError(`hash region of ${layout.uebOffset - start} bytes`);
    let bytes = await client.readShare(this.storageIndex, holder.shareNum, start, layout.uebOffset + lengthField + UEB_GUESS - start);
    const { end } = hashRegion(layout, readUebLength(layout, start, bytes));
    if (end - start > bytes.length) {
      const more = await client.readShare(this.storageIndex, holder.shareNum, start + bytes.length, end - start - bytes.length);
      bytes = Buffer.concat([bytes, more]);
    }
    if (end - start > bytes.length) throw new ShareFormatError('share ends inside its URI extension block');
    return { start, bytes: bytes.subarray(0, end - start) };
  }
}

function readUebLength(layout: ShareLayout, start: number, bytes: Buffer): number {
  const at = layout.uebOffset - start;
  if (at < 0 || at + layout.fieldSize > bytes.length) throw new ShareFormatError('share ends before its URI extension block');
  return parseUebLength(layout, bytes.subarray(at, at + layout.fieldSize));
}

function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DirectReadError(`no k good shares within ${ms / 1000} s`, 'unreachable')), ms);
  });
  work.catch(() => {}); // settles later, unseen, if the deadline won
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
