// The FUSE edge, driven as our binding drives it (kernel requests by node id) over a fake session that records
// each reply and a fake core that records each call: node ids become the right paths after renames, names
// reach the core in Unicode NFC, readdirplus counts lookups as the kernel does, an open racing a rename over
// its name succeeds, and a failure is logged once, in the process where it happened.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino, type Logger } from 'pino';
import { FsError } from '../../src/errors.js';
import { FuseAdapter } from '../../src/fuse/adapter.js';
import { opKinds, type NativeEntry, type NativeSession, type OpKind, type RequestArgs } from '../../src/fuse/lowlevel.js';
import { ROOT_INO } from '../../src/fuse/nodes.js';
import type { Attr, Ops } from '../../src/fs/ops.js';
import { silentLogger } from '../../src/log.js';
import { RpcClient } from '../../src/rpc/client.js';
import { RpcServer } from '../../src/rpc/server.js';

const FILE: Attr = { mode: 0o100644, size: 3, nlink: 1, uid: 0, gid: 0, atime: { sec: 1, nsec: 2 }, mtime: { sec: 3, nsec: 4 }, ctime: { sec: 5, nsec: 6 } };
const DIR: Attr = { ...FILE, mode: 0o040755, size: 0 };

type Reply = { kind: string; values: unknown[] };

/** A session that records replies by request number; `call` sends a request and waits for its reply. */
class FakeSession {
  readonly replies = new Map<number, Reply>();
  private readonly waiters = new Map<number, (r: Reply) => void>();
  readonly notified: unknown[][] = [];
  /** How many directory entries fit in one readdir reply. */
  fit = Infinity;
  private nextReq = 1;
  adapter!: FuseAdapter;

  private record(kind: string, req: number, ...values: unknown[]): void {
    assert.ok(!this.replies.has(req), `request ${req} answered twice`);
    const reply = { kind, values };
    this.replies.set(req, reply);
    this.waiters.get(req)?.(reply);
  }

  readonly native: NativeSession = {
    mount: () => undefined,
    close: () => true,
    replyErr: (req, errno) => this.record('err', req, errno),
    replyNone: (req) => this.record('none', req),
    replyEntry: (req, e) => this.record('entry', req, e),
    replyCreate: (req, e, o) => (this.record('create', req, e, o), 0),
    replyAttr: (req, a, t) => this.record('attr', req, a, t),
    replyOpen: (req, o) => (this.record('open', req, o), 0),
    replyBuf: (req, data, n) => this.record('buf', req, data.subarray(0, n).toString()),
    replyWrite: (req, n) => this.record('write', req, n),
    replyXattr: (req, n) => this.record('xattr', req, n),
    replyStatfs: (req, s) => this.record('statfs', req, s),
    replyReadlink: (req, t) => this.record('readlink', req, t),
    replyDirectory: (req, _size, first, entries, plus) => {
      const fitted = Math.min(entries.length, this.fit);
      this.record('dir', req, first, entries.slice(0, fitted), plus);
      return fitted;
    },
    notify: (...args: unknown[]) => void this.notified.push(args),
    backingClose: () => undefined,
    info: () => ({ passthrough: false }),
  } as NativeSession;

  call(op: OpKind, args: Partial<RequestArgs> & { ino: number }): Promise<Reply> {
    const req = this.nextReq++;
    const done = new Promise<Reply>((resolve) => this.waiters.set(req, resolve));
    this.adapter.handle(opKinds().indexOf(op), req, { uid: 0, gid: 0, pid: 1, ...args });
    return done;
  }

  async lookup(parent: number, name: string): Promise<number> {
    const reply = await this.call('lookup', { ino: parent, name: Buffer.from(name) });
    assert.equal(reply.kind, 'entry', `lookup of ${name}: ${JSON.stringify(reply.values)}`);
    return (reply.values[0] as NativeEntry).ino;
  }
}

type Call = { op: string; args: unknown[] };

