// Where segments are decoded: on worker threads (decode-worker.ts), so that the main thread, which also moves
// every byte (TLS, HTTP, the cache, FUSE), is not the limit of a cold read; inline for small work, and for
// good once a worker fails (logged once). Owns the workers and their pending batches (`workers`, `broken`:
// changed only here, each change whole before any await).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BlockMismatchError, decodeSegmentWork, ShareFormatError, type SegmentWork } from './chk-share.js';
import { toWire, type DecodeReply } from './decode-wire.js';

/** The worker could not answer (it failed, or took too long): the batch's bodies are gone, fetch them again. */
export class DecodePoolError extends Error {}

/** Below this many block bytes a batch is decoded inline: a round trip to a worker costs more. */
const INLINE_BYTES = 256 * 1024;
/** A batch of a few MiB takes milliseconds: one not answered in this long means the worker is stuck. */
const ANSWER_BOUND_MS = 30_000;

interface Pending {
  resolve: (plain: Buffer[]) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface DecodeWorker {
  worker: Worker;
  pending: Map<number, Pending>;
}

export interface DecodeOptions {
  /** Worker threads (default: one fewer than the cores, 1 to 4; 0 decodes everything inline). */
  workers?: number;
  /** Told once, when a worker fails and decoding goes inline. */
  onBroken?: (reason: string) => void;
  /** Batches of fewer block bytes are decoded inline (default 256 KiB). */
  inlineBelowBytes?: number;
}

export class DecodePool {
  private readonly size: number;
  private workers: DecodeWorker[] = [];
  /** Set for good once a worker failed, could not start, or the pool closed: everything is decoded inline. */
  private broken = false;
  private nextId = 1;

  constructor(private readonly opts: DecodeOptions = {}) {
    this.size = opts.workers ?? Math.max(1, Math.min(4, availableParallelism() - 1));
  }

  /**
   * The plaintext of each segment, in order. Throws what decodeSegmentWork throws (a block or a segment that
   * does not check out), or DecodePoolError: then the blocks were moved away and must be read again.
   */
  async decode(works: SegmentWork[]): Promise<Buffer[]> {
    const bytes = works.reduce((sum, w) => sum + w.blocks.reduce((s, b) => s + b.block.byteLength, 0), 0);
    if (this.broken || this.size === 0 || bytes < (this.opts.inlineBelowBytes ?? INLINE_BYTES)) return works.map(decodeSegmentWork);
    const w = this.leastBusy();
    if (!w) return works.map(decodeSegmentWork);
    const id = this.nextId++;
    const { request, transfer } = toWire(id, works);
    return new Promise<Buffer[]>((resolve, reject) => {
      const timer = setTimeout(() => this.fail(w, `no answer within ${ANSWER_BOUND_MS / 1000} s`), ANSWER_BOUND_MS);
      w.pending.set(id, { resolve, reject, timer });
      try {
        w.worker.postMessage(request, transfer);
      } catch (e) {
        this.fail(w, (e as Error).message);
      }
    });
  }

  /** Starts the workers ahead of the first read (a worker takes tens of milliseconds to load). */
  warm(): void {
    while (!this.broken && this.workers.length < this.size && this.start());
  }

  async close(): Promise<void> {
    this.broken = true; // a batch retried after close() decodes inline, and starts no worker
    const workers = this.workers;
    this.workers = [];
    for (const w of workers) this.rejectAll(w, 'decoding stopped');
    await Promise.all(workers.map((w) => w.worker.terminate().catch(() => 0)));
  }

  private leastBusy(): DecodeWorker | undefined {
    if (this.workers.length < this.size) return this.start();
    return this.workers.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
  }

  /** A new worker, or undefined (and the pool inline for good) if none can be started. */
  private start(): DecodeWorker | undefined {
    let worker: Worker;
    try {
      worker = new Worker(new URL('./decode-worker.js', import.meta.url));
    } catch (e) {
      if (!this.broken) this.opts.onBroken?.(`no worker thread: ${(e as Error).message}`);
      this.broken = true;
      return undefined;
    }
    worker.unref(); // an idle worker must not keep the process alive
    const w: DecodeWorker = { worker, pending: new Map() };
    worker.on('message', (reply: DecodeReply) => this.answer(w, reply));
    worker.on('error', (e) => this.fail(w, e.message));
    worker.on('exit', (code) => this.fail(w, `exited (${code})`));
    this.workers.push(w);
    return w;
  }

  private answer(w: DecodeWorker, reply: DecodeReply): void {
    const p = w.pending.get(reply.id);
    if (!p) return;
    w.pending.delete(reply.id);
    clearTimeout(p.timer);
    if (reply.plain) return p.resolve(reply.plain.map((b) => Buffer.from(b)));
    const { kind, message, shareNum } = reply.error;
    // Rebuilt here so that callers see the same errors as from an inline decode: an error of ours (not the
    // grid's) as a plain Error, which the caller treats as bad data, as it does inline.
    if (kind === 'internal') p.reject(new Error(message));
    else p.reject(kind === 'block' && shareNum !== undefined ? new BlockMismatchError(message, shareNum) : new ShareFormatError(message));
  }

  /** A worker that failed is not used again, nor is any other: decoding goes inline from now on. */
  private fail(w: DecodeWorker, reason: string): void {
    if (!this.workers.includes(w)) return;
    this.workers = this.workers.filter((x) => x !== w);
    if (!this.broken) this.opts.onBroken?.(reason);
    this.broken = true;
    this.rejectAll(w, reason);
    void w.worker.terminate().catch(() => 0);
  }

  private rejectAll(w: DecodeWorker, reason: string): void {
    for (const p of w.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new DecodePoolError(`segment decoding: ${reason}`));
    }
    w.pending.clear();
  }
}
