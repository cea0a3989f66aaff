// `blackmatch status` against a real grid of this file's own (its gateway is frozen and stopped), in both modes:
// what a mount reports (mode, root fingerprint, grid health, cache and hit rate), an upload's progress while
// close() waits on a frozen gateway, writes not stored while the gateway is down, and no cap in any output.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { access, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'node:test';
import type { MountStatus } from '../../src/cli/status.js';
import { eventually, MODES, runCli, TestMount } from '../../grid/mount.js';
import { describeWithGrid } from '../support/test-grid.js';

type Answer = MountStatus | { mountpoint: string; error: string };

async function status(...args: string[]): Promise<{ code: number; answers: Answer[]; text: string }> {
  const res = await runCli(['status', '--json', ...args], 30_000);
  return { code: res.code, answers: JSON.parse(res.stdout || '[]') as Answer[], text: res.stdout + res.stderr };
}

async function statusOf(m: TestMount): Promise<MountStatus> {
  const { code, answers, text } = await status(m.mountpoint);
  assert.equal(code, 0, text);
  const [answer] = answers;
  assert.ok(answer && !('error' in answer), text);
  return answer;
}

describeWithGrid('blackmatch status', { own: true }, (grid) => {
  for (const mode of MODES) {
    it(`reports the mount: mode, root fingerprint, the grid's servers, cache and hit rate, and never a cap (${mode})`, { timeout: 300_000 }, async () => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl });
      try {
        // Put by another client: read twice through the mount, a download then reads from the cache.
        const big = randomBytes(3 * 1024 * 1024);
        await m.webPut('big.bin', big);
        await eventually('the file seen through the mount', () => access(m.path('big.bin')).then(() => true, () => false));
        assert.ok((await readFile(m.path('big.bin'))).equals(big));
        assert.ok((await readFile(m.path('big.bin'))).equals(big));
        const s = await statusOf(m);
        assert.equal(s.mountpoint, m.mountpoint);
        assert.equal(s.split, mode === 'split');
        assert.equal(s.writeBack, false);
        assert.match(s.root, /^DIR2#[0-9a-f]{10}$/);
        assert.deepEqual([s.gateway.reachable, s.gateway.connected, s.gateway.known], [true, 3, 3]);
        assert.deepEqual(s.writes.uploads, []);
        assert.ok(s.cache.usedBytes >= big.length, `cache holds the uploaded bytes: ${s.cache.usedBytes}`);
        assert.ok(s.cache.maxBytes > 0);
        assert.ok(s.cache.hits + s.cache.misses > 0, 'reads are counted');
        const all = await status();
        assert.ok(all.answers.some((a) => a.mountpoint === m.mountpoint), 'listed without a mountpoint too');
        const human = await runCli(['status', m.mountpoint], 30_000);
        assert.equal(human.code, 0, human.stderr);
        assert.match(human.stdout, /3 of 3 storage servers connected/);
        for (const text of [all.text, human.stdout]) assert.doesNotMatch(text, /URI:/, 'no cap in the output');
      } finally {
        await m.cleanup();
      }
    });

    it(`shows an upload's progress while close() waits on a frozen gateway, then what is not stored while it is down (${mode})`, { timeout: 600_000 }, async () => {
      const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl });
      const bytes = 32 * 1024 * 1024;
      const source = join(m.workDir, 'big.src');
      await writeFile(source, randomBytes(bytes));
      let copy: ReturnType<typeof spawn> | undefined;
      try {
        grid.freezeGateway();
        // close() of the copy waits for the upload, which the frozen gateway never takes in.
        copy = spawn('cp', [source, m.path('big.bin')], { stdio: 'ignore', timeout: 300_000 });
        let seen: MountStatus['writes']['uploads'][number] | undefined;
        await eventually('the upload in the status', async () => {
          const s = await statusOf(m);
          seen = s.writes.uploads.find((u) => u.path === '/big.bin' && u.sending && u.sent > 0);
          return seen !== undefined;
        }, 120_000);
        assert.equal(seen!.bytes, bytes);
        assert.ok(seen!.sent <= bytes);
        const frozen = await statusOf(m);
        assert.equal(frozen.gateway.reachable, false, 'a frozen gateway does not answer');
        await grid.killGateway();
        // The upload breaks; durable close() fails or is retried: either way the bytes stay staged until stored.
        await new Promise<void>((resolve) => (copy!.exitCode !== null ? resolve() : copy!.once('exit', () => resolve())));
        await eventually('the write not stored in the status', async () => {
          const s = await statusOf(m);
          const notStored = [...s.writes.kept, ...s.writes.failed].some((k) => k.path === '/big.bin');
          return notStored && !s.gatewayState.online && s.recentProblems.some((p) => p.message.includes('upload failed'));
        });
      } finally {
        copy?.kill();
        await grid.startGateway();
      }
      try {
        const synced = await runCli(['sync', m.mountpoint], 300_000);
        assert.equal(synced.code, 0, synced.stdout + synced.stderr);
        const s = await statusOf(m);
        assert.deepEqual([s.writes.uploads, s.writes.kept, s.writes.failed], [[], [], []]);
        assert.equal(s.gateway.reachable, true);
        assert.equal(s.gatewayState.online, true);
      } finally {
        await m.cleanup();
      }
    });
  }

  it('a path that is not a blackmatch mount is said so, with exit 1', async () => {
    const { code, answers } = await status('/');
    assert.equal(code, 1);
    assert.match((answers[0] as { error: string }).error, /not a blackmatch mount/);
    const res = await runCli(['status', '--bogus'], 30_000);
    assert.equal(res.code, 2);
  });
});