/** A core with files at the given paths (and their directories), recording every call. */
function fakeCore(paths: string[]): { ops: Ops; calls: Call[]; files: Set<string> } {
  const files = new Set(paths);
  const dirs = () => new Set(['/', ...[...files].flatMap((p) => p.split('/').slice(1, -1).map((_, i, parts) => '/' + parts.slice(0, i + 1).join('/')))]);
  const calls: Call[] = [];
  const attrOf = (path: string): Attr => {
    if (dirs().has(path)) return DIR;
    if (files.has(path)) return FILE;
    throw new FsError('ENOENT', `no such file: ${path}`);
  };
  const children = (dir: string) => [...files, ...dirs()].filter((p) => p !== '/' && p.slice(0, p.lastIndexOf('/') || 1) === dir).map((p) => p.slice(p.lastIndexOf('/') + 1));
  const impl: Partial<Ops> = {
    getattr: async (p) => attrOf(p),
    fgetattr: async () => FILE,
    readdir: async (p) => ['.', '..', ...children(p)],
    readdirplus: async (p) => children(p).map((name) => ({ name, attr: attrOf(p === '/' ? `/${name}` : `${p}/${name}`) })),
    open: async (p) => (attrOf(p), 7),
    create: async (p) => (files.add(p), 8),
    read: async () => Buffer.from('abc'),
    release: async () => undefined,
    rename: async (from, to) => {
      for (const p of [...files]) {
        if (p !== from && !p.startsWith(from + '/')) continue;
        files.delete(p);
        files.add(to + p.slice(from.length));
      }
    },
    unlink: async (p) => void files.delete(p),
    mkdir: async () => undefined,
    getxattr: async (p, name) => {
      if (name !== 'user.k') throw new FsError('ENODATA', `no ${name} on ${p}`);
      return Buffer.from('value');
    },
    listxattr: async () => ['user.a', 'user.k'],
    setxattr: async () => undefined,
  };
  const ops = new Proxy(impl, {
    get: (target, op: string) => {
      const fn = (target as Record<string, unknown>)[op] as ((...a: unknown[]) => Promise<unknown>) | undefined;
      if (!fn) return op === 'readInto' || op === 'watch' ? undefined : async () => undefined;
      return (...args: unknown[]) => {
        calls.push({ op, args });
        return fn(...args);
      };
    },
  }) as Ops;
  return { ops, calls, files };
}

function setup(paths: string[], log: Logger = silentLogger()) {
  const core = fakeCore(paths);
  const session = new FakeSession();
  session.adapter = new FuseAdapter(core.ops, { kernelCacheSeconds: 10, log });
  session.adapter.attach(session.native, () => undefined);
  return { ...core, session, adapter: session.adapter };
}

describe('FUSE adapter: node ids and paths', () => {
  it('looks names up under their parent node, in NFC, and gives one node id per name', async () => {
    const nfd = 'cafe\u0301';
    const { session, calls } = setup([`/${nfd.normalize('NFC')}/f`]);
    const dir = await session.lookup(ROOT_INO, nfd);
    assert.equal(await session.lookup(ROOT_INO, nfd.normalize('NFC')), dir, 'the same name is the same node');
    const file = await session.lookup(dir, 'f');
    assert.notEqual(file, dir);
    assert.deepEqual(calls.filter((c) => c.op === 'getattr').map((c) => c.args[0]), ['/café', '/café', '/café/f']);
  });

  it('a rename of a directory moves every node under it: later ops use the new paths', async () => {
    const { session, calls } = setup(['/a/b/f']);
    const a = await session.lookup(ROOT_INO, 'a');
    const b = await session.lookup(a, 'b');
    const f = await session.lookup(b, 'f');
    const renamed = await session.call('rename', { ino: ROOT_INO, name: Buffer.from('a'), newParent: ROOT_INO, newName: Buffer.from('z'), flags: 0 });
    assert.deepEqual(renamed.values, [0]);
    calls.length = 0;
    assert.equal((await session.call('open', { ino: f, flags: 0 })).kind, 'open');
    assert.deepEqual(calls.map((c) => [c.op, c.args[0]]), [['open', '/z/b/f']]);
  });

  it('an open that races a rename over its name opens what the name holds now (libfuse 2 gave ENOENT)', async () => {
    const { session, calls } = setup(['/d/target', '/d/tmp']);
    const d = await session.lookup(ROOT_INO, 'd');
    const old = await session.lookup(d, 'target');
    // The kernel looked `target` up, then the rename replaced it, then the open of the old node arrives.
    await session.call('rename', { ino: d, name: Buffer.from('tmp'), newParent: d, newName: Buffer.from('target'), flags: 0 });
    calls.length = 0;
    const opened = await session.call('open', { ino: old, flags: 0 });
    assert.equal(opened.kind, 'open', JSON.stringify(opened.values));
    assert.deepEqual(calls.map((c) => [c.op, c.args[0]]), [['open', '/d/target']]);
  });

  it('fstat of an unlinked open file answers through its handle', async () => {
    const { session, calls } = setup(['/f']);
    const f = await session.lookup(ROOT_INO, 'f');
    await session.call('open', { ino: f, flags: 0 });
    await session.call('unlink', { ino: ROOT_INO, name: Buffer.from('f') });
    calls.length = 0;
    const attr = await session.call('getattr', { ino: f });
    assert.equal(attr.kind, 'attr');
    assert.deepEqual(calls.map((c) => [c.op, c.args[1]]), [['fgetattr', 7]]);
  });

  it('an unknown node id fails with ESTALE, and a failure of the core keeps its errno', async () => {
    const { session } = setup([]);
    assert.deepEqual((await session.call('getattr', { ino: 999 })).values, [116]);
    assert.deepEqual((await session.call('lookup', { ino: ROOT_INO, name: Buffer.from('nope') })).values, [2]);
  });

  it('keeps the kernel page cache of a file reopened with the same attributes, not of one that changed', async () => {
    const { session } = setup(['/f']);
    const f = await session.lookup(ROOT_INO, 'f');
    const first = await session.call('open', { ino: f, flags: 0 });
    const second = await session.call('open', { ino: f, flags: 0 });
    assert.equal((first.values[0] as { keepCache: boolean }).keepCache, false);
    assert.equal((second.values[0] as { keepCache: boolean }).keepCache, true);
  });
});

