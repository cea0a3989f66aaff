// The command line (option names of the original Tahoe FUSE frontend), parsed with commander, and its fstab
// form: mount(8) runs us through mount.fuse3 as `blackmatch SOURCE MOUNTPOINT -o OPTIONS` (see
// expandMountOptions). `blackmatch sync` and `blackmatch status` have commander parsers of their own here too.
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CACHE_BYTES, DEFAULT_MIN_FREE_BYTES } from '../cache/content-cache.js';
import { DEFAULT_MUTABLE_FROM, DEFAULT_TRANSFERS } from '../fs/store.js';
import { DEFAULT_SETTLE_MS } from '../fs/ledger.js';

export interface Args {
  mountpoint: string | undefined;
  /** fstab's SOURCE as given (`tahoe:`): the alias, and the mount's source in the mount table, so that mount -a sees it mounted. */
  source: string | undefined;
  nodeDirectory: string;
  nodeUrl: string | undefined;
  alias: string | undefined;
  rootUri: string | undefined;
  cacheTimeout: number;
  cacheSize: number;
  /** Free space to leave on the cache's filesystem, in bytes (0: no minimum). */
  cacheMinFree: number;
  split: boolean;
  fuseOptions: string[];
  foreground: boolean;
  logLevel: string;
  /** Internal: this process is the server that the client launched (split mode). */
  server: boolean;
  serverShutdown: boolean;
  serverStartTimeout: number;
  /** close() returns once the bytes are on the local disk; uploads run in the background. */
  writeBack: boolean;
  /** See --write-back-delay (ms). */
  writeBackDelayMs: number;
  /** See --settle-time (ms). */
  settleMs: number;
  /** Uploads at once. */
  transfers: number;
  /** listxattr names the computed user.tahoe.* caps too. */
  listCapXattrs: boolean;
  /** Read immutable files straight from the storage servers (HTTPS), not through the gateway. */
  directReads: boolean;
  /** A file changed in place from this size on becomes a mutable (MDMF) file (Infinity: never). */
  mutableFrom: number;
}

export const DEFAULT_CACHE_TIMEOUT_S = 10;
/** git writes `config.lock`, closes it and renames it over `config` within milliseconds; rclone waits 5 s. */
export const DEFAULT_WRITE_BACK_DELAY_S = 1;

function seconds(value: string): number {
  // Plain decimals only: Number() would also take '', ' ' (as 0) and '0x10'.
  if (!/^[0-9]+(\.[0-9]+)?$/.test(value.trim())) throw new InvalidArgumentError('expected a number of seconds, 0 or more');
  return Number(value);
}

/** A size (parseSize), or "off" for none at all. */
function sizeOrOff(value: string): number {
  return value === 'off' ? Infinity : parseSize(value);
}

/** Sizes as a number of bytes with an optional K, M, G or T suffix (powers of 1024). */
export function parseSize(value: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(i?B)?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected a size such as 500M or 4G');
  const power = ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
  return Math.floor(Number(m[1]) * 1024 ** power);
}

function positiveInt(value: string): number {
  if (!/^[0-9]+$/.test(value.trim()) || Number(value) < 1 || Number(value) > 64) throw new InvalidArgumentError('expected a whole number from 1 to 64');
  return Number(value);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, ...value.split(',').filter((v) => v !== '')];
}

