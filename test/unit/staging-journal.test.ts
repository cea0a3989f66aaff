// The records beside staged writes, and the command-line helpers that keep caps out of
// process titles.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StagingJournal, type StagedRecord } from '../../src/cache/staging-journal.js';
import { argvForChild, titleFor } from '../../src/cli/args.js';
import { silentLogger } from '../../src/log.js';
import { redact } from '../../src/tahoe/caps.js';

const DIR = 'URI:DIR2:3nmylhjqubpdykuwdzv3oeci4m:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea';

const record = (over: Partial<StagedRecord> = {}): StagedRecord => ({
  v: 1, root: redact(DIR), pid: process.pid, parentCap: DIR, name: 'f', path: '/f', base: null, dirty: true, size: 3, ...over,
});

describe('StagingJournal', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bm-journal-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

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
