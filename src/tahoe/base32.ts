// Tahoe's base32: RFC 3548 alphabet in lower case, without padding (allmydata/util/base32.py).
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const VALUE = new Map([...ALPHABET].map((c, i) => [c, i]));

export function encodeBase32(data: Uint8Array): string {
  let out = '';
  let bits = 0;
  let acc = 0;
  for (const byte of data) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

/** Decodes Tahoe base32; returns undefined for a character outside the alphabet or a length no encoder makes. */
export function decodeBase32(text: string): Buffer | undefined {
  const byteCount = Math.floor((text.length * 5) / 8);
  // Lengths mod 8 of 1, 3 and 6 characters cannot come from whole bytes.
  if ([1, 3, 6].includes(text.length % 8)) return undefined;
  const out = Buffer.alloc(byteCount);
  let bits = 0;
  let acc = 0;
  let pos = 0;
  for (const c of text) {
    const v = VALUE.get(c);
    if (v === undefined) return undefined;
    acc = ((acc << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      if (pos < byteCount) out[pos++] = (acc >>> (bits - 8)) & 0xff;
      bits -= 8;
    }
  }
  // Leftover bits must be zero, or the text is not canonical.
  if (bits > 0 && (acc & ((1 << bits) - 1)) !== 0) return undefined;
  return out;
}
