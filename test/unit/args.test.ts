import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CommanderError } from 'commander';
import { DEFAULT_CACHE_BYTES, DEFAULT_MIN_FREE_BYTES } from '../../src/cache/content-cache.js';
import { DEFAULT_CACHE_TIMEOUT_S, parseArgs, parseSize, parseStatusArgs, parseSyncArgs, SYNC_TIMEOUT_S, UsageError } from '../../src/cli/args.js';

const VERSION = '0.0.0-test';
const parse = (argv: string[]) => parseArgs(argv, VERSION);

/** Asserts commander rejected the command line (it also prints its message on stderr, which is fine here). */
function rejectedByCommander(argv: string[], code: string): void {
  assert.throws(() => parse(argv), (e: unknown) => e instanceof CommanderError && e.code === code, argv.join(' '));
}

function usageError(argv: string[], message: RegExp): void {
  assert.throws(() => parse(argv), (e: unknown) => e instanceof UsageError && message.test(e.message), argv.join(' '));
}

describe('parseArgs', () => {
  it('has sensible defaults', () => {
    assert.deepEqual(parse(['/mnt/x']), {
      mountpoint: '/mnt/x',
      source: undefined,
      nodeDirectory: join(homedir(), '.tahoe'),
      nodeUrl: undefined,
      alias: undefined,
      rootUri: undefined,
      cacheTimeout: DEFAULT_CACHE_TIMEOUT_S,
      cacheSize: DEFAULT_CACHE_BYTES,
      cacheMinFree: DEFAULT_MIN_FREE_BYTES,
      split: true,
      fuseOptions: [],
      foreground: false,
      logLevel: 'info',
      server: false,
      serverShutdown: false,
      serverStartTimeout: 8,
      writeBack: false,
      writeBackDelayMs: 1000,
      transfers: 8,
      settleMs: 45_000,
      listCapXattrs: false,
      directReads: true,
      mutableFrom: 8 * 1024 * 1024,
    });
  });

  it('takes --write-back-delay in seconds, fractions too; -o write-back-delay=0 as well', () => {
    assert.equal(parseArgs(['--write-back', '--write-back-delay', '0.25', '/mnt/x'], '0').writeBackDelayMs, 250);
    assert.equal(parseArgs(['-o', 'write-back,write-back-delay=0', '/mnt/x'], '0').writeBackDelayMs, 0);
  });

  it('takes --mutable-from as a size, or off for never', () => {
    assert.equal(parseArgs(['--mutable-from', '64M', '/mnt/x'], '0').mutableFrom, 64 * 1024 * 1024);
    assert.equal(parseArgs(['--mutable-from', 'off', '/mnt/x'], '0').mutableFrom, Infinity);
    assert.equal(parseArgs(['-o', 'mutable-from=1K', '/mnt/x'], '0').mutableFrom, 1024);
    assert.throws(() => parseArgs(['--mutable-from', 'lots', '/mnt/x'], '0'));
  });

  it('takes --write-back and --transfers, and refuses a transfer count out of range', () => {
    const a = parseArgs(['--write-back', '--transfers', '3', '/mnt/x'], '0');
    assert.equal(a.writeBack, true);
    assert.equal(a.transfers, 3);
    for (const bad of ['0', '65', 'x', '-1']) assert.throws(() => parseArgs(['--transfers', bad, '/mnt/x'], '0'));
  });

  it('reads every documented option', () => {
    const a = parse([
      '--node-directory', '/n', '--node-url', 'http://127.0.0.1:1/', '--alias', 'tahoe:', '--cache-timeout', '2.5',
      '--cache-size', '500M', '--no-split', '-f', '--log-level', 'debug', '--server-start-timeout', '3', 'mnt',
    ]);
    assert.equal(a.cacheSize, 500 * 1024 ** 2);
    assert.equal(a.mountpoint, 'mnt');
    assert.equal(a.nodeDirectory, '/n');
    assert.equal(a.nodeUrl, 'http://127.0.0.1:1/');
    assert.equal(a.alias, 'tahoe:');
    assert.equal(a.cacheTimeout, 2.5);
    assert.equal(a.split, false);
    assert.equal(a.foreground, true);
    assert.equal(a.logLevel, 'debug');
    assert.equal(a.serverStartTimeout, 3);
  });

  it('accepts --root-uri and --option=value forms', () => {
    const cap = 'URI:DIR2:3nmylhjqubpdykuwdzv3oeci4m:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea';
    const a = parse([`--root-uri=${cap}`, '--cache-timeout=0', 'mnt']);
    assert.equal(a.rootUri, cap);
    assert.equal(a.cacheTimeout, 0);
  });

  it('reads sizes with an optional K, M, G or T suffix in powers of 1024', () => {
    assert.equal(parseSize('12345'), 12345);
    assert.equal(parseSize('4K'), 4096);
    assert.equal(parseSize('500M'), 500 * 1024 ** 2);
    assert.equal(parseSize('4G'), 4 * 1024 ** 3);
    assert.equal(parseSize('2T'), 2 * 1024 ** 4);
    assert.equal(parseSize('10GiB'), 10 * 1024 ** 3);
    assert.equal(parseSize('1.5g'), 1.5 * 1024 ** 3);
    assert.equal(parseSize(' 64 MB '), 64 * 1024 ** 2);
    for (const bad of ['', 'big', '-1M', '4X', '1e9', 'M']) assert.throws(() => parseSize(bad), bad);
    assert.equal(parse(['--cache-size=1G', 'mnt']).cacheSize, 1024 ** 3);
    rejectedByCommander(['--cache-size', 'lots', 'mnt'], 'commander.invalidArgument');
    assert.equal(parse(['--cache-min-free', '256M', 'mnt']).cacheMinFree, 256 * 1024 ** 2);
    assert.equal(parse(['--cache-min-free=0', 'mnt']).cacheMinFree, 0);
    rejectedByCommander(['--cache-min-free', 'some', 'mnt'], 'commander.invalidArgument');
  });

  it('collects -o options, repeated and comma-separated, in order', () => {
    assert.deepEqual(parse(['-o', 'allow_other', '-o', 'ro,noatime', 'mnt']).fuseOptions, ['allow_other', 'ro', 'noatime']);
    assert.deepEqual(parse(['-o', 'a,,b,', 'mnt']).fuseOptions, ['a', 'b']);
  });

  it('starts each parse with fresh -o defaults', () => {
    parse(['-o', 'first', 'mnt']);
    assert.deepEqual(parse(['mnt']).fuseOptions, []);
  });

  it('--no-split turns the split off, and the default keeps it on', () => {
    assert.equal(parse(['--no-split', 'mnt']).split, false);
    assert.equal(parse(['mnt']).split, true);
  });

  it('rejects unknown options through commander', () => {
    rejectedByCommander(['--bogus', 'mnt'], 'commander.unknownOption');
  });

  it('rejects extra arguments', () => {
    rejectedByCommander(['tahoe:', 'mnt', 'another'], 'commander.excessArguments');
    usageError(['mnt', 'another'], /SOURCE "mnt" is not an alias/);
  });

  it('rejects negative or non-numeric timeouts', () => {
    rejectedByCommander(['--cache-timeout', '-1', 'mnt'], 'commander.invalidArgument');
    rejectedByCommander(['--cache-timeout=-0.5', 'mnt'], 'commander.invalidArgument');
    rejectedByCommander(['--cache-timeout', 'soon', 'mnt'], 'commander.invalidArgument');
    rejectedByCommander(['--server-start-timeout', '-3', 'mnt'], 'commander.invalidArgument');
  });

  it('requires a mountpoint unless acting as or on the server', () => {
    usageError([], /missing MOUNTPOINT/);
    usageError(['--no-split', '-o', 'ro'], /missing MOUNTPOINT/);
    assert.equal(parse(['--server-shutdown']).mountpoint, undefined);
    assert.equal(parse(['--server']).server, true);
  });

  it('rejects --alias together with --root-uri', () => {
    usageError(['--alias', 'tahoe', '--root-uri', 'URI:DIR2:a:b', 'mnt'], /--alias or --root-uri, not both/);
  });

  it('rejects an unknown log level', () => {
    usageError(['--log-level', 'verbose', 'mnt'], /unknown log level "verbose"/);
  });
});

