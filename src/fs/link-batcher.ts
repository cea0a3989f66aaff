// Links into the grid's directories, batched: every link asked for one directory while an update of that
// directory is on its way goes out together in the next one `t=set_children`. A Tahoe directory is one mutable
// file: two updates of it at once conflict, and each costs a round of requests to every storage node, so one
// update per batch is both safe and fast. A single link with nobody waiting is sent at once (durable closes
// pay nothing for the batching).
//
// A link may be guarded: made only if the entry still holds the cap it was based on (`expect`). The guard is
// checked against one fresh listing per batch, right before the update. Tahoe has no compare-and-swap, so a
// change by another client between that listing and the update can still be overwritten: the window is one
// round trip, not the whole time the bytes waited.
//
// State: `queues` and `flushing`, changed only here; one flush per directory at a time.
import type { ChildInfo, LinkTarget, TahoeClient } from '../tahoe/client.js';
import { heldCap } from '../tahoe/links.js';
import type { DirectoryUpdates } from './dir-updates.js';

export interface LinkRequest {
  name: string;
  target: LinkTarget;
  /** Link only over an entry holding this cap (null: only where there is no entry). Undefined: always. */
  expect?: string | null;
  /** Path in the mount, for messages (the name when not given). */
  path?: string;
  /** The cap the name held as we last saw it (null: none), when there is no guard to say it. */
  replaced?: string | null;
}

export type LinkOutcome = { linked: true } | { linked: false; reason: string };

export const ENTRY_CHANGED = 'its directory entry changed meanwhile';

/**
 * The one guard of every store that must not land over another's change: whether the entry (undefined: none)
 * still holds `base`, the cap the bytes were based on (null: there was no entry).
 */
export function entryIsBase(entry: ChildInfo | undefined, base: string | null): boolean {
  return heldCap(entry) === base;
}

interface Queued {
  request: LinkRequest;
  resolve: (outcome: LinkOutcome) => void;
  reject: (e: unknown) => void;
}

export class LinkBatcher {
  private readonly queues = new Map<string, Queued[]>();
  private readonly flushing = new Set<string>();

  constructor(
    private readonly client: TahoeClient,
    private readonly updates: DirectoryUpdates,
  ) {}

  /** Links one entry into `dirCap`; resolves once the update that carried it is done (or the guard refused it). */
  link(dirCap: string, request: LinkRequest): Promise<LinkOutcome> {
    return new Promise<LinkOutcome>((resolve, reject) => {
      const queue = this.queues.get(dirCap) ?? [];
      queue.push({ request, resolve, reject });
      this.queues.set(dirCap, queue);
      if (!this.flushing.has(dirCap)) void this.flush(dirCap);
    });
  }

  private async flush(dirCap: string): Promise<void> {
    this.flushing.add(dirCap);
    try {
      for (;;) {
        const queue = this.queues.get(dirCap) ?? [];
        if (queue.length === 0) break;
        // One link per name in a batch: a later one for the same name waits for the next batch, so that it
        // is applied (and its guard checked) after the earlier one.
        const names = new Set<string>();
        const batch: Queued[] = [];
        const later: Queued[] = [];
        for (const q of queue) (names.has(q.request.name) ? later : batch).push(q), names.add(q.request.name);
        this.queues.set(dirCap, later);
        await this.send(dirCap, batch);
      }
    } finally {
      this.queues.delete(dirCap);
      this.flushing.delete(dirCap);
    }
  }

  private async send(dirCap: string, batch: Queued[]): Promise<void> {
    try {
      let current: Map<string, ChildInfo> | undefined;
      if (batch.some((q) => q.request.expect !== undefined)) current = (await this.client.listDir(dirCap)).children;
      const go: Queued[] = [];
      for (const q of batch) {
        const { name, target, expect } = q.request;
        const entry = current?.get(name);
        const targetCap = target.rwUri ?? target.roUri;
        // Already linked (an earlier attempt got through before its answer was lost): nothing to do. Not so for
        // a new time on the same cap (expect is the target itself): that must be sent.
        if (expect !== undefined && expect !== targetCap && targetCap !== undefined && entryIsBase(entry, targetCap)) q.resolve({ linked: true });
        else if (expect !== undefined && !entryIsBase(entry, expect)) q.resolve({ linked: false, reason: ENTRY_CHANGED });
        else go.push(q);
      }
      if (go.length > 0) {
        await this.updates.setChildren(
          dirCap,
          go.map(({ request: { name, target, expect, path, replaced } }) => {
            const before = current?.get(name);
            return { name, target, path: path ?? name, replaced: expect !== undefined ? expect : current ? heldCap(before) : replaced, replacedMetadata: before?.metadata };
          }),
          true,
        );
      }
      for (const q of go) q.resolve({ linked: true });
    } catch (e) {
      for (const q of batch) q.reject(e);
    }
  }
}
