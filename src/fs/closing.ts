// The close of a file, from close(2)'s flush to "stored" or "staged for later", in both modes. Durable (the
// default): a written file is stored before close() returns; if that fails, the bytes stay staged with their
// record and recovery stores them later. Write-back: close() returns once the bytes and their record are
// flushed to the local disk; after the last release the store runs in the background (a retry queue), tried
// until it lands, the file is reopened, or the mount stops; only then is the local state dropped. Stores in
// the background link only over the entry their bytes were based on (commits.ts guards them).
//
// State, changed only here: `background` (the whole background path of each closed file, its final close
// included; one at a time per file) and `queue` (its tries).
import type { Logger } from '../log.js';
import { RetryQueue } from '../util/retry-queue.js';
import type { Commits } from './commits.js';
import type { OpenFile, OpenFiles } from './open-files.js';
import type { Recovery } from './recovery.js';

export class Closing {
  private readonly queue = new RetryQueue<OpenFile>();
  private readonly background = new Map<OpenFile, Promise<void>>();

  constructor(
    private readonly files: OpenFiles,
    private readonly commits: Commits,
    private readonly recovery: Recovery,
    private readonly log: Logger,
    /** Write-back mode (see the top of this file). */
    readonly deferred: boolean,
    /**
     * Write-back: the first store try of a closed file waits this long, so that what programs do right after
     * close() (git renames `config.lock` over `config` and chmods each object) happens to the local state only.
     */
    private readonly delayMs = 0,
  ) {}

  /** close(2) waits for this. */
  async flush(file: OpenFile): Promise<void> {
    if (await this.flushToDisk(file)) return;
    await this.commits.commit(file);
  }

  /** After the last handle of `file` is released. */
  async lastClose(file: OpenFile): Promise<void> {
    if (file.dirty && (await this.flushToDisk(file))) this.storeInBackground(file);
    else await this.storeNowAndClose(file);
  }

  /**
   * Write-back: flushes the file's changes and their record to the local disk; true when they are there (or
   * there were none) and its store may wait for the background. False in durable mode, for a file with no
   * name or a conflict (stored or given up now), or when the flush failed (logged: it is stored now instead).
   */
  private async flushToDisk(file: OpenFile): Promise<boolean> {
    if (!this.deferred || file.unlinked || file.conflict) return false;
    if (!file.dirty) return true;
    try {
      await this.files.flushLocally(file);
      return true;
    } catch (e) {
      this.log.warn({ path: file.path, err: (e as Error).message }, 'could not flush a write-back file locally: storing it now');
      return false;
    }
  }

  private async storeNowAndClose(file: OpenFile): Promise<void> {
    const stored = await this.commits.commitAll(file);
    if (!stored && !file.conflict) this.recovery.later();
    await this.files.close(file, stored);
  }

  private storeInBackground(file: OpenFile): void {
    if (this.background.has(file)) return;
    let stored = false;
    this.queue.add(file, async () => {
      // Reopened: its next last close stores it (no upload per write while a program appends to it).
      stored = await this.commits.commitAll(file, () => file.handles === 0);
      return stored || file.conflict !== undefined || file.handles > 0;
    }, this.delayMs);
    // Tried until done, or the mount drains: then the local state goes (what is not stored stays staged).
    const whole = this.queue
      .ended(file)
      .then(() => this.files.close(file, stored))
      .catch((e: unknown) => this.log.error({ path: file.path, err: (e as Error).message }, 'background store failed'))
      .finally(() => this.background.delete(file));
    this.background.set(file, whole);
  }

  /** Closed files whose store has not finished (for status and sync). */
  waiting(): OpenFile[] {
    return [...this.background.keys()];
  }

  /** Resolves once the background path of `file` (if any) has ended, its local state dropped. */
  async settled(file: OpenFile): Promise<void> {
    await this.background.get(file);
  }

  wakeAll(): void {
    this.queue.wakeAll();
  }

  /** At unmount: every background store gets one more try; what is left stays staged for the next mount. */
  async drain(): Promise<void> {
    await this.queue.drain();
    await Promise.all(this.background.values());
  }

  /** At unmount, after every handle is dropped: files still open (a lazy unmount) are stored now, or kept staged. */
  async closeAll(): Promise<void> {
    await Promise.all(this.files.all().filter((f) => !f.closed && !this.background.has(f)).map((f) => this.storeNowAndClose(f)));
  }
}
