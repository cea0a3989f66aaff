// The load of "two machines, one directory" (test/system/shared-dir.test.ts, the soak and the bench): what one
// mount does in the shared directory, what each of its calls answered, and the check, through a gateway's web
// API, that the directory holds every file a close() called stored and none that a mount removed.
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { mkdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mkdirCap } from '../../grid/local-grid.js';
import { eventually, runCli, TestMount, type Mode } from '../../grid/mount.js';

export interface WorkloadResult {
  tag: string;
  /** Path (relative to the shared directory) to the sha256 of its bytes: each one's close() returned 0. */
  stored: Map<string, string>;
  /** Names the mount removed (or renamed away) with success: they must stay away. */
  removed: Set<string>;
  /** Names of both mounts' one shared file, with the sha256 of what this mount stored there. */
  contested: Map<string, string>;
  /** What failed, for the message: a failure is allowed (it was reported), a loss is not. */
  failures: string[];
}

export const CONTESTED = 'both.txt';
const FILES = 30;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** One mount's part: runs in dir (the shared directory on that mount); every name carries tag. */
export async function sharedWorkload(dir: string, tag: string): Promise<WorkloadResult> {
  const r: WorkloadResult = { tag, stored: new Map(), removed: new Set(), contested: new Map(), failures: [] };
  const attempt = async (what: string, f: () => Promise<void>): Promise<boolean> => {
    try {
      await f();
      return true;
    } catch (e) {
      r.failures.push(`${what}: ${(e as Error).message}`);
      return false;
    }
  };
  const mine = Buffer.from(`${tag} was here ${randomBytes(8).toString('hex')}\n`);
  if (await attempt(CONTESTED, () => writeFile(join(dir, CONTESTED), mine))) r.contested.set(CONTESTED, sha(mine));
  const subdirs: string[] = [];
  for (const d of [`${tag}-d1`, `${tag}-d2`]) if (await attempt(`mkdir ${d}`, () => mkdir(join(dir, d)))) subdirs.push(d);
  for (let i = 0; i < FILES; i++) {
    const data = randomBytes(randomInt(1024, 23 * 1024));
    const inSub = i % 5 === 4 && subdirs.length > 0 ? subdirs[i % subdirs.length]! : '';
    const name = join(inSub, `${tag}-f${i}.bin`);
    const viaRename = i % 3 === 2;
    const ok = viaRename
      ? await attempt(`copy-then-rename ${name}`, async () => {
          const tmp = join(inSub, `.${tag}-f${i}.tmp`);
          await writeFile(join(dir, tmp), data);
          await rename(join(dir, tmp), join(dir, name));
          r.removed.add(tmp);
        })
      : await attempt(`write ${name}`, () => writeFile(join(dir, name), data));
    if (ok) r.stored.set(name, sha(data));
    if (i % 6 === 5) {
      const gone = `${tag}-gone${i}`;
      const made = await attempt(`write ${gone}`, () => writeFile(join(dir, gone), 'soon gone'));
      if (made && (await attempt(`unlink ${gone}`, () => unlink(join(dir, gone))))) r.removed.add(gone);
    }
  }
  return r;
}

interface Entry {
  type: string;
  cap: string;
  metadata: Record<string, unknown>;
}

async function list(gatewayUrl: string, dirUrl: string): Promise<Map<string, Entry>> {
  const res = await fetch(`${gatewayUrl}uri/${dirUrl}?t=json`, { signal: AbortSignal.timeout(60_000) });
  if (!res.ok) throw new Error(`listing ${dirUrl.slice(0, 20)}: HTTP ${res.status}`);
  const [, body] = (await res.json()) as [string, { children: Record<string, [string, { ro_uri?: string; rw_uri?: string; metadata?: Record<string, unknown> }]> }];
  const out = new Map<string, Entry>();
  for (const [name, [type, info]] of Object.entries(body.children)) {
    out.set(name, { type, cap: info.rw_uri ?? info.ro_uri ?? '', metadata: info.metadata ?? {} });
  }
  return out;
}

async function contentSha(gatewayUrl: string, cap: string): Promise<string> {
  const res = await fetch(`${gatewayUrl}uri/${encodeURIComponent(cap)}`, { signal: AbortSignal.timeout(60_000) });
  if (!res.ok) throw new Error(`GET: HTTP ${res.status}`);
  return sha(Buffer.from(await res.arrayBuffer()));
}

