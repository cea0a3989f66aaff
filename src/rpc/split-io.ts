// Split mode's I/O policy, one instance per RPC client: file bytes do not cross the socket. Reads and writes
// ask the server where (readSource, beginWrite and endWrite) and move the bytes through this process's own
// descriptors on the server's local files (local-files.ts); read and write with bytes remain for a literal
// file and as a fallback (FALLBACK_CODES). Owns the read cache and its epoch, and the endWrite calls a write
// did not wait for. Every call goes through `rpc.callOp`, looked up on the client object at each call (tests
// swap the client's `call`).
//
// State changed across awaits: `known` and `epoch` by the reads, writes and opens here only; `endWrites` by
// writes (adding), their endWrite calls (settling) and release (dropping the handle's entry).
import { constants } from 'node:fs';
import { fromLocalFs } from '../errors.js';
import type { OpName, Ops, ReadSource } from '../fs/ops.js';
import { readFully } from '../util/file-io.js';
import { LocalFiles } from './local-files.js';

/** Local failures that the server can handle better (it evicts cached content for room): sent as bytes then. */
const FALLBACK_CODES = new Set(['ENOENT', 'ENOSPC', 'EDQUOT']);
const { O_RDONLY } = constants;
/** Linux's mask for the access mode bits of open flags (Node does not export it). */
const O_ACCMODE = 0o3;

/** What the policy needs of the RPC client: one op sent to the server, its result back. */
export interface OpCaller {
  callOp(name: OpName, args: unknown[]): Promise<unknown>;
}

export class SplitIo {
  /** Descriptors on the server's local files, for reads and writes without bytes on the socket. */
  readonly localFiles = new LocalFiles();
  /**
   * endWrite calls that their write did not wait for, by handle (the socket keeps them in order with whatever
   * the handle does next, so the server sees the new size first); a failure among them is thrown by the
   * handle's next write, flush, fsync, ftruncate or release.
   */
  private readonly endWrites = new Map<number, { pending: Set<Promise<unknown>>; failure?: unknown }>();
  /**
   * Immutable cached bytes a handle may read again without asking (ReadSource.until), valid while `epoch` is
   * unchanged: any write, truncate or open for writing through this mount bumps it, since a written file is read
   * from its staging file from then on. The client is the server's only FUSE client, so it sees every such op.
   */
  private readonly known = new Map<number, { file: string; from: number; until: number; size: number; epoch: number }>();
  private epoch = 0;

  constructor(private readonly rpc: OpCaller) {}

  /** `ops` (plain forwarders to the server) with reads and writes through the local files. */
  wrap(ops: Ops): Ops {
    const { release, flush, fsync, ftruncate, truncate, open, create } = ops;
    const changing = <T>(call: Promise<T>): Promise<T> => {
      this.epoch++;
      return call;
    };
    return {
      ...ops,
      open: (path, flags) => ((flags & O_ACCMODE) !== O_RDONLY ? changing(open(path, flags)) : open(path, flags)),
      create: (path, mode, uid, gid) => changing(create(path, mode, uid, gid)),
      truncate: (path, size) => changing(truncate(path, size)),
      readInto: (path, fh, target, position) => this.read(path, fh, target, position),
      write: (path, fh, data, position) => this.write(path, fh, data, position),
      flush: (path, fh) => this.writesSettled(fh).then(() => flush(path, fh)),
      fsync: (path, fh, datasync) => this.writesSettled(fh).then(() => fsync(path, fh, datasync)),
      ftruncate: (path, fh, size) => this.writesSettled(fh).then(() => changing(ftruncate(path, fh, size))),
      release: (path, fh) =>
        this.writesSettled(fh)
          .finally(() => this.known.delete(fh))
          .finally(() => this.endWrites.delete(fh))
          .then(() => release(path, fh))
          .finally(() => this.localFiles.release(fh)),
    };
  }

