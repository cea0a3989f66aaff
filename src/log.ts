// Logging: one pino logger per process, written to the log file in the node directory.
import { pino, type Logger } from 'pino';

export type { Logger };

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
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}

/** A logger that drops everything: for unit tests and tools that do not want a log. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
