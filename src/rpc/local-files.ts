// The split-mode client's own descriptors on the server's local files (cached contents, snapshots, staging
// files): reads and writes go straight to the disk, and only where and how much crosses the socket
// (readSource, beginWrite, endWrite). One descriptor per backing file and access mode, kept while a handle
// that used it is open and closed at that handle's release; idle ones beyond MAX_OPEN_FDS are closed, least
// recently used first (and opened again when needed: the server keeps a backing file at its path while a
// handle that reads or writes it is open). The files are the server's, in its 0700 cache folder: only the
// same user can open them, which is who the client runs as.
//
// State: `entries` (insertion order is recency) changes across awaits; an entry in use (`busy`) is never
// closed, and one whose last user is released is closed once it is idle.
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/** Idle descriptors kept at most; those in use are bounded by the requests in flight. */
export const MAX_OPEN_FDS = 64;

export type Access = 'read' | 'write';

interface Entry {
  key: string;
  handle: Promise<FileHandle>;
  /** File handles (fh) whose reads or writes used it. */
  users: Set<number>;
  /** Reads and writes running on it. */
  busy: number;
}

export class LocalFiles {
  private readonly entries = new Map<string, Entry>();

  /** Descriptors held (tests). */
  get size(): number {
    return this.entries.size;
  }

  /** Runs `work` on a descriptor of `path` opened for `access`, on behalf of the open file `fh`. */
  async use<T>(fh: number, path: string, access: Access, work: (handle: FileHandle) => Promise<T>): Promise<T> {
    const key = `${access}:${path}`;
    let entry = this.entries.get(key);
    if (entry) this.entries.delete(key); // set again below: the most recently used is last
    else entry = this.opened(key, path, access);
    this.entries.set(key, entry);
    entry.users.add(fh);
    entry.busy++;
    try {
      return await work(await entry.handle);
    } finally {
      entry.busy--;
      await this.trim();
    }
  }

  /** The open file `fh` was released: descriptors no other handle uses are closed. */
  release(fh: number): Promise<void> {
    for (const entry of this.entries.values()) entry.users.delete(fh);
    return this.trim();
  }

  /** Closes every idle descriptor (the server is gone). */
  async closeAll(): Promise<void> {
    for (const entry of this.entries.values()) entry.users.clear();
    await this.trim();
  }

  private opened(key: string, path: string, access: Access): Entry {
    // Never through a symlink: the server names regular files in its own cache folder.
    const flags = (access === 'read' ? constants.O_RDONLY : constants.O_WRONLY) | constants.O_NOFOLLOW;
    const entry: Entry = { key, handle: open(path, flags), users: new Set(), busy: 0 };
    entry.handle.catch(() => {
      if (this.entries.get(key) === entry) this.entries.delete(key); // the next use tries afresh
    });
    return entry;
  }

  /** Closes idle descriptors that no open handle uses, and the least recently used idle ones beyond the bound. */
  private async trim(): Promise<void> {
    let over = this.entries.size - MAX_OPEN_FDS;
    const closing: Entry[] = [];
    for (const entry of this.entries.values()) {
      if (entry.busy > 0) continue;
      if (entry.users.size === 0 || over > 0) {
        closing.push(entry);
        over--;
      }
    }
    for (const entry of closing) this.entries.delete(entry.key);
    await Promise.all(closing.map((e) => e.handle.then((h) => h.close()).catch(() => undefined)));
  }
}
