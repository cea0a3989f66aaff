// The client end of the RPC, its transport: implements Ops by sending each op to the server, with many calls
// in flight (FUSE runs ops on several threads). When the connection goes, every pending and later call fails
// at once. Owns request ids, the table of pending calls (an entry leaves it exactly once: reply, deadline, send
// failure or loss), their deadlines, the server's notifications and the loss listeners. How reads and writes
// move file bytes without the socket is split-io.ts's (one SplitIo per client).
//
// State changed across awaits: `pending` by call (adding) and by the reply, deadline, send failure or loss
// that ends the call (removing); `lostReason` once, by onClose.
import { connect } from 'node:net';
import { CALL_DEADLINE_MS, DATA_CALL_DEADLINE_MS } from '../deadlines.js';
import { FsError, RemoteFsError } from '../errors.js';
import { OP_NAMES, OP_TABLE, type ChangeListener, type OpName, type Ops } from '../fs/ops.js';
import { FramedConnection } from './connection.js';
import type { LocalFiles } from './local-files.js';
import { CONTROL, isNotification, isReply, type ServerInfo } from './protocol.js';
import { SplitIo, type OpCaller } from './split-io.js';

interface Pending {
  resolve: (value: { result: unknown; data: Buffer | undefined }) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class RpcClient implements OpCaller {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private lostReason: string | undefined;
  private readonly lostListeners: Array<(reason: string) => void> = [];
  private readonly changeListeners: ChangeListener[] = [];
  /** Split mode's reads and writes; it calls back through this object's callOp (and so its `call`). */
  private readonly splitIo = new SplitIo(this);

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
    const ops: Ops = { ...(forward as unknown as Ops), watch: (listener) => this.watch(listener) };
    return localIo ? this.splitIo.wrap(ops) : ops;
  }

  /** Descriptors on the server's local files (split-io.ts's). */
  get localFiles(): LocalFiles {
    return this.splitIo.localFiles;
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

  /** Sends one op: its `data` argument, if any, as the frame's raw bytes; its result, or its bytes, back. */
  async callOp(name: OpName, args: unknown[]): Promise<unknown> {
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
    // The loss is reported first; closing the descriptors is not waited for.
    void this.localFiles.closeAll();
  }
}
