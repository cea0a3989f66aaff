// Directories made with keys of ours (src/fs/key-pool.ts) over the in-memory Tahoe, which takes private-key= as
// Tahoe does: every key is handed out once, a directory gets the cap its key names, and mkdir in both modes
// makes its directory with one of our keys (the gateway generates none).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createPrivateKey } from 'node:crypto';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyPool } from '../../src/fs/key-pool.js';
import { IdleKeyMaker } from '../../src/tahoe/idle-keys.js';
import { writeCapOf } from '../../src/tahoe/keys.js';
import { target, type FakeTahoe } from '../support/fake-tahoe.js';
import { bounded, coresPerTest, log } from '../support/core.js';

describe('directories made with our keys', () => {
  let fake: FakeTahoe;
  const { start } = coresPerTest((f) => (fake = f));

  it('keys are handed out once each, made ahead up to the pool size', async () => {
    const pool = new KeyPool(3, log);
    const keys = await Promise.all(Array.from({ length: 6 }, () => pool.take()));
    assert.equal(new Set(keys.map((k) => writeCapOf(k, 'DIR2'))).size, 6);
  });

  it('keys are kept on disk (0600 in a 0700 folder) and serve the next pool over the folder, each key once', async () => {
    const dir = join(await mkdtemp(join(tmpdir(), 'bm-keys-')), 'keys');
    try {
      const first = new KeyPool(2, log, dir);
      first.fill();
      await eventuallyKept(dir, 2);
      assert.equal((await stat(dir)).mode & 0o777, 0o700);
      for (const name of await readdir(dir)) assert.equal((await stat(join(dir, name))).mode & 0o777, 0o600);
      const kept = new Set(await readdir(dir));
      // Two pools over one folder (a mount after the one that made them, started before it ended): each kept
      // key goes to one of them only, its file removed first.
      const [a, b] = [new KeyPool(2, log, dir), new KeyPool(2, log, dir)];
      const taken = await Promise.all([a.take(), b.take(), a.take(), b.take()]);
      assert.equal(new Set(taken.map((k) => writeCapOf(k, 'DIR2'))).size, 4);
      for (const name of kept) assert.ok(!(await readdir(dir)).includes(name), 'a key handed out is no longer kept');
      await Promise.all([first.stop(), a.stop(), b.stop()]);
    } finally {
      await rm(join(dir, '..'), { recursive: true, force: true });
    }
  });

  it('takes that find the pool empty are each served by one key, whichever is made first; the keys left over are kept, none handed out twice', async () => {
    const dir = join(await mkdtemp(join(tmpdir(), 'bm-keys-')), 'keys');
    try {
      const pool = new KeyPool(1, log, dir);
      const taken = await bounded(Promise.all(Array.from({ length: 5 }, () => pool.take())), 'five takes');
      const caps = new Set(taken.map((k) => writeCapOf(k, 'DIR2')));
      assert.equal(caps.size, 5);
      await pool.stop(); // waits for every key still being made
      const kept = await readdir(dir);
      const next = new KeyPool(kept.length, log, dir);
      for (const name of kept.filter((n) => n.endsWith('.key'))) assert.ok(!caps.has(writeCapOf(await next.take(), 'DIR2')), `${name} was handed out too`);
      await next.stop();
    } finally {
      await rm(join(dir, '..'), { recursive: true, force: true });
    }
  });

  it('a pool that a take finds empty grows (the size it reached is kept for the next mount)', async () => {
    const dir = join(await mkdtemp(join(tmpdir(), 'bm-keys-')), 'keys');
    try {
      const pool = new KeyPool(1, log, dir);
      await pool.take(); // none kept yet: made now, and the pool grows to 2
      assert.equal((await readFile(join(dir, 'pool-size'), 'utf8')).trim(), '2');
      await eventuallyKept(dir, 2);
      await pool.stop();
    } finally {
      await rm(join(dir, '..'), { recursive: true, force: true });
    }
  });

  it('a mount resumes making keys at its start only if its cache made directories before', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'bm-keys-'));
    const dir = join(parent, 'keys');
    try {
      const fresh = new KeyPool(2, log, dir);
      fresh.resume();
      await fresh.stop();
      await assert.rejects(stat(dir), { code: 'ENOENT' }, 'a cache that never made a directory makes no key');
      const first = new KeyPool(1, log, dir);
      await first.take(); // a directory made: the folder exists from now on
      await first.stop();
      const next = new KeyPool(2, log, dir);
      next.resume();
      await eventuallyKept(dir, 2);
      await next.stop();
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });

  it('a directory gets the cap its key names', async () => {
    const c = await start();
    const pool = new KeyPool(2, log);
    const cap = await pool.makeDirectory(c.client);
    assert.match(cap, /^URI:DIR2:/);
    const sent = fake.requests.filter((r) => r.method === 'POST' && target(r).query.get('t') === 'mkdir');
    assert.equal(sent.length, 1);
    assert.ok(target(sent[0]!).query.get('private-key'), 'made with our key');
    assert.deepEqual(fake.tree(cap), {});
  });

  for (const writeBack of [false, true]) {
    it(`mkdir makes its directory with a key of ours, never the gateway's t=mkdir&name= (${writeBack ? 'write-back' : 'durable'})`, async () => {
      const c = await start({ writeBack });
      await c.fs.mkdir('/d', 0o755, 0, 0);
      await bounded(c.fs.sync(), 'sync');
      const made = fake.requests.filter((r) => r.method === 'POST' && target(r).query.get('t') === 'mkdir');
      assert.ok(made.length >= 1);
      for (const r of made) {
        assert.ok(target(r).query.get('private-key'), 'made with our key');
        assert.equal(target(r).query.get('name'), null, 'made unlinked');
      }
      assert.equal(fake.entry(fake.rootCap, 'd')?.rwUri?.startsWith('URI:DIR2:'), true);
    });
  }
});

