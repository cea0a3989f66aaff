// The RPC's wire messages and its flat method namespace, shared by client and server. Every filesystem op
// is a method of the same name, its arguments checked against the op table (fs/ops.ts); a few control
// methods manage the server itself. Three kinds of frame: requests (client to server: an id and a method),
// replies (server to client: the request's id), and notifications (server to client, on connections that
// asked with `watch`: no id, never answered). Anything else drops the peer.
import { OP_TABLE, type ChangeKind, type OpName } from '../fs/ops.js';

/** Control methods, answered by the server process rather than the filesystem core. */
export const CONTROL = {
  /** Marks this connection as the client's keepalive: when it closes, the server finishes and exits. */
  keepalive: 'keepalive',
  /** Who is serving: {pid, mountpoint, rootName}. Used to name the mount that a second mount collides with. */
  info: 'info',
  /** Asks the server to unmount and exit. */
  shutdown: 'shutdown',
  /** This connection receives change notifications (see Notification). */
  watch: 'watch',
} as const;

export interface Request {
  id: number;
  method: string;
  args: unknown[];
}

export type Reply =
  | { id: number; result: unknown }
  | { id: number; error: { errno: number; code: string; message: string } };

/** Sent by the server unasked: an entry that a refreshed listing shows changed by someone else (Ops.watch). */
export interface Notification {
  event: 'changed';
  args: [dirPath: string, name: string, kind: ChangeKind];
}

export interface ServerInfo {
  pid: number;
  mountpoint: string;
  rootName: string;
}

export function isRequest(v: unknown): v is Request {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return Number.isSafeInteger(r.id) && typeof r.method === 'string' && Array.isArray(r.args);
}

export function isReply(v: unknown): v is Reply {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  if (!Number.isSafeInteger(r.id)) return false;
  if ('result' in r) return true;
  const e = r.error as Record<string, unknown> | undefined;
  return typeof e === 'object' && e !== null && typeof e.errno === 'number' && typeof e.message === 'string';
}

export function isNotification(v: unknown): v is Notification {
  if (typeof v !== 'object' || v === null || 'id' in v) return false;
  const n = v as Record<string, unknown>;
  return n.event === 'changed' && Array.isArray(n.args) && n.args.length === 3 && n.args.every((a) => typeof a === 'string') && (n.args[2] === 'entry' || n.args[2] === 'attributes');
}

/**
 * Checks a request's arguments against the op's signature and returns them with the raw bytes in place
 * of the 'data' argument (empty when the frame had none); undefined when they do not fit.
 */
export function checkArgs(method: OpName, args: unknown[], data: Buffer | undefined): unknown[] | undefined {
  const kinds = OP_TABLE[method].args;
  const jsonKinds = kinds.filter((k) => k !== 'data');
  if (args.length !== jsonKinds.length) return undefined;
  const out: unknown[] = [];
  let j = 0;
  for (const kind of kinds) {
    if (kind === 'data') {
      // A frame carries no bytes part for an empty Buffer (an empty xattr value).
      out.push(data ?? Buffer.alloc(0));
      continue;
    }
    const value = args[j++];
    if (kind === 'number' ? typeof value !== 'number' || !Number.isFinite(value) : typeof value !== kind) return undefined;
    out.push(value);
  }
  return out;
}