export function buildCommand(version: string): Command {
  return new Command('blackmatch')
    .description('Mount a Tahoe-LAFS directory as a filesystem, through the Tahoe node\'s web API.')
    .usage('[options] [ALIAS:] MOUNTPOINT')
    .version(version, '--version')
    .argument('[SOURCE]', 'ALIAS: (as in fstab): the same as --alias ALIAS')
    .argument('[MOUNTPOINT]', 'empty directory to mount on')
    .option('--node-directory <DIR>', 'Tahoe node directory: node.url, private/aliases; holds our cache and logs', join(homedir(), '.tahoe'))
    .option('--node-url <URL>', 'web-API URL of the Tahoe node (default: read from NODEDIR/node.url)')
    .option('--alias <NAME>', 'mount the directory this alias names in NODEDIR/private/aliases (default: tahoe)')
    .option('--root-uri <CAP>', 'mount this directory cap (URI:DIR2:... or a read-only URI:DIR2-RO:...)')
    .option('--cache-timeout <SECONDS>', 'how long a directory listing is trusted; 0 = always refetch', seconds, DEFAULT_CACHE_TIMEOUT_S)
    .option('--cache-size <SIZE>', 'most file content to keep cached on disk, e.g. 500M or 10G (default 4G)', parseSize, DEFAULT_CACHE_BYTES)
    .option('--cache-min-free <SIZE>', 'free space to leave on the cache\'s filesystem, evicting cached content for it (default 1G; 0 = no minimum)', parseSize, DEFAULT_MIN_FREE_BYTES)
    .option('--write-back', 'close() returns once the written bytes are safe on the local disk; they are uploaded in the background (fsync and `blackmatch sync` wait for them)')
    .option('--write-back-delay <SECONDS>', 'with --write-back: how long a closed file waits before its upload starts, so that a rename, chmod or rewrite right after close() costs no upload or link of its own', seconds, DEFAULT_WRITE_BACK_DELAY_S)
    .option('--transfers <N>', 'uploads at once', positiveInt, DEFAULT_TRANSFERS)
    .option('--settle-time <SECONDS>', 'how long a directory must be quiet before this mount checks that its changes to it are still there (other machines\' gateways can undo them; see the README); 0 = no other machine writes these directories', seconds, DEFAULT_SETTLE_MS / 1000)
    .option('--list-cap-xattrs', 'list the user.tahoe.* attributes (caps) in listxattr, so that getfattr -d shows them; off by default, so that cp -a, rsync -X and tar --xattrs do not copy caps around')
    .option('--direct-reads <on|off>', 'read immutable files straight from the storage servers over Tahoe\'s HTTPS storage protocol, checked as Tahoe checks them (NODEDIR/private must hold the gateway\'s storage announcements); off = every read through the gateway', onOff, true)
    .option('--mutable-from <SIZE>', 'a file at least this big that is changed in place (not rewritten whole) is stored as a mutable MDMF file from then on, and later changes send only the changed ranges (default 8M; off = never)', sizeOrOff, DEFAULT_MUTABLE_FROM)
    .option('--no-split', 'run the filesystem in this one process instead of a client and a server')
    .option('-o <OPTION>', 'FUSE mount option (repeatable, or comma-separated), e.g. -o allow_other; any long option above too, as in fstab: -o cache-size=1G,write-back', collect, [])
    .option('-f', 'stay in the foreground (logs still go to the log file)')
    .option('--log-level <LEVEL>', 'log detail: error, warn, info or debug (one line per operation)', 'info')
    .option('--server-start-timeout <SECONDS>', 'how long the client waits for its server to start', seconds, 8)
    .option('--server-shutdown', 'ask the running server for this root to exit')
    .addOption(new Option('--server', 'internal: run as the server launched by the client').hideHelp())
    .showHelpAfterError('(run blackmatch --help for usage)')
    .allowExcessArguments(false);
}

export function parseArgs(argv: string[], version: string): Args {
  const cmd = buildCommand(version);
  cmd.exitOverride();
  cmd.configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `blackmatch: ${s}` : s) });
  cmd.parse(expandMountOptions(argv, cmd), { from: 'user' });
  const o = cmd.opts<{
    nodeDirectory: string;
    nodeUrl?: string;
    alias?: string;
    rootUri?: string;
    cacheTimeout: number;
    cacheSize: number;
    cacheMinFree: number;
    split: boolean;
    o: string[];
    f?: boolean;
    logLevel: string;
    server?: boolean;
    serverShutdown?: boolean;
    serverStartTimeout: number;
    writeBack?: boolean;
    transfers: number;
    settleTime: number;
    writeBackDelay: number;
    listCapXattrs?: boolean;
    directReads: boolean;
    mutableFrom: number;
  }>();
  if (!['error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(o.logLevel)) {
    throw new UsageError(`unknown log level "${o.logLevel}"`);
  }
  if (o.alias !== undefined && o.rootUri !== undefined) throw new UsageError('give --alias or --root-uri, not both');
  if (o.rootUri === '-') {
    o.rootUri = process.env[ROOT_URI_ENV];
    if (!o.rootUri) throw new UsageError(`--root-uri - needs the cap in ${ROOT_URI_ENV}`);
  }
  const [source, mountpoint] = cmd.args.length === 2 ? cmd.args : [undefined, cmd.args[0]];
  if (!mountpoint && !o.serverShutdown && !o.server) throw new UsageError('missing MOUNTPOINT (run blackmatch --help for usage)');
  if (mountpoint !== undefined && /^\/dev\/fd\/[0-9]+$/.test(mountpoint)) {
    throw new UsageError('drop_privileges is not supported: blackmatch mounts and unmounts by itself (leave it out of the fstab line)');
  }
  if (source !== undefined) {
    if (o.alias !== undefined || o.rootUri !== undefined) throw new UsageError('give the alias as SOURCE or with --alias, not both');
    o.alias = aliasOfSource(source);
  }
  return {
    mountpoint,
    source,
    nodeDirectory: o.nodeDirectory,
    nodeUrl: o.nodeUrl,
    alias: o.alias,
    rootUri: o.rootUri,
    cacheTimeout: o.cacheTimeout,
    cacheSize: o.cacheSize,
    cacheMinFree: o.cacheMinFree,
    split: o.split,
    fuseOptions: o.o,
    foreground: o.f === true,
    logLevel: o.logLevel,
    server: o.server === true,
    serverShutdown: o.serverShutdown === true,
    serverStartTimeout: o.serverStartTimeout,
    writeBack: o.writeBack === true,
    settleMs: o.settleTime * 1000,
    writeBackDelayMs: o.writeBackDelay * 1000,
    transfers: o.transfers,
    listCapXattrs: o.listCapXattrs === true,
    directReads: o.directReads,
    mutableFrom: o.mutableFrom,
  };
}

