// POSIX metadata on a real mount of a real grid, in both modes: caps as read-only extended attributes, user.*
// extended attributes, symbolic links, permission bits, owners (with -o allow_other), fifos, sockets and device
// nodes, all kept in the Tahoe link metadata where other clients see them, and kept across an unmount and
// remount and in a second mount of the same root. Programs that care (getfattr, cp, rsync -X, tar --xattrs)
// see a filesystem like a local one.
//
// Mounts, per mode: one main mount (remounted once, for what must last), a second mount of the same root cap
// with its own node directory and --list-cap-xattrs, and one mount with -o allow_other (remounted once).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, chown, lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tahoeCli } from '../../grid/local-grid.js';
import { encodePath, eventually, MODES, TestMount } from '../../grid/mount.js';
import { exists, expectErrno } from '../support/assert-fs.js';
import { describeWithGrid } from '../support/test-grid.js';
import {
  getfattrDump, getxattr, getxattrText, listxattr, mustRun, openPathToOthers, py, py1, removexattr, runChild, setxattr, snapshots,
  type NodeSnapshot,
} from '../support/posix.js';

const T = { timeout: 180_000 };
/** A second local user, with no passwd entry. */
const USER = { uid: 4242, gid: 4242 };

type Meta = Record<string, unknown> & { posix?: Record<string, unknown>; xattrs?: Record<string, string> };
type Entry = [string, { size?: number; metadata?: Record<string, unknown>; ro_uri?: string; rw_uri?: string }];

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/**
 * The mode a link's metadata gives: posix.mode, or the default when it is left out (a link without it is a
 * plain 0644 file or 0755 directory: the spec does not say a default mode must be written).
 */
const storedMode = (meta: Meta, isDir = false) => (meta.posix?.mode as string | undefined) ?? (isDir ? '0755' : '0644');
const perm = async (p: string) => (await lstat(p)).mode & 0o7777;
const octal = (n: number) => n.toString(8).padStart(4, '0');

/** The entry of relPath in its parent's ?t=json listing, as other Tahoe clients see it. */
async function entryOf(m: TestMount, relPath: string): Promise<Entry> {
  const parent = dirname(relPath) === '.' ? '' : dirname(relPath);
  const listing = await m.webList(parent);
  const entry = listing[basename(relPath)];
  if (!entry) throw new Error(`${relPath}: not in its directory's listing (${Object.keys(listing).join(', ')})`);
  return entry as Entry;
}

/**
 * Polls the link metadata of relPath until `check` (assertions) passes: the web API is another client, and the
 * link may be updated a moment after the call that changed it returned. Bounded; the last failure is thrown.
 */
