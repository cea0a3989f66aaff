#!/usr/bin/env node
// Entry point: blackmatch [options] MOUNTPOINT. See README.md for the modes and their processes.
import { readFileSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import { CommanderError } from 'commander';
import { ContentCache } from '../cache/content-cache.js';
import { StagingJournal } from '../cache/staging-journal.js';
import { TahoeFs } from '../fs/tahoe-fs.js';
import { fuseDescription, isMounted, mount, unmountPath, type Mounted } from '../fuse/mount.js';
import { createLogger, recentProblems, type Logger } from '../log.js';
import { gridHealth } from '../tahoe/grid-health.js';
import { statusCommand, type MountStatus } from './status.js';
import { hasWaitingParent, reportToParent, runDetached } from '../process/daemon.js';
import { claimSocket, ensureSocketDir, launchServer, shutdownServer, socketPathFor, waitForServer } from '../process/server-process.js';
import { RpcClient } from '../rpc/client.js';
import { RpcServer } from '../rpc/server.js';
import { lockRoot } from '../process/root-lock.js';
import { askControl, canonicalMountpoint, NoMountError, controlSocketPath, listControlSockets, serveControl, type ControlHandlers } from '../process/control.js';
import type { SyncReport } from '../fs/sync.js';
import { isAlive, selfIdentity } from '../process/alive.js';
import { DirectReads } from '../storage/direct-reads.js';
import { StorageServers } from '../storage/servers.js';
import { DEFAULT_TIMEOUTS, scrubCaps, TahoeClient } from '../tahoe/client.js';
import { redact } from '../tahoe/caps.js';
import { argvForChild, parseArgs, parseSyncArgs, titleFor, type Args, type SyncArgs } from './args.js';
import { checkMountpoint, logFile, resolveConfig, type MountConfig } from './config.js';

/** Bound for the background child to mount and report: covers listing the root through a slow gateway. */
const DETACHED_START_TIMEOUT_MS = 90_000;
/** `blackmatch sync` waits this much past its --timeout: the mount, bounded by it, says what is not stored. */
const SYNC_ANSWER_MARGIN_MS = 10_000;
/** `blackmatch status` asks the gateway how the grid looks, this long at most. */
const GATEWAY_STATUS_TIMEOUT_MS = 2000;
/** A server whose client never connects its keepalive exits after this long. */
const SERVER_ORPHAN_TIMEOUT_MS = 60_000;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return `${pkg.version} (${fuseDescription()})`;
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'sync') return syncCommand(argv.slice(1));
  if (argv[0] === 'status') return statusCommand(argv.slice(1));
  let args: Args;
  // Before anything else: `ps` must never show a cap given with --root-uri.
  process.title = titleFor(argv, redact);
  try {
    args = parseArgs(argv, version());
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode; // commander printed help, version or the error
    throw e;
  }
  const child = argvForChild(argv, args.rootUri);
  const config = await resolveConfig(args);
  if (args.serverShutdown) {
    process.stdout.write(`${await shutdownServer(socketPathFor(config.socketDir, config.rootName), config.rootName)}\n`);
    return 0;
  }
  if (args.server) return runServer(args, config, await realpath(resolve(args.mountpoint ?? '/')).catch(() => resolve(args.mountpoint ?? '/')));
  const mountpoint = await checkMountpoint(args.mountpoint!, isMounted);
  if (!args.foreground) {
    await runDetached([...child.argv, '-f'], child.env, DETACHED_START_TIMEOUT_MS);
    return 0;
  }
  // Paths are resolved: let go of the caller's working directory (it might be a mount someone wants gone).
  // The server is started from it, though: it reads the same command line, whose paths may be relative.
  const startDir = process.cwd();
  process.chdir('/');
  return args.split ? runClient(args, { ...child, cwd: startDir }, config, mountpoint) : runUnsplit(args, config, mountpoint);
}

/** The filesystem core with its cache, as both the unsplit process and the server run it. */
async function startCore(args: Args, config: MountConfig, log: Logger): Promise<{ core: TahoeFs; client: TahoeClient; reads: DirectReads }> {
  log.info({ root: redact(config.rootCap.text), rootName: config.rootName, nodeUrl: config.nodeUrl }, 'starting');
  const client = new TahoeClient(config.nodeUrl, DEFAULT_TIMEOUTS, log);
  const reads = new DirectReads(client, args.directReads ? new StorageServers(config.nodeDir) : undefined, log);
  const cache = new ContentCache(config.cacheDir, reads, log, { maxBytes: args.cacheSize, minFreeBytes: args.cacheMinFree });
  await cache.init();
  const journal = new StagingJournal(cache.stagingDir, log);
  const core = new TahoeFs({
    client, cache, journal, rootCap: config.rootCap, cacheTimeoutMs: args.cacheTimeout * 1000, log,
    owner: selfIdentity(), isAlive, writeBack: args.writeBack, keysFromStart: args.writeBack, writeBackDelayMs: args.writeBackDelayMs, transfers: args.transfers, mutableFrom: args.mutableFrom, settleMs: args.settleMs,
    // Other local users see the mount: entries keep their owners (and the kernel checks permissions).
    owners: args.fuseOptions.includes('allow_other'), listCapXattrs: args.listCapXattrs,
  });
  await core.start();
  void reads.warm();
  return { core, client, reads };
}

