// Small concurrency helpers that several rooms need: a promise shared by every caller until it fails, a job
// that runs one pass at a time (once more if asked again while it ran), a lock, and a bound on jobs at once.

/**
 * Shares one in-flight promise per key: callers that come while it runs get the same promise; a failure is
 * forgotten at once, so that the next caller tries afresh. A success stays until `forget()`.
 */
export class SharedPromise<T> {
  private promise: Promise<T> | undefined;

  get(make: () => Promise<T>): Promise<T> {
    if (!this.promise) {
      const p = make();
      this.promise = p;
      p.catch(() => {
        if (this.promise === p) this.promise = undefined;
      });
    }
    return this.promise;
  }

  /** The promise if one was made and has not failed. */
  get current(): Promise<T> | undefined {
    return this.promise;
  }

  forget(): void {
    this.promise = undefined;
  }
}

/** SharedPromise by key, each dropped once settled (success or failure): for de-duplicating fetches. */
export class InFlight<K, T> {
  private readonly pending = new Map<K, Promise<T>>();

  run(key: K, make: () => Promise<T>): Promise<T> {
    let p = this.pending.get(key);
    if (!p) {
      p = make().finally(() => {
        if (this.pending.get(key) === p) this.pending.delete(key);
      });
      this.pending.set(key, p);
    }
    return p;
  }

  get(key: K): Promise<T> | undefined {
    return this.pending.get(key);
  }

  has(key: K): boolean {
    return this.pending.has(key);
  }
}

/**
 * Runs `pass` one at a time. A request while a pass runs is not lost: one more pass follows it (what changed
 * meanwhile may have been missed by the running one). `run()` resolves when the state it asked about is handled.
 */
export class Coalesced {
  private running: Promise<void> | undefined;
  private again = false;

  constructor(private readonly pass: () => Promise<void>) {}

  run(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.pass();
        } while (this.again);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** Resolves when no pass runs (for shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running.catch(() => undefined);
  }
}

let nextMutexId = 0;

/** A lock for work that must not interleave across awaits (e.g. linking a file and renaming it). */
export class Mutex {
  /** Locks are always taken in this order (see withLocks), so two holders of two locks cannot deadlock. */
  readonly id = nextMutexId++;
  private tail: Promise<void> = Promise.resolve();

  async lock(): Promise<() => void> {
    let unlock!: () => void;
    const mine = new Promise<void>((resolve) => (unlock = resolve));
    const before = this.tail;
    this.tail = before.then(() => mine);
    await before;
    return unlock;
  }

  run<T>(fn: () => Promise<T>): Promise<T> {
    return withLocks([this], fn);
  }
}

/** Runs `fn` holding every lock given (duplicates and undefined allowed), taken in a fixed order. */
export async function withLocks<T>(mutexes: Array<Mutex | undefined>, fn: () => Promise<T>): Promise<T> {
  const ordered = [...new Set(mutexes.filter((m): m is Mutex => m !== undefined))].sort((a, b) => a.id - b.id);
  const unlocks: Array<() => void> = [];
  try {
    for (const m of ordered) unlocks.push(await m.lock());
    return await fn();
  } finally {
    for (const unlock of unlocks.reverse()) unlock();
  }
}

/** At most `limit` jobs at a time; the others wait their turn in order. */
export class Semaphore {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly limit: number) {}

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await job();
    } finally {
      // The slot passes straight to the next job in line (`running` stays counted for it).
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

/** Waits for `work`, but no longer than `ms`: true when it settled in time (its failure counts as settled). */
export async function settledWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, ms))));
  try {
    return await Promise.race([work.then(() => true, () => true), bound]);
  } finally {
    clearTimeout(timer);
  }
}