describe('keys made when a core is idle', () => {
  it('are made on threads of their own (one per core but one) at nice 19 (the rest of the process keeps its priority), each a new RSA-2048 key', async () => {
    const maker = new IdleKeyMaker();
    try {
      const [a, b] = await Promise.all([bounded(maker.make(), 'a key'), bounded(maker.make(), 'another')]);
      assert.notDeepEqual(a.privateKeyDer, b.privateKeyDer);
      assert.equal(createPrivateKey({ key: a.privateKeyDer, format: 'der', type: 'pkcs8' }).asymmetricKeyDetails?.modulusLength, 2048);
      const base = getPriority();
      assert.deepEqual(await threadNiceValues(), [...new Set([base, 19])].sort((x, y) => x - y), 'one thread at 19, all others as they were');
    } finally {
      await maker.stop();
    }
    await assert.rejects(maker.make(), /stopped/);
  });

  it('a key asked for when the maker stops is refused, not left waiting', async () => {
    const maker = new IdleKeyMaker();
    const refused = assert.rejects(bounded(maker.make(), 'refused'), /stopped/);
    await maker.stop();
    await refused;
  });
});

/** The distinct nice values of this process's threads (Linux: field 19 of /proc/self/task/N/stat). */
async function threadNiceValues(): Promise<number[]> {
  const values = new Set<number>();
  for (const task of await readdir('/proc/self/task')) {
    const stat = await readFile(`/proc/self/task/${task}/stat`, 'utf8').catch(() => undefined);
    if (stat) values.add(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
  }
  return [...values].sort((x, y) => x - y);
}

/** Waits (bounded) until `dir` keeps `count` keys. */
async function eventuallyKept(dir: string, count: number): Promise<void> {
  await bounded(
    (async () => {
      while ((await readdir(dir).catch(() => [])).filter((n) => n.endsWith('.key')).length < count) await new Promise((r) => setTimeout(r, 20));
    })(),
    `${count} keys kept`,
  );
}
