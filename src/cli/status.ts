// `blackmatch status [--json] [MOUNTPOINT]`: every blackmatch mount on this machine (or one), each asked over its
// control socket (process/control.ts) for what the process holding its core knows: mode, root (a fingerprint),
// the gateway and its storage servers, uploads with their progress, writes waiting, failed or kept, directory
// changes being checked, repaired or kept beside as conflicts (fs/ledger.ts), the cache
// and its hit rate, recent warnings and errors. Each question is bounded: a busy or hung mount is reported as
// not answering, never waited for.
import { CommanderError } from 'commander';
import { readFile } from 'node:fs/promises';
import type { CoreStatus } from '../fs/tahoe-fs.js';
import { parseStatusArgs, type StatusArgs } from './args.js';
import type { Problem } from '../log.js';
import { askControl, canonicalMountpoint, controlSocketPath, listControlSockets, NoMountError } from '../process/control.js';
import type { GridHealth } from '../tahoe/grid-health.js';

/** What the control socket's `status` answers (see controlHandlers in main.ts). No caps: only fingerprints. */
export interface MountStatus extends CoreStatus {
  mountpoint: string;
  pid: number;
  split: boolean;
  writeBack: boolean;
  root: string;
  rootName: string;
  readOnly: boolean;
  gateway: GridHealth & { url: string };
  recentProblems: Problem[];
}

type Answer = MountStatus | { mountpoint: string; error: string };

/** Bound for one mount's answer (its process asks the gateway for at most 2 s of it). */
const ASK_TIMEOUT_MS = 5000;

export async function statusCommand(argv: string[]): Promise<number> {
  let parsed: StatusArgs;
  try {
    parsed = parseStatusArgs(argv);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode; // commander printed the help or the error
    throw e;
  }
  const { json, mountpoint } = parsed;
  const answers = mountpoint ? [await askOne(await canonicalMountpoint(mountpoint))] : await askAll();
  if (json) process.stdout.write(`${JSON.stringify(answers, null, 2)}\n`);
  else if (answers.length === 0) process.stdout.write('no blackmatch mount on this machine\n');
  else process.stdout.write(answers.map(describe).join('\n'));
  return answers.some((a) => 'error' in a) ? 1 : 0;
}

async function askOne(mountpoint: string): Promise<Answer> {
  try {
    return (await askControl(controlSocketPath(mountpoint), { op: 'status' }, ASK_TIMEOUT_MS)) as MountStatus;
  } catch (e) {
    const mounted = (await blackmatchMounts()).includes(mountpoint);
    const why = e instanceof NoMountError ? (mounted ? 'mounted, but its process does not answer (another user\'s mount, or its process is gone)' : 'not a blackmatch mount') : (e as Error).message;
    return { mountpoint, error: why };
  }
}

/** Mounts whose control socket answers, then mounts the kernel lists that none of those is. */
async function askAll(): Promise<Answer[]> {
  const answers: Answer[] = [];
  for (const socket of await listControlSockets()) {
    try {
      answers.push((await askControl(socket, { op: 'status' }, ASK_TIMEOUT_MS)) as MountStatus);
    } catch (e) {
      if (!(e instanceof NoMountError)) answers.push({ mountpoint: `(socket ${socket})`, error: (e as Error).message });
    }
  }
  for (const mountpoint of await blackmatchMounts()) {
    if (!answers.some((a) => a.mountpoint === mountpoint)) answers.push(await askOne(mountpoint));
  }
  return answers.sort((a, b) => a.mountpoint.localeCompare(b.mountpoint));
}

/** Mountpoints of blackmatch filesystems in this mount namespace (/proc/mounts escapes space, tab, newline, \). */
async function blackmatchMounts(): Promise<string[]> {
  const table = await readFile('/proc/mounts', 'utf8').catch(() => '');
  return table
    .split('\n')
    .map((line) => line.split(' '))
    .filter((f) => f[2] === 'fuse.blackmatch')
    .map((f) => f[1]!.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8))));
}

