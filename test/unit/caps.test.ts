import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { capAccess, CapError, parseCap, parseDirCap, redact, type CapKind } from '../../src/tahoe/caps.js';

interface Fixture {
  cap: string;
  kind: CapKind;
  /** As printed by `tahoe debug dump-cap` (Tahoe-LAFS 1.20.0). */
  si: string;
  writable: boolean;
  immutable: boolean;
  size?: number;
}

// Real caps made on a throwaway local grid (PUT /uri, PUT /uri?format=SDMF|MDMF, POST /uri?t=mkdir[&format=MDMF],
// POST /uri?t=mkdir-immutable; read-only caps from ?t=json), each with the storage index Tahoe printed for it.
const FIXTURES: Fixture[] = [
  { kind: 'CHK', si: 'yxlbvxyvqk5iwqbrpni63dajbq', writable: false, immutable: true, size: 3000,
    cap: 'URI:CHK:4zhgf23twgjzxlhat543enjx3q:zvku5rghnefe2r7xezbihj3vxqlbohvko6fs63jhwcn3vdbnnesa:2:3:3000' },
  { kind: 'CHK', si: 'dl2e6nzb2mpxyi2vbr2eptlja4', writable: false, immutable: true, size: 3000,
    cap: 'URI:CHK:tg37oz424oser7n4rb6pqmtar4:gedbvbxiwun7onbqxwprrmdjychhouq57bbjggiu2b4c6qnxjoqq:2:3:3000' },
  { kind: 'SSK', si: '3jxr6ownnrmaplwpf64yyvikry', writable: true, immutable: false,
    cap: 'URI:SSK:xikosfxhe7flzrssbub5fhscgm:5cl2lrs24soephk33xc7cpqyakkgnm2xxshqrhhagif5k6bpvnya' },
  { kind: 'SSK', si: 'slvaeff7y67gst6htmbtg5vdue', writable: true, immutable: false,
    cap: 'URI:SSK:phvinvejssdgldhzq3tyamgaai:x57orve7pasj5hwyqzqrjrsiu44fu4uuzepmbtkwions7rhij7ha' },
  { kind: 'SSK-RO', si: '3jxr6ownnrmaplwpf64yyvikry', writable: false, immutable: false,
    cap: 'URI:SSK-RO:itstmuvy2mf2gnooqh3ipweelm:5cl2lrs24soephk33xc7cpqyakkgnm2xxshqrhhagif5k6bpvnya' },
  { kind: 'SSK-RO', si: 'slvaeff7y67gst6htmbtg5vdue', writable: false, immutable: false,
    cap: 'URI:SSK-RO:77y76tcynj5dq2ea2iuujijeqy:x57orve7pasj5hwyqzqrjrsiu44fu4uuzepmbtkwions7rhij7ha' },
  { kind: 'MDMF', si: 'mkhwkxbkzxfxft4553jgxz7vfq', writable: true, immutable: false,
    cap: 'URI:MDMF:xjho5dotjmeop67m2ycrgguree:o3e7ikyrap7whumjrmqzbvrmb4qathyfkvyobk3cr4vrjytgxywq' },
  { kind: 'MDMF', si: '6jw7m6v7e3wfsbtt3b44pnbyuy', writable: true, immutable: false,
    cap: 'URI:MDMF:tfcmn3xofad3ri2mvca7zet5va:2qugstwppni65jxjdai5qawkv3lqhb2ty3kvff2fvsoaatb4lina' },
  { kind: 'MDMF-RO', si: 'mkhwkxbkzxfxft4553jgxz7vfq', writable: false, immutable: false,
    cap: 'URI:MDMF-RO:2yny7rdkkmun3ezisyequojkpm:o3e7ikyrap7whumjrmqzbvrmb4qathyfkvyobk3cr4vrjytgxywq' },
  { kind: 'MDMF-RO', si: '6jw7m6v7e3wfsbtt3b44pnbyuy', writable: false, immutable: false,
    cap: 'URI:MDMF-RO:orwnzh2f2vshfdrakqjbbxeshy:2qugstwppni65jxjdai5qawkv3lqhb2ty3kvff2fvsoaatb4lina' },
  { kind: 'DIR2', si: '7xc7ltbcizb3q5w53tt7j7guri', writable: true, immutable: false,
    cap: 'URI:DIR2:3nmylhjqubpdykuwdzv3oeci4m:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea' },
  { kind: 'DIR2', si: 'c5hwgwqcnrxqcjcfnvgx4gc5wi', writable: true, immutable: false,
    cap: 'URI:DIR2:575ro3fq4tijsmppmeuawnizlu:vgbe2auz4tnimijavbufuyygyl7ax3hhmvddslqmzxpotoivgaza' },
  { kind: 'DIR2-RO', si: '7xc7ltbcizb3q5w53tt7j7guri', writable: false, immutable: false,
    cap: 'URI:DIR2-RO:623cdgjqua7r4vzitgpqf3rvli:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea' },
  { kind: 'DIR2-RO', si: 'c5hwgwqcnrxqcjcfnvgx4gc5wi', writable: false, immutable: false,
    cap: 'URI:DIR2-RO:4cdcu5yopzw4sdg3ry2lmhdtee:vgbe2auz4tnimijavbufuyygyl7ax3hhmvddslqmzxpotoivgaza' },
  { kind: 'DIR2-CHK', si: 'vl3wuxibzujmjuvn75gevrhk6a', writable: false, immutable: true, size: 118,
    cap: 'URI:DIR2-CHK:f7gm7c4fe6726oqs73ehazdtqy:tm2jqid7bdqxvv6q5srounmhx7ysv5zmj3yvru2jwmt355tjloya:2:3:118' },
  { kind: 'DIR2-CHK', si: 'rjh67pgxskmqovkbwy5v7erf5q', writable: false, immutable: true, size: 118,
    cap: 'URI:DIR2-CHK:qha7x4aj2alagmbppk7czllvue:ccm3jle3cc2s4ctxnf4vpdholzlvw6ej6vwlzfdwc7f3dwggxz6q:2:3:118' },
  { kind: 'DIR2-MDMF', si: 'ehaouas55r2piyqsk2wdcqdyya', writable: true, immutable: false,
    cap: 'URI:DIR2-MDMF:6cb7ohzp2odsuktmsaopyzepyu:5xwcqx5577abopjhrgragxfz665ef2ltsrb3kgsbfrw2rej4zj7a' },
  { kind: 'DIR2-MDMF', si: 'b2pb7ws7t4ka5olkjlyb7liwgi', writable: true, immutable: false,
    cap: 'URI:DIR2-MDMF:42udnuo77dao4lp3i5l2o7uoxy:qohvsyoozhizxpx3pxxkapebqf5j6fkv4srmdvj73r6kfajnxaga' },
  { kind: 'DIR2-MDMF-RO', si: 'ehaouas55r2piyqsk2wdcqdyya', writable: false, immutable: false,
    cap: 'URI:DIR2-MDMF-RO:j75f4njug4oxfcistaftnyqnly:5xwcqx5577abopjhrgragxfz665ef2ltsrb3kgsbfrw2rej4zj7a' },
  { kind: 'DIR2-MDMF-RO', si: 'b2pb7ws7t4ka5olkjlyb7liwgi', writable: false, immutable: false,
    cap: 'URI:DIR2-MDMF-RO:uv7w4qpupnnkwnyiloyta26d7u:qohvsyoozhizxpx3pxxkapebqf5j6fkv4srmdvj73r6kfajnxaga' },
];

