// What POSIX keeps of a file beyond its bytes and mtime (mode, owner, kind, device numbers, extended
// attributes), and how it rides in Tahoe link metadata. Pure functions; no state.
//
// The keys ("own" metadata, ours to write):
//   "posix":    {"mode": "0755", "uid": 1000, "gid": 1000, "type": "symlink", "target": "../x", "major": 1, "minor": 3,
//                "atime": "978307200000000000"}
//               every field optional: a link without it is a plain file (0644) or directory (0755); "atime" (exact
//               nanoseconds, a decimal string) only once utimensat set it, else the atime is the mtime; "ctime"
//               (the same form) the time of the last change of this metadata of ours (chmod, chown, xattrs,
//               utimensat): the ctime shown is the later of it and the mtime, so a write moves it too
//   "xattrs":   {"user.color": "Ymx1ZQ=="}: user.* extended attributes, values in base64
//   "no-write": true while the owner may not write: the SFTP frontend's convention, so that a file made
//               read-only here is read-only there (and the other way round)
// A symlink or special file is an immutable file for other Tahoe clients: the target as its content, or empty.
import { FsError } from '../errors.js';
import type { LinkMetadata } from './client.js';
import { parseNs } from './links.js';

export type SpecialType = 'symlink' | 'fifo' | 'socket' | 'char' | 'block';
const SPECIAL_TYPES: readonly SpecialType[] = ['symlink', 'fifo', 'socket', 'char', 'block'];

export interface PosixFields {
  /** Permission bits, setuid/setgid/sticky included (07777). */
  mode?: number;
  uid?: number;
  gid?: number;
  type?: SpecialType;
  target?: string;
  major?: number;
  minor?: number;
  /** The access time utimensat set, in nanoseconds (a decimal string); reads never change it. */
  atime?: string;
  /** When our metadata last changed, in nanoseconds (a decimal string). */
  ctime?: string;
}

/** Our keys of a link's metadata, as one value: what an open file holds until its link carries it. */
export interface OwnMetadata {
  posix?: PosixFields;
  /** Values in base64. */
  xattrs?: Record<string, string>;
  'no-write'?: true;
}

const OWN_KEYS = ['posix', 'xattrs', 'no-write'] as const;

/** Linux's bounds (limits.h): a name, one value, a listing. */
export const XATTR_NAME_MAX = 255;
export const XATTR_SIZE_MAX = 65536;
/** All of one file's attributes together (names and values): they live in its directory, which every listing reads. */
export const XATTRS_TOTAL_MAX = 65536;
/** What Linux allows a symlink target (PATH_MAX, with its NUL). */
export const SYMLINK_MAX = 4095;

export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

/** Our keys, read leniently: a value of the wrong shape (another tool's) counts as absent. */
export function ownMetadataOf(metadata: LinkMetadata): OwnMetadata {
  const own: OwnMetadata = {};
  const posix = readPosix(metadata.posix);
  if (posix) own.posix = posix;
  const xattrs = metadata.xattrs;
  if (isRecord(xattrs)) {
    const kept: Record<string, string> = {};
    for (const [name, value] of Object.entries(xattrs)) if (typeof value === 'string') kept[name] = value;
    if (Object.keys(kept).length > 0) own.xattrs = kept;
  }
  if (metadata['no-write'] === true) own['no-write'] = true;
  return own;
}

/** The metadata with our keys replaced by `own` (absent ones removed); everyone else's kept. */
export function withOwnMetadata(metadata: LinkMetadata, own: OwnMetadata): LinkMetadata {
  const out: LinkMetadata = { ...metadata };
  for (const key of OWN_KEYS) delete out[key];
  if (own.posix && Object.keys(own.posix).length > 0) out.posix = { ...own.posix, ...(own.posix.mode !== undefined ? { mode: octal(own.posix.mode) } : {}) };
  if (own.xattrs && Object.keys(own.xattrs).length > 0) out.xattrs = own.xattrs;
  if (own['no-write']) out['no-write'] = true;
  return out;
}

