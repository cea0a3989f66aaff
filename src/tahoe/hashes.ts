// Tahoe's tagged SHA-256d hashes (allmydata/util/hashutil.py): the tags and the functions built on them.
import { createHash } from 'node:crypto';

function netstring(value: Buffer | string): Buffer[] {
  const body = typeof value === 'string' ? Buffer.from(value) : value;
  return [Buffer.from(`${body.length}:`), body, Buffer.from(',')];
}

/** SHA-256d over netstring(tag) + value, optionally truncated (hashutil.py:49-58, tagged_hash). */
export function taggedHash(tag: string, value: Buffer, truncateTo = 32): Buffer {
  const h = createHash('sha256');
  for (const part of netstring(tag)) h.update(part);
  h.update(value);
  return createHash('sha256').update(h.digest()).digest().subarray(0, truncateTo);
}

/** SHA-256d over netstring(tag) + netstring(a) + netstring(b) (hashutil.py:61-66, tagged_pair_hash). */
export function taggedPairHash(tag: string, a: Buffer, b: Buffer): Buffer {
  const h = createHash('sha256');
  for (const part of [...netstring(tag), ...netstring(a), ...netstring(b)]) h.update(part);
  return createHash('sha256').update(h.digest()).digest();
}

// hashutil.py:72-95.
export const STORAGE_INDEX_TAG = 'allmydata_immutable_key_to_storage_index_v1';
export const BLOCK_TAG = 'allmydata_encoded_subshare_v1';
export const UEB_TAG = 'allmydata_uri_extension_v1';
export const CIPHERTEXT_TAG = 'allmydata_crypttext_v1';
export const CIPHERTEXT_SEGMENT_TAG = 'allmydata_crypttext_segment_v1';
export const MUTABLE_READKEY_TAG = 'allmydata_mutable_writekey_to_readkey_v1';
export const MUTABLE_STORAGEINDEX_TAG = 'allmydata_mutable_readkey_to_storage_index_v1';
// hashtree.py:175-179.
const MERKLE_EMPTY_LEAF_TAG = 'Merkle tree empty leaf';
const MERKLE_INTERNAL_TAG = 'Merkle tree internal node';

/** An immutable file's storage index from its AES key (hashutil.py:102-108). */
export const storageIndexHash = (key: Buffer): Buffer => taggedHash(STORAGE_INDEX_TAG, key, 16);
export const blockHash = (block: Buffer): Buffer => taggedHash(BLOCK_TAG, block);
export const uriExtensionHash = (ueb: Buffer): Buffer => taggedHash(UEB_TAG, ueb);
export const crypttextHash = (crypttext: Buffer): Buffer => taggedHash(CIPHERTEXT_TAG, crypttext);
export const crypttextSegmentHash = (segment: Buffer): Buffer => taggedHash(CIPHERTEXT_SEGMENT_TAG, segment);
/** The hash standing in for leaf i past the real leaves of a Merkle tree (hashtree.py:175). */
export const emptyLeafHash = (i: number): Buffer => taggedHash(MERKLE_EMPTY_LEAF_TAG, Buffer.from(String(i)));
/** An internal node of a Merkle tree from its two children (hashtree.py:178). */
export const pairHash = (a: Buffer, b: Buffer): Buffer => taggedPairHash(MERKLE_INTERNAL_TAG, a, b);
