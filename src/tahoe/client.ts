// Tahoe web-API client (docs/frontends/webapi.rst). Every request has a bound; every failure becomes an FsError.
//
// State: whether the gateway answers lives in `gateway` (gateway-state.ts), told by the requests' outcomes here;
// the client holds no other state across an await.
import { Readable } from 'node:stream';
import { Agent, request, errors as undiciErrors, type Dispatcher } from 'undici';
import { FsError, type ErrnoName } from '../errors.js';
import type { Logger } from '../log.js';
import { redact } from './caps.js';
import { GatewayWatch, type GatewayState } from './gateway-state.js';
import type { MutableKey } from './keys.js';
import { UnmadeDirectories } from './unmade-dirs.js';

export { PROBE_EVERY_MS, PROBE_TIMEOUT_MS, type GatewayState } from './gateway-state.js';

export interface TahoeTimeouts {
  /** Bound for small requests (listings, links, mkdir): the whole request. */
  requestMs: number;
  /** Bound on silence during a transfer: no byte moved for this long fails it. */
  idleMs: number;
  /** Bound on waiting for Tahoe's answer after an upload body was sent (it encodes and pushes shares first). */
  uploadAnswerMs: number;
  /**
   * Waits before each retry of an idempotent request that failed transiently (connection refused or reset,
   * 5xx): a gateway restarting or a storage server reconnecting gets a few seconds, no more.
   */
  retryDelaysMs: number[];
  /**
   * While the gateway is unreachable: a request looks again (a probe) when the last look is this old; a timer
   * looks too, from this interval doubling up to 30 s (gateway-state.ts; default PROBE_EVERY_MS; 0: every request).
   */
  probeEveryMs?: number;
  /** Bound of one probe (default PROBE_TIMEOUT_MS). */
  probeTimeoutMs?: number;
}

export const DEFAULT_TIMEOUTS: TahoeTimeouts = { requestMs: 60_000, idleMs: 60_000, uploadAnswerMs: 600_000, retryDelaysMs: [250, 1_000, 3_000] };

/** A request body, or a way to make it again (a stream can be sent once: retries need a fresh one). */
export type Body = Buffer | Readable | (() => Buffer | Readable);

/** Failures worth retrying: marked where they are made, from the transport or the status. */
const transient = new WeakSet<FsError>();
/**
 * Failures where the gateway could not be reached at all (see NO_ANSWER_CODES), as opposed to an HTTP error
 * from a live gateway (a storage-side failure among them) or a request that timed out after it was taken.
 */
const noAnswer = new WeakSet<FsError>();

/**
 * Whether a failed request may still have done what it asked: a 5xx or 410 answer (a mutable update that met
 * another writer answers 500 UncoordinatedWriteError, yet its version may be the one that stays:
 * docs/specifications/mutable.rst) or an answer lost after the request went out. Not a refused connection.
 */
export function outcomeUnknown(e: unknown): boolean {
  return e instanceof FsError && (mayHaveApplied.has(e) || (transient.has(e) && !noAnswer.has(e)));
}
const mayHaveApplied = new WeakSet<FsError>();

/**
 * Immutable uploads some servers refused because they hold an unfinished upload of the same storage index. An
 * upload whose HTTP client went away is cancelled by the gateway (web/common.py:539) past the abort of its
 * allocations (immutable/upload.py:887), and a storage server keeps such an allocation for 30 minutes
 * (storage/immutable.py:372). A CHK cap is convergent, so the same bytes meet the same allocation every time.
 */
const sharesHeldByAnotherUpload = new WeakSet<FsError>();
export function isBlockedByUnfinishedUpload(e: unknown): boolean {
  return e instanceof FsError && sharesHeldByAnotherUpload.has(e);
}

/** Whether a request failed because the gateway could not be reached (now, or in a row until it was given up on). */
export function isUnreachable(e: unknown): boolean {
  return e instanceof FsError && noAnswer.has(e);
}

export interface ChildInfo {
  name: string;
  type: 'file' | 'dir' | 'unknown';
  /** Read-write cap when we hold one (mutable files, writable directories). */
  rwUri?: string;
  roUri?: string;
  size?: number;
  mutable: boolean;
  metadata: LinkMetadata;
}

