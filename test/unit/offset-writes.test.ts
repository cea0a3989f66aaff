// offsetWriteRange (src/tahoe/client.ts): what one offset write of an MDMF file sends, around the gateway's failures.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { offsetWriteRange } from '../../src/tahoe/client.js';

describe('offsetWriteRange', () => {
  it('sends a write inside the file as it is, and one that runs past the end from its start', () => {
    assert.deepEqual(offsetWriteRange(1000, 10, 20), { start: 10, end: 20 });
    assert.deepEqual(offsetWriteRange(1000, 999, 2000), { start: 999, end: 2000 });
  });

  it('starts an append, or a write past the end, one byte before the end (with that byte again)', () => {
    assert.deepEqual(offsetWriteRange(131072, 131072, 135168), { start: 131071, end: 135168 });
    assert.deepEqual(offsetWriteRange(1000, 1500, 1600), { start: 999, end: 1600 });
  });

  it('has no offset write for an empty file, and refuses ranges that are not ranges', () => {
    assert.equal(offsetWriteRange(0, 0, 10), undefined);
    assert.throws(() => offsetWriteRange(10, 5, 4), RangeError);
    assert.throws(() => offsetWriteRange(10, 5, 5), RangeError); // nothing to write
    assert.throws(() => offsetWriteRange(-1, 0, 4), RangeError);
    assert.throws(() => offsetWriteRange(10, 0.5, 4), RangeError);
  });
});
