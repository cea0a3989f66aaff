// The delay proxy (grid/delay-proxy.ts) over real loopback sockets: bytes intact and in order both ways,
// nothing delivered before its delay, half-close, resets, backpressure, and close() freeing its port.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { startDelayProxy, type DelayProxy } from '../../grid/delay-proxy.js';

const MiB = 1024 * 1024;

/** A target server; each accepted socket goes to onSocket. */
async function listen(onSocket: (s: Socket) => void): Promise<Server & { port: number }> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined); // the proxy's close() resets what is still open
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return Object.assign(server, { port: (server.address() as AddressInfo).port });
}

function dial(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Everything s sends until its end (bounded). */
function readAll(s: Socket, boundMs = 30_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error('readAll: no end within bound')), boundMs);
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts));
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

function closed(s: Socket, boundMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve();
    const timer = setTimeout(() => reject(new Error('socket not closed within bound')), boundMs);
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Writes data in pieces of random sizes (so that chunks cross the proxy cut in many ways), then ends. */
function writeInPieces(s: Socket, data: Buffer): void {
  let off = 0;
  while (off < data.length) {
    const n = Math.min(data.length - off, 1 + Math.floor(Math.random() * 200_000));
    s.write(data.subarray(off, off + n));
    off += n;
  }
  s.end();
}

describe('delay proxy', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const f of cleanups.splice(0).reverse()) await f();
  });
  async function proxyTo(targetPort: number, delayMs: number): Promise<DelayProxy> {
    const p = await startDelayProxy({ targetPort, delayMs });
    cleanups.push(() => p.close());
    return p;
  }
  async function target(onSocket: (s: Socket) => void): Promise<Server & { port: number }> {
    const server = await listen(onSocket);
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    return server;
  }

  it('carries a large random transfer intact and in order in both directions at once', async () => {
    const up = randomBytes(24 * MiB + 17);
    const down = randomBytes(20 * MiB + 3);
    let serverGot: Promise<Buffer> | undefined;
    const server = await target((s) => {
      serverGot = readAll(s);
      writeInPieces(s, down);
    });
    const proxy = await proxyTo(server.port, 5);
    const client = await dial(proxy.port);
    const clientGot = readAll(client);
    writeInPieces(client, up);
    const got = await clientGot;
    assert.equal(got.length, down.length);
    assert.ok(got.equals(down), 'server-to-client bytes intact and in order');
    const atServer = await serverGot!;
    assert.equal(atServer.length, up.length);
    assert.ok(atServer.equals(up), 'client-to-server bytes intact and in order');
    await closed(client);
  });

  it('delivers nothing before its delay: one echo takes at least two delays', async () => {
    const D = 25;
    const server = await target((s) => s.pipe(s));
    const proxy = await proxyTo(server.port, D);
    const client = await dial(proxy.port);
    cleanups.push(() => void client.destroy());
    const echoed = new Promise<number>((resolve) => client.once('data', () => resolve(performance.now())));
    const t0 = performance.now();
    client.write('x');
    const elapsed = (await echoed) - t0;
    // A lower bound on the order of events (held D each way), not a speed assertion.
    assert.ok(elapsed >= 2 * D - 1, `echo came back after ${elapsed.toFixed(2)} ms, before 2 x ${D} ms`);
  });

  it('propagates a half-close each way: the other direction keeps working', async () => {
    // The client ends first; the server answers after seeing the end, then ends.
    const server = await target((s) => {
      void readAll(s).then((req) => {
        s.write(Buffer.concat([Buffer.from('got:'), req]));
        s.end();
      });
    });
    const proxy = await proxyTo(server.port, 5);
    const client = await dial(proxy.port);
    const answer = readAll(client);
    client.end('question');
    assert.equal((await answer).toString(), 'got:question');
    await closed(client);

    // The server ends first; the client can still send, and the server sees it.
    let fromClient: Promise<Buffer> | undefined;
    const server2 = await target((s) => {
      fromClient = readAll(s);
      s.end('bye');
    });
    const proxy2 = await proxyTo(server2.port, 5);
    const client2 = await dial(proxy2.port);
    assert.equal((await readAll(client2)).toString(), 'bye');
    client2.end('still here');
    assert.equal((await fromClient!).toString(), 'still here');
    await closed(client2);
  });

  it('passes a reset on after the bytes sent before it, and closes a client whose target is down', async () => {
    // The reset leaves the target 20 ms after the bytes, so the proxy has read them; it must hold it behind them.
    const server = await target((s) => {
      s.write('last words');
      setTimeout(() => s.resetAndDestroy(), 20);
    });
    const proxy = await proxyTo(server.port, 100);
    const client = await dial(proxy.port);
    client.on('error', () => undefined);
    const got: Buffer[] = [];
    client.on('data', (d: Buffer) => got.push(d));
    await closed(client);
    assert.equal(Buffer.concat(got).toString(), 'last words');
    assert.equal(client.readableEnded, false, 'a reset is passed on as a reset, not as a clean end');

    const down = await listen(() => undefined);
    const downPort = down.port;
    await new Promise<void>((r) => down.close(() => r()));
    const proxy2 = await proxyTo(downPort, 5);
    const client2 = await dial(proxy2.port);
    client2.on('error', () => undefined);
    await closed(client2);
  });

  it('pushes back on a sender whose receiver does not read, then delivers everything once it does', async () => {
    let receiver: Socket | undefined;
    const server = await target((s) => {
      s.pause();
      receiver = s;
    });
    const proxy = await proxyTo(server.port, 5);
    const client = await dial(proxy.port);
    const data = randomBytes(96 * MiB);
    client.write(data);
    client.end();
    await new Promise((r) => setTimeout(r, 500));
    // Kernel buffers on three sockets plus the proxy's bounded queue hold far less than 96 MiB.
    assert.ok(client.writableLength > 32 * MiB, `only ${client.writableLength} bytes left unsent: the proxy did not push back`);
    const all = readAll(receiver!, 60_000);
    receiver!.resume();
    assert.ok((await all).equals(data));
    receiver!.end();
    await closed(client);
  });

  it('close() destroys every connection and frees its port', async () => {
    const server = await target(() => undefined);
    const proxy = await startDelayProxy({ targetPort: server.port, delayMs: 5 });
    const client = await dial(proxy.port);
    client.on('error', () => undefined);
    await new Promise((r) => setTimeout(r, 50)); // let the proxy's upstream connect
    assert.equal(proxy.connections, 1);
    await proxy.close();
    await closed(client);
    assert.equal(proxy.connections, 0);
    await proxy.close(); // twice is fine
    const again = createServer();
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.listen(proxy.port, '127.0.0.1', () => resolve());
    });
    await new Promise<void>((r) => again.close(() => r()));
  });
});
