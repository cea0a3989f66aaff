// The grid a system test file runs against: the one scripts/run-tests.mjs started for the whole run, or one of
// the file's own.
import { startGrid, type Grid } from '../../grid/local-grid.js';

/**
 * The grid for a test file: the one scripts/run-tests.mjs started (BLACKMATCH_TEST_GATEWAY), or a grid of the
 * file's own when it is run alone.
 */
export async function useGrid(): Promise<{ gatewayUrl: string; grid: Grid | undefined; stop(): Promise<void> }> {
  const url = process.env.BLACKMATCH_TEST_GATEWAY;
  if (url) return { gatewayUrl: url, grid: undefined, stop: async () => undefined };
  const grid = await startGrid();
  return { gatewayUrl: grid.gatewayUrl, grid, stop: () => grid.stop() };
}
