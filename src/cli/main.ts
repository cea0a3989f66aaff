#!/usr/bin/env node
// Entry point: blackmatch [options] MOUNTPOINT. See README.md for the modes and their processes.
import { readFileSync } from 'node:fs';
import { CommanderError } from 'commander';
import { ContentCache } from '../cache/content-cache.js';
import { TahoeFs } from '../fs/tahoe-fs.js';
import { isMounted, mount } from '../fuse/adapter.js';
import { createLogger, type Logger } from '../log.js';
import { hasWaitingParent, reportToParent, runDetached } from '../process/daemon.js';
import { scrubCaps, TahoeClient } from '../tahoe/client.js';
import { redact } from '../tahoe/caps.js';
import { parseArgs, type Args } from './args.js';
import { checkMountpoint, logFile, resolveConfig, type MountConfig } from './config.js';

/** Bound for the background child to mount and report: covers listing the root through a slow gateway. */
const DETACHED_START_TIMEOUT_MS = 90_000;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv, version());
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode; // commander printed help, version or the error
    throw e;
  }
  const config = await resolveConfig(args);
  const mountpoint = await checkMountpoint(args.mountpoint!, isMounted);
  if (!args.foreground) {
    await runDetached([...argv, '-f'], DETACHED_START_TIMEOUT_MS);
    return 0;
  }
  return runUnsplit(args, config, mountpoint);
}

/** The whole filesystem in this process: FUSE adapter directly over the core. */
async function runUnsplit(args: Args, config: MountConfig, mountpoint: string): Promise<number> {
  const log = createLogger(logFile(config, 'unsplit'), args.logLevel);
  log.info({ root: redact(config.rootCap.text), rootName: config.rootName, mountpoint, nodeUrl: config.nodeUrl }, 'starting');
  const client = new TahoeClient(config.nodeUrl);
  const cache = new ContentCache(config.cacheDir, client, log);
  await cache.init();
  const core = new TahoeFs({ client, cache, rootCap: config.rootCap, cacheTimeoutMs: args.cacheTimeout * 1000, log });
  await core.start();
  const mounted = await mount(mountpoint, core, { fsname: `blackmatch:${config.rootName}`, options: args.fuseOptions, log });
  log.info({ mountpoint }, 'mounted');
  reportToParent({ ready: true });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      log.info({ signal }, 'unmounting');
      void mounted.unmount();
    });
  }
  await mounted.gone;
  log.info('unmounted; finishing uploads');
  await core.shutdown();
  await client.close();
  log.info('exiting');
  await flushLog(log);
  return 0;
}

function flushLog(log: Logger): Promise<void> {
  return new Promise((resolve) => log.flush(() => resolve()));
}

function describe(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  return scrubCaps(message.split('\n')[0] ?? message);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    const message = describe(e);
    process.stderr.write(`blackmatch: ${message}\n`);
    if (!hasWaitingParent()) process.exit(1);
    reportToParent({ error: message });
    // Let the report leave through the IPC channel before exiting.
    setTimeout(() => process.exit(1), 200);
  },
);
