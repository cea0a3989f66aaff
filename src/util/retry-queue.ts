// A queue of jobs each tried until it says it is done, pausing between tries with a backoff (5 s, doubling up
// to 5 min). It knows nothing of what a job does: write-back uses one for the stores of closed files and one
// for the links of new directories (like rclone's vfs/vfscache/writeback, a queue with backoff; the limit on
// transfers at once is the store's). A job's failure is a try that did not finish it: it is tried again.
//
// State, changed only here: `jobs` (one per key, removed once it ends), each job's `current` try and `wake`
// (set while it pauses); `draining`, set once at unmount: every job then ends after the try it is on.

export const RETRY_FIRST_MS = 5_000;
export const RETRY_MAX_MS = 5 * 60_000;

interface Job {
  readonly attempt: () => Promise<boolean>;
  /** The try on its way; undefined between tries. */
  current: Promise<boolean> | undefined;
  /** Ends the pause before the next try; set only while the job pauses. */
  wake: (() => void) | undefined;
  /** Callers of tryNow() waiting for the next try to start. */
  readonly waitingForTry: Array<(attempt: Promise<boolean>) => void>;
  /** How the job ended (true: done), once it has. */
  ended: boolean | undefined;
  /** Set by cancel(): the job ends, as done, instead of its next try. */
  cancelled: boolean;
  done: Promise<void>;
}

export class RetryQueue<K> {
  private readonly jobs = new Map<K, Job>();
  private draining = false;

  constructor(private readonly firstDelayMs = RETRY_FIRST_MS, private readonly maxDelayMs = RETRY_MAX_MS) {}

  /**
   * Starts trying `attempt` until it returns true, the first time after `firstTryAfterMs` (a pause like the others
   * between tries: woken by tryNow, wakeAll and drain); nothing if `key` has a job already (false then).
   */
  add(key: K, attempt: () => Promise<boolean>, firstTryAfterMs = 0): boolean {
    if (this.jobs.has(key)) return false;
    const job: Job = { attempt, current: undefined, wake: undefined, waitingForTry: [], ended: undefined, cancelled: false, done: Promise.resolve() };
    job.done = this.loop(job, firstTryAfterMs).finally(() => {
      if (this.jobs.get(key) === job) this.jobs.delete(key);
    });
    this.jobs.set(key, job);
    return true;
  }

  has(key: K): boolean {
    return this.jobs.has(key);
  }

  keys(): K[] {
    return [...this.jobs.keys()];
  }

  /** Resolves once the job of `key` has ended (at once if there is none). */
  async ended(key: K): Promise<void> {
    await this.jobs.get(key)?.done;
  }

  /**
   * The job's next try, started now if it pauses (the one on its way if it is trying): true when it finished
   * the job, or there is no job (any more).
   */
  tryNow(key: K): Promise<boolean> {
    const job = this.jobs.get(key);
    if (!job) return Promise.resolve(true);
    if (job.ended !== undefined) return Promise.resolve(job.ended);
    if (job.current) return job.current;
    const next = new Promise<Promise<boolean>>((resolve) => job.waitingForTry.push(resolve)).then((attempt) => attempt);
    job.wake?.();
    return next;
  }

  /**
   * Ends the job of `key` before its next try, as done (what it was to do is no longer wanted); false when a
   * try is on its way (it goes on, and the job with it).
   */
  cancel(key: K): boolean {
    const job = this.jobs.get(key);
    if (!job) return true;
    if (job.current) return false;
    job.cancelled = true;
    this.jobs.delete(key);
    job.wake?.();
    return true;
  }

  /** Every job pausing tries again now. */
  wakeAll(): void {
    for (const job of this.jobs.values()) job.wake?.();
  }

  /** At unmount: every job gets one more try now and then ends; resolves when all have (the caller bounds it). */
  async drain(): Promise<void> {
    this.draining = true;
    this.wakeAll();
    await Promise.all([...this.jobs.values()].map((j) => j.done));
  }

  private async loop(job: Job, firstTryAfterMs: number): Promise<void> {
    let finished = false;
    try {
      if (firstTryAfterMs > 0 && !this.draining) await this.pause(job, firstTryAfterMs);
      for (let delay = this.firstDelayMs; ; delay = Math.min(delay * 2, this.maxDelayMs)) {
        if (job.cancelled) {
          finished = true;
          return;
        }
        const current = job.attempt().catch(() => false);
        job.current = current;
        for (const started of job.waitingForTry.splice(0)) started(current);
        finished = await current;
        job.current = undefined;
        if (finished || this.draining) return;
        await this.pause(job, delay);
      }
    } finally {
      job.ended = finished;
      for (const started of job.waitingForTry.splice(0)) started(Promise.resolve(finished));
    }
  }

  private pause(job: Job, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        job.wake = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms).unref(); // the mount keeps the process alive, not a retry
      job.wake = wake;
    });
  }
}