/** --no-split: the whole filesystem in this process, the FUSE adapter directly over the core. */
async function runUnsplit(args: Args, config: MountConfig, mountpoint: string): Promise<number> {
  const log = createLogger(logFile(config, 'unsplit'), args.logLevel);
  const lock = await lockRoot(config.socketDir, config.rootName, mountpoint);
  const { core, client, reads } = await startCore(args, config, log);
  const control = await serveControlOrWarn(mountpoint, controlHandlers(core, mountpoint, args, config), log);
  const mounted = await mount(mountpoint, core, { fsname: fsname(args, config), options: args.fuseOptions, kernelCacheSeconds: args.cacheTimeout, log });
  log.info({ mountpoint }, 'mounted');
  reportToParent({ ready: true });
  core.recoverInBackground();
  unmountOnSignals(mounted, log);
  await mounted.gone;
  log.info('unmounted; finishing uploads');
  await core.shutdown();
  await control.close();
  await reads.close();
  await client.close();
  await lock.release();
  log.info('exiting');
  await flushLog(log);
  return 0;
}

/**
 * Split mode, client side: launches the server, holds a keepalive connection to it, and mounts FUSE over an
 * RPC client. If the server dies, the mount stays and every operation fails at once with ENOTCONN (so that
 * programs never write into the directory underneath); `fusermount -u` then ends the client.
 */
async function runClient(args: Args, child: { argv: string[]; env: Record<string, string>; cwd: string }, config: MountConfig, mountpoint: string): Promise<number> {
  const log = createLogger(logFile(config, 'client'), args.logLevel);
  const socketPath = socketPathFor(config.socketDir, config.rootName);
  await ensureSocketDir(config.socketDir);
  await claimSocket(socketPath, config.rootName);
  const serverArgs = child.argv.filter((a) => a !== '-f');
  const { exited } = await launchServer(serverArgs, child.env, child.cwd, logFile(config, 'server'));
  const rpc = await waitForServer(socketPath, exited, logFile(config, 'server'), args.serverStartTimeout * 1000);
  const keepalive = await RpcClient.connect(socketPath);
  await keepalive.keepalive();
  for (const c of [rpc, keepalive]) c.onLost((reason) => log.error({ reason }, 'lost the server: every operation now fails with ENOTCONN'));
  const mounted = await mount(mountpoint, rpc.asOps(), { fsname: fsname(args, config), options: args.fuseOptions, kernelCacheSeconds: args.cacheTimeout, log });
  log.info({ mountpoint, socket: socketPath }, 'mounted');
  reportToParent({ ready: true });
  unmountOnSignals(mounted, log);
  await mounted.gone;
  log.info('unmounted; closing the keepalive so that the server finishes and exits');
  rpc.close();
  keepalive.close();
  await flushLog(log);
  return 0;
}

/** Split mode, server side: the filesystem core behind the RPC socket, until the client goes. */
async function runServer(args: Args, config: MountConfig, mountpoint: string): Promise<number> {
  process.chdir('/');
  const log = createLogger(logFile(config, 'server'), args.logLevel);
  const socketPath = socketPathFor(config.socketDir, config.rootName);
  const lock = await lockRoot(config.socketDir, config.rootName, mountpoint);
  const { core, client, reads } = await startCore(args, config, log);
  let resolveExit!: (code: number) => void;
  const exited = new Promise<number>((r) => (resolveExit = r));
  let finishing = false;
  const cleanups: Array<() => Promise<void>> = [];
  const finish = async (why: string): Promise<void> => {
    if (finishing) return;
    finishing = true;
    log.info({ why }, 'finishing uploads, then exiting');
    await server.close();
    await core.shutdown();
    for (const cleanup of cleanups) await cleanup();
    await reads.close();
  await client.close();
    await lock.release();
    log.info('exiting');
    await flushLog(log);
    resolveExit(0);
  };
  // A client that died before it connected its keepalive would leave us waiting forever.
  const orphanTimer = setTimeout(() => void finish('no client connected'), SERVER_ORPHAN_TIMEOUT_MS);
  const server = new RpcServer({
    socketPath,
    core,
    log,
    info: () => ({ pid: process.pid, mountpoint, rootName: config.rootName }),
    onKeepalive: () => clearTimeout(orphanTimer),
    onKeepaliveLost: () => void finish('the client is gone'),
    onShutdownRequest: () => {
      log.info('shutdown requested: unmounting');
      void unmountPath(mountpoint).finally(() => void finish('shutdown requested'));
    },
  });
  await server.listen();
  const control = await serveControlOrWarn(mountpoint, controlHandlers(core, mountpoint, args, config), log);
  cleanups.push(() => control.close());
  log.info({ socket: socketPath, mountpoint }, 'serving');
  core.recoverInBackground();
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => void finish(signal));
  return exited;
}

