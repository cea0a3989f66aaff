// Offline reads (issue 12, part 2) on a grid of this file's own (it stops and starts the gateway; every test
// starts it again in a finally): with the gateway stopped, a mount keeps listing what it listed and reading
// what it cached, fails the rest with EIO (a durable write at close()), and works again, with no remount,
// once the gateway is back; a mount can start offline from the listings an earlier mount kept. Write-back
// with the gateway down (close() succeeds, stored once it is back) is write-back.test.ts's.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { it } from 'node:test';
import { mkdirCap } from '../../grid/local-grid.js';
import { eventually, MODES, runCli, TestMount, type Mode } from '../../grid/mount.js';
import { describeWithGrid } from '../support/test-grid.js';
import { expectErrno } from '../support/assert-fs.js';

const run = promisify(execFile);
/** Generous bounds for what must fail fast: a failure, not a hang, is what is checked (never a duration). */
const FAIL_BOUND_MS = 60_000;
/**
 * Listings trusted for no time (by the kernel too): every use while the gateway is stopped asks for a listing
 * that cannot be fetched, so each is served from what the mount kept, not from a listing still fresh.
 */
const CACHE_TIMEOUT_S = 0;

describeWithGrid('offline reads', { own: true }, (grid) => {
  /** A root made by another client: docs/cached.bin, docs/uncached.bin, docs/sub/note.txt. */
  async function makeRoot(cached: Buffer, uncached: Buffer): Promise<string> {
    const root = await mkdirCap(grid.gatewayUrl);
    const put = async (path: string, body: Buffer | string) => {
      const res = await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(root)}/${path}`, { method: 'PUT', body: typeof body === 'string' ? body : new Uint8Array(body), signal: AbortSignal.timeout(120_000) });
      assert.ok(res.ok, `PUT ${path}: HTTP ${res.status}`);
    };
    await put('docs/cached.bin', cached);
    await put('docs/uncached.bin', uncached);
    await put('docs/sub/note.txt', 'a note');
    return root;
  }

  /** A mount of a fresh root (see makeRoot) that has listed docs and docs/sub and read docs/cached.bin whole. */
  async function warmMount(mode: Mode): Promise<{ m: TestMount; cached: Buffer; uncached: Buffer }> {
    const cached = randomBytes(1_000_000);
    const uncached = randomBytes(400_000);
    const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: await makeRoot(cached, uncached), cacheTimeout: CACHE_TIMEOUT_S });
    try {
      await m.sh('ls -l docs docs/sub');
      assert.ok((await readFile(m.path('docs', 'cached.bin'))).equals(cached));
    } catch (e) {
      await m.cleanup();
      throw e;
    }
    return { m, cached, uncached };
  }

  /** Stops the gateway, runs `fn`, and starts it again whatever happens. */
  async function withGatewayStopped(fn: () => Promise<void>): Promise<void> {
    await grid.stopGateway();
    try {
      await fn();
    } finally {
      await grid.startGateway();
    }
  }

  const logged = async (m: TestMount, msg: RegExp) => (await m.logRecords()).filter((r) => typeof r.msg === 'string' && msg.test(r.msg));

  /** Everything works again, with no remount: listings fetched anew, uncached bytes read, a write stored. */
  async function worksAgain(m: TestMount, uncached: Buffer): Promise<void> {
    await m.webPut('docs/after-restart.txt', 'put by another client once the gateway was back');
    // The first use after the restart may come before a probe saw the gateway back: wait for the listing.
    await eventually('the listing is fetched again', async () => (await readdir(m.path('docs')).catch(() => [] as string[])).includes('after-restart.txt'), 60_000);
    assert.ok((await m.watch('read of the uncached file', () => readFile(m.path('docs', 'uncached.bin')))).equals(uncached));
    const data = randomBytes(150_000);
    await m.watch('a write after the restart', () => writeFile(m.path('docs', 'written-after.bin'), data));
    assert.ok((await m.webGet('docs/written-after.bin')).equals(data), 'durable: stored at close()');
  }

  for (const mode of MODES) {
    it(`with the gateway stopped, kept listings and cached bytes are served, the rest fails with EIO; all works again once it is back (${mode})`, { timeout: 300_000 }, async () => {
      const { m, cached, uncached } = await warmMount(mode);
      try {
        await withGatewayStopped(async () => {
          const ls = await m.sh('ls -l . docs docs/sub', { timeoutMs: FAIL_BOUND_MS });
          for (const name of ['docs', 'cached.bin', 'uncached.bin', 'sub', 'note.txt']) assert.match(ls.stdout, new RegExp(` ${name.replace('.', '\\.')}\\n`));
          assert.match(ls.stdout, new RegExp(` ${cached.length} .* cached\\.bin\\n`), ls.stdout);
          assert.equal((await stat(m.path('docs', 'uncached.bin'))).size, uncached.length);
          assert.ok((await m.watch('read of the cached file', () => readFile(m.path('docs', 'cached.bin')), FAIL_BOUND_MS)).equals(cached));
          await expectErrno(m.watch('read of a file never read', () => readFile(m.path('docs', 'uncached.bin')), FAIL_BOUND_MS), 'EIO');
          await expectErrno(m.watch('a durable write', () => writeFile(m.path('docs', 'written-offline.txt'), 'written offline'), FAIL_BOUND_MS), 'EIO');
          assert.equal((await logged(m, /^gateway unreachable: requests fail at once/)).length, 1, 'the outage is logged once');
          assert.equal((await logged(m, /^gateway unreachable: serving directory listings kept/)).length, 1);
        });
        await worksAgain(m, uncached);
        // The write that failed at close() stayed staged: the retry pass stores it now.
        await eventually('the write made offline is stored', async () => (await m.webGetOrNull('docs/written-offline.txt'))?.toString() === 'written offline', 120_000);
        assert.ok((await logged(m, /^gateway answers again/)).length >= 1);
      } finally {
        await m.cleanup();
      }
    });

    it(`a mount started with the gateway stopped serves the listings and bytes an earlier mount kept; it comes online when the gateway is back (${mode})`, { timeout: 300_000 }, async () => {
      const { m, cached, uncached } = await warmMount(mode);
      try {
        await unmountAndWait(m);
        await withGatewayStopped(async () => {
          const started = await runCli(mountArgs(m, mode));
          assert.equal(started.code, 0, `mounts offline: ${started.stderr}`);
          const [line] = await logged(m, /^gateway unreachable: starting offline from the root's listing kept/);
          assert.ok(line, 'the start offline is logged');
          assert.equal(typeof line.ageS, 'number');
          const ls = await m.sh('ls -l docs docs/sub', { timeoutMs: FAIL_BOUND_MS });
          assert.match(ls.stdout, / cached\.bin\n/);
          assert.match(ls.stdout, / note\.txt\n/);
          assert.ok((await m.watch('read of the cached file', () => readFile(m.path('docs', 'cached.bin')), FAIL_BOUND_MS)).equals(cached));
          await expectErrno(m.watch('read of a file never read', () => readFile(m.path('docs', 'uncached.bin')), FAIL_BOUND_MS), 'EIO');
        });
        await worksAgain(m, uncached);
      } finally {
        await m.cleanup();
      }
    });
  }

  it('with nothing kept, a mount with the gateway stopped still fails, saying the node is not reachable', { timeout: 300_000 }, async () => {
    const m = await TestMount.start({ mode: 'no-split', gatewayUrl: grid.gatewayUrl });
    try {
      await unmountAndWait(m);
      // Another root of the same node directory: nothing of it was ever listed.
      const other = await mkdirCap(grid.gatewayUrl);
      await withGatewayStopped(async () => {
        const r = await runCli(['--node-directory', m.nodeDir, '--root-uri', other, '--no-split', m.mountpoint]);
        assert.equal(r.code, 1, r.stdout + r.stderr);
        assert.match(r.stderr, /not reachable/);
        assert.doesNotMatch(r.stderr, /URI:DIR2:/, 'no cap in the message');
      });
    } finally {
      await m.cleanup();
    }
  });
});

/** The command line of a mount of the same node directory and root (its alias), as TestMount made it. */
function mountArgs(m: TestMount, mode: Mode): string[] {
  return ['--node-directory', m.nodeDir, '--cache-timeout', String(CACHE_TIMEOUT_S), '--log-level', 'debug', ...(mode === 'no-split' ? ['--no-split'] : []), m.mountpoint];
}

async function unmountAndWait(m: TestMount): Promise<void> {
  await run('fusermount', ['-u', m.mountpoint], { timeout: 30_000 });
  await eventually('every process of the mount exits', async () => (await m.pids()).length === 0, 60_000);
}
