// The commit protocol of an open file: its staged bytes stored and linked where the file is now, through its
// gate (writes on their way end first; writes that come meanwhile wait), then its record brought in step. Who
// commits: close() and fsync() (closing.ts, the facade), a truncate without a handle, link(), sync, and the
// write-back store loops. A failed commit leaves the bytes staged and flushed, with a record saying where they
// go, and is remembered (for status) until one succeeds.
//
// State, changed only here: `failures`. The file's own state changes through its transitions (open-file.ts).
import { FsError } from '../errors.js';
import type { Logger } from '../log.js';
import { capTextOf, nowTimestamp } from '../tahoe/links.js';
import { redact } from '../tahoe/caps.js';
import type { OpenFile, OpenFiles } from './open-files.js';
import type { Store } from './store.js';

export class Commits {
  /** Why the last commit of a file failed, until one succeeds. */
  private readonly failures = new Map<OpenFile, string>();

  constructor(
    private readonly store: Store,
    private readonly files: OpenFiles,
    private readonly log: Logger,
    /** Write-back: a store may land long after its bytes were based on the entry, so it is guarded. */
    private readonly guarded: boolean,
  ) {}

  /**
   * Uploads the staging file of an open file and links it; returns once the web API serves the new bytes.
   * Never call it holding the file's `linkLock` (LOCK ORDER, tahoe-fs.ts): its link takes that lock.
   */
  async commit(file: OpenFile): Promise<void> {
    // No await between the last check and the gate closing: a commit of a file just stored does nothing.
    while (file.gate.uploading) await file.gate.uploadsDone();
    if (!file.dirty) return;
    if (file.conflict) throw conflictError(file);
    await file.gate.exclusive(() => this.storeAndRecord(file));
  }

  /**
   * Commits while the file has changes, again while a change (a utimens, say) came in during the upload and
   * `again()` allows it; false when a commit failed, or changes are left that `again()` did not let it store.
   */
  async commitAll(file: OpenFile, again: () => boolean = () => true): Promise<boolean> {
    try {
      let first = true;
      while (file.needsStore && (first || again())) {
        first = false;
        await this.commit(file);
      }
      return !file.needsStore;
    } catch {
      return false;
    }
  }

  /** Why the file's last commit failed, if it did and none succeeded since. */
  failureOf(file: OpenFile): string | undefined {
    return this.failures.get(file);
  }

  /** For status: open (or closing) files whose last commit failed. */
  failed(): Array<{ path: string; error: string }> {
    return [...this.failures].filter(([f]) => f.needsStore && !f.closed).map(([f, error]) => ({ path: f.path, error }));
  }

  private async storeAndRecord(file: OpenFile): Promise<void> {
    try {
      await this.storeOpenFile(file);
      this.failures.delete(file);
    } catch (e) {
      // A closed file's failure is the journal's to report (recovery stores it): dropped here.
      for (const f of this.failures.keys()) if (f.closed) this.failures.delete(f);
      this.failures.set(file, (e as Error).message);
      // close() and fsync() now fail with EIO: the bytes stay staged, flushed, with a record of where they go.
      await this.files.saveRecord(file, true).catch((r: unknown) => this.log.error({ path: file.path, err: (r as Error).message }, 'staged bytes kept, but their record could not be written'));
      if (file.conflict) this.log.warn({ path: file.path, staging: file.staging?.path }, `staged write kept, not stored: ${file.conflict}`);
      else this.log.error({ path: file.path, staging: file.staging?.path, err: (e as Error).message }, 'upload failed: staged bytes kept');
      throw e instanceof FsError ? e : new FsError('EIO', `upload of ${file.path} failed: ${(e as Error).message}`, { cause: e });
    }
    // Still open: the record says "stored" now (a crash must not upload the same bytes again). If it cannot,
    // the old record stays (recovery then keeps the bytes as a conflict) and the next change writes it anew.
    if (file.handles > 0) {
      await this.files.saveRecord(file).catch((e: unknown) => {
        file.recordedDirty = false;
        this.log.warn({ path: file.path, err: (e as Error).message }, 'could not update the staging record after an upload');
      });
    }
  }

  private async storeOpenFile(file: OpenFile): Promise<void> {
    const generation = file.generation;
    const staging = file.staging;
    if (file.unlinked) {
      file.stored(generation, undefined);
      return;
    }
    if (!staging) throw new FsError('EIO', `dirty file without staging: ${file.path}`);
    const started = Date.now();
    const size = file.size;
    const result = await this.store.storeStaged({
      path: file.path,
      stagingPath: staging.path,
      size,
      changes: file.changes.snapshot(),
      ...(staging.overlay.whole ? {} : { read: (start: number, end: number) => staging.overlay.stream(start, end) }),
      mtime: file.mtime ?? nowTimestamp(),
      own: file.own,
      previous: file.child,
      sameBytesAs: file.sameBytesAs,
      lock: file.linkLock,
      destination: () => (file.unlinked ? undefined : { parentCap: file.parent.cap, name: file.name }),
      // Asked at link time: a rename meanwhile may have made the file the replacement of another entry.
      ...(this.guarded ? { base: () => file.base } : {}),
    });
    if (result.outcome === 'conflict') {
      file.conflictFound(result.reason);
      throw conflictError(file);
    }
    // Kept beside: the name is another machine's version now; this file's bytes are stored under keptAs.
    if (result.outcome === 'keptBeside') this.log.warn({ path: file.path, keptAs: result.keptAs }, 'stored beside the entry another machine wrote meanwhile');
    const child = result.outcome === 'linked' ? result.child : undefined;
    if (child) this.log.debug({ path: file.path, bytes: file.size, ms: Date.now() - started, cap: redact(capTextOf(child) ?? '') }, 'uploaded');
    // Anything changed meanwhile (a utimens, say) leaves the ranges to the next store: sent again, harmless.
    if (result.outcome === 'linked') file.changes.stored(size, file.generation === generation);
    file.stored(generation, child);
  }
}

export function conflictError(file: OpenFile): FsError {
  return new FsError('EIO', `${file.path}: kept, not stored: ${file.conflict}`);
}
