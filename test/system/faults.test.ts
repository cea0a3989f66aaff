// Faults on a grid of this file's own (it stops and kills parts of it): a download that breaks mid-way,
// a gateway that is down and comes back. The mount must fail what it cannot do with EIO, never hang,
// and work again once the grid is back, without remounting.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { mkdirCap, startGrid, type Grid } from '../support/grid.js';
import { MODES, TestMount } from '../support/mount.js';

const MiB = 1024 * 1024;

async function expectErrno(what: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(what, (e: NodeJS.ErrnoException) => {
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    return true;
  });
}

describe('faults', () => {
  let grid: Grid;
  before(async () => {
    grid = await startGrid();
  });
  after(async () => {
    await grid?.stop();
  });

  for (const mode of MODES) {
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
          await grid.startGateway();
          await fh.read(far, 0, far.length, 40 * MiB);
          assert.ok(far.equals(data.subarray(40 * MiB, 40 * MiB + 4096)));
        } finally {
          await fh.close();
        }
        assert.ok((await readFile(m.path('big'))).equals(data));
        await mkdir(m.path('new-dir'));
        assert.ok((await stat(m.path('new-dir'))).isDirectory());
        assert.deepEqual((await readdir(m.mountpoint)).sort(), ['big', 'new-dir']);
      } finally {
        if (!(await fetch(grid.gatewayUrl).then(() => true, () => false))) await grid.startGateway();
        await m.cleanup();
      }
    });
  }
});
