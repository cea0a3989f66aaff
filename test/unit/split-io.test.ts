// Split mode without bulk data on the socket: an RPC client and server over a real unix socket, on a core over
// the in-memory Tahoe. The client reads and writes the server's local files itself (readSource, beginWrite,
// endWrite); no read or write frame carries file bytes, except a literal file's read. Writes and uploads take
// turns on the staging file, and a client's hold on it is bounded. Change events cross as notifications.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import type { Ops } from '../../src/fs/ops.js';
import { RpcClient } from '../../src/rpc/client.js';
import { FramedConnection } from '../../src/rpc/connection.js';
import { encodeFrame } from '../../src/rpc/frame.js';
import { RpcServer } from '../../src/rpc/server.js';
import { encodeBase32 } from '../../src/tahoe/base32.js';
import type { FakeTahoe } from '../support/fake-tahoe.js';
import { bounded, coresPerTest, isUpload, log, type Core, type StartCoreOptions } from '../support/core.js';

const O_RDONLY = 0;
const O_WRONLY = 1;
const BLOCK = 128 * 1024;

/** Frames that carried raw bytes, both ways (client and server run in this process). */
let dataFrames = 0;
const plainSend = FramedConnection.prototype.send;
before(() => {
  FramedConnection.prototype.send = function (this: FramedConnection, json: unknown, data?: Buffer) {
    if (data && data.length > 0) dataFrames++;
    plainSend.call(this, json, data);
  };
});
after(() => {
  FramedConnection.prototype.send = plainSend;
});

interface Served {
  core: Core;
  ops: Ops;
  client: RpcClient;
  /** Core methods the server called, in order. */
  calls: string[];
}

