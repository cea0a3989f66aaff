// A TCP proxy that holds every chunk D ms before passing it on, in each direction: a far link for the tests
// and the bench (tc netem is not available here). It delays, it does not serialize: a chunk received at t is
// sent at t+D whatever else is in flight, so one connection's throughput is not capped by the delay. Ends,
// resets and errors reach the other side D ms later too, after the bytes that came before them.
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface DelayProxyOptions {
  /** Where connections are forwarded. */
  targetPort: number;
  targetHost?: string;
  /** How long each chunk is held, in each direction (a round trip gains twice this). */
  delayMs: number;
  /** Port to listen on; 0 (default) picks a free one. */
  port?: number;
  host?: string;
}

export interface DelayProxy {
  /** The port it listens on. */
  readonly port: number;
  readonly delayMs: number;
  /** Connections open right now. */
  readonly connections: number;
  /**
   * Stops listening and resets every connection at once (nothing queued is delivered); resolves once every
   * socket is closed. Safe to call twice.
   */
  close(): Promise<void>;
}

/** Bytes queued in one direction before its source is paused: far above a 30 ms link's bandwidth-delay product. */
const HIGH_WATER = 16 * 1024 * 1024;
const LOW_WATER = HIGH_WATER / 2;

type Item = { due: number } & ({ kind: 'data'; chunk: Buffer } | { kind: 'end' } | { kind: 'destroy' });

/**
 * One direction of one connection: src's chunks, ends and resets go to dst D ms after they arrive, in order.
 * Only this pipe's own handlers change queue, queued, timer and waitingDrain.
 */
class DelayedPipe {
  private readonly queue: Item[] = [];
  private queued = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingDrain = false;
  private finished = false;

  constructor(
    private readonly src: Socket,
    private readonly dst: Socket,
    private readonly delayMs: number,
  ) {
    src.on('data', (chunk: Buffer) => {
      this.push({ kind: 'data', chunk, due: performance.now() + delayMs });
      this.queued += chunk.length;
      if (this.queued > HIGH_WATER) src.pause();
    });
    src.on('end', () => this.push({ kind: 'end', due: performance.now() + delayMs }));
    // A close without a clean end (reset, error, destroy): the other side is destroyed, after what came before.
    src.on('close', () => {
      if (!src.readableEnded) this.push({ kind: 'destroy', due: performance.now() + delayMs });
    });
    dst.on('drain', () => {
      this.waitingDrain = false;
      this.flush();
    });
    dst.on('close', () => this.stop());
  }

  private push(item: Item): void {
    if (this.finished) return;
    this.queue.push(item);
    this.arm();
  }

  private arm(): void {
    if (this.timer || this.waitingDrain || this.finished) return;
    const head = this.queue[0];
    if (!head) return;
    // Timers may fire up to a millisecond early; flush() re-arms until the head is really due.
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, Math.max(0, Math.ceil(head.due - performance.now())));
  }

  private flush(): void {
    const now = performance.now();
    while (!this.finished && !this.waitingDrain) {
      const head = this.queue[0];
      if (!head || head.due > now) break;
      this.queue.shift();
      if (head.kind === 'data') {
        this.queued -= head.chunk.length;
        if (!this.dst.write(head.chunk)) this.waitingDrain = true;
      } else if (head.kind === 'end') {
        this.dst.end();
        this.finish();
      } else {
        // A reset, not a FIN: the far side must not mistake a broken connection for a clean end.
        if (!this.dst.destroyed) this.dst.resetAndDestroy();
        this.finish();
      }
    }
    if (!this.finished && !this.waitingDrain && this.queued <= LOW_WATER && this.src.isPaused()) this.src.resume();
    this.arm();
  }

  private finish(): void {
    this.finished = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.queued = 0;
  }

  /** dst is gone: nothing queued can be delivered any more. */
  stop(): void {
    this.finish();
  }
}

export async function startDelayProxy(opts: DelayProxyOptions): Promise<DelayProxy> {
  if (!(opts.delayMs >= 0)) throw new Error(`delay proxy: bad delay ${opts.delayMs}`);
  const host = opts.host ?? '127.0.0.1';
  const targetHost = opts.targetHost ?? '127.0.0.1';
  // Owned by the server's connection handler (adds) and each socket's close (removes); close() destroys them.
  const sockets = new Set<Socket>();
  const pipes = new Set<DelayedPipe>();
  let pairs = 0;
  let closed = false;

  const track = (s: Socket): void => {
    sockets.add(s);
    s.setNoDelay(true);
    s.on('error', () => undefined); // seen as 'close' without an end, which the pipes propagate
    s.on('close', () => sockets.delete(s));
  };

  // allowHalfOpen on both sides: an end in one direction must not end the other.
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    if (closed) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ port: opts.targetPort, host: targetHost, allowHalfOpen: true });
    track(client);
    track(upstream);
    const up = new DelayedPipe(client, upstream, opts.delayMs);
    const down = new DelayedPipe(upstream, client, opts.delayMs);
    pipes.add(up).add(down);
    pairs++;
    let open = 2;
    const gone = (): void => {
      if (--open > 0) return;
      pipes.delete(up);
      pipes.delete(down);
      pairs--;
    };
    client.on('close', gone);
    upstream.on('close', gone);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    port,
    delayMs: opts.delayMs,
    get connections() {
      return pairs;
    },
    close() {
      closing ??= (async () => {
        closed = true;
        const listening = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const p of pipes) p.stop();
        pipes.clear();
        const gone = [...sockets].map((s) => new Promise<void>((resolve) => {
          s.once('close', () => resolve());
          // Reset, as a link that went away would: a FIN would read as a clean end of the stream.
          if (s.connecting) s.destroy();
          else s.resetAndDestroy();
        }));
        await Promise.all([listening, ...gone]);
      })();
      return closing;
    },
  };
}
