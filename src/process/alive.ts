// Whether a blackmatch process still runs, by its pid.
import { readFile } from 'node:fs/promises';

/**
 * A zombie (killed, not yet reaped) counts as dead, and so does a pid now used by some other program (our
 * processes carry the title "blackmatch ..."; see cli/main.ts).
 */
export async function processAlive(pid: number): Promise<boolean> {
  if (pid === process.pid) return true;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  if (!stat || state === 'Z' || state === 'X') return false;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.startsWith('blackmatch') || cmdline.includes('main.js');
}
