// The filesystem behaviour suite, run against a real mount of a real grid, once per mode (as the original
// harness ran impl_c and impl_c_no_split). Each test works in its own fresh directory under the mounted root,
// and checks bytes both ways: what the mount wrote, read through the web API, and what the web API holds,
// read through the mount.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, appendFile, link, mkdir, open, readdir, readFile, rename, rm, rmdir, stat, truncate, unlink, utimes, writeFile, chmod, chown } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually, type Mode, TestMount } from '../../grid/mount.js';
import { exists, expectErrno } from '../support/assert-fs.js';
import { describeWithGrid } from '../support/test-grid.js';

const MiB = 1024 * 1024;


/** Deterministic pseudo-random order, so that a failure can be replayed. */
function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed >>> 0;
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export function fsSuite(mode: Mode): void {
  describeWithGrid(`filesystem (${mode})`, (grid) => {
    let m: TestMount;
    const rel = (abs: string) => relative(m.mountpoint, abs);

    before(async () => {
      m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, cacheTimeout: 1 });
    });

    after(async () => {
      await m?.cleanup();
    });

    describe('read', () => {
      it('shows a directory made by another client, and its empty listing', async () => {
        const name = `made-by-web-${randomBytes(3).toString('hex')}`;
        await m.webMkdir(name);
        await eventually('directory appears', () => exists(m.path(name)));
        assert.ok((await stat(m.path(name))).isDirectory());
        assert.deepEqual(await readdir(m.path(name)), []);
      });

      it('lists 3 files and 3 directories with exact sizes, and reads their contents', async () => {
        const name = `listing-${randomBytes(3).toString('hex')}`;
        const files: Record<string, Buffer> = {
          'small.txt': Buffer.from('tiny'),
          'medium.bin': randomBytes(54_321),
          'empty': Buffer.alloc(0),
        };
        await m.webMkdir(name);
        for (const [f, data] of Object.entries(files)) await m.webPut(`${name}/${f}`, data);
        for (const d of ['d1', 'd2', 'd3']) await m.webMkdir(`${name}/${d}`);
        await eventually('listing complete', async () => (await readdir(m.path(name)).catch(() => [])).length === 6);
        assert.deepEqual((await readdir(m.path(name))).sort(), ['d1', 'd2', 'd3', 'empty', 'medium.bin', 'small.txt']);
        for (const [f, data] of Object.entries(files)) {
          const st = await stat(m.path(name, f));
          assert.ok(st.isFile());
          assert.equal(st.size, data.length, f);
          assert.deepEqual(await readFile(m.path(name, f)), data, f);
        }
        for (const d of ['d1', 'd2', 'd3']) assert.ok((await stat(m.path(name, d))).isDirectory());
      });

      it('reads a 1 MiB file in shuffled 1 KiB blocks', async () => {
        const dir = await m.freshDir('shuffled');
        const data = randomBytes(MiB);
        await m.webPut(`${rel(dir)}/big`, data);
        await eventually('file appears', () => exists(join(dir, 'big')));
        const fh = await open(join(dir, 'big'), 'r');
        try {
          const blocks = [...Array(MiB / 1024).keys()];
          for (const b of shuffled(blocks, 42)) {
            const buf = Buffer.alloc(1024);
            const { bytesRead } = await fh.read(buf, 0, 1024, b * 1024);
            assert.equal(bytesRead, 1024);
            assert.ok(buf.equals(data.subarray(b * 1024, (b + 1) * 1024)), `block ${b}`);
          }
        } finally {
          await fh.close();
        }
      });
    });

    describe('write', () => {
      async function writeInChunks(path: string, data: Buffer, chunk: number): Promise<void> {
        const fh = await open(path, 'w');
        try {
          for (let off = 0; off < data.length; off += chunk) await fh.write(data, off, Math.min(chunk, data.length - off), off);
        } finally {
          await fh.close();
        }
      }

      it('writes a tiny file that the web API serves once close() returns', async () => {
        const dir = await m.freshDir('tiny');
        await writeFile(join(dir, 'tiny.txt'), 'hello, grid\n');
        assert.equal((await m.webGet(`${rel(dir)}/tiny.txt`)).toString(), 'hello, grid\n');
        assert.equal(await readFile(join(dir, 'tiny.txt'), 'utf8'), 'hello, grid\n');
      });

      for (const chunk of [512, 256 * 1024]) {
        it(`writes 1 MiB in ${chunk} B writes`, async () => {
          const dir = await m.freshDir(`linear-${chunk}`);
          const data = randomBytes(MiB);
          await writeInChunks(join(dir, 'f'), data, chunk);
          assert.ok((await m.webGet(`${rel(dir)}/f`)).equals(data));
          assert.ok((await readFile(join(dir, 'f'))).equals(data));
          if (chunk > 128 * 1024) {
            // max_write of 1 MiB: the kernel hands over each 256 KiB write whole, not in 4 KiB or 128 KiB pieces.
            const writes = (await m.logRecords()).filter((r) => r.op === 'write' && typeof r.bytes === 'number' && r.path === `/${rel(dir)}/f`);
            assert.equal(writes.length, MiB / chunk, `FUSE write requests: ${writes.map((w) => w.bytes).join(', ')}`);
          }
        });
      }

      it('keeps the last of overlapping small and large writes', async () => {
        const dir = await m.freshDir('overlap');
        const expected = Buffer.alloc(300_000);
        const fh = await open(join(dir, 'f'), 'w');
        try {
          const writes: Array<[number, number]> = [[0, 300_000], [1000, 10], [5000, 200_000], [4999, 3], [150_000, 100_000], [299_990, 10]];
          for (const [off, len] of writes) {
            const chunk = randomBytes(len);
            chunk.copy(expected, off);
            await fh.write(chunk, 0, len, off);
          }
        } finally {
          await fh.close();
        }
        assert.ok((await m.webGet(`${rel(dir)}/f`)).equals(expected));
      });

      it('handles random scatter writes, holes read as zeros', async () => {
        const dir = await m.freshDir('scatter');
        const size = 700_000;
        const expected = Buffer.alloc(size);
        const fh = await open(join(dir, 'f'), 'w');
        try {
          let seed = 7;
          for (let i = 0; i < 200; i++) {
            seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
            const off = seed % (size - 5000);
            const len = 1 + (seed % 4999);
            const chunk = randomBytes(len);
            chunk.copy(expected, off);
            await fh.write(chunk, 0, len, off);
          }
          await fh.write(Buffer.from([1]), 0, 1, size - 1);
          expected[size - 1] = 1;
        } finally {
          await fh.close();
        }
        assert.ok((await m.webGet(`${rel(dir)}/f`)).equals(expected));
        assert.ok((await readFile(join(dir, 'f'))).equals(expected));
      });

      it('keeps the rest of a file on partial overwrite', async () => {
        const dir = await m.freshDir('partial');
        const data = randomBytes(200_000);
        await writeFile(join(dir, 'f'), data);
        const fh = await open(join(dir, 'f'), 'r+');
        const patch = randomBytes(1000);
        try {
          await fh.write(patch, 0, patch.length, 50_000);
        } finally {
          await fh.close();
        }
        patch.copy(data, 50_000);
        assert.ok((await m.webGet(`${rel(dir)}/f`)).equals(data));
        assert.ok((await readFile(join(dir, 'f'))).equals(data));
      });

      it('fsync and fdatasync store the bytes before close()', async () => {
        const dir = await m.freshDir('fsync');
        const fh = await open(join(dir, 'f'), 'w');
        try {
          await fh.write(Buffer.from('synced'));
          await fh.sync();
          assert.equal((await m.webGet(`${rel(dir)}/f`)).toString(), 'synced');
          await fh.write(Buffer.from(' again'));
          await fh.datasync();
          assert.equal((await m.webGet(`${rel(dir)}/f`)).toString(), 'synced again');
        } finally {
          await fh.close();
        }
      });

      it('appends', async () => {
        const dir = await m.freshDir('append');
        await writeFile(join(dir, 'log'), 'one\n');
        await appendFile(join(dir, 'log'), 'two\n');
        assert.equal((await m.webGet(`${rel(dir)}/log`)).toString(), 'one\ntwo\n');
      });

      it('shares one file between two handles as POSIX does', async () => {
        const dir = await m.freshDir('two-handles');
        const a = await open(join(dir, 'f'), 'w+');
        const b = await open(join(dir, 'f'), 'r+');
        try {
          await a.write(Buffer.from('AAAA'), 0, 4, 0);
          const seen = Buffer.alloc(4);
          await b.read(seen, 0, 4, 0);
          assert.equal(seen.toString(), 'AAAA');
          await b.write(Buffer.from('BB'), 0, 2, 2);
          const again = Buffer.alloc(4);
          await a.read(again, 0, 4, 0);
          assert.equal(again.toString(), 'AABB');
        } finally {
          await a.close();
          await b.close();
        }
        assert.equal((await m.webGet(`${rel(dir)}/f`)).toString(), 'AABB');
      });

      it('truncates, shorter and longer, by path and by handle', async () => {
        const dir = await m.freshDir('truncate');
        const data = randomBytes(100_000);
        await writeFile(join(dir, 'f'), data);
        await truncate(join(dir, 'f'), 10_000);
        assert.equal((await stat(join(dir, 'f'))).size, 10_000);
        assert.ok((await m.webGet(`${rel(dir)}/f`)).equals(data.subarray(0, 10_000)));
        await truncate(join(dir, 'f'), 20_000);
        const grown = Buffer.concat([data.subarray(0, 10_000), Buffer.alloc(10_000)]);
        assert.ok((await m.webGet(`${rel(dir)}/f`)).equals(grown));
        const fh = await open(join(dir, 'f'), 'r+');
        try {
          await fh.truncate(5);
        } finally {
          await fh.close();
        }
        assert.ok((await m.webGet(`${rel(dir)}/f`)).equals(data.subarray(0, 5)));
        await writeFile(join(dir, 'f'), '');
        assert.equal((await m.webGet(`${rel(dir)}/f`)).length, 0);
      });

      it('a length or an offset past the largest file is EFBIG (never EIO), and the file stays as it was', async () => {
        const dir = await m.freshDir('efbig');
        const f = join(dir, 'f');
        await writeFile(f, 'kept');
        const past = 999_999_999_999_999; // pjdfstest's truncate/12
        await expectErrno(truncate(f, past), 'EFBIG');
        const fh = await open(f, 'r+');
        try {
          await expectErrno(fh.truncate(past), 'EFBIG');
          await expectErrno(fh.write(Buffer.from('x'), 0, 1, past), 'EFBIG');
        } finally {
          await fh.close();
        }
        assert.equal((await readFile(f)).toString(), 'kept');
        assert.equal((await m.webGet(`${rel(dir)}/f`)).toString(), 'kept');
      });
    });

    describe('namespace', () => {
      it('makes and removes directories; rmdir refuses a non-empty one', async () => {
        const dir = await m.freshDir('dirs');
        await mkdir(join(dir, 'a'));
        await mkdir(join(dir, 'a', 'b'));
        await expectErrno(mkdir(join(dir, 'a')), 'EEXIST');
        await expectErrno(rmdir(join(dir, 'a')), 'ENOTEMPTY');
        await rmdir(join(dir, 'a', 'b'));
        await rmdir(join(dir, 'a'));
        assert.deepEqual(await readdir(dir), []);
        assert.deepEqual(Object.keys(await m.webList(rel(dir))), []);
      });

      it('rmdir sees an entry another client added', async () => {
        const dir = await m.freshDir('rmdir-fresh');
        await mkdir(join(dir, 'a'));
        await readdir(join(dir, 'a'));
        await m.webPut(`${rel(dir)}/a/late`, 'x');
        await expectErrno(rmdir(join(dir, 'a')), 'ENOTEMPTY');
      });

      it('unlinks files and gives the right errors', async () => {
        const dir = await m.freshDir('unlink');
        await writeFile(join(dir, 'f'), 'x');
        await mkdir(join(dir, 'd'));
        await unlink(join(dir, 'f'));
        assert.equal(await exists(join(dir, 'f')), false);
        assert.equal('f' in (await m.webList(rel(dir))), false);
        await expectErrno(unlink(join(dir, 'f')), 'ENOENT');
        await expectErrno(unlink(join(dir, 'd')), 'EISDIR');
        await expectErrno(rmdir(join(dir, 'missing')), 'ENOENT');
        await expectErrno(readFile(join(dir, 'missing')), 'ENOENT');
        await expectErrno(readdir(join(dir, 'd', 'nope')), 'ENOENT');
        await writeFile(join(dir, 'g'), 'x');
        await expectErrno(readdir(join(dir, 'g')), 'ENOTDIR');
        await expectErrno(writeFile(join(dir, 'g', 'h'), 'x'), 'ENOTDIR');
        await expectErrno(readFile(join(dir, 'd')), 'EISDIR');
        await expectErrno(rmdir(join(dir, 'g')), 'ENOTDIR');
      });

      it('renames files and directories, over existing targets and across directories', async () => {
        const dir = await m.freshDir('rename');
        await writeFile(join(dir, 'a'), 'A');
        await writeFile(join(dir, 'b'), 'B');
        await rename(join(dir, 'a'), join(dir, 'b'));
        assert.equal(await readFile(join(dir, 'b'), 'utf8'), 'A');
        assert.equal(await exists(join(dir, 'a')), false);
        await mkdir(join(dir, 'd1'));
        await mkdir(join(dir, 'd2'));
        await rename(join(dir, 'b'), join(dir, 'd1', 'moved'));
        assert.equal(await readFile(join(dir, 'd1', 'moved'), 'utf8'), 'A');
        await rename(join(dir, 'd1'), join(dir, 'd2', 'inner'));
        assert.equal(await readFile(join(dir, 'd2', 'inner', 'moved'), 'utf8'), 'A');
        assert.equal((await m.webGet(`${rel(dir)}/d2/inner/moved`)).toString(), 'A');
        await mkdir(join(dir, 'empty'));
        await rename(join(dir, 'd2'), join(dir, 'empty'));
        assert.deepEqual(await readdir(join(dir, 'empty')), ['inner']);
        await mkdir(join(dir, 'full'));
        await writeFile(join(dir, 'full', 'x'), 'x');
        await mkdir(join(dir, 'other'));
        await expectErrno(rename(join(dir, 'other'), join(dir, 'full')), 'ENOTEMPTY');
        await expectErrno(rename(join(dir, 'other'), join(dir, 'full', 'x')), 'ENOTDIR');
        await expectErrno(rename(join(dir, 'full', 'x'), join(dir, 'other')), 'EISDIR');
        await expectErrno(rename(join(dir, 'other'), join(dir, 'other', 'sub')), 'EINVAL');
        await expectErrno(rename(join(dir, 'nothing'), join(dir, 'x')), 'ENOENT');
      });

      it('keeps an unlinked or replaced file readable through its open handles, with no hidden files left', async () => {
        const dir = await m.freshDir('open-unlink');
        await writeFile(join(dir, 'gone'), 'still here');
        await writeFile(join(dir, 'replaced'), 'old content');
        await writeFile(join(dir, 'new'), 'new content');
        const a = await open(join(dir, 'gone'), 'r');
        const b = await open(join(dir, 'replaced'), 'r');
        try {
          await unlink(join(dir, 'gone'));
          await rename(join(dir, 'new'), join(dir, 'replaced'));
          assert.deepEqual(await readdir(dir), ['replaced']);
          assert.deepEqual(Object.keys(await m.webList(rel(dir))), ['replaced']);
          assert.equal((await a.readFile()).toString(), 'still here');
          assert.equal((await b.readFile()).toString(), 'old content');
          // Its last name gone, fstat says so (pjdfstest unlink/14).
          assert.equal((await a.stat()).nlink, 0);
          assert.equal((await b.stat()).nlink, 0);
        } finally {
          await a.close();
          await b.close();
        }
        assert.deepEqual(await readdir(dir), ['replaced']);
        assert.equal(await readFile(join(dir, 'replaced'), 'utf8'), 'new content');
      });

      it('renames a file that is still open for writing', async () => {
        const dir = await m.freshDir('rename-open');
        const fh = await open(join(dir, 'draft'), 'w');
        try {
          await fh.write(Buffer.from('first '));
          await rename(join(dir, 'draft'), join(dir, 'final'));
          await fh.write(Buffer.from('second'));
        } finally {
          await fh.close();
        }
        assert.equal((await m.webGet(`${rel(dir)}/final`)).toString(), 'first second');
        assert.equal('draft' in (await m.webList(rel(dir))), false);
      });

      it('an open racing renames over its name never fails: it opens one whole version (libfuse 2 gave ENOENT)', async () => {
        const dir = await m.freshDir('rename-race');
        const target = join(dir, 'target');
        await writeFile(target, 'version 0');
        const versions = 12;
        // Versions are written first (each close is an upload): the race is between renames and opens only.
        for (let v = 1; v <= versions; v++) await writeFile(join(dir, `next-${v}`), `version ${v}`);
        let renaming = true;
        const seen = new Set<string>();
        const readers = [0, 1, 2].map(async () => {
          while (renaming) seen.add(await readFile(target, 'utf8'));
        });
        for (let v = 1; v <= versions; v++) await rename(join(dir, `next-${v}`), target);
        renaming = false;
        await Promise.all(readers);
        for (const text of seen) assert.match(text, /^version \d+$/);
        assert.equal(await readFile(target, 'utf8'), `version ${versions}`);
      });

      it('hard-links a file under a second name', async () => {
        const dir = await m.freshDir('link');
        await writeFile(join(dir, 'a'), 'shared');
        await link(join(dir, 'a'), join(dir, 'b'));
        assert.equal(await readFile(join(dir, 'b'), 'utf8'), 'shared');
        assert.equal((await m.webGet(`${rel(dir)}/b`)).toString(), 'shared');
        await expectErrno(link(join(dir, 'a'), join(dir, 'b')), 'EEXIST');
      });

      it('handles names with spaces, unicode and URL-special characters', async () => {
        const dir = await m.freshDir('names');
        const names = ['with space', 'ünïcödé 日本語', 'q?x#y%z+w&a=b', ' lead and trail ', 'emoji 🐳'];
        for (const n of names) await writeFile(join(dir, n), n);
        assert.deepEqual((await readdir(dir)).sort(), [...names].sort());
        for (const n of names) {
          assert.equal(await readFile(join(dir, n), 'utf8'), n);
          assert.equal((await m.webGet(`${rel(dir)}/${n}`)).toString(), n);
        }
        await rename(join(dir, ' lead and trail '), join(dir, ' moved '));
        assert.equal(await readFile(join(dir, ' moved '), 'utf8'), ' lead and trail ');
        await rename(join(dir, 'emoji 🐳'), join(dir, 'emoji 🐋'));
        assert.equal(await readFile(join(dir, 'emoji 🐋'), 'utf8'), 'emoji 🐳');
        await expectErrno(stat(join(dir, 'ünïcödé missing')), 'ENOENT');
        // Tahoe keeps names in NFC: a decomposed (NFD) name must still be found once the listing is refetched.
        const nfd = 'cafe\u0301 de\u0301ja\u0300';
        await writeFile(join(dir, nfd), 'nfd');
        await m.webPut(`${rel(dir)}/marker`, 'm');
        await eventually('listing refetched', () => exists(join(dir, 'marker')));
        assert.equal(await readFile(join(dir, nfd), 'utf8'), 'nfd');
        assert.equal(await readFile(join(dir, nfd.normalize('NFC')), 'utf8'), 'nfd');
      });

      it('sets and keeps mtimes (utimens), accepts chmod and chown', async () => {
        const dir = await m.freshDir('times');
        await writeFile(join(dir, 'f'), 'x');
        const when = new Date('2001-02-03T04:05:06.789Z');
        await utimes(join(dir, 'f'), when, when);
        assert.equal((await stat(join(dir, 'f'))).mtime.getTime(), when.getTime());
        await chmod(join(dir, 'f'), 0o600);
        await chown(join(dir, 'f'), 0, 0);
        const listed = (await m.webList(rel(dir))).f![1];
        assert.equal(listed.metadata?.mtime, when.getTime() / 1000);
        await mkdir(join(dir, 'd'));
        await utimes(join(dir, 'd'), when, when);
        assert.equal((await stat(join(dir, 'd'))).mtime.getTime(), when.getTime());
      });

      it('answers statfs and access', async () => {
        await access(m.mountpoint, constants.W_OK);
        const out = await m.sh('df -P . | tail -1');
        assert.match(out.stdout, /blackmatch/);
      });

      it('shows files another client links once the directory cache times out', async () => {
        const dir = await m.freshDir('foreign');
        await readdir(dir);
        await m.webPut(`${rel(dir)}/from-elsewhere`, 'other client');
        await eventually('foreign file appears', () => exists(join(dir, 'from-elsewhere')));
        assert.equal(await readFile(join(dir, 'from-elsewhere'), 'utf8'), 'other client');
      });
    });

    describe('programs', () => {
      let src: string;
      before(async () => {
        src = await mkdtemp(join(tmpdir(), 'bm-src-'));
        await mkdir(join(src, 'tree', 'sub', 'deeper'), { recursive: true });
        await writeFile(join(src, 'tree', 'a.txt'), 'alpha\n');
        await writeFile(join(src, 'tree', 'sub', 'b.bin'), randomBytes(300_000));
        await writeFile(join(src, 'tree', 'sub', 'deeper', 'c with space'), 'gamma\n');
        await writeFile(join(src, 'tree', 'empty'), '');
        await mkdir(join(src, 'tree', 'empty-dir'));
      });
      after(async () => {
        await rm(src, { recursive: true, force: true });
      });

      it('cp -r a tree in and out, diff -r clean', async () => {
        const dir = await m.freshDir('cp');
        await m.sh(`cp -r ${q(join(src, 'tree'))} ${q(dir)}/`);
        await m.sh(`diff -r ${q(join(src, 'tree'))} ${q(join(dir, 'tree'))}`);
        const out = join(src, 'copied-back');
        await m.sh(`cp -r ${q(join(dir, 'tree'))} ${q(out)}`);
        await m.sh(`diff -r ${q(join(src, 'tree'))} ${q(out)}`);
        assert.ok((await m.webGet(`${rel(dir)}/tree/sub/b.bin`)).equals(await readFile(join(src, 'tree', 'sub', 'b.bin'))));
      });

      it('rsync -a twice: the second run copies nothing', async () => {
        const dir = await m.freshDir('rsync');
        await m.sh(`rsync -a ${q(join(src, 'tree'))}/ ${q(dir)}/`);
        await m.sh(`diff -r ${q(join(src, 'tree'))} ${q(dir)}`);
        const second = await m.sh(`rsync -a --itemize-changes ${q(join(src, 'tree'))}/ ${q(dir)}/`);
        assert.equal(second.stdout.trim().split('\n').filter((l) => /^[<>c]f/.test(l)).join('\n'), '', 'second rsync transferred files');
      });

      it('cp -a and tar x into the mount', async () => {
        const dir = await m.freshDir('tar');
        await m.sh(`cp -a ${q(join(src, 'tree'))} ${q(join(dir, 'cpa'))}`);
        await m.sh(`diff -r ${q(join(src, 'tree'))} ${q(join(dir, 'cpa'))}`);
        await m.sh(`tar -C ${q(src)} -cf ${q(join(src, 't.tar'))} tree && mkdir ${q(join(dir, 'untar'))} && tar -C ${q(join(dir, 'untar'))} -xf ${q(join(src, 't.tar'))}`);
        await m.sh(`diff -r ${q(join(src, 'tree'))} ${q(join(dir, 'untar', 'tree'))}`);
        // tar restores a directory's mtime alone (atime omitted): libfuse 2 dropped such a setattr.
        const times = (root: string) => m.sh(`cd ${q(root)} && find tree -type d -printf '%p %Ts\\n' | sort`).then((r) => r.stdout);
        assert.equal(await times(join(dir, 'untar')), await times(src));
      });

      it('git clone into the mount, then commit there', async () => {
        const dir = await m.freshDir('git');
        const git = `git -c user.email=t@example.invalid -c user.name=t -c init.defaultBranch=main`;
        const origin = join(src, 'origin');
        await m.sh(`${git} init -q ${q(origin)} && cd ${q(origin)} && echo hi > readme && ${git} add readme && ${git} commit -qm first`);
        await m.sh(`${git} clone -q ${q(origin)} clone && cd clone && echo more >> readme && ${git} commit -qam second && ${git} log --oneline | wc -l`, { cwd: dir });
        assert.equal(await readFile(join(dir, 'clone', 'readme'), 'utf8'), 'hi\nmore\n');
        const count = await m.sh(`git log --oneline | wc -l`, { cwd: join(dir, 'clone') });
        assert.equal(count.stdout.trim(), '2');
      });
    });
  });
}

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
