// Where a read of an open file is served from: its staging file over its base content once anything was written
// (overlay.ts), a literal cap's own bytes, or the content cache (opened once per open file, released at its
// close). Counts hits and misses for status. Owns no state but those counters (`readStats`, changed only here).
import type { CachedFile } from '../cache/cached-file.js';
import type { ContentCache } from '../cache/content-cache.js';
import type { Cap } from '../tahoe/caps.js';
import { capOf, mutableStamp } from '../tahoe/links.js';
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
    if (staging) return (await staging).overlay.read(into, position);
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
    if (staging) {
      const { file: path, length: n, more } = await (await staging).overlay.sourceAt(position, end - position);
      return more ? { file: path, length: n, more: true } : { file: path, length: n };
    }
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

  private contentOf(file: OpenFile, cap: Cap): Promise<CachedFile> {
    return openContent(this.cache, file, cap);
  }
}

/**
 * The content of an open file's entry as it was opened (its base, once anything is written), opened once per
 * open file and released at its close.
 */
export function openContent(cache: ContentCache, file: OpenFile, cap: Cap): Promise<CachedFile> {
  return file.content.get(() => (cap.immutable ? cache.open(cap) : cache.openMutable(cap, file.size, mutableStamp(file.child!))));
}
