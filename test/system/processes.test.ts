// Split mode's processes: the server follows the client out, a dead server fails operations fast,
// --server-shutdown, a stale socket, a second mount of the same root, a socket path too long.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { promisify } from 'node:util';
import { eventually, isMountpoint, runCli, TestMount } from '../../grid/mount.js';
import { describeWithGrid } from '../support/test-grid.js';

const run = promisify(execFile);


async function clientPid(m: TestMount): Promise<number> {
  const server = await m.serverPid();
  const others = (await m.pids()).filter((p) => p !== server);
  assert.equal(others.length, 1, `expected one client process, found ${others.join(', ')}`);
  return others[0]!;
}

describeWithGrid('split-mode processes', (grid) => {
  it('the server exits soon after the client is SIGKILLed, and the mountpoint can be mounted again', async () => {
    const m = await TestMount.start({ mode: 'split', gatewayUrl: grid.gatewayUrl });
    try {
      const server = await m.serverPid();
      process.kill(await clientPid(m), 'SIGKILL');
      await eventually('server exits', async () => !(await stat(`/proc/${server}`).then(() => true, () => false)), 30_000);
      await run('fusermount', ['-u', m.mountpoint]);
      const again = await runCli(['--node-directory', m.nodeDir, m.mountpoint]);
      assert.equal(again.code, 0, again.stderr);
      await writeFile(m.path('after-restart'), 'ok');
      assert.equal((await m.webGet('after-restart')).toString(), 'ok');
    } finally {
      await m.cleanup();
    }
  });

  it('operations fail fast with ENOTCONN once the server is SIGKILLed; fusermount -u ends the client', async () => {
    const m = await TestMount.start({ mode: 'split', gatewayUrl: grid.gatewayUrl });
    try {
      await writeFile(m.path('f'), 'x');
      process.kill(await m.serverPid(), 'SIGKILL');
      await m.watch('stat after server death', () =>
        eventually('operations fail', () => stat(m.path('f')).then(() => false, (e: NodeJS.ErrnoException) => e.code === 'ENOTCONN'), 30_000),
      30_000);
      await assert.rejects(m.watch('read', () => readFile(m.path('f')), 30_000), (e: NodeJS.ErrnoException) => e.code === 'ENOTCONN');
      await run('fusermount', ['-u', m.mountpoint]);
      await eventually('client exits', async () => (await m.pids()).length === 0, 30_000);
    } finally {
      await m.cleanup();
    }
  });

  it('--server-shutdown unmounts and stops the server; with none running it fails clearly', async () => {
    const m = await TestMount.start({ mode: 'split', gatewayUrl: grid.gatewayUrl });
    try {
      await writeFile(m.path('kept'), 'kept');
      const res = await runCli(['--node-directory', m.nodeDir, '--server-shutdown']);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /stopped the server for "tahoe"/);
      await eventually('every process exits', async () => (await m.pids()).length === 0, 30_000);
      assert.equal(await isMountpoint(m.mountpoint), false);
      assert.equal((await m.webGet('kept')).toString(), 'kept');
      const none = await runCli(['--node-directory', m.nodeDir, '--server-shutdown']);
      assert.notEqual(none.code, 0);
      assert.match(none.stderr, /no blackmatch server is running for "tahoe"/);
    } finally {
      await m.cleanup();
    }
  });

  it('replaces a stale socket, and refuses a second mount of the same root naming where it is mounted', async () => {
    const work = await mkdtemp(join(tmpdir(), 'bm-stale-'));
    const m = await TestMount.start({ mode: 'split', gatewayUrl: grid.gatewayUrl });
    try {
      // Leave a socket nobody listens on, as a SIGKILLed server would, then mount over it.
      await run('fusermount', ['-u', m.mountpoint]);
      await eventually('processes exit', async () => (await m.pids()).length === 0, 30_000);
      const socketPath = join(m.nodeDir, 'tfuse.sockets', 'tahoe');
      await run('python3', ['-c', `import socket; s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(socketPath)})`]);
      assert.ok((await stat(socketPath)).isSocket());
      const again = await runCli(['--node-directory', m.nodeDir, m.mountpoint]);
      assert.equal(again.code, 0, again.stderr);
      const st = await stat(socketPath);
      assert.equal(st.mode & 0o777, 0o600);
      assert.equal((await stat(join(m.nodeDir, 'tfuse.sockets'))).mode & 0o777, 0o700);
      const other = join(work, 'mnt2');
      await mkdir(other);
      const second = await runCli(['--node-directory', m.nodeDir, other]);
      assert.notEqual(second.code, 0);
      assert.match(second.stderr, new RegExp(`already mounted at ${m.mountpoint}`));
      assert.equal(await isMountpoint(other), false);
    } finally {
      await m.cleanup();
      await rm(work, { recursive: true, force: true });
    }
  });

  it('takes relative paths on the command line; --server-shutdown then unmounts the right place', async () => {
    const m = await TestMount.start({ mode: 'split', gatewayUrl: grid.gatewayUrl });
    try {
      await run('fusermount', ['-u', m.mountpoint]);
      await eventually('processes exit', async () => (await m.pids()).length === 0, 30_000);
      const res = await runCli(['--node-directory', 'node', 'mnt'], 120_000, m.workDir);
      assert.equal(res.code, 0, res.stderr);
      await writeFile(m.path('relative'), 'ok');
      assert.equal((await m.webGet('relative')).toString(), 'ok');
      const stop = await runCli(['--node-directory', 'node', '--server-shutdown'], 120_000, m.workDir);
      assert.equal(stop.code, 0, stop.stderr);
      assert.match(stop.stdout, new RegExp(`mounted at ${m.mountpoint}`));
      await eventually('unmounted', async () => !(await isMountpoint(m.mountpoint)), 30_000);
    } finally {
      await m.cleanup();
    }
  });

  it('refuses a node directory whose socket path is too long for a unix socket', async () => {
    const deep = await mkdtemp(join(tmpdir(), 'bm-long-'));
    try {
      const nodeDir = join(deep, 'n'.repeat(60), 'm'.repeat(40));
      await mkdir(join(nodeDir, 'private'), { recursive: true });
      const cap = (await (await fetch(`${grid.gatewayUrl}uri?t=mkdir`, { method: 'POST' })).text()).trim();
      await writeFile(join(nodeDir, 'node.url'), grid.gatewayUrl);
      await writeFile(join(nodeDir, 'private', 'aliases'), `tahoe: ${cap}\n`);
      await mkdir(join(deep, 'mnt'));
      const res = await runCli(['--node-directory', nodeDir, join(deep, 'mnt')]);
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, /over the 107 a unix socket allows/);
      assert.equal(await isMountpoint(join(deep, 'mnt')), false);
    } finally {
      await rm(deep, { recursive: true, force: true });
    }
  });
});
