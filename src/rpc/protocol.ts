// The RPC's wire messages and its flat method namespace, shared by client and server. Every filesystem op
// is a method of the same name (the Ops interface); a few control methods manage the server itself.
import type { OpName } from '../fs/ops.js';

/** Argument kinds, checked by the server before dispatch. 'data' is the frame's raw bytes, not a JSON value. */
type ArgKind = 'string' | 'number' | 'boolean' | 'data';

/** Arguments of each op, in Ops order; the one 'data' argument (write) travels as the frame's raw bytes. */
export const OP_ARGS: Record<OpName, ArgKind[]> = {
  getattr: ['string'],
  fgetattr: ['string', 'number'],
  readdir: ['string'],
  access: ['string', 'number'],
  statfs: ['string'],
  open: ['string', 'number'],
  create: ['string', 'number'],
  read: ['string', 'number', 'number', 'number'],
  write: ['string', 'number', 'data', 'number'],
  flush: ['string', 'number'],
  fsync: ['string', 'number', 'boolean'],
  release: ['string', 'number'],
  truncate: ['string', 'number'],
  ftruncate: ['string', 'number', 'number'],
  mkdir: ['string', 'number'],
  rmdir: ['string'],
  unlink: ['string'],
  rename: ['string', 'string'],
  link: ['string', 'string'],
  utimens: ['string', 'string', 'string'],
  chmod: ['string', 'number'],
  chown: ['string', 'number', 'number'],
};

/** Ops whose result is bytes (sent raw, not as JSON). */
export const DATA_RESULT: ReadonlySet<string> = new Set(['read']);

/** Control methods, answered by the server process rather than the filesystem core. */
export const CONTROL = {
  /** Marks this connection as the client's keepalive: when it closes, the server finishes and exits. */
  keepalive: 'keepalive',
  /** Who is serving: {pid, mountpoint, rootName}. Used to name the mount that a second mount collides with. */
  info: 'info',
  /** Asks the server to unmount and exit. */
  shutdown: 'shutdown',
} as const;

export interface Request {
  id: number;
  method: string;
  args: unknown[];
}

export type Reply =
  | { id: number; result: unknown }
  | { id: number; error: { errno: number; code: string; message: string } };

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

/**
 * Checks a request's arguments against the op's signature and returns them with the raw bytes in place
 * of the 'data' argument; undefined when they do not fit.
 */
export function checkArgs(method: OpName, args: unknown[], data: Buffer | undefined): unknown[] | undefined {
  const kinds = OP_ARGS[method];
  const jsonKinds = kinds.filter((k) => k !== 'data');
  if (args.length !== jsonKinds.length) return undefined;
  const out: unknown[] = [];
  let j = 0;
  for (const kind of kinds) {
    if (kind === 'data') {
      if (!data) return undefined;
      out.push(data);
      continue;
    }
    const value = args[j++];
    if (kind === 'number' ? typeof value !== 'number' || !Number.isFinite(value) : typeof value !== kind) return undefined;
    out.push(value);
  }
  return out;
}
