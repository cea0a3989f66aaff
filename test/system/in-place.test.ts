// Files that change in place, against a real mount of a real grid, in both modes, with the programs that do it:
// dd conv=notrunc, appends, truncate, sqlite (rollback journal and WAL), rsync --inplace, a sparse file written at
// random offsets. A big file changed in place becomes MDMF, and every byte reads back through the mount, the web
// API and a second mount of the same root. --mutable-from is small here so that the files can be.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFile, open, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { it } from 'node:test';
import { mkdirCap } from '../../grid/local-grid.js';
import { eventually, MODES, runCli, TestMount } from '../../grid/mount.js';
import { getxattrText, mustRun } from '../support/posix.js';
import { describeWithGrid } from '../support/test-grid.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SEGMENT = 128 * KiB;
const SMALL = ['--mutable-from', '1M'];

async function writeAt(path: string, data: Buffer, position: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(data, 0, data.length, position);
  } finally {
    await fh.close();
  }
}

for (const mode of MODES) {
  describeWithGrid(`files changed in place (${mode})`, (grid) => {
    /** The entry as the web API lists it: its write cap's kind and the size in its link. */
    async function listed(m: TestMount, name: string): Promise<{ kind: string; size: unknown }> {
      const entry = (await m.webList(''))[name]![1];
      return { kind: /^URI:([A-Z0-9-]+):/.exec(entry.rw_uri ?? entry.ro_uri ?? '')?.[1] ?? '?', size: entry.metadata?.size };
    }

    /** The same bytes through this mount, the web API, and a second mount of the same root (a fresh cache). */
    async function everywhere(m: TestMount, name: string, expected: Buffer): Promise<void> {
      assert.ok((await readFile(m.path(name))).equals(expected), `${name} through the mount`);
      assert.ok((await m.webGet(name)).equals(expected), `${name} through the web API`);
      const other = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: m.rootCap });
      try {
        assert.ok((await readFile(other.path(name))).equals(expected), `${name} through a second mount`);
      } finally {
        await other.cleanup();
      }
    }

    it('dd conv=notrunc, appends (at a segment boundary too) and truncates: the file becomes MDMF and reads back byte for byte', async () => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, extraArgs: SMALL });
      try {
        let local: Buffer = randomBytes(16 * SEGMENT); // a multiple of the segment size
        await writeFile(m.path('big.bin'), local);
        assert.equal((await listed(m, 'big.bin')).kind, 'CHK');

        const patch = randomBytes(4 * KiB);
        patch.copy(local, 5 * SEGMENT + 100);
        await writeFile(join(m.workDir, 'patch'), patch);
        await mustRun('dd', [`if=${join(m.workDir, 'patch')}`, `of=${m.path('big.bin')}`, 'bs=1', `seek=${5 * SEGMENT + 100}`, 'conv=notrunc,fsync', 'status=none']);
        assert.deepEqual(await listed(m, 'big.bin'), { kind: 'MDMF', size: local.length });
        assert.match(await getxattrText(m.path('big.bin'), 'user.tahoe.readcap'), /^URI:MDMF-RO:/);

        const tail = randomBytes(3000);
        await appendFile(m.path('big.bin'), tail); // exactly at a segment boundary
        local = Buffer.concat([local, tail]);
        await writeAt(m.path('big.bin'), Buffer.from('far'), local.length + 70 * KiB); // past the end: a hole
        local = Buffer.concat([local, Buffer.alloc(70 * KiB), Buffer.from('far')]);
        await everywhere(m, 'big.bin', local);

        await truncate(m.path('big.bin'), 9 * SEGMENT + 5);
        local = local.subarray(0, 9 * SEGMENT + 5);
        await truncate(m.path('big.bin'), 10 * SEGMENT);
        local = Buffer.concat([local, Buffer.alloc(SEGMENT - 5)]);
        assert.deepEqual(await listed(m, 'big.bin'), { kind: 'MDMF', size: local.length });
        await everywhere(m, 'big.bin', local);
        // The version this mount wrote is read from its own cache, not downloaded again.
        const before = (await m.logRecords()).filter((r) => r.msg === 'download done').length;
        assert.ok((await readFile(m.path('big.bin'))).equals(local));
        assert.equal((await m.logRecords()).filter((r) => r.msg === 'download done').length, before);
      } finally {
        await m.cleanup();
      }
    });

    it('a file written whole stays immutable: cp over it, and one below --mutable-from changed in place', async () => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, extraArgs: SMALL });
      try {
        await writeFile(m.path('whole.bin'), randomBytes(2 * MiB));
        const again = randomBytes(2 * MiB);
        await writeFile(join(m.workDir, 'again'), again);
        await mustRun('cp', [join(m.workDir, 'again'), m.path('whole.bin')]);
        const small = randomBytes(100 * KiB);
        await writeFile(m.path('small.txt'), small);
        await writeAt(m.path('small.txt'), Buffer.from('A'), 0);
        small.write('A');
        assert.equal((await listed(m, 'whole.bin')).kind, 'CHK');
        assert.equal((await listed(m, 'small.txt')).kind, 'CHK');
        assert.ok((await m.webGet('whole.bin')).equals(again));
        assert.ok((await m.webGet('small.txt')).equals(small));
      } finally {
        await m.cleanup();
      }
    });

    it('sqlite: many small transactions, then WAL mode; the database checks whole everywhere', async () => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, extraArgs: SMALL });
      try {
        const db = m.path('app.db');
        const sql = (q: string, path = db) => mustRun('sqlite3', [path, q]);
        await sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<2000) INSERT INTO t(v) SELECT hex(randomblob(600)) FROM c;");
        for (let i = 0; i < 8; i++) await sql(`INSERT INTO t(v) VALUES ('row ${i}'); UPDATE t SET v = 'changed ${i}' WHERE id = ${1 + i * 200};`);
        assert.equal((await listed(m, 'app.db')).kind, 'MDMF');
        assert.equal((await sql('PRAGMA journal_mode=WAL;')).trim(), 'wal');
        for (let i = 0; i < 5; i++) await sql(`INSERT INTO t(v) VALUES ('wal ${i}');`);
        await sql('PRAGMA wal_checkpoint(TRUNCATE);');
        const summary = "PRAGMA integrity_check; SELECT count(*), sum(length(v)) FROM t; SELECT v FROM t WHERE id = 1401;";
        const here = await sql(summary);
        assert.match(here, /^ok\n2013\|/);
        assert.match(here, /changed 7/);
        // Every byte of it elsewhere: the web API's copy and a second mount answer the same.
        const copy = join(m.workDir, 'copy.db');
        await writeFile(copy, await m.webGet('app.db'));
        assert.equal(await sql(summary, copy), here);
        const other = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: m.rootCap });
        try {
          assert.equal(await sql(summary, other.path('app.db')), here);
        } finally {
          await other.cleanup();
        }
      } finally {
        await m.cleanup();
      }
    });

    it('rsync --inplace sends a changed file into place; a growing log appended line by line', async () => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, extraArgs: SMALL });
      try {
        const source = join(m.workDir, 'src.bin');
        const local = randomBytes(3 * MiB + 1234);
        await writeFile(source, local);
        await mustRun('rsync', ['--inplace', source, m.path('synced.bin')]);
        randomBytes(8 * KiB).copy(local, MiB + 77);
        const grown = Buffer.concat([local, randomBytes(5000)]);
        await writeFile(source, grown);
        await mustRun('rsync', ['--inplace', '--no-whole-file', source, m.path('synced.bin')]);
        assert.equal((await listed(m, 'synced.bin')).kind, 'MDMF');
        await everywhere(m, 'synced.bin', grown);

        let log = randomBytes(MiB + 3);
        await writeFile(m.path('app.log'), log);
        for (let i = 0; i < 6; i++) {
          const line = Buffer.from(`${new Date().toISOString()} line ${i}\n`);
          await appendFile(m.path('app.log'), line);
          log = Buffer.concat([log, line]);
        }
        assert.equal((await listed(m, 'app.log')).kind, 'MDMF');
        assert.ok((await m.webGet('app.log')).equals(log));
      } finally {
        await m.cleanup();
      }
    });

    it('a sparse file written at random offsets stays sparse on the local disk, and reads back exactly', async () => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, extraArgs: SMALL });
      try {
        const size = 48 * MiB;
        await writeFile(m.path('sparse.img'), 'header');
        await truncate(m.path('sparse.img'), size);
        const local = Buffer.alloc(size);
        local.write('header');
        const fh = await open(m.path('sparse.img'), 'r+');
        let allocated = 0;
        try {
          for (let i = 0; i < 40; i++) {
            const at = Math.floor(Math.random() * (size - 4 * KiB));
            const bytes = randomBytes(4 * KiB);
            await fh.write(bytes, 0, bytes.length, at);
            bytes.copy(local, at);
          }
          const staging = join(await m.cacheDir(), 'staging');
          // Staging files only (not their records, nor a record's temporary file on its way).
          for (const name of await readdir(staging)) {
            if (/^[0-9]+-[0-9a-f]+$/.test(name)) allocated += ((await stat(join(staging, name)).catch(() => undefined))?.blocks ?? 0) * 512;
          }
        } finally {
          await fh.close();
        }
        assert.ok(allocated <= 4 * MiB, `${allocated} bytes staged for 40 writes of 4 KiB`);
        assert.deepEqual(await listed(m, 'sparse.img'), { kind: 'MDMF', size });
        assert.ok((await m.webGet('sparse.img')).equals(local));
        assert.ok((await readFile(m.path('sparse.img'))).equals(local));
      } finally {
        await m.cleanup();
      }
    });

    it(`a ${mode === 'split' ? 'server' : 'process'} killed in the middle of a store in place (write-back): the next mount finishes it over the version it was made on`, { timeout: 300_000 }, async () => {
      const proxy = await holdingProxy(grid.gatewayUrl);
      const root = await mkdirCap(grid.gatewayUrl);
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: root, extraArgs: [...SMALL, '--write-back', '--node-url', proxy.url] });
      try {
        const local: Buffer = randomBytes(2 * MiB + 10);
        await writeFile(m.path('db.bin'), local);
        // Stored first: a change within --write-back-delay would only make the new file's first store different.
        assert.equal((await runCli(['sync', m.mountpoint])).code, 0);
        await writeAt(m.path('db.bin'), Buffer.from('first'), 100);
        Buffer.from('first').copy(local, 100);
        assert.equal((await runCli(['sync', m.mountpoint])).code, 0);
        assert.equal((await listed(m, 'db.bin')).kind, 'MDMF');
        // Two changes far apart: two offset writes; the second never reaches the gateway, and the process dies.
        const held = proxy.holdNext((method, url) => method === 'PUT' && url.includes('offset=') && !url.includes('offset=99'));
        await writeAt(m.path('db.bin'), Buffer.from('second'), 99);
        await writeAt(m.path('db.bin'), Buffer.from('third'), 2 * MiB);
        Buffer.from('second').copy(local, 99);
        Buffer.from('third').copy(local, 2 * MiB);
        await Promise.race([held, new Promise((_, reject) => setTimeout(() => reject(new Error('no offset write within 60 s')), 60_000).unref())]);
        const victim = mode === 'split' ? await m.serverPid() : (await m.pids())[0]!;
        process.kill(victim, 'SIGKILL');
        await eventually('the process is gone', async () => !(await m.pids()).includes(victim), 30_000);
        await mustRun('fusermount', ['-u', m.mountpoint]).catch(() => mustRun('fusermount', ['-uz', m.mountpoint]));
        await eventually('every process exits', async () => (await m.pids()).length === 0, 30_000);
        const half = await m.webGet('db.bin');
        assert.ok(half.subarray(99, 105).equals(Buffer.from('second')) && !half.equals(local), 'half of the store landed');
        const again = await runCli(['--node-directory', m.nodeDir, '--write-back', ...SMALL, ...(mode === 'no-split' ? ['--no-split'] : []), m.mountpoint]);
        assert.equal(again.code, 0, again.stderr);
        // Recovery runs as the mount starts; sync waits for it (a GET of the file during its publish can stall
        // in the gateway for a minute: Tahoe's own reader and writer of one mutable file meeting).
        assert.equal((await runCli(['sync', '--stored-only', m.mountpoint])).code, 0);
        assert.ok((await m.webGet('db.bin')).equals(local), 'the store is finished');
        assert.deepEqual(Object.keys(await m.webList('')), ['db.bin'], 'finished over it, not stored beside');
        assert.ok((await readFile(m.path('db.bin'))).equals(local));
      } finally {
        await m.cleanup();
        await proxy.close();
      }
    });
  });
}

/**
 * An HTTP proxy to the gateway that passes every request on, except the next one `holdNext` names: that one is
 * taken and never answered nor passed on (as when a process dies with its request on the way).
 */
async function holdingProxy(gatewayUrl: string): Promise<{ url: string; holdNext(match: (method: string, url: string) => boolean): Promise<void>; close(): Promise<void> }> {
  const target = new URL(gatewayUrl);
  let hold: { match: (method: string, url: string) => boolean; arrived: () => void } | undefined;
  const server = createServer((req, res) => {
    if (hold && hold.match(req.method ?? '', req.url ?? '')) {
      hold.arrived();
      hold = undefined;
      req.resume(); // taken, never passed on
      return;
    }
    const out = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    holdNext: (match) => new Promise<void>((arrived) => (hold = { match, arrived })),
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
