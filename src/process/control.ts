// The control socket of a mount: how `blackmatch sync` and `blackmatch status` reach the process that holds the
// filesystem core of a mount (the server in split mode, the one process with --no-split), found from nothing
// but the mountpoint. One socket per mount, named by a hash of the mountpoint, in a folder only this user can
// enter ($XDG_RUNTIME_DIR/blackmatch, else /tmp/blackmatch-UID, checked to be ours and 0700: a socket there
// cannot be reached, or replaced, by another user).
//
// Protocol: one JSON line asking, the op and its parameters (`{"op":"sync","timeoutMs":60000}`), one JSON line
// answering (`{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`). No caps ever cross it.
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, realpath, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { Logger } from '../log.js';

/** Each request's parameters: checked here (checkParams) before its handler sees them. */
export interface ControlRequests {
  info: Record<never, never>;
  status: Record<never, never>;
  /** `timeoutMs`: how long the asker waits for the answer, so that the mount can answer within it. */
  sync: { timeoutMs?: number; storedOnly?: boolean };
}
export type ControlOp = keyof ControlRequests;
export type ControlRequest = { [K in ControlOp]: { op: K } & ControlRequests[K] }[ControlOp];
export type ControlHandlers = { [K in ControlOp]: (params: ControlRequests[K]) => Promise<unknown> };

/** A request line longer than this is refused (they are a few bytes). */
const MAX_REQUEST_BYTES = 4096;

export function controlDir(): string {
  const uid = process.getuid?.() ?? 0;
  const runtime = process.env.XDG_RUNTIME_DIR;
  return runtime ? join(runtime, 'blackmatch') : join(tmpdir(), `blackmatch-${uid}`);
}

/** The folder, made if missing; refused unless it is a directory of ours that nobody else may enter. */
async function ensureControlDir(): Promise<string> {
  const dir = controlDir();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await checkPrivate(dir);
  return dir;
}

async function checkPrivate(dir: string): Promise<void> {
  const st = await lstat(dir).catch(() => undefined);
  if (!st) throw new NoMountError(`no blackmatch mount of this user (${dir} does not exist)`);
  if (!st.isDirectory() || st.uid !== (process.getuid?.() ?? 0) || (st.mode & 0o077) !== 0) {
    throw new Error(`${dir} is not a private directory of this user: refusing to use it for control sockets`);
  }
}

/**
 * A mountpoint as one canonical path, found without touching the mount itself (a stat of a busy or dead mount
 * could hang or fail): its parent resolved, its own name kept.
 */
export async function canonicalMountpoint(path: string): Promise<string> {
  const abs = resolve(path);
  if (abs === '/') return abs;
  // The whole path first (a mountpoint reached through a symlink), bounded: a hung mount must not hang us.
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 2000)));
  const whole = await Promise.race([realpath(abs).catch(() => undefined), bound]);
  clearTimeout(timer);
  return whole ?? join(await realpath(dirname(abs)).catch(() => dirname(abs)), basename(abs));
}

export function controlSocketPath(mountpoint: string): string {
  return join(controlDir(), `${createHash('sha256').update(mountpoint).digest('hex').slice(0, 16)}.sock`);
}

/** Serves the control socket of the mount at `mountpoint` until close(). */
export async function serveControl(mountpoint: string, handlers: ControlHandlers, log: Logger): Promise<{ close(): Promise<void> }> {
  await ensureControlDir();
  const path = controlSocketPath(mountpoint);
  // A socket left by a process that died: nobody answers on it any more (checked before it is replaced).
  if (await answers(path)) throw new Error(`another process serves the control socket of ${mountpoint}`);
  await rm(path, { force: true });
  const server: Server = createServer((socket) => serveOne(socket, handlers, log));
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolveListen());
  });
  server.unref();
  return {
    close: async () => {
      await new Promise<void>((r) => server.close(() => r()));
      await rm(path, { force: true });
    },
  };
}

function serveOne(socket: Socket, handlers: ControlHandlers, log: Logger): void {
  let input = '';
  socket.setEncoding('utf8');
  socket.on('error', () => undefined);
  socket.on('data', (chunk: string) => {
    input += chunk;
    if (input.length > MAX_REQUEST_BYTES) return void socket.end(`${JSON.stringify({ ok: false, error: 'request too long' })}\n`);
    const newline = input.indexOf('\n');
    if (newline < 0) return;
    socket.pause();
    void (async () => {
      let reply: unknown;
      try {
        const request: unknown = JSON.parse(input.slice(0, newline));
        reply = { ok: true, result: await dispatch(handlers, request) };
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'control request failed');
        reply = { ok: false, error: (e as Error).message };
      }
      socket.end(`${JSON.stringify(reply)}\n`);
    })();
  });
}

/** Hands a request's parameters to its handler, once they are what the handler takes. */
function dispatch(handlers: ControlHandlers, request: unknown): Promise<unknown> {
  const { op, ...params } = (typeof request === 'object' && request !== null ? request : {}) as { op?: unknown; [param: string]: unknown };
  switch (op) {
    case 'info':
    case 'status':
      return handlers[op]({});
    case 'sync': {
      const { timeoutMs } = params;
      if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0)) {
        throw new Error(`sync: bad timeoutMs ${JSON.stringify(timeoutMs)}`);
      }
      const storedOnly = params.storedOnly === true;
      return handlers.sync({ ...(timeoutMs === undefined ? {} : { timeoutMs }), ...(storedOnly ? { storedOnly } : {}) });
    }
    default:
      throw new Error(`unknown request ${JSON.stringify(op)}`);
  }
}

/** Nobody answers at that socket (a mount that is gone, or none): `code` tells it apart from a failure. */
export class NoMountError extends Error {
  readonly code = 'ENOMOUNT';
}

/**
 * Asks the mount's process; rejects with a message fit for the user when it cannot, or after `timeoutMs`. The
 * folder is checked first: a socket in a folder another user could write to may be theirs.
 */
export async function askControl(socketPath: string, request: ControlRequest, timeoutMs: number): Promise<unknown> {
  await checkPrivate(dirname(socketPath));
  return new Promise((resolveAsk, reject) => {
    const socket = createConnection(socketPath);
    let output = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${Math.round(timeoutMs / 1000)} s`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => (output += chunk));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? new NoMountError('not a blackmatch mount (no control socket answers)') : new Error(e.message));
    });
    socket.on('end', () => {
      clearTimeout(timer);
      try {
        const reply = JSON.parse(output) as { ok: boolean; result?: unknown; error?: string };
        if (reply.ok) resolveAsk(reply.result);
        else reject(new Error(reply.error ?? 'failed'));
      } catch {
        reject(new Error('bad answer from the mount'));
      }
    });
  });
}

/** Every control socket of this user's mounts that answers (the mounts themselves say where they are). */
export async function listControlSockets(): Promise<string[]> {
  const dir = controlDir();
  if (!(await checkPrivate(dir).then(() => true, () => false))) return [];
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n.endsWith('.sock')).map((n) => join(dir, n));
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolveAnswers) => {
    const socket = createConnection(path);
    const done = (v: boolean): void => {
      socket.destroy();
      resolveAnswers(v);
    };
    socket.setTimeout(2000, () => done(true));
    socket.on('connect', () => done(true));
    socket.on('error', () => done(false));
  });
}
