// Reads and the cache, against a real mount of a real grid, in both modes: streaming reads shared by every
// reader, reads far ahead of the download, a bounded cache, a cache that survives a restart, and `ls -l`
// costing one request. Which requests were made is read from the mount's debug log.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { it } from 'node:test';
import { redact } from '../../src/tahoe/caps.js';
import { mkdirCap } from '../../grid/local-grid.js';
import { eventually, MODES, runCli, TestMount } from '../../grid/mount.js';
import { exists } from '../support/assert-fs.js';
import { describeWithGrid } from '../support/test-grid.js';

const MiB = 1024 * 1024;

async function readAt(path: string, position: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, position);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

for (const mode of MODES) {
  describeWithGrid(`reads and the cache (${mode})`, (grid) => {
    /** Puts a file through the web API (as another client would) and returns its read cap. */
    async function putForeign(m: TestMount, rel: string, data: Buffer): Promise<string> {
      await m.webPut(rel, data);
      const dir = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
      const name = rel.slice(rel.lastIndexOf('/') + 1);
      const listed = (await m.webList(dir))[name]![1];
      await eventually(`${rel} appears`, () => exists(m.path(rel)));
      return listed.ro_uri!;
    }

    it('serves concurrent readers of one cold file from one download', async () => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl });
      try {
        const data = randomBytes(3 * MiB + 12345);
        const cap = await putForeign(m, 'shared.bin', data);
        const results = await Promise.all([0, 1, 2, 3].map(() => readFile(m.path('shared.bin'))));
        for (const r of results) assert.ok(r.equals(data));
        const downloads = await m.requests(`read ${redact(cap)}`);
        assert.equal(downloads.length, 1, `expected one download, saw: ${JSON.stringify(downloads.map((d) => d.range))}`);
      } finally {
        await m.cleanup();
      }
    });

    it('content whole in the cache is read by the kernel itself (passthrough) where it can; a writer meanwhile still works', async (t) => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl });
      try {
        const data = randomBytes(2 * MiB + 77);
        await putForeign(m, 'whole.bin', data);
        assert.ok((await readFile(m.path('whole.bin'))).equals(data)); // fills the cache
        const passthrough = (await m.logRecords()).find((r) => typeof r.passthrough === 'boolean')?.passthrough;
        if (passthrough !== true) return t.skip('no kernel passthrough on this system (libfuse before 3.16, or kernel before 6.9)');
        // The kernel forgets the node (it had it open in its page-cache mode) once that handle is released:
        // the next open is a fresh one.
        await eventually('the first handle released', async () => (await m.logRecords()).some((r) => r.op === 'release' && r.path === '/whole.bin'));
        await writeFile('/proc/sys/vm/drop_caches', '3');
        const openedAt = Date.now();
        const reader = await open(m.path('whole.bin'), 'r');
        try {
          const again = Buffer.alloc(data.length);
          await reader.read(again, 0, data.length, 0);
          assert.ok(again.equals(data));
          const readAt = Date.now();
          // Logs are written asynchronously: wait for the open's record, then look at what came in that window.
          await eventually('the open is logged', async () => (await m.logRecords()).some((r) => r.msg === 'open passed through to the cache file'));
          const during = (await m.logRecords()).filter((r) => r.op === 'read' && Date.parse(String(r.time)) >= openedAt && Date.parse(String(r.time)) <= readAt);
          assert.deepEqual(during, [], 'no read request reached blackmatch');
          // Another handle writes while the passed-through one is open: it goes through blackmatch, as always.
          await writeFile(m.path('whole.bin'), 'new content');
          assert.equal((await m.webGet('whole.bin')).toString(), 'new content');
          assert.equal(await readFile(m.path('whole.bin'), 'utf8'), 'new content');
        } finally {
          await reader.close();
        }
      } finally {
        await m.cleanup();
      }
    });

    it('answers a read far ahead without waiting for the whole file, then reads behind it', async () => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl });
      try {
        const data = randomBytes(12 * MiB);
        const cap = await putForeign(m, 'far.bin', data);
        const fh = await open(m.path('far.bin'), 'r');
        try {
          const far = Buffer.alloc(4096);
          await fh.read(far, 0, 4096, 10 * MiB + 7);
          assert.ok(far.equals(data.subarray(10 * MiB + 7, 10 * MiB + 7 + 4096)));
          const first = (await m.requests(`read ${redact(cap)}`))[0];
          assert.match(String(first?.range), /^bytes=10485760-/, 'the first request starts where the reader is, not at 0');
          const near = Buffer.alloc(4096);
          await fh.read(near, 0, 4096, 100);
          assert.ok(near.equals(data.subarray(100, 4196)));
        } finally {
          await fh.close();
        }
        assert.ok((await readFile(m.path('far.bin'))).equals(data));
      } finally {
        await m.cleanup();
      }
    });

    it('keeps the cache within --cache-size, evicting what is not in use', async () => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, extraArgs: ['--cache-size', '1M'] });
      try {
        const files = [0, 1, 2, 3].map(() => randomBytes(600_000));
        for (let i = 0; i < files.length; i++) await putForeign(m, `e${i}`, files[i]!);
        for (let i = 0; i < files.length; i++) assert.ok((await readFile(m.path(`e${i}`))).equals(files[i]!));
        const cacheDir = join(await m.cacheDir(), 'files');
        await eventually('eviction done', async () => {
          let bytes = 0;
          for (const name of await readdir(cacheDir)) if (!name.includes('.')) bytes += ((await stat(join(cacheDir, name)).catch(() => undefined))?.blocks ?? 0) * 512;
          return bytes <= 1024 * 1024 + 64 * 1024; // block rounding of sparse files
        }, 30_000);
        assert.ok((await readdir(cacheDir)).filter((n) => n.endsWith('.meta')).length <= 1);
        for (let i = 0; i < files.length; i++) assert.ok((await readFile(m.path(`e${i}`))).equals(files[i]!), 'evicted files are read again');
        for (const name of await readdir(cacheDir)) {
          // A record's temporary file may be gone by now (renamed into place): check what is still there.
          const st = await stat(join(cacheDir, name)).catch(() => undefined);
          if (st) assert.equal(st.mode & 0o777, 0o600, name);
        }
        assert.equal((await stat(join(m.nodeDir, '_cache'))).mode & 0o777, 0o700);
        assert.equal((await stat(await m.cacheDir())).mode & 0o777, 0o700);
      } finally {
        await m.cleanup();
      }
    });

    it('reuses the cache after a restart: no download at all', async () => {
      const data = randomBytes(2 * MiB);
      const root = await mkdirCap(grid.gatewayUrl);
      await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(root)}/warm.bin`, { method: 'PUT', body: new Uint8Array(data) });
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, cacheTimeout: 60, rootCap: root });
      try {
        const cap = (await m.webList(''))['warm.bin']![1].ro_uri!;
        assert.ok((await readFile(m.path('warm.bin'))).equals(data));
        await m.sh(`fusermount -u ${m.mountpoint}`, { cwd: '/' });
        await eventually('processes exit', async () => (await m.pids()).length === 0, 30_000);
        const logs = (await readdir(m.nodeDir)).filter((n) => n.endsWith('.log'));
        for (const name of logs) await m.sh(`: > ${join(m.nodeDir, name)}`, { cwd: '/' });
        const again = await runCli(['--node-directory', m.nodeDir, '--log-level', 'debug', '--cache-timeout', '60', ...(mode === 'no-split' ? ['--no-split'] : []), m.mountpoint]);
        assert.equal(again.code, 0, again.stderr);
        assert.ok((await readFile(m.path('warm.bin'))).equals(data));
        assert.deepEqual(await m.requests(`read ${redact(cap)}`), []);
        // What the mount itself wrote is cached too: reading it back costs no download either.
        const mine = randomBytes(500_000);
        const fh = await open(m.path('mine.bin'), 'w');
        await fh.write(mine);
        await fh.close();
        const myCap = (await m.webList(''))['mine.bin']![1].ro_uri!;
        assert.ok((await readAt(m.path('mine.bin'), 0, mine.length)).equals(mine));
        assert.deepEqual(await m.requests(`read ${redact(myCap)}`), []);
      } finally {
        await m.cleanup();
      }
    });

    it('on a full disk a write fails with ENOSPC, and every later write works: cached bytes give way', async (t) => {
      if (process.getuid?.() !== 0) return t.skip('needs root to mount a small tmpfs');
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, nodeDirMiB: 20 });
      try {
        const dir = await m.freshDir('full');
        const rel = relative(m.mountpoint, dir);
        // Read content sits in the cache while there is room for it.
        const cached = randomBytes(6 * MiB);
        await m.webPut(`${rel}/cached.bin`, cached);
        // Put by another client into a directory the mount just made (and knows as empty): seen within the cache timeout.
        await eventually('cached.bin appears in the mount', () => exists(join(dir, 'cached.bin')));
        assert.ok((await readFile(join(dir, 'cached.bin'))).equals(cached));
        // 50 MB do not fit on a 20 MB disk: the write fails as on any full filesystem...
        const fh = await open(join(dir, 'big.bin'), 'w');
        let failure: NodeJS.ErrnoException | undefined;
        try {
          for (let i = 0; i < 50; i++) await fh.write(randomBytes(MiB));
        } catch (e) {
          failure = e as NodeJS.ErrnoException;
        } finally {
          await fh.close().catch(() => undefined);
        }
        assert.equal(failure?.code, 'ENOSPC');
        // close(2) returns before the kernel's release, which turns big.bin's staged bytes into cached ones: until
        // it has, the disk is full for a create too (its record).
        await eventually('big.bin released', async () => {
          const s = await runCli(['status', '--json', m.mountpoint]);
          return (JSON.parse(s.stdout || '[]') as Array<{ openFiles?: number }>)[0]?.openFiles === 0;
        });
        // ...and what was stored of it, now cached, must not keep the disk full for every later write.
        for (let i = 0; i < 3; i++) {
          const data = randomBytes(4 * MiB);
          await writeFile(join(dir, `after${i}.bin`), data);
          assert.ok((await m.webGet(`${rel}/after${i}.bin`)).equals(data), `after${i}.bin stored whole`);
        }
        const cacheDir = await m.cacheDir();
        for (const sub of ['files', 'staging']) {
          assert.deepEqual((await readdir(join(cacheDir, sub))).filter((n) => n.endsWith('.tmp')), [], `no temporary records left in ${sub}/`);
        }
      } finally {
        await m.cleanup();
      }
    });

    it('lists a directory of 200 entries with ls -l in one request', async () => {
      // Made before mounting: the mount then sees it at once, whatever its cache timeout.
      const root = await mkdirCap(grid.gatewayUrl);
      const dirCap = (await (await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(root)}/many?t=mkdir`, { method: 'POST' })).text()).trim();
      const children: Record<string, [string, { ro_uri: string; metadata: object }]> = {};
      for (let i = 0; i < 200; i++) children[`f${i}`] = ['filenode', { ro_uri: 'URI:LIT:mfrgg', metadata: {} }];
      const res = await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(dirCap)}?t=set_children`, { method: 'POST', body: JSON.stringify(children) });
      assert.ok(res.ok);
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, cacheTimeout: 120, rootCap: root });
      try {
        const out = await m.sh(`ls -l ${m.path('many')} | wc -l`, { cwd: '/' });
        assert.equal(out.stdout.trim(), '201');
        assert.equal((await m.requests(`list ${redact(dirCap)}`)).length, 1);
      } finally {
        await m.cleanup();
      }
    });
  });
}
