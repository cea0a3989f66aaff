// Keys made here (src/tahoe/keys.ts) against the real gateway: a directory and an MDMF file made with our own
// key get exactly the caps computed locally beforehand, and work; a key given twice is refused (so a key must
// never be handed out twice). Issue 22's groundwork: mkdir with no key generation in the gateway.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { DEFAULT_TIMEOUTS, TahoeClient } from '../../src/tahoe/client.js';
import { generateMutableKey, privateKeyParam, writeCapOf } from '../../src/tahoe/keys.js';
import { describeWithGrid } from '../support/test-grid.js';

describeWithGrid('keys made here', (grid) => {
  it('a directory made with our key has the cap computed beforehand, and takes links', async () => {
    const client = new TahoeClient(grid.gatewayUrl, DEFAULT_TIMEOUTS);
    try {
      const key = await generateMutableKey();
      const expected = writeCapOf(key, 'DIR2');
      assert.equal(await client.createDirectory(privateKeyParam(key)), expected);
      const child = await client.createDirectory();
      await client.setChild(expected, 'sub', { type: 'dir', rwUri: child }, false);
      assert.deepEqual([...(await client.listDir(expected)).children.keys()], ['sub']);
    } finally {
      await client.close();
    }
  });

  it('an MDMF file made with our key has the cap computed beforehand; a key given twice is refused', async () => {
    const key = await generateMutableKey();
    const put = (path: string, method: string, body?: string) => fetch(`${grid.gatewayUrl}${path}&private-key=${encodeURIComponent(privateKeyParam(key))}`, { method, body });
    const made = await put('uri?format=MDMF', 'PUT', 'made with our key');
    assert.equal((await made.text()).trim(), writeCapOf(key, 'MDMF'));
    const read = await fetch(`${grid.gatewayUrl}uri/${encodeURIComponent(writeCapOf(key, 'MDMF'))}`);
    assert.equal(await read.text(), 'made with our key');
    const again = await put('uri?t=mkdir', 'POST');
    assert.equal(again.status, 500);
    await again.body?.cancel();
  });
});
