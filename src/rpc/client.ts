// The client end of the RPC: implements Ops by sending each op to the server, with many calls in flight
// (FUSE runs ops on several threads). When the connection goes, every pending and later call fails at once.
// Owns the table of pending calls: an entry leaves it exactly once (reply, deadline, send failure or loss).
// File bytes do not cross the socket: reads and writes ask the server where (readSource, beginWrite and
// endWrite) and move the bytes through this process's own descriptors on the server's local files
// (local-files.ts); read and write with bytes remain for a literal file and as a fallback.
import { constants } from 'node:fs';
import { connect } from 'node:net';
import { CALL_DEADLINE_MS, DATA_CALL_DEADLINE_MS } from '../deadlines.js';
import { fromLocalFs, FsError, RemoteFsError } from '../errors.js';
import { OP_NAMES, OP_TABLE, type ChangeListener, type OpName, type Ops, type ReadSource } from '../fs/ops.js';
import { readFully } from '../util/file-io.js';
import { FramedConnection } from './connection.js';
import { LocalFiles } from './local-files.js';
import { CONTROL, isNotification, isReply, type ServerInfo } from './protocol.js';

/** Local failures that the server can handle better (it evicts cached content for room): sent as bytes then. */
const FALLBACK_CODES = new Set(['ENOENT', 'ENOSPC', 'EDQUOT']);
const { O_RDONLY } = constants;
/** Linux's mask for the access mode bits of open flags (Node does not export it). */
const O_ACCMODE = 0o3;

