// The CHK (immutable) share format and its verification, as Tahoe's downloader checks it: cap parts, the share
// header and offsets (allmydata/immutable/layout.py), the UEB (uri.py, encode.py), the block, share and crypttext
// hash trees (downloader/share.py, node.py) and decoding + decryption of a segment. Pure: no networking.
import { createDecipheriv } from 'node:crypto';
import { decodeBase32 } from '../tahoe/base32.js';
import { blockHash, crypttextSegmentHash, storageIndexHash, uriExtensionHash } from '../tahoe/hashes.js';
import { chainRoot, HASH_SIZE, leafIndex, neededForLeaf, treeIsConsistent, treeNodeCount } from './hash-tree.js';
import { zfecDecode } from './zfec.js';

/** Something a server sent that does not check out. The message names what; never a cap or a key. */
export class ShareFormatError extends Error {}

export interface ChkCapParts { key: Buffer; uebHash: Buffer; needed: number; total: number; size: number; storageIndex: Buffer }

/** The parts of a URI:CHK: cap (uri.py CHKFileURI: key, UEB hash, k, N, size); the storage index is hashed from the key. */
export function chkCapParts(capText: string): ChkCapParts {
  const m = /^URI:CHK:([a-z2-7]+):([a-z2-7]+):([0-9]+):([0-9]+):([0-9]+)$/.exec(capText.trim());
  if (!m) throw new Error('not a CHK file cap');
  const key = decodeBase32(m[1]!);
  const uebHash = decodeBase32(m[2]!);
  if (!key || key.length !== 16 || !uebHash || uebHash.length !== 32) throw new Error('malformed CHK cap');
  const [needed, total, size] = [Number(m[3]), Number(m[4]), Number(m[5])];
  // codec.py / zfec: 1 <= k <= N <= 256.
  if (!(needed >= 1 && needed <= total && total <= 256) || !Number.isSafeInteger(size) || size < 1) {
    throw new Error('malformed CHK cap parameters');
  }
  return { key, uebHash, needed, total, size, storageIndex: storageIndexHash(key) };
}

/** Bytes to read at offset 0 to parse either header version (v2's is 0x44; layout.py:62-77). */
export const HEADER_BYTES = 0x44;

export interface ShareLayout {
  version: 1 | 2;
  /** Width of each offset field and of the UEB length field: 4 (v1) or 8 (v2). */
  fieldSize: 4 | 8;
  /** The header's block size and share data size (unused by Tahoe's reader, layout.py footnote 1; checked here). */
  blockSizeField: number;
  dataSizeField: number;
  dataOffset: number;
  plaintextHashTreeOffset: number; // unused region (layout.py:189), written as zeros
  crypttextHashTreeOffset: number;
  blockHashesOffset: number;
  shareHashesOffset: number;
  /** Where the UEB length field sits; the UEB follows it. */
  uebOffset: number;
}

function readField(buf: Buffer, at: number, size: 4 | 8, what: string): number {
  if (size === 4) return buf.readUInt32BE(at);
  const v = buf.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ShareFormatError(`share ${what} out of range`);
  return Number(v);
}

