// The one error type every layer throws: an errno name and a message for the log. Edges (FUSE, RPC) map it.
import { constants } from 'node:os';

export type ErrnoName = keyof typeof constants.errno;

export class FsError extends Error {
  readonly code: ErrnoName;
  constructor(code: ErrnoName, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'FsError';
  }
  /** Positive errno number on this platform. */
  get errno(): number {
    return constants.errno[this.code];
  }
}

export function errnoName(errno: number): ErrnoName | undefined {
  for (const [name, value] of Object.entries(constants.errno)) {
    if (value === errno) return name as ErrnoName;
  }
  return undefined;
}

/** Maps anything thrown to an errno number: FsError keeps its own; anything else is a bug: EIO. */
export function toErrno(err: unknown): number {
  return err instanceof FsError ? err.errno : constants.errno.EIO;
}

/**
 * Wraps a failure of a local fs call (staging, cache) where it enters the core. ENOSPC and EDQUOT stay visible,
 * and EFBIG: a length or offset past what the staging disk can hold (ext4: 16 TiB) is what POSIX names it
 * (`truncate -s 999999999999999`), not an I/O error; Tahoe's own share formats hold 64-bit sizes.
 */
export function fromLocalFs(err: unknown, what: string): FsError {
  if (err instanceof FsError) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const keep = code === 'ENOSPC' || code === 'EDQUOT' || code === 'EMFILE' || code === 'ENFILE' || code === 'EFBIG';
  return new FsError(keep ? code : 'EIO', `${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

export function isExpected(err: unknown): boolean {
  return err instanceof FsError && err.code !== 'EIO';
}

/**
 * A failure that happened in another process (the server, in split mode) and came back over the RPC. That
 * process logged it where it happened, so an edge here logs it only at debug level: each failure is logged once.
 */
export class RemoteFsError extends FsError {
  /** An errno name this platform does not know (or none) becomes EIO. */
  constructor(code: unknown, message: string) {
    super(typeof code === 'string' && Object.hasOwn(constants.errno, code) ? (code as ErrnoName) : 'EIO', message);
    this.name = 'RemoteFsError';
  }
}

/** Whether a failure was already logged by the process where it happened. */
export function loggedElsewhere(err: unknown): boolean {
  return err instanceof RemoteFsError;
}
