// How a batch of segments' decoding crosses to a worker thread and back (decode-pool.ts, decode-worker.ts): the
// share bodies the blocks lie in are moved, not copied, wherever that is safe; everything else is small.
import type { SegmentWork } from './chk-share.js';

type WireBlock = { shareNum: number; body: number; start: number; length: number; leaf?: Uint8Array };
type WireSegment = Omit<SegmentWork, 'blocks'> & { blocks: WireBlock[] };

export interface DecodeRequest {
  id: number;
  bodies: ArrayBuffer[];
  segments: WireSegment[];
}

export type DecodeReply =
  | { id: number; plain: ArrayBuffer[]; error?: undefined }
  | { id: number; plain?: undefined; error: { kind: 'block' | 'segment' | 'internal'; message: string; shareNum?: number } };

/**
 * A memory block this large is a body of its own, never Node's shared pool of small Buffers (8 KiB): moving
 * the pool to another thread would empty every Buffer in it.
 */
const MOVABLE_BYTES = 64 * 1024;

/** The request for `works`, and the memory it moves (that memory is unusable here afterwards). */
export function toWire(id: number, works: SegmentWork[]): { request: DecodeRequest; transfer: ArrayBuffer[] } {
  const bodies: ArrayBuffer[] = [];
  const index = new Map<ArrayBufferLike, number>();
  const bodyOf = (block: Uint8Array): { body: number; start: number } => {
    let memory: ArrayBufferLike = block.buffer;
    let start = block.byteOffset;
    if (memory.byteLength < MOVABLE_BYTES || !(memory instanceof ArrayBuffer)) {
      memory = new Uint8Array(block).buffer; // small (or shared): a copy of its own
      start = 0;
    }
    let at = index.get(memory);
    if (at === undefined) {
      at = bodies.length;
      bodies.push(memory as ArrayBuffer);
      index.set(memory, at);
    }
    return { body: at, start };
  };
  const small = (b: Uint8Array): Uint8Array => new Uint8Array(b); // only its own bytes cross, not a pool's
  const segments = works.map((w) => ({
    ...w,
    crypttextLeaf: small(w.crypttextLeaf),
    key: small(w.key),
    blocks: w.blocks.map((b) => ({ shareNum: b.shareNum, ...bodyOf(b.block), length: b.block.byteLength, ...(b.leaf ? { leaf: small(b.leaf) } : {}) })),
  }));
  return { request: { id, bodies, segments }, transfer: bodies };
}

export function fromWire(req: DecodeRequest): SegmentWork[] {
  return req.segments.map((s) => ({
    ...s,
    blocks: s.blocks.map((b) => {
      const body = req.bodies[b.body];
      if (!body || b.start < 0 || b.start + b.length > body.byteLength) throw new Error('block outside its body');
      return { shareNum: b.shareNum, block: new Uint8Array(body, b.start, b.length), ...(b.leaf ? { leaf: b.leaf } : {}) };
    }),
  }));
}