async function untilStored(m: TestMount, relPath: string, check: (meta: Meta) => void, boundMs = 30_000): Promise<void> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    let meta: Meta | undefined;
    try {
      meta = ((await entryOf(m, relPath))[1].metadata ?? {}) as Meta;
      check(meta);
      return;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${relPath}: link metadata ${JSON.stringify(meta)}: ${(e as Error).message}`);
    }
    await sleep(250);
  }
}

/** The storage index the gateway gives for a cap ("" for a literal cap). */
async function storageIndexOf(gatewayUrl: string, cap: string): Promise<string> {
  const res = await fetch(`${gatewayUrl}uri/${encodeURIComponent(cap)}?t=check&output=JSON`, { method: 'POST', signal: AbortSignal.timeout(60_000) });
  if (!res.ok) throw new Error(`check ${cap.slice(0, 12)}…: HTTP ${res.status}`);
  return ((await res.json()) as { 'storage-index': string })['storage-index'];
}

/** GET uri/CAP: a file's bytes, or (?t=json) a node's description. */
async function getCap(gatewayUrl: string, cap: string, query = ''): Promise<Buffer> {
  const res = await fetch(`${gatewayUrl}uri/${encodeURIComponent(cap)}${query}`, { signal: AbortSignal.timeout(60_000) });
  if (!res.ok) throw new Error(`GET ${cap.slice(0, 12)}…${query}: HTTP ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

/** No log of the mount holds any of these caps, nor the key part of one. */
async function assertNoCapsInLogs(m: TestMount, caps: Iterable<string>): Promise<void> {
  const names = (await readdir(m.nodeDir)).filter((n) => n.endsWith('.log'));
  assert.ok(names.length > 0, 'the mount wrote no logs');
  for (const name of names) {
    const text = await readFile(join(m.nodeDir, name), 'utf8');
    for (const cap of caps) {
      assert.ok(!text.includes(cap), `${name} contains a cap read as an extended attribute (${cap.slice(0, 12)}…)`);
      const key = cap.split(':')[2];
      if (key && key.length >= 16) assert.ok(!text.includes(key), `${name} contains the key of ${cap.slice(0, 12)}…`);
    }
  }
}

/** Snapshots keyed by path relative to the mount, for comparing mounts. */
async function snapshotsOf(m: TestMount, rels: string[]): Promise<Record<string, NodeSnapshot | string>> {
  const byAbs = await snapshots(rels.map((r) => m.path(r)));
  return Object.fromEntries(rels.map((r) => [r, byAbs[m.path(r)]!]));
}

// The archive flags of the round trip, the same for both archives:
//  --sort=name: the order of readdir differs between the local filesystem and the mount;
//  --format=posix: --xattrs needs pax headers (GNU tar would switch to them anyway); explicit, so both are alike;
//  --xattrs-include=user.*: only user.* (the local filesystem may carry e.g. security.* that the mount refuses);
//  --numeric-owner: no user or group names, which come from the local passwd;
//  --pax-option=delete=atime,delete=ctime: only what was restored counts, not when it was last read or changed.
const TAR_C = ['--sort=name', '--format=posix', '--xattrs', '--xattrs-include=user.*', '--numeric-owner', '--pax-option=delete=atime,delete=ctime'];
const TAR_X = ['--xattrs', '--xattrs-include=user.*'];

/** Why two archives differ, member by member: python's view (pax headers included) and tar's. */
async function tarDifference(a: string, b: string): Promise<string> {
  const [ra, rb] = await py([['tarlist', a], ['tarlist', b]]);
  const la = (ra!.ok as string[] | undefined) ?? [`error ${ra!.err}`];
  const lb = (rb!.ok as string[] | undefined) ?? [`error ${rb!.err}`];
  const tv = async (f: string) => (await runChild('tar', ['--xattrs', '--full-time', '-tvvf', f])).stdout.toString().split('\n');
  const [ta, tb] = [await tv(a), await tv(b)];
  const diff = (x: string[], y: string[]) => [...x.filter((l) => !y.includes(l)).map((l) => `- ${l}`), ...y.filter((l) => !x.includes(l)).map((l) => `+ ${l}`)].join('\n');
  return `members (- source archive, + archive of the mount):\n${diff(la, lb)}\ntar --xattrs -tvv:\n${diff(ta, tb)}`;
}

/** A file holding content and a directory, made through the mount: most attributes are checked on both kinds. */
async function fileAndDir(file: string, content: string, dir: string): Promise<[string, string]> {
  await writeFile(file, content);
  await mkdir(dir);
  return [file, dir];
}

describeWithGrid('metadata', (grid) => {
  let savedUmask: number;
  before(() => {
    savedUmask = process.umask(0o022); // the creation modes below assume it
  });
  after(() => {
    process.umask(savedUmask);
  });

  for (const mode of MODES) {
    describe(`metadata (${mode})`, () => {
      let m: TestMount;
      /** Scratch space outside the mount. */
      let local: string;
      /** Paths (relative to the mount) of what later mounts must see as it was: pushed once a test checked it. */
      const lasting: string[] = [];
      /** Scripts (relative paths) that must still run, with their output. */
      const scripts = new Map<string, string>();
      /** Every cap read as an extended attribute: none may reach the logs. */
      const capsRead = new Set<string>();
      const rel = (abs: string) => relative(m.mountpoint, abs);

      before(async () => {
        local = await mkdtemp(join(tmpdir(), 'bm-meta-'));
        m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl });
      });
      after(async () => {
        await m?.cleanup();
        await rm(local, { recursive: true, force: true });
      });

      describe('caps as extended attributes', () => {
        let dir: string;
        before(async () => {
          dir = await m.freshDir('caps');
        });

        it('a file written through the mount: user.tahoe.readcap is its ro_uri and fetches the same bytes; no writecap; its storage index', T, async () => {
          const data = randomBytes(10_000); // past Tahoe's literal size: a CHK file, with a storage index
          const f = join(dir, 'written.bin');
          await writeFile(f, data);
          const readcap = await getxattrText(f, 'user.tahoe.readcap');
          capsRead.add(readcap);
          const [, info] = await entryOf(m, rel(f));
          assert.equal(readcap, info.ro_uri);
          assert.match(readcap, /^URI:CHK:/);
          await expectErrno(getxattr(f, 'user.tahoe.writecap'), 'ENODATA');
          const si = await storageIndexOf(m.gatewayUrl, readcap);
          assert.notEqual(si, '');
          assert.equal(await getxattrText(f, 'user.tahoe.storage-index'), si);
          assert.ok((await tahoeCli(['get', '-u', m.gatewayUrl, readcap, '-'])).equals(data), 'tahoe get READCAP gives other bytes');
          lasting.push(rel(f));
        });

        it('a literal file (4 bytes) has its readcap, and neither writecap nor storage index (ENODATA)', T, async () => {
          const f = join(dir, 'tiny.txt');
          await writeFile(f, 'tiny');
          const readcap = await getxattrText(f, 'user.tahoe.readcap');
          capsRead.add(readcap);
          assert.equal(readcap, (await entryOf(m, rel(f)))[1].ro_uri);
          assert.match(readcap, /^URI:LIT:/, 'precondition: the gateway stores 4 bytes as a literal cap');
          await expectErrno(getxattr(f, 'user.tahoe.writecap'), 'ENODATA');
          await expectErrno(getxattr(f, 'user.tahoe.storage-index'), 'ENODATA');
          assert.equal((await tahoeCli(['get', '-u', m.gatewayUrl, readcap, '-'])).toString(), 'tiny');
        });

        it('a directory: readcap and writecap are its ro_uri and rw_uri, with its storage index; the root has the mounted cap', T, async () => {
          const d = join(dir, 'sub');
          await mkdir(d);
          const [, info] = await entryOf(m, rel(d));
          const readcap = await getxattrText(d, 'user.tahoe.readcap');
          const writecap = await getxattrText(d, 'user.tahoe.writecap');
          capsRead.add(readcap).add(writecap);
          assert.equal(readcap, info.ro_uri);
          assert.equal(writecap, info.rw_uri);
          assert.match(writecap, /^URI:DIR2:/);
          assert.equal(await getxattrText(d, 'user.tahoe.storage-index'), await storageIndexOf(m.gatewayUrl, readcap));

          const rootInfo = JSON.parse((await getCap(m.gatewayUrl, m.rootCap, '?t=json')).toString()) as [string, { ro_uri: string }];
          assert.equal(await getxattrText(m.mountpoint, 'user.tahoe.writecap'), m.rootCap);
          assert.equal(await getxattrText(m.mountpoint, 'user.tahoe.readcap'), rootInfo[1].ro_uri);
          capsRead.add(m.rootCap).add(rootInfo[1].ro_uri);
          lasting.push(rel(d));
        });

        it('a mutable file made by another client: its writecap is its rw_uri', T, async () => {
          const url = `${m.gatewayUrl}uri/${encodeURIComponent(m.rootCap)}/${encodePath(rel(dir))}/mutable.txt?format=SDMF`;
          const res = await fetch(url, { method: 'PUT', body: 'mutable', signal: AbortSignal.timeout(60_000) });
          assert.ok(res.ok, `PUT mutable: HTTP ${res.status}`);
          const f = join(dir, 'mutable.txt');
          await eventually('the mutable file shows in the mount', () => exists(f));
          const [, info] = await entryOf(m, rel(f));
          assert.ok(info.rw_uri, 'precondition: the listing has a write cap for a mutable file');
          const readcap = await getxattrText(f, 'user.tahoe.readcap');
          const writecap = await getxattrText(f, 'user.tahoe.writecap');
          capsRead.add(readcap).add(writecap);
          assert.equal(readcap, info.ro_uri);
          assert.equal(writecap, info.rw_uri);
          assert.equal(await getxattrText(f, 'user.tahoe.storage-index'), await storageIndexOf(m.gatewayUrl, readcap));
        });

        it('caps cannot be set or removed (EPERM), and are not listed: getfattr -d and cp -a see only stored user.* xattrs', T, async () => {
          const [f, d] = await fileAndDir(join(dir, 'guarded.txt'), 'guarded', join(dir, 'guarded-dir'));
          for (const args of [['-n', 'user.tahoe.readcap', '-v', 'x', f], ['-x', 'user.tahoe.readcap', f]]) {
            const r = await runChild('setfattr', args);
            assert.notEqual(r.code, 0, `setfattr ${args.join(' ')} succeeded`);
            assert.match(r.stderr, /Operation not permitted/, `setfattr ${args.join(' ')}`);
          }
          for (const name of ['user.tahoe.readcap', 'user.tahoe.writecap', 'user.tahoe.storage-index']) {
            await expectErrno(setxattr(d, name, 'x'), 'EPERM');
            await expectErrno(removexattr(d, name), 'EPERM');
          }
          const [, info] = await entryOf(m, rel(d));
          assert.equal(await getxattrText(d, 'user.tahoe.readcap'), info.ro_uri, 'a refused set changed the readcap');
          capsRead.add(info.ro_uri!);

          await setxattr(f, 'user.color', 'blue');
          assert.deepEqual(await listxattr(f), ['user.color']);
          assert.deepEqual(await listxattr(d), []);
          assert.deepEqual(Object.keys(await getfattrDump(f)), ['user.color']);
          assert.deepEqual(await getfattrDump(d), {});
          const out = join(local, 'caps-copied-out');
          await mkdir(out);
          await mustRun('cp', ['-a', f, d, out]);
          assert.deepEqual(await listxattr(join(out, 'guarded.txt')), ['user.color']);
          assert.deepEqual(await listxattr(join(out, 'guarded-dir')), []);
        });

        it('a new file still open for writing has no readcap (ENODATA); after its close it has one at once', T, async () => {
          const f = join(dir, 'still-open.bin');
          const r = await py([
            ['open', f, 'O_CREAT|O_WRONLY|O_EXCL', 0o644],
            ['write', 0, randomBytes(5000)],
            ['getxattr', f, 'user.tahoe.readcap'],
            ['getxattr', 0, 'user.tahoe.readcap'],
            ['close', 0],
            ['getxattr', f, 'user.tahoe.readcap'],
          ]);
          assert.equal(r[2]!.err, 'ENODATA', `readcap by path while open: ${JSON.stringify(r[2])}`);
          assert.equal(r[3]!.err, 'ENODATA', `readcap by handle while open: ${JSON.stringify(r[3])}`);
          assert.equal(r[4]!.err, undefined, `close: ${r[4]!.err}`);
          assert.equal(r[5]!.err, undefined, `readcap after close: ${r[5]!.err}`);
          const readcap = (r[5]!.ok as Buffer).toString();
          capsRead.add(readcap);
          assert.equal(readcap, (await entryOf(m, rel(f)))[1].ro_uri);
        });

        it('no log of the mount holds a cap read this way', T, async () => {
          assert.ok(capsRead.size > 0, 'no cap was read');
          await assertNoCapsInLogs(m, capsRead);
        });
      });

      describe('user extended attributes', () => {
        let dir: string;
        before(async () => {
          dir = await m.freshDir('xattrs');
        });
        const binary = Buffer.from([0, 1, 2, 0, 255, 0x80, 0, 10, 0]);

        it('set, get, list, replace and remove on a file and a directory; binary and empty values come back exact', T, async () => {
          const [f, d] = await fileAndDir(join(dir, 'f.txt'), 'content', join(dir, 'd'));
          for (const p of [f, d]) {
            await setxattr(p, 'user.color', 'blue');
            await setxattr(p, 'user.binary', binary);
            await setxattr(p, 'user.empty', Buffer.alloc(0));
            assert.equal(await getxattrText(p, 'user.color'), 'blue');
            assert.ok((await getxattr(p, 'user.binary')).equals(binary), 'binary value');
            assert.equal((await getxattr(p, 'user.empty')).length, 0);
            assert.deepEqual((await listxattr(p)).sort(), ['user.binary', 'user.color', 'user.empty']);
            const dump = await getfattrDump(p);
            assert.deepEqual(Object.keys(dump).sort(), ['user.binary', 'user.color', 'user.empty']);
            assert.ok(dump['user.binary']!.equals(binary), 'getfattr -d value');
            await setxattr(p, 'user.color', 'green');
            assert.equal(await getxattrText(p, 'user.color'), 'green');
            await removexattr(p, 'user.empty');
            await expectErrno(getxattr(p, 'user.empty'), 'ENODATA');
            await expectErrno(removexattr(p, 'user.empty'), 'ENODATA');
            await expectErrno(getxattr(p, 'user.never-set'), 'ENODATA');
            assert.deepEqual((await listxattr(p)).sort(), ['user.binary', 'user.color']);
          }
          assert.equal(await readFile(f, 'utf8'), 'content');
          lasting.push(rel(f), rel(d));
        });

        it('XATTR_CREATE of an existing name is EEXIST; XATTR_REPLACE of a missing one is ENODATA', T, async () => {
          const f = join(dir, 'flags.txt');
          await writeFile(f, 'x');
          await setxattr(f, 'user.a', '1', 'XATTR_CREATE');
          await expectErrno(setxattr(f, 'user.a', '2', 'XATTR_CREATE'), 'EEXIST');
          await expectErrno(setxattr(f, 'user.b', '2', 'XATTR_REPLACE'), 'ENODATA');
          await setxattr(f, 'user.a', '3', 'XATTR_REPLACE');
          assert.equal(await getxattrText(f, 'user.a'), '3');
          assert.deepEqual(await listxattr(f), ['user.a']);
        });

        it('limits: a value over 64 KiB is E2BIG, a name over 255 bytes ERANGE, names and values of one file past 64 KiB ENOSPC', T, async () => {
          const f = join(dir, 'limits.txt');
          await writeFile(f, 'x');
          await expectErrno(setxattr(f, 'user.big', Buffer.alloc(65_537, 1)), 'E2BIG');
          await expectErrno(setxattr(f, 'user.' + 'n'.repeat(251), 'x'), 'ERANGE');
          const longest = 'user.' + 'n'.repeat(250); // 255 bytes
          await setxattr(f, longest, 'fits');
          assert.equal(await getxattrText(f, longest), 'fits');
          await removexattr(f, longest);
          await setxattr(f, 'user.a', Buffer.alloc(40_000, 0x61));
          await setxattr(f, 'user.b', Buffer.alloc(20_000, 0x62));
          await expectErrno(setxattr(f, 'user.c', Buffer.alloc(10_000, 0x63)), 'ENOSPC');
          await expectErrno(setxattr(f, 'user.b', Buffer.alloc(30_000, 0x62)), 'ENOSPC');
          assert.deepEqual((await listxattr(f)).sort(), ['user.a', 'user.b']);
          assert.ok((await getxattr(f, 'user.b')).equals(Buffer.alloc(20_000, 0x62)), 'a refused replacement changed the value');
          await removexattr(f, 'user.b');
          await setxattr(f, 'user.c', Buffer.alloc(10_000, 0x63));
          assert.ok((await getxattr(f, 'user.a')).equals(Buffer.alloc(40_000, 0x61)));
          lasting.push(rel(f));
        });

        // Reads too: `ls -l` stops asking a device for labels and ACLs once it says EOPNOTSUPP (ENODATA would keep it
        // asking twice per entry, each a round trip to the kernel).
        it('trusted.*, security.* and system.* are not supported (EOPNOTSUPP), to read as to write', T, async () => {
          const f = join(dir, 'namespaces.txt');
          await writeFile(f, 'x');
          await expectErrno(setxattr(f, 'trusted.x', 'v'), 'EOPNOTSUPP');
          await expectErrno(setxattr(f, 'security.x', 'v'), 'EOPNOTSUPP');
          for (const path of [f, dir]) {
            for (const name of ['security.selinux', 'system.posix_acl_access', 'system.posix_acl_default', 'trusted.x']) {
              await expectErrno(getxattr(path, name), 'EOPNOTSUPP');
            }
          }
          assert.deepEqual(await listxattr(f), []);
        });

        it('are stored in the link metadata as "xattrs", values in base64, for other clients', T, async () => {
          const [f, d] = await fileAndDir(join(dir, 'stored.txt'), 'x', join(dir, 'stored-dir'));
          await setxattr(f, 'user.color', 'blue');
          await setxattr(f, 'user.binary', binary);
          await setxattr(d, 'user.kind', 'box');
          await untilStored(m, rel(f), (meta) => assert.deepEqual(meta.xattrs, { 'user.color': 'Ymx1ZQ==', 'user.binary': binary.toString('base64') }));
          await untilStored(m, rel(d), (meta) => assert.deepEqual(meta.xattrs, { 'user.kind': Buffer.from('box').toString('base64') }));
          await removexattr(f, 'user.color');
          await untilStored(m, rel(f), (meta) => assert.deepEqual(meta.xattrs, { 'user.binary': binary.toString('base64') }));
        });

        it('follow the file through mv', T, async () => {
          const f = join(dir, 'moving.txt');
          await writeFile(f, 'moving');
          await setxattr(f, 'user.tag', 'travels');
          await mkdir(join(dir, 'elsewhere'));
          const to = join(dir, 'elsewhere', 'moved.txt');
          await mustRun('mv', [f, to]);
          assert.equal(await getxattrText(to, 'user.tag'), 'travels');
          assert.equal(await exists(f), false);
          await untilStored(m, rel(to), (meta) => assert.deepEqual(meta.xattrs, { 'user.tag': Buffer.from('travels').toString('base64') }));
          lasting.push(rel(to));
        });

        it('set through the handle of a new file before its first close, with fchmod 0750, are kept after the close', T, async () => {
          const f = join(dir, 'early.txt');
          const r = await py([
            ['open', f, 'O_CREAT|O_WRONLY|O_EXCL', 0o644],
            ['write', 0, 'early bytes'],
            ['setxattr', 0, 'user.state', 'set before close'],
            ['fchmod', 0, 0o750],
            ['close', 0],
          ]);
          r.forEach((x, i) => assert.equal(x.err, undefined, `step ${i}: ${x.err}`));
          assert.equal(await getxattrText(f, 'user.state'), 'set before close');
          assert.equal(await perm(f), 0o750);
          assert.equal(await readFile(f, 'utf8'), 'early bytes');
          await untilStored(m, rel(f), (meta) => {
            assert.deepEqual(meta.xattrs, { 'user.state': Buffer.from('set before close').toString('base64') });
            assert.equal(meta.posix?.mode, '0750');
          });
          lasting.push(rel(f));
        });

        it('cp --preserve=xattr into the mount keeps them', T, async () => {
          const src = join(local, 'cp-source.txt');
          await writeFile(src, 'copied');
          await setxattr(src, 'user.origin', 'local disk');
          await setxattr(src, 'user.binary', binary);
          const to = join(dir, 'copied.txt');
          await mustRun('cp', ['--preserve=xattr', src, to]);
          assert.equal(await getxattrText(to, 'user.origin'), 'local disk');
          assert.ok((await getxattr(to, 'user.binary')).equals(binary));
          assert.deepEqual((await listxattr(to)).sort(), ['user.binary', 'user.origin']);
          lasting.push(rel(to));
        });

        it('rsync -aX of a tree, twice: both exit 0, and the second has nothing to do', { timeout: 300_000 }, async () => {
          const src = join(local, 'rsync-source');
          await mkdir(join(src, 'sub', 'deeper'), { recursive: true });
          await writeFile(join(src, 'top.txt'), 'top\n');
          await writeFile(join(src, 'sub', 'inner.txt'), 'inner\n');
          await writeFile(join(src, 'sub', 'deeper', 'data.bin'), randomBytes(200_000));
          await writeFile(join(src, 'run.sh'), '#!/bin/sh\necho run\n');
          await chmod(join(src, 'run.sh'), 0o755);
          await symlink('top.txt', join(src, 'link'));
          await writeFile(join(src, 'tagged.txt'), 'tagged\n');
          await setxattr(join(src, 'tagged.txt'), 'user.tag', 'one');
          await setxattr(join(src, 'sub'), 'user.dirtag', binary);
          const dst = join(dir, 'rsync-dst');
          await m.watch('first rsync', () => mustRun('rsync', ['-aX', `${src}/`, `${dst}/`], { timeoutMs: 240_000 }));
          const second = await m.watch('second rsync', () => mustRun('rsync', ['-aX', '--itemize-changes', `${src}/`, `${dst}/`], { timeoutMs: 240_000 }));
          assert.equal(second.trim(), '', 'the second rsync found differences');
          assert.equal(await getxattrText(join(dst, 'tagged.txt'), 'user.tag'), 'one');
          assert.ok((await getxattr(join(dst, 'sub'), 'user.dirtag')).equals(binary));
          assert.equal(await readlink(join(dst, 'link')), 'top.txt');
          assert.equal(await perm(join(dst, 'run.sh')), 0o755);
          lasting.push(...['tagged.txt', 'sub', 'link', 'run.sh'].map((n) => rel(join(dst, n))));
        });
      });

      describe('symbolic links', () => {
        const targets: Record<string, string> = {
          relative: 'target.txt',
          absolute: '/etc/hostname',
          up: '../outside.txt',
          dangling: 'no/such/file',
          unicode: 'café/日本語',
          long: 'x/'.repeat(499) + 'yz',
        };
        let dir: string;
        before(async () => {
          dir = await m.freshDir('symlinks');
          await writeFile(join(dir, 'target.txt'), 'the target');
        });

        it('ln -s makes relative, absolute, .., dangling, unicode and 1000-byte links; readlink, lstat and ls -l tell them', T, async () => {
          assert.equal(Buffer.byteLength(targets.long!), 1000);
          for (const [name, target] of Object.entries(targets)) await mustRun('ln', ['-s', target, join(dir, name)]);
          for (const [name, target] of Object.entries(targets)) {
            const p = join(dir, name);
            assert.equal(await readlink(p), target, name);
            const st = await lstat(p);
            assert.ok(st.isSymbolicLink(), `${name} is not a symbolic link`);
            assert.equal(st.size, Buffer.byteLength(target), `${name}: size is the target's length in bytes`);
            assert.equal(octal(st.mode & 0o7777), '0777', `${name}: a link's mode is 0777, as on Linux (tar and rsync record it)`);
            assert.match(await mustRun('ls', ['-ld', p]), /^l/, name);
          }
          assert.equal(await readFile(join(dir, 'relative'), 'utf8'), 'the target');
          assert.ok((await stat(join(dir, 'relative'))).isFile());
          await expectErrno(stat(join(dir, 'dangling')), 'ENOENT');
          lasting.push(...Object.keys(targets).map((n) => rel(join(dir, n))));
        });

        it('mv keeps a link, and rm removes it', T, async () => {
          await mustRun('ln', ['-s', 'target.txt', join(dir, 'moving')]);
          await mustRun('mv', [join(dir, 'moving'), join(dir, 'moved')]);
          assert.equal(await readlink(join(dir, 'moved')), 'target.txt');
          assert.equal(await readFile(join(dir, 'moved'), 'utf8'), 'the target');
          await mkdir(join(dir, 'sub'));
          await mustRun('mv', [join(dir, 'moved'), join(dir, 'sub', 'moved')]);
          assert.equal(await readlink(join(dir, 'sub', 'moved')), 'target.txt');
          assert.ok((await lstat(join(dir, 'sub', 'moved'))).isSymbolicLink());
          await mustRun('rm', [join(dir, 'sub', 'moved')]);
          await expectErrno(lstat(join(dir, 'sub', 'moved')), 'ENOENT');
          assert.deepEqual(await readdir(join(dir, 'sub')), []);
          assert.deepEqual(Object.keys(await m.webList(rel(join(dir, 'sub')))), []);
          assert.equal(await readFile(join(dir, 'target.txt'), 'utf8'), 'the target', 'rm of the link touched its target');
        });

        it('other clients see a file holding the target\'s bytes, with posix.type "symlink" and its target', T, async () => {
          for (const name of ['relative', 'unicode', 'long']) {
            const target = targets[name]!;
            const p = rel(join(dir, name));
            await untilStored(m, p, (meta) => {
              assert.equal(meta.posix?.type, 'symlink');
              assert.equal(meta.posix?.target, target);
            });
            const [type, info] = await entryOf(m, p);
            assert.equal(type, 'filenode');
            assert.ok((await getCap(m.gatewayUrl, info.ro_uri!)).equals(Buffer.from(target)), `${name}: content is not the target`);
          }
        });
      });

      describe('permission bits', () => {
        let dir: string;
        before(async () => {
          dir = await m.freshDir('modes');
        });

        it('chmod 755 shows 0755, stored as posix.mode "0755"', T, async () => {
          const f = join(dir, 'seven-five-five');
          await writeFile(f, 'x');
          await chmod(f, 0o755);
          assert.equal(await perm(f), 0o755);
          await untilStored(m, rel(f), (meta) => assert.equal(meta.posix?.mode, '0755'));
          lasting.push(rel(f));
        });

        it('chmod a-w marks the link "no-write": true; chmod u+w clears it', T, async () => {
          const f = join(dir, 'read-only');
          await writeFile(f, 'x');
          await mustRun('chmod', ['a-w', f]);
          assert.equal(await perm(f), 0o444);
          await untilStored(m, rel(f), (meta) => {
            assert.equal(meta['no-write'], true);
            assert.equal(meta.posix?.mode, '0444');
          });
          await mustRun('chmod', ['u+w', f]);
          assert.equal(await perm(f), 0o644);
          await untilStored(m, rel(f), (meta) => {
            assert.equal(meta['no-write'], undefined);
            assert.equal(storedMode(meta), '0644');
          });
          const g = join(dir, 'stays-read-only');
          await writeFile(g, 'x');
          await mustRun('chmod', ['a-w', g]);
          await untilStored(m, rel(g), (meta) => assert.equal(meta['no-write'], true));
          lasting.push(rel(f), rel(g));
        });

        it('every one of the 12 bits reads back as chmod set it, the owner\'s write bit set or not (0060, 0420: not 0040, 0400)', T, async () => {
          const f = join(dir, 'whole-modes');
          await writeFile(f, 'x');
          for (const mode of [0o060, 0o420, 0o000, 0o2070, 0o707]) {
            await chmod(f, mode);
            assert.equal(octal(await perm(f)), octal(mode));
          }
          await untilStored(m, rel(f), (meta) => {
            assert.equal(meta.posix?.mode, '0707');
            assert.equal(meta['no-write'], undefined);
          });
          await chmod(f, 0o420);
          await untilStored(m, rel(f), (meta) => {
            assert.equal(meta.posix?.mode, '0420');
            assert.equal(meta['no-write'], true);
          });
          lasting.push(rel(f));
        });

        it('atime set by touch -a is kept exactly (posix.atime), apart from mtime, and reads leave it as it is', T, async () => {
          const f = join(dir, 'access-time');
          await writeFile(f, 'x');
          const mtimeBefore = (await lstat(f, { bigint: true })).mtimeNs;
          await mustRun('touch', ['-a', '-d', '2001-01-01 00:00:00.123456789 UTC', f]);
          const atime = 978307200123456789n;
          let st = await lstat(f, { bigint: true });
          assert.equal(st.atimeNs, atime);
          assert.equal(st.mtimeNs, mtimeBefore, 'touch -a leaves mtime');
          await mustRun('touch', ['-m', '-d', '2002-02-02 00:00:00 UTC', f]);
          await readFile(f);
          st = await lstat(f, { bigint: true });
          assert.equal(st.atimeNs, atime, 'touch -m and a read leave atime');
          assert.equal(st.mtimeNs, 1012608000000000000n);
          await untilStored(m, rel(f), (meta) => {
            assert.equal(meta.posix?.atime, String(atime));
            assert.equal(meta.mtime_ns, '1012608000000000000');
          });
          lasting.push(rel(f));
        });

        it('chmod moves the ctime and not the mtime; the ctime is kept (posix.ctime)', T, async () => {
          const f = join(dir, 'change-time');
          await writeFile(f, 'x');
          await mustRun('touch', ['-d', '2001-01-01 00:00:00 UTC', f]);
          const before = await lstat(f, { bigint: true });
          assert.ok(before.ctimeNs > before.mtimeNs, 'utimensat marks the ctime: now, not 2001');
          await new Promise((r) => setTimeout(r, 20));
          await chmod(f, 0o640);
          const after = await lstat(f, { bigint: true });
          assert.ok(after.ctimeNs > before.ctimeNs, 'chmod moved the ctime');
          assert.equal(after.mtimeNs, before.mtimeNs);
          await untilStored(m, rel(f), (meta) => assert.equal(meta.posix?.ctime, String(after.ctimeNs)));
          lasting.push(rel(f));
        });

        it('setuid, setgid and sticky bits are kept', T, async () => {
          const suid = join(dir, 'setuid');
          const sgid = join(dir, 'setgid');
          const sticky = join(dir, 'sticky');
          await writeFile(suid, 'x');
          await writeFile(sgid, 'x');
          await mkdir(sticky);
          await chmod(suid, 0o4755);
          await chmod(sgid, 0o2755);
          await chmod(sticky, 0o1777);
          for (const [p, want] of [[suid, 0o4755], [sgid, 0o2755], [sticky, 0o1777]] as const) {
            assert.equal(octal(await perm(p)), octal(want), basename(p));
            await untilStored(m, rel(p), (meta) => assert.equal(meta.posix?.mode, octal(want)));
          }
          assert.ok((await stat(sticky)).isDirectory());
          lasting.push(rel(suid), rel(sgid), rel(sticky));
        });

        it('creation modes: mkdir 0700, create 0640; umask 077 gives 0600 and 0700, umask 022 0644 and 0755', T, async () => {
          await mkdir(join(dir, 'mkdir-0700'), { mode: 0o700 });
          const fh = await open(join(dir, 'create-0640'), 'w', 0o640);
          await fh.close();
          await m.sh('umask 077 && touch private.txt && mkdir private.d', { cwd: dir });
          await m.sh('umask 022 && touch plain.txt && mkdir plain.d', { cwd: dir });
          // name → [mode wanted, is a directory]
          const want: Record<string, [number, boolean]> = {
            'mkdir-0700': [0o700, true], 'create-0640': [0o640, false], 'private.txt': [0o600, false], 'private.d': [0o700, true],
            'plain.txt': [0o644, false], 'plain.d': [0o755, true],
          };
          const seen = Object.fromEntries(await Promise.all(Object.keys(want).map(async (n) => [n, octal(await perm(join(dir, n)))] as const)));
          assert.deepEqual(seen, Object.fromEntries(Object.entries(want).map(([n, [mo]]) => [n, octal(mo)])));
          for (const [n, [mo, isDir]] of Object.entries(want)) {
            await untilStored(m, rel(join(dir, n)), (meta) => assert.equal(storedMode(meta, isDir), octal(mo)));
          }
          lasting.push(...Object.keys(want).map((n) => rel(join(dir, n))));
        });

        it('a script made executable runs directly', T, async () => {
          const p = join(dir, 'hello.sh');
          await writeFile(p, '#!/bin/sh\necho "hello from $(basename "$0")"\n');
          await mustRun('chmod', ['+x', p]);
          assert.equal(await perm(p), 0o755);
          assert.equal(await mustRun(p, [], { cwd: '/' }), 'hello from hello.sh\n');
          scripts.set(rel(p), 'hello from hello.sh\n');
          lasting.push(rel(p));
        });

        it('without allow_other every file shows the mounting user, even after root chowns it; no owner is stored', T, async () => {
          const [f, d] = await fileAndDir(join(dir, 'chowned'), 'x', join(dir, 'chowned-dir'));
          for (const p of [f, d]) {
            await chown(p, 5000, 5000);
            const st = await stat(p);
            assert.deepEqual([st.uid, st.gid], [process.getuid!(), process.getgid!()], basename(p));
            // A change that is stored, after the chown: once it shows, the chown had its chance to be stored too.
            await chmod(p, 0o750);
            await untilStored(m, rel(p), (meta) => {
              assert.equal(meta.posix?.mode, '0750');
              assert.equal(meta.posix?.uid, undefined);
              assert.equal(meta.posix?.gid, undefined);
            });
          }
          lasting.push(rel(f), rel(d));
        });
      });

      describe('special files', () => {
        let dir: string;
        before(async () => {
          dir = await m.freshDir('special');
        });

        it('mkfifo, mknod c 1 3, mknod b 7 0 and a bound unix socket make what stat says', T, async () => {
          await mustRun('mkfifo', [join(dir, 'fifo')]);
          await mustRun('mknod', [join(dir, 'char'), 'c', '1', '3']);
          await mustRun('mknod', [join(dir, 'block'), 'b', '7', '0']);
          await py1(['bind', 'socket'], { cwd: dir }); // relative: a socket path is at most 107 bytes
          assert.ok((await lstat(join(dir, 'fifo'))).isFIFO(), 'fifo');
          assert.ok((await lstat(join(dir, 'char'))).isCharacterDevice(), 'char');
          assert.ok((await lstat(join(dir, 'block'))).isBlockDevice(), 'block');
          assert.ok((await lstat(join(dir, 'socket'))).isSocket(), 'socket');
          assert.equal((await mustRun('stat', ['-c', '%t %T', join(dir, 'char')])).trim(), '1 3');
          assert.equal((await mustRun('stat', ['-c', '%t %T', join(dir, 'block')])).trim(), '7 0');
          lasting.push(...['fifo', 'char', 'block', 'socket'].map((n) => rel(join(dir, n))));
        });

        it('other clients see their posix.type, and a device\'s major and minor', T, async () => {
          const want: Record<string, Record<string, unknown>> = {
            fifo: { type: 'fifo' },
            socket: { type: 'socket' },
            char: { type: 'char', major: 1, minor: 3 },
            block: { type: 'block', major: 7, minor: 0 },
          };
          for (const [name, fields] of Object.entries(want)) {
            await untilStored(m, rel(join(dir, name)), (meta) => {
              for (const [k, v] of Object.entries(fields)) assert.equal(meta.posix?.[k], v, `${name}: posix.${k}`);
            });
          }
        });

        it('a reader and a writer meet through a fifo on the mount', T, async () => {
          await mustRun('mkfifo', [join(dir, 'meet')]);
          const r = await m.sh(`timeout 30 cat meet & timeout 30 sh -c 'echo through the fifo > meet'; wait $!`, { cwd: dir, timeoutMs: 60_000 });
          assert.equal(r.stdout, 'through the fifo\n');
        });
      });

      describe('a tar round trip', () => {
        it('a tree with modes, symlinks, xattrs and a fifo, extracted into the mount and archived again, gives the same archive byte for byte', { timeout: 300_000 }, async () => {
          // No hard links: the mount shows every file with one link, so tar would not archive them alike.
          const src = join(local, 'tar-source');
          await mkdir(join(src, 'dir', 'nested', 'deep'), { recursive: true });
          await mkdir(join(src, 'empty-dir'));
          await mkdir(join(src, 'links'));
          await mkdir(join(src, 'tagdir'));
          await writeFile(join(src, 'a.txt'), 'alpha\n');
          await writeFile(join(src, 'empty'), '');
          await writeFile(join(src, 'ünï côdé.txt'), 'names\n');
          await writeFile(join(src, 'dir', 'nested', 'deep', 'file.bin'), randomBytes(100_000));
          await writeFile(join(src, 'dir', 'secret'), 'secret\n');
          await chmod(join(src, 'dir', 'secret'), 0o600);
          await writeFile(join(src, 'dir', 'run.sh'), '#!/bin/sh\necho run\n');
          await chmod(join(src, 'dir', 'run.sh'), 0o755);
          await symlink('../a.txt', join(src, 'links', 'relative'));
          await symlink('/etc/hostname', join(src, 'links', 'absolute'));
          await symlink('nowhere', join(src, 'links', 'dangling'));
          // One xattr per node: tar stores them in the order listxattr gives, which the spec leaves open.
          await writeFile(join(src, 'tagged'), 'tagged\n');
          await setxattr(join(src, 'tagged'), 'user.color', 'blue');
          await writeFile(join(src, 'blob'), 'blob\n');
          await setxattr(join(src, 'blob'), 'user.blob', Buffer.from([0, 1, 2, 0, 255, 0]));
          await setxattr(join(src, 'tagdir'), 'user.kind', 'box');
          await mustRun('mkfifo', [join(src, 'fifo')]);

          const aTar = join(local, 'a.tar');
          const bTar = join(local, 'b.tar');
          const dst = await m.freshDir('tar-dst');
          await mustRun('tar', ['c', ...TAR_C, '-f', aTar, '-C', src, '.']);
          await m.watch('tar x into the mount', () => mustRun('tar', ['x', ...TAR_X, '-f', aTar, '-C', dst], { timeoutMs: 240_000 }));
          await m.watch('tar c of the mount', () => mustRun('tar', ['c', ...TAR_C, '-f', bTar, '-C', dst, '.'], { timeoutMs: 240_000 }));
          const [a, b] = [await readFile(aTar), await readFile(bTar)];
          if (!a.equals(b)) {
            let at = 0;
            while (at < Math.min(a.length, b.length) && a[at] === b[at]) at++;
            assert.fail(`the archives differ (sizes ${a.length} and ${b.length}, first at byte ${at})\n${await tarDifference(aTar, bTar)}`);
          }
          lasting.push(...['dir/secret', 'dir/run.sh', 'links/relative', 'tagged', 'blob', 'tagdir', 'fifo'].map((p) => rel(join(dst, p))));
        });
      });

      describe('the next mounts of the same root', () => {
        /** What the main mount showed just before its remount. */
        let seen: Record<string, NodeSnapshot | string> | undefined;

        it('after an unmount and a remount, everything checked above is as it was, and scripts still run', { timeout: 300_000 }, async () => {
          assert.ok(lasting.length > 0, 'nothing to check: every test above failed');
          seen = await snapshotsOf(m, lasting);
          await m.remount();
          assert.deepEqual(await snapshotsOf(m, lasting), seen);
          for (const [p, out] of scripts) assert.equal(await mustRun(m.path(p), [], { cwd: '/' }), out, p);
        });

        describe('a second mount of the same root cap, with its own node directory and --list-cap-xattrs', () => {
          let m2: TestMount;
          before(async () => {
            m2 = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: m.rootCap, extraArgs: ['--list-cap-xattrs'] });
          });
          after(async () => {
            await m2?.cleanup();
          });

          it('sees everything checked through the first mount as it was, and scripts run', { timeout: 300_000 }, async () => {
            assert.ok(lasting.length > 0, 'nothing to check: every test above failed');
            assert.deepEqual(await snapshotsOf(m2, lasting), seen ?? (await snapshotsOf(m, lasting)));
            for (const [p, out] of scripts) assert.equal(await mustRun(m2.path(p), [], { cwd: '/' }), out, p);
          });

          it('lists the caps: getfattr -d shows user.tahoe.readcap, and a directory\'s writecap; none in its logs', T, async () => {
            const dir = await m2.freshDir('listed');
            const f = join(dir, 'listed.bin');
            await writeFile(f, randomBytes(5000));
            await setxattr(f, 'user.color', 'blue');
            const d = join(dir, 'sub');
            await mkdir(d);
            const rel2 = (abs: string) => relative(m2.mountpoint, abs);
            const [, fileInfo] = await entryOf(m2, rel2(f));
            const [, dirInfo] = await entryOf(m2, rel2(d));
            const fileDump = await getfattrDump(f);
            assert.equal(fileDump['user.tahoe.readcap']?.toString(), fileInfo.ro_uri);
            assert.equal(fileDump['user.color']?.toString(), 'blue');
            assert.equal('user.tahoe.writecap' in fileDump, false, 'an immutable file lists a writecap');
            const dirDump = await getfattrDump(d);
            assert.equal(dirDump['user.tahoe.readcap']?.toString(), dirInfo.ro_uri);
            assert.equal(dirDump['user.tahoe.writecap']?.toString(), dirInfo.rw_uri);
            await assertNoCapsInLogs(m2, [fileInfo.ro_uri!, dirInfo.ro_uri!, dirInfo.rw_uri!, ...capsRead]);
          });
        });
      });

      describe('owners, on a mount with -o allow_other', () => {
        let o: TestMount;
        let shared: string;
        /** Puts back the modes of the directories opened for user 4242. */
        let restoreModes: () => Promise<void> = async () => undefined;
        /** Paths (relative to o) whose owners must last. */
        const owned: string[] = [];

        before(async () => {
          o = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, extraArgs: ['-o', 'allow_other'] });
          restoreModes = await openPathToOthers(o.workDir);
          shared = o.path('shared');
          await mkdir(shared);
          await chmod(shared, 0o1777);
        });
        after(async () => {
          await o?.cleanup();
          await restoreModes();
        });

        it('files and directories user 4242 makes in a 1777 directory are 4242:4242, stored as posix uid and gid', T, async () => {
          assert.equal(await perm(shared), 0o1777);
          const r = await py([
            ['open', join(shared, 'u.txt'), 'O_CREAT|O_WRONLY|O_EXCL', 0o644],
            ['write', 0, 'mine'],
            ['close', 0],
            ['mkdir', join(shared, 'u.d'), 0o755],
            ['open', join(shared, 'given.txt'), 'O_CREAT|O_WRONLY|O_EXCL', 0o644],
            ['write', 1, 'to be given away'],
            ['close', 1],
          ], USER);
          r.forEach((x, i) => assert.equal(x.err, undefined, `step ${i} as user 4242: ${x.err}`));
          for (const n of ['u.txt', 'u.d', 'given.txt']) {
            const st = await stat(join(shared, n));
            assert.deepEqual([st.uid, st.gid], [4242, 4242], n);
            await untilStored(o, `shared/${n}`, (meta) => {
              assert.equal(meta.posix?.uid, 4242);
              assert.equal(meta.posix?.gid, 4242);
            });
          }
          owned.push('shared', 'shared/u.txt', 'shared/u.d');
        });

        it('the kernel checks permissions: 4242 may not write root\'s 0644 file, read root\'s 0600 one, remove root\'s file from the sticky directory, nor give its file to root', T, async () => {
          await writeFile(join(shared, 'r644'), 'root');
          await chmod(join(shared, 'r644'), 0o644);
          await writeFile(join(shared, 'r600'), 'root only');
          await chmod(join(shared, 'r600'), 0o600);
          const r = await py([
            ['open', join(shared, 'r644'), 'O_WRONLY', 0],
            ['read', join(shared, 'r600')],
            ['read', join(shared, 'r644')],
            ['unlink', join(shared, 'r644')],
            ['chown', join(shared, 'u.txt'), 0, -1],
          ], USER);
          assert.equal(r[0]!.err, 'EACCES', 'write-open of a 0644 file of root');
          assert.equal(r[1]!.err, 'EACCES', 'read of a 0600 file of root');
          assert.equal((r[2]!.ok as Buffer | undefined)?.toString(), 'root', `read of a 0644 file of root: ${r[2]!.err}`);
          assert.equal(r[3]!.err, 'EPERM', 'unlink of root\'s file in a sticky directory');
          assert.equal(r[4]!.err, 'EPERM', 'chown of its own file to root');
          assert.equal(await readFile(join(shared, 'r644'), 'utf8'), 'root');
          const st = await stat(join(shared, 'u.txt'));
          assert.deepEqual([st.uid, st.gid], [4242, 4242]);
          owned.push('shared/r644', 'shared/r600');
        });

        it('root\'s chown 5000:5000 shows 5000:5000; root\'s chown of a setuid file clears setuid', T, async () => {
          await mustRun('chown', ['5000:5000', join(shared, 'given.txt')]);
          const given = await stat(join(shared, 'given.txt'));
          assert.deepEqual([given.uid, given.gid], [5000, 5000]);
          await untilStored(o, 'shared/given.txt', (meta) => {
            assert.equal(meta.posix?.uid, 5000);
            assert.equal(meta.posix?.gid, 5000);
          });
          const s = join(shared, 'setuid.bin');
          await writeFile(s, 'x');
          await chmod(s, 0o4755);
          assert.equal(octal(await perm(s)), '4755');
          await chown(s, 4242, 4242);
          const st = await stat(s);
          assert.deepEqual([st.uid, st.gid], [4242, 4242]);
          assert.equal(octal(st.mode & 0o7777), '0755', 'setuid survived a chown');
          await untilStored(o, 'shared/setuid.bin', (meta) => assert.equal(meta.posix?.mode, '0755'));
          owned.push('shared/given.txt', 'shared/setuid.bin');
        });

        it('owners and modes are as they were after an unmount and a remount', { timeout: 300_000 }, async () => {
          assert.ok(owned.length > 0, 'nothing to check: every test above failed');
          const before = await snapshotsOf(o, owned);
          await o.remount();
          assert.deepEqual(await snapshotsOf(o, owned), before);
          const st = await stat(join(shared, 'u.txt'));
          assert.deepEqual([st.uid, st.gid], [4242, 4242]);
        });
      });
    });
  }
});
