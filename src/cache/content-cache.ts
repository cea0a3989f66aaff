// The on-disk cache in <node-directory>/_cache: immutable file contents by storage index, downloads in
// progress, and staging files for writes. Folders 0700 and files 0600: cached plaintext is as secret as the caps.
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fromLocalFs, FsError } from '../fs/errors.js';
import type { Logger } from '../log.js';
import { redact, type Cap } from '../tahoe/caps.js';
import type { TahoeClient } from '../tahoe/client.js';

export class ContentCache {
  readonly filesDir: string;
  readonly tmpDir: string;
  readonly stagingDir: string;
  /** One download per storage index, shared by every reader that asks meanwhile. */
  private readonly downloads = new Map<string, Promise<string>>();

  constructor(
    readonly root: string,
    private readonly client: TahoeClient,
    private readonly log: Logger,
  ) {
    this.filesDir = join(root, 'files');
    this.tmpDir = join(root, 'tmp');
    this.stagingDir = join(root, 'staging');
  }

  async init(): Promise<void> {
    for (const dir of [this.root, this.filesDir, this.tmpDir, this.stagingDir]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await chmod(dir, 0o700);
    }
    // Partial downloads of an earlier run are useless (nothing records which bytes they hold).
    for (const name of await readdir(this.tmpDir)) await rm(join(this.tmpDir, name), { force: true });
    const left = await readdir(this.stagingDir);
    if (left.length > 0) this.log.warn({ count: left.length, dir: this.stagingDir }, 'staged writes from an earlier run kept');
  }

  /** Path of a complete local copy of an immutable (CHK) file, downloading it once if it is not cached. */
  async immutable(cap: Cap): Promise<string> {
    const si = cap.storageIndex;
    if (!cap.immutable || !si) throw new FsError('EIO', `not a cacheable immutable cap: ${redact(cap.text)}`);
    const path = join(this.filesDir, si);
    const present = await stat(path).catch(() => undefined);
    if (present && present.size === cap.size) return path;
    let pending = this.downloads.get(si);
    if (!pending) {
      pending = this.downloadTo(cap, path).finally(() => this.downloads.delete(si));
      this.downloads.set(si, pending);
    }
    return pending;
  }

  /** Downloads the current content of a mutable file into a temporary file that the caller owns and removes. */
  async mutableSnapshot(cap: Cap): Promise<string> {
    const path = join(this.tmpDir, `mutable-${randomBytes(8).toString('hex')}`);
    await this.downloadTo(cap, path);
    return path;
  }

  /** A fresh path in the staging folder for a file's written content. */
  newStagingPath(): string {
    return join(this.stagingDir, `${Date.now()}-${randomBytes(6).toString('hex')}`);
  }

  private async downloadTo(cap: Cap, finalPath: string): Promise<string> {
    const tmp = join(this.tmpDir, `dl-${randomBytes(8).toString('hex')}`);
    const started = Date.now();
    try {
      const body = await this.client.download(cap.text);
      try {
        await pipeline(body, createWriteStream(tmp, { mode: 0o600 }));
      } catch (e) {
        if (e instanceof FsError) throw e;
        const local = (e as NodeJS.ErrnoException).syscall !== undefined;
        throw local ? fromLocalFs(e, 'write cache file') : new FsError('EIO', `read ${redact(cap.text)}: ${(e as Error).message}`, { cause: e });
      }
      const got = (await stat(tmp)).size;
      if (cap.size !== undefined && got !== cap.size) {
        throw new FsError('EIO', `read ${redact(cap.text)}: got ${got} bytes, expected ${cap.size}`);
      }
      await rename(tmp, finalPath);
      this.log.debug({ cap: redact(cap.text), bytes: got, ms: Date.now() - started }, 'downloaded');
      return finalPath;
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }
}
