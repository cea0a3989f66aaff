// Two machines, one directory: two mounts of one directory cap, each through a gateway of its own (two client
// nodes of one grid, as two laptops have), write, rename, make directories and remove in it at once. Tahoe's
// gateways lose each other's directory updates under that load (README, "Several machines, one directory");
// after `blackmatch sync` on both, every file whose close() returned 0 is there through both gateways, with its
// bytes; every name a mount removed stays removed; a name both wrote keeps one version and the other beside it.
import assert from 'node:assert/strict';
import { mkdir, stat } from 'node:fs/promises';
import { it } from 'node:test';
import { eventually, runCli, TestMount, type Mode } from '../../grid/mount.js';
import { mkdirCap } from '../../grid/local-grid.js';
import { checkShared, sharedWorkload, type WorkloadResult } from '../support/shared-load.js';
import { describeWithGrid } from '../support/test-grid.js';

const SYNC_BOUND_MS = 300_000;

describeWithGrid('two machines, one directory', { own: true, gateways: 2 }, (grid) => {
  // Each mode meets each way of storing once, in two rounds.
  const rounds: Array<[{ mode: Mode; writeBack: boolean }, { mode: Mode; writeBack: boolean }]> = [
    [{ mode: 'split', writeBack: false }, { mode: 'no-split', writeBack: true }],
    [{ mode: 'no-split', writeBack: false }, { mode: 'split', writeBack: true }],
  ];
  for (const [a, b] of rounds) {
    const what = (x: { mode: Mode; writeBack: boolean }) => `${x.mode}${x.writeBack ? ' --write-back' : ''}`;
    it(`nothing close() called stored is lost, nothing removed comes back (${what(a)} and ${what(b)})`, { timeout: 900_000 }, async () => {
      const rootCap = await mkdirCap(grid.gatewayUrls[0]!);
      const mounts: TestMount[] = [];
      try {
        for (const [i, x] of [a, b].entries()) {
          mounts.push(await TestMount.start({ mode: x.mode, gatewayUrl: grid.gatewayUrls[i]!, rootCap, settleTime: 'default', extraArgs: x.writeBack ? ['--write-back'] : [] }));
        }
        await mounts[0]!.watch('mkdir of the shared directory', () => mkdir(mounts[0]!.path('shared')));
        await eventually('the other mount sees the shared directory', () => stat(mounts[1]!.path('shared')).then(() => true, () => false));
        const results: WorkloadResult[] = await Promise.all(
          mounts.map((m, i) => m.watch(`the workload of mount ${i}`, () => sharedWorkload(m.path('shared'), `m${i}`), 600_000)),
        );
        const synced = await Promise.all(mounts.map((m) => runCli(['sync', '--timeout', String(SYNC_BOUND_MS / 1000), m.mountpoint], SYNC_BOUND_MS + 30_000)));
        const problems: string[] = [];
        for (const gatewayUrl of grid.gatewayUrls) {
          for (const p of await checkShared(gatewayUrl, rootCap, 'shared', results)) problems.push(`through ${gatewayUrl}: ${p}`);
        }
        const failures = results.flatMap((r) => r.failures.map((f) => `${r.tag}: ${f}`));
        assert.deepEqual(problems, [], `${problems.length} problem(s); calls that failed (allowed): ${failures.length}\n${failures.join('\n')}`);
        for (const [i, r] of synced.entries()) assert.equal(r.code, 0, `sync of mount ${i}: ${r.stdout}${r.stderr}`);
      } finally {
        await Promise.all(mounts.map((m) => m.cleanup()));
      }
    });
  }
});