/** Every way the directory, as gatewayUrl lists it now, breaks what the mounts were told: empty when none. */
export async function checkShared(gatewayUrl: string, rootCap: string, dirName: string, results: WorkloadResult[]): Promise<string[]> {
  const problems: string[] = [];
  const top = `${encodeURIComponent(rootCap)}/${encodeURIComponent(dirName)}`;
  const listings = new Map<string, Map<string, Entry>>([['', await list(gatewayUrl, top)]]);
  const listingOf = async (sub: string): Promise<Map<string, Entry> | undefined> => {
    if (!listings.has(sub)) {
      const entry = listings.get('')!.get(sub);
      listings.set(sub, entry?.type === 'dirnode' ? await list(gatewayUrl, encodeURIComponent(entry.cap)) : new Map());
    }
    return listings.get(sub);
  };
  const split = (path: string): [string, string] => {
    const i = path.lastIndexOf('/');
    return i < 0 ? ['', path] : [path.slice(0, i), path.slice(i + 1)];
  };
  for (const r of results) {
    for (const [path, want] of r.stored) {
      const [sub, name] = split(path);
      const entry = (await listingOf(sub))?.get(name);
      if (!entry) problems.push(`${path}: lost (its close() returned 0)`);
      else if ((await contentSha(gatewayUrl, entry.cap)) !== want) problems.push(`${path}: other bytes than were stored`);
    }
    for (const path of r.removed) {
      const [sub, name] = split(path);
      if ((await listingOf(sub))?.has(name)) problems.push(`${path}: back after it was removed`);
    }
  }
  // The contested name: each version stored is kept, at the name or beside it, unless the winner replaced it on purpose.
  const top0 = listings.get('')!;
  const kept = new Set<string>();
  for (const [name, entry] of top0) {
    if (name === CONTESTED || name.startsWith(`${CONTESTED} (conflict `)) kept.add(await contentSha(gatewayUrl, entry.cap));
  }
  const winner = top0.get(CONTESTED);
  const replacedOnPurpose = winner !== undefined && typeof winner.metadata['replaces'] === 'string';
  for (const r of results) {
    const want = r.contested.get(CONTESTED);
    if (want && !kept.has(want) && !replacedOnPurpose) problems.push(`${CONTESTED} as ${r.tag} stored it: lost`);
  }
  return problems;
}

export interface SharedMount {
  mode: Mode;
  writeBack: boolean;
}

export interface RoundResult {
  /** What the directory, listed through each gateway after both syncs, breaks of what the mounts were told. */
  problems: string[];
  /** Calls that failed (and said so): allowed. */
  failures: string[];
  /** Each mount's sync: exit code and output. */
  syncs: Array<{ code: number; output: string }>;
  /** From the start of the load until both syncs returned (stored and checked). */
  ms: number;
  /** Directory changes the mounts' ledgers made again (each one another gateway had undone). */
  repaired: number;
}

const SYNC_BOUND_S = 300;

/**
 * One round of two machines, one directory: a fresh directory cap mounted twice, mount i through gatewayUrls[i],
 * the load on both at once, `blackmatch sync` on both, then the check through every gateway. Unmounts both.
 */
export async function sharedRound(gatewayUrls: readonly string[], mounts: [SharedMount, SharedMount], settleTime: number | 'default' = 'default'): Promise<RoundResult> {
  const rootCap = await mkdirCap(gatewayUrls[0]!);
  const live: TestMount[] = [];
  try {
    for (const [i, x] of mounts.entries()) {
      live.push(await TestMount.start({ mode: x.mode, gatewayUrl: gatewayUrls[i]!, rootCap, settleTime, extraArgs: x.writeBack ? ['--write-back'] : [] }));
    }
    await live[0]!.watch('mkdir of the shared directory', () => mkdir(live[0]!.path('shared')));
    await eventually('the other mount sees the shared directory', () => stat(live[1]!.path('shared')).then(() => true, () => false));
    const started = Date.now();
    const results = await Promise.all(live.map((m, i) => m.watch(`the load of mount ${i}`, () => sharedWorkload(m.path('shared'), `m${i}`), 600_000)));
    const syncs = await Promise.all(
      live.map(async (m) => {
        const r = await runCli(['sync', '--timeout', String(SYNC_BOUND_S), m.mountpoint], (SYNC_BOUND_S + 30) * 1000);
        return { code: r.code, output: r.stdout + r.stderr };
      }),
    );
    const ms = Date.now() - started;
    let repaired = 0;
    for (const m of live) {
      const s = await runCli(['status', '--json', m.mountpoint]);
      const [answer] = JSON.parse(s.stdout || '[]') as Array<{ writes?: { directoryChanges?: { repaired: number } } }>;
      repaired += answer?.writes?.directoryChanges?.repaired ?? 0;
    }
    const problems: string[] = [];
    for (const url of gatewayUrls) for (const p of await checkShared(url, rootCap, 'shared', results)) problems.push(`through ${url}: ${p}`);
    return { problems, failures: results.flatMap((r) => r.failures.map((f) => `${r.tag}: ${f}`)), syncs, ms, repaired };
  } finally {
    await Promise.all(live.map((m) => m.cleanup()));
  }
}