  /** Reads through the file the server names (after it made sure the bytes are there); literal files as bytes. */
  private async read(path: string, fh: number, target: Buffer, position: number): Promise<number> {
    const known = this.known.get(fh);
    if (known && known.epoch === this.epoch && position >= known.from && (position + target.length <= known.until || known.until === known.size)) {
      const length = Math.min(target.length, known.size - position);
      if (length <= 0) return 0;
      try {
        return await this.localFiles.use(fh, known.file, 'read', (h) => readFully(h, target.subarray(0, length), position));
      } catch {
        this.known.delete(fh); // asked again below
      }
    }
    const epoch = this.epoch;
    const source = (await this.rpc.callOp('readSource', [path, fh, position, target.length])) as ReadSource;
    if (source.file !== null && source.until !== undefined && source.size !== undefined && epoch === this.epoch) {
      // Joined to what was known if it touches it: a reader going on from there (or back) asks nothing.
      const joins = known && known.epoch === epoch && known.file === source.file && position <= known.until && source.until >= known.from;
      const from = joins ? Math.min(known.from, position) : position;
      const until = joins ? Math.max(known.until, source.until) : source.until;
      this.known.set(fh, { file: source.file, from, until, size: source.size, epoch });
    }
    const length = Math.min(source.length, target.length);
    if (length <= 0) return 0;
    if (source.file !== null) {
      try {
        const n = await this.localFiles.use(fh, source.file, 'read', (h) => readFully(h, target.subarray(0, length), position));
        // A written file over its base content: the rest is in the other file (a short read would be an end).
        if (source.more && n === length && length < target.length) return n + (await this.read(path, fh, target.subarray(n), position + n));
        return n;
      } catch (e) {
        if (!FALLBACK_CODES.has((e as NodeJS.ErrnoException).code ?? '')) throw fromLocalFs(e, 'read local file');
      }
    }
    // Over a base content, the bytes after this run are in the other file: the server's read takes them all.
    const wanted = source.more ? target.length : length;
    const data = (await this.rpc.callOp('read', [path, fh, wanted, position])) as Buffer;
    return data.copy(target, 0, 0, Math.min(wanted, data.length));
  }

  /**
   * Writes into the file's staging file between beginWrite and endWrite (the server holds off its upload
   * meanwhile); what a local failure left unwritten goes as bytes when the server can do better (a full disk).
   */
  private async write(path: string, fh: number, data: Buffer, position: number): Promise<number> {
    this.throwWriteFailure(fh);
    this.epoch++;
    const staging = (await this.rpc.callOp('beginWrite', [path, fh, position, data.length])) as string;
    let done = 0;
    let failure: unknown;
    try {
      await this.localFiles.use(fh, staging, 'write', async (h) => {
        while (done < data.length) done += (await h.write(data, done, data.length - done, position + done)).bytesWritten;
      });
    } catch (e) {
      failure = e;
    }
    if (failure === undefined) {
      // Not waited for: the next write's beginWrite, or the handle's flush, follows it on the socket.
      this.endWriteLater(fh, this.rpc.callOp('endWrite', [path, fh, position, done]));
      return data.length;
    }
    await this.rpc.callOp('endWrite', [path, fh, position, done]);
    if (!FALLBACK_CODES.has((failure as NodeJS.ErrnoException).code ?? '')) throw fromLocalFs(failure, 'write staging file');
    return done + ((await this.rpc.callOp('write', [path, fh, data.subarray(done), position + done])) as number);
  }

  private endWriteLater(fh: number, call: Promise<unknown>): void {
    let state = this.endWrites.get(fh);
    if (!state) this.endWrites.set(fh, (state = { pending: new Set() }));
    const tracked: Promise<void> = call.then(
      () => void state.pending.delete(tracked),
      (e: unknown) => {
        state.pending.delete(tracked);
        state.failure ??= e;
      },
    );
    state.pending.add(tracked);
  }

  private throwWriteFailure(fh: number): void {
    const state = this.endWrites.get(fh);
    if (state?.failure === undefined) return;
    const failure = state.failure;
    state.failure = undefined; // reported once, as a failed write(2) or close(2) would be
    throw failure;
  }

  /** Waits for the handle's endWrite calls in flight; throws the first failure among them (once). */
  private async writesSettled(fh: number): Promise<void> {
    const state = this.endWrites.get(fh);
    if (state && state.pending.size > 0) await Promise.all([...state.pending]);
    this.throwWriteFailure(fh);
  }
}
