// Directories made with keys of ours (src/fs/key-pool.ts) over the in-memory Tahoe, which takes private-key= as
// Tahoe does: every key is handed out once, a directory gets the cap its key names, and mkdir in both modes
// makes its directory with one of our keys (the gateway generates none).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KeyPool } from '../../src/fs/key-pool.js';
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
