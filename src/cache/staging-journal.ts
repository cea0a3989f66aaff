// A record beside each staging file saying where its bytes belong, so that nothing written is lost to a
// crash of the server, the client or the machine: on the next start for the same root, every staged file
// whose upload did not complete is uploaded and linked, or kept and reported if its directory entry changed.
//
// staging/<id>        the written bytes
// staging/<id>.json   this record (0600 in a 0700 folder: it holds the parent directory's cap)
//
// Records are replaced atomically (write to a temporary file, fsync, rename), so a crash leaves the old
// record or the new one, never half of one.
import { open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';

export interface StagedRecord {
  v: 1;
  /** Fingerprint of the mounted root (redact() of its cap): a cache folder may serve several roots. */
  root: string;
  /** The process that owns the staging file; a record whose process is gone is recovered. */
  pid: number;
  parentCap: string;
  name: string;
  /** Path in the mount when last seen, for messages. */
  path: string;
  /** The cap linked at `name` when these bytes were based on it (null: a new file): if it changed, keep. */
  base: string | null;
  /** Whether the staged bytes still differ from what is linked (false: uploaded, nothing to recover). */
  dirty: boolean;
  size: number;
  /** The file's mtime to store with the link, in nanoseconds, when set by utimens. */
  mtimeNs?: string;
  /** Set once the bytes were kept because the entry changed: reported, not retried. */
  conflict?: boolean;
}

export interface StagedFile {
  stagingPath: string;
  record: StagedRecord;
}

export class StagingJournal {
  constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  recordPath(stagingPath: string): string {
    return `${stagingPath}.json`;
  }

  /** Replaces the record; durable: flushed to disk before it replaces the old one (survives a machine crash). */
  async write(stagingPath: string, record: StagedRecord, durable = false): Promise<void> {
    const target = this.recordPath(stagingPath);
    const tmp = `${target}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(record));
      if (durable) await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  }

  async remove(stagingPath: string): Promise<void> {
    await rm(this.recordPath(stagingPath), { force: true });
  }

  /** Every staging file with a readable record. Staging files without one are left alone (and logged). */
  async list(): Promise<StagedFile[]> {
    const names = new Set(await readdir(this.dir).catch(() => [] as string[]));
    const out: StagedFile[] = [];
    for (const name of names) {
      if (name.endsWith('.json.tmp')) {
        await rm(join(this.dir, name), { force: true });
        continue;
      }
      if (!name.endsWith('.json')) {
        if (!names.has(`${name}.json`)) this.log.warn({ staging: join(this.dir, name) }, 'staged bytes without a record: kept, not recovered');
        continue;
      }
      const stagingPath = join(this.dir, name.slice(0, -'.json'.length));
      if (!names.has(name.slice(0, -'.json'.length))) {
        await rm(join(this.dir, name), { force: true }); // the bytes are gone: nothing to recover
        continue;
      }
      try {
        const record = JSON.parse(await readFile(join(this.dir, name), 'utf8')) as StagedRecord;
        if (record.v === 1 && typeof record.parentCap === 'string' && typeof record.name === 'string') out.push({ stagingPath, record });
      } catch {
        this.log.warn({ record: join(this.dir, name) }, 'unreadable staging record: kept, not recovered');
      }
    }
    return out;
  }
}