/** The control socket is for `blackmatch sync` and status: a mount works without it (it says so in the log). */
async function serveControlOrWarn(mountpoint: string, handlers: ControlHandlers, log: Logger): Promise<{ close(): Promise<void> }> {
  try {
    return await serveControl(mountpoint, handlers, log);
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'no control socket: blackmatch sync cannot reach this mount');
    return { close: async () => undefined };
  }
}

/** What the control socket answers (see process/control.ts). */
function controlHandlers(core: TahoeFs, mountpoint: string, args: Args, config: MountConfig): ControlHandlers {
  return {
    info: async () => ({ mountpoint, pid: process.pid, split: args.split, writeBack: args.writeBack }),
    // Everything from memory but the gateway's own view, asked with a short bound: a busy mount answers at once.
    status: async (): Promise<MountStatus> => ({
      mountpoint,
      pid: process.pid,
      split: args.split,
      writeBack: args.writeBack,
      root: redact(config.rootCap.text),
      rootName: config.rootName,
      readOnly: !config.rootCap.writable,
      gateway: { url: config.nodeUrl, ...(await gridHealth(config.nodeUrl, GATEWAY_STATUS_TIMEOUT_MS)) },
      ...(await core.status()),
      recentProblems: recentProblems(),
    }),
    // Bounded by the caller's --timeout: the report comes back before the command stops waiting for it.
    sync: async (params: { timeoutMs?: number; storedOnly?: boolean }) => ({ mountpoint, ...(await core.sync(params.timeoutMs, { storedOnly: params.storedOnly === true })) }),
  };
}

/**
 * `blackmatch sync [--timeout SECONDS] [MOUNTPOINT]`: waits until everything written to the mount (every
 * blackmatch mount of this user without MOUNTPOINT) before it is stored in the grid; exits 1 if anything is not.
 */
async function syncCommand(argv: string[]): Promise<number> {
  let parsed: SyncArgs;
  try {
    parsed = parseSyncArgs(argv);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode; // commander printed the help or the error
    throw e;
  }
  const { timeoutMs, storedOnly, mountpoint: named } = parsed;
  const sockets = named ? [controlSocketPath(await canonicalMountpoint(named))] : await listControlSockets();
  let failures = 0;
  for (const socket of sockets) {
    try {
      const r = (await askControl(socket, { op: 'sync', timeoutMs, storedOnly }, timeoutMs + SYNC_ANSWER_MARGIN_MS)) as SyncReport & { mountpoint: string };
      for (const f of r.failed) process.stdout.write(`${r.mountpoint}: NOT STORED ${f.path}: ${f.error}\n`);
      for (const c of r.conflicts) process.stdout.write(`${r.mountpoint}: CONFLICT ${c.path}: another machine wrote it at the same time; this mount's version is kept as ${c.keptAs}\n`);
      if (r.unchecked > 0) process.stdout.write(`${r.mountpoint}: NOT CHECKED ${r.unchecked} directory change(s): not yet seen in place after their directory was quiet (still being checked)\n`);
      process.stdout.write(`${r.mountpoint}: ${r.failed.length === 0 ? 'everything stored' : `${r.failed.length} not stored`} (${r.stored} waited for)\n`);
      failures += r.failed.length + (r.unchecked > 0 ? 1 : 0);
    } catch (e) {
      if (!named && e instanceof NoMountError) continue; // a socket left by a mount that is gone
      process.stderr.write(`blackmatch: sync ${named ?? socket}: ${(e as Error).message}\n`);
      failures++;
    }
  }
  return failures > 0 ? 1 : 0;
}

/** The mount's source in the mount table: fstab's SOURCE when mounted from fstab (libmount's mount -a compares it). */
function fsname(args: Args, config: MountConfig): string {
  return args.source ?? `blackmatch:${config.rootName}`;
}

function unmountOnSignals(mounted: Mounted, log: Logger): void {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      log.info({ signal }, 'unmounting');
      void mounted.unmount();
    });
  }
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
