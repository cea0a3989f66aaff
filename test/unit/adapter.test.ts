// The FUSE adapter's handlers, called as the binding calls them: a failure is logged once, in the process where
// it happened.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino, type Logger } from 'pino';
import { FsError } from '../../src/errors.js';
import { fuseHandlers } from '../../src/fuse/adapter.js';
import type { Ops } from '../../src/fs/ops.js';
import { RpcClient } from '../../src/rpc/client.js';
import { MAX_DATA_BYTES } from '../../src/rpc/frame.js';
import { RpcServer } from '../../src/rpc/server.js';

type Handler = (...args: unknown[]) => void;

/** Calls a handler as the binding does and resolves with what it passed to its callback. */
function callHandler(handlers: unknown, op: string, args: unknown[]): Promise<unknown[]> {
  const handler = (handlers as Record<string, Handler>)[op];
  assert.ok(handler, `no handler for ${op}`);
  return new Promise((resolve) => handler(...args, (...reply: unknown[]) => resolve(reply)));
}

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
    const [errno] = await callHandler(fuseHandlers(client.asOps(), clientLog.log), 'write', ['/f', 3, big, big.length, 0]);
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
