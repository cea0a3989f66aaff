// How long each op may take, at each edge: the one place its deadlines are stated. Which ops are long (may move
// a whole file) is the op table's word (OP_TABLE[op].long in src/fs/ops.ts); this module gives each kind its
// bound. The bounds nest, inside out, so that the innermost one that knows what went wrong fires first:
//   1. the core bounds every wait of its own (each web-API request: src/tahoe/client.ts DEFAULT_TIMEOUTS);
//   2. split mode's RPC client gives up on a call after callDeadlineMs(op), with "no reply from the server";
//   3. the FUSE adapter answers a kernel request EIO after backstopMs(op) of the core ops it calls, above (2)
//      by BACKSTOP_MARGIN_MS: a request must never hang its program, but while the RPC's clearer error can
//      still come, the adapter waits for it. (In --no-split mode there is no (2): the backstop is above (1).)
import { OP_TABLE, type OpName } from './fs/ops.js';

/**
 * One RPC call: above the server's own bounds (a rename may make several web-API requests of up to 60 s each,
 * with retries).
 */
export const CALL_DEADLINE_MS = 900_000;
/** One RPC call of a long op: it may upload or download a whole file. */
export const DATA_CALL_DEADLINE_MS = 3_600_000;
/** How much later than the RPC's deadline the adapter's backstop fires: the RPC's error has time to come back. */
const BACKSTOP_MARGIN_MS = 60_000;

/** The adapter's backstop for a kernel request that calls no long op (or no op at all). */
export const BACKSTOP_MS = CALL_DEADLINE_MS + BACKSTOP_MARGIN_MS;

export function callDeadlineMs(op: OpName): number {
  return OP_TABLE[op].long ? DATA_CALL_DEADLINE_MS : CALL_DEADLINE_MS;
}

/** How long a kernel request that calls `op` may go unanswered before the FUSE adapter answers EIO itself. */
export function backstopMs(op: OpName): number {
  return callDeadlineMs(op) + BACKSTOP_MARGIN_MS;
}
