// A far grid of this file's own: the storage nodes 30 ms round trip away behind delay proxies (gateway local),
// as on a real Tahoe grid. In both modes, reads, writes and a tar tree must work there: nothing may time out
// or fail because every storage request now takes a round trip.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually, MODES, runCli, TestMount } from '../../grid/mount.js';
import { describeWithGrid } from '../support/test-grid.js';
import { exists } from '../support/assert-fs.js';

const MiB = 1024 * 1024;
const DELAY_MS = 15; // each way: a 30 ms round trip
const DIRS = 6;
const FILES_PER_DIR = 5;

describeWithGrid(`a far grid (storage nodes ${2 * DELAY_MS} ms round trip away)`, { own: true, storageDelayMs: DELAY_MS }, (grid) => {
  let work: string;
  let tree: string;
  let archive: string;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'bm-far-'));
    // A small source tree and its tar archive, made locally once.
    tree = join(work, 'tree');
    for (let d = 0; d < DIRS; d++) {
      await mkdir(join(tree, `dir-${d}`), { recursive: true });
      for (let f = 0; f < FILES_PER_DIR; f++) await writeFile(join(tree, `dir-${d}`, `file-${f}.bin`), randomBytes(4096));
    }
    archive = join(work, 'tree.tar');
    await new Promise<void>((resolve, reject) =>
      execFile('tar', ['cf', archive, '-C', work, 'tree'], { timeout: 30_000 }, (e) => (e ? reject(e) : resolve())),
    );
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  for (const mode of MODES) {
    describe(`${mode} --write-back`, () => {
      let m: TestMount;
      before(async () => {
        m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, extraArgs: ['--write-back'] });
      });
      after(async () => {
        await m?.cleanup();
      });

      it('unpacks the tar tree; blackmatch sync then waits until the grid serves every file', { timeout: 180_000 }, async () => {
        const dest = await m.freshDir('tar');
        await m.sh(`tar xf ${archive} -C ${dest}`, { timeoutMs: 150_000 });
        await m.sh(`diff -r ${tree} ${join(dest, 'tree')}`, { timeoutMs: 60_000 });
        const sync = await runCli(['sync', m.mountpoint], 150_000);
        assert.equal(sync.code, 0, sync.stdout + sync.stderr);
        for (let d = 0; d < DIRS; d++) {
          for (let f = 0; f < FILES_PER_DIR; f++) {
            const rel = `${basename(dest)}/tree/dir-${d}/file-${f}.bin`;
            assert.ok((await m.webGet(rel)).equals(await readFile(join(tree, `dir-${d}`, `file-${f}.bin`))), rel);
          }
        }
      });
    });

    describe(mode, () => {
      let m: TestMount;
      before(async () => {
        m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl });
      });
      after(async () => {
        await m?.cleanup();
      });

      it('reads a 4 MiB file written through the web API', { timeout: 180_000 }, async () => {
        const data = randomBytes(4 * MiB);
        await m.webPut('from-web.bin', data);
        await eventually('from-web.bin appears in the mount', () => exists(m.path('from-web.bin')));
        const got = await m.watch('read 4 MiB', () => readFile(m.path('from-web.bin')));
        assert.equal(got.length, data.length);
        assert.ok(got.equals(data), 'the bytes read through the mount are the bytes put');
      });

      it('writes a 4 MiB file that the web API then serves', { timeout: 180_000 }, async () => {
        const data = randomBytes(4 * MiB + 123);
        await m.watch('write 4 MiB', () => writeFile(m.path('from-mount.bin'), data));
        const served = await m.webGet('from-mount.bin');
        assert.equal(served.length, data.length);
        assert.ok(served.equals(data), 'the web API serves the bytes written');
      });

      it(`unpacks a tar of ${DIRS * FILES_PER_DIR} files in ${DIRS} directories; diff -r and ls -l agree`, { timeout: 180_000 }, async () => {
        const dest = await m.freshDir('tar');
        await m.sh(`tar xf ${archive} -C ${dest}`, { timeoutMs: 150_000 });
        await m.sh(`diff -r ${tree} ${join(dest, 'tree')}`, { timeoutMs: 60_000 });
        const { stdout } = await m.sh(`ls -lR ${join(dest, 'tree')}`, { timeoutMs: 60_000 });
        const files = stdout.split('\n').filter((l) => l.startsWith('-'));
        assert.equal(files.length, DIRS * FILES_PER_DIR, stdout);
        for (const line of files) assert.match(line, /\s4096\s/, `every file listed at 4096 bytes: ${line}`);
        // Stored in the grid, not only in the mount.
        const rel = `${basename(dest)}/tree/dir-${DIRS - 1}/file-${FILES_PER_DIR - 1}.bin`;
        const expected = await readFile(join(tree, `dir-${DIRS - 1}`, `file-${FILES_PER_DIR - 1}.bin`));
        assert.ok((await m.webGet(rel)).equals(expected), 'the web API serves an unpacked file');
      });
    });
  }
});
