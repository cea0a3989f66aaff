// Reads straight from the storage servers (src/storage/), against a real grid of its own: every byte as the
// web API serves it, for the LIT boundary, segment boundaries, many segments and 100 MiB; 1 MiB and 128 KiB
// segments; 1-of-1, 2-of-3 and 3-of-5; with a server stopped, with a share corrupted on a server's disk (a
// block, a hash tree, the UEB: the right bytes still, and the log names the server), with every share gone
// (EIO), with --direct-reads off and with no announcements in the node directory (through the gateway).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, rm } from 'node:fs/promises';
import { it } from 'node:test';
import { parseCap, redact } from '../../src/tahoe/caps.js';
import { eventually, TestMount, type Mode } from '../../grid/mount.js';
import { exists } from '../support/assert-fs.js';
import { describeWithGrid } from '../support/test-grid.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** The on-disk share file's container header (allmydata/storage/immutable.py): the share starts after it. */
const CONTAINER_HEADER = 12;

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

describeWithGrid('direct reads from the storage servers', { own: true }, (grid) => {
  async function mount(mode: Mode = 'no-split', extraArgs: string[] = [], announcements = true): Promise<TestMount> {
    return TestMount.start({ mode, gatewayUrl: grid.gatewayUrl, extraArgs, ...(announcements ? { announcementsFrom: grid.gatewayDir } : {}) });
  }

  /** Puts a file through the web API (as another client would); returns its cap once the mount lists it. */
  async function put(m: TestMount, name: string, data: Buffer): Promise<string> {
    await m.webPut(name, data);
    const cap = (await m.webList(''))[name]![1].ro_uri!;
    await eventually(`${name} appears`, () => exists(m.path(name)));
    return cap;
  }

  /** What the mount's log says of reads of this file: straight, through the gateway, servers passed over. */
  async function readsOf(m: TestMount, cap: string): Promise<{ direct: number; viaGateway: number; gatewayDownloads: number; badServers: string[] }> {
    const short = redact(cap);
    const records = await m.logRecords();
    const mine = records.filter((r) => r.file === short);
    return {
      direct: mine.filter((r) => r.msg === 'read straight from the storage servers').length,
      viaGateway: mine.filter((r) => r.msg === 'reading this file through the gateway').length,
      gatewayDownloads: (await m.requests(`read ${short}`)).length,
      badServers: mine.filter((r) => r.msg === 'storage server not used for this file').map((r) => `${String(r.server)}: ${String(r.reason)}`),
    };
  }

  async function readBack(m: TestMount, name: string, data: Buffer): Promise<void> {
    const got = await readFile(m.path(name));
    assert.equal(got.length, data.length, `${name}: length`);
    assert.equal(sha(got), sha(data), `${name}: bytes differ`);
  }

  it('reads every size byte-identical to the web API, straight from the servers (1 MiB segments, 2-of-3), in both modes', async () => {
    for (const mode of ['no-split', 'split'] as const) {
      const m = await mount(mode);
      try {
        const sizes = mode === 'split' ? [56, 2 * MiB + 1] : [0, 1, 55, 56, 57, MiB - 1, MiB, MiB + 1, 2 * MiB, 5 * MiB + 3];
        for (const size of sizes) {
          const data = randomBytes(size);
          const name = `f${size}.bin`;
          const cap = await put(m, name, data);
          await readBack(m, name, data);
          assert.ok((await m.webGet(name)).equals(data), 'the web API serves what was put');
          if (size <= 55) continue; // a literal cap holds its bytes: nothing is downloaded
          const r = await readsOf(m, cap);
          assert.ok(r.direct >= 1, `${mode} ${size}: read straight (${JSON.stringify(r)})`);
          assert.equal(r.viaGateway, 0, `${mode} ${size}: nothing through the gateway`);
          assert.equal(r.gatewayDownloads, 0, `${mode} ${size}: no web-API download`);
        }
      } finally {
        await m.cleanup();
      }
    }
  });

  it('reads 100 MiB, and a read in the middle of a cold file, straight from the servers', async () => {
    const m = await mount();
    try {
      const data = randomBytes(100 * MiB);
      const cap = await put(m, 'big.bin', data);
      const fh = await open(m.path('big.bin'), 'r');
      try {
        const buf = Buffer.alloc(MiB);
        const { bytesRead } = await fh.read(buf, 0, MiB, 64 * MiB + 12345);
        assert.equal(bytesRead, MiB);
        assert.ok(buf.equals(data.subarray(64 * MiB + 12345, 65 * MiB + 12345)), 'the bytes in the middle');
      } finally {
        await fh.close();
      }
      await readBack(m, 'big.bin', data);
      const r = await readsOf(m, cap);
      assert.ok(r.direct >= 1 && r.viaGateway === 0 && r.gatewayDownloads === 0, JSON.stringify(r));
    } finally {
      await m.cleanup();
    }
  });

  it('reads files of 128 KiB segments, and of 1-of-1 and 3-of-5 encodings, straight from the servers', async () => {
    const cases: Array<{ cfg: Record<string, number>; sizes: number[] }> = [
      { cfg: { 'shares._max_immutable_segment_size_for_testing': 128 * KiB }, sizes: [128 * KiB - 1, 128 * KiB, 128 * KiB + 1, 3 * MiB + 5] },
      { cfg: { 'shares.needed': 1, 'shares.total': 1, 'shares.happy': 1 }, sizes: [57, 3 * MiB + 5] },
      { cfg: { 'shares.needed': 3, 'shares.total': 5, 'shares.happy': 3 }, sizes: [57, 3 * MiB + 5] },
    ];
    try {
      for (const { cfg, sizes } of cases) {
        await grid.configureGateway({ 'shares.needed': 2, 'shares.total': 3, 'shares.happy': 3, 'shares._max_immutable_segment_size_for_testing': MiB, ...cfg });
        const m = await mount();
        try {
          for (const size of sizes) {
            const data = randomBytes(size);
            const name = `e${size}.bin`;
            const cap = await put(m, name, data);
            await readBack(m, name, data);
            const r = await readsOf(m, cap);
            assert.ok(r.direct >= 1 && r.viaGateway === 0 && r.gatewayDownloads === 0, `${JSON.stringify(cfg)} ${size}: ${JSON.stringify(r)}`);
          }
        } finally {
          await m.cleanup();
        }
      }
    } finally {
      await grid.configureGateway({ 'shares.needed': 2, 'shares.total': 3, 'shares.happy': 3, 'shares._max_immutable_segment_size_for_testing': MiB });
    }
  });

  /** The storage node holding share `shareNum` of a cap. */
  async function holderOf(cap: string, shareNum: number): Promise<number> {
    const si = parseCap(cap).storageIndex!;
    for (const i of [0, 1, 2]) if ((await grid.sharesOn(i, si)).includes(shareNum)) return i;
    throw new Error(`no node holds share ${shareNum}`);
  }

  it('a stopped server: the other shares are decoded (zfec), straight from the servers', async () => {
    const m = await mount();
    const data = randomBytes(3 * MiB + 7);
    const cap = await put(m, 'stopped.bin', data);
    const node = await holderOf(cap, 0);
    try {
      await grid.stopStorageNode(node);
      await readBack(m, 'stopped.bin', data);
      const r = await readsOf(m, cap);
      assert.ok(r.direct >= 1 && r.gatewayDownloads === 0, JSON.stringify(r));
    } finally {
      await grid.startStorageNode(node);
      await m.cleanup();
    }
  });

  it('a share corrupted on a server (a block, a hash tree, the UEB): the right bytes, and the log names the server', async () => {
    const m = await mount();
    try {
      for (const where of ['block', 'crypttext hash tree', 'block hashes', 'share hashes', 'ueb', 'header'] as const) {
        const data = randomBytes(2 * MiB + 99);
        const name = `corrupt-${where.replace(/ /g, '-')}.bin`;
        const cap = await put(m, name, data);
        const node = await holderOf(cap, 0);
        const path = grid.shareFile(node, parseCap(cap).storageIndex!, 0);
        const share = await readFile(path);
        const at = CONTAINER_HEADER + offsetIn(share.subarray(CONTAINER_HEADER), where);
        const fh = await open(path, 'r+');
        try {
          await fh.write(Buffer.from([share[at]! ^ 0x40]), 0, 1, at);
        } finally {
          await fh.close();
        }
        await readBack(m, name, data);
        const r = await readsOf(m, cap);
        assert.ok(r.badServers.some((s) => s.startsWith(`storage${node}:`)), `${where}: the log names storage${node} (${JSON.stringify(r)})`);
      }
    } finally {
      await m.cleanup();
    }
  });

  it('every share gone: EIO, as through the gateway', async () => {
    const m = await mount();
    try {
      const data = randomBytes(MiB + 3);
      const cap = await put(m, 'gone.bin', data);
      const si = parseCap(cap).storageIndex!;
      for (const i of [0, 1, 2]) for (const n of await grid.sharesOn(i, si)) await rm(grid.shareFile(i, si, n));
      await assert.rejects(readFile(m.path('gone.bin')), (e: NodeJS.ErrnoException) => e.code === 'EIO');
    } finally {
      await m.cleanup();
    }
  });

  it('servers whose certificate is not the one their NURL names are not spoken to: through the gateway', async () => {
    // Every NURL's SPKI hash changed by one character: the servers' real certificates no longer match.
    const m = await TestMount.start({
      mode: 'no-split', gatewayUrl: grid.gatewayUrl, announcementsFrom: grid.gatewayDir,
      editAnnouncements: (text) => text.replace(/pb:\/\/([A-Za-z0-9_-])([A-Za-z0-9_-]{42})@/g, (_, first: string, rest: string) => `pb://${first === 'A' ? 'B' : 'A'}${rest}@`),
    });
    try {
      const data = randomBytes(MiB + 5);
      const cap = await put(m, 'pinned.bin', data);
      await readBack(m, 'pinned.bin', data);
      const r = await readsOf(m, cap);
      assert.equal(r.direct, 0, JSON.stringify(r));
      assert.ok(r.viaGateway >= 1 && r.gatewayDownloads >= 1, JSON.stringify(r));
      const reason = (await m.logRecords()).find((rec) => rec.file === redact(cap) && rec.msg === 'reading this file through the gateway');
      assert.equal(reason?.reason, 'refused', JSON.stringify(reason));
    } finally {
      await m.cleanup();
    }
  });

  it('--direct-reads off, or a node directory without announcements: through the gateway', async () => {
    for (const [args, announcements] of [[['--direct-reads', 'off']], [[], false]] as Array<[string[], boolean?]>) {
      const m = await mount('no-split', args, announcements ?? true);
      try {
        const data = randomBytes(MiB + 5);
        const cap = await put(m, 'via.bin', data);
        await readBack(m, 'via.bin', data);
        const r = await readsOf(m, cap);
        assert.equal(r.direct, 0, JSON.stringify(r));
        assert.ok(r.gatewayDownloads >= 1, JSON.stringify(r));
      } finally {
        await m.cleanup();
      }
    }
  });
});

/** Where in a share (its bytes after the container header) a byte of the named part sits (immutable/layout.py). */
function offsetIn(share: Buffer, where: 'block' | 'crypttext hash tree' | 'block hashes' | 'share hashes' | 'ueb' | 'header'): number {
  const v2 = share.readUInt32BE(0) === 2;
  const field = (i: number): number => (v2 ? Number(share.readBigUInt64BE(0x14 + 8 * i)) : share.readUInt32BE(0x0c + 4 * i));
  const [data, , crypttext, blockHashes, shareHashes, ueb] = [0, 1, 2, 3, 4, 5].map(field) as [number, number, number, number, number, number];
  switch (where) {
    case 'block': return data + 1000;
    case 'crypttext hash tree': return crypttext + 5;
    case 'block hashes': return blockHashes + 5;
    case 'share hashes': return shareHashes + 5;
    case 'ueb': return ueb + (v2 ? 8 : 4) + 20;
    case 'header': return v2 ? 0x2c + 7 : 0x18 + 3; // the low byte of the block hashes' offset
  }
}
