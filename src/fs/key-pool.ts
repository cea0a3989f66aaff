// Keys for new directories, made ahead here (src/tahoe/keys.ts) so that a mkdir never waits for an RSA key: the
// gateway would otherwise generate one per directory, in Python, on its own cores (an unlinked mkdir took 54 ms
// with the gateway's key, 13 ms with ours, on the loopback test grid), and a key costs 50-500 ms of a core either
// way, so a burst of mkdirs (git clone makes 55 directories) is bounded by keys unless they were made before.
//
// Kept on disk in the mount's cache (a folder 0700, one file 0600 per key: a key is a write cap), so that keys
// made in quiet moments serve a later burst, in a later mount too. The pool starts at `size` keys and doubles,
// up to MAX_KEYS, each time a take finds it empty (the size it reached is kept beside the keys): it grows to what
// the bursts of its user need. Made from the first take on (a mount that makes no directory spends no CPU on
// keys), from the start of a mount whose cache made directories before (resume), or from fill() (a write-back
// mount, at its start); one per core but one at a time, on threads at the lowest CPU priority (src/tahoe/idle-keys.ts),
// so that keys are made with what the foreground leaves. A take that finds the pool empty makes its key at once, at
// normal priority, and starts a burst: for BURST_MS after it, one key more than the takes waiting is made at
// normal priority too, so that in a run of mkdirs (git clone) the next one's key is made while the program
// works between them, not after it asks. Whichever key is made first serves the oldest waiting take; any other
// goes to the pool: no key made is thrown away.
//
// Every key is handed out once: its file is removed before it is used, and a key whose file cannot be removed is
// not used (a key used twice would name a directory that exists: the gateway refuses it, and a lost answer would
// then be settled by listing the other directory).
//
// State: `ready`, `waiters`, `making` and `urgent` (and `inFlight`), `burstUntil`, `target`, `loaded` and
// `stopped`, changed only here.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { TahoeClient } from '../tahoe/client.js';
import { IdleKeyMaker } from '../tahoe/idle-keys.js';
import { generateMutableKey, mutableKeyFromDer, type MutableKey } from '../tahoe/keys.js';
import { replaceFile, TMP_SUFFIX } from '../util/durable-file.js';

/** The most keys kept ahead: 64 keys are 77 KB on disk, and a minute of a slow core to make. */
export const MAX_KEYS = 64;
const TARGET_FILE = 'pool-size';
/** How long after a take found the pool empty keys are made ahead at normal priority too. */
const BURST_MS = 2_000;

interface Waiting {
  resolve(key: MutableKey): void;
  reject(e: Error): void;
}

interface ReadyKey {
  key: MutableKey;
  /** Where it is kept; undefined for one kept in memory only (no folder, or it could not be written). */
  file: string | undefined;
}

export class KeyPool {
  private readonly ready: ReadyKey[] = [];
  /** Takes that found no key ready, oldest first. */
  private readonly waiters: Waiting[] = [];
  /** Keys being made at the lowest priority (idle threads)... */
  private making = 0;
  /** ...and at normal priority, for waiting takes and a burst. */
  private urgent = 0;
  private burstUntil = 0;
  /** Keys being made, so that stop() can wait until none is written any more. */
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;
  private target: number;
  private loaded: Promise<void> | undefined;
  private saveFailureLogged = false;
  private readonly idle = new IdleKeyMaker();

  constructor(
    size: number,
    private readonly log: Logger,
    /** Where keys are kept between mounts; undefined: in memory only. */
    private readonly dir?: string,
  ) {
    this.target = size;
  }

  /** Starts making keys ahead (in the background), after taking in those kept on disk. */
  fill(): void {
    if (this.stopped) return;
    void this.load().then(() => this.make());
  }

  /**
   * At a mount's start: a cache that made directories before (its folder exists) makes its keys ahead from now
   * on, not from the first mkdir; a mount of a cache that never did spends nothing on keys until it does.
   */
  resume(): void {
    if (!this.dir) return;
    void stat(this.dir).then(
      () => this.fill(),
      () => undefined,
    );
  }

