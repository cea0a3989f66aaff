// Keys for new directories, made ahead here (src/tahoe/keys.ts) so that a mkdir never waits for an RSA key: the
// gateway would otherwise generate one per directory, in Python, on its own cores (an unlinked mkdir took 54 ms
// with the gateway's key, 13 ms with ours, on the loopback test grid). Made from the first take on (a mount that
// makes no directory spends no CPU on keys), or from fill(). Kept in memory only: a key lost at unmount costs
// nothing, and a key is a write cap, so none is written anywhere. Every key is handed out once (the gateway
// refuses a key twice).
//
// State: `ready` and `making`, changed only here.
import { FsError } from '../errors.js';
import type { Logger } from '../log.js';
import { redact } from '../tahoe/caps.js';
import type { TahoeClient } from '../tahoe/client.js';
import { generateMutableKey, privateKeyParam, writeCapOf, type MutableKey } from '../tahoe/keys.js';

/** Keys made at once: each takes a core for a while (RSA-2048), and the machine may have two. */
const MAKING_AT_ONCE = 2;

export class KeyPool {
  private readonly ready: MutableKey[] = [];
  private making = 0;
  private mismatchLogged = false;

  constructor(
    private readonly size: number,
    private readonly log: Logger,
  ) {}

  /** Starts making keys ahead (in the background). */
  fill(): void {
    while (this.ready.length + this.making < this.size && this.making < MAKING_AT_ONCE) {
      this.making++;
      generateMutableKey().then(
        (key) => {
          this.making--;
          this.ready.push(key);
          this.fill();
        },
        (e: unknown) => {
          this.making--;
          this.log.warn({ err: (e as Error).message }, 'could not make a key ahead of time');
        },
      );
    }
  }

  /** A key never handed out before: one made ahead, else one made now. */
  async take(): Promise<MutableKey> {
    const key = this.ready.shift();
    this.fill();
    return key ?? generateMutableKey();
  }

  /**
   * A new, empty, unlinked directory made with one of our keys. If the answer is lost, the cap computed
   * beforehand tells whether the directory was made after all.
   */
  async makeDirectory(client: TahoeClient): Promise<string> {
    const key = await this.take();
    const expected = writeCapOf(key, 'DIR2');
    let cap: string;
    try {
      cap = await client.createDirectory(privateKeyParam(key));
    } catch (e) {
      const made = await client.listDir(expected).then(
        () => true,
        () => false,
      );
      if (!made) throw e;
      cap = expected;
    }
    if (cap !== expected && !this.mismatchLogged) {
      // Not expected of any Tahoe we know; the gateway's answer is the cap, whatever we computed.
      this.mismatchLogged = true;
      this.log.warn({ ours: redact(expected), gateway: redact(cap) }, 'a directory made with our key has another cap than computed (logged once)');
    }
    if (!cap.startsWith('URI:DIR2:')) throw new FsError('EIO', `mkdir answered with a cap that is not a directory's: ${redact(cap)}`);
    return cap;
  }
}