function describe(a: Answer): string {
  if ('error' in a) return `${a.mountpoint}: ${a.error}\n`;
  const lines = [`${a.mountpoint}: ${a.split ? 'split' : 'no-split'}, ${a.writeBack ? 'write-back' : 'durable'}${a.readOnly ? ', read-only' : ''}, root ${a.root} (${a.rootName}), pid ${a.pid}`];
  const row = (label: string, text: string) => lines.push(`  ${label.padEnd(9)}${text}`);
  const more = (text: string) => lines.push(`  ${''.padEnd(9)}${text}`);
  const g = a.gateway;
  row('gateway', `${g.url}: ${!g.reachable ? `NOT REACHABLE (${g.error})` : g.error ? g.error : `${g.connected} of ${g.known} storage servers connected`}`);
  if (!a.gatewayState.online) more(`offline since ${new Date(a.gatewayState.since).toISOString().slice(11, 19)}: listings and content from what is kept, the rest fails with EIO`);
  const { uploads, waiting, failed, kept, metadataUpdates } = a.writes;
  const list = (label: string, items: string[]) => items.forEach((text, i) => (i === 0 ? row(label, text) : more(text)));
  list('uploads', uploads.length === 0 ? ['none'] : uploads.map((u) => (u.sending ? `${u.path}: ${size(u.sent)} of ${size(u.bytes)} sent${u.sent >= u.bytes ? ', the grid is storing it' : ` (${percent(u.sent, u.bytes)})`}` : `${u.path}: queued (${size(u.bytes)})`)));
  if (waiting.length > 0 || metadataUpdates > 0) row('waiting', `${waiting.length} closed or new, not stored yet (${size(waiting.reduce((n, w) => n + w.bytes, 0))})${metadataUpdates > 0 ? `; ${metadataUpdates} metadata changes` : ''}`);
  if (failed.length > 0) list('failed', failed.map((f) => `${f.path}: ${f.error} (will retry)`));
  if (kept.length > 0) list('staged', kept.map((k) => `${k.path}: ${k.error}`));
  const d = a.writes.directoryChanges;
  if (d.checking > 0) row('checking', `${d.checking} directory change(s) in ${d.directories} director${d.directories === 1 ? 'y' : 'ies'}: to be seen in place once each is quiet`);
  if (d.repaired > 0) list('repaired', d.repairs.slice(-5).map((r) => `${clock(r.at)} ${r.path} (directory ${r.dir}): another gateway's update had undone it${d.repaired > 5 ? `; ${d.repaired} in all` : ''}`));
  if (d.conflicts.length > 0) list('conflict', d.conflicts.map((c) => `${clock(c.at)} ${c.path}: written on another machine at the same time; this mount's version is ${c.keptAs}`));
  const { usedBytes, maxBytes, hits, misses } = a.cache;
  const reads = hits + misses;
  row('cache', `${size(usedBytes)} of ${size(maxBytes)}; ${reads === 0 ? 'no reads yet' : `${percent(hits, reads)} of reads from the cache (${hits} of ${reads})`}; ${a.openFiles} open files`);
  if (a.directReads) row('direct', directLine(a.directReads));
  list('problems', a.recentProblems.slice(-5).map((p) => `${p.time.slice(11, 19)} ${p.level} ${p.message}${p.path ? ` ${p.path}` : ''}${p.reason ? `: ${p.reason}` : ''}`));
  return lines.join('\n') + '\n';
}

/** Downloads straight from the servers, and the reasons any others went through the gateway. */
function directLine(d: NonNullable<MountStatus['directReads']>): string {
  const via = Object.entries(d.viaGateway).filter(([, n]) => n > 0);
  const viaText = via.length === 0 ? '' : `; through the gateway: ${via.map(([why, n]) => `${n} (${DIRECT_REASONS[why] ?? why})`).join(', ')}`;
  return `${d.direct} download(s) straight from the storage servers (${size(d.directBytes)})${viaText}`;
}

const DIRECT_REASONS: Record<string, string> = {
  off: '--direct-reads off',
  'no-servers': 'no storage announcements in the node directory',
  'not-found': 'shares not found on the announced servers',
  unreachable: 'servers unreachable',
  refused: 'servers refused',
  'bad-data': 'a server sent data that did not check out',
  'given-up': 'a recent direct read of the file failed',
  internal: 'an internal error, see the log',
  malformed: 'a cap that does not parse',
};

function clock(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19);
}

function size(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = bytes;
  let u = 0;
  while (n >= 1024 && u < units.length - 1) (n /= 1024), u++;
  return u === 0 ? `${n} B` : `${n.toFixed(1)} ${units[u]}`;
}

function percent(part: number, whole: number): string {
  return whole === 0 ? '100%' : `${Math.floor((part / whole) * 100)}%`;
}