/** Parses the version and offset table (layout.py:40-77; share.py:351-406 _satisfy_offsets). */
export function parseShareHeader(head: Buffer): ShareLayout {
  if (head.length < 4) throw new ShareFormatError('share header truncated');
  const version = head.readUInt32BE(0);
  if (version !== 1 && version !== 2) throw new ShareFormatError(`unknown share version ${version}`);
  const fieldSize = version === 1 ? 4 : 8;
  const headerSize = version === 1 ? 0x24 : 0x44;
  if (head.length < headerSize) throw new ShareFormatError('share header truncated');
  const f = (i: number, what: string): number => readField(head, 4 + i * fieldSize, fieldSize, what);
  const layout: ShareLayout = {
    version, fieldSize,
    blockSizeField: f(0, 'block size'), dataSizeField: f(1, 'data size'),
    dataOffset: f(2, 'data offset'), plaintextHashTreeOffset: f(3, 'offset'), crypttextHashTreeOffset: f(4, 'offset'),
    blockHashesOffset: f(5, 'offset'), shareHashesOffset: f(6, 'offset'), uebOffset: f(7, 'offset'),
  };
  // The data starts right after the header (layout.py:186 x = 0x24; v2 0x44) and the sections follow in order.
  if (layout.dataOffset !== headerSize) throw new ShareFormatError('share data offset is not after the header');
  const order = [layout.dataOffset, layout.plaintextHashTreeOffset, layout.crypttextHashTreeOffset,
    layout.blockHashesOffset, layout.shareHashesOffset, layout.uebOffset];
  for (let i = 1; i < order.length; i++) {
    if (order[i]! < order[i - 1]!) throw new ShareFormatError('share offsets are not in order');
  }
  // share.py:388-401: the hash sections are whole hashes / whole (index, hash) pairs.
  if ((layout.uebOffset - layout.shareHashesOffset) % (2 + HASH_SIZE) !== 0) throw new ShareFormatError('share hashes malformed');
  if ((layout.shareHashesOffset - layout.blockHashesOffset) % HASH_SIZE !== 0) throw new ShareFormatError('block hashes malformed');
  if ((layout.blockHashesOffset - layout.crypttextHashTreeOffset) % HASH_SIZE !== 0) throw new ShareFormatError('crypttext hashes malformed');
  return layout;
}

/** A UEB is a few hundred bytes (encode.py's dozen fields); more than this is a server trying to make us read. */
export const MAX_UEB_BYTES = 64 * 1024;

/** [start, end) of the UEB length field, to read when the region's end is not yet known. */
export function uebLengthRange(layout: ShareLayout): { start: number; end: number } {
  return { start: layout.uebOffset, end: layout.uebOffset + layout.fieldSize };
}

/** The UEB length from the bytes of uebLengthRange (layout.py:280-285 put_uri_extension), bounded. */
export function parseUebLength(layout: ShareLayout, lengthBytes: Buffer): number {
  if (lengthBytes.length !== layout.fieldSize) throw new ShareFormatError('UEB length truncated');
  const n = readField(lengthBytes, 0, layout.fieldSize, 'UEB length');
  if (n === 0 || n > MAX_UEB_BYTES) throw new ShareFormatError(`UEB length ${n} out of range`);
  return n;
}

/**
 * [start, end) of everything after the data that a reader checks: crypttext hash tree, block hashes, share hashes,
 * UEB length + UEB (the unused plaintext hash tree is skipped). Two steps: the end needs the UEB length, so read
 * uebLengthRange first (or, cheaper, read a generous guess from crypttextHashTreeOffset and re-read if short).
 */
export function hashRegion(layout: ShareLayout, uebLength: number): { start: number; end: number } {
  if (!Number.isSafeInteger(uebLength) || uebLength < 1 || uebLength > MAX_UEB_BYTES) throw new ShareFormatError('UEB length out of range');
  return { start: layout.crypttextHashTreeOffset, end: layout.uebOffset + layout.fieldSize + uebLength };
}

/** The UEB bytes inside a hash region read at hashRegion(layout, ...).start, its length field checked. */
export function uebFromRegion(layout: ShareLayout, regionBytes: Buffer): Buffer {
  const at = layout.uebOffset - layout.crypttextHashTreeOffset;
  if (regionBytes.length < at + layout.fieldSize) throw new ShareFormatError('share hash region truncated');
  const n = parseUebLength(layout, regionBytes.subarray(at, at + layout.fieldSize));
  if (regionBytes.length !== at + layout.fieldSize + n) throw new ShareFormatError('share hash region has the wrong length');
  return regionBytes.subarray(at + layout.fieldSize);
}

