// The directory-update ledger on disk (fs/ledger.ts keeps it in memory): one JSON line per change, appended as
// it happens, so that a crash of the process keeps every change still to be checked; the next start for the
// same root reads the lines back and checks those. 0600 in the cache folder: the lines hold directory caps.
//
//   {"set": KEY, "entry": {...}}   a change to check (a later line for the same key replaces it)
//   {"del": KEY}                   that change was seen in place, or given up
//
// The file is written whole again at load and now and then (rewrite: only what is still live), so it never
// grows far past what the ledger holds. State: `writing`, the chain of writes, changed only here.
import { appendFile, readFile } from 'node:fs/promises';
import type { Logger } from '../log.js';
import { replaceFile } from '../util/durable-file.js';

export class LedgerFile<T> {
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly path: string,
    private readonly log: Logger,
  ) {}

  /** The live entries, written back compacted. A line that does not parse is skipped (a crash mid-append). */
  async load(): Promise<Map<string, T>> {
    const live = new Map<string, T>();
    let text = '';
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err: (e as Error).message }, 'ledger: cannot read the ledger file');
    }
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const rec = JSON.parse(line) as { set?: string; entry?: T; del?: string };
        if (typeof rec.set === 'string' && rec.entry !== undefined) live.set(rec.set, rec.entry);
        else if (typeof rec.del === 'string') live.delete(rec.del);
      } catch {
        // the torn last line of a crash
      }
    }
    await replaceFile(this.path, [...live].map(([key, entry]) => JSON.stringify({ set: key, entry }) + '\n').join(''));
    return live;
  }

  set(key: string, entry: T): void {
    this.append(JSON.stringify({ set: key, entry }) + '\n');
  }

  delete(key: string): void {
    this.append(JSON.stringify({ del: key }) + '\n');
  }

  /** Writes the file anew with just these entries (after what was asked before; appends asked later follow it). */
  rewrite(live: Array<[string, T]>): void {
    const text = live.map(([key, entry]) => JSON.stringify({ set: key, entry }) + '\n').join('');
    this.writing = this.writing
      .then(() => replaceFile(this.path, text, { flush: false }))
      .catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'ledger: cannot write the ledger file'));
  }

  /** Resolves once every line asked for so far is written. */
  flushed(): Promise<void> {
    return this.writing;
  }

  private append(line: string): void {
    this.writing = this.writing
      .then(() => appendFile(this.path, line, { mode: 0o600 }))
      .catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'ledger: cannot write the ledger file'));
  }
}
