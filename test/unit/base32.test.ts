import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { decodeBase32, encodeBase32 } from '../../src/tahoe/base32.js';

/** Deterministic pseudo-random bytes, so a failure is reproducible. */
function bytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i += 32) {
    createHash('sha256').update(`${seed}:${i}`).digest().copy(out, i);
  }
  return out;
}

describe('base32', () => {
  it('round-trips every length from 0 to 40 bytes', () => {
    for (let len = 0; len <= 40; len++) {
      for (let seed = 0; seed < 5; seed++) {
        const data = bytes(len, seed * 100 + len);
        const text = encodeBase32(data);
        assert.equal(text.length, Math.ceil((len * 8) / 5), `length of encoding for ${len} bytes`);
        assert.match(text, /^[a-z2-7]*$/);
        assert.deepEqual(decodeBase32(text), data, `round trip of ${data.toString('hex')}`);
      }
    }
  });

  it('round-trips all-zero and all-ones bytes (edge bit patterns)', () => {
    for (let len = 0; len <= 40; len++) {
      for (const fill of [0x00, 0xff]) {
        const data = Buffer.alloc(len, fill);
        assert.deepEqual(decodeBase32(encodeBase32(data)), data);
      }
    }
  });

  it('matches the RFC 4648 vectors in lower case without padding', () => {
    const vectors: Array<[string, string]> = [
      ['', ''],
      ['f', 'my'],
      ['fo', 'mzxq'],
      ['foo', 'mzxw6'],
      ['foob', 'mzxw6yq'],
      ['fooba', 'mzxw6ytb'],
      ['foobar', 'mzxw6ytboi'],
    ];
    for (const [plain, encoded] of vectors) {
      assert.equal(encodeBase32(Buffer.from(plain)), encoded);
      assert.deepEqual(decodeBase32(encoded), Buffer.from(plain));
    }
  });

  it('matches Tahoe on a literal cap (tahoe debug dump-cap URI:LIT:4t4n2dlinyhq)', () => {
    const tahoeBytes = Buffer.from([0xe4, 0xf8, 0xdd, 0x0d, 0x68, 0x6e, 0x0f]);
    assert.equal(encodeBase32(tahoeBytes), '4t4n2dlinyhq');
    assert.deepEqual(decodeBase32('4t4n2dlinyhq'), tahoeBytes);
  });

  it('rejects characters outside the lower-case alphabet', () => {
    // 8 characters is a valid length, so only the bad character can be the reason.
    for (const bad of ['0', '1', '8', '9', 'A', 'M', '=', ' ', '-', 'é', '\n']) {
      assert.equal(decodeBase32(`aaaaaaa${bad}`), undefined, `character ${JSON.stringify(bad)}`);
    }
    assert.equal(decodeBase32('MZXW6YTBOI'), undefined, 'upper case is not Tahoe base32');
    assert.equal(decodeBase32('mzxw6ytboi=='), undefined, 'padding is not Tahoe base32');
  });

  it('rejects lengths no whole number of bytes encodes to (1, 3 or 6 mod 8)', () => {
    for (let len = 0; len <= 40; len++) {
      const result = decodeBase32('a'.repeat(len));
      if ([1, 3, 6].includes(len % 8)) assert.equal(result, undefined, `length ${len}`);
      else assert.ok(result, `length ${len} should decode`);
    }
  });

  it('rejects non-canonical text whose unused trailing bits are not zero', () => {
    assert.deepEqual(decodeBase32('my'), Buffer.from('f'));
    // "mz" has the same first 8 bits as "my" but a 1 in the two unused bits.
    assert.equal(decodeBase32('mz'), undefined);
    assert.equal(decodeBase32('4t4n2dlinyhr'), undefined);
  });
});
