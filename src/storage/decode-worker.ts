// The worker thread of decode-pool.ts: decodes batches of segments (decodeSegmentWork: block hashes, zfec,
// crypttext hash, AES) off the main thread, which then only moves bytes. Holds nothing between messages.
import { parentPort } from 'node:worker_threads';
import { BlockMismatchError, decodeSegmentWork, ShareFormatError } from './chk-share.js';
import { fromWire, type DecodeReply, type DecodeRequest } from './decode-wire.js';

parentPort!.on('message', (req: DecodeRequest) => {
  let reply: DecodeReply;
  let transfer: ArrayBuffer[] = [];
  try {
    const plain = fromWire(req).map((work) => {
      const out = decodeSegmentWork(work);
      // Moved back: a Buffer sharing its memory with others (Node's pool) is copied into memory of its own first.
      return out.byteOffset === 0 && out.byteLength === out.buffer.byteLength ? (out.buffer as ArrayBuffer) : new Uint8Array(out).buffer;
    });
    transfer = [...new Set(plain)];
    reply = { id: req.id, plain };
  } catch (e) {
    const message = (e as Error).message;
    if (e instanceof BlockMismatchError) reply = { id: req.id, error: { kind: 'block', message, shareNum: e.shareNum } };
    else reply = { id: req.id, error: { kind: e instanceof ShareFormatError ? 'segment' : 'internal', message } };
  }
  parentPort!.postMessage(reply, transfer);
});
