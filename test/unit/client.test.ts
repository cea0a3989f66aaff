import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { text as streamText } from 'node:stream/consumers';
import { FsError } from '../../src/errors.js';
import { redact } from '../../src/tahoe/caps.js';
import { DEFAULT_TIMEOUTS, errnoForStatus, scrubCaps, TahoeClient } from '../../src/tahoe/client.js';
import { splitUrl, startFakeWebApi, type FakeWebApi } from '../support/fake-webapi.js';

const DIR = 'URI:DIR2:3nmylhjqubpdykuwdzv3oeci4m:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea';
const DIR_RO = 'URI:DIR2-RO:623cdgjqua7r4vzitgpqf3rvli:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea';
const SUB = 'URI:DIR2:46u5qv5otzvtddpnerjqd55rka:p3wkbocywzudzb4bp5ypmo22kd5j5yb27tkc7efoar2zgn2jwzdq';
const SUB_RO = 'URI:DIR2-RO:aszazkpm4gq2epyofpop6ugq3a:p3wkbocywzudzb4bp5ypmo22kd5j5yb27tkc7efoar2zgn2jwzdq';
const CHK = 'URI:CHK:wrhc5cw4xjmfgwlj7saw2tzhc4:llowspsswjfvfyfjgbgpoae4lq7jq5uwtqznp6erya5payc2jmvq:2:3:102';
const MDMF = 'URI:MDMF:4i52fugpa3jhwxjru2re6xhqfe:f3eq6hn77nuu5ksucz4hqb7bd64vyztevdqqxi3escx7vyxaxm6q';
const MDMF_RO = 'URI:MDMF-RO:5y4td4wl23aj2r3hnjc2pehkpq:f3eq6hn77nuu5ksucz4hqb7bd64vyztevdqqxi3escx7vyxaxm6q';

// Every character that means something in a URL path or query, plus non-ASCII.
const NAMES = [
  'with space',
  'q?mark',
  'hash#tag',
  'per%cent',
  '%20already-encoded',
  'plus+sign',
  'amp&and',
  'eq=ual',
  'a b?c#d%e+f&g=h;i',
  'ünïcødé 日本語',
  'emoji 😀',
  "quote'\"<>`{}|\\^[]",
  '~tilde!*()',
];

