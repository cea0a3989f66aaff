// Child processes for the tests of process identity and the root lock: strangers, zombies, lock takers.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const LOCK_TAKER = join(dirname(fileURLToPath(import.meta.url)), 'lock-taker.js');

/** Resolves once `child` has exited; rejects after `boundMs`. */
export function exitOf(child: ChildProcess, boundMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pid ${child.pid} did not exit within ${boundMs} ms`)), boundMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export async function kill(child: ChildProcess): Promise<void> {
  child.kill('SIGKILL');
  await exitOf(child);
}

function spawned(child: ChildProcess): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    child.once('spawn', () => resolve(child));
    child.once('error', reject);
  });
}

/** Another program whose command line contains "main.js", as a reused pid could be. */
export async function strangerWithMainJs(): Promise<ChildProcess> {
  const child = await spawned(spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'main.js'], { stdio: 'ignore' }));
  const cmdline = await readFile(`/proc/${child.pid}/cmdline`, 'utf8');
  if (!cmdline.includes('main.js')) throw new Error(`unexpected command line ${cmdline}`);
  return child;
}

/** A program run from `executable` (whose name may hold spaces and parentheses), sleeping a minute. */
export function sleeper(executable = 'sleep'): Promise<ChildProcess> {
  return spawned(spawn(executable, ['60'], { stdio: 'ignore' }));
}

/**
 * A zombie: a shell that starts `sleep` in the background and then becomes a `sleep` itself, which never reaps
 * its child. Returns the parent (to kill at the end) and the child's pid; kill the child to make the zombie.
 */
export async function parentOfUnreaped(): Promise<{ parent: ChildProcess; childPid: number }> {
  const parent = spawn('sh', ['-c', 'sleep 60 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const line = await firstLine(parent);
  return { parent, childPid: Number(line) };
}

async function firstLine(child: ChildProcess, boundMs = 10_000): Promise<string> {
  const lines = createInterface({ input: child.stdout! });
  try {
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no output from pid ${child.pid} within ${boundMs} ms`)), boundMs);
      lines.once('line', (l) => {
        clearTimeout(timer);
        resolve(l);
      });
    });
  } finally {
    lines.close();
  }
}

/** Polls `check` every 20 ms until it holds; fails after `boundMs`. */
export async function until(what: string, check: () => Promise<boolean>, boundMs = 10_000): Promise<void> {
  const deadline = Date.now() + boundMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${boundMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface LockTaker {
  child: ChildProcess;
  /** "won", or the refusal message. */
  outcome: Promise<string>;
  /** Lets all takers call lockRoot at the same moment. */
  go(): void;
  /** Releases the lock (if won) and exits. */
  finish(): Promise<void>;
}

/**
 * A process that calls lockRoot(socketDir, rootName, mountpoint) once told to go (see lock-taker.ts); with
 * `keep`, it exits at the end without releasing the lock.
 */
export async function lockTaker(socketDir: string, rootName: string, mountpoint: string, keep = false): Promise<LockTaker> {
  const args = [LOCK_TAKER, socketDir, rootName, mountpoint, ...(keep ? ['keep'] : [])];
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const next = (): Promise<string> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`lock taker ${child.pid} said nothing within 20 s`)), 20_000);
    lines.once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
  });
  const ready = await next();
  if (ready !== 'ready') throw new Error(`lock taker: ${ready}`);
  const outcome = next();
  outcome.catch(() => undefined);
  return {
    child,
    outcome,
    go: () => child.stdin!.write('go\n'),
    finish: async () => {
      child.stdin!.end();
      await exitOf(child);
      lines.close();
    },
  };
}
