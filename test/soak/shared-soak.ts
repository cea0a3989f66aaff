// npm run soak:shared: ROUNDS (default 20) rounds of "two machines, one directory" (test/support/shared-load.ts:
// two mounts through two gateways of one grid loading one directory at once, sync on both, then every file
// checked through both gateways), each round running both pairings of the system test at once, on two roots
// (four mounts, two per gateway). Prints each round and a summary: files lost after close() returned 0, names
// that came back after a mount removed them, conflicts kept; exits 1 if any round lost or resurrected
// anything, or a sync failed. SETTLE=SECONDS sets the mounts' --settle-time (0: no ledger).
import { startGrid } from '../../grid/local-grid.js';
import { sharedRound, type SharedMount } from '../support/shared-load.js';

// As in test/system/shared-dir.test.ts: each mode meets each way of storing.
const PAIRS: Array<[SharedMount, SharedMount]> = [
  [{ mode: 'split', writeBack: false }, { mode: 'no-split', writeBack: true }],
  [{ mode: 'no-split', writeBack: false }, { mode: 'split', writeBack: true }],
];

async function main(): Promise<number> {
  const rounds = Number(process.env.ROUNDS ?? 20);
  // SETTLE=0 turns the ledger off (--settle-time 0): what Tahoe alone keeps, for comparison.
  const settle = process.env.SETTLE === undefined ? 'default' : Number(process.env.SETTLE);
  const grid = await startGrid({ gateways: 2, log: (m) => process.stderr.write(`${m}\n`) });
  let lost = 0;
  let resurrected = 0;
  let syncFailures = 0;
  let conflicts = 0;
  let repaired = 0;
  try {
    for (let i = 1; i <= rounds; i++) {
      const results = await Promise.all(PAIRS.map((pair) => sharedRound(grid.gatewayUrls, pair, settle)));
      for (const [p, r] of results.entries()) {
        const what = PAIRS[p]!.map((x) => `${x.mode}${x.writeBack ? ' --write-back' : ''}`).join(' + ');
        const l = r.problems.filter((x) => / lost/.test(x)).length;
        const b = r.problems.filter((x) => /back after/.test(x)).length;
        const c = r.syncs.reduce((n, s) => n + (s.output.match(/CONFLICT /g)?.length ?? 0), 0);
        const bad = r.syncs.filter((s) => s.code !== 0);
        lost += l;
        resurrected += b;
        conflicts += c;
        repaired += r.repaired;
        syncFailures += bad.length;
        process.stdout.write(`round ${i}, ${what}: ${l} lost, ${b} back after removal, ${c} conflicts kept, ${r.repaired} repaired, ${r.failures.length} calls failed (reported), stored and checked in ${(r.ms / 1000).toFixed(1)} s${bad.length ? `; sync failed: ${bad.map((s) => s.output.trim()).join(' | ')}` : ''}\n`);
        for (const x of r.problems) process.stdout.write(`  ${x}\n`);
        for (const x of r.failures) process.stdout.write(`  failed (reported to the program): ${x}\n`);
      }
    }
  } finally {
    await grid.stop();
  }
  process.stdout.write(`\n${rounds} rounds of ${PAIRS.length} pairs: ${lost} files lost, ${resurrected} removed names back, ${conflicts} conflicts kept and reported, ${repaired} lost updates repaired, ${syncFailures} syncs failed\n`);
  return lost + resurrected + syncFailures > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`soak:shared: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
