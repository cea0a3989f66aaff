// Parsing and validation of Tahoe capabilities (allmydata/uri.py). Caps are secrets: use redact() to log one.
import { createHash } from 'node:crypto';
import { decodeBase32, encodeBase32 } from './base32.js';
import { MUTABLE_READKEY_TAG, MUTABLE_STORAGEINDEX_TAG, storageIndexHash, taggedHash } from './hashes.js';

export type CapKind =
  | 'CHK' | 'LIT' | 'SSK' | 'SSK-RO' | 'MDMF' | 'MDMF-RO'
  | 'DIR2' | 'DIR2-RO' | 'DIR2-CHK' | 'DIR2-LIT' | 'DIR2-MDMF' | 'DIR2-MDMF-RO';

export interface Cap {
  readonly text: string;
  readonly kind: CapKind;
  readonly isDirectory: boolean;
  /** Whether the holder may change what the cap names (a writable mutable file or directory). */
  readonly writable: boolean;
  /** Immutable caps name content that never changes: it may be cached without revalidation. */
  readonly immutable: boolean;
  /** Storage index in Tahoe's base32, the name of the content on the grid; undefined for literal caps. */
  readonly storageIndex?: string;
  /** File size when the cap itself carries it (CHK, LIT). */
  readonly size?: number;
  /** The file's bytes for a literal cap: they live inside the cap, no request needed. */
  readonly literalData?: Buffer;
}

export class CapError extends Error {}

const B32 = '[a-z2-7]+';
const NUM = '[0-9]+';
const PATTERNS: Array<[CapKind, RegExp]> = [
  ['CHK', new RegExp(`^URI:CHK:(${B32}):(${B32}):(${NUM}):(${NUM}):(${NUM})$`)],
  ['LIT', new RegExp(`^URI:LIT:([a-z2-7]*)$`)],
  ['SSK', new RegExp(`^URI:SSK:(${B32}):(${B32})$`)],
  ['SSK-RO', new RegExp(`^URI:SSK-RO:(${B32}):(${B32})$`)],
  ['MDMF', new RegExp(`^URI:MDMF:(${B32}):(${B32})(?::.*)?$`)],
  ['MDMF-RO', new RegExp(`^URI:MDMF-RO:(${B32}):(${B32})(?::.*)?$`)],
  ['DIR2', new RegExp(`^URI:DIR2:(${B32}):(${B32})$`)],
  ['DIR2-RO', new RegExp(`^URI:DIR2-RO:(${B32}):(${B32})$`)],
  ['DIR2-CHK', new RegExp(`^URI:DIR2-CHK:(${B32}):(${B32}):(${NUM}):(${NUM}):(${NUM})$`)],
  ['DIR2-LIT', new RegExp(`^URI:DIR2-LIT:([a-z2-7]*)$`)],
  ['DIR2-MDMF', new RegExp(`^URI:DIR2-MDMF:(${B32}):(${B32})(?::.*)?$`)],
  ['DIR2-MDMF-RO', new RegExp(`^URI:DIR2-MDMF-RO:(${B32}):(${B32})(?::.*)?$`)],
];


function key128(b32: string, what: string): Buffer {
  const key = decodeBase32(b32);
  if (!key || key.length !== 16) throw new CapError(`malformed ${what} key`);
  return key;
}

function checkHash256(b32: string): void {
  const hash = decodeBase32(b32);
  if (!hash || hash.length !== 32) throw new CapError('malformed cap fingerprint');
}

/**
 * What a cap lets its holder do, from its kind alone: no key is decoded and no hash computed, so it is cheap
 * enough for every entry of a large listing. Undefined for text that is not a cap of a known kind and shape.
 */
export function capAccess(text: string): { kind: CapKind; writable: boolean; immutable: boolean } | undefined {
  const trimmed = text.trim();
  for (const [kind, re] of PATTERNS) {
    if (!re.test(trimmed)) continue;
    const immutable = kind === 'CHK' || kind === 'LIT' || kind === 'DIR2-CHK' || kind === 'DIR2-LIT';
    return { kind, writable: !immutable && !kind.endsWith('-RO'), immutable };
  }
  return undefined;
}

export function parseCap(text: string): Cap {
  const trimmed = text.trim();
  for (const [kind, re] of PATTERNS) {
    const m = re.exec(trimmed);
    if (!m) continue;
    const isDirectory = kind.startsWith('DIR2');
    const base = { text: trimmed, kind, isDirectory };
    switch (kind) {
      case 'LIT':
      case 'DIR2-LIT': {
        const data = decodeBase32(m[1]!);
        if (!data) throw new CapError('malformed literal cap');
        return { ...base, writable: false, immutable: true, size: data.length, literalData: data };
      }
      case 'CHK':
      case 'DIR2-CHK': {
        const key = key128(m[1]!, 'CHK');
        checkHash256(m[2]!);
        const [k, n, size] = [Number(m[3]), Number(m[4]), Number(m[5])];
        if (!(k >= 1 && k <= n && n <= 256) || !Number.isSafeInteger(size)) throw new CapError('malformed CHK parameters');
        const si = encodeBase32(storageIndexHash(key));
        return { ...base, writable: false, immutable: true, storageIndex: si, size };
      }
      default: {
        // Mutable (SDMF/MDMF) files and directories: writekey -> readkey -> storage index.
        const key = key128(m[1]!, kind);
        checkHash256(m[2]!);
        const writable = !kind.endsWith('-RO');
        const readKey = writable ? taggedHash(MUTABLE_READKEY_TAG, key, 16) : key;
        const si = encodeBase32(taggedHash(MUTABLE_STORAGEINDEX_TAG, readKey, 16));
        return { ...base, writable, immutable: false, storageIndex: si };
      }
    }
  }
  throw new CapError(describeUnknown(trimmed));
}

const READ_ONLY_KIND: Partial<Record<CapKind, CapKind>> = { SSK: 'SSK-RO', MDMF: 'MDMF-RO', DIR2: 'DIR2-RO', 'DIR2-MDMF': 'DIR2-MDMF-RO' };

/**
 * The read cap of a cap (what `tahoe ls --json` shows as ro_uri): a write cap's read key is a hash of its
 * write key, with the same fingerprint; any other cap is its own read cap.
 */
export function readOnlyCap(text: string): string {
  const cap = parseCap(text);
  const roKind = READ_ONLY_KIND[cap.kind];
  if (!roKind) return cap.text;
  const [, , writeKey, fingerprint] = cap.text.split(':');
  const readKey = taggedHash(MUTABLE_READKEY_TAG, key128(writeKey!, cap.kind), 16);
  return `URI:${roKind}:${encodeBase32(readKey)}:${fingerprint}`;
}

function describeUnknown(text: string): string {
  if (!text.startsWith('URI:')) return 'not a Tahoe capability (it should start with "URI:")';
  const kind = text.split(':')[1] ?? '';
  return PATTERNS.some(([k]) => k === kind) ? `malformed ${kind} capability` : `unsupported capability kind "${kind}"`;
}

export function parseDirCap(text: string): Cap {
  const cap = parseCap(text);
  if (!cap.isDirectory) throw new CapError(`a ${cap.kind} capability names a file, not a directory`);
  return cap;
}

/**
 * A short, stable fingerprint of a cap for logs and messages: its kind plus a hash prefix.
 * Never the cap itself, which grants access to whoever reads it.
 */
export function redact(capText: string): string {
  const kind = /^URI:([A-Za-z0-9-]+):/.exec(capText)?.[1] ?? '?';
  const digest = createHash('sha256').update(capText).digest('hex').slice(0, 10);
  return `${kind}#${digest}`;
}