export interface Ueb {
  segmentSize: number;
  size: number;
  numSegments: number;
  needed: number;
  total: number;
  /** Real bytes of the last segment, and that padded to a multiple of k (node.py:339-360 _calculate_sizes). */
  tailSegmentSize: number;
  tailSegmentPadded: number;
  blockSize: number;
  tailBlockSize: number;
  crypttextRootHash: Buffer;
  shareRootHash: Buffer;
  /** Hash of the whole crypttext, when the UEB has it (encode.py:534); informational. */
  crypttextHash?: Buffer;
}

/** uri.py:906-929 unpack_extension, but strict: well-formed netstrings, keys once each, decimal integers. */
function unpackUeb(bytes: Buffer): Map<string, Buffer> {
  const fields = new Map<string, Buffer>();
  let pos = 0;
  while (pos < bytes.length) {
    const colon = bytes.indexOf(0x3a, pos);
    if (colon < 0) throw new ShareFormatError('UEB malformed');
    const key = bytes.subarray(pos, colon).toString('latin1');
    if (!/^[a-zA-Z_-]+$/.test(key) || fields.has(key)) throw new ShareFormatError('UEB malformed key');
    const colon2 = bytes.indexOf(0x3a, colon + 1);
    const lenText = colon2 < 0 ? '' : bytes.subarray(colon + 1, colon2).toString('latin1');
    if (!/^(0|[1-9][0-9]{0,8})$/.test(lenText)) throw new ShareFormatError('UEB malformed length');
    const start = colon2 + 1;
    const end = start + Number(lenText);
    if (end >= bytes.length || bytes[end] !== 0x2c) throw new ShareFormatError('UEB malformed netstring');
    fields.set(key, bytes.subarray(start, end));
    pos = end + 1;
  }
  return fields;
}

function uebInt(fields: Map<string, Buffer>, key: string): number {
  const text = fields.get(key)?.toString('latin1');
  if (text === undefined || !/^(0|[1-9][0-9]{0,15})$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new ShareFormatError(`UEB ${key} missing or malformed`);
  }
  return Number(text);
}

function uebHash32(fields: Map<string, Buffer>, key: string): Buffer {
  const v = fields.get(key);
  if (!v || v.length !== HASH_SIZE) throw new ShareFormatError(`UEB ${key} missing or malformed`);
  return Buffer.from(v);
}

const nextMultiple = (n: number, k: number): number => Math.ceil(n / k) * k;

type Offsets = Pick<ShareLayout, 'blockSizeField' | 'dataSizeField' | 'plaintextHashTreeOffset' | 'crypttextHashTreeOffset' | 'blockHashesOffset' | 'shareHashesOffset' | 'uebOffset'>;

/** The offsets an honest writer makes for a file (layout.py:152-200 WriteBucketProxy._create_offsets). */
function expectedOffsets(dataOffset: number, size: number, k: number, segmentSize: number, shareHashCount: number): Offsets {
  const numSegments = Math.ceil(size / segmentSize);
  const blockSize = segmentSize / k;
  const tailBlockSize = nextMultiple(size % segmentSize || segmentSize, k) / k;
  const dataSize = blockSize * (numSegments - 1) + tailBlockSize;
  const treeBytes = treeNodeCount(numSegments) * HASH_SIZE;
  const pht = dataOffset + dataSize;
  return {
    blockSizeField: blockSize, dataSizeField: dataSize, plaintextHashTreeOffset: pht,
    crypttextHashTreeOffset: pht + treeBytes, blockHashesOffset: pht + 2 * treeBytes, shareHashesOffset: pht + 3 * treeBytes,
    uebOffset: pht + 3 * treeBytes + shareHashCount * (2 + HASH_SIZE),
  };
}

/** Tahoe's default maximum segment size since 1.19 (interfaces.py:36, used by client.py:631). */
export const DEFAULT_MAX_SEGMENT = 1024 * 1024;

/**
 * Where a layout puts a segment's block, from the layout's own fields (its block size and data size): the tail
 * block is what is left of the data. For a guessed layout, before the UEB is known; ShareBlocks.blockRange
 * gives the checked one.
 */
