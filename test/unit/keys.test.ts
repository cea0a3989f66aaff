// Keys made here for new mutable files and directories (src/tahoe/keys.ts): the caps they name parse as Tahoe's,
// with the storage index Tahoe derives, and the form the gateway is given is URL-safe. That the gateway answers
// the same caps is test/system/own-keys.test.ts's.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { parseCap, readOnlyCap } from '../../src/tahoe/caps.js';
import { generateMutableKey, mutableKeyOf, privateKeyParam, writeCapOf } from '../../src/tahoe/keys.js';

describe('keys for mutable files and directories', () => {
  it('a key names a write cap of each kind, which parses with its read cap and storage index', async () => {
    const key = await generateMutableKey();
    assert.equal(key.writeKey.length, 16);
    assert.equal(key.fingerprint.length, 32);
    for (const kind of ['DIR2', 'DIR2-MDMF', 'SSK', 'MDMF'] as const) {
      const cap = parseCap(writeCapOf(key, kind));
      assert.equal(cap.kind, kind);
      assert.equal(cap.writable, true);
      assert.equal(cap.immutable, false);
      assert.ok(cap.storageIndex);
      assert.equal(parseCap(readOnlyCap(cap.text)).storageIndex, cap.storageIndex);
    }
  });

  it('the same key always names the same caps; two keys never do', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 65537 });
    assert.equal(writeCapOf(mutableKeyOf(privateKey, publicKey), 'DIR2'), writeCapOf(mutableKeyOf(privateKey, publicKey), 'DIR2'));
    const [a, b] = await Promise.all([generateMutableKey(), generateMutableKey()]);
    assert.notEqual(writeCapOf(a, 'DIR2'), writeCapOf(b, 'DIR2'));
  });

  it('the private-key parameter is the DER in URL-safe base64', async () => {
    const key = await generateMutableKey();
    const param = privateKeyParam(key);
    assert.match(param, /^[A-Za-z0-9_-]+=*$/);
    assert.ok(Buffer.from(param.replace(/-/g, '+').replace(/_/g, '/'), 'base64').equals(key.privateKeyDer));
  });
});