describe('FUSE adapter: readdirplus', () => {
  it('hands every entry with its attributes in one listing, and counts a lookup only for entries that fitted', async () => {
    const { session, adapter, calls } = setup(['/d/a', '/d/b', '/d/c']);
    const d = await session.lookup(ROOT_INO, 'd');
    const opened = await session.call('opendir', { ino: d });
    const fh = (opened.values[0] as { fh: number }).fh;
    const before = adapter.nodes.size;
    calls.length = 0;
    session.fit = 3; // '.', '..' and 'a'
    const first = await session.call('readdirplus', { ino: d, fh, offset: 0, size: 4096 });
    assert.deepEqual(calls.map((c) => c.op), ['readdirplus'], 'one call of the core for the whole listing');
    const names = (first.values[1] as Array<{ name: Buffer }>).map((e) => e.name.toString());
    assert.deepEqual(names, ['.', '..', 'a']);
    assert.equal(adapter.nodes.size, before + 1, 'only the fitted entry got a node');
    session.fit = Infinity;
    const rest = await session.call('readdirplus', { ino: d, fh, offset: 3, size: 4096 });
    assert.deepEqual((rest.values[1] as Array<{ name: Buffer }>).map((e) => e.name.toString()), ['b', 'c']);
    assert.equal(calls.length, 1, 'the rest comes from the listing taken at the first read');
    // The kernel forgets the entries it was given: their nodes go.
    const ids = [...(first.values[1] as NativeEntry[]), ...(rest.values[1] as NativeEntry[])].filter((e) => e.ino > 0).map((e) => e.ino);
    assert.equal(ids.length, 3);
    session.adapter.handle(opKinds().indexOf('forget'), 0, { ino: 0, uid: 0, gid: 0, pid: 0, forgets: ids.flatMap((i) => [i, 1]) });
    assert.equal(adapter.nodes.size, before);
    // A forgotten node leaves the name table too.
    assert.equal(adapter.nodes.child(adapter.nodes.get(d), 'a'), undefined);
  });

  it('tells the kernel to forget a name another client changed, and its node cached pages', async () => {
    const { session, adapter } = setup(['/d/f']);
    const d = await session.lookup(ROOT_INO, 'd');
    const f = await session.lookup(d, 'f');
    adapter.invalidate('/d', 'f', 'entry');
    assert.deepEqual(session.notified, [['inode', f], ['entry', d, Buffer.from('f')]]);
    session.notified.length = 0;
    adapter.invalidate('/', 'd', 'attributes');
    assert.deepEqual(session.notified, [['inode', d]], 'a directory whose cap stayed keeps its name (it may be a working directory)');
    adapter.invalidate('/unknown', 'x', 'entry');
    assert.equal(session.notified.length, 1, 'nothing for directories the kernel does not hold');
  });
});

interface LogLine {
  level: number;
  msg: string;
}

function capturingLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { log, lines };
}