export interface LinkMetadata {
  /** Seconds since the epoch: Tahoe's link creation and modification times. */
  tahoe?: { linkcrtime?: number; linkmotime?: number };
  /** Seconds since the epoch: the file's own mtime as set by utimens (the key Tahoe's SFTP frontend uses too). */
  mtime?: number;
  [key: string]: unknown;
}

export interface DirListing {
  rwUri?: string;
  roUri?: string;
  mutable: boolean;
  children: Map<string, ChildInfo>;
}

/** What a link carries: the caps of the child and the metadata to store with it. */
export interface LinkTarget {
  type: 'file' | 'dir' | 'unknown';
  rwUri?: string;
  roUri?: string;
  metadata?: LinkMetadata;
}

export class TahoeClient {
  readonly base: string;
  private readonly agent: Agent;
  private readonly gateway: GatewayWatch;
  /** Directories handed out before they exist: each request naming one waits until it is made. */
  private readonly unmade: UnmadeDirectories;

  constructor(
    nodeUrl: string,
    readonly timeouts: TahoeTimeouts = DEFAULT_TIMEOUTS,
    /** Logs one debug line per request: what a test counts to check that `ls -l` costs one request. */
    private readonly log?: Logger,
  ) {
    this.base = nodeUrl.endsWith('/') ? nodeUrl : nodeUrl + '/';
    this.agent = new Agent({ connections: 32, keepAliveTimeout: 10_000, connectTimeout: 10_000 });
    const { probeEveryMs, probeTimeoutMs } = timeouts;
    this.gateway = new GatewayWatch({ base: this.base, look: (signal) => this.look(signal), probeEveryMs, probeTimeoutMs, log });
    this.unmade = new UnmadeDirectories(
      (privateKey) => this.createDirectory(privateKey),
      (cap) => this.listMadeDir(cap).then(() => true, () => false),
      log,
    );
  }

  async close(): Promise<void> {
    this.gateway.close();
    await this.agent.close();
  }

  /** Whether the gateway answers (as far as the last requests and probes tell), and since when. */
  get gatewayState(): GatewayState {
    return this.gateway.state;
  }

  /**
   * Looks at the gateway now if it is marked unreachable (a probe, bounded by its own timeout); true when it
   * answers. For work that must not wait for the next look (sync): a failure of the moment before it came back
   * is no reason to give up.
   */
  async probeGateway(): Promise<boolean> {
    return this.gateway.probeNow();
  }

  /** Calls `listener` on each change of gatewayState (a throw is the listener's own problem: caught and ignored). */
  onGatewayState(listener: (state: GatewayState) => void): void {
    this.gateway.onChange(listener);
  }

  /** GET /uri/$DIRCAP?t=json: one request for a whole directory, sizes and metadata included. */
  async listDir(dirCap: string): Promise<DirListing> {
    await this.unmade.ready(dirCap);
    return this.listMadeDir(dirCap);
  }

  private async listMadeDir(dirCap: string): Promise<DirListing> {
    const json = await this.json('GET', `uri/${encodeURIComponent(dirCap)}?t=json`, `list ${redact(dirCap)}`, true);
    if (!Array.isArray(json) || json[0] !== 'dirnode' || typeof json[1] !== 'object') {
      throw new FsError('ENOTDIR', `list ${redact(dirCap)}: not a directory`);
    }
    const node = json[1] as { rw_uri?: string; ro_uri?: string; mutable?: boolean; children?: Record<string, unknown> };
    const children = new Map<string, ChildInfo>();
    for (const [name, raw] of Object.entries(node.children ?? {})) {
      if (!Array.isArray(raw) || typeof raw[1] !== 'object' || raw[1] === null) continue;
      const info = raw[1] as { rw_uri?: string; ro_uri?: string; size?: number; mutable?: boolean; metadata?: LinkMetadata };
      const type = raw[0] === 'dirnode' ? 'dir' : raw[0] === 'filenode' ? 'file' : 'unknown';
      children.set(name, {
        name,
        type,
        rwUri: info.rw_uri,
        roUri: info.ro_uri,
        size: typeof info.size === 'number' ? info.size : undefined,
        mutable: info.mutable === true,
        metadata: info.metadata ?? {},
      });
    }
    return { rwUri: node.rw_uri, roUri: node.ro_uri, mutable: node.mutable === true, children };
  }

