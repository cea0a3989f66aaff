// A staging file over its base content: what an open file holds once anything was written. The bytes written
// (and the holes a truncate or a write past the end made) are in the staging file; every other byte is the base
// content's (the file's content in the grid when the staging file was made), read through the content cache
// as for a file nobody writes. So a 4 KiB change in a 1 GiB file stages 4 KiB, and holes stay holes.
//
// State: `fromBase` shrinks on every write and truncate (open-files.ts, through wrote() and truncated()) and
// never grows; reads and streams look at it again after each await.
import { Readable } from 'node:stream';
import type { FileHandle } from 'node:fs/promises';
import type { CachedFile } from '../cache/cached-file.js';
import { RangeSet, type Range } from '../cache/range-set.js';
import { fromLocalFs, FsError } from '../errors.js';
import { readFully, writeFully } from '../util/file-io.js';

/** The bytes a stream reads at once. */
const CHUNK = 1024 * 1024;

/** What the base content is, for the staging record: enough for recovery to read it again. */
export interface BaseSource {
  cap: string;
  /** A mutable file's version (links.ts mutableStamp), when its link names one. */
  stamp?: string;
  size: number;
}

export class Overlay {
  /** The bytes that are still the base content's. */
  readonly fromBase: RangeSet;
  private _revision = 0;

  constructor(
    readonly stagingPath: string,
    private readonly handle: FileHandle,
    /** Held (a reference of the cache's) while the staging file is: see OpenFiles.close. */
    readonly base: CachedFile | undefined,
    readonly source: BaseSource | undefined,
    fromBase?: Range[],
  ) {
    this.fromBase = new RangeSet(base ? (fromBase ?? (source && source.size > 0 ? [[0, source.size]] : [])) : []);
  }

  /** Whether the staging file alone holds every byte (it can be uploaded as it is, or adopted by the cache). */
  get whole(): boolean {
    return this.fromBase.bytes === 0;
  }

  /** Bumped whenever `fromBase` shrinks: the staging record must say so before a crash could read it. */
  get revision(): number {
    return this._revision;
  }

  wrote(position: number, length: number): void {
    this.changing(() => this.fromBase.remove(position, position + length));
  }

  truncated(size: number): void {
    this.changing(() => this.fromBase.trim(size));
  }

  private changing(change: () => void): void {
    const before = this.fromBase.bytes;
    change();
    if (this.fromBase.bytes !== before) this._revision++;
  }

  /** Fills `into` with the file's bytes from `position` (the caller keeps it within the file's size). */
  async read(into: Buffer, position: number): Promise<number> {
    let done = 0;
    while (done < into.length) {
      const { inBase, end } = this.runAt(position + done);
      const slice = into.subarray(done, done + Math.min(into.length - done, end - (position + done)));
      if (inBase) {
        const got = await this.base!.readInto(slice, position + done);
        if (got !== slice.length) throw new FsError('EIO', `base content of a staged file ends early (${got} of ${slice.length} bytes)`);
      } else {
        let got: number;
        try {
          got = await readFully(this.handle, slice, position + done);
        } catch (e) {
          throw fromLocalFs(e, 'read staging file');
        }
        slice.fill(0, got); // past the staging file's end: a hole
      }
      done += slice.length;
    }
    return done;
  }

  /**
   * The local file that holds the bytes from `position` (split mode's client reads it itself), and how many
   * (at most `length`); `more` when the rest is in the other file. Base bytes are waited for first.
   */
  async sourceAt(position: number, length: number): Promise<{ file: string; length: number; more: boolean }> {
    const { inBase, end } = this.runAt(position);
    const n = Math.min(length, end - position);
    if (!inBase) return { file: this.stagingPath, length: n, more: n < length };
    const present = await this.base!.ready(position, n);
    if (present !== n) throw new FsError('EIO', `base content of a staged file ends early (${present} of ${n} bytes)`);
    return { file: this.base!.dataPath, length: n, more: n < length };
  }

  /** The file's bytes in [start, end) as a stream (an upload's body); `bytesRead` tells how far it got. */
  stream(start: number, end: number): Readable & { bytesRead: number } {
    const read = this.read.bind(this);
    const progress = { bytesRead: 0 };
    const stream = Readable.from(
      (async function* chunks(): AsyncGenerator<Buffer> {
        for (let pos = start; pos < end; pos += CHUNK) {
          const chunk = Buffer.allocUnsafe(Math.min(CHUNK, end - pos));
          await read(chunk, pos);
          progress.bytesRead += chunk.length;
          yield chunk;
        }
      })(),
      { objectMode: false },
    );
    return Object.defineProperty(stream, 'bytesRead', { get: () => progress.bytesRead }) as Readable & { bytesRead: number };
  }

  /**
   * Writes what the staging file holds in [0, size) into `target`, a cached copy of the base content whose
   * present bytes are `present`, which is brought up to date: then it is the new content. A hole the base
   * never had is left a hole (not present: it is read from the grid if ever asked for).
   */
  async applyTo(target: FileHandle, present: RangeSet, size: number): Promise<void> {
    const chunk = Buffer.allocUnsafe(CHUNK);
    for (let pos = 0; pos < size; ) {
      const { inBase, end } = this.runAt(pos);
      const runEnd = Math.min(end, size);
      if (inBase) {
        pos = runEnd;
        continue;
      }
      while (pos < runEnd) {
        const part = chunk.subarray(0, Math.min(CHUNK, runEnd - pos));
        part.fill(0, await readFully(this.handle, part, pos));
        if (isZero(part) && !present.contains(pos, pos + part.length)) {
          present.remove(pos, pos + part.length);
        } else {
          await writeFully(target, part, pos);
          present.add(pos, pos + part.length);
        }
        pos += part.length;
      }
    }
    present.trim(size);
  }

  /** Where the run of bytes from `position` comes from, and where it ends. */
  private runAt(position: number): { inBase: boolean; end: number } {
    const missing = this.fromBase.firstMissing(position);
    return missing > position ? { inBase: true, end: missing } : { inBase: false, end: this.fromBase.nextPresent(position) };
  }
}

const ZEROS = Buffer.alloc(CHUNK);

/** Whether every byte is 0. */
function isZero(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i += CHUNK) {
    const part = buf.subarray(i, i + CHUNK);
    if (!part.equals(ZEROS.subarray(0, part.length))) return false;
  }
  return true;
}
