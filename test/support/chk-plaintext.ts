// The plaintexts of the CHK share fixtures (test/fixtures/chk/): a SHA-256 counter stream of the case name, so
// the fixtures need not store them.
import { createHash } from 'node:crypto';

export function plaintextFor(name: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0, off = 0; off < size; i++, off += 32) {
    createHash('sha256').update(`${name}:${i}`).digest().copy(out, off);
  }
  return out;
}