describe('parseArgs: the fstab form, as mount.fuse3 runs it (blackmatch SOURCE MOUNTPOINT -o OPTIONS)', () => {
  const CAP = 'URI:DIR2:3nmylhjqubpdykuwdzv3oeci4m:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea';

  it('reads the issue\'s fstab line as mount.fuse3 passes it: dev,suid added, _netdev gone', () => {
    // fstab: tahoe: /mnt/tahoe fuse.blackmatch node-directory=/home/u/.tahoe,_netdev 0 0
    const a = parse(['tahoe:', '/mnt/tahoe', '-o', 'rw,node-directory=/home/u/.tahoe,dev,suid']);
    assert.deepEqual(a, { ...parse(['--node-directory', '/home/u/.tahoe', '--alias', 'tahoe', '/mnt/tahoe']), fuseOptions: ['rw'], source: 'tahoe:' });
  });

  it('takes SOURCE as an alias in tahoe\'s syntax, NAME:', () => {
    assert.equal(parse(['work:', 'mnt']).alias, 'work');
    assert.equal(parse(['work:', 'mnt']).mountpoint, 'mnt');
    assert.equal(parse(['mnt']).alias, undefined);
    usageError(['tahoe:docs/2024', 'mnt'], /below an alias is not supported/);
    usageError(['tahoe:', '--alias', 'work', 'mnt'], /SOURCE or with --alias, not both/);
  });

  it('refuses a cap as SOURCE or in -o: fstab is world-readable', () => {
    usageError([CAP, 'mnt'], /readable by every user.*private\/aliases/);
    usageError(['tahoe:', 'mnt', '-o', `root-uri=${CAP}`], /readable by every user/);
    usageError(['mnt', '-o', `root_uri=${CAP}`], /readable by every user/);
  });

  it('gives every long option as -o name=value or -o flag, in dash or underscore spelling, as on the command line', () => {
    const cases: Array<[string[], string]> = [
      [['--node-directory', '/n'], 'node-directory=/n'],
      [['--node-url', 'http://127.0.0.1:3456/'], 'node_url=http://127.0.0.1:3456/'],
      [['--alias', 'work'], 'alias=work'],
      [['--cache-timeout', '2.5'], 'cache_timeout=2.5'],
      [['--cache-size', '1G'], 'cache-size=1G'],
      [['--cache-min-free', '0'], 'cache_min_free=0'],
      [['--write-back'], 'write-back'],
      [['--write-back'], 'write_back'],
      [['--transfers', '3'], 'transfers=3'],
      [['--list-cap-xattrs'], 'list_cap_xattrs'],
      [['--direct-reads', 'off'], 'direct-reads=off'],
      [['--direct-reads', 'no'], 'direct_reads=no'],
      [['--no-split'], 'no-split'],
      [['--no-split'], 'no_split'],
      [['--log-level', 'debug'], 'log-level=debug'],
      [['--server-start-timeout', '3'], 'server_start_timeout=3'],
    ];
    for (const [long, item] of cases) {
      const want = parse([...long, 'mnt']);
      assert.notDeepEqual(want, parse(['mnt']), long.join(' '));
      assert.deepEqual(parse(['mnt', '-o', item]), want, item);
      assert.deepEqual(parse([`-o${item}`, 'mnt']), want, `-o${item}`);
      if (!long.includes('--alias')) assert.deepEqual(parse(['tahoe:', 'mnt', '-o', item]), { ...want, alias: 'tahoe', source: 'tahoe:' }, `tahoe: mnt -o ${item}`);
    }
  });

  it('keeps FUSE options in order among ours, and drops what only mount(8), systemd or mount.fuse3 mean', () => {
    const a = parse(['tahoe:', 'mnt', '-o', 'allow_other,_netdev,cache-size=1G,nofail,noauto,auto,user,users,nouser,defaults', '-o', 'x-systemd.requires=tahoe.service,x-systemd.automount,comment=x,setuid=u,ro,max_read=131072,no_split,noatime']);
    assert.deepEqual(a.fuseOptions, ['allow_other', 'ro', 'max_read=131072', 'noatime']);
    assert.equal(a.cacheSize, 1024 ** 3);
    assert.equal(a.split, false);
  });

  it('gives bad -o values the same errors as the command line', () => {
    rejectedByCommander(['mnt', '-o', 'cache-size=lots'], 'commander.invalidArgument');
    rejectedByCommander(['mnt', '-o', 'transfers=0'], 'commander.invalidArgument');
    rejectedByCommander(['mnt', '-o', 'cache_timeout=-1'], 'commander.invalidArgument');
    usageError(['mnt', '-o', 'log-level=verbose'], /unknown log level "verbose"/);
    usageError(['mnt', '-o', 'write-back=yes'], /-o write-back takes no value/);
    usageError(['mnt', '-o', 'cache-size'], /-o cache-size needs a value: cache-size=VALUE/);
  });

  it('leaves an option\'s value alone even when it reads "-o", and refuses drop_privileges\' /dev/fd mountpoint', () => {
    assert.equal(parse(['--node-directory', '-o', 'mnt']).nodeDirectory, '-o');
    usageError(['tahoe:', '/dev/fd/3', '-o', 'rw'], /drop_privileges is not supported/);
  });
});

