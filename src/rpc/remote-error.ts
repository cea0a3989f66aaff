// The error a client call rejects with when the server answered with an error. The server has logged that
// failure where it happened, so the client's edge logs it only at debug level: each failure is logged once.
import { constants } from 'node:os';
import { FsError, type ErrnoName } from '../errors.js';

export class RemoteFsError extends FsError {
  /** An errno name this platform does not know (or none) becomes EIO. */
  constructor(code: unknown, message: string) {
    super(typeof code === 'string' && Object.hasOwn(constants.errno, code) ? (code as ErrnoName) : 'EIO', message);
    this.name = 'RemoteFsError';
  }
}

/** Whether a failure was already logged by the server (it came back over the RPC). */
export function loggedByServer(err: unknown): boolean {
  return err instanceof RemoteFsError;
}
