// The soak's load, run in a child process that the driver (soak.ts) forks: writers and readers working on
// files of their own and on shared files replaced by rename, every byte checked against the content model
// (content.ts). The parent starts it, waits for its warm-up, measures its baseline, then lets it go.
import { mkdir, open, readdir, rename, truncate, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { encodePath } from '../../grid/mount.js';
import { rng } from '../support/random.js';
import {
  between, changeAt, encodeHeader, expectedBytes, headerFor, HEADER_BYTES, MAX_CHUNK, MAX_POSSIBLE, MAX_VERSIONS, MiB, mismatch, mix32,
  parseHeader, shapeOf, sizeIn, type Header, type Suspect,
} from './content.js';

/** The argument the driver forks this file with. */
export const LOAD_CHILD_ARG = '--load-child';

export interface LoadCounts {
  filesCreated: number;
  overwrites: number;
  truncates: number;
  sharedReplaced: number;
  deletes: number;
  fsyncs: number;
  writerChecks: number;
  webChecks: number;
  wholeReads: number;
  rangeReads: number;
  sharedReads: number;
  enoent: number;
  /** ENOENT opening a shared name while a rename over it was in flight (see readShared). */
  enoentRenameRace: number;
  skippedBusy: number;
  bytesWritten: number;
  bytesVerified: number;
  webBytes: number;
}

export interface LoadConfig {
  mountpoint: string;
  gatewayUrl: string;
  rootCap: string;
  /** Directory of this soak, relative to the mounted root. */
  base: string;
  seconds: number;
  writers: number;
  readers: number;
  seed: number;
}

export interface LoadResult {
  elapsedMs: number;
  counts: LoadCounts;
  failures: string[];
}

export type ToChild = { type: 'start'; config: LoadConfig } | { type: 'go' };
export type FromChild = { type: 'warm' } | { type: 'log'; line: string } | { type: 'done'; result: LoadResult };

interface OwnFile {
  name: string;
  rel: string;
  abs: string;
  seed: number;
  version: number;
  /** Being created or changed: readers leave it alone. */
  busy: boolean;
  /** Readers reading it now: a writer waits for them before changing it in place. */
  leases: number;
  deleted: boolean;
}

interface SharedVersion {
  length: number;
  /** Event-clock values around the rename that installed it. */
  startedAt: number;
  doneAt?: number;
}

interface SharedFile {
  name: string;
  rel: string;
  abs: string;
  versions: Map<number, SharedVersion>;
}

const OWN_NAME = /^w\d+-\d+\.bin$/;
const SHARED_FILES = 3;
const OWN_FILES_PER_WRITER = 3;
/** Share of new files that are fsync'd before close (fsync uploads too; close then has nothing left to do). */
const FSYNC_SHARE = 0.1;

class Failure extends Error {}

function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Runs one filesystem step; an error names the step and the file. */
async function step<T>(what: string, rel: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof Failure) throw e;
    const code = errnoOf(e);
    const message = (e as Error).message;
    const err = new Failure(`${what} ${rel}: ${code && !message.startsWith(code) ? `${code}: ` : ''}${message}`);
    (err as NodeJS.ErrnoException).code = errnoOf(e);
    throw err;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function pick<T>(r: () => number, items: T[]): T {
  return items[Math.floor(r() * items.length)]!;
}

class Load {
  private readonly counts = emptyCounts();
  private readonly failures: string[] = [];
  private stopped = false;
  private deadline = 0;
  private clock = 0;
  private nextSeed: number;
  private readonly files = new Map<string, OwnFile>();
  private readonly shared: SharedFile[] = [];
  private readonly dataAbs: string;
  private readonly sharedAbs: string;

  constructor(
    private readonly cfg: LoadConfig,
    private readonly log: (line: string) => void,
  ) {
    this.nextSeed = mix32(cfg.seed);
    this.dataAbs = join(cfg.mountpoint, cfg.base, 'data');
    this.sharedAbs = join(cfg.mountpoint, cfg.base, 'shared');
  }

  private running(): boolean {
    return !this.stopped && Date.now() < this.deadline;
  }

  private fail(who: string, what: string): void {
    if (this.failures.length < 20) this.failures.push(`${who}: ${what}`);
    if (!this.stopped) this.log(`FAILURE ${who}: ${what}`);
    this.stopped = true;
  }

  /** Seeds are unique within a run, so a seed names one version of one file. */
  private newSeed(): number {
    this.nextSeed = (this.nextSeed + 0x9e3779b9) >>> 0;
    return mix32(this.nextSeed);
  }

  /** Directories, the shared files' first versions, and a little of every operation, so that pools exist. */
  async warmUp(): Promise<void> {
    const baseAbs = join(this.cfg.mountpoint, this.cfg.base);
    await step('mkdir', this.cfg.base, () => mkdir(baseAbs));
    await step('mkdir', 'data', () => mkdir(this.dataAbs));
    await step('mkdir', 'shared', () => mkdir(this.sharedAbs));
    const r = rng(this.cfg.seed ^ 0x77a4);
    for (let i = 0; i < SHARED_FILES; i++) {
      const name = `s${i}.bin`;
      const s: SharedFile = { name, rel: `${this.cfg.base}/shared/${name}`, abs: join(this.sharedAbs, name), versions: new Map() };
      const seed = this.newSeed();
      const h = headerFor(seed, 0);
      await this.writeNew(s.abs, s.rel, h, r);
      s.versions.set(seed, { length: h.length, startedAt: ++this.clock, doneAt: ++this.clock });
      this.shared.push(s);
    }
    const warm = join(baseAbs, 'warm.bin');
    const h = headerFor(this.newSeed(), 0);
    await this.writeNew(warm, 'warm.bin', h, r);
    await this.checkWhole('warm-up', warm, `${this.cfg.base}/warm.bin`, r, h);
    await this.checkWeb('warm-up', `${this.cfg.base}/warm.bin`, h);
    await step('rename', 'warm.bin', () => rename(warm, join(baseAbs, 'warm2.bin')));
    await step('readdir', this.cfg.base, () => readdir(baseAbs));
    await step('unlink', 'warm2.bin', () => unlink(join(baseAbs, 'warm2.bin')));
    Object.assign(this.counts, emptyCounts()); // the report counts the load only
  }

  async run(): Promise<LoadResult> {
    const started = Date.now();
    this.deadline = started + this.cfg.seconds * 1000;
    const ticker = setInterval(() => this.log(this.progress(started)), 5000);
    try {
      await Promise.all([
        ...Array.from({ length: this.cfg.writers }, (_, i) => this.writer(i)),
        ...Array.from({ length: this.cfg.readers }, (_, i) => this.reader(i)),
      ]);
    } finally {
      clearInterval(ticker);
    }
    return { elapsedMs: Date.now() - started, counts: { ...this.counts }, failures: [...this.failures] };
  }

  private progress(started: number): string {
    const c = this.counts;
    const s = (Date.now() - started) / 1000;
    return `${s.toFixed(0)} s: ${c.filesCreated} created, ${c.overwrites + c.truncates} changed, ${c.sharedReplaced} shared replaced, ` +
      `${c.wholeReads + c.rangeReads + c.writerChecks} reads checked, ${(c.bytesWritten / MiB).toFixed(1)} MiB written, ` +
      `${(c.bytesVerified / MiB).toFixed(1)} MiB verified`;
  }

  // ---- writers ----

  private async writer(w: number): Promise<void> {
    const r = rng(this.cfg.seed ^ mix32(w + 1));
    const mine: OwnFile[] = [];
    let serial = 0;
    while (this.running()) {
      try {
        const p = r();
        const changeable = mine.filter((f) => f.version < MAX_VERSIONS);
        if (changeable.length === 0 || p < 0.4) await this.createOwn(w, serial++, r, mine);
        else if (p < 0.7) await this.changeOwn(w, pick(r, changeable), r);
        else if (p < 0.93) await this.replaceShared(w, serial++, r);
        else await this.deleteOwn(mine.splice(Math.floor(r() * mine.length), 1)[0]!);
      } catch (e) {
        this.fail(`writer ${w}`, (e as Error).message);
      }
    }
  }

  /** Writes a new file in chunks of random sizes, sometimes out of order, sometimes with an fsync midway. */
  private async writeNew(abs: string, rel: string, h: Header, r: () => number): Promise<void> {
    const content = expectedBytes(h, 0, h.length);
    const fh = await step('create', rel, () => open(abs, 'wx'));
    try {
      await this.writeChunks(fh, rel, content, 0, r, r() < 0.2);
      if (r() < FSYNC_SHARE) {
        this.counts.fsyncs++;
        await step('fsync', rel, () => fh.sync());
      }
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
    // close() returns once the web API serves the new bytes: the moment the file counts as written.
    await step('close', rel, () => fh.close());
    this.counts.bytesWritten += content.length;
  }

  private async writeChunks(fh: FileHandle, rel: string, data: Buffer, at: number, r: () => number, shuffled: boolean): Promise<void> {
    const chunks: Array<[number, number]> = [];
    for (let off = 0; off < data.length; ) {
      const n = Math.min(data.length - off, sizeIn(r, 1, MAX_CHUNK));
      chunks.push([off, n]);
      off += n;
    }
    if (shuffled) {
      for (let i = chunks.length - 1; i > 0; i--) {
        const j = Math.floor(r() * (i + 1));
        [chunks[i], chunks[j]] = [chunks[j]!, chunks[i]!];
      }
    }
    for (const [off, n] of chunks) {
      let done = 0;
      while (done < n) {
        const { bytesWritten } = await step('write', rel, () => fh.write(data, off + done, n - done, at + off + done));
        if (bytesWritten <= 0) throw new Failure(`write ${rel}: wrote ${bytesWritten} bytes at ${at + off + done}`);
        done += bytesWritten;
      }
    }
  }

  private async createOwn(w: number, serial: number, r: () => number, mine: OwnFile[]): Promise<void> {
    // Bounded data: the oldest file goes first.
    while (mine.length >= OWN_FILES_PER_WRITER) await this.deleteOwn(mine.shift()!);
    const name = `w${w}-${serial}.bin`;
    const f: OwnFile = {
      name, rel: `${this.cfg.base}/data/${name}`, abs: join(this.dataAbs, name), seed: this.newSeed(), version: 0,
      busy: true, leases: 0, deleted: false,
    };
    this.files.set(name, f);
    mine.push(f);
    await this.writeNew(f.abs, f.rel, headerFor(f.seed, 0), r);
    this.counts.filesCreated++;
    f.busy = false;
    await this.checkOwn(`writer ${w}`, f, r);
  }

  /** The next change of the file's history, in place: an overwrite or a truncate, then the new header. */
  private async changeOwn(w: number, f: OwnFile, r: () => number): Promise<void> {
    f.busy = true;
    const waitUntil = Date.now() + 120_000;
    while (f.leases > 0) {
      if (Date.now() > waitUntil) throw new Failure(`readers of ${f.rel} did not finish within 120 s`);
      await sleep(5);
    }
    const before = headerFor(f.seed, f.version);
    const next = headerFor(f.seed, f.version + 1);
    const shape = shapeOf(f.seed, next.version);
    const change = changeAt(f.seed, next.version, before.length);
    if (change.kind === 'truncate' && r() < 0.5) {
      // truncate(2) by path stores the result itself; the header follows through a handle.
      await step('truncate', f.rel, () => truncate(f.abs, change.length));
      const fh = await step('open r+', f.rel, () => open(f.abs, 'r+'));
      try {
        await this.writeChunks(fh, f.rel, encodeHeader(next), 0, r, false);
      } catch (e) {
        await fh.close().catch(() => undefined);
        throw e;
      }
      await step('close', f.rel, () => fh.close());
    } else {
      const fh = await step('open r+', f.rel, () => open(f.abs, 'r+'));
      try {
        const headerFirst = r() < 0.3;
        if (headerFirst) await this.writeChunks(fh, f.rel, encodeHeader(next), 0, r, false);
        if (change.kind === 'truncate') await step('ftruncate', f.rel, () => fh.truncate(change.length));
        else {
          const data = expectedBytes(next, change.start, change.end, shape);
          await this.writeChunks(fh, f.rel, data, change.start, r, r() < 0.2);
          this.counts.bytesWritten += data.length;
        }
        if (!headerFirst) await this.writeChunks(fh, f.rel, encodeHeader(next), 0, r, false);
      } catch (e) {
        await fh.close().catch(() => undefined);
        throw e;
      }
      await step('close', f.rel, () => fh.close());
    }
    f.version = next.version;
    if (change.kind === 'truncate') this.counts.truncates++;
    else this.counts.overwrites++;
    f.busy = false;
    await this.checkOwn(`writer ${w} (after ${change.kind} to version ${next.version})`, f, r);
  }

  private async deleteOwn(f: OwnFile): Promise<void> {
    // Readers may hold it open: POSIX lets them read on; a reader that had not opened it yet sees ENOENT.
    f.deleted = true;
    await step('unlink', f.rel, () => unlink(f.abs));
    this.counts.deletes++;
  }

  /** A new version of a shared file: written under a temporary name in the same directory, renamed over it. */
  private async replaceShared(w: number, serial: number, r: () => number): Promise<void> {
    const s = pick(r, this.shared);
    const tmpName = `.tmp-w${w}-${serial}`;
    const tmpAbs = join(this.sharedAbs, tmpName);
    const h = headerFor(this.newSeed(), 0);
    await this.writeNew(tmpAbs, `${this.cfg.base}/shared/${tmpName}`, h, r);
    const v: SharedVersion = { length: h.length, startedAt: ++this.clock };
    s.versions.set(h.seed, v);
    await step('rename over', s.rel, () => rename(tmpAbs, s.abs));
    v.doneAt = ++this.clock;
    this.counts.sharedReplaced++;
  }

  /** The writer's own check after close: the whole file through the mount, and now and then the web API. */
  private async checkOwn(who: string, f: OwnFile, r: () => number): Promise<void> {
    const h = headerFor(f.seed, f.version);
    await this.checkWhole(who, f.abs, f.rel, r, h, this.previousOf(f));
    this.counts.writerChecks++;
    if (r() < 0.25) await this.checkWeb(who, f.rel, h, this.previousOf(f));
  }

  private previousOf(f: OwnFile): Suspect[] {
    if (f.version === 0) return [];
    const prev = headerFor(f.seed, f.version - 1);
    return [{ what: `the previous version (${f.version - 1})`, bytes: (a, b) => expectedBytes(prev, a, b) }];
  }

  private async checkWhole(who: string, abs: string, rel: string, r: () => number, want: Header, others: Suspect[] = []): Promise<void> {
    const fh = await step('open', rel, () => open(abs, 'r'));
    try {
      const got = await this.readWhole(fh, rel, r);
      const problem = mismatch(got, expectedBytes(want, 0, want.length), 0, others);
      if (problem) throw new Failure(`${who}: read back ${rel} (seed ${want.seed} version ${want.version}): ${problem}`);
      this.counts.bytesVerified += got.length;
    } finally {
      await step('close (read)', rel, () => fh.close());
    }
  }

  private async checkWeb(who: string, rel: string, want: Header, others: Suspect[] = []): Promise<void> {
    const url = `${this.cfg.gatewayUrl}uri/${encodeURIComponent(this.cfg.rootCap)}/${encodePath(rel)}`;
    const res = await step('web GET', rel, () => fetch(url, { signal: AbortSignal.timeout(120_000) }));
    if (!res.ok) throw new Failure(`${who}: web GET ${rel} after close: HTTP ${res.status}`);
    const got = Buffer.from(await step('web GET body', rel, () => res.arrayBuffer()));
    const problem = mismatch(got, expectedBytes(want, 0, want.length), 0, others);
    if (problem) throw new Failure(`${who}: web GET ${rel} (seed ${want.seed} version ${want.version}): ${problem}`);
    this.counts.webChecks++;
    this.counts.webBytes += got.length;
  }

  // ---- readers ----

  private async reader(i: number): Promise<void> {
    const r = rng(this.cfg.seed ^ mix32(1000 + i));
    while (this.running()) {
      try {
        if (r() < 0.4) await this.readShared(r);
        else await this.readOwn(r);
      } catch (e) {
        this.fail(`reader ${i}`, (e as Error).message);
      }
    }
  }

  /** Reads from pread calls of random sizes until EOF; never trusts a size from stat. */
  private async readWhole(fh: FileHandle, rel: string, r: () => number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let pos = 0;
    for (;;) {
      const buf = Buffer.alloc(sizeIn(r, 1, MAX_CHUNK));
      const { bytesRead } = await step('read', rel, () => fh.read(buf, 0, buf.length, pos));
      if (bytesRead === 0) break;
      parts.push(buf.subarray(0, bytesRead));
      pos += bytesRead;
      if (pos > MAX_POSSIBLE) throw new Failure(`read ${rel}: more than ${MAX_POSSIBLE} bytes, longer than any file written`);
    }
    return Buffer.concat(parts);
  }

  private async readAt(fh: FileHandle, rel: string, pos: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await step('read', rel, () => fh.read(buf, done, length - done, pos + done));
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buf.subarray(0, done);
  }

  /**
   * Reads an open file whole or in a random range and checks it against its own header; returns the header.
   * others: content the bytes might wrongly be (for the report).
   */
  private async readAndCheck(fh: FileHandle, rel: string, r: () => number, othersFor: () => Suspect[]): Promise<Header> {
    if (r() < 0.5) {
      const got = await this.readWhole(fh, rel, r);
      const h = parseHeader(got);
      if (typeof h === 'string') throw new Failure(`read ${rel}: ${h}`);
      const problem = mismatch(got, expectedBytes(h, 0, h.length), 0, othersFor());
      if (problem) throw new Failure(`read ${rel} whole (seed ${h.seed} version ${h.version}): ${problem}`);
      const size = (await step('fstat', rel, () => fh.stat())).size;
      if (size !== got.length) throw new Failure(`fstat ${rel}: size ${size}, but ${got.length} bytes were read`);
      this.counts.wholeReads++;
      this.counts.bytesVerified += got.length;
      return h;
    }
    const h = parseHeader(await this.readAt(fh, rel, 0, HEADER_BYTES));
    if (typeof h === 'string') throw new Failure(`read ${rel} header: ${h}`);
    const from = between(r, 0, h.length);
    const n = sizeIn(r, 1, MiB);
    const got = await this.readAt(fh, rel, from, n);
    const problem = mismatch(got, expectedBytes(h, from, from + n), from, othersFor());
    if (problem) throw new Failure(`read ${rel} range from ${from} (seed ${h.seed} version ${h.version}): ${problem}`);
    const beyond = await this.readAt(fh, rel, h.length, 1);
    if (beyond.length !== 0) throw new Failure(`read ${rel}: data at offset ${h.length}, past the end its header gives`);
    this.counts.rangeReads++;
    this.counts.bytesVerified += got.length;
    return h;
  }

  private async readOwn(r: () => number): Promise<void> {
    const names = await step('readdir', `${this.cfg.base}/data`, () => readdir(this.dataAbs));
    for (const n of names) {
      if (!OWN_NAME.test(n) && !n.startsWith('.fuse_hidden')) throw new Failure(`readdir ${this.cfg.base}/data: unexpected name ${JSON.stringify(n)}`);
      if (OWN_NAME.test(n) && !this.files.has(n)) throw new Failure(`readdir ${this.cfg.base}/data: lists ${n}, which was never created`);
    }
    const candidates = names.filter((n) => OWN_NAME.test(n));
    if (candidates.length === 0) return sleep(20);
    const f = this.files.get(pick(r, candidates))!;
    if (f.busy || f.deleted) {
      this.counts.skippedBusy++;
      return sleep(2);
    }
    f.leases++;
    try {
      let fh: FileHandle;
      try {
        fh = await step('open', f.rel, () => open(f.abs, 'r'));
      } catch (e) {
        // Deleted between listing and open: fine. Anything else, or ENOENT for a file that exists, is not.
        if (errnoOf(e) === 'ENOENT' && f.deleted) {
          this.counts.enoent++;
          return;
        }
        throw e;
      }
      try {
        const h = await this.readAndCheck(fh, f.rel, r, () => this.previousOf(f));
        // Nobody changed it while we held the lease: the content must be the last version closed.
        if (h.seed !== f.seed || h.version !== f.version) {
          throw new Failure(`read ${f.rel}: stale or foreign content: seed ${h.seed} version ${h.version}, but the last close wrote seed ${f.seed} version ${f.version}`);
        }
      } finally {
        await step('close (read)', f.rel, () => fh.close());
      }
    } finally {
      f.leases--;
    }
  }

  private async readShared(r: () => number): Promise<void> {
    const rel = `${this.cfg.base}/shared`;
    const names = await step('readdir', rel, () => readdir(this.sharedAbs));
    for (const s of this.shared) {
      if (!names.includes(s.name)) throw new Failure(`readdir ${rel}: ${s.name} is missing, though every replacement is a rename over it`);
    }
    for (const n of names) {
      if (!this.shared.some((s) => s.name === n) && !n.startsWith('.tmp-') && !n.startsWith('.fuse_hidden')) {
        throw new Failure(`readdir ${rel}: unexpected name ${JSON.stringify(n)}`);
      }
    }
    const s = pick(r, this.shared);
    const t0 = ++this.clock;
    let fh: FileHandle;
    try {
      fh = await step('open', s.rel, () => open(s.abs, 'r'));
    } catch (e) {
      // libfuse 2's high-level API fails an open that waited on a rename over the same name with ENOENT (the
      // replaced node is unhashed; fuse.c try_get_path): tolerated only while such a rename was in flight.
      const t1 = ++this.clock;
      const racing = [...s.versions.values()].some((v) => v.startedAt < t1 && (v.doneAt === undefined || v.doneAt > t0));
      if (errnoOf(e) === 'ENOENT' && racing) {
        this.counts.enoentRenameRace++;
        return;
      }
      throw new Failure(`${(e as Error).message}${errnoOf(e) === 'ENOENT' ? ' (no rename over it was in flight)' : ''}`);
    }
    try {
      const h = await this.readAndCheck(fh, s.rel, r, () => this.otherShared(s));
      if (h.version !== 0) throw new Failure(`read ${s.rel}: version ${h.version}, but shared files are only ever replaced whole`);
      const v = s.versions.get(h.seed);
      if (!v) throw new Failure(`read ${s.rel}: content of seed ${h.seed}, which was never renamed to ${s.name}`);
      // Stale: a later version's rename started after this one's finished and finished before our open began.
      for (const [seed, o] of s.versions) {
        if (v.doneAt !== undefined && o.doneAt !== undefined && o.startedAt > v.doneAt && o.doneAt < t0) {
          throw new Failure(`read ${s.rel}: stale version (seed ${h.seed}); seed ${seed} had replaced it before open`);
        }
      }
      this.counts.sharedReads++;
    } finally {
      await step('close (read)', s.rel, () => fh.close());
    }
  }

  /** Other recent versions of a shared file, to tell a mix of versions apart from other corruption. */
  private otherShared(s: SharedFile): Suspect[] {
    return [...s.versions].slice(-12).map(([seed, v]) => ({
      what: `version seed ${seed} of ${s.name}`,
      bytes: (a: number, b: number) => expectedBytes({ seed, version: 0, length: v.length }, a, b),
    }));
  }
}

/** The forked child: setup and warm-up, then the load when the parent has measured its baseline. */
function loadChild(): void {
  const send = (m: FromChild, then?: () => void) => process.send?.(m, undefined, {}, () => then?.());
  let load: Load | undefined;
  process.on('disconnect', () => process.exit(1));
  process.on('message', (m: ToChild) => {
    if (m.type === 'start') {
      load = new Load(m.config, (line) => send({ type: 'log', line }));
      load.warmUp().then(
        () => send({ type: 'warm' }),
        (e: unknown) =>
          send({ type: 'done', result: { elapsedMs: 0, counts: emptyCounts(), failures: [`warm-up: ${(e as Error).message}`] } }, () => process.disconnect()),
      );
    } else if (m.type === 'go' && load) {
      void load.run().then((result) => send({ type: 'done', result }, () => process.disconnect()));
    }
  });
}

export function emptyCounts(): LoadCounts {
  return {
    filesCreated: 0, overwrites: 0, truncates: 0, sharedReplaced: 0, deletes: 0, fsyncs: 0, writerChecks: 0,
    webChecks: 0, wholeReads: 0, rangeReads: 0, sharedReads: 0, enoent: 0, enoentRenameRace: 0, skippedBusy: 0, bytesWritten: 0,
    bytesVerified: 0, webBytes: 0,
  };
}

const invokedAs = process.argv[1];
if (invokedAs !== undefined && import.meta.url === pathToFileURL(invokedAs).href && process.argv.includes(LOAD_CHILD_ARG)) loadChild();