// Literal caps from the same grid: the data is in the cap (bytes as dump-cap printed them).
const LITERALS: Array<{ cap: string; kind: CapKind; data: Buffer }> = [
  { kind: 'LIT', cap: 'URI:LIT:4t4n2dlinyhq', data: Buffer.from('e4f8dd0d686e0f', 'hex') },
  { kind: 'LIT', cap: 'URI:LIT:wltckkecde32l4p2qtfn47a', data: Buffer.from('b2e62528821937a5f1fa84cade7c', 'hex') },
  { kind: 'LIT', cap: 'URI:LIT:', data: Buffer.alloc(0) },
  // An empty immutable directory, and one holding a LIT file "a": the packed directory entries themselves.
  { kind: 'DIR2-LIT', cap: 'URI:DIR2-LIT:', data: Buffer.alloc(0) },
  { kind: 'DIR2-LIT', cap: 'URI:DIR2-LIT:gm3dumj2mewdemb2kvjesosmjfkdundugrxdezdmnfxhs2drfqydulbshj5x2lbm',
    data: Buffer.from('36:1:a,20:URI:LIT:4t4n2dlinyhq,0:,2:{},,') },
];

/** Asserts that parsing throws a CapError whose message matches. */
function rejects(parse: (text: string) => unknown, text: string, message: RegExp): void {
  assert.throws(
    () => parse(text),
    (e: unknown) => e instanceof CapError && message.test(e.message),
    `${JSON.stringify(text)} should be rejected with ${message}`,
  );
}

