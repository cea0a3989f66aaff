// One framed connection over a unix socket, used by both ends: decodes incoming frames, writes outgoing
// ones whole (socket writes are ordered, and a frame is written in one synchronous step, so frames never
// interleave), and drops a peer that sends garbage or stalls in the middle of a frame.
import type { Socket } from 'node:net';
import { encodeFrame, FrameDecoder, FrameError, type Frame } from './frame.js';

/** A peer that stops halfway through a frame for this long is dropped. */
export const PARTIAL_FRAME_TIMEOUT_MS = 30_000;

export class FramedConnection {
  private readonly decoder = new FrameDecoder();
  private stallTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private batching = false;

  constructor(
    readonly socket: Socket,
    onFrame: (frame: Frame) => void,
    onClose: (reason: string | undefined) => void,
  ) {
    socket.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.decoder.push(chunk);
      } catch (e) {
        this.destroy(e instanceof FrameError ? e.message : String(e));
        return;
      }
      this.armStallTimer();
      for (const frame of frames) {
        if (this.closed) break;
        onFrame(frame);
      }
    });
    socket.on('error', () => undefined); // 'close' follows and reports
    socket.on('close', () => {
      this.closed = true;
      clearTimeout(this.stallTimer);
      onClose(this.closeReason);
    });
  }

  private closeReason: string | undefined;

  send(json: unknown, data?: Buffer): void {
    if (this.closed) return;
    const parts = encodeFrame(json, data);
    // Frames sent in the same tick leave in one writev: FUSE hands us several requests at once, and one
    // system call (and one wake-up of the peer) for all of them is much cheaper than one each.
    if (!this.batching) {
      this.batching = true;
      this.socket.cork();
      process.nextTick(() => {
        this.batching = false;
        this.socket.uncork();
      });
    }
    for (const part of parts) this.socket.write(part);
  }

  destroy(reason?: string): void {
    if (this.closeReason === undefined) this.closeReason = reason;
    this.socket.destroy();
  }

  private armStallTimer(): void {
    clearTimeout(this.stallTimer);
    if (this.decoder.pendingBytes === 0) return;
    this.stallTimer = setTimeout(() => this.destroy('peer stalled in the middle of a frame'), PARTIAL_FRAME_TIMEOUT_MS);
    this.stallTimer.unref();
  }
}
