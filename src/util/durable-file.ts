// Replacing a small file (a record) so that a crash, or a power loss, leaves the old content or the new one,
// never half of one and never neither.
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Suffix of the temporary files below: leftovers from a crash are swept by their owner at start. */
export const TMP_SUFFIX = '.tmp';

/**
 * Writes `data` to a temporary file of its own (so that concurrent writers of one target never share one),
 * flushes it, renames it over `target` and flushes the directory, so that the rename itself survives a power
 * loss. With `flush: false` nothing is flushed: the result survives a crash of the process, not of the
 * machine. On failure the temporary file is removed and the error goes to the caller.
 */
export async function replaceFile(target: string, data: string | Buffer, { flush = true } = {}): Promise<void> {
  const tmp = `${target}.${process.pid}-${randomBytes(4).toString('hex')}${TMP_SUFFIX}`;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(data);
      if (flush) await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
  if (flush) await syncDirectory(dirname(target));
}

/** Flushes a directory's entries (creations, renames, removals in it) to disk. */
export async function syncDirectory(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
