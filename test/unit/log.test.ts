// The log on a full disk: lines are dropped or wait, the process goes on (an unwritable log once crashed it).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createLogger } from '../../src/log.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;

describe('log on a full disk', { skip: isRoot ? false : 'needs root to mount a small tmpfs' }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bm-log-'));
    await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
  });
  after(async () => {
    await run('umount', ['-l', dir]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps the process alive when its log file cannot grow, and writes again once there is room', async () => {
    const file = join(dir, 'x.log');
    const log = createLogger(file, 'info');
    for (let i = 0; i < 2000; i++) log.info({ i, pad: 'x'.repeat(200) }, 'a line');
    // Give the asynchronous writes every chance to fail (an unhandled 'error' would end this process).
    for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok((await stat(file)).size <= 64 * 1024);
    // Room again: logging resumes with the lines that waited (the new line queues behind them).
    await run('sh', ['-c', `: > ${file}`]);
    log.info('after the disk had room again');
    for (let i = 0; i < 100 && (await stat(file)).size === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok((await stat(file)).size > 0, 'lines are written again');
  });
});
