// The storage servers a gateway knows, as its node directory records them, and their order for one file.
// Owns the announcements read from `private/introducer_*_cache.yaml` and `private/servers.yaml` (re-read when
// a file changes or a server is not found), one StorageServer per announced NURL, and each server's rest after
// it failed to connect. `servers` and `rest` change only in this class, each change complete before an await.
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { decodeBase32 } from '../tahoe/base32.js';
import { parseNurl, StorageServer, type StorageServerOptions } from './gbs-client.js';

export interface Announcement {
  /** The server id (`v0-<base32 pubkey>`), stable across restarts. */
  readonly serverId: string;
  readonly nickname: string;
  readonly nurl: string;
  readonly permutationSeed: Buffer;
}

/**
 * The storage announcements in one YAML text: a list of `{ann, key_s}` (an introducer cache,
 * allmydata/introducer/client.py) or `{storage: {serverId: {ann}}}` (servers.yaml, docs/configuration.rst).
 * Entries without an HTTP storage NURL are left out: those servers speak only Foolscap.
 */
export function parseAnnouncements(text: string): Announcement[] {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch {
    return [];
  }
  const entries: Array<{ serverId: unknown; ann: unknown }> = [];
  if (Array.isArray(doc)) {
    for (const e of doc) if (e && typeof e === 'object') entries.push({ serverId: (e as Record<string, unknown>).key_s, ann: (e as Record<string, unknown>).ann });
  } else if (doc && typeof doc === 'object' && (doc as Record<string, unknown>).storage && typeof (doc as Record<string, unknown>).storage === 'object') {
    for (const [serverId, v] of Object.entries((doc as { storage: Record<string, unknown> }).storage)) {
      entries.push({ serverId, ann: v && typeof v === 'object' ? (v as Record<string, unknown>).ann : undefined });
    }
  }
  const out: Announcement[] = [];
  for (const { serverId, ann } of entries) {
    if (typeof serverId !== 'string' || !ann || typeof ann !== 'object') continue;
    const a = ann as Record<string, unknown>;
    if (a['service-name'] !== undefined && a['service-name'] !== 'storage') continue;
    const nurls = a['anonymous-storage-NURLs'];
    const nurl = Array.isArray(nurls) ? nurls.find((n): n is string => typeof n === 'string' && parseNurl(n) !== undefined) : undefined;
    if (!nurl) continue;
    const seed = permutationSeed(serverId, a['permutation-seed-base32']);
    const nickname = typeof a.nickname === 'string' && a.nickname ? a.nickname : serverId.slice(0, 8);
    out.push({ serverId, nickname, nurl, permutationSeed: seed });
  }
  return out;
}

/** The seed as Tahoe derives it (allmydata/storage_client.py:652-666). */
function permutationSeed(serverId: string, base32Seed: unknown): Buffer {
  if (typeof base32Seed === 'string') {
    const seed = decodeBase32(base32Seed.toLowerCase());
    if (seed) return seed;
  }
  if (/^v0-[0-9a-zA-Z]{52}$/.test(serverId)) {
    const seed = decodeBase32(serverId.slice(3).toLowerCase());
    if (seed) return seed;
  }
  return createHash('sha256').update(serverId).digest();
}