const CHK = FIXTURES[0]!.cap;
const [, , CHK_KEY, CHK_UEB] = CHK.split(':');

describe('parseCap on real caps', () => {
  for (const f of FIXTURES) {
    it(`${f.kind} ${f.cap.slice(0, 30)}...: storage index matches tahoe dump-cap`, () => {
      const cap = parseCap(f.cap);
      assert.equal(cap.kind, f.kind);
      assert.equal(cap.text, f.cap);
      assert.equal(cap.storageIndex, f.si);
      assert.equal(cap.isDirectory, f.kind.startsWith('DIR2'));
      assert.equal(cap.writable, f.writable);
      assert.equal(cap.immutable, f.immutable);
      assert.equal(cap.size, f.size);
      assert.equal(cap.literalData, undefined);
    });
  }

  it('gives a write cap and its read-only cap the same storage index', () => {
    // Pairs come from the same object, so this also checks writekey -> readkey derivation.
    const byFingerprint = new Map<string, Set<string>>();
    for (const f of FIXTURES.filter((x) => !x.immutable)) {
      const fp = f.cap.split(':')[3]!;
      const set = byFingerprint.get(fp) ?? new Set<string>();
      set.add(parseCap(f.cap).storageIndex!);
      byFingerprint.set(fp, set);
    }
    for (const sis of byFingerprint.values()) assert.equal(sis.size, 1);
  });

  it('accepts MDMF caps with extension fields (k and segment size) and ignores them', () => {
    const plain = 'URI:MDMF:tfcmn3xofad3ri2mvca7zet5va:2qugstwppni65jxjdai5qawkv3lqhb2ty3kvff2fvsoaatb4lina';
    const cap = parseCap(`${plain}:3:131073`);
    assert.equal(cap.kind, 'MDMF');
    assert.equal(cap.storageIndex, '6jw7m6v7e3wfsbtt3b44pnbyuy');
  });

  it('trims surrounding whitespace (a cap pasted with its newline)', () => {
    const cap = parseCap(`  ${CHK}\n`);
    assert.equal(cap.text, CHK);
    assert.equal(cap.storageIndex, 'yxlbvxyvqk5iwqbrpni63dajbq');
  });
});

describe('parseCap on literal caps', () => {
  for (const l of LITERALS) {
    it(`${l.cap}: decodes its bytes locally`, () => {
      const cap = parseCap(l.cap);
      assert.equal(cap.kind, l.kind);
      assert.deepEqual(cap.literalData, l.data);
      assert.equal(cap.size, l.data.length);
      assert.equal(cap.storageIndex, undefined);
      assert.equal(cap.immutable, true);
      assert.equal(cap.writable, false);
      assert.equal(cap.isDirectory, l.kind === 'DIR2-LIT');
    });
  }
});

