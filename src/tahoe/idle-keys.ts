// Keys made ahead of need, on one thread of their own at the lowest CPU priority, so that filling a pool of
// keys never takes a core from the work a user waits for (a write, the gateway, a storage server on the same
// machine): an RSA-2048 key is 50-250 ms of a core, and a pool refilled at normal priority slowed a 64 MiB write
// in the same mount by a third on 2 cores (bench of 2026-12-07).
//
// On Linux a thread's nice value is its own: setpriority(PRIO_PROCESS, 0) from a worker thread lowers that
// thread only (credentials(7), "nice value"), which os.setPriority() does. A key needed now is not made here but
// with generateMutableKey, at normal priority.
//
// State: `worker`, `waiting` and `stopped`, changed only here (the worker answers in order, one key at a time).
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

export class IdleKeyMaker {
  private worker: Worker | undefined;
  private readonly waiting: Waiting[] = [];
  private stopped = false;

  /** A new key, made when a core is idle. Rejects once stopped. */
  make(): Promise<MutableKey> {
    if (this.stopped) return Promise.reject(new Error('stopped'));
    return new Promise<MutableKey>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.started().postMessage('make');
    });
  }

  /** Ends the thread; keys asked for and not made are refused. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.failAll(new Error('stopped'));
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private started(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on('message', (m: { der?: Uint8Array; error?: string }) => {
      const next = this.waiting.shift();
      if (!next) return;
      try {
        if (!m.der) throw new Error(m.error ?? 'no key');
        next.resolve(mutableKeyFromDer(Buffer.from(m.der.buffer, m.der.byteOffset, m.der.byteLength)));
      } catch (e) {
        next.reject(e as Error);
      }
    });
    const gone = (e: Error) => {
      if (this.worker === worker) this.worker = undefined;
      this.failAll(e);
    };
    worker.on('error', gone);
    worker.on('exit', (code) => gone(new Error(`the thread making keys ended (${code})`)));
    worker.unref(); // keys ahead never keep a process alive (after the listeners: adding one refs it again)
    this.worker = worker;
    return worker;
  }

  private failAll(e: Error): void {
    for (const w of this.waiting.splice(0)) w.reject(e);
  }
}
