// A record beside each staging file saying where its bytes belong, so that nothing written is lost to a
// crash of the server, the client or the machine: on the next start for the same root, every staged file
// whose upload did not complete is uploaded and linked, or kept and reported if its directory entry changed.
//
// staging/<id>        the written bytes (empty for a directory made in write-back mode and not linked yet)
// staging/<id>.json   this record (0600 in a 0700 folder: it holds the parent directory's cap)
//
// Records are replaced atomically through a temporary file of each write's own (so that writes and passes
// running side by side never share or remove each other's), so a crash leaves the old record or the new one,
// never half of one. Leftover temporary files are swept once, before this journal's first write or listing.
// State: `swept` is set once and never changes back; nothing else is kept in memory.
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { LinkMetadata } from '../tahoe/client.js';
import type { OwnMetadata } from '../tahoe/posix.js';
import { replaceFile, TMP_SUFFIX } from '../util/durable-file.js';

/** A process, told apart from a later one that reuses its pid by its start time (empty when unknown). */
export interface ProcessIdentity {
  pid: number;
  start: string;
}

export interface StagedRecord {
  /**
   * 3 for a directory's record (dirCap), 4 for a staging file over its base content (overlay), 5 for a
   * directory's record with the key to make it (dirKey), 6 for a new symlink or special file (linkTarget):
   * builds that know only 2 keep such records instead of storing them as they are (a build before 5 would link
   * a directory that may not exist).
   */
  v: 2 | 3 | 4 | 5 | 6;
  /** Fingerprint of the mounted root (redact() of its cap): a cache folder may serve several roots. */
  root: string;
  /** The process that owns the staging file; a record whose process is gone is recovered. */
  owner: ProcessIdentity;
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
  /** Mode, owner, kind and xattrs to store with the link (tahoe/posix.ts), when set. */
  own?: OwnMetadata;
  /** Set once the bytes were kept because the entry changed: reported, not retried. */
  conflict?: boolean;
  /** A directory made by mkdir in write-back mode, to be linked at `name` (its staging file is empty). */
  dirCap?: string;
  /**
   * A new entry of write-back (its staging file is empty): the metadata it is to be linked with, and for a
   * symlink or special file its cap (a directory's is dirCap).
   */
  linkTarget?: { roUri?: string; metadata: LinkMetadata };
  /** The key `dirCap` is made with (PKCS#8 DER, base64), when it may not be made yet: a key is a write cap. */
  dirKey?: string;
  /** A mutable file's version (links.ts mutableStamp) that the bytes are based on, as `base` is for a cap. */
  baseStamp?: string;
  /**
   * The staging file holds only what was written (fs/overlay.ts): the bytes in `ranges` are the content of
   * `cap` (of version `stamp`, a mutable file), `size` bytes long. Recovery fills them in before storing.
   */
  overlay?: { cap: string; stamp?: string; size: number; ranges: Array<[number, number]> };
}

/** Version 1 had the owner's pid only. */
type StagedRecordV1 = Omit<StagedRecord, 'v' | 'owner'> & { v: 1; pid: number };

export interface StagedFile {
  stagingPath: string;
  record: StagedRecord;
}

/** `<record>.<pid>-<random>.tmp`, as replaceFile() and write() name their temporary files. */
const TMP_NAME = new RegExp(`\\.(\\d+)-[0-9a-f]+${TMP_SUFFIX.replace('.', '\\.')}$`);

export class StagingJournal {
  private swept: Promise<void> | undefined;

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  recordPath(stagingPath: string): string {
    return `${stagingPath}.json`;
  }

  /**
   * Removes temporary files left by a crash. Runs once (later calls share it), before any write or listing
   * of this journal; a temporary file of another live process (another root's mount) is left to it.
   */
  sweep(): Promise<void> {
    this.swept ??= (async () => {
      for (const name of await readdir(this.dir).catch(() => [] as string[])) {
        if (!name.endsWith(TMP_SUFFIX)) continue;
        const pid = Number(TMP_NAME.exec(name)?.[1] ?? NaN);
        if (pid !== process.pid && pidRunning(pid)) continue;
        await rm(join(this.dir, name), { force: true });
      }
    })();
    return this.swept;
  }

  /**
   * Replaces the record; rejects if it could not be written (its temporary file is removed). Durable: the
   * record and its name are flushed to disk (survives a power loss). Not durable: no flush, as for the
   * staged bytes it describes (survives a crash of the process, which is all those bytes survive).
   */
  async write(stagingPath: string, record: StagedRecord, durable = false): Promise<void> {
    await this.sweep();
    await replaceFile(this.recordPath(stagingPath), JSON.stringify(record), { flush: durable });
  }

  async remove(stagingPath: string): Promise<void> {
    await rm(this.recordPath(stagingPath), { force: true });
  }

  /** Every staging file with a readable record. Staging files without one are left alone (and logged). */
  async list(): Promise<StagedFile[]> {
    await this.sweep();
    const names = new Set(await readdir(this.dir).catch(() => [] as string[]));
    const out: StagedFile[] = [];
    for (const name of names) {
      if (name.endsWith(TMP_SUFFIX)) continue; // a write in progress
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
        const record = upgrade(JSON.parse(await readFile(join(this.dir, name), 'utf8')));
        if (record) out.push({ stagingPath, record });
        else this.log.warn({ record: join(this.dir, name) }, 'staging record of an unknown form: kept, not recovered');
      } catch {
        this.log.warn({ record: join(this.dir, name) }, 'unreadable staging record: kept, not recovered');
      }
    }
    return out;
  }
}

/** A record in the current form, from any version we wrote; undefined for anything else. */
function upgrade(raw: StagedRecord | StagedRecordV1): StagedRecord | undefined {
  if (typeof raw !== 'object' || raw === null || typeof raw.parentCap !== 'string' || typeof raw.name !== 'string') return undefined;
  if (raw.v === 2 && typeof raw.owner?.pid === 'number') return raw;
  if (raw.v === 3 && typeof raw.owner?.pid === 'number' && typeof raw.dirCap === 'string') return raw;
  if (raw.v === 4 && typeof raw.owner?.pid === 'number' && validOverlay(raw.overlay)) return raw;
  if (raw.v === 5 && typeof raw.owner?.pid === 'number' && typeof raw.dirCap === 'string' && typeof raw.dirKey === 'string') return raw;
  if (raw.v === 6 && typeof raw.owner?.pid === 'number' && typeof raw.linkTarget?.roUri === 'string' && typeof raw.linkTarget.metadata === 'object') return raw;
  if (raw.v === 1 && typeof raw.pid === 'number') {
    const { pid, v: _v, ...rest } = raw;
    return { ...rest, v: 2, owner: { pid, start: '' } };
  }
  return undefined;
}

function validOverlay(o: StagedRecord['overlay']): boolean {
  if (typeof o !== 'object' || o === null || typeof o.cap !== 'string' || !Number.isSafeInteger(o.size) || !Array.isArray(o.ranges)) return false;
  return o.ranges.every((r) => Array.isArray(r) && r.length === 2 && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]) && r[0] < r[1] && r[1] <= o.size);
}

/** Whether some process has this pid (ours or not): enough to keep its temporary files, never to trust it. */
function pidRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
