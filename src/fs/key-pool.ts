// Keys for new directories, made ahead here (src/tahoe/keys.ts) so that a mkdir never waits for an RSA key: the
// gateway would otherwise generate one per directory, in Python, on its own cores (an unlinked mkdir took 54 ms
// with the gateway's key, 13 ms with ours, on the loopback test grid), and a key costs 50-250 ms of a core either
// way, so a burst of mkdirs (git clone makes 55 directories) is bounded by keys unless they were made before.
//
// Kept on disk in the mount's cache (a folder 0700, one file 0600 per key: a key is a write cap), so that keys
// made in quiet moments serve a later burst, in a later mount too. The pool starts at `size` keys and doubles,
// up to MAX_KEYS, each time a take finds it empty (the size it reached is kept beside the keys): it grows to what
// the bursts of its user need. Made from the first take on (a mount that makes no directory spends no CPU on
// keys), from the start of a mount whose cache made directories before (resume), or from fill() (a write-back
// mount, at its start); one at a time, on a thread at the lowest CPU priority (src/tahoe/idle-keys.ts), so that
// keys are made with what the foreground leaves. A take that finds the pool empty makes its key at once, at
// normal priority.
//
// Every key is handed out once: its file is removed before it is used, and a key whose file cannot be removed is
// not used (a key used twice would name a directory that exists: the gateway refuses it, and a lost answer would
// then be settled by listing the other directory).
//
// State: `ready`, `making` (and `inFlight`), `target`, `loaded` and `stopped`, changed only here.
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

interface ReadyKey {
  key: MutableKey;
  /** Where it is kept; undefined for one kept in memory only (no folder, or it could not be written). */
  file: string | undefined;
}

export class KeyPool {
  private readonly ready: ReadyKey[] = [];
  private making = 0;
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

  /** A key never handed out before: one made ahead, else one made now (and the pool grows). */
  async take(): Promise<MutableKey> {
    await this.load();
    for (let next = this.ready.shift(); next; next = this.ready.shift()) {
      if (next.file && !(await this.claim(next.file))) continue;
      this.make();
      return next.key;
    }
    if (this.target < MAX_KEYS) {
      this.target = Math.min(2 * this.target, MAX_KEYS);
      void this.saveTarget();
    }
    this.make();
    return generateMutableKey();
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

  private make(): void {
    while (!this.stopped && this.ready.length + this.making < this.target && this.making < 1) {
      this.making++;
      const made = this.idle
        .make()
        .then(async (key) => {
          if (!this.stopped) this.ready.push({ key, file: await this.keep(key) });
        })
        .then(
          () => {
            this.making--;
            this.make();
          },
          (e: unknown) => {
            this.making--;
            if (!this.stopped) this.log.warn({ err: (e as Error).message }, 'could not make a key ahead of time');
          },
        )
        .finally(() => this.inFlight.delete(made));
      this.inFlight.add(made);
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