export function layoutBlockRange(layout: ShareLayout, segment: number): { offset: number; length: number } {
  const segments = Math.ceil(layout.dataSizeField / layout.blockSizeField);
  const s = Math.max(0, Math.min(segment, segments - 1));
  const offset = layout.dataOffset + s * layout.blockSizeField;
  return { offset, length: Math.min(layout.blockSizeField, layout.dataOffset + layout.dataSizeField - offset) };
}

/**
 * The layout Tahoe writes for this share when the file was uploaded with the default 1 MiB maximum segment
 * (interfaces.py:36; the segment is the file when smaller, rounded up to a multiple of k: upload.py). Only a
 * guess, to read the hash region at the same time as the header: the header read decides, and the guess is
 * used only if it is exactly the header's layout (sameLayout).
 */
export function guessLayout(cap: ChkCapParts, shareNum: number, maxSegmentSize = DEFAULT_MAX_SEGMENT): ShareLayout | undefined {
  if (shareNum < 0 || shareNum >= cap.total) return undefined;
  const segmentSize = nextMultiple(Math.min(maxSegmentSize, cap.size), cap.needed);
  const offsets = expectedOffsets(0x24, cap.size, cap.needed, segmentSize, neededForLeaf(cap.total, shareNum).length);
  if (offsets.uebOffset >= 2 ** 32) return undefined; // a v2 share: rare enough not to guess
  return { version: 1, fieldSize: 4, dataOffset: 0x24, ...offsets };
}

export function sameLayout(a: ShareLayout, b: ShareLayout): boolean {
  return a.version === b.version && a.dataOffset === b.dataOffset && (Object.keys(expectedOffsetsKeys) as Array<keyof Offsets>).every((k) => a[k] === b[k]);
}

const expectedOffsetsKeys: Record<keyof Offsets, true> = {
  blockSizeField: true, dataSizeField: true, plaintextHashTreeOffset: true, crypttextHashTreeOffset: true,
  blockHashesOffset: true, shareHashesOffset: true, uebOffset: true,
};

function checkOffsets(layout: ShareLayout, expect: Offsets): void {
  for (const key of Object.keys(expect) as Array<keyof Offsets>) {
    if (layout[key] !== expect[key]) throw new ShareFormatError(`share header ${key} does not fit the file`);
  }
}

/**
 * Before any read past the header, and before the UEB is known: checks that the header's offsets are exactly
 * those a writer of this cap's file makes for this share number, with the segment size the header's block size
 * implies (block size * k; the UEB must later agree, share() checks). So hashRegion() never names a range larger
 * than an honest share's: the data is ceil(size/k) bytes whatever the segment size, and the trees grow with the
 * number of segments, which the block size fixes.
 */
export function checkLayoutForCap(layout: ShareLayout, cap: ChkCapParts, shareNum: number): void {
  if (!Number.isInteger(shareNum) || shareNum < 0 || shareNum >= cap.total) throw new ShareFormatError(`share number ${shareNum} out of range`);
  if (layout.blockSizeField < 1) throw new ShareFormatError('share header block size is zero');
  const segmentSize = layout.blockSizeField * cap.needed;
  if (!Number.isSafeInteger(segmentSize)) throw new ShareFormatError('share header block size out of range');
  checkOffsets(layout, expectedOffsets(layout.dataOffset, cap.size, cap.needed, segmentSize, neededForLeaf(cap.total, shareNum).length));
}

export interface ShareBlocks {
  readonly shareNum: number;
  /** [offset, offset+length) of the segment's block in the share (layout.py:223 put_block). */
  blockRange(segment: number): { offset: number; length: number };
  /** Throws ShareFormatError unless block is this share's block of segment (share.py block hash tree). */
  verifyBlock(segment: number, block: Buffer): void;
  /** The block hash tree's leaf for a segment: what its block must hash to. */
  blockLeaf(segment: number): Buffer;
}

export class ChkFile {
  readonly ueb: Ueb;
  private readonly cap: ChkCapParts;
  private readonly uebBytes: Buffer;
  /** Leaves of the crypttext hash tree, from the first share whose tree checked out against the UEB's root. */
  private crypttextLeaves: Buffer[] | undefined;

