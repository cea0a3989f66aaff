// Mount at boot (issue 12): an fstab line through mount(8) and mount.fuse3 in both modes (mount -T, mount -a,
// umount), bad fstab lines, the systemd unit in contrib/ (systemd-analyze verify, then its Exec lines run as
// systemd would, a restart after the client is killed included), and a copy installed with npm install -g from
// an npm pack tarball. Each mounts the real grid and leaves nothing mounted or running.
import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, readFile, readlink, realpath, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, it } from 'node:test';
import { BootScratch, execLine, mountEntry, parseUnit, STANDARD_PATH } from '../support/boot.js';
import { blackmatchProcesses, encodePath, eventually, isMountpoint, MODES, REPO_ROOT } from '../../grid/mount.js';
import { describeWithGrid } from '../support/test-grid.js';
import { mustRun, openPathToOthers, runChild } from '../support/posix.js';

/** A user every Debian has: setuid= takes a name. */
const NOBODY = { uid: 65534, gid: 65534 };

describeWithGrid('mount at boot', (grid) => {
  let scratch: BootScratch;
  before(async () => {
    scratch = await BootScratch.create();
  });
  after(async () => {
    await scratch?.cleanup();
  });

  const processesOf = async (mountpoint: string) => (await blackmatchProcesses()).filter((p) => p.args.includes(mountpoint));

  /** The file's bytes as the web API serves them, by path under the root. */
  async function webGet(rootCap: string, relPath: string): Promise<string> {
    const res = await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(rootCap)}/${encodePath(relPath)}`, { signal: AbortSignal.timeout(60_000) });
    assert.equal(res.status, 200, `GET ${relPath}`);
    return res.text();
  }

  /** Writes through the mount and reads it back from the web API: the mount is live and stores in the grid. */
  async function writeAndCheck(mountpoint: string, rootCap: string, name: string): Promise<void> {
    await writeFile(join(mountpoint, name), `${name} through ${mountpoint}`);
    assert.equal(await webGet(rootCap, name), `${name} through ${mountpoint}`);
  }

  async function unmountedAndGone(mountpoint: string): Promise<void> {
    await eventually(`every process of ${mountpoint} exits`, async () => (await processesOf(mountpoint)).length === 0, 30_000);
    assert.equal(await isMountpoint(mountpoint), false);
  }

  for (const mode of MODES) {
    it(`an fstab line mounts with mount -T, again with mount -a is a no-op, and umount ends every process (${mode})`, async () => {
      const { nodeDir, rootCap } = await scratch.nodeDir(grid.gatewayUrl, `node-fstab-${mode}`);
      const mnt = await scratch.mountpoint(`fstab-${mode}`);
      const fstab = join(scratch.workDir, `fstab-${mode}`);
      const ours = `node-directory=${nodeDir},cache_timeout=1,log-level=debug${mode === 'no-split' ? ',no-split' : ''}`;
      await writeFile(fstab, `# a scratch fstab\ntahoe: ${mnt} fuse.blackmatch ${ours},_netdev,nofail,x-systemd.after=tahoe.service 0 0\n`);

      const r = await scratch.inStandardPath('mount', ['-T', fstab, mnt]);
      assert.equal(r.code, 0, `mount: ${r.stderr}`);
      assert.equal(r.stderr, '');
      // mount returned: the mount is live at once.
      const entry = await mountEntry(mnt);
      assert.deepEqual([entry?.source, entry?.type], ['tahoe:', 'fuse.blackmatch']);
      for (const o of ['nosuid', 'nodev']) assert.ok(entry!.options.includes(o), `${o} in ${entry!.options.join(',')}`);
      const procs = await processesOf(mnt);
      assert.equal(procs.length, mode === 'split' ? 2 : 1, procs.map((p) => p.args.join(' ')).join('\n'));
      assert.equal(procs.filter((p) => p.args.includes('--server')).length, mode === 'split' ? 1 : 0);
      await writeAndCheck(mnt, rootCap, 'from-fstab');

      const again = await scratch.inStandardPath('mount', ['-a', '-T', fstab]);
      assert.equal(again.code, 0, `mount -a: ${again.stderr}`);
      assert.equal((await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.split(' ')[4] === mnt).length, 1);
      assert.equal((await processesOf(mnt)).length, procs.length);

      const u = await runChild('umount', [mnt], { timeoutMs: 30_000 });
      assert.equal(u.code, 0, `umount: ${u.stderr}`);
      await unmountedAndGone(mnt);
    });
  }

  it('setuid=USER in the fstab line runs blackmatch as that user, with its node directory', async () => {
    // The user must reach the mountpoint and the shim: /tmp may be 0700, /var/tmp is open to all. The program
    // itself is this checkout, wherever it was cloned: opened to others for the test.
    const other = await BootScratch.create('/var/tmp');
    const restoreModes = await openPathToOthers(REPO_ROOT);
    try {
      const { nodeDir, rootCap } = await other.nodeDir(grid.gatewayUrl, 'node-nobody');
      const mnt = await other.mountpoint('nobody');
      await mustRun('chown', ['-R', `${NOBODY.uid}:${NOBODY.gid}`, nodeDir, mnt]);
      const fstab = join(other.workDir, 'fstab-nobody');
      await writeFile(fstab, `tahoe: ${mnt} fuse.blackmatch node-directory=${nodeDir},setuid=nobody,_netdev 0 0\n`);
      // A user's mount opens /dev/fuse (fusermount3 then mounts): Debian makes it 0666, this container 0600.
      const devMode = (await stat('/dev/fuse')).mode & 0o777;
      if ((devMode & 0o006) !== 0o006) await chmod('/dev/fuse', devMode | 0o006);
      let r;
      try {
        r = await other.inStandardPath('mount', ['-T', fstab, mnt]);
      } finally {
        await chmod('/dev/fuse', devMode); // the client holds its descriptor: nothing else needs it open
      }
      assert.equal(r.code, 0, `mount: ${r.stderr}`);
      const procs = await processesOf(mnt);
      assert.equal(procs.length, 2);
      for (const p of procs) assert.match(await readFile(`/proc/${p.pid}/status`, 'utf8'), new RegExp(`\nUid:\t${NOBODY.uid}\t`));
      assert.ok((await mountEntry(mnt))!.options.includes(`user_id=${NOBODY.uid}`));
      // Without allow_other only the mount's user may use it (root too is kept out).
      await mustRun('sh', ['-c', 'echo "as nobody" > "$0/f" && cat "$0/f"', mnt], { uid: NOBODY.uid, gid: NOBODY.gid });
      assert.equal(await webGet(rootCap, 'f'), 'as nobody\n');
      const u = await runChild('umount', [mnt], { timeoutMs: 30_000 });
      assert.equal(u.code, 0, `umount: ${u.stderr}`);
      await unmountedAndGone(mnt);
    } finally {
      await other.cleanup();
      await restoreModes();
    }
  });

  it('a bad fstab line fails with one line from blackmatch, mounting nothing; a cap as SOURCE is refused', async () => {
    const { nodeDir, rootCap } = await scratch.nodeDir(grid.gatewayUrl, 'node-bad');
    const cases: Array<[string, RegExp]> = [
      ['nosuch:', /^blackmatch: unknown alias "nosuch"/],
      [rootCap, /^blackmatch: a cap in fstab or -o would be readable by every user/],
    ];
    for (const [i, [source, message]] of cases.entries()) {
      const mnt = await scratch.mountpoint(`bad-${i}`);
      const fstab = join(scratch.workDir, `fstab-bad-${i}`);
      await writeFile(fstab, `${source} ${mnt} fuse.blackmatch node-directory=${nodeDir},_netdev 0 0\n`);
      const r = await scratch.inStandardPath('mount', ['-T', fstab, mnt]);
      assert.notEqual(r.code, 0);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, message);
      assert.ok(!r.stderr.includes(rootCap), 'the cap was printed');
      await unmountedAndGone(mnt);
    }
  });

  it('the systemd unit verifies, its Exec lines mount and unmount, and a restart after the client is killed mounts again', async () => {
    const unitText = await readFile(join(REPO_ROOT, 'contrib', 'blackmatch@.service'), 'utf8');
    const unit = parseUnit(unitText);
    assert.deepEqual(unit.Service!.Type, ['forking']);
    assert.deepEqual(unit.Service!.Restart, ['on-failure']);
    assert.ok(unit.Unit!.After![0]!.split(/\s+/).includes('network-online.target'));
    assert.deepEqual(unit.Service!.EnvironmentFile, ['-/etc/blackmatch/%i.conf']);

    const { nodeDir, rootCap } = await scratch.nodeDir(grid.gatewayUrl, 'node-unit');
    const mnt = await scratch.mountpoint('unit');
    const instance = (await mustRun('systemd-escape', ['--path', mnt])).trim();
    assert.equal((await mustRun('systemd-escape', ['--unescape', '--path', instance])).trim(), mnt);

    // systemd's own check of the unit, instantiated, in a namespace where `blackmatch` is on its search path.
    const unitDir = join(scratch.workDir, 'units');
    await mkdir(unitDir);
    await writeFile(join(unitDir, `blackmatch@${instance}.service`), unitText);
    const verify = await scratch.inStandardPath('systemd-analyze', ['verify', join(unitDir, `blackmatch@${instance}.service`)]);
    assert.equal(verify.code, 0, verify.stderr);
    assert.equal(verify.stderr, '', 'systemd-analyze verify had something to say');

    // The instance's options, as /etc/blackmatch/INSTANCE.conf would hold them (the test writes its own copy).
    const env: Record<string, string> = {};
    for (const e of unit.Service!.Environment ?? []) env[e.slice(0, e.indexOf('='))] = e.slice(e.indexOf('=') + 1);
    env.BLACKMATCH_OPTIONS = `--node-directory ${nodeDir} --alias tahoe --cache-timeout 1`;
    const specifiers = { i: instance, f: mnt };
    // As systemd runs them: its search path for the command (ours first), a plain environment.
    const run = async (key: string) => {
      for (const line of unit.Service![key] ?? []) {
        const { ignoreFailure, argv } = execLine(line, env, specifiers);
        const r = await runChild(argv[0]!, argv.slice(1), { env: { PATH: `${scratch.binDir}:${STANDARD_PATH}`, LANG: 'C.UTF-8' }, timeoutMs: 120_000 });
        if (!ignoreFailure) assert.equal(r.code, 0, `${key}=${line}: ${r.stderr}`);
      }
    };
    const start = async () => {
      await run('ExecStartPre');
      await run('ExecStart');
    };

    await start();
    assert.deepEqual(execLine(unit.Service!.ExecStart![0]!, env, specifiers).argv, ['blackmatch', '--node-directory', nodeDir, '--alias', 'tahoe', '--cache-timeout', '1', mnt]);
    await writeAndCheck(mnt, rootCap, 'from-unit');

    // The main process systemd watches is the client; killed, the mount is dead until ExecStartPre detaches it.
    const client = (await processesOf(mnt)).find((p) => !p.args.includes('--server'));
    assert.ok(client, 'no client process');
    process.kill(client.pid, 'SIGKILL');
    await eventually('the server exits after its client', async () => (await processesOf(mnt)).length === 0, 30_000);
    await assert.rejects(stat(mnt), (e: NodeJS.ErrnoException) => e.code === 'ENOTCONN');
    await start();
    assert.equal(await readFile(join(mnt, 'from-unit'), 'utf8'), `from-unit through ${mnt}`);
    await writeAndCheck(mnt, rootCap, 'after-restart');

    await run('ExecStop');
    await unmountedAndGone(mnt);
  });

  it('npm pack, then npm install -g of the tarball, puts blackmatch on PATH with its run bit; the installed copy mounts', async () => {
    const npmDir = join(scratch.workDir, 'npm');
    // "-I" in the path: flags split out of pkg-config's answer must not cut it (a temp name once held "-I").
    const prefix = join(npmDir, 'pre-Ifix');
    await mkdir(npmDir);
    // dist is already built for this run; pack's prepare script would only build it again under the running suite.
    await mustRun('npm', ['pack', '--ignore-scripts', '--pack-destination', npmDir], { cwd: REPO_ROOT, timeoutMs: 120_000 });
    const version = (JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    const tarball = join(npmDir, `blackmatch-${version}.tgz`);
    const started = Date.now();
    // The install script builds the FUSE binding for the installed copy (libfuse and node-gyp): not the repo's.
    await mustRun('npm', ['install', '-g', '--prefer-offline', '--no-audit', '--no-fund', '--prefix', prefix, tarball], { timeoutMs: 600_000 });
    console.log(`# npm install -g of the tarball took ${((Date.now() - started) / 1000).toFixed(0)} s`);

    const bin = join(prefix, 'bin', 'blackmatch');
    const installed = join(prefix, 'lib', 'node_modules', 'blackmatch');
    assert.ok((await lstat(bin)).isSymbolicLink());
    assert.equal(resolve(join(prefix, 'bin'), await readlink(bin)), join(installed, 'dist', 'src', 'cli', 'main.js'));
    assert.equal((await stat(bin)).mode & 0o111, 0o111, 'run bit');
    assert.match(await readFile(bin, 'utf8'), /^#!\/usr\/bin\/env node\n/);
    const addon = join(installed, 'native', 'fuse3', 'build', 'Release', 'blackmatch_fuse3.node');
    assert.ok((await stat(addon)).isFile(), 'the installed copy has its own FUSE binding');

    // Run as a command (its #! line), found on PATH.
    const PATH = `${join(prefix, 'bin')}:${process.env.PATH}`;
    const v = await runChild('blackmatch', ['--version'], { env: { ...process.env, PATH }, timeoutMs: 30_000 });
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout.toString(), new RegExp(`^${version.replace(/\./g, '\\.')} \\(libfuse 3\\.[0-9]+`));

    const { nodeDir, rootCap } = await scratch.nodeDir(grid.gatewayUrl, 'node-installed');
    const mnt = await scratch.mountpoint('installed');
    const m = await runChild('blackmatch', ['--node-directory', nodeDir, mnt], { env: { ...process.env, PATH }, timeoutMs: 120_000 });
    assert.equal(m.code, 0, m.stderr);
    await writeAndCheck(mnt, rootCap, 'from-installed');
    // The client serving the mount runs the installed copy: its FUSE binding is the one it loaded.
    const client = (await processesOf(mnt)).find((p) => !p.args.includes('--server'));
    assert.ok(client, 'no client process');
    assert.ok((await readFile(`/proc/${client.pid}/maps`, 'utf8')).includes(await realpath(addon)), 'the client did not load the installed binding');
    await mustRun('fusermount3', ['-u', mnt], { timeoutMs: 30_000 });
    await unmountedAndGone(mnt);
  });
});
