// An immutable upload that servers refuse because an unfinished upload of the same bytes holds their place (a
// killed client's upload, cancelled by the gateway past its abort): the bytes are stored as a mutable file at
// once, in both modes, and read back; any other unhappy upload still fails as before.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { target, type FakeTahoe } from '../support/fake-tahoe.js';
import { bounded, coresPerTest, readAll, writeFile } from '../support/core.js';

const isImmutableUpload = (req: { method: string; rawUrl: string }) => {
  const t = target(req as never);
  return req.method === 'PUT' && t.cap === undefined && t.names.length === 0 && !t.query.has('format');
};

/** Tahoe 1.20's answer, as its HTML page of the exception (upload.py:774's summary), shortened. */
function unhappy(full: number): string {
  const summary =
    `server selection failed for &lt;Tahoe2ServerSelector for upload b&#x27;vs24p&#x27;&gt;: shares could be placed or found on only 1 server(s). ` +
    `(placed 1 shares out of 3 total (2 homeless), sent 3 queries to 3 servers, 1 queries placed some shares, ${full} placed none ` +
    `(of which ${full} placed none due to the server being full and ${2 - full} placed none due to an error))`;
  return `<html><style>div.error { color: red; }</style><div class="error"><span>allmydata.interfaces.UploadUnhappinessError</span>: <span>${summary}</span></div><div class="stackTrace">...</div></html>`;
}

for (const writeBack of [false, true]) {
  describe(`an upload blocked by an unfinished one of the same bytes (${writeBack ? 'write-back' : 'durable'})`, () => {
    let fake: FakeTahoe;
    const { start } = coresPerTest((f) => (fake = f), { writeBack, drainMs: 5_000 });

    it('is stored as a mutable file at once, and reads back', async () => {
      const c = await start();
      const held = fake.hold(isImmutableUpload);
      const closing = (async () => c.fs.release('/f', await writeFile(c.fs, '/f', 'the same bytes again')))();
      (await held.arrived, held.fail(500, unhappy(2)));
      await bounded(closing, 'close');
      await bounded(c.fs.sync(), 'sync');
      const entry = fake.entry(fake.rootCap, 'f')!;
      assert.match(entry.rwUri ?? '', /^URI:MDMF:/);
      assert.equal(fake.bytes(entry.rwUri!)!.toString(), 'the same bytes again');
      assert.equal(await readAll(c.fs, '/f'), 'the same bytes again');
    });

    it('an upload unhappy for another reason is not stored some other way', async () => {
      const c = await start();
      const held = fake.hold(isImmutableUpload);
      const closing = (async () => c.fs.release('/g', await writeFile(c.fs, '/g', 'bytes')))();
      (await held.arrived, held.fail(500, unhappy(0)));
      if (writeBack) {
        await bounded(closing, 'close');
        await bounded(c.fs.sync(), 'sync'); // the retry, after the fake's one failure, is a plain upload
      } else {
        await bounded(closing, 'close').catch(() => undefined); // the client retries a 500 by itself
      }
      const entry = fake.entry(fake.rootCap, 'g');
      if (entry) assert.match(entry.roUri, /^URI:(CHK|LIT):/);
      assert.ok(!fake.requests.some((r) => r.method === 'PUT' && target(r as never).query.get('format') === 'MDMF'));
    });
  });
}
