// One storage server, spoken to over Tahoe's HTTP storage protocol ("Great Black Swamp",
// docs/specifications/http-storage-node-protocol.rst): the NURL that names it, a TLS connection pinned to its
// certificate's SPKI hash (no CA: the hash in the NURL is the server's identity, spec lines 196-212), and the two
// immutable reads a downloader needs. Owns one undici Agent per server (keep-alive connections); the swissnum is
// a secret like a cap: it is never logged, only the server's short name is.
import { createHash, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { decode as decodeCbor } from 'cborg';
import { Agent, buildConnector, request, errors as undiciErrors } from 'undici';

export interface Nurl {
  /** SHA-256 of the server certificate's SubjectPublicKeyInfo (DER). */
  readonly spkiHash: Buffer;
  readonly host: string;
  readonly port: number;
  /** The secret path part, sent base64-encoded as the Authorization credentials. */
  readonly swissnum: string;
}

/** Parses `pb://<unpadded base64url SPKI hash>@host:port/<swissnum>#v=1`; undefined for any other shape. */
export function parseNurl(text: string): Nurl | undefined {
  const m = /^pb:\/\/([A-Za-z0-9_-]{43})@(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})\/([A-Za-z0-9]+)#v=1$/.exec(text.trim());
  if (!m) return undefined;
  const spkiHash = Buffer.from(m[1]!, 'base64url');
  const port = Number(m[3]);
  if (spkiHash.length !== 32 || port < 1 || port > 65535) return undefined;
  return { spkiHash, host: m[2]!.replace(/^\[|\]$/g, ''), port, swissnum: m[4]! };
}

/** Why a server could not answer: the downloader's fallback reason and status's count say which. */
export class StorageServerError extends Error {
  constructor(
    message: string,
    /**
     * 'unreachable' (connect, TLS, timeout), 'refused' (401/403, or a certificate not the NURL's), 'protocol' (an
     * answer that makes no sense), 'stopped' (the reader went away: nobody's fault).
     */
    readonly kind: 'unreachable' | 'refused' | 'protocol' | 'stopped',
  ) {
    super(message);
  }
}

export interface StorageServerOptions {
  connectTimeoutMs?: number;
  /** Bound for an answer to start, and for a gap in its body. */
  requestTimeoutMs?: number;
  /** Connections kept to this server: blocks of several shares and segments are read at once. */
  connections?: number;
}

/** The slowest answer we wait for, beyond the request bound: 256 KB/s. */
const MIN_BYTES_PER_MS = 256;

const SET_TAG = 258; // CBOR's set (spec lines 452-462)

export class StorageServer {
  private readonly agent: Agent;
  private readonly origin: string;
  private readonly auth: string;
  private readonly requestTimeoutMs: number;

  constructor(
    readonly nurl: Nurl,
    /** The server's nickname or a short id: what the log shows. */
    readonly name: string,
    opts: StorageServerOptions = {},
  ) {
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    const host = nurl.host.includes(':') ? `[${nurl.host}]` : nurl.host;
    this.origin = `https://${host}:${nurl.port}`;
    this.auth = `Tahoe-LAFS ${Buffer.from(nurl.swissnum, 'ascii').toString('base64')}`;
    // The certificate is self-signed: skip CA checks, then check its key against the NURL before any request.
    // No TLS session resumption: a resumed session shows no certificate, and every connection's must be checked.
    const connectTls = buildConnector({ rejectUnauthorized: false, timeout: opts.connectTimeoutMs ?? 10_000, maxCachedSessions: 0 });
    this.agent = new Agent({
      connections: opts.connections ?? 8,
      keepAliveTimeout: 120_000, // a connection costs round trips: keep it for the next read
      connect: (options, callback) =>
        connectTls(options, (err, socket) => {
          if (err || !socket) return callback(err ?? new Error('no socket'), null);
          const problem = certificateProblem(socket as TLSSocket, nurl.spkiHash);
          if (problem) {
            socket.destroy();
            return callback(new StorageServerError(`${name}: ${problem}`, 'refused'), null);
          }
          callback(null, socket);
        }),
    });
  }

  /** Asks the server's version (spec lines 532-545): a connection made and its certificate checked, ahead of reads. */
  async ping(): Promise<void> {
    await this.get('/storage/v1/version', undefined, 64 * 1024);
  }

  /** The share numbers this server holds of an immutable file (an empty list when it has none). */
  async immutableShares(storageIndex: string): Promise<number[]> {
    const body = await this.get(`/storage/v1/immutable/${storageIndex}/shares`, undefined, 64 * 1024);
    let value: unknown;
    try {
      value = decodeCbor(body, { tags: setTags() });
    } catch {
      throw new StorageServerError(`${this.name}: share list is not CBOR`, 'protocol');
    }
    const list = value instanceof Set ? [...value] : value;
    if (!Array.isArray(list) || list.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) {
      throw new StorageServerError(`${this.name}: share list is not a set of share numbers`, 'protocol');
    }
    return [...new Set(list as number[])].sort((a, b) => a - b);
  }