interface Pending {
  resolve: (value: { result: unknown; data: Buffer | undefined }) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class RpcClient {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private lostReason: string | undefined;
  private readonly lostListeners: Array<(reason: string) => void> = [];
  private readonly changeListeners: ChangeListener[] = [];
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
   * from its staging file from then on. This client is the server's only FUSE client, so it sees every such op.
   */
  private readonly known = new Map<number, { file: string; from: number; until: number; size: number; epoch: number }>();
  private epoch = 0;

  private constructor(private readonly conn: FramedConnection) {}

  /** Connects to the server's socket; rejects if nothing listens there. */
  static connect(socketPath: string, timeoutMs = 5_000): Promise<RpcClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(socketPath);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no answer from ${socketPath}`));
      }, timeoutMs);
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        let client: RpcClient | undefined;
        const conn = new FramedConnection(
          socket,
          (frame) => client!.onFrame(frame.json, frame.data),
          (reason) => client!.onClose(reason),
        );
        client = new RpcClient(conn);
        resolve(client);
      });
    });
  }

  /**
   * The same client, seen as the filesystem: one generic forwarder per op, no op written twice; reads and
   * writes through the local files (unless `localIo` is false: then their bytes cross the socket), and change
   * events from the server's notifications.
   */
  asOps({ localIo = true }: { localIo?: boolean } = {}): Ops {
    const forward: Partial<Record<OpName, (...args: unknown[]) => Promise<unknown>>> = {};
    for (const name of OP_NAMES) forward[name] = (...args: unknown[]) => this.callOp(name, args);
    const ops = forward as unknown as Ops;
    if (!localIo) return { ...ops, watch: (listener) => this.watch(listener) };
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
      readInto: (path, fh, target, position) => this.readLocal(path, fh, target, position),
      write: (path, fh, data, position) => this.writeLocal(path, fh, data, position),
      flush: (path, fh) => this.writesSettled(fh).then(() => flush(path, fh)),
      fsync: (path, fh, datasync) => this.writesSettled(fh).then(() => fsync(path, fh, datasync)),
      ftruncate: (path, fh, size) => this.writesSettled(fh).then(() => changing(ftruncate(path, fh, size))),
      release: (path, fh) =>
        this.writesSettled(fh)
          .finally(() => this.known.delete(fh))
          .finally(() => this.endWrites.delete(fh))
          .then(() => release(path, fh))
          .finally(() => this.localFiles.release(fh)),
      watch: (listener) => this.watch(listener),
    };
  }

  /** Reads through the file the server names (after it made sure the bytes are there); literal files as bytes. */
  private async readLocal(path: string, fh: number, target: Buffer, position: number): Promise<number> {
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
    const source = (await this.callOp('readSource', [path, fh, position, target.length])) as ReadSource;
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
        return await this.localFiles.use(fh, source.file, 'read', (h) => readFully(h, target.subarray(0, length), position));
      } catch (e) {
        if (!FALLBACK_CODES.has((e as NodeJS.ErrnoException).code ?? '')) throw fromLocalFs(e, 'read local file');
      }
    }
    const data = (await this.callOp('read', [path, fh, length, position])) as Buffer;
    return data.copy(target, 0, 0, Math.min(length, data.length));
  }

  /**
   * Writes into the file's staging file between beginWrite and endWrite (the server holds off its upload
   * meanwhile); what a local failure left unwritten goes as bytes when the server can do better (a full disk).
   */
  private async writeLocal(path: string, fh: number, data: Buffer, position: number): Promise<number> {
    this.throwWriteFailure(fh);
    this.epoch++;
    const staging = (await this.callOp('beginWrite', [path, fh, position, data.length])) as string;
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
      this.endWriteLater(fh, this.callOp('endWrite', [path, fh, position, done]));
      return data.length;
    }
    await this.callOp('endWrite', [path, fh, position, done]);
    if (!FALLBACK_CODES.has((failure as NodeJS.ErrnoException).code ?? '')) throw fromLocalFs(failure, 'write staging file');
    return done + ((await this.callOp('write', [path, fh, data.subarray(done), position + done])) as number);
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

  /** Listens for the server's change events; the first listener asks the server to send them. */
  private watch(listener: ChangeListener): void {
    this.changeListeners.push(listener);
    // A lost server is reported through onLost; nothing more to do here.
    if (this.changeListeners.length === 1) this.call(CONTROL.watch, []).catch(() => undefined);
  }

  async info(): Promise<ServerInfo> {
    return (await this.call(CONTROL.info, [])).result as ServerInfo;
  }

  /** Makes this connection the server's keepalive: the server exits when it closes. */
  async keepalive(): Promise<void> {
    await this.call(CONTROL.keepalive, []);
  }

  async shutdown(): Promise<void> {
    await this.call(CONTROL.shutdown, []);
  }

  /** Calls sent and not yet answered. */
  get pendingCalls(): number {
    return this.pending.size;
  }

  onLost(listener: (reason: string) => void): void {
    this.lostListeners.push(listener);
  }

  close(): void {
    this.conn.destroy('closed by client');
  }

  private async callOp(name: OpName, args: unknown[]): Promise<unknown> {
    const spec = OP_TABLE[name];
    const dataIndex = (spec.args as readonly string[]).indexOf('data');
    let data: Buffer | undefined;
    let jsonArgs = args;
    if (dataIndex >= 0) {
      // A copy: the socket may still hold the bytes after this call gave up (deadline), when FUSE's buffer
      // is already gone.
      data = Buffer.from(args[dataIndex] as Buffer);
      jsonArgs = args.filter((_, i) => i !== dataIndex);
    }
    const reply = await this.call(name, jsonArgs, data, spec.long ? DATA_CALL_DEADLINE_MS : CALL_DEADLINE_MS);
    return spec.result === 'data' ? (reply.data ?? Buffer.alloc(0)) : reply.result;
  }

  call(method: string, args: unknown[], data?: Buffer, deadlineMs = CALL_DEADLINE_MS): Promise<{ result: unknown; data: Buffer | undefined }> {
    if (this.lostReason !== undefined) return Promise.reject(new FsError('ENOTCONN', `server connection lost: ${this.lostReason}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new FsError('EIO', `${method}: no reply from the server within ${deadlineMs / 1000} s`));
      }, deadlineMs);
      // While a call is pending the open connection keeps the process alive, and its loss fails the call:
      // the deadline alone must never hold an exiting process for up to an hour.
      timer.unref();
      this.pending.set(id, { resolve, reject, timer });
      try {
        this.conn.send({ id, method, args }, data);
      } catch (e) {
        // Nothing was written (a frame is encoded whole before it is sent): no reply will ever come.
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new FsError('EIO', `${method}: request not sent: ${(e as Error).message}`, { cause: e }));
      }
    });
  }

  private onFrame(json: unknown, data: Buffer | undefined): void {
    if (isNotification(json)) {
      for (const listener of this.changeListeners) {
        try {
          listener(...json.args);
        } catch {
          // A listener's failure is the edge's to report; it must not drop the connection.
        }
      }
      return;
    }
    if (!isReply(json)) {
      this.conn.destroy('malformed frame from server');
      return;
    }
    const pending = this.pending.get(json.id);
    if (!pending) return; // timed out meanwhile
    this.pending.delete(json.id);
    clearTimeout(pending.timer);
    if ('error' in json) {
      pending.reject(new RemoteFsError(json.error.code, json.error.message));
    } else {
      pending.resolve({ result: json.result, data });
    }
  }

  private onClose(reason: string | undefined): void {
    this.lostReason = reason ?? 'server closed the connection';
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new FsError('ENOTCONN', `server connection lost: ${this.lostReason}`));
      this.pending.delete(id);
    }
    for (const listener of this.lostListeners) listener(this.lostReason);
    void this.localFiles.closeAll();
  }
}
