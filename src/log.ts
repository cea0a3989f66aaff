// Logging: one pino logger per process, written to the log file in the node directory.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(file: string | undefined, level: string): Logger {
  const destination = file ? pino.destination({ dest: file, mkdir: true, sync: false, mode: 0o600 }) : pino.destination(2);
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}

/** A logger that drops everything: for unit tests and tools that do not want a log. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