/** Asserts the promise rejects with an FsError of this code whose message matches. */
async function rejectsFs(p: Promise<unknown>, code: string, message?: RegExp): Promise<FsError> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => {
    caught = e;
    return true;
  });
  assert.ok(caught instanceof FsError, `expected FsError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (message) assert.match(caught.message, message);
  return caught;
}

/** The default schedule, with retries that do not wait: the tests count attempts, not time. */
const FAST_RETRIES = { ...DEFAULT_TIMEOUTS, retryDelaysMs: [1, 1, 1] };

describe('TahoeClient against a fake web API', () => {
  let api: FakeWebApi;
  let client: TahoeClient;

  before(async () => {
    api = await startFakeWebApi();
    client = new TahoeClient(api.url, FAST_RETRIES);
  });
  after(async () => {
    await client.close();
    await api.close();
  });
  beforeEach(() => {
    api.requests.length = 0;
    api.handle((_req, res) => res.end());
  });

  /** The one request the last operation made. */
  function only(): { method: string; segments: string[]; query: URLSearchParams; rawQuery: string; body: Buffer } {
    assert.equal(api.requests.length, 1);
    const r = api.requests[0]!;
    return { method: r.method, body: r.body, ...splitUrl(r.rawUrl) };
  }

  describe('child names survive URL encoding', () => {
    for (const name of NAMES) {
      it(`unlink ${JSON.stringify(name)}`, async () => {
        api.requests.length = 0;
        await client.unlink(DIR, name);
        const r = only();
        assert.equal(r.method, 'DELETE');
        // Exactly three path segments and no query: nothing in the name split the path or started a query.
        assert.deepEqual(r.segments, ['uri', DIR, name]);
        assert.equal(r.rawQuery, '');
      });

      it(`mkdir ${JSON.stringify(name)}`, async () => {
        api.requests.length = 0;
        api.handle((_req, res) => res.end(SUB + '\n'));
        assert.equal(await client.mkdir(DIR, name), SUB);
        const r = only();
        assert.equal(r.method, 'POST');
        assert.deepEqual(r.segments, ['uri', DIR]);
        assert.equal(r.query.get('t'), 'mkdir');
        assert.equal(r.query.get('name'), name);
        assert.equal(r.query.get('replace'), 'false');
        assert.deepEqual([...r.query.keys()].sort(), ['name', 'replace', 't']);
      });

      it(`relink ${JSON.stringify(name)}`, async () => {
        api.requests.length = 0;
        await client.relink(DIR, name, SUB, `${name}.2`, true);
        const r = only();
        assert.equal(r.method, 'POST');
        assert.deepEqual(r.segments, ['uri', DIR]);
        assert.equal(r.query.get('t'), 'relink');
        assert.equal(r.query.get('from_name'), name);
        assert.equal(r.query.get('to_dir'), SUB);
        assert.equal(r.query.get('to_name'), `${name}.2`);
        assert.equal(r.query.get('replace'), 'true');
        assert.equal(r.rawQuery.includes('+'), false, 'spaces must not be sent as "+"');
      });

      it(`setChild ${JSON.stringify(name)}`, async () => {
        api.requests.length = 0;
        await client.setChild(DIR, name, { type: 'file', roUri: CHK, metadata: { mtime: 12.5 } }, false);
        const r = only();
        assert.equal(r.method, 'POST');
        assert.deepEqual(r.segments, ['uri', DIR]);
        assert.equal(r.query.get('t'), 'set_children');
        assert.equal(r.query.get('replace'), 'false');
        assert.deepEqual(JSON.parse(r.body.toString('utf8')), { [name]: ['filenode', { ro_uri: CHK, metadata: { mtime: 12.5 } }] });
      });
    }
  });

  it('relink with replace=false says so', async () => {
    await client.relink(DIR, 'a', DIR, 'b', false);
    assert.equal(only().query.get('replace'), 'false');
  });

  it('setChild sends a directory with both caps and replace=true', async () => {
    const metadata = { mtime: 1700000000, tahoe: { linkcrtime: 1, linkmotime: 2 } };
    await client.setChild(DIR, 'd', { type: 'dir', rwUri: SUB, roUri: SUB_RO, metadata }, true);
    const r = only();
    assert.equal(r.query.get('replace'), 'true');
    assert.deepEqual(JSON.parse(r.body.toString('utf8')), { d: ['dirnode', { rw_uri: SUB, ro_uri: SUB_RO, metadata }] });
  });

  it('setChild leaves out what the target does not have', async () => {
    await client.setChild(DIR, 'm', { type: 'file', rwUri: MDMF }, false);
    assert.deepEqual(JSON.parse(only().body.toString('utf8')), { m: ['filenode', { rw_uri: MDMF }] });
  });

  it('upload PUTs the body to /uri and returns the trimmed cap', async () => {
    api.handle((_req, res) => res.end(CHK + '\n'));
    const body = Buffer.from('x'.repeat(102));
    assert.equal(await client.upload(body, body.length), CHK);
    const r = only();
    assert.equal(r.method, 'PUT');
    assert.deepEqual(r.segments, ['uri']);
    assert.deepEqual(r.body, body);
    assert.equal(api.requests[0]!.headers['content-length'], '102');
  });

  it('upload streams a Readable body', async () => {
    api.handle((_req, res) => res.end(CHK));
    const parts = [Buffer.from('abc'), Buffer.from('def')];
    await client.upload(Readable.from(parts), 6);
    assert.equal(only().body.toString(), 'abcdef');
  });

  it('overwriteMutable PUTs to the file cap', async () => {
    await client.overwriteMutable(MDMF, Buffer.from('new'), 3);
    const r = only();
    assert.equal(r.method, 'PUT');
    assert.deepEqual(r.segments, ['uri', MDMF]);
    assert.equal(r.body.toString(), 'new');
  });

  it('createDirectory POSTs /uri?t=mkdir', async () => {
    api.handle((_req, res) => res.end(`${SUB}\n`));
    assert.equal(await client.createDirectory(), SUB);
    const r = only();
    assert.equal(r.method, 'POST');
    assert.deepEqual(r.segments, ['uri']);
    assert.equal(r.rawQuery, 't=mkdir');
  });

  describe('listDir', () => {
    // Shape as Tahoe 1.20 answers GET /uri/$DIRCAP?t=json (trimmed copy of a real answer), plus odd entries.
    const listing = [
      'dirnode',
      {
        rw_uri: DIR,
        ro_uri: DIR_RO,
        verify_uri: 'URI:DIR2-Verifier:7xc7ltbcizb3q5w53tt7j7guri:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea',
        mutable: true,
        children: {
          'file one': ['filenode', {
            mutable: false, format: 'CHK', size: 102, ro_uri: CHK,
            metadata: { tahoe: { linkcrtime: 1795648702.700674, linkmotime: 1795648702.700674 } },
          }],
          mut: ['filenode', {
            mutable: true, format: 'MDMF', rw_uri: MDMF, ro_uri: MDMF_RO,
            metadata: { tahoe: { linkcrtime: 1795648703.08, linkmotime: 1795648703.08 }, mtime: 1700000000 },
          }],
          sub: ['dirnode', { mutable: true, rw_uri: SUB, ro_uri: SUB_RO, metadata: { tahoe: { linkcrtime: 1, linkmotime: 2 } } }],
          'ünï 😀': ['unknown', { ro_uri: 'imm.URI:FUTURE:abc' }],
          broken1: 'not an array',
          broken2: ['filenode', null],
        },
      },
    ];

    it('asks for ?t=json on the encoded cap', async () => {
      api.handle((_req, res) => res.end(JSON.stringify(listing)));
      await client.listDir(DIR);
      const r = only();
      assert.equal(r.method, 'GET');
      assert.deepEqual(r.segments, ['uri', DIR]);
      assert.equal(r.rawQuery, 't=json');
    });

    it('parses children, sizes, caps and metadata', async () => {
      api.handle((_req, res) => res.end(JSON.stringify(listing)));
      const dir = await client.listDir(DIR);
      assert.equal(dir.rwUri, DIR);
      assert.equal(dir.roUri, DIR_RO);
      assert.equal(dir.mutable, true);
      assert.deepEqual([...dir.children.keys()].sort(), ['file one', 'mut', 'sub', 'ünï 😀'].sort());
      assert.deepEqual(dir.children.get('file one'), {
        name: 'file one', type: 'file', rwUri: undefined, roUri: CHK, size: 102, mutable: false,
        metadata: { tahoe: { linkcrtime: 1795648702.700674, linkmotime: 1795648702.700674 } },
      });
      const mut = dir.children.get('mut')!;
      assert.equal(mut.type, 'file');
      assert.equal(mut.mutable, true);
      assert.equal(mut.size, undefined);
      assert.equal(mut.rwUri, MDMF);
      assert.equal(mut.metadata.mtime, 1700000000);
      const sub = dir.children.get('sub')!;
      assert.equal(sub.type, 'dir');
      assert.equal(sub.rwUri, SUB);
      assert.equal(dir.children.get('ünï 😀')!.type, 'unknown');
      assert.deepEqual(dir.children.get('ünï 😀')!.metadata, {});
    });

    it('reads a read-only directory with no children', async () => {
      api.handle((_req, res) => res.end(JSON.stringify(['dirnode', { ro_uri: DIR_RO, mutable: true }])));
      const dir = await client.listDir(DIR_RO);
      assert.equal(dir.rwUri, undefined);
      assert.equal(dir.children.size, 0);
    });

    it('says ENOTDIR when the cap is a file', async () => {
      api.handle((_req, res) => res.end(JSON.stringify(['filenode', { ro_uri: CHK, size: 102 }])));
      await rejectsFs(client.listDir(CHK), 'ENOTDIR', /not a directory/);
    });

    it('says EIO on malformed JSON', async () => {
      api.handle((_req, res) => res.end('<html>oops'));
      await rejectsFs(client.listDir(DIR), 'EIO', /malformed JSON/);
    });
  });

  describe('HTTP errors', () => {
    const cases: Array<[number, string, string]> = [
      [404, 'No such child: nosuch', 'ENOENT'],
      [409, 'There was already a child by that name, and you asked me to not replace it.', 'EEXIST'],
      [400, 'Bad request', 'EINVAL'],
      [400, 'blah is not a directory', 'ENOTDIR'],
      [403, 'Forbidden', 'EACCES'],
      [403, 'this directory is read-only', 'EROFS'],
      [410, 'NoSharesError: no shares could be found', 'EIO'],
      [413, 'too big', 'EFBIG'],
      [500, 'Internal Server Error', 'EIO'],
      [503, 'unavailable', 'EIO'],
    ];
    for (const [status, body, code] of cases) {
      it(`${status} "${body}" -> ${code}`, async () => {
        api.handle((_req, res) => {
          res.statusCode = status;
          res.end(body);
        });
        const e = await rejectsFs(client.unlink(DIR, 'x'), code, new RegExp(`HTTP ${status}`));
        assert.ok(e.message.includes(body.split('\n')[0]!.slice(0, 50)));
        // Downloads map statuses the same way.
        await rejectsFs(client.download(CHK), code);
      });
    }

    it('errnoForStatus maps statuses without a body', () => {
      assert.equal(errnoForStatus(404), 'ENOENT');
      assert.equal(errnoForStatus(409), 'EEXIST');
      assert.equal(errnoForStatus(400), 'EINVAL');
      assert.equal(errnoForStatus(403), 'EACCES');
      assert.equal(errnoForStatus(410), 'EIO');
      assert.equal(errnoForStatus(413), 'EFBIG');
      assert.equal(errnoForStatus(500), 'EIO');
      assert.equal(errnoForStatus(302), 'EIO');
    });

    it('errnoForStatus reads the body for 400 and 403', () => {
      assert.equal(errnoForStatus(400, 'x is not a directory'), 'ENOTDIR');
      assert.equal(errnoForStatus(403, 'Read-Only'), 'EROFS');
      assert.equal(errnoForStatus(403, 'readonly dirnode'), 'EROFS');
    });

    it('never puts a cap from the error body or the request into the message', async () => {
      api.handle((_req, res) => {
        res.statusCode = 500;
        res.end(`Exception: could not handle ${DIR} or ${CHK}\nmore`);
      });
      const e = await rejectsFs(client.listDir(DIR), 'EIO');
      for (const secret of ['3nmylhjqubpdykuwdzv3oeci4m', 'w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea', 'wrhc5cw4xjmfgwlj7saw2tzhc4']) {
        assert.ok(!e.message.includes(secret), e.message);
      }
      assert.ok(e.message.includes(redact(DIR)));
    });
  });

  describe('retries', () => {
    it('retries an idempotent request after 5xx answers, then succeeds', async () => {
      let n = 0;
      api.handle((_req, res) => {
        if (++n < 3) {
          res.statusCode = 503;
          res.end('busy');
          return;
        }
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(['dirnode', { children: {} }]));
      });
      const listing = await client.listDir(DIR);
      assert.equal(listing.children.size, 0);
      assert.equal(api.requests.length, 3);
    });

    it('gives up after its retries with EIO', async () => {
      api.handle((_req, res) => {
        res.statusCode = 500;
        res.end('Internal Server Error');
      });
      await rejectsFs(client.listDir(DIR), 'EIO');
      assert.equal(api.requests.length, 1 + FAST_RETRIES.retryDelaysMs.length);
    });

    it('sends a fresh upload body on each attempt', async () => {
      let n = 0;
      const bodies: string[] = [];
      api.handle((req, res) => {
        bodies.push(req.body.toString());
        if (++n < 2) {
          res.statusCode = 502;
          res.end('bad gateway');
          return;
        }
        res.end(CHK);
      });
      assert.equal(await client.upload(() => Readable.from([Buffer.from('payload')]), 7), CHK);
      assert.deepEqual(bodies, ['payload', 'payload']);
    });

    it('never repeats a request that is not idempotent, nor one that failed for a reason', async () => {
      api.handle((_req, res) => {
        res.statusCode = 503;
        res.end('busy');
      });
      await rejectsFs(client.mkdir(DIR, 'd'), 'EIO');
      await rejectsFs(client.unlink(DIR, 'x'), 'EIO');
      assert.equal(api.requests.length, 2);
      api.handle((_req, res) => {
        res.statusCode = 404;
        res.end('No such child');
      });
      await rejectsFs(client.listDir(DIR), 'ENOENT');
      assert.equal(api.requests.length, 3);
    });
  });

  describe('download', () => {
    it('GETs the whole file without a Range header', async () => {
      api.handle((_req, res) => res.end('hello'));
      const body = await client.download(CHK);
      assert.equal(await streamText(body), 'hello');
      const r = only();
      assert.deepEqual(r.segments, ['uri', CHK]);
      assert.equal(api.requests[0]!.headers.range, undefined);
    });

    it('asks for an inclusive byte range for [start, end)', async () => {
      api.handle((_req, res) => {
        res.statusCode = 206;
        res.setHeader('content-range', 'bytes 2-4/10');
        res.end('cde');
      });
      const body = await client.download(CHK, { start: 2, end: 5 });
      assert.equal(await streamText(body), 'cde');
      assert.equal(api.requests[0]!.headers.range, 'bytes=2-4');
    });

    it('refuses a whole-file answer to a range that starts past 0 (it would be cached at the wrong offset)', async () => {
      api.handle((_req, res) => {
        res.statusCode = 200;
        res.end('abcdefghij');
      });
      await assert.rejects(client.download(CHK, { start: 2, end: 5 }), (e: FsError) => e.code === 'EIO' && /ignored the requested range/.test(e.message));
    });

    it('turns 416 (range past the end) into an empty body', async () => {
      api.handle((_req, res) => {
        res.statusCode = 416;
        res.end('First beyond end of file');
      });
      const body = await client.download(CHK, { start: 5000, end: 6000 });
      assert.equal(await streamText(body), '');
    });
  });
});

describe('TahoeClient transport failures', () => {
  it('reports a refused connection as EIO "not reachable", naming the gateway', async () => {
    // A port that was free a moment ago: nothing listens there now.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const client = new TahoeClient(`http://127.0.0.1:${port}/`, FAST_RETRIES);
    try {
      await rejectsFs(client.listDir(DIR), 'EIO', new RegExp(`not reachable at http://127\\.0\\.0\\.1:${port}/`));
      await rejectsFs(client.download(CHK), 'EIO', /not reachable/);
      await rejectsFs(client.upload(Buffer.from('abc'), 3), 'EIO', /not reachable/);
    } finally {
      await client.close();
    }
  });

  describe('a gateway that never answers', () => {
    let api: FakeWebApi;
    let client: TahoeClient;
    before(async () => {
      api = await startFakeWebApi(() => {
        // read the request, never respond
      });
      client = new TahoeClient(api.url, { requestMs: 200, idleMs: 200, uploadAnswerMs: 200, retryDelaysMs: [1, 1, 1] });
    });
    after(async () => {
      await api.close();
      await client.close();
    });

    it('times out small requests with EIO "timed out"', async () => {
      await rejectsFs(client.listDir(DIR), 'EIO', /timed out/);
      await rejectsFs(client.mkdir(DIR, 'x'), 'EIO', /timed out/);
    });

    it('times out a download waiting for headers', async () => {
      await rejectsFs(client.download(CHK), 'EIO', /timed out/);
    });

    it('times out an upload waiting for the answer', async () => {
      await rejectsFs(client.upload(Buffer.from('abc'), 3), 'EIO', /timed out/);
    });
  });

  it('fails a download body that stalls (idle bound)', async () => {
    // Headers and a first chunk arrive, then nothing: the body stream must error rather than hang.
    const api = await startFakeWebApi((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
    });
    const client = new TahoeClient(api.url, { requestMs: 200, idleMs: 200, uploadAnswerMs: 200, retryDelaysMs: [1, 1, 1] });
    try {
      const body = await client.download(CHK);
      await assert.rejects(streamText(body));
    } finally {
      await api.close();
      await client.close();
    }
  });
});

