// One process at a time owns a root's filesystem core and its cache folder: a second mount of the same root
// (in either mode, or started at the same moment) fails with a message naming where the root is mounted.
//
// The lock is a unix socket bound in Linux's abstract namespace, named after the socket directory and the root.
// The kernel lets only one socket bind a name (EADDRINUSE for the next), and frees the name when its owner
// closes it or dies in any way, SIGKILL included: no stale lock to judge, no two owners. Node has no flock or
// fcntl lock; this needs no native code. The lock file beside it is information only (who holds the lock and
// where it is mounted, for the refusal message), written once the lock is held; it never decides anything.
//
// Limits: abstract names are per network namespace, so two processes in different network namespaces (e.g.
// containers sharing the node directory) do not see each other's lock; and any local user can bind a name
// first, which refuses our mount (never gives two owners).
import { createHash } from 'node:crypto';
import { readFile, realpath, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { ConfigError } from '../tahoe/node-dir.js';
import { replaceFile } from '../util/durable-file.js';
import { isAlive, selfIdentity, type ProcessIdentity } from './alive.js';
import { ensureSocketDir } from './server-process.js';

export interface RootLock {
  release(): Promise<void>;
}

/** What the lock file holds. */
interface LockInfo extends ProcessIdentity {
  mountpoint: string;
}

export function lockInfoPath(socketDir: string, rootName: string): string {
  return join(socketDir, `${rootName}.lock`);
}

/** The abstract socket name ("\0" first) of a root's lock: one per real socket directory and root name. */
async function lockName(socketDir: string, rootName: string): Promise<string> {
  const key = join(await realpath(socketDir), rootName);
  return '\0blackmatch-lock/' + createHash('sha256').update(key).digest('hex');
}

/** Binds `name`; resolves undefined if another socket holds it. */
function bind(name: string): Promise<Server | undefined> {
  return new Promise((resolve, reject) => {
    // Nobody has anything to say to a lock: a connection (someone probing it) is closed at once.
    const server = createServer((c) => c.destroy());
    server.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(undefined) : reject(e)));
    server.listen({ path: name }, () => {
      // Holding the lock must never keep the process alive.
      server.unref();
      resolve(server);
    });
  });
}

export async function lockRoot(socketDir: string, rootName: string, mountpoint: string): Promise<RootLock> {
  await ensureSocketDir(socketDir);
  const infoPath = lockInfoPath(socketDir, rootName);
  const server = await bind(await lockName(socketDir, rootName));
  if (!server) throw new ConfigError(`root "${rootName}" is already mounted ${await describeHolder(infoPath)}`);
  const info: LockInfo = { ...selfIdentity(), mountpoint };
  try {
    await replaceFile(infoPath, JSON.stringify(info));
  } catch (e) {
    server.close();
    throw e;
  }
  let released: Promise<void> | undefined;
  return {
    release: () =>
      (released ??= (async () => {
        // The file first: once the name is free, the file belongs to the next holder.
        await rm(infoPath, { force: true });
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })()),
  };
}

/**
 * "at X (pid N)" from the lock file. The holder may not have written it yet: the file may then be absent, or
 * left by an earlier holder (a dead one, or an older version's pid-only record).
 */
async function describeHolder(infoPath: string): Promise<string> {
  try {
    const info = JSON.parse(await readFile(infoPath, 'utf8')) as Partial<LockInfo>;
    const { pid, start, mountpoint } = info;
    if (typeof mountpoint === 'string' && typeof pid === 'number' && typeof start === 'string' && (await isAlive({ pid, start }))) {
      return `at ${mountpoint} (pid ${pid})`;
    }
  } catch {
    // absent or unreadable: say what we know
  }
  return `(by another process; ${infoPath} does not say where yet)`;
}