  /**
   * POST /uri?t=mkdir: a new, unlinked, empty mutable directory; with `privateKey` (keys.ts privateKeyParam),
   * made with that key: its cap is known before the answer (keys.ts writeCapOf).
   */
  async createDirectory(privateKey?: string): Promise<string> {
    const key = privateKey === undefined ? '' : `&private-key=${encodeURIComponent(privateKey)}`;
    return (await this.text('POST', `uri?t=mkdir${key}`, 'mkdir')).trim();
  }

  /**
   * The cap of a new, empty directory made with `key` (keys.ts): returned at once, before the directory exists.
   * It is made in the background, and before any request of this client that names it (unmade-dirs.ts).
   */
  deferDirectory(key: MutableKey): string {
    return this.unmade.defer(key);
  }

  /** A new, empty, unlinked directory made with `key`, made now: its cap once it exists. */
  async makeDirectory(key: MutableKey): Promise<string> {
    const cap = this.unmade.defer(key);
    try {
      await this.unmade.ready(cap);
    } catch (e) {
      this.unmade.forget(cap); // nothing names it: the key is dropped with it
      throw e;
    }
    return cap;
  }

  /** POST /uri/$DIRCAP?t=mkdir&name=N: creates a directory and links it; refuses an existing name (EEXIST). */
  async mkdir(parentCap: string, name: string): Promise<string> {
    await this.unmade.ready(parentCap);
    const q = `t=mkdir&name=${encodeURIComponent(name)}&replace=false`;
    return (await this.text('POST', `uri/${encodeURIComponent(parentCap)}?${q}`, `mkdir in ${redact(parentCap)}`)).trim();
  }

  /** PUT /uri: uploads an immutable file and returns its cap (LIT for small files, CHK otherwise). */
  async upload(body: Body, size: number): Promise<string> {
    const cap = await this.text('PUT', 'uri', 'upload', { body, size, upload: true, idempotent: true });
    return cap.trim();
  }

  /** PUT /uri/$FILECAP: replaces the contents of a mutable file in place (its cap stays the same). */
  async overwriteMutable(fileCap: string, body: Body, size: number): Promise<void> {
    await this.text('PUT', `uri/${encodeURIComponent(fileCap)}`, `overwrite ${redact(fileCap)}`, { body, size, upload: true, idempotent: true });
  }

  /** PUT /uri?format=MDMF: a new, unlinked MDMF mutable file holding the body; returns its write cap. */
  async uploadMutable(body: Body, size: number): Promise<string> {
    // Not idempotent: a retry after a lost answer would make a second file, the first then unreachable.
    return (await this.text('PUT', 'uri?format=MDMF', 'upload MDMF', { body, size, upload: true, idempotent: false })).trim();
  }

