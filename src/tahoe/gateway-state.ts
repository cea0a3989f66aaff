// Whether the Tahoe gateway answers, as the client's requests and probes tell: the state and since when, the gate
// a request passes (failing fast while the gateway is unreachable), the probe that looks again (on a request's
// way when one is due, and on a timer that slows down while nothing asks), and who hears of a change. No HTTP
// here: the client says how to look (`look`), what came back (answered) and what did not (unreachable).
//
// State: `offlineSince`, `stateSince`, `probing`, `lastProbeAt`, `probeTimer`, `probeDelayMs`, `listeners` and
// `closed`: changed only by this class, from the client's calls and its own probes, never by another owner.
import type { Logger } from '../log.js';

/** Often enough that a gateway back is noticed within a couple of seconds of the next use; a probe is one small GET. */
export const PROBE_EVERY_MS = 2_000;
/** A gateway on this machine or the LAN answers its front page well within this, busy or not. */
export const PROBE_TIMEOUT_MS = 3_000;
/** How long a request waits for a probe's answer before it fails anyway. */
const PROBE_WAIT_MS = 500;
/** With nothing asking, the timer's probes slow down to this: an outage of days costs a request a half-minute. */
const PROBE_IDLE_MAX_MS = 30_000;

/** Whether the gateway answers, and since when (ms since the epoch): for `blackmatch status` and the log. */
export interface GatewayState {
  online: boolean;
  since: number;
}

export interface GatewayWatchOptions {
  /** The gateway's address: for the log. */
  base: string;
  /** One look at the gateway: resolves on any answer, rejects on none; gives up when `signal` aborts. */
  look: (signal: AbortSignal) => Promise<void>;
  /** See TahoeTimeouts.probeEveryMs (default PROBE_EVERY_MS; 0: every request probes). */
  probeEveryMs?: number;
  /** Bound of one probe (default PROBE_TIMEOUT_MS). */
  probeTimeoutMs?: number;
  log?: Logger;
}

export class GatewayWatch {
  /** Set once the client gave up on reaching the gateway; cleared by any answer. */
  private offlineSince: number | undefined;
  private stateSince = Date.now();
  private probing: Promise<void> | undefined;
  private lastProbeAt = 0;
  private probeTimer: NodeJS.Timeout | undefined;
  private probeDelayMs = 0;
  private readonly listeners: Array<(state: GatewayState) => void> = [];
  private closed = false;
  private readonly probeEveryMs: number;

  constructor(private readonly opts: GatewayWatchOptions) {
    this.probeEveryMs = opts.probeEveryMs ?? PROBE_EVERY_MS;
  }

  /** Stops the timer's probes for good (a probe under way ends within its bound). */
  close(): void {
    this.closed = true;
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
  }

  get state(): GatewayState {
    return { online: this.offlineSince === undefined, since: this.stateSince };
  }

  /** Calls `listener` on each change of state (a throw is the listener's own problem: caught and ignored). */
  onChange(listener: (state: GatewayState) => void): void {
    this.listeners.push(listener);
  }

  /** Probes now if the gateway is marked unreachable; true when it answers (or was never marked). */
  async probeNow(): Promise<boolean> {
    if (this.offlineSince !== undefined) await this.probe();
    return this.offlineSince === undefined;
  }

  /**
   * Before a request: undefined when it may go on; otherwise since when (ms since the epoch) the gateway is
   * unreachable, after a probe if one is due (waited for at most PROBE_WAIT_MS).
   */
  async gate(): Promise<number | undefined> {
    if (this.offlineSince === undefined) return undefined;
    if (Date.now() - this.lastProbeAt >= this.probeEveryMs || this.probing) {
      // A gateway that is back answers a probe in milliseconds; one that is gone (no refusal, only silence)
      // must not hold requests for the probe's whole bound: they fail, and the probe goes on without them.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.probe(), new Promise<void>((r) => (timer = setTimeout(r, PROBE_WAIT_MS)))]);
      clearTimeout(timer);
    }
    return this.offlineSince;
  }

  /** An idempotent request got no answer through all its tries: the gateway is unreachable. */
  unreachable(err: Error): void {
    this.lastProbeAt = Date.now(); // this failure was a look: the next is due a probe interval later
    if (this.offlineSince !== undefined) return;
    this.offlineSince = this.stateSince = Date.now();
    this.opts.log?.warn({ gateway: this.opts.base, err: err.message }, 'gateway unreachable: requests fail at once until it answers again');
    this.probeDelayMs = Math.max(this.probeEveryMs, 100);
    this.scheduleProbe();
    this.tell();
  }

  /** A response came (any status): the gateway answers. */
  answered(): void {
    if (this.offlineSince === undefined) return;
    const downMs = Date.now() - this.offlineSince;
    this.offlineSince = undefined;
    this.stateSince = Date.now();
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
    this.opts.log?.info({ gateway: this.opts.base, downMs }, 'gateway answers again');
    this.tell();
  }

  /** One look, shared by whoever asks meanwhile; any answer means the gateway is back. */
  private probe(): Promise<void> {
    this.probing ??= (async () => {
      this.lastProbeAt = Date.now();
      try {
        await this.opts.look(AbortSignal.timeout(this.opts.probeTimeoutMs ?? PROBE_TIMEOUT_MS));
        this.answered();
      } catch {
        // still unreachable (or too slow to count as back): the timer looks again later
      } finally {
        this.probing = undefined;
        this.lastProbeAt = Date.now();
      }
    })();
    return this.probing;
  }

  /** While unreachable, a probe now and then even when nothing asks (so that waiting work resumes on its own). */
  private scheduleProbe(): void {
    if (this.closed || this.offlineSince === undefined || this.probeTimer) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      void this.probe().then(() => {
        this.probeDelayMs = Math.min(this.probeDelayMs * 2, PROBE_IDLE_MAX_MS);
        this.scheduleProbe();
      });
    }, this.probeDelayMs).unref(); // the mount keeps the process alive, not a probe
  }

  private tell(): void {
    const state = this.state;
    for (const listener of this.listeners) {
      try {
        listener(state);
      } catch {
        // a listener's failure is its own
      }
    }
  }
}