  /** At unmount: no key is made from now on; resolves once none is being written to the folder. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.idle.stop();
    await Promise.all([...this.inFlight, this.loaded]);
  }

  /** A key never handed out before: one made ahead, else the first one made from now on (and the pool grows). */
  async take(): Promise<MutableKey> {
    await this.load();
    for (let next = this.ready.shift(); next; next = this.ready.shift()) {
      if (next.file && !(await this.claim(next.file))) continue;
      this.make();
      this.makeUrgent();
      return next.key;
    }
    if (this.target < MAX_KEYS) {
      this.target = Math.min(2 * this.target, MAX_KEYS);
      void this.saveTarget();
    }
    this.burstUntil = Date.now() + BURST_MS;
    return new Promise<MutableKey>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.makeUrgent();
      this.make();
    });
  }

  /** A new, empty, unlinked directory made with one of our keys (a lost answer is settled by its cap). */
  async makeDirectory(client: TahoeClient): Promise<string> {
    return client.makeDirectory(await this.take());
  }

  private load(): Promise<void> {
    this.loaded ??= this.readKept();
    return this.loaded;
  }

  private async readKept(): Promise<void> {
    if (!this.dir) return;
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const saved = Number((await readFile(join(this.dir, TARGET_FILE), 'utf8').catch(() => '')).trim());
      if (Number.isInteger(saved) && saved > this.target) this.target = Math.min(saved, MAX_KEYS);
      for (const name of await readdir(this.dir)) {
        const file = join(this.dir, name);
        if (name.endsWith(TMP_SUFFIX)) await rm(file, { force: true }); // a write cut short
        if (!name.endsWith('.key')) continue;
        try {
          this.ready.push({ key: mutableKeyFromDer(await readFile(file)), file });
        } catch {
          await rm(file, { force: true }); // a damaged key is no key
        }
      }
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'keys kept for new directories could not be read: new ones are made');
    }
  }

  /** Keys ahead at the lowest priority, one per idle thread, up to the pool's size. */
  private make(): void {
    while (!this.stopped && this.ready.length + this.making < this.target && this.making < this.idle.parallelism) {
      this.making++;
      this.track(
        this.idle.make().then(
          async (key) => {
            this.making--;
            await this.deliver(key);
            this.make();
          },
          (e: unknown) => {
            this.making--;
            if (!this.stopped) this.log.warn({ err: (e as Error).message }, 'could not make a key ahead of time');
          },
        ),
      );
    }
  }

  /** Keys at normal priority: one for each waiting take, and one ahead of them during a burst. */
  private makeUrgent(): void {
    const ahead = !this.stopped && Date.now() < this.burstUntil ? 1 : 0;
    while (this.urgent + this.ready.length < this.waiters.length + ahead) {
      this.urgent++;
      this.track(
        generateMutableKey().then(
          (key) => {
            this.urgent--;
            return this.deliver(key);
          },
          (e: unknown) => {
            this.urgent--;
            // a take no other key is coming for fails rather than waits
            if (this.waiters.length > this.urgent) this.waiters.shift()?.reject(e as Error);
          },
        ),
      );
    }
  }

  private track(work: Promise<void>): void {
    const tracked = work.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  /** A new key to the oldest waiting take, else to the pool (kept on disk). */
  private async deliver(key: MutableKey): Promise<void> {
    const waiter = this.waiters.shift();
    if (waiter) return waiter.resolve(key);
    if (this.stopped) return;
    this.ready.push({ key, file: await this.keep(key) });
    await this.serveWaiters(); // a take that came while it was being written
  }

  private async serveWaiters(): Promise<void> {
    while (this.waiters.length > 0) {
      const next = this.ready.shift();
      if (!next) return;
      if (next.file && !(await this.claim(next.file))) continue;
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(next.key);
      else this.ready.unshift({ key: next.key, file: undefined }); // served meanwhile: kept, in memory now
    }
  }

  /**
   * Writes a new key to the folder (whole, or not at all: a key lost to a power cut costs nothing, so nothing
   * is flushed); undefined when it stays in memory only.
   */
  private async keep(key: MutableKey): Promise<string | undefined> {
    if (!this.dir) return undefined;
    const file = join(this.dir, `${randomBytes(8).toString('hex')}.key`);
    try {
      await replaceFile(file, key.privateKeyDer, { flush: false });
      return file;
    } catch (e) {
      if (!this.saveFailureLogged) this.log.warn({ err: (e as Error).message }, 'a key made ahead could not be kept on disk: kept in memory only (logged once)');
      this.saveFailureLogged = true;
      return undefined;
    }
  }

  /** Removes a kept key's file before its use; false when it cannot be (gone already, or left there). */
  private async claim(file: string): Promise<boolean> {
    try {
      await unlink(file);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err: (e as Error).message }, 'a key kept on disk could not be removed: not used');
      return false;
    }
  }

  private async saveTarget(): Promise<void> {
    if (!this.dir) return;
    await replaceFile(join(this.dir, TARGET_FILE), `${this.target}\n`, { flush: false }).catch(() => undefined);
  }
}
