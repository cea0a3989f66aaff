// The FUSE adapter's handlers, called as the binding calls them, over a fake core that records its arguments:
// paths reach the core in Unicode NFC, and a failure is logged once, in the process where it happened.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino, type Logger } from 'pino';
import { FsError } from '../../src/errors.js';
import { fuseHandlers } from '../../src/fuse/adapter.js';
import { OP_NAMES, type Attr, type OpName, type Ops } from '../../src/fs/ops.js';
import { silentLogger } from '../../src/log.js';
import { RpcClient } from '../../src/rpc/client.js';
import { MAX_DATA_BYTES } from '../../src/rpc/frame.js';
import { RpcServer } from '../../src/rpc/server.js';

const ATTR: Attr = { mode: 0o100644, size: 3, nlink: 1, uid: 0, gid: 0, atime: { sec: 1, nsec: 2 }, mtime: { sec: 3, nsec: 4 }, ctime: { sec: 5, nsec: 6 } };
const STATFS = { bsize: 4096, frsize: 4096, blocks: 1, bfree: 1, bavail: 1, files: 1, ffree: 1, favail: 1, namemax: 255 };

/** "café/déjà" with every accent as a combining mark (NFD), as macOS and some tools write names. */
const NFD = '/cafe\u0301/de\u0301ja\u0300';
const NFD2 = '/re\u0301sume\u0301';
const NFC = NFD.normalize('NFC');
const NFC2 = NFD2.normalize('NFC');

type Call = { op: string; args: unknown[] };

/** A core that records every call and answers with a plausible value. */
function recordingCore(withReadInto: boolean): { ops: Ops; calls: Call[] } {
  const calls: Call[] = [];
  const answers: Partial<Record<OpName, unknown>> = { getattr: ATTR, fgetattr: ATTR, readdir: ['a'], statfs: STATFS, open: 1, create: 1, write: 3 };
  const ops: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
  for (const op of OP_NAMES) {
    ops[op] = async (...args) => {
      calls.push({ op, args });
      return op === 'read' ? Buffer.from('abc') : answers[op];
    };
  }
  if (withReadInto) {
    ops.readInto = async (...args) => {
      calls.push({ op: 'readInto', args });
      return 0;
    };
  }
  return { ops: ops as unknown as Ops, calls };
}

type Handler = (...args: unknown[]) => void;

/** Calls a handler as the binding does and resolves with what it passed to its callback. */
function callHandler(handlers: unknown, op: string, args: unknown[]): Promise<unknown[]> {
  const handler = (handlers as Record<string, Handler>)[op];
  assert.ok(handler, `no handler for ${op}`);
  return new Promise((resolve) => handler(...args, (...reply: unknown[]) => resolve(reply)));
}

/**
 * The binding's arguments for each op, with NFD paths; and the path arguments the core must see. The ops
 * libfuse 2 has no request for (readdirplus, and split mode's readSource, beginWrite, endWrite) are left out.
 */
const BINDING_CALLS: Partial<Record<OpName, { args: unknown[]; corePaths: string[] }>> = {
  getattr: { args: [NFD], corePaths: [NFC] },
  fgetattr: { args: [NFD, 3], corePaths: [NFC] },
  readdir: { args: [NFD], corePaths: [NFC] },
  access: { args: [NFD, 0], corePaths: [NFC] },
  statfs: { args: [NFD], corePaths: [NFC] },
  open: { args: [NFD, 0], corePaths: [NFC] },
  create: { args: [NFD, 0o644], corePaths: [NFC] },
  read: { args: [NFD, 3, Buffer.alloc(8), 8, 0], corePaths: [NFC] },
  write: { args: [NFD, 3, Buffer.from('abc'), 3, 0], corePaths: [NFC] },
  flush: { args: [NFD, 3], corePaths: [NFC] },
  fsync: { args: [NFD, 1, 3], corePaths: [NFC] },
  release: { args: [NFD, 3], corePaths: [NFC] },
  truncate: { args: [NFD, 5], corePaths: [NFC] },
  ftruncate: { args: [NFD, 3, 5], corePaths: [NFC] },
  mkdir: { args: [NFD, 0o755], corePaths: [NFC] },
  rmdir: { args: [NFD], corePaths: [NFC] },
  unlink: { args: [NFD], corePaths: [NFC] },
  rename: { args: [NFD, NFD2], corePaths: [NFC, NFC2] },
  link: { args: [NFD, NFD2], corePaths: [NFC, NFC2] },
  utimens: { args: [NFD, 1_000_000_001n, 2_000_000_002n], corePaths: [NFC] },
  chmod: { args: [NFD, 0o600], corePaths: [NFC] },
  chown: { args: [NFD, 1, 2], corePaths: [NFC] },
};

