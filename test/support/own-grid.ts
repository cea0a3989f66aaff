// For a system test file that needs a grid of its own (it stops nodes, or the gateway): started before the
// calling describe's tests, stopped after them however they end.
import { after, before } from 'node:test';
import { startGrid, type Grid, type StartGridOptions } from './grid.js';

/** Hands the grid to `onGrid` once started (before the first test of the calling describe). */
export function withOwnGrid(onGrid: (grid: Grid) => void, opts?: StartGridOptions): void {
  let grid: Grid | undefined;
  before(async () => {
    grid = await startGrid(opts);
    onGrid(grid);
  });
  after(async () => {
    await grid?.stop();
  });
}