  /**
   * PUT /uri/$FILECAP?offset=N: writes the body at an offset of an MDMF file, in place; the gateway rewrites only
   * the segments it touches (webapi.rst, "PUT /uri/$FILECAP?offset="; mutable/filenode.py:1037 _update). Send
   * what offsetWriteRange() says, not the changed bytes alone: the gateway fails some writes that are fine.
   */
  async writeMutableAt(fileCap: string, offset: number, body: Body, size: number): Promise<void> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new FsError('EINVAL', `bad offset ${offset}`);
    await this.text('PUT', `uri/${encodeURIComponent(fileCap)}?offset=${offset}`, `write at ${offset} of ${redact(fileCap)}`, { body, size, upload: true, idempotent: true });
  }

  /**
   * POST /uri/$DIRCAP?t=set_children: links one child with the metadata we choose. Unlike `PUT ...?t=uri`, it lets
   * us set "mtime" (which Tahoe would otherwise keep from the previous link, see dirnode.update_metadata).
   */
  async setChild(dirCap: string, name: string, target: LinkTarget, replace: boolean): Promise<void> {
    await this.setChildren(dirCap, [[name, target]], replace);
  }

  /**
   * Links several children in one update of the directory: a directory is one mutable file, so one update for
   * many links is both faster and free of the conflicts that updates running side by side would cause.
   */
  async setChildren(dirCap: string, links: Array<[name: string, target: LinkTarget]>, replace: boolean): Promise<void> {
    await this.unmade.ready(dirCap, ...links.map(([, t]) => (t.type === 'dir' ? t.rwUri : undefined)));
    const children: Record<string, unknown> = {};
    for (const [name, target] of links) {
      const info: Record<string, unknown> = {};
      if (target.rwUri) info.rw_uri = target.rwUri;
      if (target.roUri) info.ro_uri = target.roUri;
      if (target.metadata) info.metadata = target.metadata;
      children[name] = [target.type === 'dir' ? 'dirnode' : 'filenode', info];
    }
    const body = Buffer.from(JSON.stringify(children));
    const q = `t=set_children&replace=${replace ? 'true' : 'false'}`;
    // Linking the same caps twice leaves the same result: safe to retry.
    await this.text('POST', `uri/${encodeURIComponent(dirCap)}?${q}`, `link in ${redact(dirCap)}`, { body, size: body.length, idempotent: true });
  }

  /** DELETE /uri/$DIRCAP/NAME: removes one link (the child itself stays on the grid). */
  async unlink(dirCap: string, name: string): Promise<void> {
    await this.unmade.ready(dirCap);
    await this.text('DELETE', `uri/${encodeURIComponent(dirCap)}/${encodeURIComponent(name)}`, `unlink in ${redact(dirCap)}`);
  }

  /** POST /uri/$DIRCAP?t=relink: moves a link to another directory or name, keeping its metadata (Tahoe >= 1.10). */
  async relink(fromDirCap: string, fromName: string, toDirCap: string, toName: string, replace: boolean): Promise<void> {
    await this.unmade.ready(fromDirCap, toDirCap);
    const q = new URLSearchParams({ t: 'relink', from_name: fromName, to_dir: toDirCap, to_name: toName, replace: String(replace) });
    await this.text('POST', `uri/${encodeURIComponent(fromDirCap)}?${q.toString().replace(/\+/g, '%20')}`, `rename in ${redact(fromDirCap)}`);
  }

  /**
   * GET /uri/$FILECAP, optionally one byte range. Resolves once headers arrive; the body streams with an idle bound.
   * A range starting at or past the end answers 416, which we turn into an empty body.
   */
  async download(fileCap: string, range?: { start: number; end: number }, signal?: AbortSignal): Promise<Readable> {
    const headers: Record<string, string> = {};
    if (range) headers.range = `bytes=${range.start}-${range.end - 1}`;
    const what = `read ${redact(fileCap)}`;
    return this.retrying(what, true, async () => {
      const res = await this.send('GET', `uri/${encodeURIComponent(fileCap)}`, what, { headers, transfer: true, signal });
      if (res.statusCode === 416) {
        res.body.resume();
        return Readable.from([]);
      }
      if (res.statusCode !== 200 && res.statusCode !== 206) throw await httpError(res, what);
      if (range && range.start > 0 && (res.statusCode !== 206 || !String(res.headers['content-range'] ?? '').startsWith(`bytes ${range.start}-`))) {
        // Bytes from anywhere else would be cached at the wrong offset.
        res.body.resume();
        throw new FsError('EIO', `${what}: the gateway ignored the requested range`);
      }
      return res.body;
    });
  }

  private async json(method: Dispatcher.HttpMethod, path: string, what: string, idempotent = false): Promise<unknown> {
    const text = await this.text(method, path, what, { idempotent });
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new FsError('EIO', `${what}: gateway sent malformed JSON`, { cause: e });
    }
  }

  private async text(
    method: Dispatcher.HttpMethod,
    path: string,
    what: string,
    opts: { body?: Body; size?: number; upload?: boolean; idempotent?: boolean } = {},
  ): Promise<string> {
    return this.retrying(what, opts.idempotent === true, async () => {
      const res = await this.send(method, path, what, { ...opts, body: typeof opts.body === 'function' ? opts.body() : opts.body });
      if (res.statusCode < 200 || res.statusCode >= 300) throw await httpError(res, what);
      try {
        return await res.body.text();
      } catch (e) {
        throw transportError(e, what, this.base);
      }
    });
  }

  /**
   * Runs one request, again after a pause if it failed transiently and may be repeated safely. Where the line
   * between retrying and failing fast is: while the gateway is marked unreachable, a request fails at once
   * (after a probe, if one is due: see gate()). It is marked unreachable only when an idempotent request got no
   * answer through all its tries (about 4 s with the default delays), so a gateway restarting briefly costs
   * the requests of that moment their retries, as before, and fails nothing that the retries would have saved;
   * a request that may not be repeated never marks it by itself (one refused connection proves little).
   */
  private async retrying<T>(what: string, idempotent: boolean, attempt: () => Promise<T>): Promise<T> {
    for (let i = 0; ; i++) {
      await this.gate(what);
      try {
        return await attempt();
      } catch (e) {
        const delays = this.timeouts.retryDelaysMs;
        const again = idempotent && i < delays.length && e instanceof FsError && transient.has(e) && !sharesHeldByAnotherUpload.has(e);
        if (!again) {
          if (idempotent && isUnreachable(e)) this.gateway.unreachable(e as FsError);
          throw e;
        }
        this.log?.warn({ what, attempt: i + 1, err: e.message }, 'transient gateway error: retrying');
        await new Promise((r) => setTimeout(r, delays[i]));
      }
    }
  }

  /** Lets a request go on unless the gateway is unreachable; then looks again first if a look is due. */
  private async gate(what: string): Promise<void> {
    const since = await this.gateway.gate();
    if (since === undefined) return;
    const err = new FsError('EIO', `${what}: gateway unreachable: not reachable at ${this.base} since ${new Date(since).toISOString()} (failing fast until it answers)`);
    noAnswer.add(err);
    throw err;
  }

  /** A probe: one small GET of the gateway's front page; any HTTP answer means it is back. */
  private async look(signal: AbortSignal): Promise<void> {
    const res = await request(this.base + '?t=json', { method: 'GET', dispatcher: this.agent, signal });
    res.body.resume();
  }

  private async send(
    method: Dispatcher.HttpMethod,
    path: string,
    what: string,
    opts: { body?: Readable | Buffer; size?: number; upload?: boolean; transfer?: boolean; headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<Dispatcher.ResponseData> {
    const t = this.timeouts;
    this.log?.debug({ http: method, what, range: opts.headers?.range }, 'request');
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.size !== undefined) headers['content-length'] = String(opts.size);
    const long = opts.upload || opts.transfer;
    let res: Dispatcher.ResponseData;
    try {
      res = await request(this.base + path, {
        method,
        headers,
        body: opts.body,
        dispatcher: this.agent,
        // Small requests get one overall deadline; transfers get an idle bound on the body instead.
        signal: long ? opts.signal : AbortSignal.timeout(t.requestMs),
        headersTimeout: opts.upload ? t.uploadAnswerMs : t.requestMs,
        bodyTimeout: long ? t.idleMs : t.requestMs,
      });
    } catch (e) {
      throw transportError(e, what, this.base);
    }
    this.gateway.answered(); // an answer, whatever its status: a request in flight from before an outage counts too
    return res;
  }
}

