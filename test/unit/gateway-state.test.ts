// The gateway's reachability on its own (src/tahoe/gateway-state.ts), without HTTP: each look is a promise the
// test settles, and setTimeout is mocked, so the probe timer and the gate's wait move only when the test ticks.
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayWatch, type GatewayState } from '../../src/tahoe/gateway-state.js';

interface Look {
  answer: () => void;
  fail: () => void;
}

/** A watch whose looks wait for the test, and the states its listener heard. */
function watch(probeEveryMs: number): { w: GatewayWatch; looks: Look[]; states: GatewayState[] } {
  const looks: Look[] = [];
  const w = new GatewayWatch({
    base: 'http://gateway.invalid/',
    look: () => new Promise<void>((answer, reject) => void looks.push({ answer, fail: () => reject(new Error('no answer')) })),
    probeEveryMs,
  });
  const states: GatewayState[] = [];
  w.onChange(() => {
    throw new Error('a listener that throws stops no other');
  });
  w.onChange((s) => states.push(s));
  return { w, looks, states };
}

/** Lets the promise chains that follow a look's outcome run (setImmediate is not mocked). */
const settle = () => new Promise((r) => setImmediate(r));

describe('gateway state', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  it('changes once per change, and tells each listener once', () => {
    const { w, looks, states } = watch(60_000);
    assert.equal(w.state.online, true);
    w.unreachable(new Error('refused'));
    w.unreachable(new Error('refused again'));
    assert.equal(w.state.online, false);
    assert.deepEqual(states.map((s) => s.online), [false]);
    w.answered();
    w.answered();
    assert.equal(w.state.online, true);
    assert.deepEqual(states.map((s) => s.online), [false, true]);
    assert.ok(states[0]!.since <= states[1]!.since);
    assert.equal(looks.length, 0, 'no probe was due');
    w.close();
  });

  it('lets requests go while online; while unreachable fails them at once until a probe is due', async () => {
    const { w, looks } = watch(60_000);
    assert.equal(await w.gate(), undefined);
    w.unreachable(new Error('refused'));
    assert.equal(await w.gate(), w.state.since, 'the failure that marked it was a look: none is due yet');
    assert.equal(looks.length, 0);
    const probed = w.probeNow();
    assert.equal(looks.length, 1);
    looks[0]!.answer();
    assert.equal(await probed, true);
    assert.equal(await w.gate(), undefined);
    w.close();
  });

  it('a due probe is shared by whoever asks meanwhile, and lets them through once the gateway answers', async () => {
    const { w, looks, states } = watch(0);
    w.unreachable(new Error('refused'));
    const asks = [w.gate(), w.gate(), w.probeNow()];
    assert.equal(looks.length, 1);
    looks[0]!.answer();
    assert.deepEqual(await Promise.all(asks), [undefined, undefined, true]);
    assert.deepEqual(states.map((s) => s.online), [false, true]);
    w.close();
  });

  it('a probe without an answer leaves it unreachable', async () => {
    const { w, looks, states } = watch(60_000);
    w.unreachable(new Error('refused'));
    const probed = w.probeNow();
    looks[0]!.fail();
    assert.equal(await probed, false);
    assert.equal(w.state.online, false);
    assert.deepEqual(states.map((s) => s.online), [false]);
    w.close();
  });

  it('a request waits for a silent probe at most 500 ms, then fails; the probe goes on without it', async () => {
    const { w, looks } = watch(0);
    w.unreachable(new Error('refused'));
    const gated = w.gate();
    mock.timers.tick(500);
    assert.equal(await gated, w.state.since);
    assert.equal(looks.length, 1);
    looks[0]!.answer();
    await settle();
    assert.equal(w.state.online, true);
    w.close();
  });

  it('while unreachable the timer probes on its own, twice as far apart each time, up to 30 s; close stops it', async () => {
    const { w, looks } = watch(0);
    w.unreachable(new Error('refused'));
    let delay = 100; // probeEveryMs 0, at least 100 ms
    for (let i = 1; i <= 12; i++) {
      mock.timers.tick(delay - 1);
      assert.equal(looks.length, i - 1, `look ${i} not before ${delay} ms`);
      mock.timers.tick(1);
      assert.equal(looks.length, i, `look ${i} after ${delay} ms`);
      looks[i - 1]!.fail();
      await settle();
      delay = Math.min(delay * 2, 30_000);
    }
    assert.equal(delay, 30_000);
    w.close();
    mock.timers.tick(10 * 30_000);
    assert.equal(looks.length, 12, 'no look after close');
  });

  it('an answer stops the timer', async () => {
    const { w, looks } = watch(0);
    w.unreachable(new Error('refused'));
    mock.timers.tick(100);
    assert.equal(looks.length, 1);
    looks[0]!.answer();
    await settle();
    assert.equal(w.state.online, true);
    mock.timers.tick(10 * 30_000);
    assert.equal(looks.length, 1);
    w.close();
  });
});
