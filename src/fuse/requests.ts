// The life of one kernel request at the FUSE edge, whatever its kind: its backstop (how long it may go
// unanswered, from the core ops it calls), its answer with an errno if it fails (errors become numbers here),
// and its one log line. What a request does is adapter.ts's; that it is answered, and in time, is this file's.
import { BACKSTOP_MS, backstopMs } from '../deadlines.js';
import { FsError, isExpected, loggedElsewhere, toErrno } from '../errors.js';
import { isOpName, type OpName } from '../fs/ops.js';
import type { Logger } from '../log.js';
import type { NativeSession, OpKind, RequestArgs } from './lowlevel.js';

/**
 * The core ops a kernel request calls, where they are not just the one of its own name: the request's backstop
 * is the longest of theirs (src/deadlines.ts), so that the op table alone says which requests are long.
 */
const CALLS: { readonly [K in OpKind]?: readonly OpName[] } = {
  lookup: ['getattr'],
  getattr: ['getattr', 'fgetattr'],
  setattr: ['chmod', 'chown', 'truncate', 'ftruncate', 'utimens', 'getattr', 'fgetattr'],
  mkdir: ['mkdir', 'getattr'],
  symlink: ['symlink', 'getattr'],
  mknod: ['mknod', 'getattr'],
  link: ['link', 'getattr'],
  rename: ['rename', 'getattr'],
  create: ['create', 'fgetattr', 'release'],
  open: ['open', 'backingFile'],
  readdir: ['readdir', 'readdirplus'],
  readdirplus: ['readdir', 'readdirplus'],
  // The binding answers these itself, or the adapter does without the core.
  opendir: [],
  releasedir: [],
  forget: [],
  gone: [],
};

/** Worked out once per request kind: every request asks. */
const requestBackstops = new Map<OpKind, number>();

function requestBackstopMs(op: OpKind): number {
  let ms = requestBackstops.get(op);
  if (ms === undefined) {
    const calls = CALLS[op] ?? (isOpName(op) ? [op] : []);
    ms = Math.max(BACKSTOP_MS, ...calls.map(backstopMs));
    requestBackstops.set(op, ms);
  }
  return ms;
}

/** Runs the requests of one session: numbers them for the log, bounds them, and answers their failures. */
export class RequestRunner {
  private seq = 0;

  constructor(
    private readonly log: Logger,
    /** The path a request names, for the log. */
    private readonly describe: (args: RequestArgs) => string,
  ) {}

  /** `answer` replies to the request when it succeeds; if it throws, rejects or outlives the backstop, this replies. */
  run(session: NativeSession, op: OpKind, req: number, args: RequestArgs, answer: () => Promise<void>): void {
    const id = ++this.seq;
    const started = performance.now();
    const log = this.log;
    // The path as the op saw it, for the log (read before the op's own rename or unlink changes it).
    const path = log.isLevelEnabled('debug') ? this.describe(args) : undefined;
    let work: Promise<void>;
    try {
      work = answer();
    } catch (e) {
      work = Promise.reject(e);
    }
    // A backstop: the core and the RPC bound every wait of their own, but a request never answered would hang
    // its program. It fires after theirs (src/deadlines.ts), so their clearer error comes back first.
    const limitMs = requestBackstopMs(op);
    let timer: NodeJS.Timeout | undefined;
    const backstop = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new FsError('EIO', `${op}: no answer within ${limitMs / 1000} s`)), limitMs);
      timer.unref();
    });
    Promise.race([work, backstop]).then(
      () => {
        clearTimeout(timer);
        if (path !== undefined) log.debug({ id, op, path, bytes: args.data?.length ?? args.size, set: args.toSet, ms: +(performance.now() - started).toFixed(2) }, 'ok');
      },
      (err: unknown) => {
        clearTimeout(timer);
        const errno = toErrno(err);
        const where = { id, op, path: path ?? this.describe(args) };
        // A failure in the server was logged there, with its stack: a failure is logged once, where it happened.
        if (isExpected(err) || loggedElsewhere(err)) log.debug({ ...where, errno, reason: (err as Error).message }, 'failed');
        else log.error({ ...where, errno, err: err instanceof Error ? err.stack : String(err) }, 'failed');
        try {
          session.replyErr(req, errno);
        } catch {
          // answered already (a reply that threw after sending), or the session ended
        }
      },
    );
  }
}
