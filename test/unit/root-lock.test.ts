// The root lock (src/process/root-lock.ts): one owner at a time, freed by the kernel when its owner dies, and
// the lock file beside it only information.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { selfIdentity } from '../../src/process/alive.js';
import { lockInfoPath, lockRoot } from '../../src/process/root-lock.js';
import { exitOf, kill, lockTaker, strangerWithMainJs, type LockTaker } from '../support/processes.js';
import { tempDirPerSuite } from '../support/temp-dir.js';

const TAKERS = 8;
const ROUNDS = 3;

describe('lockRoot', () => {
  let base: string;
  let n = 0;
  /** A fresh socket directory, named as the program names it. */
  const socketDir = async (): Promise<string> => join(await mkdtemp(join(base, `n${n++}-`)), 'tfuse.sockets');
  tempDirPerSuite('bm-lock-', (d) => (base = d));

  async function race(dir: string, before?: () => Promise<void>): Promise<string[]> {
    const takers: LockTaker[] = [];
    try {
      for (let i = 0; i < TAKERS; i++) takers.push(await lockTaker(dir, 'tahoe', `/mnt/${i}`));
      await before?.();
      for (const t of takers) t.go();
      return await Promise.all(takers.map((t) => t.outcome));
    } finally {
      await Promise.all(takers.map((t) => t.finish()));
    }
  }

  it(`of ${TAKERS} processes racing for one root, exactly one wins (${ROUNDS} rounds)`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const outcomes = await race(await socketDir());
      assert.equal(outcomes.filter((o) => o === 'won').length, 1, outcomes.join('\n'));
      for (const o of outcomes.filter((o) => o !== 'won')) assert.match(o, /root "tahoe" is already mounted/);
    }
  });

  it(`exactly one wins when the ${TAKERS} racers find a lock file left by a dead holder (${ROUNDS} rounds)`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const dir = await socketDir();
      const dead = await lockTaker(dir, 'tahoe', '/mnt/dead');
      dead.go();
      assert.equal(await dead.outcome, 'won');
      await kill(dead.child);
      const outcomes = await race(dir);
      assert.equal(outcomes.filter((o) => o === 'won').length, 1, outcomes.join('\n'));
    }
  });

  it('a holder SIGKILLed: the next taker gets the lock at its first try', async () => {
    const dir = await socketDir();
    const first = await lockTaker(dir, 'tahoe', '/mnt/first');
    first.go();
    assert.equal(await first.outcome, 'won');
    const refused = await lockTaker(dir, 'tahoe', '/mnt/refused');
    refused.go();
    assert.match(await refused.outcome, new RegExp(`already mounted at /mnt/first \\(pid ${first.child.pid}\\)`));
    await refused.finish();
    await kill(first.child);
    const next = await lockTaker(dir, 'tahoe', '/mnt/next');
    next.go();
    assert.equal(await next.outcome, 'won');
    await next.finish();
  });

  it('a stale lock file naming a live stranger (command line with main.js) does not block', async () => {
    const dir = await socketDir();
    const stranger = await strangerWithMainJs();
    try {
      const first = await lockRoot(dir, 'tahoe', '/mnt/first');
      await first.release();
      // As a crashed holder of the previous version left it (pid only), its pid now taken by the stranger; and
      // as this version would, with a start that is not the stranger's.
      for (const stale of [{ pid: stranger.pid, mountpoint: '/mnt/old' }, { pid: stranger.pid, start: selfIdentity().start, mountpoint: '/mnt/old' }]) {
        await writeFile(lockInfoPath(dir, 'tahoe'), JSON.stringify(stale));
        const lock = await lockRoot(dir, 'tahoe', '/mnt/new');
        await lock.release();
      }
    } finally {
      await kill(stranger);
    }
  });

  it('records who holds it and where; refuses a second taker; release frees it and removes the file', async () => {
    const dir = await socketDir();
    const lock = await lockRoot(dir, 'tahoe', '/mnt/one');
    const info = lockInfoPath(dir, 'tahoe');
    assert.deepEqual(JSON.parse(await readFile(info, 'utf8')), { ...selfIdentity(), mountpoint: '/mnt/one' });
    await assert.rejects(lockRoot(dir, 'tahoe', '/mnt/two'), new RegExp(`root "tahoe" is already mounted at /mnt/one \\(pid ${process.pid}\\)`));
    const other = await lockRoot(dir, 'other', '/mnt/other'); // another root, its own lock
    const elsewhere = await lockRoot(await socketDir(), 'tahoe', '/mnt/elsewhere'); // another node directory
    await Promise.all([lock.release(), lock.release(), other.release(), elsewhere.release()]);
    await assert.rejects(stat(info), { code: 'ENOENT' });
    const again = await lockRoot(dir, 'tahoe', '/mnt/three');
    assert.equal(JSON.parse(await readFile(info, 'utf8')).mountpoint, '/mnt/three');
    await again.release();
  });

  it('never keeps its holder alive, even unreleased', async () => {
    const taker = await lockTaker(await socketDir(), 'tahoe', '/mnt/x', true);
    taker.go();
    assert.equal(await taker.outcome, 'won');
    taker.child.stdin!.end(); // its last reason to stay
    await exitOf(taker.child);
  });
});
