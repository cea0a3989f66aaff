// --write-back against a real grid of this file's own, in both modes: close() returns before the upload, and
// nothing closed is lost when a storage node is down, the gateway is down, the process holding the filesystem
// is killed, or the mount is unmounted with stores pending. `blackmatch sync` reports what is not stored.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { it } from 'node:test';
import { mkdirCap } from '../../grid/local-grid.js';
import { eventually, MODES, runCli, TestMount } from '../../grid/mount.js';
import { describeWithGrid } from '../support/test-grid.js';

const run = promisify(execFile);

describeWithGrid('write-back mode', { own: true }, (grid) => {
  for (const mode of MODES) {
    const mountArgs = ['--write-back', ...(mode === 'no-split' ? ['--no-split'] : [])];

    it(`with a storage node down, close() succeeds, sync reports the files and exits 1; once the node is back, sync stores them (${mode})`, { timeout: 300_000 }, async () => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, extraArgs: ['--write-back'] });
      try {
        const data = randomBytes(300_000);
        await grid.stopStorageNode(0);
        try {
          await m.watch('close with a node down', () => writeFile(m.path('during.bin'), data));
          await m.watch('mkdir with a node down', () => mkdir(m.path('newdir')));
          await m.watch('write into the new directory', () => writeFile(m.path('newdir', 'inner.txt'), 'inner'));
          assert.ok((await readFile(m.path('during.bin'))).equals(data), 'the file reads back before it is stored');
          const down = await runCli(['sync', m.mountpoint]);
          assert.equal(down.code, 1, down.stdout + down.stderr);
          assert.match(down.stdout, /NOT STORED \/during\.bin/);
        } finally {
          await grid.startStorageNode(0);
        }
        const up = await runCli(['sync', m.mountpoint], 300_000);
        assert.equal(up.code, 0, up.stdout + up.stderr);
        assert.match(up.stdout, /everything stored/);
        assert.ok((await m.webGet('during.bin')).equals(data));
        assert.equal((await m.webGet('newdir/inner.txt')).toString(), 'inner');
      } finally {
        await m.cleanup();
      }
    });

    it(`with the gateway down, close() succeeds; the file is stored once the gateway is back (${mode})`, { timeout: 300_000 }, async () => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, extraArgs: ['--write-back'] });
      try {
        const data = randomBytes(200_000);
        await grid.stopGateway();
        try {
          await m.watch('close with the gateway down', () => writeFile(m.path('patient.bin'), data));
          assert.ok((await readFile(m.path('patient.bin'))).equals(data));
          // Held back until the mount has given up on it for now: its store failed, and it fails fast meanwhile.
          await eventually('the mount sees the gateway gone and the store failed', async () => {
            await readdir(m.path('')).catch(() => undefined); // a listing past --cache-timeout: the gateway is asked
            const s = await runCli(['status', '--json', m.mountpoint]);
            const [answer] = JSON.parse(s.stdout || '[]') as Array<{ gatewayState?: { online: boolean }; writes?: { failed: unknown[] } }>;
            return answer?.gatewayState?.online === false && (answer.writes?.failed.length ?? 0) > 0;
          }, 120_000);
        } finally {
          await grid.startGateway();
        }
        const up = await runCli(['sync', m.mountpoint], 300_000);
        assert.equal(up.code, 0, up.stdout + up.stderr);
        assert.ok((await m.webGet('patient.bin')).equals(data));
      } finally {
        await m.cleanup();
      }
    });

    it(`a ${mode === 'split' ? 'server' : 'process'} killed after close() loses nothing: the next mount stores the files and links the directories (${mode})`, { timeout: 300_000 }, async () => {
      const root = await mkdirCap(grid.gatewayUrl);
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: root, extraArgs: ['--write-back'] });
      const files = Array.from({ length: 5 }, (_, i) => randomBytes(100_000 + i));
      try {
        await mkdir(m.path('warm'));
        assert.equal((await runCli(['sync', m.mountpoint])).code, 0);
        await grid.stopStorageNode(1); // so that nothing closed can be stored before the kill
        try {
          await mkdir(m.path('made'));
          for (const [i, data] of files.entries()) await writeFile(m.path('made', `f${i}.bin`), data);
          const victim = mode === 'split' ? await m.serverPid() : (await m.pids())[0]!;
          process.kill(victim, 'SIGKILL');
          await eventually('the process is gone', async () => !(await m.pids()).includes(victim), 30_000);
        } finally {
          await grid.startStorageNode(1);
        }
        await run('fusermount', ['-u', m.mountpoint]).catch(() => run('fusermount', ['-uz', m.mountpoint]));
        await eventually('every process exits', async () => (await m.pids()).length === 0, 30_000);
        const again = await runCli(['--node-directory', m.nodeDir, '--write-back', ...(mode === 'no-split' ? ['--no-split'] : []), m.mountpoint]);
        assert.equal(again.code, 0, again.stderr);
        for (const [i, data] of files.entries()) {
          await eventually(`made/f${i}.bin stored`, async () => (await m.webGetOrNull(`made/f${i}.bin`))?.equals(data) === true, 120_000);
        }
      } finally {
        await m.cleanup();
      }
    });

    it(`unmount gives pending stores a last try; what is left is stored by the next mount (${mode})`, { timeout: 300_000 }, async () => {
      const root = await mkdirCap(grid.gatewayUrl);
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: root, extraArgs: ['--write-back'] });
      const data = randomBytes(150_000);
      try {
        await grid.stopStorageNode(2);
        try {
          await writeFile(m.path('left.bin'), data);
          await run('fusermount', ['-u', m.mountpoint]);
          await eventually('every process exits after its last try', async () => (await m.pids()).length === 0, 150_000);
        } finally {
          await grid.startStorageNode(2);
        }
        assert.equal(await m.webGetOrNull('left.bin'), null);
        const again = await runCli(['--node-directory', m.nodeDir, ...mountArgs, m.mountpoint]);
        assert.equal(again.code, 0, again.stderr);
        await eventually('left.bin stored by the next mount', async () => (await m.webGetOrNull('left.bin'))?.equals(data) === true, 120_000);
      } finally {
        await m.cleanup();
      }
    });
  }

  it('blackmatch sync of a path that is not a mount says so and exits 1', async () => {
    const r = await runCli(['sync', '/tmp']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not a blackmatch mount/);
  });
});
