// Directories named before they exist (issue 22): a write-back mkdir hands out the cap that one of our keys
// names (keys.ts writeCapOf) and returns with no request at all; the directory is made here, in the background
// at once, and before the first request that names it (a listing of it, a link into it, its own link into its
// parent) goes out, so that no request ever names a directory the grid does not have. A failed making is tried
// again by the next request that needs it; whoever handed out the cap keeps the key (the staging record) until
// the directory is linked, so that a crash never leaves a cap that names nothing.
//
// State: `unmade` (cap -> key and the making on its way), changed only here.
import { FsError } from '../errors.js';
import type { Logger } from '../log.js';
import { redact } from './caps.js';
import { privateKeyParam, writeCapOf, type MutableKey } from './keys.js';

interface Unmade {
  key: MutableKey;
  making: Promise<void> | undefined;
}

export class UnmadeDirectories {
  private readonly unmade = new Map<string, Unmade>();

  constructor(
    /** POST /uri?t=mkdir&private-key=: the cap the gateway answers. */
    private readonly create: (privateKey: string) => Promise<string>,
    /** Whether a directory exists (a lost answer to a making that did make it). */
    private readonly exists: (cap: string) => Promise<boolean>,
    private readonly log?: Logger,
  ) {}

  /** The cap of a new directory made with `key`: made from now on, in the background; usable at once. */
  defer(key: MutableKey): string {
    const cap = writeCapOf(key, 'DIR2');
    if (!this.unmade.has(cap)) {
      this.unmade.set(cap, { key, making: undefined });
      this.ready(cap).catch((e: unknown) => this.log?.debug({ dir: redact(cap), err: (e as Error).message }, 'new directory not made yet: made before its first use'));
    }
    return cap;
  }

  /** Drops a directory that nothing names any more (its making failed, and its key goes with it). */
  forget(cap: string): void {
    this.unmade.delete(cap);
  }

  /** Whether `cap` names a directory not made yet. */
  has(cap: string): boolean {
    return this.unmade.has(cap);
  }

  /** Resolves once each of `caps` that names a deferred directory is made; rejects if one cannot be, now. */
  async ready(...caps: Array<string | undefined>): Promise<void> {
    for (const cap of caps) {
      const entry = cap === undefined ? undefined : this.unmade.get(cap);
      if (!entry) continue;
      entry.making ??= this.make(cap!, entry.key).finally(() => (entry.making = undefined));
      await entry.making;
    }
  }

  private async make(cap: string, key: MutableKey): Promise<void> {
    let made: string;
    try {
      made = (await this.create(privateKeyParam(key))).trim();
    } catch (e) {
      // An answer lost after the grid made it: the gateway refuses a second making with the same key.
      if (!(await this.exists(cap))) throw e;
      made = cap;
    }
    // Not expected of any Tahoe we know (own-keys.test checks the caps against the gateway); the cap handed out
    // names nothing then, and every request naming it fails rather than land somewhere else.
    if (made !== cap) throw new FsError('EIO', `a directory made with our key has another cap than computed: ${redact(made)}, not ${redact(cap)}`);
    this.unmade.delete(cap);
  }
}