describe('split mode: reads and writes through local files', () => {
  let fake: FakeTahoe;
  const cores = coresPerTest((f) => (fake = f));
  let dir: string;
  const cleanups: Array<() => Promise<void>> = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bm-split-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A core behind an RPC server on a fresh socket, a client connected to it, and what the core was asked. */
  async function serve(opts: StartCoreOptions = {}): Promise<Served> {
    const core = await cores.start(opts);
    const calls: string[] = [];
    const counted = new Proxy(core.fs, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          calls.push(String(key));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const socketPath = join(dir, `s${cleanups.length}-${randomBytes(3).toString('hex')}`);
    const server = new RpcServer({
      socketPath, core: counted, log,
      info: () => ({ pid: process.pid, mountpoint: '/mnt', rootName: 'test' }),
      onKeepalive: () => undefined, onKeepaliveLost: () => undefined, onShutdownRequest: () => undefined,
    });
    await server.listen();
    const client = await RpcClient.connect(socketPath);
    // Stopped before the core (coresPerTest stops it after this test's afterEach).
    cleanups.push(async () => {
      client.close();
      await server.close();
    });
    return { core, ops: client.asOps(), client, calls };
  }

  async function readAllInto(ops: Ops, path: string, fh: number, size: number, chunk = BLOCK): Promise<Buffer> {
    const out = Buffer.alloc(size + 10);
    let position = 0;
    for (;;) {
      const n = await ops.readInto!(path, fh, out.subarray(position, position + chunk), position);
      if (n === 0) break;
      position += n;
    }
    return out.subarray(0, position);
  }

  it('reads a cached immutable file from its cache file, twice, with no bytes on the socket', async () => {
    const bytes = randomBytes(3 * BLOCK + 1234);
    fake.link(fake.rootCap, 'big', fake.addFile(bytes));
    const { ops, calls, client } = await serve();
    const before = dataFrames;
    for (let i = 0; i < 2; i++) {
      const fh = await ops.open('/big', O_RDONLY);
      assert.ok((await readAllInto(ops, '/big', fh, bytes.length)).equals(bytes));
      assert.ok(client.localFiles.size > 0);
      await ops.release('/big', fh);
      assert.equal(client.localFiles.size, 0, 'descriptors closed at release');
    }
    assert.equal(dataFrames, before);
    assert.ok(calls.includes('readSource'));
    assert.ok(!calls.includes('read'));
  });

  it('reads cached bytes again without asking; a write through another handle makes every handle read the new bytes', async () => {
    const bytes = randomBytes(3 * BLOCK + 1234);
    fake.link(fake.rootCap, 'f', fake.addFile(bytes));
    const { ops, calls } = await serve();
    const reader = await ops.open('/f', O_RDONLY);
    assert.ok((await readAllInto(ops, '/f', reader, bytes.length)).equals(bytes));
    const asked = calls.filter((c) => c === 'readSource').length;
    assert.ok((await readAllInto(ops, '/f', reader, bytes.length)).equals(bytes));
    assert.equal(calls.filter((c) => c === 'readSource').length, asked, 'the whole file was known present: no question the second time');
    const writer = await ops.open('/f', O_WRONLY);
    assert.equal(await ops.write('/f', writer, Buffer.from('NEW'), 10), 3);
    const expected = Buffer.from(bytes);
    expected.write('NEW', 10);
    assert.ok((await readAllInto(ops, '/f', reader, bytes.length)).equals(expected), 'the reader sees the write');
    await ops.flush('/f', writer);
    await ops.release('/f', writer);
    await ops.release('/f', reader);
    assert.ok(fake.bytes(fake.entry(fake.rootCap, 'f')!.roUri)!.equals(expected));
  });

  it('a failed endWrite that the write did not wait for is reported by the next op on the handle', async () => {
    const { ops, client } = await serve();
    const fh = await ops.create('/g', 0o644, 0, 0);
    const realCall = client.call.bind(client);
    client.call = (method, args, data, deadline) =>
      method === 'endWrite' ? Promise.reject(new Error('endWrite failed on purpose')) : realCall(method, args, data, deadline);
    assert.equal(await ops.write('/g', fh, Buffer.from('abc'), 0), 3, 'the write itself returns at once');
    await assert.rejects(ops.flush('/g', fh), /endWrite failed on purpose/);
    client.call = realCall;
    await ops.flush('/g', fh);
    await ops.release('/g', fh);
  });

  it('reads a mutable file from its snapshot, and a literal file as bytes (it has no local file)', async () => {
    const mutable = randomBytes(BLOCK + 7);
    fake.link(fake.rootCap, 'mutable', fake.createMutableFile(mutable));
    const literal = Buffer.from('a literal file: its bytes are in its cap');
    fake.link(fake.rootCap, 'literal', `URI:LIT:${encodeBase32(literal)}`);
    const { ops, calls } = await serve();
    const before = dataFrames;
    let fh = await ops.open('/mutable', O_RDONLY);
    assert.ok((await readAllInto(ops, '/mutable', fh, mutable.length, 4096)).equals(mutable));
    await ops.release('/mutable', fh);
    assert.equal(dataFrames, before);
    assert.ok(!calls.includes('read'));
    fh = await ops.open('/literal', O_RDONLY);
    assert.equal((await readAllInto(ops, '/literal', fh, literal.length)).toString(), literal.toString());
    await ops.release('/literal', fh);
    assert.ok(calls.includes('read'), 'a literal file is read as bytes');
  });

  it('writes into the staging file itself, reads it back, and stores it; a partial overwrite keeps the rest', async () => {
    const { ops, calls, core } = await serve();
    const before = dataFrames;
    const fh = await ops.create('/w', 0o644, 0, 0);
    const first = randomBytes(2 * BLOCK);
    assert.equal(await ops.write('/w', fh, first, 0), first.length);
    assert.equal(await ops.write('/w', fh, Buffer.from('PATCH'), 100), 5);
    first.write('PATCH', 100);
    assert.equal((await ops.getattr('/w')).size, first.length);
    assert.ok((await readAllInto(ops, '/w', fh, first.length)).equals(first));
    await ops.flush('/w', fh);
    await ops.release('/w', fh);
    assert.ok(fake.bytes(fake.entry(fake.rootCap, 'w')!.roUri)!.equals(first));

    const again = await ops.open('/w', O_WRONLY);
    await ops.write('/w', again, Buffer.from('tail'), first.length + 2); // past the end: a hole of zeros
    await ops.release('/w', again);
    const expected = Buffer.concat([first, Buffer.alloc(2), Buffer.from('tail')]);
    assert.ok(fake.bytes(fake.entry(fake.rootCap, 'w')!.roUri)!.equals(expected));
    const reader = await ops.open('/w', O_RDONLY);
    assert.ok((await readAllInto(ops, '/w', reader, expected.length)).equals(expected));
    await ops.release('/w', reader);

    assert.equal(dataFrames, before, 'no frame carried file bytes');
    assert.ok(!calls.includes('write') && !calls.includes('read'));
    assert.ok(calls.includes('beginWrite') && calls.includes('endWrite'));
    // Only the same user may open what the client opens: the cache folders are 0700, their files 0600.
    for (const folder of [core.cache.root, core.cache.filesDir, core.cache.stagingDir, core.cache.tmpDir]) {
      assert.equal((await stat(folder)).mode & 0o777, 0o700, folder);
    }
  });

  it('an upload waits for a client write between beginWrite and endWrite', async () => {
    const { ops, client } = await serve();
    const fh = await ops.create('/f', 0o644, 0, 0);
    await ops.write('/f', fh, Buffer.from('old content'), 0);
    const staging = (await client.call('beginWrite', ['/f', fh, 0, 3])).result as string;
    assert.equal((await stat(staging)).mode & 0o777, 0o600);
    const uploadsBefore = fake.requests.filter(isUpload).length;
    let synced = false;
    const fsync = ops.fsync('/f', fh, false).then(() => (synced = true));
    await ops.getattr('/f'); // a round trip: the fsync reached the core
    assert.equal(fake.requests.filter(isUpload).length, uploadsBefore, 'no upload while the client writes');
    assert.equal(synced, false);
    const handle = await open(staging, 'r+');
    await handle.write(Buffer.from('NEW'), 0, 3, 0);
    await handle.close();
    await client.call('endWrite', ['/f', fh, 0, 3]);
    await bounded(fsync, 'fsync');
    assert.equal(fake.bytes(fake.entry(fake.rootCap, 'f')!.roUri)!.toString(), 'NEW content', 'the upload came after the write');
    await ops.release('/f', fh);
  });

  it('a client write waits for a write-back store in flight, and is stored after it', async () => {
    const { ops, core } = await serve({ writeBack: true });
    const fh = await ops.create('/f', 0o644, 0, 0);
    await ops.write('/f', fh, Buffer.from('version one'), 0);
    const held = fake.hold(isUpload);
    await ops.release('/f', fh); // write-back: stored in the background
    await bounded(held.arrived, 'upload');
    const again = await ops.open('/f', O_WRONLY);
    let wrote = false;
    const writing = ops.write('/f', again, Buffer.from('VERSION TWO'), 0).then(() => (wrote = true));
    await ops.getattr('/f'); // a round trip: the write's beginWrite reached the core
    assert.equal(wrote, false, 'the write waits while the upload reads the staging file');
    held.release();
    await bounded(writing, 'write');
    await ops.release('/f', again);
    const report = await bounded(core.fs.sync(), 'sync');
    assert.deepEqual(report.failed, []);
    assert.equal(fake.bytes(fake.entry(fake.rootCap, 'f')!.roUri)!.toString(), 'VERSION TWO');
  });

  it('a hold without its endWrite ends after its bound, or when its handle is released', async () => {
    const { ops, client } = await serve({ writeHoldMs: 50 });
    const fh = await ops.create('/f', 0o644, 0, 0);
    await ops.write('/f', fh, Buffer.from('bytes'), 0);
    await client.call('beginWrite', ['/f', fh, 0, 5]); // the client "dies" before its write
    await bounded(ops.fsync('/f', fh, false), 'fsync after the hold expired');
    assert.equal(fake.bytes(fake.entry(fake.rootCap, 'f')!.roUri)!.toString(), 'bytes');
    await client.call('beginWrite', ['/f', fh, 5, 5]);
    await client.call('beginWrite', ['/f', fh, 9, 5]);
    await bounded(ops.release('/f', fh), 'release with holds left');
    assert.equal(fake.bytes(fake.entry(fake.rootCap, 'f')!.roUri)!.toString(), 'bytes');
  });

  it('refuses a client write on a handle opened read-only, and a range that is not one', async () => {
    fake.link(fake.rootCap, 'r', fake.addFile(Buffer.from('read only')));
    const { ops } = await serve();
    const fh = await ops.open('/r', O_RDONLY);
    await assert.rejects(ops.write('/r', fh, Buffer.from('x'), 0), { code: 'EBADF' });
    await assert.rejects(ops.readSource('/r', fh, -1, 10), { code: 'EINVAL' });
    await assert.rejects(ops.readSource('/r', fh, 0.5, 10), { code: 'EINVAL' });
    await ops.release('/r', fh);
  });

  it('pushes change events to a client that watches, as notifications', async () => {
    const { ops } = await serve({ cacheTimeoutMs: 0 });
    const events: Array<[string, string]> = [];
    let arrived!: () => void;
    const came = new Promise<void>((r) => (arrived = r));
    ops.watch!((dirPath, name) => {
      events.push([dirPath, name]);
      arrived();
    });
    await ops.readdir('/'); // after the watch request: the server handles frames in order
    fake.link(fake.rootCap, 'theirs', fake.addFile(Buffer.from('another client')));
    await ops.readdirplus('/');
    await bounded(came, 'change notification');
    assert.deepEqual(events, [['/', 'theirs']]);
  });
});

describe('RPC notifications', () => {
  let dir: string;
  let server: Server;
  let socketPath: string;
  let sendOnConnect: Buffer[] = [];
  const sockets = new Set<Socket>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bm-notify-'));
    socketPath = join(dir, 'sock');
    server = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined); // the client drops us: that is the point
      socket.on('close', () => sockets.delete(socket));
      for (const frame of sendOnConnect) socket.write(frame);
    });
    await new Promise<void>((r) => server.listen(socketPath, r));
  });
  after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  it('a client tells notifications from replies, and drops a server that sends a malformed one', async () => {
    sendOnConnect = [
      ...encodeFrame({ event: 'changed', args: ['/d', 'x', 'attributes'] }),
      ...encodeFrame({ event: 'changed', args: ['/d', 'y', 'everything'] }),
    ];
    const client = await RpcClient.connect(socketPath);
    const events: Array<[string, string, string]> = [];
    client.asOps().watch!((d, n, k) => events.push([d, n, k]));
    const lost = new Promise<string>((r) => client.onLost(r));
    assert.match(await bounded(lost, 'connection dropped'), /malformed/);
    assert.deepEqual(events, [['/d', 'x', 'attributes']]);
  });

  it('a notification with an id is not one: the peer is dropped', async () => {
    sendOnConnect = encodeFrame({ id: 1, event: 'changed', args: ['/d', 'x', 'entry'] });
    const client = await RpcClient.connect(socketPath);
    const events: unknown[] = [];
    client.asOps().watch!((d, n) => events.push([d, n]));
    const lost = new Promise<string>((r) => client.onLost(r));
    await bounded(lost, 'connection dropped');
    assert.deepEqual(events, []);
  });
});
