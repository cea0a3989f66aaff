// Logging: one pino logger per process, written to the log file in the node directory, and the last few
// warnings and errors kept in memory for `blackmatch status` (recentProblems; only createLogger adds to them).
import { pino, type Logger } from 'pino';

export type { Logger };

/** A warning or error as `blackmatch status` shows it. Logs never hold caps, so neither does this. */
export interface Problem {
  time: string;
  level: 'warn' | 'error';
  message: string;
  path?: string;
  reason?: string;
}

const RECENT_PROBLEMS = 20;
const recent: Problem[] = [];
const WARN = 40;

/** The last warnings and errors this process logged, oldest first. */
export function recentProblems(): Problem[] {
  return [...recent];
}

function remember(level: number, args: unknown[]): void {
  const [first, second] = args;
  const fields = typeof first === 'object' && first !== null ? (first as Record<string, unknown>) : {};
  const message = typeof first === 'string' ? first : typeof second === 'string' ? second : '';
  const text = (v: unknown) => (typeof v === 'string' ? v.split('\n')[0]!.slice(0, 300) : undefined);
  const reason = text(fields.err) ?? text(fields.reason) ?? (fields.err instanceof Error ? text(fields.err.message) : undefined);
  recent.push({ time: new Date().toISOString(), level: level >= 50 ? 'error' : 'warn', message, ...(text(fields.path) ? { path: text(fields.path) } : {}), ...(reason ? { reason } : {}) });
  if (recent.length > RECENT_PROBLEMS) recent.shift();
}

/** Lines waiting for the disk beyond this are dropped (a full disk must not grow the process either). */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

export function createLogger(file: string | undefined, level: string): Logger {
  const destination = file
    ? // Synchronous: pino flushes an asynchronous log at exit in a loop that never ends while the disk is full.
      pino.destination({ dest: file, mkdir: true, sync: true, mode: 0o600, maxLength: MAX_BUFFERED_BYTES })
    : pino.destination({ dest: 2, sync: true });
  // A log that cannot be written (the disk is full) must not take the filesystem down with it: the lines
  // wait, bounded, and are written once there is room again.
  destination.on('error', () => undefined);
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      hooks: {
        logMethod(args, method, levelValue) {
          if (levelValue >= WARN) remember(levelValue, args);
          return method.apply(this, args);
        },
      },
    },
    destination,
  );
}

/** A logger that drops everything: for unit tests and tools that do not want a log. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