  private constructor(cap: ChkCapParts, uebBytes: Buffer, ueb: Ueb) {
    this.cap = cap;
    this.uebBytes = Buffer.from(uebBytes);
    this.ueb = ueb;
  }

  /** A file from a share's UEB: its hash must be the cap's (share.py:408-429), its fields agree with the cap. */
  static fromUeb(uebBytes: Buffer, cap: ChkCapParts): ChkFile {
    if (!uriExtensionHash(uebBytes).equals(cap.uebHash)) throw new ShareFormatError('UEB hash does not match the cap');
    const fields = unpackUeb(uebBytes);
    const k = cap.needed;
    const n = cap.total;
    const size = uebInt(fields, 'size');
    const segmentSize = uebInt(fields, 'segment_size');
    const numSegments = uebInt(fields, 'num_segments');
    // Tahoe's downloader ignores the UEB's k and N for the cap's (node.py:276-294); its Verifier and we insist
    // they agree, as every honest encoder writes them (encode.py:705).
    if (uebInt(fields, 'needed_shares') !== k || uebInt(fields, 'total_shares') !== n) throw new ShareFormatError('UEB encoding differs from the cap');
    if (size !== cap.size) throw new ShareFormatError('UEB size differs from the cap');
    // node.py:339-360 _calculate_sizes: segments are a multiple of k; the tail is padded to one.
    if (segmentSize < 1 || segmentSize % k !== 0) throw new ShareFormatError('UEB segment size malformed');
    if (numSegments !== Math.ceil(size / segmentSize)) throw new ShareFormatError('UEB segment count malformed');
    const tailSegmentSize = size % segmentSize || segmentSize;
    const tailSegmentPadded = nextMultiple(tailSegmentSize, k);
    // encode.py:142-172: codec "crs", params "segsize-k-N" for whole segments and the padded tail.
    if (fields.get('codec_name')?.toString('latin1') !== 'crs') throw new ShareFormatError('UEB codec is not crs');
    if (fields.get('codec_params')?.toString('latin1') !== `${segmentSize}-${k}-${n}`) throw new ShareFormatError('UEB codec params malformed');
    if (fields.get('tail_codec_params')?.toString('latin1') !== `${tailSegmentPadded}-${k}-${n}`) throw new ShareFormatError('UEB tail codec params malformed');
    const crypttext = fields.get('crypttext_hash');
    if (crypttext && crypttext.length !== HASH_SIZE) throw new ShareFormatError('UEB crypttext_hash malformed');
    const ueb: Ueb = {
      segmentSize, size, numSegments, needed: k, total: n, tailSegmentSize, tailSegmentPadded,
      blockSize: segmentSize / k, tailBlockSize: tailSegmentPadded / k,
      crypttextRootHash: uebHash32(fields, 'crypttext_root_hash'), shareRootHash: uebHash32(fields, 'share_root_hash'),
      ...(crypttext ? { crypttextHash: Buffer.from(crypttext) } : {}),
    };
    return new ChkFile(cap, uebBytes, ueb);
  }

  private checkSegment(segment: number): void {
    if (!Number.isInteger(segment) || segment < 0 || segment >= this.ueb.numSegments) throw new RangeError(`no segment ${segment}`);
  }

  /** The segment's bytes in the plaintext file. */
  segmentRange(segment: number): { offset: number; length: number } {
    this.checkSegment(segment);
    const last = segment === this.ueb.numSegments - 1;
    return { offset: segment * this.ueb.segmentSize, length: last ? this.ueb.tailSegmentSize : this.ueb.segmentSize };
  }

  /** Bytes of one share's block of the segment (node.py:357-358). */
  blockSize(segment: number): number {
    this.checkSegment(segment);
    return segment === this.ueb.numSegments - 1 ? this.ueb.tailBlockSize : this.ueb.blockSize;
  }

