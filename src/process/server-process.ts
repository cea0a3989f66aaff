// The server's life as the client sees it: where its socket lives, finding a live or stale one, launching
// it as a daemon, waiting for it to answer, and asking it to stop.
import { spawn } from 'node:child_process';
import { chmod, mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { RpcClient } from '../rpc/client.js';
import { ConfigError } from '../tahoe/node-dir.js';
import { identityOf, isAlive } from './alive.js';

/** sun_path holds 108 bytes on Linux, the terminating NUL included. */
const MAX_SOCKET_PATH_BYTES = 107;
const POLL_MS = 50;

/** A root's socket: `rootName` in the directory of sockets (kept private to the user, see ensureSocketDir). */
export function socketPathFor(socketDir: string, rootName: string): string {
  const path = join(socketDir, rootName);
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new ConfigError(`socket path ${path} is ${bytes} bytes, over the ${MAX_SOCKET_PATH_BYTES} a unix socket allows: use a shorter --node-directory or alias`);
  }
  return path;
}

export async function ensureSocketDir(socketDir: string): Promise<void> {
  await mkdir(socketDir, { recursive: true, mode: 0o700 });
  await chmod(socketDir, 0o700);
}

/**
 * Makes the socket path ours: a live server there means this root is already mounted (error naming where);
 * a socket nobody answers on was left by a dead server and is removed.
 */
export async function claimSocket(socketPath: string, rootName: string): Promise<void> {
  if (!(await stat(socketPath).catch(() => undefined))) return;
  let client: RpcClient | undefined;
  try {
    client = await RpcClient.connect(socketPath, 3_000);
  } catch {
    await rm(socketPath, { force: true });
    return;
  }
  try {
    const info = await client.info();
    throw new ConfigError(`root "${rootName}" is already mounted at ${info.mountpoint} (server pid ${info.pid})`);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`a server for root "${rootName}" answers at ${socketPath} but not as blackmatch: ${(e as Error).message}`);
  } finally {
    client.close();
  }
}

/**
 * Starts the server: the same program and arguments plus --server, in a new session, detached from our
 * terminal, with its output going to its log (so a startup error can be read back from there).
 */
export async function launchServer(args: string[], env: Record<string, string>, cwd: string, logPath: string): Promise<{ exited: Promise<number | null> }> {
  const log = await open(logPath, 'a', 0o600);
  try {
    const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...args, '--server'], {
      detached: true,
      cwd,
      stdio: ['ignore', log.fd, log.fd],
      env: { ...process.env, ...env, BLACKMATCH_REPORT_TO_PARENT: '' },
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.unref();
    return { exited };
  } finally {
    await log.close();
  }
}

/** Waits, bounded, until the server answers on its socket; fails with the server's own startup error. */
export async function waitForServer(socketPath: string, exited: Promise<number | null>, logPath: string, timeoutMs: number): Promise<RpcClient> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await RpcClient.connect(socketPath, 2_000);
    } catch {
      // not listening yet
    }
    if (gone) throw new Error(`server failed to start: ${await startupError(logPath)}`);
    if (Date.now() > deadline) throw new Error(`server did not start within ${timeoutMs / 1000} s: ${await startupError(logPath)}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** The server prints a failure to start as one "blackmatch: ..." line into its log. */
async function startupError(logPath: string): Promise<string> {
  const text = await readFile(logPath, 'utf8').catch(() => '');
  const lines = text.split('\n').filter((l) => l.startsWith('blackmatch: '));
  return lines.length > 0 ? lines[lines.length - 1]!.slice('blackmatch: '.length) : `no error in ${logPath}`;
}

const SHUTDOWN_WAIT_MS = 180_000;

/** --server-shutdown: asks the running server to unmount and exit, and waits until it has. */
export async function shutdownServer(socketPath: string, rootName: string): Promise<string> {
  let client: RpcClient;
  try {
    client = await RpcClient.connect(socketPath, 3_000);
  } catch {
    throw new ConfigError(`no blackmatch server is running for "${rootName}" (nothing answers at ${socketPath})`);
  }
  const info = await client.info();
  // Taken while it surely runs: a pid alone could be reused by another program before we look again.
  const server = await identityOf(info.pid);
  await client.shutdown();
  client.close();
  // Past the last try of pending write-back stores (2 min at most), with a margin for the rest of the exit.
  const deadline = Date.now() + SHUTDOWN_WAIT_MS;
  while (server && (await isAlive(server))) {
    if (Date.now() > deadline) throw new Error(`server pid ${info.pid} did not exit within ${SHUTDOWN_WAIT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, POLL_MS * 2));
  }
  return `stopped the server for "${rootName}" (mounted at ${info.mountpoint})`;
}
