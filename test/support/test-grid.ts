// The grid a system test's describe runs against: the run's shared one (scripts/run-tests.mjs), or one of the
// file's own, started before the describe's tests and stopped after them.
import { after, before, describe } from 'node:test';
import { startGrid, type Grid } from '../../grid/local-grid.js';

/** The shared grid, as a test may use it: other files mount it too, so only its gateway is offered. */
export interface SharedGrid {
  readonly gatewayUrl: string;
}

export interface OwnGridOptions {
  /** A grid of the describe's own, whose nodes and gateway its tests may stop, freeze and kill. */
  own: true;
  /** A far grid (see startGrid). */
  storageDelayMs?: number;
  /** Gateways, as several machines sharing the grid have (see startGrid). */
  gateways?: number;
}

/**
 * describe(name, body) with a grid for its tests. The grid starts before the body's own before hooks and stops
 * after its after hooks (node:test runs hooks in the order they are added), so a mount the body cleans up in
 * an after hook still has its grid. Without options: the run's grid (BLACKMATCH_TEST_GATEWAY), or one of the
 * file's own when the file is run alone.
 */
export function describeWithGrid(name: string, body: (grid: SharedGrid) => void): void;
export function describeWithGrid(name: string, opts: OwnGridOptions, body: (grid: Grid) => void): void;
export function describeWithGrid(name: string, ...rest: [(grid: SharedGrid) => void] | [OwnGridOptions, (grid: Grid) => void]): void {
  const [opts, body] = rest.length === 1 ? [undefined, rest[0]] : rest;
  describe(name, () => {
    let started: Grid | undefined;
    let gatewayUrl: string | undefined;
    before(async () => {
      const shared = process.env.BLACKMATCH_TEST_GATEWAY;
      if (shared && !opts?.own) {
        gatewayUrl = shared;
        return;
      }
      const { own: _own, ...gridOpts } = opts ?? {};
      started = await startGrid(gridOpts);
      gatewayUrl = started.gatewayUrl;
    });
    if (opts?.own) {
      (body as (grid: Grid) => void)(late('the grid', () => started));
    } else {
      (body as (grid: SharedGrid) => void)({
        get gatewayUrl(): string {
          if (gatewayUrl === undefined) throw notYet('the grid');
          return gatewayUrl;
        },
      });
    }
    after(async () => {
      await started?.stop();
    });
  });
}

function notYet(what: string): Error {
  return new Error(`${what} is not started yet: use it in a test or hook, not while the describe is declared`);
}

/**
 * The body declares its tests before the before hook starts the grid, so it is handed a stand-in that reaches
 * the grid at each use, once it is there.
 */
function late<T extends object>(what: string, get: () => T | undefined): T {
  return new Proxy({} as T, {
    get(_, key) {
      const target = get();
      if (!target) throw notYet(what);
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
