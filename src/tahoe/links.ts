// What a directory entry (a link) carries on Tahoe, and how blackmatch reads and writes it: the child's cap,
// its size, and the link metadata where file times live. Pure functions over listing entries; no state.
//
// Metadata keys: `tahoe.linkcrtime`/`tahoe.linkmotime` are kept by the gateway itself; `mtime` (seconds, the key
// Tahoe's CLI and SFTP frontend use), `mtime_ns` (exact, a decimal string), and for a mutable file `size` (its
// length: a listing does not say it, dirnode.py gives a mutable child's size only when the gateway happens to
// know it) and `version_id` (a fresh random id at each store of ours) are ours; any other key belongs to someone
// else and is carried along unchanged.
import { randomBytes } from 'node:crypto';
import { FsError } from '../errors.js';
import { capAccess, parseCap, type Cap } from './caps.js';
import type { ChildInfo, LinkMetadata, LinkTarget } from './client.js';

/** A time as seconds and nanoseconds (the shape of `Timestamp` in fs/ops.ts). */
export interface Timestamp {
  sec: number;
  nsec: number;
}

/** The caps of a listing entry or of a link to make. */
type Caps = Pick<ChildInfo, 'rwUri' | 'roUri'>;

/** The cap an entry (or a link) names: the write cap when we hold one. */
export function capTextOf(child: Caps): string | undefined {
  return child.rwUri ?? child.roUri;
}

/** The cap an entry holds, null for no entry at all: what a store's guard compares against its base. */
export function heldCap(entry: Caps | undefined): string | null {
  return entry ? (capTextOf(entry) ?? null) : null;
}

/** Parsed caps by listing entry: parsing hashes the key (the storage index), too slow for every read. */
const parsedCaps = new WeakMap<ChildInfo, Cap>();

export function capOf(child: ChildInfo): Cap {
  const known = parsedCaps.get(child);
  if (known) return known;
  const text = capTextOf(child);
  if (!text) throw new FsError('EIO', `entry without a cap: ${child.name}`);
  try {
    const cap = parseCap(text);
    parsedCaps.set(child, cap);
    return cap;
  } catch (e) {
    throw new FsError('EIO', `entry ${child.name} has an unusable cap: ${(e as Error).message}`, { cause: e });
  }
}

export function tryParseCap(text: string | undefined): Cap | undefined {
  if (!text) return undefined;
  try {
    return parseCap(text);
  } catch {
    return undefined;
  }
}

/**
 * A mutable file's size as our link says it, else the listing's, else the cap's (CHK and LIT caps carry it); 0
 * when none says. Ours first for a mutable file: the gateway's is whatever version it last saw, or nothing.
 */
export function sizeOf(child: ChildInfo): number {
  const linked = child.mutable ? linkedSize(child.metadata) : undefined;
  if (linked !== undefined) return linked;
  if (child.size !== undefined) return child.size;
  try {
    return capOf(child).size ?? 0;
  } catch {
    return 0;
  }
}

/** Whether the holder of this entry may change what it names (a writable directory or mutable file). */
export function entryWritable(child: ChildInfo): boolean {
  return entryAccess(child)?.writable ?? false;
}

/** What the entry's cap allows, decided from its kind (see capAccess); undefined for an unusable cap. */
export function entryAccess(child: ChildInfo): { writable: boolean; immutable: boolean } | undefined {
  const text = capTextOf(child);
  return text === undefined ? undefined : capAccess(text);
}

/** The same child linked elsewhere: its caps and our metadata (without Tahoe's own keys). */
export function linkTargetOf(child: ChildInfo): LinkTarget {
  return { type: child.type, rwUri: child.rwUri, roUri: child.roUri, metadata: userMetadata(child.metadata) };
}

/** Metadata without Tahoe's own "tahoe" key, which the gateway maintains itself. */
export function userMetadata(metadata: LinkMetadata): LinkMetadata {
  const { tahoe: _ignored, ...rest } = metadata;
  return rest;
}

