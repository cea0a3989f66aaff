// Checks on filesystem calls made through a mount: a call that must fail with one errno, a path that must exist.
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';

/** Awaits a filesystem call that must fail with exactly this errno. */
export async function expectErrno(what: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(what, (e: NodeJS.ErrnoException) => {
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    return true;
  });
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
