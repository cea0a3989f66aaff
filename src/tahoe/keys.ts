// Keys for new mutable files and directories made here rather than by the gateway (issue 22's groundwork): an
// RSA-2048 key generated with node:crypto (on libuv's thread pool, off the main thread), and the caps it names,
// computed as Tahoe computes them, so that a cap is known before the gateway is asked anything:
// - the write key: ssk_writekey_hash over the private key's PKCS#8 DER (allmydata/util/hashutil.py 263-264,
//   crypto/rsa.py 120-134), 16 bytes;
// - the fingerprint: ssk_pubkey_fingerprint_hash over the public key's SubjectPublicKeyInfo DER (hashutil.py
//   277-278, rsa.py 137-150), 32 bytes;
// - the gateway takes the key as `private-key=` (URL-safe base64 of the DER; web/common.py 849-858) on
//   `POST /uri?t=mkdir` and `PUT /uri?format=MDMF` (web/unlinked.py 45, 163, 181).
// A private key is a write cap: never logged, kept 0600 wherever it is kept. No state.
import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { encodeBase32 } from './base32.js';
import { taggedHash } from './hashes.js';

const MUTABLE_WRITEKEY_TAG = 'allmydata_mutable_privkey_to_writekey_v1';
const MUTABLE_PUBKEY_TAG = 'allmydata_mutable_pubkey_to_fingerprint_v1';
/** Tahoe's mutable files are signed with RSA-2048, e = 65537 (crypto/rsa.py create_signing_keypair). */
const KEY_BITS = 2048;

export interface MutableKey {
  /** PKCS#8 DER: what the gateway is given, and what the write key is a hash of. */
  privateKeyDer: Buffer;
  writeKey: Buffer;
  fingerprint: Buffer;
}

/** The kinds of write cap one key can name. */
export type MutableKind = 'DIR2' | 'DIR2-MDMF' | 'SSK' | 'MDMF';

const generate = promisify(generateKeyPair);

/** A fresh key, made off the main thread. */
export async function generateMutableKey(): Promise<MutableKey> {
  const { privateKey, publicKey } = await generate('rsa', { modulusLength: KEY_BITS, publicExponent: 65537 });
  return mutableKeyOf(privateKey, publicKey);
}

/** The key a PKCS#8 DER holds (one kept on disk); throws on anything else. */
export function mutableKeyFromDer(privateKeyDer: Buffer): MutableKey {
  const privateKey = createPrivateKey({ key: privateKeyDer, format: 'der', type: 'pkcs8' });
  if (privateKey.asymmetricKeyType !== 'rsa' || privateKey.asymmetricKeyDetails?.modulusLength !== KEY_BITS) throw new Error('not an RSA-2048 key');
  return mutableKeyOf(privateKey, createPublicKey(privateKey));
}

export function mutableKeyOf(privateKey: KeyObject, publicKey: KeyObject): MutableKey {
  const privateKeyDer = privateKey.export({ type: 'pkcs8', format: 'der' });
  const publicKeyDer = publicKey.export({ type: 'spki', format: 'der' });
  return {
    privateKeyDer,
    writeKey: taggedHash(MUTABLE_WRITEKEY_TAG, privateKeyDer, 16),
    fingerprint: taggedHash(MUTABLE_PUBKEY_TAG, publicKeyDer),
  };
}

/** The write cap `key` names as a `kind`: `URI:KIND:<write key>:<fingerprint>` in Tahoe's base32. */
export function writeCapOf(key: MutableKey, kind: MutableKind): string {
  return `URI:${kind}:${encodeBase32(key.writeKey)}:${encodeBase32(key.fingerprint)}`;
}

/** The `private-key=` value of a request: URL-safe base64 of the DER, padded as Python's urlsafe_b64decode wants. */
export function privateKeyParam(key: MutableKey): string {
  return key.privateKeyDer.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}