  /**
   * Checks a share's header against the UEB's sizes and its hash region (read at hashRegion(layout).start):
   * its UEB is this file's, its crypttext hash tree leads to the UEB's crypttext root, its block hash tree's root
   * is the leaf its share hash chain leads from to the UEB's share root (share.py:431-500, node.py:329-333).
   */
  share(shareNum: number, layout: ShareLayout, regionBytes: Buffer): ShareBlocks {
    const u = this.ueb;
    if (!Number.isInteger(shareNum) || shareNum < 0 || shareNum >= u.total) throw new ShareFormatError(`share number ${shareNum} out of range`);
    const needed = neededForLeaf(u.total, shareNum);
    checkOffsets(layout, expectedOffsets(layout.dataOffset, u.size, u.needed, u.segmentSize, needed.length));
    if (!uebFromRegion(layout, regionBytes).equals(this.uebBytes)) throw new ShareFormatError('share UEB differs from the file\'s');

    const base = layout.crypttextHashTreeOffset;
    const hashesAt = (offset: number, count: number): Buffer[] =>
      Array.from({ length: count }, (_, i) => regionBytes.subarray(offset - base + i * HASH_SIZE, offset - base + (i + 1) * HASH_SIZE));
    const nodeCount = treeNodeCount(u.numSegments);
    const crypttextTree = hashesAt(layout.crypttextHashTreeOffset, nodeCount);
    if (!treeIsConsistent(crypttextTree, u.numSegments, u.crypttextRootHash)) throw new ShareFormatError('crypttext hash tree does not check out');
    const blockTree = hashesAt(layout.blockHashesOffset, nodeCount);
    if (!treeIsConsistent(blockTree, u.numSegments, blockTree[0]!)) throw new ShareFormatError('block hash tree does not check out');

    // Share hashes: (2-byte index, hash) pairs (layout.py:266-278), exactly the chain for this share's leaf.
    const chain = new Map<number, Buffer>();
    for (let at = layout.shareHashesOffset - base; at < layout.uebOffset - base; at += 2 + HASH_SIZE) {
      const index = regionBytes.readUInt16BE(at);
      if (chain.has(index)) throw new ShareFormatError('share hash chain repeats an index');
      chain.set(index, regionBytes.subarray(at + 2, at + 2 + HASH_SIZE));
    }
    if (!needed.every((i) => chain.has(i))) throw new ShareFormatError('share hash chain lacks a hash');
    if (!chain.get(leafIndex(u.total, shareNum))!.equals(blockTree[0]!)) throw new ShareFormatError('share hash chain leaf is not the block hash tree root');
    if (!chainRoot(u.total, shareNum, chain)?.equals(u.shareRootHash)) throw new ShareFormatError('share hash chain does not lead to the UEB share root');

    // Every share carries the same crypttext tree (all checked against one root): keep the first one's leaves.
    const firstLeaf = leafIndex(u.numSegments, 0);
    const leaves = (tree: Buffer[]): Buffer[] => tree.slice(firstLeaf, firstLeaf + u.numSegments).map((b) => Buffer.from(b));
    this.crypttextLeaves ??= leaves(crypttextTree);
    const blockLeaves = leaves(blockTree);
    const dataOffset = layout.dataOffset;
    return {
      shareNum,
      blockRange: (segment: number) => ({ offset: dataOffset + segment * u.blockSize, length: this.blockSize(segment) }),
      verifyBlock: (segment: number, block: Buffer) => {
        if (block.length !== this.blockSize(segment)) throw new ShareFormatError(`block ${segment} of share ${shareNum} has the wrong length`);
        if (!blockHash(block).equals(blockLeaves[segment]!)) throw new ShareFormatError(`block ${segment} of share ${shareNum} does not match its hash`);
      },
      blockLeaf: (segment: number) => {
        this.checkSegment(segment);
        return blockLeaves[segment]!;
      },
    };
  }

