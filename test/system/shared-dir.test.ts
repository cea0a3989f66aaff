// Two machines, one directory: two mounts of one directory cap, each through a gateway of its own (two client
// nodes of one grid, as two laptops have), write, rename, make directories and remove in it at once. Tahoe's
// gateways lose each other's directory updates under that load (README, "Several machines, one directory");
// after `blackmatch sync` on both, every file whose close() returned 0 is there through both gateways, with its
// bytes; every name a mount removed stays removed; a name both wrote keeps one version and the other beside it.
// The load and the check: test/support/shared-load.ts (npm run soak:shared runs many rounds of it).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sharedRound, type SharedMount } from '../support/shared-load.js';
import { describeWithGrid } from '../support/test-grid.js';

describeWithGrid('two machines, one directory', { own: true, gateways: 2 }, (grid) => {
  // Each mode meets each way of storing once, in two rounds.
  const rounds: Array<[SharedMount, SharedMount]> = [
    [{ mode: 'split', writeBack: false }, { mode: 'no-split', writeBack: true }],
    [{ mode: 'no-split', writeBack: false }, { mode: 'split', writeBack: true }],
  ];
  for (const pair of rounds) {
    const what = pair.map((x) => `${x.mode}${x.writeBack ? ' --write-back' : ''}`).join(' and ');
    it(`nothing close() called stored is lost, nothing removed comes back (${what})`, { timeout: 900_000 }, async () => {
      // blackmatch's own quiet period: a shorter one would not outlast the gateways' retries.
      const r = await sharedRound(grid.gatewayUrls, pair, 'default');
      assert.deepEqual(r.problems, [], `${r.problems.length} problem(s); calls that failed (allowed): ${r.failures.length}\n${r.failures.join('\n')}`);
      for (const [i, s] of r.syncs.entries()) assert.equal(s.code, 0, `sync of mount ${i}: ${s.output}`);
    });
  }
});
