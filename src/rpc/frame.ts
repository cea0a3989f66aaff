// Framing for the RPC between client and server over a unix socket. It stands alone: bytes in, messages out.
//
// A frame is a 16-byte header, then a JSON body, then raw bytes (file data for read and write, so that a
// 128 KiB block is not base64'd):
//
//   offset 0  u32  magic 0x424d5431 ("BMT1"): catches a peer speaking something else, or a lost position
//   offset 4  u32  length of the JSON body in bytes
//   offset 8  u32  length of the raw bytes
//   offset 12 u32  CRC-32 of the JSON body followed by the raw bytes, checked by the receiver
//
// The original blackmatch sent a JSON header line {len, sha1} before each reply; a fixed binary header keeps
// the same guarantees (length, checksum) without scanning for a newline.
import { crc32 } from '@node-rs/crc32';

export const MAGIC = 0x424d5431;
export const HEADER_BYTES = 16;
/** A directory listing is the largest JSON we send: 64k names of 255 bytes fit. */
export const MAX_JSON_BYTES = 32 * 1024 * 1024;
export const MAX_DATA_BYTES = 16 * 1024 * 1024;

export class FrameError extends Error {}

export interface Frame {
  json: unknown;
  data: Buffer | undefined;
}

/** Encodes a frame as the buffers to write back to back (header, JSON, data). */
export function encodeFrame(json: unknown, data?: Buffer): Buffer[] {
  const body = Buffer.from(JSON.stringify(json));
  if (body.length > MAX_JSON_BYTES) throw new FrameError(`JSON body of ${body.length} bytes exceeds ${MAX_JSON_BYTES}`);
  const dataLength = data?.length ?? 0;
  if (dataLength > MAX_DATA_BYTES) throw new FrameError(`data of ${dataLength} bytes exceeds ${MAX_DATA_BYTES}`);
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header.writeUInt32BE(MAGIC, 0);
  header.writeUInt32BE(body.length, 4);
  header.writeUInt32BE(dataLength, 8);
  header.writeUInt32BE(data && dataLength > 0 ? crc32(data, crc32(body)) : crc32(body), 12);
  return data && dataLength > 0 ? [header, body, data] : [header, body];
}

/**
 * Incremental decoder: push() whatever arrived, get every complete frame back. Throws FrameError on a bad
 * magic, an oversized length, a checksum mismatch or malformed JSON; the caller then drops the connection.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  /** Index of the first chunk not yet consumed. */
  private head = 0;
  private buffered = 0;
  private header: { jsonLength: number; dataLength: number; crc: number } | undefined;

  /** Bytes received that do not yet make a whole frame. */
  get pendingBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (!this.header) {
        if (this.buffered < HEADER_BYTES) break;
        const head = this.take(HEADER_BYTES);
        const magic = head.readUInt32BE(0);
        if (magic !== MAGIC) throw new FrameError(`bad frame magic 0x${magic.toString(16)}`);
        const jsonLength = head.readUInt32BE(4);
        const dataLength = head.readUInt32BE(8);
        if (jsonLength > MAX_JSON_BYTES) throw new FrameError(`JSON body of ${jsonLength} bytes exceeds ${MAX_JSON_BYTES}`);
        if (dataLength > MAX_DATA_BYTES) throw new FrameError(`data of ${dataLength} bytes exceeds ${MAX_DATA_BYTES}`);
        this.header = { jsonLength, dataLength, crc: head.readUInt32BE(12) };
      }
      const { jsonLength, dataLength, crc } = this.header;
      if (this.buffered < jsonLength + dataLength) break;
      const body = this.take(jsonLength);
      const data = dataLength > 0 ? this.take(dataLength) : undefined;
      this.header = undefined;
      const actual = data ? crc32(data, crc32(body)) : crc32(body);
      if (actual !== crc) throw new FrameError('frame checksum mismatch');
      let json: unknown;
      try {
        json = JSON.parse(body.toString('utf8'));
      } catch {
        throw new FrameError('frame body is not valid JSON');
      }
      frames.push({ json, data });
    }
    return frames;
  }

  /** Removes and returns the first n buffered bytes, copying only when they span chunks. */
  private take(n: number): Buffer {
    const first = this.chunks[this.head]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.head++;
      else this.chunks[this.head] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[this.head]!;
        const use = Math.min(c.length, n - filled);
        c.copy(out, filled, 0, use);
        filled += use;
        if (use === c.length) this.head++;
        else this.chunks[this.head] = c.subarray(use);
      }
    }
    // Consumed chunks are dropped in one go, not one shift() each (a frame may arrive in thousands of pieces).
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head > 1024) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
    this.buffered -= n;
    return out;
  }
}
