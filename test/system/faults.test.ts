// Faults on a grid of this file's own (it stops and kills parts of it): a download that breaks mid-way,
// a gateway that is down and comes back. The mount must fail what it cannot do with EIO, never hang,
// and work again once the grid is back, without remounting.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, open, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { it } from 'node:test';
import { mkdirCap } from '../../grid/local-grid.js';
import { eventually, MODES, runCli, TestMount } from '../../grid/mount.js';
import { describeWithGrid } from '../support/test-grid.js';
import { expectErrno } from '../support/assert-fs.js';

const MiB = 1024 * 1024;
const run = promisify(execFile);

/** Staged bytes waiting in the mount's staging area (records excluded). */
async function stagedFiles(m: TestMount): Promise<string[]> {
  const dir = join(await m.cacheDir(), 'staging');
  return (await readdir(dir)).filter((n) => !n.endsWith('.json') && !n.endsWith('.tmp')).map((n) => join(dir, n));
}

describeWithGrid('faults', { own: true }, (grid) => {
  for (const mode of MODES) {
    it(`with a storage node down, reads work; a write fails at close() with EIO, stays staged, and is stored when the node returns (${mode})`, async () => {
      const before = randomBytes(1_000_000);
      const root = await mkdirCap(grid.gatewayUrl);
      assert.ok((await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(root)}/before`, { method: 'PUT', body: new Uint8Array(before) })).ok);
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: root });
      try {
        await grid.stopStorageNode(0);
        try {
          assert.ok((await m.watch('read with a node down', () => readFile(m.path('before')))).equals(before));
          const data = randomBytes(300_000);
          const fh = await open(m.path('during'), 'w');
          await fh.write(data);
          await expectErrno(m.watch('close with a node down', () => fh.close()), 'EIO');
          const staged = await stagedFiles(m);
          assert.equal(staged.length, 1, 'one staged write');
          assert.ok((await readFile(staged[0]!)).equals(data), 'the staged bytes are the written bytes');
        } finally {
          await grid.startStorageNode(0);
        }
        await eventually('the staged write is stored once the node is back', async () => (await m.webGetOrNull('during'))?.length === 300_000, 120_000);
        await eventually('the staging area empties', async () => (await stagedFiles(m)).length === 0, 30_000);
      } finally {
        await m.cleanup();
      }
    });

    it(`a killed ${mode === 'split' ? 'server' : 'process'} loses no written bytes: the next mount stores them, beside the entry if it changed meanwhile (${mode})`, async () => {
      const root = await mkdirCap(grid.gatewayUrl);
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: root });
      const kept = randomBytes(700_000);
      const contested = randomBytes(400_000);
      try {
        // Written, never closed: then the process holding the filesystem dies.
        const a = await open(m.path('kept.bin'), 'w');
        await a.write(kept);
        const b = await open(m.path('contested.bin'), 'w');
        await b.write(contested);
        // Written and deleted while still open: it must stay deleted.
        const c = await open(m.path('scratch.tmp'), 'w');
        await c.write(randomBytes(50_000));
        await unlink(m.path('scratch.tmp'));
        const victim = mode === 'split' ? await m.serverPid() : (await m.pids())[0]!;
        process.kill(victim, 'SIGKILL');
        await eventually('the process is gone', async () => !(await m.pids()).includes(victim), 30_000);
        await a.close().catch(() => undefined);
        await b.close().catch(() => undefined);
        await c.close().catch(() => undefined);
        // Another client links something else at one of the names meanwhile: that entry must win.
        const other = Buffer.from('written by another client');
        assert.ok((await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(root)}/contested.bin`, { method: 'PUT', body: new Uint8Array(other) })).ok);
        await run('fusermount', ['-u', m.mountpoint]).catch(() => run('fusermount', ['-uz', m.mountpoint]));
        await eventually('every process exits', async () => (await m.pids()).length === 0, 30_000);
        const again = await runCli(['--node-directory', m.nodeDir, '--log-level', 'debug', ...(mode === 'no-split' ? ['--no-split'] : []), m.mountpoint]);
        assert.equal(again.code, 0, again.stderr);
        await eventually('kept.bin stored', async () => (await m.webGetOrNull('kept.bin'))?.equals(kept) === true, 60_000);
        assert.ok((await readFile(m.path('kept.bin'))).equals(kept));
        assert.ok((await m.webGet('contested.bin')).equals(other), 'the other client\'s file was not overwritten');
        // Recovery runs in the background: wait for it to have dealt with every record.
        const reported = async () =>
          (await m.logRecords()).some((r) => typeof r.msg === 'string' && r.msg.includes('changed meanwhile') && r.path === '/contested.bin');
        await eventually('recovery done', async () => (await stagedFiles(m)).length === 0 && (await reported()), 30_000);
        const records = await m.logRecords();
        assert.ok(records.some((r) => r.msg === 'staged write recovered: uploaded and linked' && r.path === '/kept.bin'));
        const names = Object.keys(await m.webList(''));
        assert.ok(!names.includes('scratch.tmp'), 'a deleted file came back');
        assert.ok(!names.some((n) => n.startsWith('.fuse_hidden')), `hidden names on the grid: ${names.join(', ')}`);
        const beside = names.filter((n) => n.startsWith('contested.bin (conflict '));
        assert.equal(beside.length, 1, `the contested bytes are stored beside the other client's: ${names.join(', ')}`);
        assert.ok((await m.webGet(beside[0]!)).equals(contested));
        assert.deepEqual(await stagedFiles(m), [], 'nothing left staged');
      } finally {
        await m.cleanup();
      }
    });

    if (mode === 'split') {
      it('a server killed in the middle of an upload: the next mount uploads and links the file', async () => {
        const root = await mkdirCap(grid.gatewayUrl);
        const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: root });
        const source = join(m.workDir, 'source.bin');
        const data = randomBytes(64 * MiB);
        try {
          await writeFile(source, data);
          const copy = run('cp', [source, m.path('copied.bin')]).catch((e: Error) => e);
          await eventually('the upload has started', async () => (await m.requests('upload')).length > 0, 120_000);
          process.kill(await m.serverPid(), 'SIGKILL');
          await copy; // fails (ENOTCONN), or finished just before the kill
          await run('fusermount', ['-u', m.mountpoint]).catch(() => run('fusermount', ['-uz', m.mountpoint]));
          await eventually('every process exits', async () => (await m.pids()).length === 0, 30_000);
          const again = await runCli(['--node-directory', m.nodeDir, m.mountpoint]);
          assert.equal(again.code, 0, again.stderr);
          // Recovery's passes back off (5 s, doubling): on a loaded machine the gateway may refuse the first ones.
          await eventually('copied.bin stored', async () => (await m.webGetOrNull('copied.bin'))?.equals(data) === true, 180_000).catch(async (e: Error) => {
            throw new Error(`${e.message}; names: ${Object.keys(await m.webList('')).join(', ')}\n${await m.logTail(60)}`);
          });
          assert.deepEqual(await stagedFiles(m), []);
        } finally {
          await m.cleanup();
        }
      });
    }

    it(`a download broken mid-way fails the waiting read with EIO; a later read recovers (${mode})`, async () => {
      const data = randomBytes(48 * MiB);
      const root = await mkdirCap(grid.gatewayUrl);
      const put = await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(root)}/big`, { method: 'PUT', body: new Uint8Array(data) });
      assert.ok(put.ok);
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: root, cacheTimeout: 60 });
      try {
        const fh = await open(m.path('big'), 'r');
        try {
          const head = Buffer.alloc(65536);
          await fh.read(head, 0, head.length, 0);
          assert.ok(head.equals(data.subarray(0, 65536)));
          // Freeze the gateway mid-download, then kill it: the transfer breaks, it does not just end.
          grid.freezeGateway();
          await grid.killGateway();
          const far = Buffer.alloc(4096);
          await expectErrno(m.watch('read while the gateway is dead', () => fh.read(far, 0, far.length, 40 * MiB)), 'EIO');
          await expectErrno(m.watch('mkdir while the gateway is dead', () => mkdir(m.path('new-dir'))), 'EIO');
          // A write cannot be stored now: close() says so, and the bytes wait in the staging area.
          const offline = randomBytes(200_000);
          const w = await open(m.path('offline.bin'), 'w');
          await w.write(offline);
          await expectErrno(m.watch('close while the gateway is dead', () => w.close()), 'EIO');
          await grid.startGateway();
          await eventually('the staged write is stored once the gateway is back', async () => (await m.webGetOrNull('offline.bin'))?.equals(offline) === true, 120_000);
          await fh.read(far, 0, far.length, 40 * MiB);
          assert.ok(far.equals(data.subarray(40 * MiB, 40 * MiB + 4096)));
        } finally {
          await fh.close();
        }
        assert.ok((await readFile(m.path('big'))).equals(data));
        await mkdir(m.path('new-dir'));
        assert.ok((await stat(m.path('new-dir'))).isDirectory());
        assert.deepEqual((await readdir(m.mountpoint)).sort(), ['big', 'new-dir', 'offline.bin']);
      } finally {
        if (!(await fetch(grid.gatewayUrl).then(() => true, () => false))) await grid.startGateway();
        await m.cleanup();
      }
    });
  }
});
