// Makes the CHK share fixtures under test/fixtures/chk/ from a real local grid: uploads deterministic plaintexts
// with several encodings and segment sizes, then copies every share as the HTTP storage API serves it (the
// on-disk container's 12-byte header and trailing lease records stripped; allmydata/storage/immutable.py).
// Run: npm run build && node dist/scripts/make-chk-fixtures.js
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startGrid } from '../grid/local-grid.js';
import { parseCap } from '../src/tahoe/caps.js';
import { plaintextFor } from '../test/support/chk-plaintext.js';

interface Case { name: string; needed: number; total: number; happy: number; segsize?: number; size: number }

const CASES: Case[] = [
  { name: 'size57-2of3', needed: 2, total: 3, happy: 3, size: 57 },
  { name: 'oneseg-1of1', needed: 1, total: 1, happy: 1, segsize: 4096, size: 3000 },
  { name: 'twoseg-2of3', needed: 2, total: 3, happy: 3, segsize: 4096, size: 8192 },
  { name: 'twoseg-plus1-2of3', needed: 2, total: 3, happy: 3, segsize: 4096, size: 8193 },
  // 3-of-5 rounds the segment to 4098 (a multiple of k): the second segment starts off a 16-byte AES block.
  { name: 'twoseg-plus1-3of5', needed: 3, total: 5, happy: 3, segsize: 4096, size: 8193 },
  { name: 'many-2of3', needed: 2, total: 3, happy: 3, segsize: 4096, size: 36 * 4096 + 1000 },
];

function setClientOptions(cfgPath: string, opts: Record<string, string>): void {
  let lines = readFileSync(cfgPath, 'utf8').split('\n');
  let section = '';
  const seen = new Set<string>();
  lines = lines.map((line) => {
    const sec = /^\[(.*)\]\s*$/.exec(line);
    if (sec) section = sec[1]!;
    const kv = /^\s*([^=#\s]+)\s*=/.exec(line);
    if (section === 'client' && kv && kv[1]! in opts) {
      seen.add(kv[1]!);
      return `${kv[1]} = ${opts[kv[1]!]}`;
    }
    return line;
  });
  const idx = lines.findIndex((l) => /^\[client\]/.test(l));
  const extra = Object.keys(opts).filter((k) => !seen.has(k)).map((k) => `${k} = ${opts[k]}`);
  lines.splice(idx + 1, 0, ...extra);
  writeFileSync(cfgPath, lines.join('\n'));
}

function sharesOf(baseDir: string, si: string): Record<string, string> {
  const shares: Record<string, string> = {};
  for (const node of readdirSync(baseDir).filter((d) => d.startsWith('storage'))) {
    const dir = join(baseDir, node, 'storage', 'shares', si.slice(0, 2), si);
    if (!existsSync(dir)) continue;
    for (const shnum of readdirSync(dir)) {
      const file = readFileSync(join(dir, shnum));
      const numLeases = file.readUInt32BE(8);
      shares[shnum] = file.subarray(12, file.length - 72 * numLeases).toString('base64');
    }
  }
  return shares;
}

async function main(): Promise<void> {
  const grid = await startGrid({ log: (m) => console.error(m) });
  try {
    const cfg = join(grid.baseDir, 'gateway', 'tahoe.cfg');
    for (const c of CASES) {
      await grid.stopGateway();
      const opts: Record<string, string> = {
        'shares.needed': String(c.needed), 'shares.total': String(c.total), 'shares.happy': String(c.happy),
      };
      opts['shares._max_immutable_segment_size_for_testing'] = String(c.segsize ?? 131072);
      setClientOptions(cfg, opts);
      await grid.startGateway();
      const plaintext = plaintextFor(c.name, c.size);
      const res = await fetch(`${grid.gatewayUrl}uri`, { method: "PUT", body: new Uint8Array(plaintext) });
      const cap = (await res.text()).trim();
      if (!res.ok) throw new Error(`upload of ${c.name}: ${res.status} ${cap}`);
      const si = parseCap(cap).storageIndex!;
      const shares = sharesOf(grid.baseDir, si);
      const fixture = {
        name: c.name, cap, storageIndex: si, segsizeConfigured: c.segsize ?? 131072,
        plaintextSha256: createHash('sha256').update(plaintext).digest('hex'), shares,
      };
      writeFileSync(join('test', 'fixtures', 'chk', `${c.name}.json`), JSON.stringify(fixture, null, 1) + '\n');
      console.error(`${c.name}: ${cap.slice(0, 12)}... ${Object.keys(shares).length} shares`);
    }
  } finally {
    await grid.stop();
  }
}

if (process.argv[1]?.endsWith('make-chk-fixtures.js')) {
  main().catch((e) => { console.error(e); process.exitCode = 1; });
}