export class UsageError extends Error {}

/** `blackmatch sync` waits this long at most by default (uploads of large files on a slow link take long). */
export const SYNC_TIMEOUT_S = 3600;

export interface SyncArgs {
  timeoutMs: number;
  /** Not waiting for the directory checks (ledger): only until everything is stored. */
  storedOnly: boolean;
  mountpoint: string | undefined;
}

export interface StatusArgs {
  json: boolean;
  mountpoint: string | undefined;
}

function wholeSeconds(value: string): number {
  if (!/^[0-9]+$/.test(value.trim())) throw new InvalidArgumentError('expected a whole number of seconds');
  return Number(value);
}

/** `blackmatch sync [--timeout SECONDS] [MOUNTPOINT]`; throws a CommanderError carrying the exit code (see subcommand). */
export function parseSyncArgs(argv: string[]): SyncArgs {
  const cmd = subcommand('sync', 'waits until everything written to the mount before now is stored in the grid (every mount of yours without MOUNTPOINT);\nprints what is not, and exits 1 if anything is not')
    .option('--timeout <SECONDS>', 'wait at most this long', wholeSeconds, SYNC_TIMEOUT_S)
    .option('--stored-only', 'wait until everything is stored, not also until the directory changes are seen in place after --settle-time (another machine\'s gateway can still undo them until then)');
  cmd.parse(argv, { from: 'user' });
  const o = cmd.opts<{ timeout: number; storedOnly?: boolean }>();
  return { timeoutMs: o.timeout * 1000, storedOnly: o.storedOnly === true, mountpoint: cmd.args[0] };
}

/** `blackmatch status [--json] [MOUNTPOINT]`; throws a CommanderError carrying the exit code (see subcommand). */
export function parseStatusArgs(argv: string[]): StatusArgs {
  const cmd = subcommand('status', 'shows every blackmatch mount on this machine (or one): mode, root, gateway and grid, uploads, writes not stored, cache, recent problems')
    .option('--json', 'the same as JSON');
  cmd.parse(argv, { from: 'user' });
  return { json: cmd.opts<{ json?: boolean }>().json === true, mountpoint: cmd.args[0] };
}

/**
 * A subcommand's parser: its help exits 0, and any usage error 2 (as before commander parsed these; commander's
 * own default is 1, which sync and status use for "not everything stored" and "a mount did not answer").
 */
function subcommand(name: string, description: string): Command {
  return new Command(`blackmatch ${name}`)
    .description(description)
    .argument('[MOUNTPOINT]', 'the mount (default: every blackmatch mount)')
    .allowExcessArguments(false)
    .showHelpAfterError(`(run blackmatch ${name} --help for usage)`)
    .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `blackmatch: ${s}` : s) })
    .exitOverride((e) => {
      if (e.exitCode === 0) throw e;
      throw new CommanderError(2, e.code, e.message);
    });
}

/**
 * A cap in fstab would be readable by every user: fstab is world-readable, and so are the mount units systemd
 * makes of it and mount.fuse3's command line. Hence no cap as SOURCE or in -o; an alias keeps it in the node
 * directory's private/aliases.
 */
const NO_CAP_IN_FSTAB = 'a cap in fstab or -o would be readable by every user: name it in NODEDIR/private/aliases (tahoe add-alias NAME CAP) and give NAME: as SOURCE';

