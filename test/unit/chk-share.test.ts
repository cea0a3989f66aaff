// The CHK share format (src/storage/chk-share.ts, hash-tree.ts) over shares the real grid wrote (test/fixtures/chk,
// made by scripts/make-chk-fixtures.ts) and Tahoe's test-vector caps: decoding from every k of the shares, v2
// layouts, and every flipped byte of a header, hash tree, UEB or block caught.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { encodeBase32 } from '../../src/tahoe/base32.js';
import { blockHash, crypttextHash, crypttextSegmentHash } from '../../src/tahoe/hashes.js';
import { plaintextFor } from '../support/chk-plaintext.js';
import { buildTree, HASH_SIZE } from '../../src/storage/hash-tree.js';
import {
  ChkFile, checkLayoutForCap, chkCapParts, guessLayout, HEADER_BYTES, hashRegion, layoutBlockRange, parseShareHeader, parseUebLength, sameLayout, ShareFormatError, uebFromRegion,
  uebLengthRange, type ShareLayout,
} from '../../src/storage/chk-share.js';

const DIR = new URL('../../../test/fixtures/chk/', import.meta.url);

interface Fixture { name: string; cap: string; storageIndex: string; plaintextSha256: string; shares: Record<string, string> }
const FIXTURES: Fixture[] = readdirSync(DIR).filter((f) => f.endsWith('.json') && !f.startsWith('test-vectors'))
  .map((f) => JSON.parse(readFileSync(new URL(f, DIR), 'utf8')) as Fixture);

interface Opened { layout: ShareLayout; region: Buffer; share: Buffer }

/** What a reader does with a share: header (checked against the cap), then the UEB length, then the hash region. */
function open(share: Buffer, cap?: { cap: string; shareNum: number }): Opened {
  const layout = parseShareHeader(share.subarray(0, HEADER_BYTES));
  if (cap) checkLayoutForCap(layout, chkCapParts(cap.cap), cap.shareNum);
  const lr = uebLengthRange(layout);
  const r = hashRegion(layout, parseUebLength(layout, share.subarray(lr.start, lr.end)));
  return { layout, region: share.subarray(r.start, r.end), share };
}

function sharesOf(fx: Fixture): Map<number, Buffer> {
  return new Map(Object.entries(fx.shares).map(([k, v]) => [Number(k), Buffer.from(v, 'base64')]));
}

function fileOf(fx: Fixture, shares: Map<number, Buffer>): ChkFile {
  const first = open(shares.values().next().value!);
  return ChkFile.fromUeb(uebFromRegion(first.layout, first.region), chkCapParts(fx.cap));
}

