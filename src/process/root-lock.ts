// One process at a time owns a root's filesystem core and its cache folder: a second mount of the same root
// (in either mode, or started at the same moment) fails with a message naming where the root is mounted.
import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { MountConfig } from '../cli/config.js';
import { ConfigError } from '../tahoe/node-dir.js';
import { processAlive } from './alive.js';
import { ensureSocketDir, socketDir } from './server-process.js';

export interface RootLock {
  release(): Promise<void>;
}

export async function lockRoot(config: MountConfig, mountpoint: string): Promise<RootLock> {
  await ensureSocketDir(config);
  const path = join(socketDir(config), `${config.rootName}.lock`);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      // O_EXCL: of two processes starting together, exactly one creates it.
      const fh = await open(path, 'wx', 0o600);
      await fh.writeFile(JSON.stringify({ pid: process.pid, mountpoint }));
      await fh.close();
      return { release: () => rm(path, { force: true }) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let holder: { pid?: number; mountpoint?: string } = {};
    try {
      holder = JSON.parse(await readFile(path, 'utf8')) as typeof holder;
    } catch {
      // being written right now, or torn by a crash: look again
      await new Promise((r) => setTimeout(r, 100));
    }
    if (typeof holder.pid === 'number' && (await processAlive(holder.pid))) {
      throw new ConfigError(`root "${config.rootName}" is already mounted at ${holder.mountpoint ?? '?'} (pid ${holder.pid})`);
    }
    if (typeof holder.pid === 'number' || attempt > 0) await rm(path, { force: true }); // left by a dead process
  }
  throw new ConfigError(`cannot take the lock ${path} for root "${config.rootName}"`);
}
