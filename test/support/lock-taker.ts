// A process that takes a root's lock for the lock tests: prints "ready", waits for "go" on stdin, calls
// lockRoot once and prints "won" or the refusal; holds the lock until stdin ends, then releases it (unless
// told "keep") and exits.
import { createInterface } from 'node:readline';
import { lockRoot } from '../../src/process/root-lock.js';

const [socketDir, rootName, mountpoint, keep] = process.argv.slice(2) as [string, string, string, string?];
// As the real program does (cli/main.ts): our processes carry the title "blackmatch ...".
process.title = `blackmatch lock-taker ${rootName}`;
const lines = createInterface({ input: process.stdin });
const said: string[] = [];
let wake: (() => void) | undefined;
lines.on('line', (l) => {
  said.push(l);
  wake?.();
});
const ended = new Promise<void>((resolve) => lines.once('close', resolve));
process.stdout.write('ready\n');
await Promise.race([new Promise<void>((r) => (said.length > 0 ? r() : (wake = r))), ended]);
let release: (() => Promise<void>) | undefined;
try {
  const lock = await lockRoot(socketDir, rootName, mountpoint);
  release = () => lock.release();
  process.stdout.write('won\n');
} catch (e) {
  process.stdout.write(`${(e as Error).message}\n`);
}
await ended;
if (keep !== 'keep') await release?.();