function decodeAll(fx: Fixture, shares: Map<number, Buffer>, use?: number[]): Buffer {
  const chk = fileOf(fx, shares);
  const k = chk.ueb.needed;
  const verifiers = (use ?? [...Array(k).keys()]).map((s) => {
    const o = open(shares.get(s)!, { cap: fx.cap, shareNum: s });
    return { blocks: chk.share(s, o.layout, o.region), bytes: o.share };
  });
  const out: Buffer[] = [];
  for (let seg = 0; seg < chk.ueb.numSegments; seg++) {
    const blocks = new Map<number, Buffer>();
    for (const v of verifiers) {
      const r = v.blocks.blockRange(seg);
      const block = v.bytes.subarray(r.offset, r.offset + r.length);
      v.blocks.verifyBlock(seg, block);
      blocks.set(v.blocks.shareNum, block);
    }
    const plain = chk.decodeSegment(seg, blocks);
    assert.equal(plain.length, chk.segmentRange(seg).length);
    out.push(plain);
  }
  return Buffer.concat(out);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const flip = (b: Buffer, i: number): Buffer => { const c = Buffer.from(b); c[i]! ^= 0x01; return c; };
const isFormatError = (e: unknown): boolean => e instanceof ShareFormatError;

/** A v1 share rewritten as v2 (8-byte fields, data at 0x44; layout.py:62-77), as a v2 writer would lay it out. */
function toV2(share: Buffer): Buffer {
  const l = parseShareHeader(share);
  const head = Buffer.alloc(0x44);
  head.writeUInt32BE(2, 0);
  const fields = [l.blockSizeField, l.dataSizeField, l.dataOffset, l.plaintextHashTreeOffset, l.crypttextHashTreeOffset,
    l.blockHashesOffset, l.shareHashesOffset, l.uebOffset];
  fields.forEach((v, i) => head.writeBigUInt64BE(BigInt(i >= 2 ? v + 0x20 : v), 4 + 8 * i));
  const uebLen = share.readUInt32BE(l.uebOffset);
  const len = Buffer.alloc(8);
  len.writeBigUInt64BE(BigInt(uebLen));
  return Buffer.concat([head, share.subarray(0x24, l.uebOffset), len, share.subarray(l.uebOffset + 4)]);
}

describe('chk-share: real grid shares', () => {
  assert.ok(FIXTURES.length >= 5);
  for (const fx of FIXTURES) {
    describe(fx.name, () => {
      const shares = sharesOf(fx);
      // The 37-segment fixture's regions are large: there, flips stride over the hash trees and blocks.
      const big = fx.name.startsWith('many');

      it('cap parts: storage index is the one the grid stored the shares under', () => {
        assert.equal(encodeBase32(chkCapParts(fx.cap).storageIndex), fx.storageIndex);
      });

      it('decodes to the plaintext with the primaries', () => {
        assert.equal(sha(decodeAll(fx, shares)), fx.plaintextSha256);
      });

      it('guesses the layout of every share from the cap and the maximum segment size the grid used', () => {
        const chk = fileOf(fx, shares);
        for (const [shareNum, share] of shares) {
          const layout = parseShareHeader(share.subarray(0, HEADER_BYTES));
          const guess = guessLayout(chkCapParts(fx.cap), shareNum, 4096);
          assert.ok(guess && sameLayout(layout, guess), `share ${shareNum}: ${JSON.stringify({ layout, guess })}`);
          const wrong = guessLayout(chkCapParts(fx.cap), shareNum, 1024 * 1024);
          if (chk.ueb.segmentSize < chk.ueb.size) assert.ok(wrong && !sameLayout(layout, wrong), `share ${shareNum}: another segment size, another layout`);
          // Where the guess puts each block is where the checked share has it.
          const o = open(share, { cap: fx.cap, shareNum });
          const blocks = chk.share(shareNum, o.layout, o.region);
          for (let seg = 0; seg < chk.ueb.numSegments; seg++) assert.deepEqual(layoutBlockRange(guess!, seg), blocks.blockRange(seg), `share ${shareNum} segment ${seg}`);
        }
      });

      it('decodes to the plaintext from every other k of its shares (zfec)', () => {
        const chk = fileOf(fx, shares);
        const { needed: k, total: n } = chk.ueb;
        const subsets: number[][] = [];
        const pick = (from: number, chosen: number[]): void => {
          if (chosen.length === k) return void subsets.push(chosen);
          for (let s = from; s < n; s++) pick(s + 1, [...chosen, s]);
        };
        pick(0, []);
        for (const subset of subsets) assert.equal(sha(decodeAll(fx, shares, subset)), fx.plaintextSha256, `shares ${subset.join(',')}`);
      });

      it('our trees are Tahoe\'s: block trees rebuilt from the blocks, the share tree from their roots', () => {
        const chk = fileOf(fx, shares);
        const roots: Buffer[] = [];
        for (let shareNum = 0; shareNum < chk.ueb.total; shareNum++) {
          const o = open(shares.get(shareNum)!);
          const blocks = chk.share(shareNum, o.layout, o.region);
          const leaves = [...Array(chk.ueb.numSegments).keys()].map((seg) => {
            const r = blocks.blockRange(seg);
            return blockHash(o.share.subarray(r.offset, r.offset + r.length));
          });
          const tree = buildTree(leaves);
          const stored = o.share.subarray(o.layout.blockHashesOffset, o.layout.shareHashesOffset);
          assert.ok(Buffer.concat(tree).equals(stored), `block hash tree of share ${shareNum}`);
          roots.push(tree[0]!);
        }
        assert.ok(buildTree(roots)[0]!.equals(chk.ueb.shareRootHash));
        assert.equal(HASH_SIZE, 32);
      });

      it('crypttext hash tree and crypttext hash from the plaintext encrypted here (AES-128-CTR, zero IV)', () => {
        const chk = fileOf(fx, shares);
        const plain = plaintextFor(fx.name, chk.ueb.size);
        assert.equal(sha(plain), fx.plaintextSha256);
        const cipher = createCipheriv('aes-128-ctr', chkCapParts(fx.cap).key, Buffer.alloc(16));
        const crypttext = Buffer.concat([cipher.update(plain), cipher.final()]);
        const leaves = [...Array(chk.ueb.numSegments).keys()].map((seg) => {
          const r = chk.segmentRange(seg);
          return crypttextSegmentHash(crypttext.subarray(r.offset, r.offset + r.length));
        });
        assert.ok(buildTree(leaves)[0]!.equals(chk.ueb.crypttextRootHash));
        assert.ok(crypttextHash(crypttext).equals(chk.ueb.crypttextHash!));
      });

      it('decodes the v2 layout of the same shares', () => {
        const v2 = new Map([...shares].map(([k, v]) => [k, toV2(v)]));
        assert.equal(parseShareHeader(v2.get(0)!).version, 2);
        assert.equal(sha(decodeAll(fx, v2)), fx.plaintextSha256);
      });

      it('catches every flipped byte in the header, hash trees, share hash chain and UEB', () => {
        const chk = fileOf(fx, shares);
        for (const [shareNum, bytes] of shares) {
          const o = open(bytes);
          const headerSize = o.layout.dataOffset;
          for (let i = 0; i < headerSize; i++) {
            const bad = flip(bytes, i);
            // Caught from the cap alone, before anything past the header is read (but for the block size field:
            // a near block size can give the same offsets; the UEB pins it)...
            const blockSizeField = i >= 4 && i < 4 + o.layout.fieldSize;
            if (!blockSizeField) assert.throws(() => checkLayoutForCap(parseShareHeader(bad), chkCapParts(fx.cap), shareNum), isFormatError,
              `header byte ${i} of share ${shareNum} (cap)`);
            // ...and by share() for a reader that skipped that.
            assert.throws(() => {
              const b = open(bad);
              chk.share(shareNum, b.layout, b.region);
            }, isFormatError, `header byte ${i} of share ${shareNum}`);
          }
          const treesEnd = o.layout.shareHashesOffset - o.layout.crypttextHashTreeOffset;
          for (let i = 0; i < o.region.length; i++) {
            if (big && i < treesEnd && i % 13 !== 0) continue;
            assert.throws(() => chk.share(shareNum, o.layout, flip(o.region, i)), isFormatError, `region byte ${i} of share ${shareNum}`);
          }
          // Truncated or overlong regions.
          for (const cut of [1, 2, 33, o.region.length - 1]) {
            assert.throws(() => chk.share(shareNum, o.layout, o.region.subarray(0, o.region.length - cut)), isFormatError);
          }
          assert.throws(() => chk.share(shareNum, o.layout, Buffer.concat([o.region, Buffer.alloc(1)])), isFormatError);
          checkLayoutForCap(o.layout, chkCapParts(fx.cap), shareNum);
          // A share checked as another share number.
          assert.throws(() => chk.share((shareNum + 1) % chk.ueb.total || 1, o.layout, o.region), isFormatError);
        }
      });

      it('the UEB is checked against the cap: every flipped byte', () => {
        const o = open(shares.get(0)!);
        const ueb = uebFromRegion(o.layout, o.region);
        const cap = chkCapParts(fx.cap);
        for (let i = 0; i < ueb.length; i++) assert.throws(() => ChkFile.fromUeb(flip(ueb, i), cap), isFormatError);
        assert.throws(() => ChkFile.fromUeb(ueb.subarray(0, ueb.length - 1), cap), isFormatError);
        // The same UEB under a cap claiming another size or encoding.
        const other = fx.cap.replace(/:(\d+)$/, (_m, s: string) => `:${Number(s) + 1}`);
        assert.throws(() => ChkFile.fromUeb(ueb, chkCapParts(other)), isFormatError);
      });

      it('catches every flipped byte in a block, and a wrong-length block', () => {
        const chk = fileOf(fx, shares);
        for (const [shareNum, bytes] of shares) {
          const o = open(bytes);
          const blocks = chk.share(shareNum, o.layout, o.region);
          for (let seg = 0; seg < chk.ueb.numSegments; seg++) {
            const r = blocks.blockRange(seg);
            const block = bytes.subarray(r.offset, r.offset + r.length);
            blocks.verifyBlock(seg, block);
            for (let i = 0; i < block.length; i += big ? 97 : 1) {
              assert.throws(() => blocks.verifyBlock(seg, flip(block, i)), isFormatError);
            }
            assert.throws(() => blocks.verifyBlock(seg, block.subarray(0, block.length - 1)), isFormatError);
            if (chk.ueb.numSegments > 1) assert.throws(() => blocks.verifyBlock((seg + 1) % chk.ueb.numSegments, block), isFormatError);
          }
        }
      });

      it('decodeSegment refuses a flipped block that skipped verifyBlock (crypttext hash tree)', () => {
        const chk = fileOf(fx, shares);
        const k = chk.ueb.needed;
        const offsets = [...Array(k).keys()].map((s) => {
          const o = open(shares.get(s)!);
          return chk.share(s, o.layout, o.region);
        });
        for (let seg = 0; seg < chk.ueb.numSegments; seg += big ? 5 : 1) {
          const blocks = new Map<number, Buffer>();
          offsets.forEach((v) => {
            const r = v.blockRange(seg);
            blocks.set(v.shareNum, shares.get(v.shareNum)!.subarray(r.offset, r.offset + r.length));
          });
          // Share 0's first byte is always real data (a tail block of a later share may be all padding).
          blocks.set(0, flip(blocks.get(0)!, 0));
          assert.throws(() => chk.decodeSegment(seg, blocks), isFormatError);
        }
      });
    });
  }
});

describe('chk-share: headers', () => {
  const fx = FIXTURES[0]!;
  const share = sharesOf(fx).get(0)!;
  it('rejects unknown versions and offsets out of order', () => {
    for (const v of [0, 3, 0x01000000]) {
      const bad = Buffer.from(share); bad.writeUInt32BE(v, 0);
      assert.throws(() => parseShareHeader(bad), isFormatError);
    }
    const swapped = Buffer.from(share);
    const a = swapped.readUInt32BE(0x18); swapped.writeUInt32BE(swapped.readUInt32BE(0x1c), 0x18); swapped.writeUInt32BE(a, 0x1c);
    assert.throws(() => parseShareHeader(swapped), isFormatError);
    assert.throws(() => parseShareHeader(share.subarray(0, 0x23)), isFormatError);
    assert.throws(() => parseShareHeader(toV2(share).subarray(0, 0x43)), isFormatError);
  });
  it('a header claiming a huge hash region is refused from the cap alone', () => {
    const bad = Buffer.from(share);
    bad.writeUInt32BE(bad.readUInt32BE(0x1c) + 34 * 100_000_000, 0x20); // uri_extension offset: a 3.4 GB region
    const layout = parseShareHeader(bad);
    assert.throws(() => checkLayoutForCap(layout, chkCapParts(fx.cap), 0), isFormatError);
    assert.throws(() => checkLayoutForCap(parseShareHeader(share), chkCapParts(fx.cap), 99), isFormatError);
  });
  it('v2: 8-byte fields beyond 2^53 are refused, the UEB length field is 8 bytes', () => {
    const v2 = toV2(share);
    const l = parseShareHeader(v2);
    assert.equal(l.fieldSize, 8);
    assert.equal(l.dataOffset, 0x44);
    const bad = Buffer.from(v2); bad.writeBigUInt64BE(2n ** 60n, 0x3c);
    assert.throws(() => parseShareHeader(bad), isFormatError);
    const lr = uebLengthRange(l);
    assert.equal(lr.end - lr.start, 8);
    assert.throws(() => parseUebLength(l, Buffer.alloc(8, 0xff)), isFormatError);
    assert.throws(() => hashRegion(l, 0), isFormatError);
  });
});

describe('chk-share: caps', () => {
  it('parses the CHK caps of Tahoe\'s test vectors (k, N, size)', () => {
    const { vectors } = JSON.parse(readFileSync(new URL('test-vectors-extract.json', DIR), 'utf8')) as
      { vectors: Array<{ cap: string; needed: number; total: number; length: number }> };
    assert.ok(vectors.length > 0);
    for (const v of vectors) {
      const p = chkCapParts(v.cap);
      assert.deepEqual([p.needed, p.total, p.size, p.key.length, p.uebHash.length, p.storageIndex.length], [v.needed, v.total, v.length, 16, 32, 16]);
    }
  });
  it('storage index from the key, as `tahoe debug dump-cap` printed it', () => {
    const si = chkCapParts('URI:CHK:4zhgf23twgjzxlhat543enjx3q:zvku5rghnefe2r7xezbihj3vxqlbohvko6fs63jhwcn3vdbnnesa:2:3:3000').storageIndex;
    assert.equal(encodeBase32(si), 'yxlbvxyvqk5iwqbrpni63dajbq');
  });
  it('refuses other caps and bad parameters', () => {
    assert.throws(() => chkCapParts('URI:LIT:mfrgg'));
    assert.throws(() => chkCapParts('URI:CHK:4zhgf23twgjzxlhat543enjx3q:zvku5rghnefe2r7xezbihj3vxqlbohvko6fs63jhwcn3vdbnnesa:3:2:3000'));
    assert.throws(() => chkCapParts('URI:CHK:4zhgf23twgjzxlhat543enjx3q:zvku5rghnefe2r7xezbihj3vxqlbohvko6fs63jhwcn3vdbnnesa:2:3:0'));
  });
});
