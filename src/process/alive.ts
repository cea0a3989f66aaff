// Who a process is: its pid plus when it started (boot id and start time), so that a pid the kernel has handed
// to another program since is never taken for the process a record or a lock file names.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

/** `start` is "<boot id>:<start time in clock ticks>", or '' in records written before it existed. */
export interface ProcessIdentity {
  pid: number;
  start: string;
}

let bootId: string | undefined;
let self: ProcessIdentity | undefined;

/** The boot id: start times count from boot, so the same pid and start after a reboot is another process. */
function currentBootId(): string {
  bootId ??= readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  return bootId;
}

interface Stat {
  state: string;
  starttime: string;
}

/** Fields after comm, which is in parentheses and may itself hold spaces and parentheses. */
function parseStat(text: string): Stat | undefined {
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
  const state = fields[0];
  const starttime = fields[19];
  if (!state || !starttime || !/^\d+$/.test(starttime)) return undefined;
  return { state, starttime };
}

async function statOf(pid: number): Promise<Stat | undefined> {
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return text ? parseStat(text) : undefined;
}

/** A zombie has exited: only its exit status waits to be collected. */
function exited(stat: Stat): boolean {
  return stat.state === 'Z' || stat.state === 'X';
}

export function selfIdentity(): ProcessIdentity {
  if (!self) {
    const stat = parseStat(readFileSync('/proc/self/stat', 'utf8'));
    if (!stat) throw new Error('cannot read /proc/self/stat');
    self = { pid: process.pid, start: `${currentBootId()}:${stat.starttime}` };
  }
  return self;
}

/** The identity of a running process, or undefined if there is none (or only a zombie) with that pid. */
export async function identityOf(pid: number): Promise<ProcessIdentity | undefined> {
  const stat = await statOf(pid);
  if (!stat || exited(stat)) return undefined;
  return { pid, start: `${currentBootId()}:${stat.starttime}` };
}

/** Whether the very process `id` names still runs: not a zombie, and not another program under a reused pid. */
export async function isAlive(id: ProcessIdentity): Promise<boolean> {
  const me = selfIdentity();
  if (id.pid === me.pid) return id.start === me.start; // we never write an empty start
  if (id.start === '') return false; // written by the previous version: nothing tells it from a stranger
  const now = await identityOf(id.pid);
  return now !== undefined && now.start === id.start;
}
