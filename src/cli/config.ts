// Turns the command line into what a mount needs: gateway URL, root cap, the root's name, file locations.
import { createHash } from 'node:crypto';
import { realpath, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CapError, parseDirCap, type Cap } from '../tahoe/caps.js';
import { ConfigError, normalizeNodeUrl, readNodeUrl, resolveAlias } from '../tahoe/node-dir.js';
import type { Args } from './args.js';

export const DEFAULT_ALIAS = 'tahoe';

export interface MountConfig {
  nodeDir: string;
  nodeUrl: string;
  rootCap: Cap;
  /** The alias, or `uri_` + a short hash of the root cap (never the cap): names the socket and the logs. */
  rootName: string;
  cacheDir: string;
  /** The server's socket and the root's lock live here (process/server-process.ts, process/root-lock.ts). */
  socketDir: string;
}

export async function resolveConfig(args: Args): Promise<MountConfig> {
  const nodeDir = resolve(args.nodeDirectory);
  const nodeUrl = args.nodeUrl !== undefined ? normalizeNodeUrl(args.nodeUrl) : await readNodeUrl(nodeDir);
  let rootCap: Cap;
  let rootName: string;
  if (args.rootUri !== undefined) {
    try {
      rootCap = parseDirCap(args.rootUri);
    } catch (e) {
      throw new ConfigError(`bad --root-uri: ${(e as CapError).message}`);
    }
    rootName = 'uri_' + createHash('sha256').update(rootCap.text).digest('hex').slice(0, 12);
  } else {
    const alias = (args.alias ?? DEFAULT_ALIAS).replace(/:$/, '');
    if (!/^[A-Za-z0-9_.+-]+$/.test(alias)) throw new ConfigError(`bad alias name "${alias}"`);
    rootCap = await resolveAlias(nodeDir, alias);
    rootName = alias;
  }
  // A cache folder per root: each is owned by the one process that mounts that root (process/root-lock.ts).
  return { nodeDir, nodeUrl, rootCap, rootName, cacheDir: join(nodeDir, '_cache', rootName), socketDir: join(nodeDir, 'tfuse.sockets') };
}

export function logFile(config: MountConfig, role: 'client' | 'server' | 'unsplit'): string {
  return join(config.nodeDir, `tfuse.${config.rootName}.${role}.log`);
}

/** The mountpoint must be an existing directory with nothing mounted on it. */
export async function checkMountpoint(path: string, isMounted: (p: string) => Promise<boolean>): Promise<string> {
  let abs = resolve(path);
  let st;
  try {
    // The mount table names the real path: a mountpoint reached through a symlink must be resolved first.
    abs = await realpath(abs);
    st = await stat(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN') throw new ConfigError(`mountpoint ${abs} is a dead FUSE mount: run fusermount -u ${abs}`);
    throw new ConfigError(`mountpoint ${abs} does not exist`);
  }
  if (!st.isDirectory()) throw new ConfigError(`mountpoint ${abs} is not a directory`);
  if (await isMounted(abs)) throw new ConfigError(`mountpoint ${abs} is already mounted`);
  return abs;
}
