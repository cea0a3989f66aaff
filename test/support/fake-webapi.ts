// A tiny stand-in for the Tahoe web API on 127.0.0.1: records every request (raw URL, headers, body) and lets
// each test decide the answer. For unit tests of the client and the cache; no Tahoe needed. fileServer() answers
// downloads of file contents (Range requests included), slowly, holding or failing mid-way when a test asks.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { encodeBase32 } from '../../src/tahoe/base32.js';

export interface RecordedRequest {
  method: string;
  /** The request target exactly as sent on the wire (still percent-encoded). */
  rawUrl: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** Answers one request. The body has already been read; leaving res unanswered simulates a hung gateway. */
export type FakeHandler = (req: RecordedRequest, res: ServerResponse) => void;

export interface FakeWebApi {
  /** Base URL with trailing slash, like node.url. */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Replaces the handler for the following requests. */
  handle(handler: FakeHandler): void;
  /** Stops listening (and drops every connection): connections are refused, as by a stopped gateway. */
  refuse(): Promise<void>;
  /** Listens again on the same port. */
  accept(): Promise<void>;
  /** Closes the server and drops any connection still open (hung requests included). */
  close(): Promise<void>;
}

/** Default answer: 200 with an empty body. */
const ok: FakeHandler = (_req, res) => {
  res.end();
};

export async function startFakeWebApi(handler: FakeHandler = ok): Promise<FakeWebApi> {
  let current = handler;
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: RecordedRequest = {
        method: req.method ?? '',
        rawUrl: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      requests.push(rec);
      current(rec, res);
    });
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  const stop = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      server.closeAllConnections();
    });
  await listen(0);
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    handle(h: FakeHandler) {
      current = h;
    },
    refuse: stop,
    async accept() {
      if (!server.listening) await listen(port);
    },
    close: stop,
  };
}

/** Splits a recorded raw URL into its decoded path segments and its query parameters (form-decoded). */
export function splitUrl(rawUrl: string): { segments: string[]; query: URLSearchParams; rawQuery: string } {
  const q = rawUrl.indexOf('?');
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const rawQuery = q < 0 ? '' : rawUrl.slice(q + 1);
  const segments = path.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s));
  return { segments, query: new URLSearchParams(rawQuery), rawQuery };
}

// ---- Serving file contents, as GET /uri/$FILECAP does ----------------------------------------------------------

/** How the fake answers one download; chosen per request, so a test can make one range slow and another fast. */
export interface ServeBehaviour {
  /** Bytes per write (default: the whole body in one write). */
  chunkSize?: number;
  /** Milliseconds between writes (default: one event-loop turn). Pacing only; tests never assert on time. */
  chunkDelayMs?: number;
  /** Sends this many body bytes, then holds the rest until `resume` settles (forever if there is none). */
  holdAfter?: number;
  resume?: Promise<void>;
  /** Destroys the connection after this many body bytes have been flushed: a gateway failing mid-way. */
  failAfter?: number;
  /** Answers 200 with the whole file whatever the Range header asks, as a server that ignores Range would. */
  ignoreRange?: boolean;
}

export interface ByteRange {
  /** First byte. */
  start: number;
  /** One past the last byte. */
  end: number;
}

/** Parses `bytes=a-b` / `bytes=a-` against a file of `size` bytes; undefined when there is no usable header. */
export function parseRangeHeader(header: string | string[] | undefined, size: number): ByteRange | undefined {
  if (typeof header !== 'string') return undefined;
  const m = /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (!m) return undefined;
  const start = Number(m[1]);
  const end = m[2] === '' ? size : Math.min(size, Number(m[2]) + 1);
  return { start, end };
}

/** The Range a recorded request asked for, as [start, end) (end exclusive), or undefined for a whole-file GET. */
export function requestedRange(req: RecordedRequest): ByteRange | undefined {
  return parseRangeHeader(req.headers.range, Number.MAX_SAFE_INTEGER);
}

/**
 * A handler serving `files` (keyed by cap text) under /uri/$CAP: 200 for a whole file, 206 with Content-Range for
 * `Range: bytes=a-b`, 416 for a range starting at or past the end, 404 for an unknown cap. `behave` picks, per
 * request, how slowly and how reliably the answer is sent.
 */
export function fileServer(
  files: ReadonlyMap<string, Buffer>,
  behave: (req: RecordedRequest, range: ByteRange | undefined) => ServeBehaviour = () => ({}),
): FakeHandler {
  return (req, res) => {
    const { segments } = splitUrl(req.rawUrl);
    const content = req.method === 'GET' && segments.length === 2 && segments[0] === 'uri' ? files.get(segments[1]!) : undefined;
    if (!content) {
      res.statusCode = 404;
      res.end('No such file');
      return;
    }
    const range = parseRangeHeader(req.headers.range, content.length);
    const how = behave(req, range);
    let body = content;
    if (range && !how.ignoreRange) {
      if (range.start >= content.length || range.end <= range.start) {
        res.statusCode = 416;
        res.setHeader('content-range', `bytes */${content.length}`);
        res.end();
        return;
      }
      body = content.subarray(range.start, range.end);
      res.statusCode = 206;
      res.setHeader('content-range', `bytes ${range.start}-${range.end - 1}/${content.length}`);
    } else {
      res.statusCode = 200;
    }
    res.setHeader('content-length', String(body.length));
    void sendBody(res, body, how);
  };
}

async function sendBody(res: ServerResponse, body: Buffer, how: ServeBehaviour): Promise<void> {
  const chunkSize = Math.max(1, how.chunkSize ?? body.length);
  const closed = new Promise<void>((resolve) => res.once('close', () => resolve()));
  const gone = () => res.destroyed || !res.socket || res.socket.destroyed;
  let sent = 0;
  let held = false;
  for (;;) {
    if (gone()) return;
    if (how.failAfter !== undefined && sent >= how.failAfter) {
      res.socket?.destroy();
      return;
    }
    if (sent >= body.length) break;
    if (how.holdAfter !== undefined && sent >= how.holdAfter && !held) {
      held = true;
      await Promise.race([how.resume ?? new Promise<void>(() => {}), closed]);
      continue;
    }
    let n = Math.min(chunkSize, body.length - sent);
    if (how.failAfter !== undefined) n = Math.min(n, how.failAfter - sent);
    if (how.holdAfter !== undefined && !held) n = Math.min(n, how.holdAfter - sent);
    const chunk = body.subarray(sent, sent + n);
    sent += n;
    // Wait until the chunk has been handed to the socket, so that a failure or a hold comes exactly after it.
    await Promise.race([new Promise<void>((resolve) => res.write(chunk, () => resolve())), closed]);
    if (sent < body.length) {
      await new Promise<void>((resolve) => (how.chunkDelayMs ? setTimeout(resolve, how.chunkDelayMs) : setImmediate(resolve)));
    }
  }
  res.end();
}

// ---- Caps for served files ----------------------------------------------------------------------------------

/** A CHK cap of the real shape for a file of `size` bytes, with random keys: its storage index is unique. */
export function randomChkCap(size: number): string {
  return `URI:CHK:${encodeBase32(randomBytes(16))}:${encodeBase32(randomBytes(32))}:2:3:${size}`;
}

/** `size` bytes that differ at every offset a test is likely to compare (a counter mixed with a seed). */
export function patternedContent(size: number, seed = 1): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf[i] = x & 0xff;
  }
  return buf;
}