describe('parseSyncArgs and parseStatusArgs', () => {
  /** Commander's exit code for a command line (it prints its message or help too, which is fine here). */
  function exitCode(parse: () => unknown): number {
    try {
      parse();
    } catch (e) {
      if (e instanceof CommanderError) return e.exitCode;
      throw e;
    }
    return -1;
  }

  it('parses sync --timeout in seconds, and MOUNTPOINT', () => {
    assert.deepEqual(parseSyncArgs([]), { timeoutMs: SYNC_TIMEOUT_S * 1000, storedOnly: false, mountpoint: undefined });
    assert.deepEqual(parseSyncArgs(['--timeout', '30', '/mnt/x']), { timeoutMs: 30_000, storedOnly: false, mountpoint: '/mnt/x' });
    assert.deepEqual(parseSyncArgs(['/mnt/x', '--timeout=0']), { timeoutMs: 0, storedOnly: false, mountpoint: '/mnt/x' });
    assert.deepEqual(parseSyncArgs(['--stored-only', '/mnt/x']), { timeoutMs: SYNC_TIMEOUT_S * 1000, storedOnly: true, mountpoint: '/mnt/x' });
  });

  it('parses status --json and MOUNTPOINT', () => {
    assert.deepEqual(parseStatusArgs([]), { json: false, mountpoint: undefined });
    assert.deepEqual(parseStatusArgs(['--json', '/mnt/x']), { json: true, mountpoint: '/mnt/x' });
  });

  it('exits 2 on a usage error and 0 on --help', () => {
    assert.equal(exitCode(() => parseSyncArgs(['--bogus'])), 2);
    assert.equal(exitCode(() => parseSyncArgs(['--timeout', 'soon'])), 2);
    assert.equal(exitCode(() => parseSyncArgs(['--timeout'])), 2);
    assert.equal(exitCode(() => parseSyncArgs(['/a', '/b'])), 2);
    assert.equal(exitCode(() => parseStatusArgs(['--bogus'])), 2);
    assert.equal(exitCode(() => parseStatusArgs(['/a', '/b'])), 2);
    assert.equal(exitCode(() => parseSyncArgs(['--help'])), 0);
    assert.equal(exitCode(() => parseStatusArgs(['-h'])), 0);
  });
});
