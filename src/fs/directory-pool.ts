// Empty directories made ahead of time, for durable mkdir: making a Tahoe directory costs a round of requests
// to every storage node (a quarter of a second on a far grid), so mkdir takes one that already exists in the grid
// and only links it. Filled from the first take on, up to `size`. Directories left in the pool at unmount stay on
// the grid unlinked (empty, a few hundred bytes each; Tahoe's lease expiry removes them). Write-back mkdir needs
// none: it names its directory before it exists (tahoe/unmade-dirs.ts).
//
// State: `ready` and `filling`, changed only here.
import type { Logger } from '../log.js';

export class DirectoryPool {
  private readonly ready: string[] = [];
  private filling = 0;

  constructor(
    /** Makes one new, empty, unlinked directory (key-pool.ts: with a key of ours). */
    private readonly make: () => Promise<string>,
    private readonly size: number,
    private readonly log: Logger,
  ) {}

  /** A new, empty, unlinked directory: from the pool when it has one, else made now. */
  async take(): Promise<string> {
    const cap = this.ready.shift();
    this.refill();
    return cap ?? this.make();
  }

  private refill(): void {
    while (this.ready.length + this.filling < this.size) {
      this.filling++;
      this.make().then(
        (cap) => this.ready.push(cap),
        (e: unknown) => this.log.debug({ err: (e as Error).message }, 'could not make a directory ahead of time'),
      ).finally(() => this.filling--);
      // One failure stops this round (the gateway is likely down); the next take() tries again.
      if (this.filling >= 4 && this.ready.length === 0) break;
    }
  }
}