/** Servers in the order Tahoe asks them for a file: sha1(storage index + seed) (allmydata/util/hashutil.py:305). */
export function permutedOrder<T extends { readonly permutationSeed: Buffer }>(storageIndex: Buffer, servers: readonly T[]): T[] {
  const keyed = servers.map((s) => ({ s, key: createHash('sha1').update(storageIndex).update(s.permutationSeed).digest() }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  return keyed.map((k) => k.s);
}

export interface KnownServer {
  readonly serverId: string;
  readonly permutationSeed: Buffer;
  readonly client: StorageServer;
}

/** Connections opened to each server ahead of the first read. */
const WARM_CONNECTIONS = 4;
/** How long a server that could not be reached is passed over before it is tried again. */
const REST_MS = 30_000;
/** A re-read of the announcements at most this often, however many files miss a server. */
const REREAD_MIN_MS = 5_000;

export class StorageServers {
  private servers = new Map<string, KnownServer>();
  private readonly rest = new Map<string, number>();
  private sources = '';
  private readAt = 0;
  private reading: Promise<void> | null = null;

  constructor(
    private readonly nodeDir: string,
    private readonly clientOptions: StorageServerOptions = {},
  ) {}

  /** Every server with a NURL, in the file's permuted order, those resting after a failure last. */
  async forFile(storageIndex: Buffer): Promise<KnownServer[]> {
    await this.refresh(false);
    const now = Date.now();
    const ordered = permutedOrder(storageIndex, [...this.servers.values()]);
    const awake = ordered.filter((s) => (this.rest.get(s.serverId) ?? 0) <= now);
    return [...awake, ...ordered.filter((s) => !awake.includes(s))];
  }

  /** Whether any server has a NURL (after a re-read if one is due). */
  async any(): Promise<boolean> {
    await this.refresh(false);
    return this.servers.size > 0;
  }

  /** Connects to every server ahead of the first read (TLS and its check cost round trips); says which failed. */
  async warm(): Promise<Array<{ name: string; error: string }>> {
    await this.refresh(false);
    const all = [...this.servers.values()];
    // Several at once: a read asks one server for several things at once (header, hash region, blocks), and
    // each connection costs two round trips before its first request.
    const results = await Promise.allSettled(all.map((s) => Promise.all(Array.from({ length: WARM_CONNECTIONS }, () => s.client.ping()))));
    return results.flatMap((r, i) => (r.status === 'rejected' ? [{ name: all[i]!.client.name, error: (r.reason as Error).message }] : []));
  }

  /** A server could not be reached: others are asked first for a while. */
  unreachable(serverId: string): void {
    this.rest.set(serverId, Date.now() + REST_MS);
  }

  reachable(serverId: string): void {
    this.rest.delete(serverId);
  }

  /**
   * Re-reads the announcements if one of their files changed; at most every REREAD_MIN_MS, unless `force` (a
   * share found nowhere: a server may have moved) and the last read is older than a second.
   */
  async refresh(force: boolean): Promise<void> {
    if (this.reading) return this.reading;
    const age = Date.now() - this.readAt;
    if (this.readAt && age < (force ? 1_000 : REREAD_MIN_MS)) return;
    this.reading = this.read().finally(() => {
      this.reading = null;
      this.readAt = Date.now();
    });
    return this.reading;
  }

  private async read(): Promise<void> {
    const files = await announcementFiles(this.nodeDir);
    const stamp = files.map((f) => `${f.path}:${f.mtimeMs}:${f.size}`).join('|');
    if (stamp === this.sources && this.readAt) return;
    const next = new Map<string, KnownServer>();
    for (const f of files) {
      const text = await readFile(f.path, 'utf8').catch(() => '');
      for (const a of parseAnnouncements(text)) {
        if (next.has(a.serverId)) continue;
        const old = this.servers.get(a.serverId);
        const nurl = parseNurl(a.nurl)!;
        if (old && old.client.nurl.spkiHash.equals(nurl.spkiHash) && old.client.nurl.host === nurl.host && old.client.nurl.port === nurl.port && old.client.nurl.swissnum === nurl.swissnum) {
          next.set(a.serverId, old);
        } else {
          next.set(a.serverId, { serverId: a.serverId, permutationSeed: a.permutationSeed, client: new StorageServer(nurl, a.nickname, this.clientOptions) });
        }
      }
    }
    for (const [id, s] of this.servers) if (next.get(id) !== s) void s.client.close();
    this.servers = next;
    this.sources = stamp;
  }

  async close(): Promise<void> {
    const all = [...this.servers.values()];
    this.servers = new Map();
    await Promise.all(all.map((s) => s.client.close()));
  }
}

async function announcementFiles(nodeDir: string): Promise<Array<{ path: string; mtimeMs: number; size: number }>> {
  const dir = join(nodeDir, 'private');
  const names = await readdir(dir).catch(() => [] as string[]);
  const wanted = names.filter((n) => /^introducer_.+_cache\.yaml$/.test(n) || n === 'servers.yaml').sort();
  const out: Array<{ path: string; mtimeMs: number; size: number }> = [];
  for (const n of wanted) {
    const st = await stat(join(dir, n)).catch(() => null);
    if (st?.isFile()) out.push({ path: join(dir, n), mtimeMs: st.mtimeMs, size: st.size });
  }
  return out;
}
