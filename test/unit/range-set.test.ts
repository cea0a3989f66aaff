import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RangeSet, type Range } from '../../src/cache/range-set.js';

const set = (...ranges: Range[]) => new RangeSet(ranges);

describe('RangeSet', () => {
  describe('add', () => {
    it('starts empty', () => {
      const s = new RangeSet();
      assert.deepEqual(s.toJSON(), []);
      assert.equal(s.bytes, 0);
    });

    it('keeps disjoint ranges apart, sorted whatever the order they came in', () => {
      const s = new RangeSet();
      s.add(50, 60);
      s.add(10, 20);
      s.add(30, 40);
      s.add(70, 80);
      assert.deepEqual(s.toJSON(), [
        [10, 20],
        [30, 40],
        [50, 60],
        [70, 80],
      ]);
    });

    it('merges overlapping ranges', () => {
      assert.deepEqual(set([10, 20], [15, 30]).toJSON(), [[10, 30]]);
      assert.deepEqual(set([15, 30], [10, 20]).toJSON(), [[10, 30]]);
      assert.deepEqual(set([10, 30], [12, 18]).toJSON(), [[10, 30]], 'contained');
      assert.deepEqual(set([12, 18], [10, 30]).toJSON(), [[10, 30]], 'containing');
      assert.deepEqual(set([10, 20], [10, 20]).toJSON(), [[10, 20]], 'identical');
    });

    it('merges ranges that only touch', () => {
      assert.deepEqual(set([10, 20], [20, 30]).toJSON(), [[10, 30]]);
      assert.deepEqual(set([20, 30], [10, 20]).toJSON(), [[10, 30]]);
      assert.deepEqual(set([0, 1], [1, 2], [2, 3]).toJSON(), [[0, 3]]);
    });

    it('bridges several ranges at once, and keeps the ones beyond', () => {
      const s = set([0, 5], [10, 15], [20, 25], [30, 35], [50, 60]);
      s.add(3, 31);
      assert.deepEqual(s.toJSON(), [
        [0, 35],
        [50, 60],
      ]);
      s.add(35, 50);
      assert.deepEqual(s.toJSON(), [[0, 60]]);
    });

    it('fills a gap exactly', () => {
      const s = set([0, 10], [20, 30]);
      s.add(10, 20);
      assert.deepEqual(s.toJSON(), [[0, 30]]);
    });

    it('ignores empty and inverted ranges', () => {
      const s = set([10, 20]);
      s.add(5, 5);
      s.add(30, 30);
      s.add(40, 35);
      s.add(20, 20);
      assert.deepEqual(s.toJSON(), [[10, 20]]);
      assert.deepEqual(set([3, 3], [7, 2]).toJSON(), []);
    });

    it('normalizes the ranges it is constructed from', () => {
      assert.deepEqual(set([40, 50], [0, 10], [5, 20], [20, 25], [60, 60]).toJSON(), [
        [0, 25],
        [40, 50],
      ]);
    });
  });

  it('contains: only when every byte is present', () => {
    const s = set([10, 20], [30, 40]);
    assert.equal(s.contains(10, 20), true);
    assert.equal(s.contains(12, 18), true);
    assert.equal(s.contains(30, 40), true);
    assert.equal(s.contains(9, 20), false);
    assert.equal(s.contains(10, 21), false);
    assert.equal(s.contains(15, 35), false, 'across a gap');
    assert.equal(s.contains(20, 30), false, 'the gap itself');
    assert.equal(s.contains(0, 5), false);
    assert.equal(s.contains(45, 50), false);
    assert.equal(s.contains(25, 25), true, 'an empty range is always present');
    assert.equal(new RangeSet().contains(0, 0), true);
    assert.equal(new RangeSet().contains(0, 1), false);
  });

  it('firstMissing: the first absent byte at or after a position', () => {
    const s = set([10, 20], [30, 40]);
    for (const [at, want] of [[0, 0], [9, 9], [10, 20], [19, 20], [20, 20], [25, 25], [30, 40], [40, 40], [100, 100]] as const) {
      assert.equal(s.firstMissing(at), want, `firstMissing(${at})`);
    }
    assert.equal(new RangeSet().firstMissing(7), 7);
  });

  it('nextPresent: the first present byte at or after a position, Infinity when none', () => {
    const s = set([10, 20], [30, 40]);
    for (const [at, want] of [[0, 10], [10, 10], [15, 15], [19, 19], [20, 30], [25, 30], [39, 39], [40, Infinity]] as const) {
      assert.equal(s.nextPresent(at), want, `nextPresent(${at})`);
    }
    assert.equal(new RangeSet().nextPresent(0), Infinity);
  });

  it('bytes: the total present', () => {
    assert.equal(set([10, 20], [30, 45]).bytes, 25);
    assert.equal(set([0, 10], [5, 15]).bytes, 15);
  });

  it('toJSON: a copy that round-trips through JSON and cannot change the set', () => {
    const s = set([0, 10], [20, 30]);
    const json = s.toJSON();
    json[0]![1] = 99;
    json.push([100, 200]);
    assert.deepEqual(s.toJSON(), [
      [0, 10],
      [20, 30],
    ]);
    const back = new RangeSet(JSON.parse(JSON.stringify(s)) as Range[]);
    assert.deepEqual(back.toJSON(), s.toJSON());
  });

  it('agrees with a boolean-array model under random adds (fixed seed)', () => {
    // mulberry32: a small seeded generator, so that a failure reproduces.
    let seed = 0x5eed1234;
    const random = () => {
      seed = (seed + 0x6d2b79f5) >>> 0;
      let t = seed;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const int = (n: number) => Math.floor(random() * n);
    const N = 200;

    for (let round = 0; round < 200; round++) {
      const model = new Array<boolean>(N).fill(false);
      const s = new RangeSet();
      const adds = 1 + int(25);
      for (let i = 0; i < adds; i++) {
        const start = int(N);
        // Mostly short ranges (so that gaps survive), sometimes empty or inverted ones.
        const end = random() < 0.1 ? start - int(5) : Math.min(N, start + int(random() < 0.8 ? 12 : 60));
        s.add(start, end);
        for (let b = start; b < end; b++) model[b] = true;

        // Structure: sorted, disjoint, not touching, non-empty; and exactly the model's runs.
        const runs: Range[] = [];
        for (let b = 0; b < N; b++) {
          if (!model[b]) continue;
          const last = runs[runs.length - 1];
          if (last && last[1] === b) last[1] = b + 1;
          else runs.push([b, b + 1]);
        }
        assert.deepEqual(s.toJSON(), runs, `round ${round} add ${i}`);
        assert.equal(s.bytes, model.filter(Boolean).length);
      }

      for (let q = 0; q < 40; q++) {
        const from = int(N + 5);
        const to = from + int(30);
        const inModel = (b: number) => b < N && model[b] === true;
        let all = true;
        for (let b = from; b < to; b++) if (!inModel(b)) all = false;
        assert.equal(s.contains(from, to), all, `contains(${from}, ${to}) round ${round}`);

        let missing = from;
        while (inModel(missing)) missing++;
        assert.equal(s.firstMissing(from), missing, `firstMissing(${from}) round ${round}`);

        let present = from;
        while (present < N && !inModel(present)) present++;
        assert.equal(s.nextPresent(from), present < N ? present : Infinity, `nextPresent(${from}) round ${round}`);
      }
    }
  });
});
