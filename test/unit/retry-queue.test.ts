// The retry queue of write-back (util/retry-queue.ts) on its own: a job is tried until it says it is done,
// pauses between tries end early when asked (tryNow, wakeAll), and a drain ends every job after one more try.
// Pauses here are an hour long: only the calls under test move a job on, never a clock.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RetryQueue } from '../../src/util/retry-queue.js';
import { bounded } from '../support/core.js';

const HOUR = 3_600_000;

/** A job that fails its first `failures` tries, counting them. */
function flaky(failures: number): { attempt: () => Promise<boolean>; tries: () => number } {
  let tries = 0;
  return { attempt: async () => ++tries > failures, tries: () => tries };
}

describe('retry queue', () => {
  it('tries a job at once, and again whenever asked, until it is done; then it is gone', async () => {
    const queue = new RetryQueue<string>(HOUR, HOUR);
    const job = flaky(2);
    assert.equal(queue.add('a', job.attempt), true);
    assert.equal(queue.add('a', job.attempt), false, 'one job per key');
    assert.equal(await bounded(queue.tryNow('a'), 'first try'), false);
    assert.equal(await bounded(queue.tryNow('a'), 'second try'), false);
    assert.equal(await bounded(queue.tryNow('a'), 'third try'), true);
    await bounded(queue.ended('a'), 'the job ends');
    assert.equal(queue.has('a'), false);
    assert.equal(job.tries(), 3);
    assert.equal(await queue.tryNow('a'), true, 'no job: nothing left to do');
  });

  it('cancel ends a job before its next try, as done; a try on its way is not cancelled', async () => {
    const queue = new RetryQueue<string>(HOUR, HOUR);
    const later = flaky(0);
    queue.add('later', later.attempt, HOUR);
    assert.equal(queue.cancel('later'), true);
    await bounded(queue.ended('later'), 'the cancelled job ends');
    assert.equal(later.tries(), 0, 'never tried');
    assert.equal(await queue.tryNow('later'), true);

    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    queue.add('busy', async () => {
      await held;
      return true;
    });
    assert.equal(queue.cancel('busy'), false, 'its try is on its way');
    release();
    assert.equal(await bounded(queue.tryNow('busy'), 'the try'), true);
    assert.equal(queue.cancel('none'), true, 'no job: nothing to cancel');
  });

  it('a try that throws is a try that did not finish the job', async () => {
    const queue = new RetryQueue<string>(HOUR, HOUR);
    let tries = 0;
    queue.add('a', async () => {
      if (++tries === 1) throw new Error('boom');
      return true;
    });
    assert.equal(await bounded(queue.tryNow('a'), 'first'), false);
    assert.equal(await bounded(queue.tryNow('a'), 'second'), true);
  });

  it('wakeAll ends every pause; drain gives each job one more try and ends it', async () => {
    const queue = new RetryQueue<string>(HOUR, HOUR);
    const done = flaky(1);
    const never = flaky(Infinity);
    queue.add('done', done.attempt);
    queue.add('never', never.attempt);
    await bounded(Promise.all([queue.tryNow('done'), queue.tryNow('never')]), 'first tries');
    queue.wakeAll();
    await bounded(queue.ended('done'), 'woken, the first job finishes');
    await bounded(queue.drain(), 'drain');
    assert.equal(queue.has('never'), false, 'drained: the job that cannot finish ends');
    assert.ok(never.tries() >= 2);
    assert.deepEqual(queue.keys(), []);
  });

  it('a job added with a first delay is not tried until it passes or someone asks (tryNow, wakeAll, drain)', async () => {
    const queue = new RetryQueue<string>(HOUR, HOUR);
    const asked = flaky(0);
    const woken = flaky(0);
    const drained = flaky(0);
    queue.add('asked', asked.attempt, HOUR);
    queue.add('woken', woken.attempt, HOUR);
    await new Promise((r) => setImmediate(r));
    assert.equal(asked.tries() + woken.tries(), 0, 'not tried during the delay');
    assert.equal(await bounded(queue.tryNow('asked'), 'asked'), true);
    queue.wakeAll();
    await bounded(queue.ended('woken'), 'woken');
    queue.add('drained', drained.attempt, HOUR);
    await bounded(queue.drain(), 'drain');
    assert.deepEqual([asked.tries(), woken.tries(), drained.tries()], [1, 1, 1]);
  });
});