function readPosix(value: unknown): PosixFields | undefined {
  if (!isRecord(value)) return undefined;
  const p: PosixFields = {};
  const mode = typeof value.mode === 'string' && /^[0-7]{1,6}$/.test(value.mode) ? parseInt(value.mode, 8) : value.mode;
  if (isId(mode)) p.mode = mode & 0o7777;
  if (isId(value.uid)) p.uid = value.uid;
  if (isId(value.gid)) p.gid = value.gid;
  if (SPECIAL_TYPES.includes(value.type as SpecialType)) p.type = value.type as SpecialType;
  if (typeof value.target === 'string') p.target = value.target;
  if (isId(value.major)) p.major = value.major;
  if (isId(value.minor)) p.minor = value.minor;
  if (typeof value.atime === 'string' && parseNs(value.atime)) p.atime = value.atime;
  if (typeof value.ctime === 'string' && parseNs(value.ctime)) p.ctime = value.ctime;
  return p;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isId(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value < 2 ** 32;
}

function octal(mode: number): string {
  return mode.toString(8).padStart(4, '0');
}

// ---- edits: each returns a new value ----------------------------------------------------------------------

/** chmod: the bits, and "no-write" in step with the owner's write bit. */
export function withMode(own: OwnMetadata, mode: number): OwnMetadata {
  const { 'no-write': _dropped, ...rest } = own;
  const out: OwnMetadata = { ...rest, posix: { ...own.posix, mode: mode & 0o7777 } };
  if ((mode & 0o200) === 0) out['no-write'] = true;
  return out;
}

/** utimensat's access time, kept exact. */
export function withAtime(own: OwnMetadata, atimeNs: string): OwnMetadata {
  return { ...own, posix: { ...own.posix, atime: atimeNs } };
}

/** The change time, set. */
export function withCtime(own: OwnMetadata, ctimeNs: string): OwnMetadata {
  return { ...own, posix: { ...own.posix, ctime: ctimeNs } };
}

/** An edit that also sets the change time when it changes anything (and leaves an unchanged value as it was). */
export function withChangeTime(edit: (own: OwnMetadata) => OwnMetadata, ctimeNs: string): (own: OwnMetadata) => OwnMetadata {
  return (own) => {
    const edited = edit(own);
    return sameMetadata(edited, own) ? own : withCtime(edited, ctimeNs);
  };
}

/**
 * Equal as JSON values, whatever the order of their keys: metadata read back from a listing has its keys in
 * the order readPosix and the gateway give them, an edit adds its key last, and either must compare as what it
 * is (a change that changes nothing sends nothing).
 */
export function sameMetadata(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && sameMetadata((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** chown; -1 (or undefined) leaves an id as it is. */
export function withOwner(own: OwnMetadata, uid: number | undefined, gid: number | undefined): OwnMetadata {
  const posix = { ...own.posix };
  if (uid !== undefined && uid !== -1) posix.uid = uid;
  if (gid !== undefined && gid !== -1) posix.gid = gid;
  return { ...own, posix };
}

/** setxattr with Linux's flags and bounds; the name is checked by the caller (isUserXattr). */
export function withXattr(own: OwnMetadata, name: string, value: Buffer, flags: number): OwnMetadata {
  const xattrs = { ...own.xattrs };
  const exists = Object.hasOwn(xattrs, name);
  if (flags & XATTR_CREATE && exists) throw new FsError('EEXIST', `attribute exists: ${name}`);
  if (flags & XATTR_REPLACE && !exists) throw new FsError('ENODATA', `no such attribute: ${name}`);
  if (value.length > XATTR_SIZE_MAX) throw new FsError('E2BIG', `attribute value too large: ${value.length} bytes`);
  xattrs[name] = value.toString('base64');
  if (xattrBytes(xattrs) > XATTRS_TOTAL_MAX) throw new FsError('ENOSPC', `no room for more attributes (${XATTRS_TOTAL_MAX} bytes per file)`);
  return { ...own, xattrs };
}

export function withoutXattr(own: OwnMetadata, name: string): OwnMetadata {
  if (!own.xattrs || !Object.hasOwn(own.xattrs, name)) throw new FsError('ENODATA', `no such attribute: ${name}`);
  const { [name]: _removed, ...xattrs } = own.xattrs;
  return { ...own, xattrs };
}

export function xattrValue(own: OwnMetadata, name: string): Buffer {
  const value = own.xattrs && Object.hasOwn(own.xattrs, name) ? own.xattrs[name] : undefined;
  if (value === undefined) throw new FsError('ENODATA', `no such attribute: ${name}`);
  return Buffer.from(value, 'base64');
}

/** Bytes of names and decoded values together. */
function xattrBytes(xattrs: Record<string, string>): number {
  let total = 0;
  for (const [name, value] of Object.entries(xattrs)) total += Buffer.byteLength(name) + Math.floor((value.length * 3) / 4);
  return total;
}

/** Where the attributes computed from an entry's cap live (readcap, writecap, storage-index). */
export const CAP_XATTR_PREFIX = 'user.tahoe.';

/** The names programs may store: the user namespace, but for user.tahoe.*, which we compute. */
export function isUserXattr(name: string): boolean {
  return name.startsWith('user.') && !name.startsWith(CAP_XATTR_PREFIX);
}

export function checkXattrName(name: string): void {
  if (Buffer.byteLength(name) > XATTR_NAME_MAX || name.length === 0) throw new FsError('ERANGE', `bad attribute name length: ${name.length}`);
}

// ---- device numbers: Linux's dev_t as FUSE carries it (new_encode_dev) --------------------------------------

export function splitDev(rdev: number): { major: number; minor: number } {
  return { major: (rdev & 0xfff00) >>> 8, minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00) };
}

export function joinDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}