describe('scrubCaps', () => {
  it('replaces every cap with its fingerprint', () => {
    const text = `failed: ${DIR} and ${CHK}, also ${MDMF_RO}.`;
    const out = scrubCaps(text);
    assert.equal(out, `failed: ${redact(DIR)} and ${redact(CHK)}, also ${redact(MDMF_RO)}.`);
    for (const secret of ['3nmylhjqubpdykuwdzv3oeci4m', 'wrhc5cw4xjmfgwlj7saw2tzhc4', '5y4td4wl23aj2r3hnjc2pehkpq']) {
      assert.ok(!out.includes(secret));
    }
  });

  it('scrubs caps inside HTML and JSON', () => {
    assert.equal(scrubCaps(`<p>${CHK}</p>`), `<p>${redact(CHK)}</p>`);
    assert.equal(scrubCaps(`{"rw_uri": "${MDMF}"}`), `{"rw_uri": "${redact(MDMF)}"}`);
    // Tahoe's prefixed forms in directory entries hold the same secret.
    assert.equal(scrubCaps(`ro.${DIR_RO}`), `ro.${redact(DIR_RO)}`);
  });

  it('leaves text without caps alone', () => {
    assert.equal(scrubCaps('No such child: URI'), 'No such child: URI');
    assert.equal(scrubCaps(''), '');
  });
});