describe('parseCap rejects malformed caps', () => {
  it('rejects text that is not a cap', () => {
    for (const text of ['', 'hello', 'uri:CHK:abc', 'http://127.0.0.1:3456/uri/URI:DIR2:aa:bb', ' URL:DIR2:x']) {
      rejects(parseCap, text, /not a Tahoe capability.*"URI:"/);
    }
  });

  it('rejects unknown kinds, naming the kind', () => {
    rejects(parseCap, 'URI:FOO:abc:def', /unsupported capability kind "FOO"/);
    rejects(parseCap, 'URI:SSK-RW:abc:def', /unsupported capability kind "SSK-RW"/);
    rejects(parseCap, 'URI:', /unsupported capability kind ""/);
  });

  it('rejects characters outside base32 in keys', () => {
    rejects(parseCap, CHK.replace(CHK_KEY!, CHK_KEY!.toUpperCase()), /malformed CHK capability/);
    rejects(parseCap, CHK.replace(CHK_KEY!, CHK_KEY!.slice(0, -1) + '1'), /malformed CHK capability/);
    rejects(parseCap, 'URI:DIR2:3nmylhjqubpdykuwdzv3oeci4m:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2e0', /malformed DIR2 capability/);
    rejects(parseCap, 'URI:LIT:ABC', /malformed LIT capability/);
  });

  it('rejects keys and fingerprints of the wrong length', () => {
    // 24 characters decode to 15 bytes: valid base32, wrong key size.
    rejects(parseCap, CHK.replace(CHK_KEY!, CHK_KEY!.slice(0, 24)), /malformed CHK key/);
    rejects(parseCap, CHK.replace(CHK_KEY!, CHK_KEY! + 'aaaaaa'), /malformed CHK key/);
    rejects(parseCap, CHK.replace(CHK_UEB!, CHK_UEB!.slice(0, 48)), /malformed cap fingerprint/);
    rejects(parseCap, 'URI:SSK:xikosfxhe7flzrssbub5fhscgm:5cl2lrs24soephk', /malformed cap fingerprint/);
    rejects(parseCap, 'URI:DIR2:aaaaaaaa:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea', /malformed DIR2 key/);
    // 26 characters but a non-zero unused bit: not a canonical encoding of any key (Tahoe rejects it too).
    rejects(parseCap, CHK.replace(CHK_KEY!, CHK_KEY!.slice(0, -1) + 'r'), /malformed CHK key/);
  });

  it('rejects literal data of an impossible base32 length', () => {
    rejects(parseCap, 'URI:LIT:a', /malformed literal cap/);
    rejects(parseCap, 'URI:DIR2-LIT:abc', /malformed literal cap/);
  });

  it('rejects CHK parameters Tahoe cannot have made', () => {
    const base = `URI:CHK:${CHK_KEY}:${CHK_UEB}`;
    rejects(parseCap, `${base}:3:2:3000`, /malformed CHK parameters/); // k > n
    rejects(parseCap, `${base}:0:3:3000`, /malformed CHK parameters/); // k = 0
    rejects(parseCap, `${base}:2:257:3000`, /malformed CHK parameters/); // n > 256
    rejects(parseCap, `${base}:2:3:99999999999999999999`, /malformed CHK parameters/);
    rejects(parseCap, `${base}:2:3`, /malformed CHK capability/);
    rejects(parseCap, `${base}:2:3:-1`, /malformed CHK capability/);
  });

  it('rejects trailing junk on kinds without extension fields', () => {
    rejects(parseCap, `${CHK}:extra`, /malformed CHK capability/);
    rejects(parseCap, 'URI:DIR2:3nmylhjqubpdykuwdzv3oeci4m:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea:x', /malformed DIR2 capability/);
  });
});

describe('parseDirCap', () => {
  it('accepts every directory kind', () => {
    for (const f of FIXTURES.filter((x) => x.kind.startsWith('DIR2'))) assert.equal(parseDirCap(f.cap).kind, f.kind);
    for (const l of LITERALS.filter((x) => x.kind === 'DIR2-LIT')) assert.equal(parseDirCap(l.cap).kind, 'DIR2-LIT');
  });

  it('rejects file caps, saying it names a file', () => {
    for (const f of FIXTURES.filter((x) => !x.kind.startsWith('DIR2'))) {
      rejects(parseDirCap, f.cap, new RegExp(`a ${f.kind} capability names a file, not a directory`));
    }
    rejects(parseDirCap, 'URI:LIT:4t4n2dlinyhq', /a LIT capability names a file/);
  });

  it('passes on parse errors', () => {
    rejects(parseDirCap, 'not a cap', /not a Tahoe capability/);
  });
});

describe('redact', () => {
  const all = [...FIXTURES.map((f) => f.cap), ...LITERALS.map((l) => l.cap)];

  it('keeps the kind and hides every key, fingerprint and literal data', () => {
    for (const text of all) {
      const out = redact(text);
      const [, kind, ...secrets] = text.split(':');
      assert.match(out, new RegExp(`^${kind}#[0-9a-f]{10}$`));
      for (const secret of secrets.filter((s) => /^[a-z2-7]{8,}$/.test(s))) {
        assert.ok(!out.includes(secret), `${out} contains part of ${text}`);
      }
      assert.ok(!out.includes(text));
    }
  });

  it('is stable and tells caps apart', () => {
    const outs = all.map(redact);
    assert.deepEqual(all.map(redact), outs);
    assert.equal(new Set(outs).size, new Set(all).size);
  });

  it('handles text that is not a cap', () => {
    assert.match(redact('garbage'), /^\?#[0-9a-f]{10}$/);
    assert.ok(!redact('garbage').includes('garbage'));
  });
});

describe('capAccess', () => {
  it('tells what every kind of cap allows, as parseCap does, without hashing', () => {
    for (const f of FIXTURES) {
      assert.deepEqual(capAccess(f.cap), { kind: f.kind, writable: f.writable, immutable: f.immutable }, f.kind);
    }
    assert.equal(capAccess('URI:DIR2-MDMF-RO:nope'), undefined);
    assert.equal(capAccess('not a cap'), undefined);
  });
});
