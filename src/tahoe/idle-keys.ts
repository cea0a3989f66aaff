// Keys made ahead of need, on threads of their own at the lowest CPU priority, so that filling a pool of
// keys never takes a core from the work a user waits for (a write, the gateway, a storage server on the same
// machine): an RSA-2048 key is 50-500 ms of a core (a median of 190 ms on the 2-core test machine), and a pool
// refilled at normal priority slowed a 64 MiB write in the same mount by a third on 2 cores (bench of
// 2026-12-07). One thread per core but one (at least one, up to MAX_THREADS): a core is always left where no
// key thread waits to run, since a thread at nice 19 still holds a core for its slice when a FUSE request's
// thread wakes (the bench of 2026-12-07 with one thread per core on 2 cores had git clone with --write-back
// take 7.9 s on loopback, 1.7 s in the run before with one thread; not proven to be the cause, the machine was
// slower that day).
//
// On Linux a thread's nice value is its own: setpriority(PRIO_PROCESS, 0) from a worker thread lowers that
// thread only (credentials(7), "nice value"), which os.setPriority() does. A key needed now is not made here but
// with generateMutableKey, at normal priority.
//
// State: `threads`, `queued` and `stopped`, changed only here (each thread makes one key at a time).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { mutableKeyFromDer, type MutableKey } from './keys.js';

/** Lowest priority: the thread runs only when a core has nothing else to run. */
const IDLE_NICE = 19;

// The worker: makes one key per message, in order. Plain JavaScript, evaluated as CommonJS, so that it needs no
// file of its own next to the compiled code.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { generateKeyPairSync } = require('node:crypto');
const { setPriority } = require('node:os');
try { setPriority(${IDLE_NICE}); } catch {}
parentPort.on('message', () => {
  try {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 65537 });
    const der = privateKey.export({ type: 'pkcs8', format: 'der' });
    parentPort.postMessage({ der }, [der.buffer]);
  } catch (e) {
    parentPort.postMessage({ error: String(e && e.message || e) });
  }
});
`;

interface Waiting {
  resolve(key: MutableKey): void;
  reject(e: Error): void;
}

/** More threads than this would only hold memory: keys ahead are made a few at a time anyway. */
const MAX_THREADS = 4;

/** One thread and the key it is making (at most one). */
interface KeyThread {
  worker: Worker;
  current: Waiting | undefined;
}

export class IdleKeyMaker {
  /** Keys made at once: one per thread. */
  readonly parallelism = Math.max(1, Math.min(availableParallelism() - 1, MAX_THREADS));
  private readonly threads: KeyThread[] = [];
  /** Asked for while every thread was busy, in order. */
  private readonly queued: Waiting[] = [];
  private stopped = false;

  /** A new key, made when a core is idle. Rejects once stopped. */
  make(): Promise<MutableKey> {
    if (this.stopped) return Promise.reject(new Error('stopped'));
    return new Promise<MutableKey>((resolve, reject) => {
      this.queued.push({ resolve, reject });
      this.dispatch();
    });
  }

  /** Ends the threads; keys asked for and not made are refused. */
  async stop(): Promise<void> {
    this.stopped = true;
    const threads = this.threads.splice(0);
    const refused = new Error('stopped');
    for (const w of this.queued.splice(0)) w.reject(refused);
    for (const t of threads) t.current?.reject(refused);
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }

  /** Gives queued keys to idle threads, starting threads up to `parallelism`. */
  private dispatch(): void {
    while (!this.stopped && this.queued.length > 0) {
      const thread = this.threads.find((t) => !t.current) ?? (this.threads.length < this.parallelism ? this.started() : undefined);
      if (!thread) return;
      thread.current = this.queued.shift();
      thread.worker.postMessage('make');
    }
  }

  private started(): KeyThread {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    const thread: KeyThread = { worker, current: undefined };
    worker.on('message', (m: { der?: Uint8Array; error?: string }) => {
      const done = thread.current;
      thread.current = undefined;
      try {
        if (!m.der) throw new Error(m.error ?? 'no key');
        done?.resolve(mutableKeyFromDer(Buffer.from(m.der.buffer, m.der.byteOffset, m.der.byteLength)));
      } catch (e) {
        done?.reject(e as Error);
      }
      this.dispatch();
    });
    const gone = (e: Error) => {
      const at = this.threads.indexOf(thread);
      if (at < 0) return;
      this.threads.splice(at, 1);
      thread.current?.reject(e);
      thread.current = undefined;
      for (const w of this.queued.splice(0)) w.reject(e); // refused, not retried: a thread that cannot run would loop
    };
    worker.on('error', gone);
    worker.on('exit', (code) => gone(new Error(`a thread making keys ended (${code})`)));
    worker.unref(); // keys ahead never keep a process alive (after the listeners: adding one refs it again)
    this.threads.push(thread);
    return thread;
  }
}