/** SOURCE is an alias in tahoe's own syntax, `NAME:` (e.g. `tahoe:`): fstab's first field. */
function aliasOfSource(source: string): string {
  if (/^URI:/i.test(source)) throw new UsageError(NO_CAP_IN_FSTAB);
  const m = /^([^:/]+):(.*)$/.exec(source);
  if (!m) throw new UsageError(`SOURCE "${source}" is not an alias: give NAME: as in tahoe's paths (e.g. tahoe:), then the mountpoint`);
  if (m[2] !== '') throw new UsageError(`SOURCE "${source}": mounting a directory below an alias is not supported; add an alias for it (tahoe add-alias)`);
  return m[1]!;
}

/**
 * Options that mean something only to mount(8), systemd or mount.fuse3, dropped quietly: libmount and mount.fuse3
 * take most of them out before we run, but not every version does, nor a copy of an fstab line typed by hand.
 * `dev` and `suid` are what mount.fuse3 adds to every mount by root (unless nodev, nosuid): blackmatch keeps
 * FUSE's default nosuid,nodev, since a setuid bit or device node someone put in a shared grid directory must
 * not count on this machine.
 */
const MOUNT_ONLY = new Set(['_netdev', 'nofail', 'noauto', 'auto', 'user', 'users', 'nouser', 'owner', 'group', 'defaults', 'dev', 'suid']);
const MOUNT_ONLY_PREFIXES = ['x-', 'comment=', 'setuid='];
/** Long options that make no sense in -o: actions, internals, and a cap (NO_CAP_IN_FSTAB). */
const NOT_MOUNT_OPTIONS = new Set(['help', 'version', 'server', 'server-shutdown']);

/**
 * Turns every `-o` item that names one of our long options (`cache-size=1G`, `node_directory=/x`, `write-back`)
 * into that option (`--cache-size=1G`), so that commander checks it as on the command line; mount-only items
 * go; the rest stay FUSE options. Values of our options are skipped, so a value that happens to be "-o" is one.
 */
export function expandMountOptions(argv: string[], cmd: Command): string[] {
  const withValue = new Set(cmd.options.filter((o) => o.required || o.optional).flatMap((o) => [o.long, o.short]));
  const ours = new Map(cmd.options.filter((o) => o.long && !NOT_MOUNT_OPTIONS.has(o.long.slice(2))).map((o) => [o.long!.slice(2), o]));
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    let items: string;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    } else if (a === '-o' && i + 1 < argv.length) items = argv[++i]!;
    else if (a.startsWith('-o') && a.length > 2) items = a.slice(2);
    else {
      out.push(a);
      if (withValue.has(a) && i + 1 < argv.length) out.push(argv[++i]!);
      continue;
    }
    for (const item of items.split(',')) {
      const eq = item.indexOf('=');
      const name = (eq < 0 ? item : item.slice(0, eq)).replace(/_/g, '-');
      const value = eq < 0 ? undefined : item.slice(eq + 1);
      if (item === '' || MOUNT_ONLY.has(item) || MOUNT_ONLY_PREFIXES.some((p) => item.startsWith(p))) continue;
      if (name === 'root-uri') throw new UsageError(NO_CAP_IN_FSTAB);
      const option = ours.get(name);
      if (!option) out.push('-o', item);
      else if (!(option.required || option.optional)) {
        if (value !== undefined) throw new UsageError(`-o ${name} takes no value`);
        out.push(option.long!);
      } else {
        if (value === undefined) throw new UsageError(`-o ${name} needs a value: ${name}=VALUE`);
        out.push(`${option.long!}=${value}`);
      }
    }
  }
  return out;
}

/**
 * A root cap given on the command line must not reach the command lines of the processes we start (any
 * user can read those in /proc): they get `--root-uri -` and the cap in this environment variable instead,
 * which only the same user can read.
 */
export const ROOT_URI_ENV = 'BLACKMATCH_ROOT_URI';

export function argvForChild(argv: string[], rootUri: string | undefined): { argv: string[]; env: Record<string, string> } {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--root-uri') {
      out.push(a, '-');
      i++;
    } else if (a.startsWith('--root-uri=')) {
      out.push('--root-uri=-');
    } else out.push(a);
  }
  return { argv: out, env: rootUri !== undefined ? { [ROOT_URI_ENV]: rootUri } : {} };
}

/** The command line as shown in `ps`: any root cap replaced by its fingerprint. */
export function titleFor(argv: string[], redactCap: (cap: string) => string): string {
  return ['blackmatch', ...argv.map((a) => a.replace(/URI:[A-Za-z0-9-]+:[A-Za-z0-9:_-]+/g, (cap) => redactCap(cap)))].join(' ');
}

function onOff(value: string): boolean {
  if (value === 'on' || value === 'yes' || value === 'true') return true;
  if (value === 'off' || value === 'no' || value === 'false') return false;
  throw new InvalidArgumentError(`"${value}" is not on or off`);
}
