// The command line and the mount's life: clear one-line errors that leave nothing behind, unmount that ends
// every process, read-only caps, the directory cache's trust window, and caps kept out of logs.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { encodeBase32 } from '../../src/tahoe/base32.js';
import { mkdirCap } from '../../grid/local-grid.js';
import { blackmatchProcesses, eventually, isMountpoint, MODES, runCli, TestMount } from '../../grid/mount.js';
import { expectErrno } from '../support/assert-fs.js';
import { describeWithGrid } from '../support/test-grid.js';

const execFileP = promisify(execFile);


/** A well-formed writable directory cap that names nothing on any grid. */
function randomDirCap(): string {
  return `URI:DIR2:${encodeBase32(randomBytes(16))}:${encodeBase32(randomBytes(32))}`;
}

describeWithGrid('mount lifecycle', (grid) => {
  let work: string;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'bm-cli-'));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  async function nodeDir(aliases: string): Promise<string> {
    const dir = await mkdtemp(join(work, 'node-'));
    await mkdir(join(dir, 'private'));
    await writeFile(join(dir, 'node.url'), grid.gatewayUrl + '\n');
    await writeFile(join(dir, 'private', 'aliases'), aliases);
    return dir;
  }

  describe('bad command lines fail with one line, mounting nothing', () => {
    const cases: Array<[string, (mnt: string, nd: string, cap: string) => string[], RegExp]> = [
      ['unknown option', (mnt, nd) => ['--node-directory', nd, '--bogus', mnt], /unknown option/],
      ['garbage cap', (mnt, nd) => ['--node-directory', nd, '--root-uri', 'URI:nonsense', mnt], /bad --root-uri/],
      ['file cap as root', (mnt, nd) => ['--node-directory', nd, '--root-uri', 'URI:LIT:nbswy3dp', mnt], /names a file, not a directory/],
      ['unknown alias', (mnt, nd) => ['--node-directory', nd, '--alias', 'nosuch', mnt], /unknown alias "nosuch"/],
      ['unreachable node', (mnt, nd) => ['--node-directory', nd, '--node-url', 'http://127.0.0.1:1/', mnt], /not reachable/],
      ['missing mountpoint', (_mnt, nd) => ['--node-directory', nd, join(work, 'does-not-exist')], /does not exist/],
      ['missing node directory', (mnt) => ['--node-directory', join(work, 'no-node-dir'), mnt], /node\.url/],
      ['a directory cap that is not on the grid', (mnt, nd) => ['--node-directory', nd, '--root-uri', randomDirCap(), mnt], /cannot list the root directory/],
    ];
    for (const mode of MODES) {
      for (const [name, argv, message] of cases) {
        it(`${name} (${mode})`, async () => {
          const cap = await mkdirCap(grid.gatewayUrl);
          const nd = await nodeDir(`tahoe: ${cap}\n`);
          const mnt = await mkdtemp(join(work, 'mnt-'));
          const args = [...argv(mnt, nd, cap), ...(mode === 'no-split' ? ['--no-split'] : [])];
          const res = await runCli(args);
          assert.notEqual(res.code, 0, `exit code for ${name}`);
          const lines = res.stderr.trim().split('\n').filter((l) => l.trim() !== '' && !l.startsWith('(run blackmatch'));
          assert.equal(lines.length, 1, `one line expected, got:\n${res.stderr}`);
          assert.match(lines[0]!, message);
          assert.ok(!res.stderr.includes(cap), 'a cap leaked into the error');
          assert.equal(await isMountpoint(mnt), false);
          assert.deepEqual((await blackmatchProcesses()).filter((p) => p.args.includes(nd)), [], 'a process was left running');
        });
      }
    }
  });

  for (const mode of MODES) {
    describe(`life of a mount (${mode})`, () => {
      it('mounts on a mountpoint reached through a symlink, and stays mounted', async () => {
        const real = await mkdtemp(join(work, 'real-'));
        const link = join(work, `link-${mode}`);
        await symlink(real, link);
        const cap = await mkdirCap(grid.gatewayUrl);
        const nd = await nodeDir(`tahoe: ${cap}\n`);
        const res = await runCli(['--node-directory', nd, ...(mode === 'no-split' ? ['--no-split'] : []), link]);
        assert.equal(res.code, 0, res.stderr);
        try {
          // Long enough for the unmount watcher to have looked at the mount table a few times.
          await new Promise((r) => setTimeout(r, 2_000));
          await writeFile(join(link, 'f'), 'through the link');
          assert.equal(await readFile(join(real, 'f'), 'utf8'), 'through the link');
          assert.ok(await isMountpoint(real));
        } finally {
          await runCli(['--node-directory', nd, '--server-shutdown']).catch(() => undefined);
          if (await isMountpoint(real)) await execFileP('fusermount', ['-u', real]);
          await eventually('processes exit', async () => (await blackmatchProcesses()).filter((p) => p.args.includes(nd)).length === 0, 30_000);
        }
      });

      it('refuses a second mount of the same root, in either mode, naming where it is mounted', async () => {
        const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl });
        try {
          for (const other of MODES) {
            const mnt = await mkdtemp(join(work, 'second-'));
            const res = await runCli(['--node-directory', m.nodeDir, ...(other === 'no-split' ? ['--no-split'] : []), mnt]);
            assert.notEqual(res.code, 0, `a ${other} mount of the same root succeeded`);
            assert.match(res.stderr, new RegExp(`already mounted at ${m.mountpoint}`));
            assert.equal(await isMountpoint(mnt), false);
          }
          await writeFile(m.path('still'), 'fine');
          assert.equal((await m.webGet('still')).toString(), 'fine');
        } finally {
          await m.cleanup();
        }
      });

      it('refuses a second mount on the same mountpoint, and fusermount -u ends every process', async () => {
        const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl });
        try {
          assert.ok((await m.pids()).length >= 1);
          const again = await runCli(['--node-directory', m.nodeDir, ...(mode === 'no-split' ? ['--no-split'] : []), m.mountpoint]);
          assert.notEqual(again.code, 0);
          assert.match(again.stderr, /already mounted/);
          await m.sh(`fusermount -u ${m.mountpoint}`, { cwd: '/' });
          await eventually('every process of the mount exits', async () => (await m.pids()).length === 0, 30_000);
          assert.equal(await isMountpoint(m.mountpoint), false);
        } finally {
          await m.cleanup();
        }
      });

      it('mounts by --root-uri and never writes the cap into its logs', async () => {
        const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, byRootUri: true });
        try {
          await writeFile(m.path('f'), 'x');
          const logs = (await readdir(m.nodeDir)).filter((n) => n.endsWith('.log'));
          assert.ok(logs.length > 0);
          for (const name of logs) {
            assert.match(name, /^tfuse\.uri_[0-9a-f]+\./);
            const text = await readFile(join(m.nodeDir, name), 'utf8');
            assert.ok(!text.includes(m.rootCap), `${name} contains the root cap`);
            assert.ok(!/URI:(CHK|LIT|DIR2):[a-z2-7]{8}/.test(text), `${name} contains a cap`);
          }
        } finally {
          await m.cleanup();
        }
      });

      it('serves a read-only cap read-only: EROFS on every write', async () => {
        const rw = await mkdirCap(grid.gatewayUrl);
        await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(rw)}/f`, { method: 'PUT', body: 'read me' });
        await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(rw)}/d?t=mkdir`, { method: 'POST' });
        const json = (await (await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(rw)}?t=json`)).json()) as [string, { ro_uri: string }];
        const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, rootCap: json[1].ro_uri, byRootUri: true });
        try {
          assert.equal(await readFile(m.path('f'), 'utf8'), 'read me');
          assert.equal((await stat(m.path('f'))).mode & 0o222, 0);
          assert.equal((await stat(m.path('d'))).mode & 0o222, 0);
          await expectErrno(writeFile(m.path('g'), 'x'), 'EROFS');
          await expectErrno(writeFile(m.path('f'), 'x'), 'EROFS');
          await expectErrno(mkdir(m.path('e')), 'EROFS');
          await expectErrno(unlink(m.path('f')), 'EROFS');
          await expectErrno(rename(m.path('f'), m.path('h')), 'EROFS');
          await expectErrno(writeFile(m.path('d', 'x'), 'x'), 'EROFS');
          // A refused write-open leaves nothing behind: a change made elsewhere still shows.
          await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(rw)}/f`, { method: 'PUT', body: 'version two' });
          await eventually('the new version shows', async () => (await readFile(m.path('f'), 'utf8')) === 'version two');
        } finally {
          await m.cleanup();
        }
      });

      it('trusts a listing for --cache-timeout: another client\'s file stays unseen within it', async () => {
        const m = await TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, cacheTimeout: 3600 });
        try {
          await mkdir(m.path('d'));
          assert.deepEqual(await readdir(m.path('d')), []);
          await m.webPut('d/elsewhere', 'x');
          assert.deepEqual(await readdir(m.path('d')), [], 'listing refetched before the cache timeout');
          // Our own changes are seen at once, whatever the timeout.
          await writeFile(m.path('d', 'mine'), 'y');
          assert.deepEqual(await readdir(m.path('d')), ['mine']);
        } finally {
          await m.cleanup();
        }
      });
    });
  }
});