  /**
   * The plaintext of a segment from k verified blocks (shareNum -> block): zfec decode (node.py:447-481), strip the
   * tail's padding, check the crypttext against the crypttext hash tree (node.py:483-498), then AES-128-CTR with
   * the counter at the segment's offset (filenode.py:200-209, crypto/aes.py).
   */
  decodeSegment(segment: number, blocks: Map<number, Buffer>): Buffer {
    return decodeSegmentWork(this.segmentWork(segment, blocks));
  }

  /**
   * Everything decodeSegmentWork() needs for a segment, as plain data (it may run on another thread). With
   * `leafOf`, each block is checked against its share's block hash tree there too (blocks not yet verified).
   */
  segmentWork(segment: number, blocks: Map<number, Buffer>, leafOf?: (shareNum: number) => Buffer): SegmentWork {
    const u = this.ueb;
    const range = this.segmentRange(segment);
    if (!this.crypttextLeaves) throw new Error('no share checked yet: call share() first');
    const chosen = [...blocks.entries()].sort((a, b) => a[0] - b[0]).slice(0, u.needed);
    if (chosen.length < u.needed) throw new Error(`segment ${segment} needs ${u.needed} blocks, got ${chosen.length}`);
    return {
      segment,
      needed: u.needed,
      total: u.total,
      blockSize: this.blockSize(segment),
      offset: range.offset,
      length: range.length,
      crypttextLeaf: this.crypttextLeaves[segment]!,
      key: this.cap.key,
      blocks: chosen.map(([shareNum, block]) => ({ shareNum, block, ...(leafOf ? { leaf: leafOf(shareNum) } : {}) })),
    };
  }
}

/** One segment's decoding, as plain data: the blocks (and, if not verified yet, their block tree leaves). */
export interface SegmentWork {
  segment: number;
  needed: number;
  total: number;
  blockSize: number;
  /** The segment's bytes in the plaintext file. */
  offset: number;
  length: number;
  crypttextLeaf: Uint8Array;
  key: Uint8Array;
  blocks: Array<{ shareNum: number; block: Uint8Array; leaf?: Uint8Array }>;
}

/** A block that does not match its share's block hash tree: that share's server sent it. */
export class BlockMismatchError extends ShareFormatError {
  constructor(
    message: string,
    readonly shareNum: number,
  ) {
    super(message);
  }
}

/**
 * ChkFile.decodeSegment's work, pure (no state, plain data in and out), so that it can run on a worker thread:
 * each block's length and (if its leaf is given) hash, zfec, the crypttext hash, AES-128-CTR.
 */
export function decodeSegmentWork(w: SegmentWork): Buffer {
  const blocks: Buffer[] = [];
  for (const { shareNum, block, leaf } of w.blocks) {
    if (!Number.isInteger(shareNum) || shareNum < 0 || shareNum >= w.total) throw new ShareFormatError(`share number ${shareNum} out of range`);
    const bytes = Buffer.from(block.buffer, block.byteOffset, block.byteLength);
    if (bytes.length !== w.blockSize) throw new BlockMismatchError(`block ${w.segment} of share ${shareNum} has the wrong length`, shareNum);
    if (leaf && !blockHash(bytes).equals(leaf)) throw new BlockMismatchError(`block ${w.segment} of share ${shareNum} does not match its hash`, shareNum);
    blocks.push(bytes);
  }
  const primaries = zfecDecode(w.needed, w.total, blocks, w.blocks.map((b) => b.shareNum));
  const crypttext = Buffer.concat(primaries).subarray(0, w.length);
  if (!crypttextSegmentHash(crypttext).equals(w.crypttextLeaf)) throw new ShareFormatError(`segment ${w.segment} does not match the crypttext hash tree`);
  const iv = Buffer.alloc(16);
  const counter = Math.floor(w.offset / 16);
  iv.writeUInt32BE(Math.floor(counter / 2 ** 32), 8);
  iv.writeUInt32BE(counter % 2 ** 32, 12);
  const decipher = createDecipheriv('aes-128-ctr', w.key, iv);
  decipher.update(Buffer.alloc(w.offset % 16));
  return Buffer.concat([decipher.update(crypttext), decipher.final()]);
}
