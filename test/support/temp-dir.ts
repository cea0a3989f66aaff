// A scratch directory for the tests of one describe: made before them, removed after them.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';

/**
 * Registers the hooks in the calling describe; `use` receives the directory once it is made (the body is
 * declared before any hook runs, as with coresPerTest).
 */
export function tempDirPerSuite(prefix: string, use: (dir: string) => void): void {
  let dir: string | undefined;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix));
    use(dir);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
}
