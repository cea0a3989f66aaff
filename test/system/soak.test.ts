// The short soak (test/soak/) in both modes: 8 writers and 8 readers for BLACKMATCH_SOAK_SECONDS (default
// 8) with every byte checked, then the mount's processes back to their baseline of open files and memory.
// `npm run soak` runs the long one (60 s).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { FD_SLACK, formatReport, RSS_SLACK_KIB, soak } from '../soak/soak.js';
import { MODES, TestMount } from '../../grid/mount.js';
import { describeWithGrid } from '../support/test-grid.js';

const SECONDS = Number(process.env.BLACKMATCH_SOAK_SECONDS ?? 8);

for (const mode of MODES) {
  describeWithGrid(`soak (${mode})`, (grid) => {
    it(`${SECONDS} s of 8 writers and 8 readers: every byte right, no error, handles and memory back`, async (t) => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl });
      try {
        const report = await soak({ mount: m, seconds: SECONDS, log: (line) => t.diagnostic(line) });
        t.diagnostic(formatReport(report));
        assert.deepEqual(report.failures, [], formatReport(report));
        assert.ok(report.counts.filesCreated > 0 && report.counts.wholeReads + report.counts.rangeReads > 0, 'the load did something');
        assert.equal(report.settled.length, mode === 'split' ? 2 : 1, 'every process of the mount is still there');
        for (const s of report.settled) {
          const b = report.before.find((x) => x.pid === s.pid)!;
          assert.ok(s.fds <= b.fds + FD_SLACK, `${s.role}: ${s.fds} open files after, ${b.fds} before`);
          assert.ok(s.rssKiB <= b.rssKiB + RSS_SLACK_KIB, `${s.role}: RSS ${s.rssKiB} KiB after, ${b.rssKiB} KiB before`);
        }
      } finally {
        await m.cleanup();
      }
    });
  });
}
