// npm test: starts one real Tahoe grid for the whole run, runs every test file (unit, then system) with
// Node's test runner against it, and stops the grid however the run ends.
import { spawn } from 'node:child_process';
import { startGrid } from '../dist/grid/local-grid.js';

const TEST_BOUND_MS = 20 * 60_000;
const RUN_BOUND_MS = 60 * 60_000;

const files = process.argv.slice(2);
const targets = files.length > 0 ? files : ['dist/test/unit/', 'native/fuse3/test/', 'dist/test/system/'];

const grid = await startGrid({ log: (m) => console.error(m) });
let child;
const stopAll = async (code) => {
  child?.kill('SIGTERM');
  await grid.stop();
  process.exit(code);
};
process.on('SIGINT', () => void stopAll(130));
process.on('SIGTERM', () => void stopAll(143));

try {
  const code = await new Promise((resolve) => {
    // One file at a time: the system suites mount for real and share the grid and 2 cores.
    // Bounds, so that a hang fails the run with its name instead of eating CI's 90 minutes: a test file whose
    // tests are done exits even if something it started is still alive (--test-force-exit), no test or suite
    // runs past TEST_BOUND_MS, and the whole run is stopped at RUN_BOUND_MS (a full run takes 15-20 minutes).
    child = spawn(process.execPath, ['--test', '--test-force-exit', `--test-timeout=${TEST_BOUND_MS}`, '--test-concurrency=1', '--test-reporter=spec', ...targets], {
      stdio: 'inherit',
      env: { ...process.env, BLACKMATCH_TEST_GATEWAY: grid.gatewayUrl },
    });
    const watchdog = setTimeout(() => {
      console.error(`npm test: still running after ${RUN_BOUND_MS / 60_000} minutes: stopped`);
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    }, RUN_BOUND_MS);
    child.on('close', (c, signal) => {
      clearTimeout(watchdog);
      resolve(c ?? (signal ? 1 : 0));
    });
  });
  await grid.stop();
  process.exit(code);
} catch (e) {
  console.error(e);
  await stopAll(1);
}
