// The binding on its own, without blackmatch: a tiny in-memory filesystem answered straight from the session's
// requests, mounted for real, and used through ordinary system calls. Needs /dev/fuse (run as root, as CI does).
// Every call into the mount is asynchronous: a synchronous one would block the thread that must answer it.
import assert from 'node:assert/strict';
import { execFile as execFileCb, execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

const execFile = promisify(execFileCb);
const require = createRequire(import.meta.url);
const addon = require('../build/Release/blackmatch_fuse3.node');
// The name of each request kind, by the number the handler gets: the addon's one list.
const OPS = addon.ops;
const ENOENT = 2;
const EEXIST = 17;
const ERANGE = 34;
const ENOSYS = 38;
const ENODATA = 61;
const EOPNOTSUPP = 95;
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const time = { sec: 1_700_000_000, nsec: 123_456_789 };

/** ino -> { name, mode, data } ; every file lives in the root (ino 1). */
const files = new Map([[2, { name: 'hello.txt', data: Buffer.from('hello from the binding\n') }]]);
/** A file whose opens are passed through to a backing file on the local disk (where the kernel can). */
const BACKED = 3;
const backedContent = Buffer.from('read by the kernel straight from the backing file\n');
let backingPath;
let backingId = 0;
const attrOf = (ino) => ino === 1
  ? { ino, mode: 0o40755, nlink: 2, uid: 0, gid: 0, size: 0, atime: time, mtime: time, ctime: time }
  : { ino, mode: 0o100644, nlink: 1, uid: 0, gid: 0, size: files.get(ino).data.length, atime: time, mtime: time, ctime: time };
const entryOf = (ino) => ({ ino, generation: 1, attr: attrOf(ino), entryTimeout: 0, attrTimeout: 0 });
/** ino -> (xattr name -> value); the root has its own too. */
const xattrs = new Map();
const xattrsOf = (ino) => xattrs.get(ino) ?? xattrs.set(ino, new Map()).get(ino);
/** Every setxattr as it arrived, to see its flags and value. */
const setxattrs = [];
const seen = [];
let doubleReply;
let gone;
const goneSeen = new Promise((resolve) => (gone = resolve));

function handle(session, op, req, a) {
  const name = OPS[op];
  seen.push(name);
  const byName = (n) => [...files].find(([, f]) => f.name === n.toString())?.[0];
  switch (name) {
    case 'gone': return gone(a.result);
    case 'forget': return;
    case 'lookup': {
      const ino = byName(a.name);
      return ino ? session.replyEntry(req, entryOf(ino)) : session.replyErr(req, ENOENT);
    }
    case 'getattr': return session.replyAttr(req, attrOf(a.ino), 0);
    case 'open':
      if (a.ino === BACKED && session.info().passthrough) {
        const fd = openSync(backingPath, 'r');
        // One backing file per node: later opens name the id the first one got.
        const id = session.replyOpen(req, backingId ? { fh: a.ino, backingId } : { fh: a.ino, backingFd: fd });
        if (!backingId) backingId = id;
        closeSync(fd);
        return;
      }
      return session.replyOpen(req, { fh: a.ino });
    case 'opendir': return session.replyOpen(req, { fh: a.ino });
    case 'read': {
      const data = files.get(a.ino).data.subarray(a.offset, a.offset + a.size);
      return session.replyBuf(req, Buffer.from(data), data.length);
    }
    case 'create': {
      const ino = Math.max(...files.keys()) + 1;
      files.set(ino, { name: a.name.toString(), data: Buffer.alloc(0) });
      return session.replyCreate(req, entryOf(ino), { fh: ino });
    }
    case 'write': {
      const f = files.get(a.ino);
      const grown = Buffer.alloc(Math.max(f.data.length, a.offset + a.data.length));
      f.data.copy(grown);
      a.data.copy(grown, a.offset);
      f.data = grown;
      return session.replyWrite(req, a.data.length);
    }
    case 'readdir': case 'readdirplus': {
      const entries = [{ name: Buffer.from('.'), ...entryOf(1), ino: 0 }, { name: Buffer.from('..'), ...entryOf(1), ino: 0 },
        ...[...files].map(([ino, f]) => ({ name: Buffer.from(f.name), ...entryOf(ino), mode: 0o100644 }))];
      return session.replyDirectory(req, a.size, a.offset, entries.slice(a.offset), name === 'readdirplus');
    }
    case 'setxattr': {
      setxattrs.push(a);
      const x = xattrsOf(a.ino);
      const key = a.name.toString();
      if (a.flags & XATTR_CREATE && x.has(key)) return session.replyErr(req, EEXIST);
      if (a.flags & XATTR_REPLACE && !x.has(key)) return session.replyErr(req, ENODATA);
      x.set(key, a.data);
      return session.replyErr(req, 0);
    }
    case 'getxattr': case 'listxattr': {
      const x = xattrsOf(a.ino);
      const value = name === 'getxattr' ? x.get(a.name.toString()) : Buffer.from([...x.keys()].map((k) => `${k}\0`).join(''));
      if (!value) return session.replyErr(req, ENODATA);
      if (a.size === 0) return session.replyXattr(req, value.length);
      if (value.length > a.size) return session.replyErr(req, ERANGE);
      return session.replyBuf(req, value, value.length);
    }
    case 'removexattr': return session.replyErr(req, xattrsOf(a.ino).delete(a.name.toString()) ? 0 : ENODATA);
    case 'flush': case 'release': case 'releasedir': case 'setattr':
      if (name === 'setattr') return session.replyAttr(req, attrOf(a.ino), 0);
      session.replyErr(req, 0);
      try {
        session.replyErr(req, 0);
      } catch (e) {
        doubleReply = e;
      }
      return;
    default: return session.replyErr(req, ENOSYS);
  }
}

// Node has no xattr calls: python3 makes them, one child a call, printing {ok: result} or {errno}. Values cross
// as hex. 'length' and 'list-length' pass no buffer, which asks the filesystem only for the length.
const XATTR_PY = `
import ctypes, json, os, sys
op, path, *rest = sys.argv[1:]
try:
    if op == 'set':
        out = os.setxattr(path, rest[0], bytes.fromhex(rest[1]), int(rest[2]))
    elif op == 'get':
        out = os.getxattr(path, rest[0]).hex()
    elif op == 'list':
        out = sorted(os.listxattr(path))
    elif op == 'remove':
        out = os.removexattr(path, rest[0])
    else:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
        libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
        libc.getxattr.restype = libc.listxattr.restype = ctypes.c_ssize_t
        out = libc.getxattr(path.encode(), rest[0].encode(), None, 0) if op == 'length' else libc.listxattr(path.encode(), None, 0)
        if out < 0:
            raise OSError(ctypes.get_errno(), op)
    print(json.dumps({'ok': out}))
except OSError as e:
    print(json.dumps({'errno': e.errno}))
`;
const xattr = async (...args) => JSON.parse((await execFile('python3', ['-c', XATTR_PY, ...args], { timeout: 10_000 })).stdout);

describe('the libfuse 3 binding, mounted for real', () => {
  let dir;
  let mnt;
  let session;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bm-fuse3-'));
    mnt = join(dir, 'mnt');
    execFileSync('mkdir', [mnt]); // before the mount
    backingPath = join(dir, 'backing');
    writeFileSync(backingPath, backedContent);
    files.set(BACKED, { name: 'backed.txt', data: Buffer.alloc(backedContent.length, '?') });
    session = new addon.Session((op, req, a) => handle(session, op, req, a));
    session.mount(mnt, ['fsname=bm-binding-test', 'subtype=test'], 1 << 20, true);
  });

  after(async () => {
    await execFile('fusermount3', ['-u', mnt]).catch(() => execFile('fusermount3', ['-uz', mnt]).catch(() => undefined));
    session.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports its libfuse version', () => {
    assert.ok(addon.libfuseVersion >= 312, String(addon.libfuseVersion));
    assert.equal(typeof addon.passthroughBuilt, 'boolean');
  });

  it('serves lookup, getattr with nanoseconds, and read', async () => {
    const st = await stat(join(mnt, 'hello.txt'), { bigint: true });
    assert.equal(st.size, 23n);
    assert.equal(st.ino, 2n);
    assert.equal(st.mtimeNs, 1_700_000_000_123_456_789n);
    assert.equal(await readFile(join(mnt, 'hello.txt'), 'utf8'), 'hello from the binding\n');
  });

  it('lists with readdirplus, each entry with its attributes', async () => {
    assert.deepEqual((await readdir(mnt)).sort(), ['backed.txt', 'hello.txt']);
    assert.ok(seen.includes('readdirplus'), `requests: ${[...new Set(seen)]}`);
  });

  it('creates and writes, a 1 MiB write reaching us as one request', async () => {
    const big = Buffer.alloc(1 << 20, 7);
    const before = seen.filter((s) => s === 'write').length;
    const file = await open(join(mnt, 'new.bin'), 'w'); // one write(2), not writeFile's 512 KiB chunks
    await file.write(big, 0, big.length, 0);
    await file.close();
    assert.equal(seen.filter((s) => s === 'write').length - before, 1);
    assert.ok((await readFile(join(mnt, 'new.bin'))).equals(big));
  });

  it('serves extended attributes: values byte for byte, lengths, the list, removal', async () => {
    const file = join(mnt, 'hello.txt');
    const withNul = Buffer.from([0x61, 0x00, 0x62, 0xff]).toString('hex');
    const long = Buffer.alloc(300, 'z').toString('hex'); // over CPython's first 128-byte try: ERANGE, then asked again
    assert.deepEqual(await xattr('set', file, 'user.nul', withNul, '0'), { ok: null });
    assert.deepEqual(await xattr('set', file, 'user.empty', '', '0'), { ok: null });
    assert.deepEqual(await xattr('set', file, 'user.long', long, '0'), { ok: null });
    assert.deepEqual(await xattr('get', file, 'user.nul'), { ok: withNul });
    assert.deepEqual(await xattr('get', file, 'user.empty'), { ok: '' });
    assert.deepEqual(await xattr('get', file, 'user.long'), { ok: long });
    assert.deepEqual(await xattr('length', file, 'user.long'), { ok: 300 });
    assert.deepEqual(await xattr('length', file, 'user.empty'), { ok: 0 });
    assert.deepEqual(await xattr('list', file), { ok: ['user.empty', 'user.long', 'user.nul'] });
    assert.deepEqual(await xattr('list-length', file), { ok: 'user.nul\0user.empty\0user.long\0'.length });
    const empty = setxattrs.find((a) => a.name.toString() === 'user.empty');
    assert.ok(Buffer.isBuffer(empty.data) && empty.data.length === 0 && empty.size === 0, 'an empty value is an empty Buffer');
    assert.deepEqual(await xattr('remove', file, 'user.nul'), { ok: null });
    assert.deepEqual(await xattr('get', file, 'user.nul'), { errno: ENODATA });
    assert.deepEqual(await xattr('remove', file, 'user.nul'), { errno: ENODATA });
    assert.deepEqual(await xattr('list', file), { ok: ['user.empty', 'user.long'] });
    assert.deepEqual(await xattr('list', mnt), { ok: [] });
  });

  it('answers names outside user.* itself: no request reaches JavaScript (ls -l asks for ACLs, every write for capabilities)', async () => {
    const file = join(mnt, 'hello.txt');
    const asked = seen.length;
    assert.deepEqual(await xattr('get', file, 'system.posix_acl_access'), { errno: EOPNOTSUPP });
    assert.deepEqual(await xattr('get', file, 'security.capability'), { errno: EOPNOTSUPP });
    assert.deepEqual(await xattr('set', file, 'trusted.x', '01', '0'), { errno: EOPNOTSUPP });
    assert.deepEqual(await xattr('remove', file, 'trusted.x'), { errno: EOPNOTSUPP });
    assert.deepEqual(seen.slice(asked).filter((op) => op.endsWith('xattr')), []);
  });

  it('passes setxattr its XATTR_CREATE and XATTR_REPLACE flags', async () => {
    const file = join(mnt, 'hello.txt');
    const before = setxattrs.length;
    assert.deepEqual(await xattr('set', file, 'user.flags', '01', String(XATTR_CREATE)), { ok: null });
    assert.deepEqual(await xattr('set', file, 'user.flags', '02', String(XATTR_CREATE)), { errno: EEXIST });
    assert.deepEqual(await xattr('set', file, 'user.flags', '03', String(XATTR_REPLACE)), { ok: null });
    assert.deepEqual(await xattr('set', file, 'user.other', '04', String(XATTR_REPLACE)), { errno: ENODATA });
    assert.deepEqual(await xattr('get', file, 'user.flags'), { ok: '03' });
    assert.deepEqual(setxattrs.slice(before).map((a) => a.flags), [XATTR_CREATE, XATTR_CREATE, XATTR_REPLACE, XATTR_REPLACE]);
  });

  it('passes reads through to a backing file where libfuse and the kernel allow it', async (t) => {
    await stat(join(mnt, 'hello.txt')); // the kernel's INIT is answered by now
    if (!session.info().passthrough) return t.skip(`no passthrough here (libfuse ${addon.libfuseVersion}, built with it: ${addon.passthroughBuilt})`);
    const reads = seen.filter((s) => s === 'read').length;
    for (let i = 0; i < 2; i++) assert.equal(await readFile(join(mnt, 'backed.txt'), 'utf8'), backedContent.toString());
    assert.equal(seen.filter((s) => s === 'read').length, reads, 'no read request reached us');
    assert.ok(backingId > 0);
  });

  it('refuses a second answer to one request with an error, not a crash', () => {
    assert.match(String(doubleReply), /not outstanding/);
  });

  it('fails an errno straight through, and an unknown op with ENOSYS', async () => {
    await assert.rejects(stat(join(mnt, 'missing')), /ENOENT/);
    await assert.rejects(mkdir(join(mnt, 'd')), /ENOSYS/);
  });

  it('tells JavaScript when the kernel ends the session', async () => {
    assert.equal(session.close(), false, 'not while the loop runs');
    await execFile('fusermount3', ['-u', mnt]);
    assert.equal(await goneSeen, 0);
    assert.equal(session.close(), true);
  });
});
