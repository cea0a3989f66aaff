// Going to the background the way sshfs does: the command returns only once the mount is live (exit 0),
// or with the reason it failed (exit 1). The work is done by a re-executed copy of ourselves in a new
// session, detached from the terminal; it reports back over an IPC channel and then lets go of it.
import { spawn } from 'node:child_process';

type Report = { ready: true } | { error: string };

const REPORT_ENV = 'BLACKMATCH_REPORT_TO_PARENT';

/** In the parent: starts the detached child with `childArgs` and waits for its report, bounded. */
export async function runDetached(childArgs: string[], childEnv: Record<string, string>, timeoutMs: number): Promise<void> {
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...childArgs], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    env: { ...process.env, ...childEnv, [REPORT_ENV]: '1' },
  });
  const report = await new Promise<Report>((resolve) => {
    const timer = setTimeout(() => resolve({ error: `no answer within ${timeoutMs / 1000} s (see the log)` }), timeoutMs);
    child.once('message', (m) => {
      clearTimeout(timer);
      resolve(m as Report);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ error: `exited early (${signal ?? `code ${code}`}); see the log` });
    });
  });
  if ('error' in report) {
    child.kill('SIGTERM');
    throw new Error(report.error);
  }
  child.disconnect();
  child.unref();
}

/** In the child: whether a parent waits for our report. */
export function hasWaitingParent(): boolean {
  return process.env[REPORT_ENV] === '1' && typeof process.send === 'function';
}

export function reportToParent(report: Report): void {
  if (!hasWaitingParent()) return;
  process.send!(report, () => {
    if (process.connected) process.disconnect();
  });
  delete process.env[REPORT_ENV];
}
