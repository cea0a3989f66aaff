// The storage servers' names and order (src/storage/gbs-client.ts, servers.ts): NURLs, announcements as a
// gateway's introducer cache and servers.yaml hold them, and the permuted order against Tahoe's own
// permute_server_hash (orders computed by allmydata.util.hashutil in Tahoe 1.20).
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseNurl } from '../../src/storage/gbs-client.js';
import { parseAnnouncements, permutedOrder, StorageServers } from '../../src/storage/servers.js';
import { decodeBase32 } from '../../src/tahoe/base32.js';
import { tempDirPerSuite } from '../support/temp-dir.js';

const SEEDS = [
  'n4zgw33unvtge3dkmzsgu5tenzrhkztmm5vxe2lcgvuw63rwm5zxaz3jmfzdo3lognqti33upf4xcndoo5qq',
  'nryxm6bsmfshm6jwoztho6tknruwi3d2ou2womrxnm2ggntfon3gs4dnnvvxsndcn5xhi5lmnj5gwyjxobqq',
  'gzrwu3tpon4gc4lpg5ygsndiojygc2lvmfzho3tpnrxhq4dyo5wxknbxmfwgw23bnr3hg4dcmnvgu2tcmvyq',
];
const NURL = 'pb://VBuqehifxJ99GTa931o1EmXobwpNKHcsGU0pGMfv37A@127.0.0.1:42281/lxgzdqxzhmeqvsnbmjd752hkqaazv3xb#v=1';

const CACHE = SEEDS.map(
  (seed, i) => `- ann:
    anonymous-storage-FURL: pb://fna2tidmql5te57u36efgamxfqtuenoz@tcp:127.0.0.1:4228${i}/lxgzdqxzhmeqvsnbmjd752hkqaazv3xb
    anonymous-storage-NURLs:
    - ${NURL.replace(':42281/', `:4228${i}/`)}
    my-version: tahoe-lafs/1.20.0
    nickname: storage${i}
    permutation-seed-base32: ${seed}
    service-name: storage
  key_s: v0-server${i}`,
).join('\n');

describe('storage servers', () => {
  let dir = '';
  tempDirPerSuite('bm-servers-', (d) => (dir = d));

  it('parses a NURL, and nothing that is not one', () => {
    const n = parseNurl(NURL)!;
    assert.equal(n.host, '127.0.0.1');
    assert.equal(n.port, 42281);
    assert.equal(n.swissnum, 'lxgzdqxzhmeqvsnbmjd752hkqaazv3xb');
    assert.equal(n.spkiHash.length, 32);
    assert.equal(parseNurl('pb://[::1]:1/x'.replace('pb://', `pb://${'A'.repeat(43)}@`) + '#v=1')?.host, '::1');
    for (const bad of [
      NURL.replace('#v=1', ''),
      NURL.replace('pb://', 'http://'),
      NURL.replace('VBuq', 'VB'),
      NURL.replace(':42281', ':99999'),
      'pb://fna2tidmql5te57u36efgamxfqtuenoz@tcp:127.0.0.1:42281/lxgz',
      '',
    ]) {
      assert.equal(parseNurl(bad), undefined, bad);
    }
  });

  it('reads an introducer cache and a servers.yaml; leaves out servers without an HTTP NURL', () => {
    const anns = parseAnnouncements(CACHE);
    assert.deepEqual(anns.map((a) => a.nickname), ['storage0', 'storage1', 'storage2']);
    assert.ok(anns[1]!.permutationSeed.equals(decodeBase32(SEEDS[1]!)!));
    const foolscapOnly = CACHE.replace(/ {4}anonymous-storage-NURLs:\n {4}- .*\n/, '');
    assert.equal(parseAnnouncements(foolscapOnly).length, 2);
    const yaml = `storage:\n  v0-abc:\n    ann:\n      nickname: static\n      anonymous-storage-NURLs: ['${NURL}']\n      permutation-seed-base32: ${SEEDS[0]}\n`;
    assert.deepEqual(parseAnnouncements(yaml).map((a) => [a.serverId, a.nickname]), [['v0-abc', 'static']]);
    assert.deepEqual(parseAnnouncements(': not yaml ['), []);
    assert.deepEqual(parseAnnouncements('just text'), []);
  });

  it('orders servers for a storage index as Tahoe does', () => {
    const servers = SEEDS.map((s, i) => ({ i, permutationSeed: decodeBase32(s)! }));
    // From allmydata.util.hashutil.permute_server_hash over the same seeds.
    for (const [si, order] of [
      ['aaaaaaaaaaaaaaaaaaaaaaaaaa', [2, 0, 1]],
      ['fbawxfmplaojabcdefghijklmm', [0, 2, 1]],
      ['zzzzzzzzzzzzzzzzzzzzzzzzzq', [2, 0, 1]],
    ] as const) {
      assert.deepEqual(permutedOrder(decodeBase32(si)!, servers).map((s) => s.i), order, si);
    }
  });

  it('finds the announcements in a node directory, and sees none where there are none', async () => {
    {
      const none = new StorageServers(dir);
      assert.equal(await none.any(), false);
      await mkdir(join(dir, 'private'));
      await writeFile(join(dir, 'private', 'introducer_default_cache.yaml'), CACHE);
      const some = new StorageServers(dir);
      try {
        assert.equal(await some.any(), true);
        const order = await some.forFile(decodeBase32('fbawxfmplaojabcdefghijklmm')!);
        assert.deepEqual(order.map((s) => s.client.name), ['storage0', 'storage2', 'storage1']);
        some.unreachable(order[0]!.serverId);
        assert.deepEqual((await some.forFile(decodeBase32('fbawxfmplaojabcdefghijklmm')!)).map((s) => s.client.name), ['storage2', 'storage1', 'storage0']);
      } finally {
        await some.close();
        await none.close();
      }
    }
  });
});
