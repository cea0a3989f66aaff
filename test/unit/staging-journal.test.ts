// The records beside staged writes, and the command-line helpers that keep caps out of
// process titles.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { StagingJournal, type StagedRecord } from '../../src/cache/staging-journal.js';
import { argvForChild, titleFor } from '../../src/cli/args.js';
import { silentLogger } from '../../src/log.js';
import { redact } from '../../src/tahoe/caps.js';
import { tempDirPerSuite } from '../support/temp-dir.js';

const DIR = 'URI:DIR2:3nmylhjqubpdykuwdzv3oeci4m:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea';

const record = (over: Partial<StagedRecord> = {}): StagedRecord => ({
  v: 2, root: redact(DIR), owner: { pid: process.pid, start: '123' }, parentCap: DIR, name: 'f', path: '/f', base: null, dirty: true, size: 3, ...over,
});

describe('StagingJournal', () => {
  let dir: string;
  tempDirPerSuite('bm-journal-', (d) => (dir = d));

  it('writes, lists and removes records, durable or not, with mode 0600', async () => {
    const journal = new StagingJournal(dir, silentLogger());
    await writeFile(join(dir, 'a'), 'abc');
    await writeFile(join(dir, 'b'), 'def');
    await journal.write(join(dir, 'a'), record());
    await journal.write(join(dir, 'b'), record({ name: 'g' }), true);
    const listed = (await journal.list()).sort((x, y) => x.record.name.localeCompare(y.record.name));
    assert.deepEqual(listed.map((s) => [s.stagingPath, s.record.name]), [[join(dir, 'a'), 'f'], [join(dir, 'b'), 'g']]);
    const { stat } = await import('node:fs/promises');
    assert.equal((await stat(journal.recordPath(join(dir, 'a')))).mode & 0o777, 0o600);
    await journal.remove(join(dir, 'a'));
    assert.deepEqual((await journal.list()).map((s) => s.record.name), ['g']);
  });

  it('drops records whose bytes are gone and temporary files; leaves bytes without a record alone', async () => {
    const d = await mkdtemp(join(dir, 'x-'));
    const journal = new StagingJournal(d, silentLogger());
    await writeFile(join(d, 'orphan-record.json'), JSON.stringify(record()));
    await writeFile(join(d, 'half.json.tmp'), '{');
    await writeFile(join(d, 'bytes-only'), 'data');
    await writeFile(join(d, 'bad'), 'x');
    await writeFile(join(d, 'bad.json'), '{ not json');
    assert.deepEqual(await journal.list(), []);
    assert.deepEqual((await readdir(d)).sort(), ['bad', 'bad.json', 'bytes-only']);
  });

  it('sweeps temporary files once, at start: later ones (writes in progress) are left alone', async () => {
    const d = await mkdtemp(join(dir, 'sweep-'));
    await writeFile(join(d, 'a.json.tmp'), '{'); // the old fixed name
    await writeFile(join(d, `b.json.${process.pid}-00ff.tmp`), '{'); // ours, from before this start
    await writeFile(join(d, 'c.json.4194999-00ff.tmp'), '{'); // a process that is gone (beyond pid_max)
    await writeFile(join(d, 'd.json.1-00ff.tmp'), '{'); // a live process's write in progress
    const journal = new StagingJournal(d, silentLogger());
    await journal.sweep();
    assert.deepEqual(await readdir(d), ['d.json.1-00ff.tmp']);
    await writeFile(join(d, `e.json.${process.pid}-00aa.tmp`), '{');
    await journal.list();
    await journal.sweep();
    assert.deepEqual((await readdir(d)).sort(), ['d.json.1-00ff.tmp', `e.json.${process.pid}-00aa.tmp`]);
  });

  it('reads version 1 records (pid only) as owned by that pid, start unknown', async () => {
    const d = await mkdtemp(join(dir, 'v1-'));
    const { owner: _o, v: _v, ...rest } = record();
    await writeFile(join(d, 's'), 'abc');
    await writeFile(join(d, 's.json'), JSON.stringify({ ...rest, v: 1, pid: 4242 }));
    await writeFile(join(d, 't'), 'abc');
    await writeFile(join(d, 't.json'), JSON.stringify({ ...rest, v: 3 }));
    const listed = await new StagingJournal(d, silentLogger()).list();
    assert.deepEqual(listed, [{ stagingPath: join(d, 's'), record: { ...rest, v: 2, owner: { pid: 4242, start: '' } } }]);
  });

  it('a write that fails rejects and leaves no temporary file, durable or not', async () => {
    const d = await mkdtemp(join(dir, 'fail-'));
    const journal = new StagingJournal(d, silentLogger());
    await writeFile(join(d, 's'), 'abc');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(d, 's.json')); // a directory where the record goes: the rename fails
    await assert.rejects(journal.write(join(d, 's'), record()), /EISDIR|ENOTEMPTY|EEXIST/);
    await assert.rejects(journal.write(join(d, 's'), record(), true), /EISDIR|ENOTEMPTY|EEXIST/);
    assert.deepEqual((await readdir(d)).sort(), ['s', 's.json']);
  });
});

describe('caps stay out of command lines', () => {
  it('hands a --root-uri cap to children through the environment', () => {
    for (const argv of [['--root-uri', DIR, '/mnt'], [`--root-uri=${DIR}`, '/mnt']]) {
      const child = argvForChild(argv, DIR);
      assert.ok(!child.argv.join(' ').includes(DIR));
      assert.deepEqual(child.env, { BLACKMATCH_ROOT_URI: DIR });
    }
    assert.deepEqual(argvForChild(['--alias', 'x', '/mnt'], undefined), { argv: ['--alias', 'x', '/mnt'], env: {} });
  });

  it('shows a fingerprint in the process title', () => {
    const title = titleFor(['--root-uri', DIR, '/mnt'], redact);
    assert.ok(!title.includes('3nmylhjqubpdykuwdzv3oeci4m'));
    assert.ok(title.startsWith('blackmatch --root-uri DIR2#'));
  });
});

describe('StagingJournal under concurrent passes', () => {
  it('a record write racing list() never fails and never loses a record', { timeout: 60_000 }, async () => {
    const d = await mkdtemp(join(tmpdir(), 'bm-journal-race-'));
    try {
      const journal = new StagingJournal(d, silentLogger());
      const paths = Array.from({ length: 16 }, (_, i) => join(d, `s${i}`));
      for (const p of paths) await writeFile(p, 'x');
      let writing = true;
      const lister = (async () => {
        let passes = 0;
        while (writing || passes < 3) {
          await journal.list();
          passes++;
        }
      })();
      const rounds = 40;
      const writers = paths.map(async (p, i) => {
        // One writer per file, as the core queues them; each file's writes follow each other.
        for (let n = 0; n < rounds; n++) await journal.write(p, record({ name: `f${i}`, size: n }), n % 4 === 0);
      });
      const settled = await Promise.allSettled(writers);
      writing = false;
      await lister;
      assert.deepEqual(settled.filter((s) => s.status === 'rejected').map((s) => String((s as PromiseRejectedResult).reason)), []);
      const listed = new Map((await journal.list()).map((s) => [s.stagingPath, s.record]));
      for (const [i, p] of paths.entries()) {
        assert.equal(listed.get(p)?.name, `f${i}`, `record of ${p}`);
        assert.equal(listed.get(p)?.size, rounds - 1, `last record of ${p}`);
      }
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});
