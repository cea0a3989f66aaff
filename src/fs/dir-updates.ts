// Every change this mount makes to a directory goes through here (the namespace's ops, the link batcher): the
// web-API request, then its record in the ledger (ledger.ts), which checks it stays. A failure whose outcome is
// unknown (a 5xx or 410, an answer lost: tahoe/client.ts outcomeUnknown) is not taken as "not applied": a fresh
// listing says whether the change is there, and if it is, the op succeeded (an unlink or a rename that did not
// land is tried again, twice). A link over a version we know carries that version's fingerprint (REPLACES_KEY),
// so that another machine's ledger sees it was replaced on purpose, not lost. No state of its own.
import type { ChildInfo, LinkTarget, TahoeClient } from '../tahoe/client.js';
import { outcomeUnknown } from '../tahoe/client.js';
import { redact } from '../tahoe/caps.js';
import { heldCap } from '../tahoe/links.js';
import { metadataJson, REPLACES_KEY, type Ledger } from './ledger.js';

export interface NewLink {
  name: string;
  target: LinkTarget;
  /** Path in the mount, for messages. */
  path: string;
  /** The cap the name held before (null: nothing; undefined: not known). */
  replaced?: string | null;
  /** For a change of metadata on the same cap: the metadata it replaces. */
  replacedMetadata?: Record<string, unknown>;
}

/** Pauses before trying again an unlink or a rename whose answer was unknown and that did not land. */
const UNKNOWN_RETRY_DELAYS_MS = [1_000, 3_000];

export class DirectoryUpdates {
  constructor(
    private readonly client: TahoeClient,
    private readonly ledger: Ledger,
  ) {}

  /** Bytes whose name another machine wrote meanwhile, linked beside it and reported (Ledger.linkBeside). */
  linkBeside(dirCap: string, name: string, path: string, target: LinkTarget, size: number): Promise<{ child: ChildInfo; keptAs: string } | undefined> {
    return this.ledger.linkBeside(dirCap, name, path, target, size);
  }

  async setChild(dirCap: string, link: NewLink, replace: boolean): Promise<void> {
    await this.setChildren(dirCap, [link], replace);
  }

  /** One update linking every one of `links`. */
  async setChildren(dirCap: string, links: NewLink[], replace: boolean): Promise<void> {
    const sent = links.map((l) => [l.name, marked(l)] as [string, LinkTarget]);
    try {
      await this.client.setChildren(dirCap, sent, replace);
    } catch (e) {
      if (!outcomeUnknown(e)) throw e;
      const listing = await this.client.listDir(dirCap);
      if (!links.every((l) => heldCap(listing.children.get(l.name)) === heldCap(l.target))) throw e;
    }
    for (const [i, l] of links.entries()) {
      const sameCap = l.replaced !== undefined && l.replaced === heldCap(l.target);
      this.ledger.record({
        dirCap, name: l.name, path: l.path, target: sent[i]![1],
        replaced: l.replaced === undefined ? [] : [l.replaced],
        ...(sameCap && l.replacedMetadata ? { metadata: metadataJson(l.target.metadata), replacedMetadata: [metadataJson(l.replacedMetadata)] } : {}),
      });
    }
  }

  /** DELETE of one link; `removed` is the cap it held. */
  async unlink(dirCap: string, name: string, path: string, removed: string | null): Promise<void> {
    await this.checked(
      () => this.client.unlink(dirCap, name),
      async () => !(await this.client.listDir(dirCap)).children.has(name),
    );
    this.ledger.record({ dirCap, name, path, replaced: [removed] });
  }

  /**
   * Runs a directory update that is not safe to repeat blindly. When its outcome is unknown, a listing says
   * whether it landed; if it did not, it is tried again after each of UNKNOWN_RETRY_DELAYS_MS (Tahoe gives up
   * on a contended update after 4 tries of its own, and a moment later it usually goes through).
   */
  private async checked(attempt: () => Promise<void>, landed: () => Promise<boolean>): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        return await attempt();
      } catch (e) {
        if (!outcomeUnknown(e)) throw e;
        if (await landed()) return;
        const delay = UNKNOWN_RETRY_DELAYS_MS[i];
        if (delay === undefined) throw e;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** t=relink: moves the link `moved` (its cap and metadata as listed) to another name or directory. */
  async relink(from: Place, to: Place & { replaced?: string | null }, moved: LinkTarget): Promise<void> {
    await this.checked(
      () => this.client.relink(from.dirCap, from.name, to.dirCap, to.name, true),
      async () => heldCap((await this.client.listDir(to.dirCap)).children.get(to.name)) === heldCap(moved),
    );
    const cap = heldCap(moved);
    this.ledger.record({ ...from, replaced: [cap] });
    this.ledger.record({ ...placeOf(to), target: moved, replaced: to.replaced === undefined ? [] : [to.replaced] });
  }
}

export interface Place {
  dirCap: string;
  name: string;
  path: string;
}

const placeOf = ({ dirCap, name, path }: Place): Place => ({ dirCap, name, path });

/** The target as sent: over a version we know, its link says which one it replaced. */
function marked(link: NewLink): LinkTarget {
  if (link.replaced === undefined || link.replaced === null || link.replaced === heldCap(link.target)) return link.target;
  return { ...link.target, metadata: { ...(link.target.metadata ?? {}), [REPLACES_KEY]: redact(link.replaced) } };
}
