// Tahoe's complete binary Merkle trees (allmydata/hashtree.py) as stored in CHK shares: node 0 is the root, the
// children of node i are 2i+1 and 2i+2, and the leaves are padded to a power of two with empty-leaf hashes.
import { emptyLeafHash, pairHash } from '../tahoe/hashes.js';

export const HASH_SIZE = 32;

/** Smallest power of two >= x (hashtree.py:62 roundup_pow2). */
export function roundupPow2(x: number): number {
  let ans = 1;
  while (ans < x) ans *= 2;
  return ans;
}

/** Number of nodes of the tree over numLeaves leaves (layout.py:160-161: (2*next_power_of_2 - 1) hashes). */
export const treeNodeCount = (numLeaves: number): number => 2 * roundupPow2(numLeaves) - 1;

/** Node index of leaf j (hashtree.py:164 get_leaf_index). */
export const leafIndex = (numLeaves: number, j: number): number => roundupPow2(numLeaves) - 1 + j;

/** All nodes of the tree over these leaves, root first (hashtree.py:198-225, HashTree.__init__). */
export function buildTree(leaves: readonly Buffer[]): Buffer[] {
  const width = roundupPow2(leaves.length);
  const nodes: Buffer[] = new Array<Buffer>(2 * width - 1);
  for (let j = 0; j < width; j++) nodes[width - 1 + j] = j < leaves.length ? leaves[j]! : emptyLeafHash(j);
  for (let i = width - 2; i >= 0; i--) nodes[i] = pairHash(nodes[2 * i + 1]!, nodes[2 * i + 2]!);
  return nodes;
}

/**
 * Whether a whole stored tree is the one an honest encoder wrote over numLeaves leaves with this root: every
 * internal node is the pair hash of its children and every padding leaf is the empty-leaf hash. (Tahoe's
 * IncompleteHashTree checks only the nodes on the paths it uses; checking them all catches damage anywhere.)
 */
export function treeIsConsistent(nodes: readonly Buffer[], numLeaves: number, root: Buffer): boolean {
  const width = roundupPow2(numLeaves);
  if (nodes.length !== 2 * width - 1 || !nodes[0]!.equals(root)) return false;
  for (let j = numLeaves; j < width; j++) if (!nodes[width - 1 + j]!.equals(emptyLeafHash(j))) return false;
  for (let i = 0; i < width - 1; i++) if (!nodes[i]!.equals(pairHash(nodes[2 * i + 1]!, nodes[2 * i + 2]!))) return false;
  return true;
}

/**
 * Node indices a reader needs to check leaf j up to the root: the sibling of every node on its path, plus the
 * leaf itself (hashtree.py:129 needed_for, :227 needed_hashes(include_leaf=True)), ascending.
 */
export function neededForLeaf(numLeaves: number, j: number): number[] {
  const needed = [leafIndex(numLeaves, j)];
  for (let here = needed[0]!; here !== 0; here = (here - 1) >> 1) needed.push(here % 2 === 1 ? here + 1 : here - 1);
  return needed.sort((a, b) => a - b);
}

/** The root a chain of hashes (index -> hash, as neededForLeaf lists) implies for leaf j, or undefined if one lacks. */
export function chainRoot(numLeaves: number, j: number, hashes: ReadonlyMap<number, Buffer>): Buffer | undefined {
  let here = leafIndex(numLeaves, j);
  let h = hashes.get(here);
  while (h && here !== 0) {
    const left = here % 2 === 1;
    const sibling = hashes.get(left ? here + 1 : here - 1);
    if (!sibling) return undefined;
    h = left ? pairHash(h, sibling) : pairHash(sibling, h);
    here = (here - 1) >> 1;
  }
  return h;
}