function linkedSize(metadata: LinkMetadata): number | undefined {
  const size = metadata.size;
  return typeof size === 'number' && Number.isSafeInteger(size) && size >= 0 ? size : undefined;
}

/**
 * A mutable file's link after a store of ours: its size, and a fresh id of the version now stored (two versions
 * may have the same size and mtime: a change that keeps the mtime, as `touch -r` or `rsync --inplace` do).
 */
export function withVersion(metadata: LinkMetadata, size: number): LinkMetadata {
  return { ...metadata, size, version_id: randomBytes(8).toString('hex') };
}

/**
 * Which version of a mutable file a link names, as far as blackmatch can tell: the version id, size and mtime
 * its last store linked (undefined when the link carries none: a file another client made). Every store from a
 * mount relinks it after its bytes are in place, so cached bytes under an unchanged stamp are that version's;
 * a client that writes the cap without relinking goes unseen (README, "Files that change in place").
 */
export function mutableStamp(child: ChildInfo): string | undefined {
  if (!child.mutable || child.type !== 'file') return undefined;
  const size = linkedSize(child.metadata);
  const id = child.metadata.version_id;
  return size !== undefined && typeof id === 'string' ? `${id}:${size}:${String(child.metadata.mtime_ns)}` : undefined;
}

/** Sets the file's mtime: "mtime" in seconds plus the exact nanoseconds. */
export function withMtime(metadata: LinkMetadata, mtime: Timestamp): LinkMetadata {
  return { ...userMetadata(metadata), mtime: mtime.sec + mtime.nsec / 1e9, mtime_ns: nsString(mtime) };
}

/** The metadata the gateway will now hold: ours, with Tahoe's link times as its update_metadata sets them. */
export function touchedMetadata(old: LinkMetadata, ours: LinkMetadata): LinkMetadata {
  const now = Date.now() / 1000;
  return { ...ours, tahoe: { linkcrtime: old.tahoe?.linkcrtime ?? now, linkmotime: now } };
}

/** A fresh link's metadata, as the gateway makes it. */
export function newLinkMetadata(): LinkMetadata {
  const now = Date.now() / 1000;
  return { tahoe: { linkcrtime: now, linkmotime: now } };
}

/**
 * The file's mtime (ours when stored, else the link's modification time), which is its ctime too unless a later
 * change of its metadata says otherwise (posix.ts "ctime", applied in fs/attributes.ts). Not the
 * gateway's link times: after our own link we can only guess them until a listing shows the gateway's, and a
 * ctime that moves by itself makes `tar c` report "file changed as we read it".
 */
export function linkTimes(metadata: LinkMetadata): { mtime: Timestamp; ctime: Timestamp } {
  const linkmotime = metadata.tahoe?.linkmotime;
  let mtime = typeof linkmotime === 'number' ? timestampFromSeconds(linkmotime) : { sec: 0, nsec: 0 };
  if (typeof metadata.mtime === 'number') {
    mtime = timestampFromSeconds(metadata.mtime);
    // The exact value wins when it agrees with "mtime" (another tool may have changed only "mtime").
    const exact = typeof metadata.mtime_ns === 'string' ? parseNs(metadata.mtime_ns) : undefined;
    if (exact && Math.abs(exact.sec + exact.nsec / 1e9 - metadata.mtime) < 1) mtime = exact;
  }
  return { mtime, ctime: mtime };
}

export function timestampFromSeconds(seconds: number): Timestamp {
  const sec = Math.floor(seconds);
  return { sec, nsec: Math.min(999_999_999, Math.round((seconds - sec) * 1e9)) };
}

/** Nanoseconds since the epoch as a decimal string; undefined when it is not one. */
export function parseNs(text: string): Timestamp | undefined {
  if (!/^[0-9]{1,30}$/.test(text)) return undefined;
  const ns = BigInt(text);
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
}

export function nsString(t: Timestamp): string {
  return (BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec)).toString();
}

export function nowTimestamp(): Timestamp {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}
