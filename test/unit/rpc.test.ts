// The RPC over a real unix socket, with a stand-in core: framing edge cases, concurrency, large payloads,
// and every kind of malformed input, after each of which the server must still serve other connections.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import { FsError, loggedElsewhere, RemoteFsError } from '../../src/errors.js';
import type { Attr, Ops } from '../../src/fs/ops.js';
import { silentLogger } from '../../src/log.js';
import { RpcClient } from '../../src/rpc/client.js';
import { encodeFrame, FrameDecoder, FrameError, HEADER_BYTES, MAGIC, MAX_DATA_BYTES } from '../../src/rpc/frame.js';
import { RpcServer } from '../../src/rpc/server.js';

const ATTR: Attr = { mode: 0o100644, size: 3, nlink: 1, uid: 0, gid: 0, atime: { sec: 1, nsec: 2 }, mtime: { sec: 3, nsec: 4 }, ctime: { sec: 5, nsec: 6 } };

/** A core that answers from memory: enough to see each op's arguments and results cross the socket intact. */
function fakeCore(): Ops & { written: Map<number, Buffer> } {
  const written = new Map<number, Buffer>();
  const core = {
    written,
    getattr: async (path: string) => {
      if (path === '/missing') throw new FsError('ENOENT', 'no such file');
      if (path === '/bug') throw new TypeError('a bug in the core');
      if (path === '/slow') await new Promise((r) => setTimeout(r, 50));
      return { ...ATTR, size: path.length };
    },
    readdir: async () => ['.', '..', 'a', 'ü b'],
    read: async (_p: string, _fh: number, length: number, position: number) => Buffer.alloc(length, position % 251),
    write: async (_p: string, fh: number, data: Buffer) => {
      written.set(fh, Buffer.from(data));
      return data.length;
    },
    utimens: async () => undefined,
  };
  return core as unknown as Ops & { written: Map<number, Buffer> };
}

describe('frame codec', () => {
  const frames = [
    { json: { id: 1, method: 'getattr', args: ['/a'] }, data: undefined },
    { json: { id: 2, result: 'x'.repeat(1000) }, data: Buffer.alloc(70_000, 9) },
    { json: [1, 2, { deep: [null, true] }], data: Buffer.from('tail') },
  ];
  const wire = Buffer.concat(frames.flatMap((f) => encodeFrame(f.json, f.data)));

  it('decodes several frames from one packet', () => {
    const out = new FrameDecoder().push(wire);
    assert.equal(out.length, 3);
    out.forEach((f, i) => {
      assert.deepEqual(f.json, frames[i]!.json);
      assert.deepEqual(f.data, frames[i]!.data);
    });
  });

  it('decodes a frame split across many packets, one byte at a time', () => {
    const d = new FrameDecoder();
    const out = [];
    for (let i = 0; i < wire.length; i++) out.push(...d.push(wire.subarray(i, i + 1)));
    assert.equal(out.length, 3);
    assert.deepEqual(out[1]!.data, frames[1]!.data);
    assert.equal(d.pendingBytes, 0);
  });

  it('rejects a bad magic, an oversized length, a bad checksum and bad JSON', () => {
    const bad = (mutate: (b: Buffer) => void) => {
      const b = Buffer.from(Buffer.concat(encodeFrame({ ok: 1 })));
      mutate(b);
      return () => new FrameDecoder().push(b);
    };
    assert.throws(bad((b) => b.writeUInt32BE(0xdeadbeef, 0)), FrameError);
    assert.throws(bad((b) => b.writeUInt32BE(MAX_DATA_BYTES + 1, 8)), /exceeds/);
    assert.throws(bad((b) => b.writeUInt32BE(0xffffffff, 4)), /exceeds/);
    assert.throws(bad((b) => (b[b.length - 1] = 0x20)), /checksum/);
    const text = Buffer.from('{nope');
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32BE(MAGIC, 0);
    header.writeUInt32BE(text.length, 4);
    header.writeUInt32BE(crc32(text), 12);
    assert.throws(() => new FrameDecoder().push(Buffer.concat([header, text])), /not valid JSON/);
  });
});

