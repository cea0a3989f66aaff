// An in-memory, stateful Tahoe web API for fast unit tests of src/fs: directories, immutable and mutable files kept
// by cap and answered with Tahoe 1.20's shapes and status codes (allmydata/web/*.py, dirnode.py), plus hooks that
// make races reproducible: hold a request in flight, change the grid as another client would, take the gateway down.
// System tests use the real grid; this fake leaves out what the client never sends (t=uri, t=info, ...).
import { createHash, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { mutableKeyOf, writeCapOf } from '../../src/tahoe/keys.js';
import type { ServerResponse } from 'node:http';
import { decodeBase32, encodeBase32 } from '../../src/tahoe/base32.js';
import { parseCap, type Cap } from '../../src/tahoe/caps.js';
import type { LinkMetadata } from '../../src/tahoe/client.js';
import {
  fileServer,
  randomChkCap,
  splitUrl,
  startFakeWebApi,
  type RecordedRequest,
  type ServeBehaviour,
  type ByteRange,
} from './fake-webapi.js';

/** One link as a directory holds it. */
export interface FakeEntry {
  type: 'file' | 'dir' | 'unknown';
  rwUri?: string;
  roUri: string;
  /** Bytes of a file whose contents the fake knows (or whose cap says it). */
  size?: number;
  metadata: LinkMetadata;
}

/** A directory's contents, recursively (subdirectories the fake does not hold have no children). */
export type FakeTree = Record<string, FakeEntry & { children?: FakeTree }>;

export interface HeldRequest {
  /** Resolves when a matching request came; rejects if none came within the hold's bound. */
  readonly arrived: Promise<RecordedRequest>;
  /** Lets the request proceed: it then sees the state of that moment. */
  release(): void;
  /** Answers the request with this status instead, changing nothing. */
  fail(status: number, body?: string): void;
}

export interface FakeTahoeOptions {
  /** Files of at most this many bytes get a LIT cap (Tahoe: 55); -1 for CHK caps only. */
  literalUpTo?: number;
}

export interface FakeTahoe {
  /** Base URL with trailing slash, like node.url. */
  readonly url: string;
  /** A fresh, empty, writable directory. */
  readonly rootCap: string;
  /** Every request received, in order (held ones included). */
  readonly requests: RecordedRequest[];
  /**
   * Holds the first request after this call that `match` accepts (one request per hold), until release() or fail().
   * Bounded: `arrived` rejects after `timeoutMs` without a match, and a request held that long after arriving is
   * answered 503, so a forgotten hold fails the test instead of hanging it.
   */
  hold(match: (req: RecordedRequest) => boolean, timeoutMs?: number): HeldRequest;
  /** Paces or breaks file downloads (GET /uri/$FILECAP), chosen per request; see fake-webapi's ServeBehaviour. */
  serveWith(behave: (req: RecordedRequest, range: ByteRange | undefined) => ServeBehaviour): void;
  // ---- The grid as another client sees and changes it: immediate, no request made ----
  tree(dirCap: string): FakeTree;
  entry(dirCap: string, name: string): FakeEntry | undefined;
  /** Links `cap` at `name` (replacing), with metadata as Tahoe's set_children sets it. */
  link(dirCap: string, name: string, cap: string, metadata?: LinkMetadata): void;
  /** Removes a link; false when there was none. */
  unlinkDirect(dirCap: string, name: string): boolean;
  /** Contents of a file (immutable, mutable by either cap, or literal); undefined when the fake has none. */
  bytes(cap: string): Buffer | undefined;
  addFile(bytes: Buffer): string;
  createDirectory(): string;
  /** A mutable file's writecap (URI:MDMF: or URI:SSK:). */
  createMutableFile(bytes: Buffer, format?: 'MDMF' | 'SDMF'): string;
  /** The read-only cap of a writable mutable cap (the same cap for one that is read-only already). */
  readOnly(cap: string): string;
  /** The gateway refuses every request: drops the connection, or answers `status` when given. */
  down(status?: number): void;
  up(): void;
  /** The gateway is gone: nothing listens on its port (connections are refused) until reachable(). */
  unreachable(): Promise<void>;
  reachable(): Promise<void>;
  close(): Promise<void>;
}

/** The parts of a recorded request a hold predicate usually needs. */
export function target(req: RecordedRequest): { method: string; cap?: string; names: string[]; query: URLSearchParams } {
  const { segments, query } = splitUrl(req.rawUrl);
  return { method: req.method, cap: segments[0] === 'uri' ? segments[1] : undefined, names: segments.slice(2), query };
}

/** A failure answered with Tahoe's status and wording (web/common.py humanize_exception). */
class WebError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const noSuchChild = (name: string) => new WebError(404, `No such child: ${name}`);
const exists = () => new WebError(409, 'There was already a child by that name, and you asked me to not replace it.');
// Not humanized by Tahoe: a 500 with the traceback, which is what the client recognises.
const notWriteable = () => new WebError(500, 'Traceback (most recent call last):\nallmydata.interfaces.NotWriteableError:');
// A cap naming nothing on the grid: Tahoe cannot find shares (410), it does not say the name is missing.
const gone = () => new WebError(410, 'NoSharesError: no shares could be found.');

type Respond = (req: RecordedRequest, res: ServerResponse) => void;

function plain(status: number, body: string): Respond {
  return (_req, res) => {
    res.statusCode = status;
    res.setHeader('content-type', 'text/plain; charset=utf-8');
    res.end(body);
  };
}

interface Link {
  rwUri?: string;
  roUri: string;
  metadata: LinkMetadata;
}

interface DirNode {
  rw: string;
  ro: string;
  /** Names NFC-normalised, as Tahoe stores them. */
  children: Map<string, Link>;
}

interface MutableFile {
  bytes: Buffer;
}

const MUTABLE_READKEY_TAG = 'allmydata_mutable_writekey_to_readkey_v1';

/** Tahoe derives a mutable readkey from the writekey (uri.py, hashutil.py tagged hash); the fingerprint stays. */
function readOnlyOf(cap: string): string {
  const m = /^URI:(DIR2|DIR2-MDMF|MDMF|SSK):([a-z2-7]+):(.*)$/.exec(cap);
  const writeKey = m && decodeBase32(m[2]!);
  if (!writeKey) return cap;
  const once = createHash('sha256').update(`${MUTABLE_READKEY_TAG.length}:${MUTABLE_READKEY_TAG},`).update(writeKey).digest();
  const readKey = createHash('sha256').update(once).digest().subarray(0, 16);
  return `URI:${m[1]}-RO:${encodeBase32(readKey)}:${m[3]}`;
}

/** Tahoe's dirnode.update_metadata: user keys as given (or kept when none are), linkcrtime kept, linkmotime now. */
function updateMetadata(old: LinkMetadata | undefined, given: LinkMetadata | undefined, now: number): LinkMetadata {
  let md: LinkMetadata = structuredClone(old ?? {});
  if (given) {
    const { tahoe: _ignored, ...user } = structuredClone(given);
    md = { ...user, ...(md.tahoe ? { tahoe: md.tahoe } : {}) };
  }
  md.tahoe = { ...md.tahoe, linkcrtime: md.tahoe?.linkcrtime ?? now, linkmotime: now };
  return md;
}

/** The directory cap a private-key= names (web/common.py get_keypair: URL-safe base64 of a PKCS#8 DER key). */
function capOfKey(param: string): string {
  try {
    const privateKey = createPrivateKey({ key: Buffer.from(param.replace(/-/g, '+').replace(/_/g, '/'), 'base64'), format: 'der', type: 'pkcs8' });
    return writeCapOf(mutableKeyOf(privateKey, createPublicKey(privateKey)), 'DIR2');
  } catch {
    throw new WebError(400, 'bad private-key');
  }
}

function mutableCap(kind: 'DIR2' | 'MDMF' | 'SSK'): string {
  return `URI:${kind}:${encodeBase32(randomBytes(16))}:${encodeBase32(randomBytes(32))}`;
}

/** The "format" Tahoe lists for a child. */
function formatOf(cap: Cap): string {
  if (cap.kind.startsWith('MDMF') || cap.kind.startsWith('DIR2-MDMF')) return 'MDMF';
  return cap.kind.startsWith('SSK') || cap.kind === 'DIR2' || cap.kind === 'DIR2-RO' ? 'SDMF' : cap.kind;
}

function tryParse(cap: string): Cap | undefined {
  try {
    return parseCap(cap);
  } catch {
    return undefined;
  }
}

export async function startFakeTahoe(options: FakeTahoeOptions = {}): Promise<FakeTahoe> {
  const literalUpTo = options.literalUpTo ?? 55;
  // All state below changes only synchronously, inside one request's handling or one hook call: each request
  // applies atomically at the moment it is answered (after its hold, if any), as one directory update would.
  const dirs = new Map<string, DirNode>(); // by writecap and by readcap
  const immutables = new Map<string, Buffer>();
  const mutables = new Map<string, MutableFile>(); // by writecap and by readcap
  // Holds not yet matched; a request takes the first that matches. Changed by hold() and by arriving requests.
  const waiting: Array<{ match: (req: RecordedRequest) => boolean; take: Respond }> = [];
  const timers = new Set<NodeJS.Timeout>();
  let downStatus: number | 'drop' | undefined;
  let behave: (req: RecordedRequest, range: ByteRange | undefined) => ServeBehaviour = () => ({});

  const now = () => Date.now() / 1000;

  /** A new directory; with `privateKey` (the request's private-key=), the cap that key names, refused twice as Tahoe does. */
  function newDir(privateKey?: string | null): string {
    const rw = privateKey ? capOfKey(privateKey) : mutableCap('DIR2');
    if (dirs.has(rw)) throw new WebError(500, 'UncoordinatedWriteError');
    const node: DirNode = { rw, ro: readOnlyOf(rw), children: new Map() };
    dirs.set(rw, node).set(node.ro, node);
    return rw;
  }

  function newMutable(bytes: Buffer, format: 'MDMF' | 'SDMF'): string {
    const rw = mutableCap(format === 'MDMF' ? 'MDMF' : 'SSK');
    const file: MutableFile = { bytes: Buffer.from(bytes) };
    mutables.set(rw, file).set(readOnlyOf(rw), file);
    return rw;
  }

  function newImmutable(bytes: Buffer): string {
    if (bytes.length <= literalUpTo) return `URI:LIT:${encodeBase32(bytes)}`;
    const cap = randomChkCap(bytes.length);
    immutables.set(cap, Buffer.from(bytes));
    return cap;
  }

  function contents(cap: string): Buffer | undefined {
    return tryParse(cap)?.literalData ?? immutables.get(cap) ?? mutables.get(cap)?.bytes;
  }

  /** A directory by cap, for reading or (writable) for changing it. */
  function dir(cap: string, write: boolean): DirNode {
    const parsed = tryParse(cap);
    if (!parsed) throw new WebError(400, 'Unknown or malformed cap');
    if (!parsed.isDirectory) throw new WebError(400, 'not a directory');
    const node = dirs.get(parsed.text);
    if (!node) throw gone();
    if (write && !parsed.writable) throw notWriteable();
    return node;
  }

  /** Follows child names from a directory cap, as the web API's path traversal does; returns the cap reached. */
  function walk(cap: string, names: string[]): string {
    let at = cap;
    for (const name of names) {
      const link = dir(at, false).children.get(name.normalize('NFC'));
      if (!link) throw noSuchChild(name);
      // Through a read-only directory, only read-only caps of children are reachable.
      at = tryParse(at)?.writable ? (link.rwUri ?? link.roUri) : link.roUri;
    }
    return at;
  }

  /** Splits a child's caps: a writable cap goes in rwUri, anything else in roUri. */
  function linkOf(cap: string, given: { rwUri?: string; roUri?: string } = {}): Omit<Link, 'metadata'> {
    const rw = given.rwUri ?? cap;
    if (tryParse(rw)?.writable) return { rwUri: rw, roUri: given.roUri ?? readOnlyOf(rw) };
    return { roUri: given.roUri ?? rw };
  }

  function setLink(node: DirNode, name: string, caps: Omit<Link, 'metadata'>, metadata: LinkMetadata | undefined, replace: boolean): void {
    const key = name.normalize('NFC');
    const old = node.children.get(key);
    if (old && !replace) throw exists();
    node.children.set(key, { ...caps, metadata: updateMetadata(old?.metadata, metadata, now()) });
  }

  function describe(link: Link, viaWriteCap: boolean): FakeEntry {
    const cap = tryParse(link.roUri);
    const type = !cap ? 'unknown' : cap.isDirectory ? 'dir' : 'file';
    const entry: FakeEntry = { type, roUri: link.roUri, metadata: structuredClone(link.metadata) };
    if (viaWriteCap && link.rwUri) entry.rwUri = link.rwUri;
    if (type === 'file') entry.size = cap?.size ?? contents(link.roUri)?.length;
    return entry;
  }

  function listing(cap: string): unknown {
    const node = dir(cap, false);
    const viaWriteCap = tryParse(cap)!.writable;
    const children: Record<string, unknown> = {};
    for (const [name, link] of node.children) {
      const e = describe(link, viaWriteCap);
      const parsed = tryParse(link.roUri);
      const info: Record<string, unknown> = { ro_uri: e.roUri, mutable: parsed ? !parsed.immutable : false, metadata: e.metadata };
      if (parsed) info.format = formatOf(parsed);
      if (e.rwUri) info.rw_uri = e.rwUri;
      if (e.size !== undefined) info.size = e.size;
      children[name] = [e.type === 'dir' ? 'dirnode' : e.type === 'file' ? 'filenode' : 'unknown', info];
    }
    return ['dirnode', { ...(viaWriteCap ? { rw_uri: node.rw } : {}), ro_uri: node.ro, mutable: true, children }];
  }

  function overwrite(cap: string, body: Buffer): void {
    const parsed = tryParse(cap);
    const file = mutables.get(cap);
    if (!parsed || parsed.immutable || parsed.isDirectory) throw new WebError(400, 'PUT to a file: replace requested on an immutable cap');
    if (!file) throw gone();
    if (!parsed.writable) throw new WebError(400, 'PUT to a mutable file: replace or update requested with read-only cap');
    file.bytes = Buffer.from(body);
  }

  /**
   * PUT /uri/$FILECAP?offset=N into an MDMF file, failing as Tahoe 1.20's updater does (mutable/filenode.py
   * 1093-1108): past the end, into an empty file, and an append at exactly a segment boundary answer 500.
   */
  function writeAt(cap: string, offset: number, body: Buffer): void {
    const file = mutables.get(cap);
    if (!file) throw gone();
    if (!cap.startsWith('URI:MDMF:')) throw new WebError(400, 'offset writes need an MDMF write cap');
    const size = file.bytes.length;
    if (!(offset <= size) || size === 0 || (offset === size && size % (128 * 1024) === 0) || body.length === 0) {
      throw new WebError(500, 'IndexError: list index out of range');
    }
    const next = Buffer.alloc(Math.max(size, offset + body.length));
    file.bytes.copy(next);
    body.copy(next, offset);
    file.bytes = next;
  }

  /** PUT /uri/$DIRCAP/.../NAME: a mutable file there is overwritten in place; otherwise a new immutable is linked. */
  function putChild(parentCap: string, name: string, body: Buffer, replace: boolean): { status: number; cap: string } {
    const node = dir(parentCap, false);
    const old = node.children.get(name.normalize('NFC'));
    if (old) {
      if (!replace) throw exists(); // Tahoe's early trap, before the upload
      const cap = tryParse(parentCap)!.writable ? (old.rwUri ?? old.roUri) : old.roUri;
      const parsed = tryParse(cap);
      if (parsed?.isDirectory) throw new WebError(400, 'PUT to a directory');
      if (parsed && !parsed.immutable) {
        overwrite(cap, body);
        return { status: 200, cap };
      }
    }
    const cap = newImmutable(body);
    if (!tryParse(parentCap)!.writable) throw notWriteable(); // after the upload, as Tahoe's add_file
    // No metadata given: Tahoe keeps the old link's user metadata (update_metadata with None).
    setLink(node, name, linkOf(cap), undefined, replace);
    return { status: old ? 200 : 201, cap };
  }

  function relink(fromCap: string, query: URLSearchParams): void {
    const fromName = query.get('from_name');
    if (fromName === null) throw new WebError(400, 'from_name= is required');
    const toName = query.get('to_name') ?? fromName;
    if (fromName.includes('/') || toName.includes('/')) throw new WebError(400, 'from_name= and to_name= may not contain a slash');
    const toCap = query.get('to_dir') ?? fromCap;
    const from = dir(fromCap, false);
    const to = dir(toCap, false);
    if (!tryParse(fromCap)!.writable || !tryParse(toCap)!.writable) throw notWriteable();
    const [f, t] = [fromName.normalize('NFC'), toName.normalize('NFC')];
    if (from === to && f === t) return; // Tahoe: "redundant rename/relink"
    const link = from.children.get(f);
    if (!link) throw noSuchChild(fromName);
    // Tahoe's set_node with the old metadata: user keys move along, link times follow update_metadata.
    setLink(to, toName, { rwUri: link.rwUri, roUri: link.roUri }, link.metadata, query.get('replace') !== 'false');
    from.children.delete(f);
  }

  function setChildren(cap: string, body: Buffer, replace: boolean): void {
    const node = dir(cap, false);
    type Given = { rw_uri?: string; ro_uri?: string; metadata?: LinkMetadata };
    const entries = JSON.parse(body.toString('utf8')) as Record<string, [string, Given]>;
    if (!tryParse(cap)!.writable) throw notWriteable();
    // One directory update: all or nothing.
    if (!replace && Object.keys(entries).some((n) => node.children.has(n.normalize('NFC')))) throw exists();
    for (const [name, [, info]] of Object.entries(entries)) {
      const given = info.rw_uri ?? info.ro_uri;
      if (!given) throw new WebError(400, `no cap given for child ${name}`);
      setLink(node, name, linkOf(given, { rwUri: info.rw_uri, roUri: info.ro_uri }), info.metadata, replace);
    }
  }

  type Reply = { status: number; body: string };

  /** Applies one request to the state; downloads are answered directly and return undefined. */
  function dispatch(req: RecordedRequest, res: ServerResponse): Reply | undefined {
    const { segments, query } = splitUrl(req.rawUrl);
    const t = query.get('t') ?? '';
    const replace = query.get('replace') !== 'false';
    if (segments[0] !== 'uri') return { status: 404, body: 'fake-tahoe: only /uri is served' };
    if (segments.length === 1) {
      if (req.method === 'POST' && t === 'mkdir') return { status: 200, body: newDir(query.get('private-key')) };
      if (req.method === 'PUT' && !t) {
        const format = query.get('format')?.toUpperCase();
        const cap = format === 'MDMF' || format === 'SDMF' ? newMutable(req.body, format) : newImmutable(req.body);
        return { status: 200, body: cap };
      }
    } else {
      const names = segments.slice(2);
      const last = names.at(-1);
      const parentCap = () => walk(segments[1]!, names.slice(0, -1));
      switch (`${req.method} ${t}`) {
        case 'GET json':
          return { status: 200, body: JSON.stringify(listing(walk(segments[1]!, names))) };
        case 'GET ':
          if (names.length === 0 && !tryParse(segments[1]!)?.isDirectory) {
            const content = contents(segments[1]!);
            if (!content) throw gone();
            fileServer(new Map([[segments[1]!, content]]), behave)(req, res);
            return undefined;
          }
          break;
        case 'PUT ': {
          if (last === undefined && query.has('offset')) {
            writeAt(segments[1]!, Number(query.get('offset')), req.body);
            return { status: 200, body: segments[1]! };
          }
          if (last === undefined) {
            overwrite(segments[1]!, req.body);
            return { status: 200, body: segments[1]! };
          }
          const put = putChild(parentCap(), last, req.body, replace);
          return { status: put.status, body: put.cap };
        }
        case 'DELETE ': {
          if (last === undefined) break;
          const cap = parentCap();
          const node = dir(cap, false);
          const link = node.children.get(last.normalize('NFC'));
          if (!link) throw noSuchChild(last);
          if (!tryParse(cap)!.writable) throw notWriteable();
          node.children.delete(last.normalize('NFC'));
          return { status: 200, body: link.rwUri ?? link.roUri };
        }
        case 'POST mkdir': {
          const at = walk(segments[1]!, names);
          const name = query.get('name');
          if (!name) return { status: 200, body: at };
          const node = dir(at, false);
          if (!tryParse(at)!.writable) throw notWriteable();
          if (!replace && node.children.has(name.normalize('NFC'))) throw exists();
          const cap = newDir();
          setLink(node, name, linkOf(cap), undefined, true);
          return { status: 200, body: cap };
        }
        case 'POST set_children':
          setChildren(walk(segments[1]!, names), req.body, replace);
          return { status: 200, body: 'Okay so I did it.' };
        case 'POST relink':
          relink(walk(segments[1]!, names), query);
          return { status: 200, body: 'thing moved' };
      }
    }
    return { status: 501, body: `fake-tahoe: unsupported ${req.method} t=${t}` };
  }

  function answer(req: RecordedRequest, res: ServerResponse): void {
    let reply: Reply | undefined;
    try {
      reply = dispatch(req, res);
    } catch (e) {
      reply = e instanceof WebError ? { status: e.status, body: e.message } : { status: 400, body: `fake-tahoe: ${String(e)}` };
    }
    if (reply) plain(reply.status, reply.body)(req, res);
  }

  function cancel(t: NodeJS.Timeout): void {
    clearTimeout(t);
    timers.delete(t);
  }

  function timer(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    t.unref();
    timers.add(t);
    return t;
  }

  /** See FakeTahoe.hold. */
  function hold(match: (req: RecordedRequest) => boolean, timeoutMs = 10_000): HeldRequest {
    let arrived!: (req: RecordedRequest) => void;
    let missed!: (e: Error) => void;
    const promise = new Promise<RecordedRequest>((resolve, reject) => ([arrived, missed] = [resolve, reject]));
    promise.catch(() => {}); // a test that never awaits it must not crash on the rejection
    // Changed only by take() (on arrival) and settle() (the test's choice, or the bound): whichever comes second runs.
    let held: { req: RecordedRequest; res: ServerResponse; bound: NodeJS.Timeout } | undefined;
    let decided: Respond | undefined;
    const settle = (how: Respond) => {
      if (decided) return;
      decided = how;
      if (!held) return;
      cancel(held.bound);
      how(held.req, held.res);
    };
    const take = (req: RecordedRequest, res: ServerResponse) => {
      cancel(arrivalBound);
      arrived(req);
      if (decided) return decided(req, res);
      held = { req, res, bound: timer(timeoutMs, () => settle(plain(503, 'fake-tahoe: held request never released'))) };
    };
    const w = { match, take };
    const arrivalBound = timer(timeoutMs, () => {
      waiting.splice(waiting.indexOf(w), 1);
      missed(new Error(`fake-tahoe: no matching request within ${timeoutMs} ms`));
    });
    waiting.push(w);
    return {
      arrived: promise,
      release: () => settle(answer),
      fail: (status, body = 'fake-tahoe: failed by the test') => settle(plain(status, body)),
    };
  }

  const api = await startFakeWebApi((req, res) => {
    if (downStatus === 'drop') {
      res.socket?.destroy();
      return;
    }
    if (downStatus !== undefined) return plain(downStatus, 'fake-tahoe: gateway down')(req, res);
    const i = waiting.findIndex((w) => w.match(req));
    if (i < 0) return answer(req, res);
    const [hold] = waiting.splice(i, 1);
    hold!.take(req, res);
  });

  const rootCap = newDir();

  return {
    url: api.url,
    rootCap,
    requests: api.requests,
    hold,
    serveWith(fn) {
      behave = fn;
    },
    tree(dirCap) {
      const seen = new Set<DirNode>();
      const walkTree = (cap: string): FakeTree => {
        const node = dirs.get(cap);
        const out: FakeTree = {};
        if (!node || seen.has(node)) return out;
        seen.add(node);
        const writable = tryParse(cap)?.writable === true;
        for (const [name, link] of node.children) {
          const e = describe(link, writable);
          out[name] = e.type === 'dir' ? { ...e, children: walkTree(e.rwUri ?? e.roUri) } : e;
        }
        return out;
      };
      dir(dirCap, false); // a cap the fake does not hold is a mistake in the test
      return walkTree(dirCap);
    },
    entry(dirCap, name) {
      const link = dirs.get(dirCap)?.children.get(name.normalize('NFC'));
      return link && describe(link, tryParse(dirCap)?.writable === true);
    },
    link(dirCap, name, cap, metadata) {
      setLink(dir(dirCap, true), name, linkOf(cap), metadata, true);
    },
    unlinkDirect(dirCap, name) {
      return dir(dirCap, true).children.delete(name.normalize('NFC'));
    },
    bytes(cap) {
      const b = contents(cap);
      return b && Buffer.from(b);
    },
    addFile: newImmutable,
    createDirectory: newDir,
    createMutableFile: (bytes, format = 'MDMF') => newMutable(bytes, format),
    readOnly: readOnlyOf,
    down(status) {
      downStatus = status ?? 'drop';
    },
    up() {
      downStatus = undefined;
    },
    unreachable: () => api.refuse(),
    reachable: () => api.accept(),
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await api.close();
    },
  };
}