const CAP_IN_TEXT = /URI:[A-Za-z0-9-]+:[A-Za-z0-9:_-]+/g;

/** Tahoe error bodies can quote caps; keep only a fingerprint of each. */
export function scrubCaps(text: string): string {
  return text.replace(CAP_IN_TEXT, (cap) => redact(cap));
}

const HTML_ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', '#39': "'", '#x27': "'" };

async function httpError(res: Dispatcher.ResponseData, what: string): Promise<FsError> {
  let detail = '';
  try {
    detail = (await res.body.text()).slice(0, 64 * 1024);
  } catch {
    // the status alone is enough
  }
  // Tahoe answers errors as text, or as Twisted's HTML page of the exception (a style sheet, then
  // <div class="error">type: value</div>, then the traceback): keep the readable text, without markup or caps.
  const exception = /<div class="error">([\s\S]*?)<\/div>/.exec(detail)?.[1];
  const readable = (exception ?? detail.replace(/<style[\s\S]*?<\/style>/g, ' ')).replace(/<[^>]*>/g, ' ').replace(/&(lt|gt|amp|quot|#39|#x27);/g, (_, e: string) => HTML_ENTITIES[e] ?? ' ');
  const text = scrubCaps(readable.replace(/\s+/g, ' ')).trim().slice(0, 400);
  const err = new FsError(errnoForStatus(res.statusCode, detail), `${what}: HTTP ${res.statusCode} ${text}`.trim());
  if (res.statusCode >= 500 && err.code === 'EIO') transient.add(err);
  if (res.statusCode >= 500 || res.statusCode === 410) mayHaveApplied.add(err);
  // upload.py:774's summary: "N placed none due to the server being full" (allocate_buckets skips shares in incoming/).
  if (/UploadUnhappinessError/.test(detail) && /[1-9]\d* placed none due to the server being\s+full/.test(detail)) sharesHeldByAnotherUpload.add(err);
  return err;
}

/** Tahoe's status codes (web/common.py humanize_failure) mapped to what a program should see. */
export function errnoForStatus(status: number, body = ''): ErrnoName {
  switch (status) {
    case 404:
    case 410: // Gone: the file's shares cannot be found, not that the name is missing.
      return status === 404 ? 'ENOENT' : 'EIO';
    case 409:
      return 'EEXIST';
    case 400:
      if (/not a directory|is not a directory/i.test(body)) return 'ENOTDIR';
      if (/read-only cap/i.test(body)) return 'EROFS';
      return 'EINVAL';
    case 403:
      return /read-only|readonly/i.test(body) ? 'EROFS' : 'EACCES';
    case 500:
      // Tahoe 1.20 reports writes through read-only caps as 500 NotWriteableError.
      return /NotWriteableError/.test(body) ? 'EROFS' : 'EIO';
    case 413:
      return 'EFBIG';
    default:
      return 'EIO';
  }
}

/**
 * Transport failures that say the gateway could not be reached (see `noAnswer`): no connection (refused, host or
 * name unknown or unreachable, connect timed out) or one reset. A connection the gateway took and then closed
 * without an answer is not among them: something listens there (a broken gateway is not an absent one).
 */
const NO_ANSWER_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

function transportError(e: unknown, what: string, base: string): FsError {
  if (e instanceof FsError) return e;
  const code = (e as { code?: string }).code ?? '';
  const cause = (e as { cause?: { code?: string } }).cause?.code ?? '';
  let reason: string;
  let retry = false;
  if (code === 'ECONNREFUSED' || cause === 'ECONNREFUSED') {
    reason = `Tahoe gateway not reachable at ${base}`;
    retry = true;
  } else if (e instanceof undiciErrors.ConnectTimeoutError) reason = `Tahoe gateway not reachable at ${base}: connect timed out`;
  else if (e instanceof undiciErrors.HeadersTimeoutError || e instanceof undiciErrors.BodyTimeoutError) reason = 'timed out';
  else if ((e as Error).name === 'TimeoutError' || (e as Error).name === 'AbortError') reason = 'timed out';
  else {
    reason = (e as Error).message ?? String(e);
    // The connection broke under us (gateway restarted, keep-alive socket closed): worth another try.
    retry = e instanceof undiciErrors.SocketError || ['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET'].includes(code) || ['ECONNRESET', 'EPIPE'].includes(cause);
  }
  const err = new FsError('EIO', `${what}: ${reason}`, { cause: e });
  if (retry) transient.add(err);
  if (reason === 'timed out') mayHaveApplied.add(err);
  if (NO_ANSWER_CODES.has(code) || NO_ANSWER_CODES.has(cause)) noAnswer.add(err);
  return err;
}

/**
 * The bytes to send as one offset write of an MDMF file of `fileSize` bytes so that its bytes [offset, end) become
 * the new ones: [start, end), or undefined when no offset write can do it (then the whole file is sent). Tahoe
 * 1.20's updater refuses a write that starts past the end (mutable/filenode.py:1093, an assert: HTTP 500), so a
 * gap is sent as the zeros it reads as; and it fails a write that starts exactly at the end of a file whose size
 * is a multiple of its segment size (filenode.py:1098-1100: it looks for a segment past the last, IndexError,
 * HTTP 500). So a write that starts at or past the end starts one byte before it, with that byte again; an empty
 * file has no such byte.
 */
export function offsetWriteRange(fileSize: number, offset: number, end: number): { start: number; end: number } | undefined {
  // An empty write is refused too: the updater takes its last byte as offset - 1 (filenode.py:1104-1108).
  if (!(Number.isSafeInteger(fileSize) && Number.isSafeInteger(offset) && Number.isSafeInteger(end)) || fileSize < 0 || offset < 0 || end <= offset) {
    throw new RangeError(`bad offset write: [${offset}, ${end}) of ${fileSize} bytes`);
  }
  if (offset < fileSize) return { start: offset, end };
  if (fileSize === 0) return undefined;
  return { start: fileSize - 1, end };
}

