// Where a read of an open file is served from: its staging file once anything was written, a literal cap's own
// bytes, or the content cache (opened once per open file, released at its close); and the copy of the content
// into a new staging file. Counts hits and misses for status. Owns no state but those counters (`readStats`, changed only here).
import { copyFile, writeFile, type FileHandle } from 'node:fs/promises';
import type { CachedFile } from '../cache/cached-file.js';
import type { ContentCache } from '../cache/content-cache.js';
import { fromLocalFs } from '../errors.js';
import type { Cap } from '../tahoe/caps.js';
import type { ChildInfo } from '../tahoe/client.js';
import { capOf } from '../tahoe/links.js';
import { readFully } from '../util/file-io.js';
import type { OpenFile } from './open-file.js';
import type { ReadSource } from './ops.js';

export class FileReads {
  constructor(private readonly cache: ContentCache) {}

  /** Fills `target` from `position` with the file's current content; returns the bytes read. */
  async readInto(file: OpenFile, target: Buffer, position: number): Promise<number> {
    const end = Math.min(file.size, position + target.length);
    if (end <= position) return 0;
    const into = target.subarray(0, end - position);
    const staging = file.stagingReady.current;
    if (staging) return readLocal((await staging).handle, into, position);
    const cap = capOf(file.child!);
    if (cap.literalData) return cap.literalData.copy(into, 0, position, end);
    const content = await this.contentOf(file, cap);
    this.countRead(content, position, end);
    return content.readInto(into, position);
  }

  /** Reads of grid content found in the cache, and those that waited for a download (status's hit rate). */
  readonly readStats = { hits: 0, misses: 0 };

  private countRead(content: CachedFile, position: number, end: number): void {
    if (content.presentUntil(position) >= end) this.readStats.hits++;
    else this.readStats.misses++;
  }

  /**
   * Where the caller can read [position, position+length) itself (split mode's client): the staging file, or
   * the cached content once those bytes are in it (only ranges said present here are ever read there).
   */
  async readSource(file: OpenFile, position: number, length: number): Promise<ReadSource> {
    const end = Math.min(file.size, position + length);
    if (end <= position) return { file: null, length: 0 };
    const staging = file.stagingReady.current;
    if (staging) return { file: (await staging).path, length: end - position };
    const cap = capOf(file.child!);
    if (cap.literalData) return { file: null, length: end - position };
    const content = await this.contentOf(file, cap);
    this.countRead(content, position, end);
    const present = await content.ready(position, end - position);
    if (present <= 0) return { file: null, length: 0 };
    const source: ReadSource = { file: content.dataPath, length: present };
    // Cached immutable bytes never change nor leave while the file is open: the caller may keep reading them.
    if (cap.immutable && !file.stagingReady.current) Object.assign(source, { until: content.presentUntil(position), size: content.size });
    return source;
  }

  /** The cache file of immutable content that is whole on the disk and not written to; null otherwise. */
  async backingFile(file: OpenFile): Promise<string | null> {
    if (file.stagingReady.current || !file.child || file.size === 0) return null;
    const cap = capOf(file.child);
    if (!cap.immutable || cap.literalData) return null;
    const content = await this.contentOf(file, cap);
    return content.complete && !file.stagingReady.current ? content.dataPath : null;
  }

  /** The content to read while nothing was written, opened once per open file (released at close). */
  private contentOf(file: OpenFile, cap: Cap): Promise<CachedFile> {
    return file.content.get(() => (cap.immutable ? this.cache.open(cap) : this.cache.openMutable(cap, file.size)));
  }
}

async function readLocal(handle: FileHandle, into: Buffer, position: number): Promise<number> {
  try {
    return await readFully(handle, into, position);
  } catch (e) {
    throw fromLocalFs(e, 'read local copy');
  }
}

/** Copies the whole content of `child` to `path` (a new staging file); returns its size (a mutable file's listing may be older). */
export async function copyContent(cache: ContentCache, child: ChildInfo, listedSize: number, path: string): Promise<number> {
  const cap = capOf(child);
  if (cap.literalData) {
    await writeFile(path, cap.literalData, { mode: 0o600 });
    return cap.literalData.length;
  }
  const content = cap.immutable ? await cache.open(cap) : await cache.openMutable(cap, listedSize);
  try {
    await content.ensure(0, content.size);
    await copyFile(content.dataPath, path);
    return content.size;
  } finally {
    await cache.release(content);
  }
}
