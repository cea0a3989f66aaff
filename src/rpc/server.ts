// The server end of the RPC: dispatches each request into the filesystem core and answers it, and pushes the
// core's change events to the connections that asked for them. A connection that sends garbage is dropped;
// every other connection keeps being served.
import { chmod, rm } from 'node:fs/promises';
import { constants } from 'node:os';
import { createServer, type Server, type Socket } from 'node:net';
import { FsError, isExpected, toErrno } from '../errors.js';
import { isOpName, OP_TABLE, type Ops } from '../fs/ops.js';
import type { Logger } from '../log.js';
import { FramedConnection } from './connection.js';
import { checkArgs, CONTROL, isRequest, type Notification, type Reply, type ServerInfo } from './protocol.js';

export interface RpcServerOptions {
  socketPath: string;
  core: Ops;
  log: Logger;
  info: () => ServerInfo;
  /** The client connected its keepalive. */
  onKeepalive: () => void;
  /** The client's keepalive connection closed: the client is gone. */
  onKeepaliveLost: () => void;
  onShutdownRequest: () => void;
}

export class RpcServer {
  private server: Server | undefined;
  private readonly connections = new Set<FramedConnection>();
  /** Connections that asked for change notifications. */
  private readonly watchers = new Set<FramedConnection>();

  constructor(private readonly opts: RpcServerOptions) {
    opts.core.watch?.((dirPath, name, kind) => this.notify({ event: 'changed', args: [dirPath, name, kind] }));
  }

  private notify(notification: Notification): void {
    for (const conn of this.watchers) {
      try {
        conn.send(notification);
      } catch (e) {
        this.opts.log.warn({ err: (e as Error).message }, 'change notification not sent');
      }
    }
  }

  async listen(): Promise<void> {
    const server = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.socketPath, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    await chmod(this.opts.socketPath, 0o600);
    server.on('error', (e) => this.opts.log.error({ err: e.message }, 'socket server error'));
    this.server = server;
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.destroy('server exiting');
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await rm(this.opts.socketPath, { force: true });
  }

  private accept(socket: Socket): void {
    const log = this.opts.log;
    let keepalive = false;
    const conn: FramedConnection = new FramedConnection(
      socket,
      (frame) => {
        if (!isRequest(frame.json)) {
          log.warn('malformed request: dropping the connection');
          conn.destroy('malformed request');
          return;
        }
        const { id, method, args } = frame.json;
        if (method === CONTROL.keepalive) {
          keepalive = true;
          this.opts.onKeepalive();
          conn.send({ id, result: null });
          return;
        }
        if (method === CONTROL.watch) {
          this.watchers.add(conn);
          conn.send({ id, result: null });
          return;
        }
        void this.dispatch(id, method, args, frame.data).then(({ reply, data }) => {
          try {
            conn.send(reply, data);
          } catch (e) {
            // A reply too large for a frame (say, a directory of a million names): answer with an error instead.
            log.error({ id, method: method.slice(0, 64), err: (e as Error).message }, 'reply not sent');
            conn.send({ id, error: { errno: constants.errno.EIO, code: 'EIO', message: `reply too large: ${(e as Error).message}` } });
          }
        });
      },
      (reason) => {
        this.connections.delete(conn);
        this.watchers.delete(conn);
        if (reason) log.warn({ reason }, 'connection dropped');
        if (keepalive) this.opts.onKeepaliveLost();
      },
    );
    this.connections.add(conn);
  }

  private async dispatch(id: number, method: string, args: unknown[], data: Buffer | undefined): Promise<{ reply: Reply; data?: Buffer }> {
    const log = this.opts.log;
    const started = performance.now();
    try {
      if (method === CONTROL.info) return { reply: { id, result: this.opts.info() } };
      if (method === CONTROL.shutdown) {
        setImmediate(() => this.opts.onShutdownRequest());
        return { reply: { id, result: null } };
      }
      if (!isOpName(method)) throw new FsError('ENOSYS', `unknown method "${method.slice(0, 64)}"`);
      const op = method;
      const checked = checkArgs(op, args, data);
      if (!checked) throw new FsError('EINVAL', `wrong arguments for ${op}`);
      const fn = this.opts.core[op] as (...a: unknown[]) => Promise<unknown>;
      const result = await fn.apply(this.opts.core, checked);
      log.debug({ id, op, path: checked[0], ms: +(performance.now() - started).toFixed(2) }, 'ok');
      if (OP_TABLE[op].result === 'data') return { reply: { id, result: null }, data: result as Buffer };
      return { reply: { id, result: result ?? null } };
    } catch (e) {
      const errno = toErrno(e);
      const fsError = e instanceof FsError ? e : undefined;
      if (isExpected(e)) log.debug({ id, op: method.slice(0, 64), errno, reason: (e as Error).message }, 'failed');
      else log.error({ id, op: method.slice(0, 64), errno, err: e instanceof Error ? e.stack : String(e) }, 'failed');
      return { reply: { id, error: { errno, code: fsError?.code ?? 'EIO', message: fsError?.message ?? 'internal error (see the server log)' } } };
    }
  }
}
