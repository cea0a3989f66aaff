// Process identity (src/process/alive.ts): a pid plus its start, so that a reused pid is never taken for ours.
import assert from 'node:assert/strict';
import { chmod, copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { identityOf, isAlive, selfIdentity } from '../../src/process/alive.js';
import { kill, parentOfUnreaped, sleeper, strangerWithMainJs, until } from '../support/processes.js';

/** Above the largest pid_max Linux allows (2^22): never a process. */
const NO_SUCH_PID = 2 ** 22 + 12345;

describe('process identity', () => {
  it('knows this process; a pid-only record of an earlier version with our pid is not ours', async () => {
    const me = selfIdentity();
    const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    assert.equal(me.pid, process.pid);
    assert.match(me.start, new RegExp(`^${bootId}:\\d+$`));
    assert.deepEqual(await identityOf(process.pid), me);
    assert.equal(await isAlive(me), true);
    assert.equal(await isAlive({ pid: process.pid, start: '' }), false, 'a v1 record: its process was an earlier one (we write a start)');
    assert.equal(await isAlive({ pid: process.pid, start: `${bootId}:1` }), false, 'our pid, but another start: an earlier process');
  });

  it('does not take a live stranger whose command line holds main.js for the process a record names', async () => {
    const stranger = await strangerWithMainJs();
    try {
      const pid = stranger.pid!;
      const now = await identityOf(pid);
      assert.ok(now);
      assert.equal(await isAlive(now), true, 'the process itself is alive');
      const [bootId, ticks] = now.start.split(':') as [string, string];
      // What a record left by our process that had this pid before holds: the same pid, an earlier start.
      assert.equal(await isAlive({ pid, start: `${bootId}:${Number(ticks) - 1}` }), false);
      assert.equal(await isAlive({ pid, start: `00000000-0000-0000-0000-000000000000:${ticks}` }), false, 'same start, another boot');
      assert.equal(await isAlive({ pid, start: '' }), false, 'a pid-only record of the previous version');
    } finally {
      await kill(stranger);
    }
  });

  it('reads the start of a process whose name holds spaces and parentheses', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bm-alive-'));
    const odd = join(dir, 'a) b (c');
    await copyFile('/bin/sleep', odd);
    await chmod(odd, 0o755);
    const child = await sleeper(odd);
    try {
      const stat = await readFile(`/proc/${child.pid}/stat`, 'utf8');
      assert.ok(stat.includes('(a) b (c)'), stat);
      const ticks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
      const id = await identityOf(child.pid!);
      assert.equal(id?.start.split(':')[1], ticks);
      assert.equal(await isAlive(id!), true);
    } finally {
      await kill(child);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('counts a zombie, and a pid with no process, as dead', async () => {
    const { parent, childPid } = await parentOfUnreaped();
    try {
      const id = await identityOf(childPid);
      assert.ok(id);
      assert.equal(await isAlive(id), true);
      process.kill(childPid, 'SIGKILL');
      // Its parent never reaps it: it stays a zombie until the parent goes.
      await until('the child is a zombie', async () => / Z /.test(await readFile(`/proc/${childPid}/stat`, 'utf8')));
      assert.equal(await isAlive(id), false);
      assert.equal(await identityOf(childPid), undefined);
    } finally {
      await kill(parent);
    }
    assert.equal(await identityOf(NO_SUCH_PID), undefined);
    assert.equal(await isAlive({ pid: NO_SUCH_PID, start: selfIdentity().start }), false);
  });
});