describe('RPC client and server over a unix socket', () => {
  let dir: string;
  let socketPath: string;
  let server: RpcServer;
  let core: ReturnType<typeof fakeCore>;
  let client: RpcClient;
  let ops: Ops;
  let keepaliveLost = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bm-rpc-'));
    socketPath = join(dir, 'sock');
    core = fakeCore();
    server = new RpcServer({
      socketPath,
      core,
      log: silentLogger(),
      info: () => ({ pid: process.pid, mountpoint: '/mnt/x', rootName: 'tahoe' }),
      onKeepalive: () => undefined,
      onKeepaliveLost: () => keepaliveLost++,
      onShutdownRequest: () => undefined,
    });
    await server.listen();
    client = await RpcClient.connect(socketPath);
    ops = client.asOps({ localIo: false }); // read and write carry their bytes here (split-io.test.ts has the rest)
  });

  after(async () => {
    client?.close();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('carries results, errnos and bug reports', async () => {
    assert.deepEqual(await ops.getattr('/abc'), { ...ATTR, size: 4 });
    assert.deepEqual(await ops.readdir('/'), ['.', '..', 'a', 'ü b']);
    await assert.rejects(ops.getattr('/missing'), (e: FsError) => e.code === 'ENOENT' && /no such file/.test(e.message));
    await assert.rejects(ops.getattr('/bug'), (e: FsError) => e.code === 'EIO');
    assert.deepEqual(await client.info(), { pid: process.pid, mountpoint: '/mnt/x', rootName: 'tahoe' });
  });

  it('marks the errors that came back from the server, and only those, as logged there', async () => {
    await assert.rejects(ops.getattr('/missing'), (e: FsError) => e instanceof RemoteFsError && loggedElsewhere(e));
    await assert.rejects(ops.getattr('/bug'), (e: FsError) => e instanceof RemoteFsError && loggedElsewhere(e) && e.code === 'EIO');
    const big = Buffer.alloc(MAX_DATA_BYTES + 1);
    await assert.rejects(ops.write('/f', 1, big, 0), (e: FsError) => e instanceof FsError && !loggedElsewhere(e));
  });

  it('maps an errno name this platform does not know (or an inherited property name) to EIO', () => {
    for (const code of ['EWHATEVER', 'toString', '__proto__', 42, undefined]) assert.equal(new RemoteFsError(code, 'm').code, 'EIO');
    assert.equal(new RemoteFsError('ENOENT', 'm').errno, 2);
  });

  it('answers 200 concurrent calls, each with its own reply', async () => {
    const paths = Array.from({ length: 200 }, (_, i) => (i % 7 === 0 ? '/slow' : '/' + 'p'.repeat(i)));
    const results = await Promise.all(paths.map((p) => ops.getattr(p)));
    results.forEach((attr, i) => assert.equal(attr.size, paths[i]!.length));
  });

  it('moves a 1 MiB payload both ways as raw bytes', async () => {
    const data = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 256;
    assert.equal(await ops.write('/f', 77, data, 0), data.length);
    assert.ok(core.written.get(77)!.equals(data));
    const back = await ops.read('/f', 1, 1024 * 1024, 500);
    assert.equal(back.length, 1024 * 1024);
    assert.equal(back[0], 500 % 251);
  });

  /** Sends raw bytes on a fresh connection and returns what came back before the server closed it (if it did). */
  async function raw(bytes: Buffer, waitForCloseMs = 2_000): Promise<{ closed: boolean; reply: Buffer }> {
    const socket: Socket = connect(socketPath);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.write(bytes);
    const closed = await new Promise<boolean>((r) => {
      const timer = setTimeout(() => r(false), waitForCloseMs);
      socket.once('close', () => {
        clearTimeout(timer);
        r(true);
      });
    });
    socket.destroy();
    return { closed, reply: Buffer.concat(chunks) };
  }

  function decodeReplies(bytes: Buffer): unknown[] {
    return new FrameDecoder().push(bytes).map((f) => f.json);
  }

  it('drops a connection that sends garbage, a bad checksum, an oversized length or malformed JSON', async () => {
    const oversized = Buffer.alloc(HEADER_BYTES);
    oversized.writeUInt32BE(MAGIC, 0);
    oversized.writeUInt32BE(0xfffffff0, 4);
    const badChecksum = Buffer.concat(encodeFrame({ id: 1, method: 'getattr', args: ['/'] }));
    badChecksum.writeUInt32BE(1, 12);
    const notJson = Buffer.from('{"id":');
    const notJsonFrame = Buffer.alloc(HEADER_BYTES);
    notJsonFrame.writeUInt32BE(MAGIC, 0);
    notJsonFrame.writeUInt32BE(notJson.length, 4);
    notJsonFrame.writeUInt32BE(crc32(notJson), 12);
    for (const bytes of [Buffer.from('GET / HTTP/1.1\r\n\r\n'), badChecksum, oversized, Buffer.concat([notJsonFrame, notJson]), Buffer.concat(encodeFrame(['not', 'a', 'request']))]) {
      const { closed } = await raw(bytes);
      assert.ok(closed, `connection kept after ${bytes.subarray(0, 20).toString('hex')}`);
    }
    assert.deepEqual(await ops.readdir('/'), ['.', '..', 'a', 'ü b'], 'the good connection still works');
  });

  it('answers an unknown method and wrong arguments with an error, and keeps the connection', async () => {
    const requests = [
      { id: 1, method: 'format_disk', args: [] },
      { id: 2, method: 'getattr', args: [] },
      { id: 3, method: 'getattr', args: [42] },
      { id: 4, method: 'write', args: ['/f', 1, '0'] }, // a position that is not a number (no data bytes is an empty Buffer)
      { id: 5, method: '__proto__', args: [] },
      { id: 6, method: 'getattr', args: ['/ok'] },
    ];
    const { closed, reply } = await raw(Buffer.concat(requests.flatMap((r) => encodeFrame(r))), 500);
    assert.equal(closed, false);
    const replies = decodeReplies(reply) as Array<{ id: number; error?: { code: string }; result?: Attr }>;
    const byId = new Map(replies.map((r) => [r.id, r]));
    assert.equal(byId.get(1)?.error?.code, 'ENOSYS');
    assert.equal(byId.get(2)?.error?.code, 'EINVAL');
    assert.equal(byId.get(3)?.error?.code, 'EINVAL');
    assert.equal(byId.get(4)?.error?.code, 'EINVAL');
    assert.equal(byId.get(5)?.error?.code, 'ENOSYS');
    assert.equal(byId.get(6)?.result?.size, 3);
  });

  it('fails a request that cannot be sent at once, and keeps nothing pending for it', async () => {
    const before = client.pendingCalls;
    const big = Buffer.alloc(MAX_DATA_BYTES + 1);
    await assert.rejects(ops.write('/f', 1, big, 0), (e: FsError) => e instanceof FsError && e.code === 'EIO' && /not sent.*exceeds/.test(e.message));
    assert.equal(client.pendingCalls, before);
    assert.deepEqual(await ops.readdir('/'), ['.', '..', 'a', 'ü b'], 'the connection still works');
  });

  it('never keeps the process alive for a pending call (the connection does, while it is open)', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const slow = Promise.all(Array.from({ length: 5 }, () => ops.getattr('/slow')));
    assert.equal(client.pendingCalls, 5);
    assert.equal(timers(), before);
    await slow;
  });

  it('fails every pending call at once when the connection is lost', async () => {
    const other = await RpcClient.connect(socketPath);
    const slow = other.asOps().getattr('/slow');
    other.close();
    await assert.rejects(slow, (e: FsError) => e.code === 'ENOTCONN');
    await assert.rejects(other.asOps().getattr('/x'), (e: FsError) => e.code === 'ENOTCONN');
  });

  it('reports the loss of a keepalive connection', async () => {
    const k = await RpcClient.connect(socketPath);
    await k.keepalive();
    const before = keepaliveLost;
    k.close();
    for (let i = 0; i < 100 && keepaliveLost === before; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(keepaliveLost, before + 1);
  });
});