describe('FUSE adapter: paths reach the core in NFC', () => {
  it('normalizes every path argument of every op, once, before the core sees it', async () => {
    assert.notEqual(NFD, NFC);
    const { ops, calls } = recordingCore(false);
    const handlers = fuseHandlers(ops, silentLogger());
    for (const op of Object.keys(BINDING_CALLS) as OpName[]) {
      const { args, corePaths } = BINDING_CALLS[op]!;
      calls.length = 0;
      const reply = await callHandler(handlers, op, args);
      assert.ok(typeof reply[0] === 'number' && reply[0] >= 0, `${op} failed: ${String(reply[0])}`);
      assert.equal(calls.length, 1, op);
      assert.equal(calls[0]!.op, op);
      assert.deepEqual(calls[0]!.args.slice(0, corePaths.length), corePaths, op);
    }
  });

  it('normalizes the path of a local read into the kernel buffer too', async () => {
    const { ops, calls } = recordingCore(true);
    await callHandler(fuseHandlers(ops, silentLogger()), 'read', [NFD, 3, Buffer.alloc(8), 8, 0]);
    assert.deepEqual(calls.map((c) => [c.op, c.args[0]]), [['readInto', NFC]]);
  });

  it('passes an empty path for a handle op that comes without one (a file unlinked while open)', async () => {
    const { ops, calls } = recordingCore(false);
    await callHandler(fuseHandlers(ops, silentLogger()), 'release', [undefined, 3]);
    assert.deepEqual(calls[0]!.args, ['', 3]);
  });

  it('leaves names that are already NFC alone', async () => {
    const { ops, calls } = recordingCore(false);
    await callHandler(fuseHandlers(ops, silentLogger()), 'getattr', ['/plain/ascii name']);
    assert.deepEqual(calls[0]!.args, ['/plain/ascii name']);
  });
});

interface LogLine {
  level: number;
  msg: string;
  op?: string;
  errno?: number;
}

/** A debug-level logger whose lines land in an array. */
function capturingLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { log, lines };
}

const ERROR_LEVEL = 50;
const DEBUG_LEVEL = 20;
const failures = (lines: LogLine[]) => lines.filter((l) => l.msg === 'failed');

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
      write: async (_p: string, _fh: number, data: Buffer) => data.length,
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

  it('a bug in the server is logged as an error by the server only; the client logs it at debug level', async () => {
    serverLog.lines.length = 0;
    const clientLog = capturingLogger();
    const [errno] = await callHandler(fuseHandlers(client.asOps(), clientLog.log), 'getattr', ['/bug']);
    assert.equal(errno, -5);
    const serverErrors = failures(serverLog.lines).filter((l) => l.level === ERROR_LEVEL);
    assert.equal(serverErrors.length, 1, 'the server logs the bug with its stack');
    assert.deepEqual(failures(clientLog.lines).map((l) => l.level), [DEBUG_LEVEL], 'the client logs it at debug level only');
  });

  it('an expected error from the server is logged at debug level on both sides', async () => {
    serverLog.lines.length = 0;
    const clientLog = capturingLogger();
    const [errno] = await callHandler(fuseHandlers(client.asOps(), clientLog.log), 'getattr', ['/missing']);
    assert.equal(errno, -2);
    assert.deepEqual(failures(serverLog.lines).map((l) => l.level), [DEBUG_LEVEL]);
    assert.deepEqual(failures(clientLog.lines).map((l) => l.level), [DEBUG_LEVEL]);
  });

  it('a failure born in the client (a request that cannot be sent) is logged by the client as an error', async () => {
    serverLog.lines.length = 0;
    const clientLog = capturingLogger();
    const big = Buffer.alloc(MAX_DATA_BYTES + 1);
    const [errno] = await callHandler(fuseHandlers(client.asOps({ localIo: false }), clientLog.log), 'write', ['/f', 3, big, big.length, 0]);
    assert.equal(errno, -5);
    assert.deepEqual(failures(clientLog.lines).map((l) => l.level), [ERROR_LEVEL]);
    assert.deepEqual(failures(serverLog.lines), [], 'the server never saw it');
  });

  it('a lost server is reported by the client, the only process that knows', async () => {
    const other = await RpcClient.connect(join(dir, 'sock'));
    other.close();
    const clientLog = capturingLogger();
    const [errno] = await callHandler(fuseHandlers(other.asOps(), clientLog.log), 'getattr', ['/x']);
    assert.equal(errno, -107); // ENOTCONN
    assert.equal(failures(clientLog.lines).length, 1);
  });
});
