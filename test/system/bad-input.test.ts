// Bad input must get a clear answer and lose nothing: garbage on the RPC socket, directory entries that no
// POSIX directory can hold, and caps that must stay secret (process titles, mount options).
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { it } from 'node:test';
import { crc32 } from '@node-rs/crc32';
import { encodeFrame, HEADER_BYTES, MAGIC } from '../../src/rpc/frame.js';
import { mkdirCap } from '../../grid/local-grid.js';
import { MODES, TestMount } from '../../grid/mount.js';
import { describeWithGrid } from '../support/test-grid.js';
import { rng } from '../support/random.js';


/** Connects, sends `bytes` (if any), then drops the connection; resolves when it is closed. */
function sendAndDrop(socketPath: string, bytes: Buffer | undefined, linger = false): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    s.on('error', () => resolve());
    s.on('close', () => resolve());
    s.on('connect', () => {
      if (bytes) s.write(bytes);
      if (linger) setTimeout(() => s.destroy(), 50);
      else s.end(() => s.destroy());
    });
  });
}

describeWithGrid('bad input', (grid) => {
  it('the server survives a fuzzed RPC socket and keeps serving the mount', async () => {
    const m = await TestMount.start({ mode: 'split', gatewayUrl: grid.gatewayUrl });
    try {
      await writeFile(m.path('before'), 'before');
      const server = await m.serverPid();
      const socketPath = join(m.nodeDir, 'tfuse.sockets', 'tahoe');
      const random = rng(20261125);
      const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
      const valid = Buffer.concat(encodeFrame({ id: 1, method: 'getattr', args: ['/'] }));
      const hugeLength = Buffer.alloc(HEADER_BYTES);
      hugeLength.writeUInt32BE(MAGIC, 0);
      hugeLength.writeUInt32BE(0xffffffff, 4);
      hugeLength.writeUInt32BE(0xffffffff, 8);
      // Deeply nested JSON with a correct checksum: the parser must fail (or not) without taking the server down.
      const nested = (depth: number) => {
        const body = Buffer.from('['.repeat(depth) + ']'.repeat(depth));
        const head = Buffer.alloc(HEADER_BYTES);
        head.writeUInt32BE(MAGIC, 0);
        head.writeUInt32BE(body.length, 4);
        head.writeUInt32BE(crc32(body), 12);
        return Buffer.concat([head, body]);
      };
      const deep = nested(5_000);
      const deeper = nested(400_000);
      const cases: Array<() => Buffer | undefined> = [
        () => bytes(1 + Math.floor(random() * 4096)),
        () => valid.subarray(0, Math.floor(random() * valid.length)),
        () => hugeLength,
        () => deep,
        () => deeper,
        () => Buffer.concat(encodeFrame({ id: 7, method: 'rename', args: [{ not: 'a path' }, 1] })),
        () => Buffer.concat(encodeFrame({ id: 'x', method: 42, args: null })),
        () => Buffer.concat([valid, bytes(64)]),
        () => undefined, // open and drop, nothing said
      ];
      for (let round = 0; round < 120; round++) {
        // Ten connections at a time, each fed one case chosen by the generator.
        await Promise.all(Array.from({ length: 10 }, () => sendAndDrop(socketPath, cases[Math.floor(random() * cases.length)]!(), random() < 0.3)));
      }
      assert.equal(await m.serverPid(), server, 'the server is the same process');
      assert.equal(await readFile(m.path('before'), 'utf8'), 'before');
      await writeFile(m.path('after'), 'after');
      assert.equal((await m.webGet('after')).toString(), 'after');
    } finally {
      await m.cleanup();
    }
  });

  it('lists a directory whose listing does not fit an old frame limit (split)', async () => {
    const root = await mkdirCap(grid.gatewayUrl);
    const children: Record<string, [string, { ro_uri: string; metadata: object }]> = {};
    const count = 30_000;
    for (let i = 0; i < count; i++) children[`a-rather-long-file-name-to-fill-the-frame-${i}`] = ['filenode', { ro_uri: 'URI:LIT:nbswy3dp', metadata: {} }];
    const res = await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(root)}?t=set_children`, { method: 'POST', body: JSON.stringify(children) });
    assert.ok(res.ok, `set_children: HTTP ${res.status}`);
    const m = await TestMount.start({ mode: 'split', gatewayUrl: grid.gatewayUrl, rootCap: root, byRootUri: true, cacheTimeout: 600 });
    try {
      const server = await m.serverPid();
      assert.equal((await readdir(m.mountpoint)).length, count);
      assert.equal(await m.serverPid(), server);
    } finally {
      await m.cleanup();
    }
  });

  for (const mode of MODES) {
    it(`hides directory entries a POSIX directory cannot hold, without crashing or escaping (${mode})`, async () => {
      const root = await mkdirCap(grid.gatewayUrl);
      const odd = ['a/b', 'nul\u0000byte', '.', '..', 'x'.repeat(300), 'lone \udc80 surrogate', ''];
      const accepted: string[] = [];
      for (const name of [...odd, 'fine name', 'ünïcödé']) {
        const body = JSON.stringify({ [name]: ['filenode', { ro_uri: 'URI:LIT:nbswy3dp', metadata: {} }] });
        const res = await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(root)}?t=set_children`, { method: 'POST', body });
        if (res.ok) accepted.push(name);
      }
      assert.ok(accepted.includes('fine name') && accepted.includes('ünïcödé'));
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: root, byRootUri: true });
      try {
        assert.deepEqual((await readdir(m.mountpoint)).sort(), ['fine name', 'ünïcödé'].sort());
        const find = await m.sh('find . | sort');
        assert.deepEqual(find.stdout.trim().split('\n'), ['.', './fine name', './ünïcödé']);
        await m.sh('ls -la >/dev/null');
        assert.equal(await readFile(m.path('fine name'), 'utf8'), 'hello');
        await assert.rejects(readFile(m.path('a', 'b')), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
        // The other names stay on the grid, untouched.
        const listed = Object.keys(await m.webList(''));
        for (const name of accepted) assert.ok(listed.includes(name.normalize('NFC')) || listed.includes(name), `lost ${JSON.stringify(name)}`);
      } finally {
        await m.cleanup();
      }
    });
  }

  for (const mode of MODES) {
    it(`keeps the root cap out of every command line and never adds allow_other (${mode})`, async () => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, byRootUri: true });
      try {
        await writeFile(m.path('f'), 'x');
        const pids = await m.pids();
        assert.ok(pids.length >= 1);
        for (const entry of await readdir('/proc')) {
          if (!/^[0-9]+$/.test(entry)) continue;
          const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
          assert.ok(!cmdline.includes(m.rootCap), `the root cap is in the command line of pid ${entry}: ${cmdline.slice(0, 80)}`);
        }
        const line = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === m.mountpoint)!;
        assert.ok(line, 'mounted');
        assert.ok(!line.includes('allow_other'), line);
        assert.ok(!line.includes(m.rootCap));
      } finally {
        await m.cleanup();
      }
    });
  }
});
