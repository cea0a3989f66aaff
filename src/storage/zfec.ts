// STAND-IN for the zfec decoder another helper writes (same signature): handles only the case where every given
// block is a primary (shareNum < k), which for zfec's systematic code is just putting them in order.
export function zfecDecode(k: number, n: number, blocks: readonly Buffer[], shareNums: readonly number[]): Buffer[] {
  if (blocks.length !== k || shareNums.length !== k) throw new Error(`zfec: need exactly ${k} blocks`);
  const out = new Array<Buffer | undefined>(k);
  shareNums.forEach((s, i) => {
    if (!Number.isInteger(s) || s < 0 || s >= n) throw new Error(`zfec: share number ${s} out of range`);
    if (s >= k) throw new Error('zfec stand-in: secondary blocks are not supported');
    if (out[s]) throw new Error(`zfec: share ${s} given twice`);
    out[s] = blocks[i]!;
  });
  return out as Buffer[];
}
