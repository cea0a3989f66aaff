// The deadlines' one rule: for every op, the RPC gives up before the FUSE adapter's backstop fires.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BACKSTOP_MS, backstopMs, CALL_DEADLINE_MS, callDeadlineMs, DATA_CALL_DEADLINE_MS } from '../../src/deadlines.js';
import { OP_NAMES, OP_TABLE } from '../../src/fs/ops.js';

describe('deadlines', () => {
  it('puts every op’s RPC deadline below its backstop, long ops by the op table', () => {
    for (const op of OP_NAMES) {
      assert.equal(callDeadlineMs(op), OP_TABLE[op].long ? DATA_CALL_DEADLINE_MS : CALL_DEADLINE_MS, op);
      assert.ok(callDeadlineMs(op) < backstopMs(op), op);
    }
    assert.ok(CALL_DEADLINE_MS < BACKSTOP_MS);
  });
});