  /**
   * Bytes [offset, offset+length) of one share; shorter only where the share ends (spec lines 834-841). The
   * caller checks what the bytes mean; this checks only that the answer is the range asked for.
   */
  async readShare(storageIndex: string, shareNum: number, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    if (length <= 0) return Buffer.alloc(0);
    const last = offset + length - 1;
    return this.get(`/storage/v1/immutable/${storageIndex}/${shareNum}`, { offset, last }, length, signal);
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => {});
  }

  private async get(path: string, range: { offset: number; last: number } | undefined, maxBytes: number, signal?: AbortSignal): Promise<Buffer> {
    const headers: Record<string, string> = { authorization: this.auth, accept: 'application/cbor' };
    // A whole answer's bound (undici's body timeout is per gap): a server trickling bytes must not hold a read.
    const deadline = AbortSignal.timeout(this.requestTimeoutMs + Math.ceil(maxBytes / MIN_BYTES_PER_MS));
    const stop = signal ? AbortSignal.any([signal, deadline]) : deadline;
    if (range) headers.range = `bytes=${range.offset}-${range.last}`;
    let res;
    try {
      res = await request(this.origin + path, {
        dispatcher: this.agent,
        method: 'GET',
        headers,
        headersTimeout: this.requestTimeoutMs,
        bodyTimeout: this.requestTimeoutMs,
        signal: stop,
      });
    } catch (e) {
      if (e instanceof StorageServerError) throw e;
      if (signal?.aborted) throw new StorageServerError(`${this.name}: read stopped`, 'stopped');
      if (deadline.aborted) throw new StorageServerError(`${this.name}: no whole answer in time`, 'unreachable');
      throw new StorageServerError(`${this.name}: ${describeNetError(e)}`, 'unreachable');
    }
    const { statusCode } = res;
    if (statusCode === 204) {
      res.body.destroy();
      return Buffer.alloc(0);
    }
    if (statusCode === 401 || statusCode === 403) {
      res.body.destroy();
      throw new StorageServerError(`${this.name}: refused (HTTP ${statusCode})`, 'refused');
    }
    const wanted = range ? statusCode === 206 : statusCode === 200;
    if (!wanted) {
      res.body.destroy();
      throw new StorageServerError(`${this.name}: HTTP ${statusCode} for a ${range ? 'share read' : 'request'}`, statusCode >= 500 ? 'unreachable' : 'protocol');
    }
    if (range) {
      try {
        checkContentRange(res.headers['content-range'], range, this.name);
      } catch (e) {
        res.body.destroy();
        throw e;
      }
    }
    const chunks: Buffer[] = [];
    let got = 0;
    try {
      for await (const chunk of res.body) {
        got += (chunk as Buffer).length;
        if (got > maxBytes) {
          res.body.destroy();
          throw new StorageServerError(`${this.name}: answer longer than the ${maxBytes} bytes asked for`, 'protocol');
        }
        chunks.push(chunk as Buffer);
      }
    } catch (e) {
      if (e instanceof StorageServerError) throw e;
      if (signal?.aborted) throw new StorageServerError(`${this.name}: read stopped`, 'stopped');
      if (deadline.aborted) throw new StorageServerError(`${this.name}: no whole answer in time`, 'unreachable');
      throw new StorageServerError(`${this.name}: ${describeNetError(e)}`, 'unreachable');
    }
    const body = Buffer.concat(chunks, got);
    if (range) checkRangeLength(res.headers['content-range'], body.length, this.name);
    return body;
  }
}

function setTags(): Array<(decode: () => unknown) => unknown> {
  const tags: Array<(decode: () => unknown) => unknown> = [];
  tags[SET_TAG] = (decode) => {
    const items = decode();
    if (!Array.isArray(items)) throw new Error('set of a non-array');
    return new Set(items);
  };
  return tags;
}

/** The answer must start where asked and may end early only at the share's end (RFC 9110 14.4). */
function checkContentRange(header: string | string[] | undefined, range: { offset: number; last: number }, name: string): void {
  const m = typeof header === 'string' ? /^bytes ([0-9]+)-([0-9]+)\/([0-9]+|\*)$/.exec(header.trim()) : null;
  if (!m) throw new StorageServerError(`${name}: partial answer without a usable Content-Range`, 'protocol');
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (first !== range.offset || last > range.last || last < first) {
    throw new StorageServerError(`${name}: Content-Range ${header as string} for bytes ${range.offset}-${range.last}`, 'protocol');
  }
  if (last < range.last && m[3] !== '*' && last + 1 !== Number(m[3])) {
    throw new StorageServerError(`${name}: short answer that is not the share's end (${header as string})`, 'protocol');
  }
}

function checkRangeLength(header: string | string[] | undefined, length: number, name: string): void {
  const m = /^bytes ([0-9]+)-([0-9]+)/.exec(String(header));
  if (m && Number(m[2]) - Number(m[1]) + 1 !== length) {
    throw new StorageServerError(`${name}: body of ${length} bytes for Content-Range ${String(header)}`, 'protocol');
  }
}

function certificateProblem(socket: TLSSocket, spkiHash: Buffer): string | undefined {
  let cert: X509Certificate | undefined;
  try {
    cert = socket.getPeerX509Certificate();
  } catch {
    cert = undefined;
  }
  if (!cert) return 'no TLS certificate';
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  const hash = createHash('sha256').update(spki).digest();
  return hash.equals(spkiHash) ? undefined : 'TLS certificate does not match its NURL';
}

function describeNetError(e: unknown): string {
  if (e instanceof undiciErrors.ConnectTimeoutError) return 'connect timed out';
  if (e instanceof undiciErrors.HeadersTimeoutError || e instanceof undiciErrors.BodyTimeoutError) return 'timed out';
  const err = e as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  return err.cause?.code ?? err.code ?? err.cause?.message ?? err.message ?? String(e);
}
