// A tiny stand-in for the Tahoe web API on 127.0.0.1: records every request (raw URL, headers, body) and lets
// each test decide the answer. For unit tests of the client and the cache; no Tahoe needed.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

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
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    handle(h: FakeHandler) {
      current = h;
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
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
