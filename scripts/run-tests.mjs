// npm test: starts one real Tahoe grid for the whole run, runs every test file (unit, then system) with
// Node's test runner against it, and stops the grid however the run ends.
import { spawn } from 'node:child_process';
import { startGrid } from '../dist/grid/local-grid.js';

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
    child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...targets], {
      stdio: 'inherit',
      env: { ...process.env, BLACKMATCH_TEST_GATEWAY: grid.gatewayUrl },
    });
    child.on('close', (c, signal) => resolve(c ?? (signal ? 1 : 0)));
  });
  await grid.stop();
  process.exit(code);
} catch (e) {
  console.error(e);
  await stopAll(1);
}