const ERROR_LEVEL = 50;
const DEBUG_LEVEL = 20;
const failures = (lines: LogLine[]) => lines.filter((l) => l.msg === 'failed');

describe('FUSE adapter: extended attributes', () => {
  it('answers the size question, ERANGE for a short buffer, and the value when it fits', async () => {
    const { session } = setup(['/f']);
    const f = await session.lookup(ROOT_INO, 'f');
    const ask = (size: number) => session.call('getxattr', { ino: f, name: Buffer.from('user.k'), size });
    assert.deepEqual(await ask(0), { kind: 'xattr', values: [5] });
    assert.deepEqual(await ask(4), { kind: 'err', values: [34] }); // ERANGE
    assert.deepEqual(await ask(5), { kind: 'buf', values: ['value'] });
    const list = await session.call('listxattr', { ino: f, size: 100 });
    assert.deepEqual(list, { kind: 'buf', values: ['user.a\0user.k\0'] });
    assert.deepEqual(await session.call('listxattr', { ino: f, size: 0 }), { kind: 'xattr', values: [14] });
  });

  it('hands setxattr its name, value and flags', async () => {
    const { session, calls } = setup(['/f']);
    const f = await session.lookup(ROOT_INO, 'f');
    assert.deepEqual(await session.call('setxattr', { ino: f, name: Buffer.from('user.k'), data: Buffer.from('v'), flags: 1 }), { kind: 'err', values: [0] });
    assert.deepEqual(calls.at(-1), { op: 'setxattr', args: ['/f', 'user.k', Buffer.from('v'), 1] });
  });
});

describe('split mode: a failure is logged once, in the process where it happened', () => {
  let dir: string;
  let server: RpcServer;
  let client: RpcClient;
  const serverLog = capturingLogger();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bm-adapter-'));
    const core = {
      getattr: async (path: string) => {
        if (path === '/bug') throw new TypeError('a bug in the core');
        throw new FsError('ENOENT', 'no such file');
      },
    } as unknown as Ops;
    server = new RpcServer({
      socketPath: join(dir, 'sock'),
      core,
      log: serverLog.log,
      info: () => ({ pid: process.pid, mountpoint: '/mnt/x', rootName: 'tahoe' }),
      onKeepalive: () => undefined,
      onKeepaliveLost: () => undefined,
      onShutdownRequest: () => undefined,
    });
    await server.listen();
    client = await RpcClient.connect(join(dir, 'sock'));
  });

  after(async () => {
    client?.close();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  function overRpc(ops: Ops, log: Logger): FakeSession {
    const session = new FakeSession();
    session.adapter = new FuseAdapter(ops, { kernelCacheSeconds: 1, log });
    session.adapter.attach(session.native, () => undefined);
    return session;
  }

  it('a bug in the server is logged as an error by the server only; the client logs it at debug level', async () => {
    serverLog.lines.length = 0;
    const clientLog = capturingLogger();
    const reply = await overRpc(client.asOps(), clientLog.log).call('lookup', { ino: ROOT_INO, name: Buffer.from('bug') });
    assert.deepEqual(reply.values, [5]);
    assert.equal(failures(serverLog.lines).filter((l) => l.level === ERROR_LEVEL).length, 1, 'the server logs the bug with its stack');
    assert.deepEqual(failures(clientLog.lines).map((l) => l.level), [DEBUG_LEVEL], 'the client logs it at debug level only');
  });

  it('an expected error from the server is logged at debug level on both sides', async () => {
    serverLog.lines.length = 0;
    const clientLog = capturingLogger();
    const reply = await overRpc(client.asOps(), clientLog.log).call('lookup', { ino: ROOT_INO, name: Buffer.from('missing') });
    assert.deepEqual(reply.values, [2]);
    assert.deepEqual(failures(serverLog.lines).map((l) => l.level), [DEBUG_LEVEL]);
    assert.deepEqual(failures(clientLog.lines).map((l) => l.level), [DEBUG_LEVEL]);
  });

  it('a lost server is reported by the client, the only process that knows', async () => {
    const other = await RpcClient.connect(join(dir, 'sock'));
    other.close();
    const clientLog = capturingLogger();
    const reply = await overRpc(other.asOps(), clientLog.log).call('lookup', { ino: ROOT_INO, name: Buffer.from('x') });
    assert.deepEqual(reply.values, [107]); // ENOTCONN
    assert.equal(failures(clientLog.lines).length, 1);
  });
});
