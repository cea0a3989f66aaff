import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, normalizeNodeUrl, parseAliases, readNodeUrl, resolveAlias } from '../../src/tahoe/node-dir.js';
import { tempDirPerSuite } from '../support/temp-dir.js';

const DIR = 'URI:DIR2:3nmylhjqubpdykuwdzv3oeci4m:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea';
const DIR_RO = 'URI:DIR2-RO:623cdgjqua7r4vzitgpqf3rvli:w5n36mp6mty4gznls6xiaoppmcrv5t2o3auuigzwnlkcpm7es2ea';
const CHK = 'URI:CHK:4zhgf23twgjzxlhat543enjx3q:zvku5rghnefe2r7xezbihj3vxqlbohvko6fs63jhwcn3vdbnnesa:2:3:3000';

/** Asserts a ConfigError whose message matches. */
async function rejectsConfig(p: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof ConfigError && message.test(e.message));
}

describe('parseAliases', () => {
  it('reads "name: cap" lines, skipping comments and blank lines', () => {
    const text = ['# my aliases', '', 'tahoe: ' + DIR, '   ', '  # indented comment', 'ro:' + DIR_RO, ''].join('\n');
    assert.deepEqual([...parseAliases(text)], [['tahoe', DIR], ['ro', DIR_RO]]);
  });

  it('trims spaces and tabs around names and caps', () => {
    const aliases = parseAliases(`  tahoe \t:   ${DIR}  \t\n`);
    assert.equal(aliases.get('tahoe'), DIR);
  });

  it('handles CRLF line endings', () => {
    const aliases = parseAliases(`# c\r\ntahoe: ${DIR}\r\n\r\nro: ${DIR_RO}\r\n`);
    assert.equal(aliases.get('tahoe'), DIR);
    assert.equal(aliases.get('ro'), DIR_RO);
    assert.equal(aliases.size, 2);
  });

  it('splits at the first colon only (the cap has colons of its own)', () => {
    assert.equal(parseAliases(`a:${CHK}`).get('a'), CHK);
  });

  it('ignores lines without a name before the colon', () => {
    assert.equal(parseAliases(`no colon here\n: ${DIR}\n`).size, 0);
  });

  it('keeps the last of repeated names (as Tahoe does)', () => {
    assert.equal(parseAliases(`x: ${DIR}\nx: ${DIR_RO}\n`).get('x'), DIR_RO);
  });
});

describe('normalizeNodeUrl', () => {
  it('reduces a URL to its origin with a trailing slash', () => {
    assert.equal(normalizeNodeUrl('http://127.0.0.1:3456'), 'http://127.0.0.1:3456/');
    assert.equal(normalizeNodeUrl('http://127.0.0.1:3456/'), 'http://127.0.0.1:3456/');
    assert.equal(normalizeNodeUrl('https://example.org'), 'https://example.org/');
    assert.equal(normalizeNodeUrl('HTTP://LocalHost:80/'), 'http://localhost/');
  });

  it('rejects text that is not a URL', () => {
    assert.throws(() => normalizeNodeUrl('not a url'), (e: unknown) => e instanceof ConfigError && /bad node URL "not a url"/.test(e.message));
    assert.throws(() => normalizeNodeUrl(''), ConfigError);
  });

  it('rejects schemes other than http and https', () => {
    for (const url of ['ftp://127.0.0.1:3456/', 'file:///tmp/x', 'ws://127.0.0.1/']) {
      assert.throws(() => normalizeNodeUrl(url), (e: unknown) => e instanceof ConfigError && /not http\(s\)/.test(e.message));
    }
  });
});

describe('node directory files', () => {
  let root: string;
  tempDirPerSuite('bm-unit-nodedir-', (d) => (root = d));

  /** A fresh node directory with the given files (relative path -> content). */
  async function nodeDir(name: string, files: Record<string, string>): Promise<string> {
    const dir = join(root, name);
    await mkdir(join(dir, 'private'), { recursive: true });
    for (const [rel, content] of Object.entries(files)) await writeFile(join(dir, rel), content);
    return dir;
  }

  it('readNodeUrl reads and normalizes node.url', async () => {
    const dir = await nodeDir('url-ok', { 'node.url': 'http://127.0.0.1:3456/\n' });
    assert.equal(await readNodeUrl(dir), 'http://127.0.0.1:3456/');
  });

  it('readNodeUrl explains a missing node.url', async () => {
    const dir = await nodeDir('url-missing', {});
    await rejectsConfig(readNodeUrl(dir), /cannot read .*node\.url.*Tahoe node directory.*--node-url/);
  });

  it('readNodeUrl rejects a node.url that is not a URL', async () => {
    const dir = await nodeDir('url-bad', { 'node.url': 'garbage\n' });
    await rejectsConfig(readNodeUrl(dir), /bad node URL "garbage"/);
  });

  it('resolveAlias finds the cap, with or without the trailing colon', async () => {
    const dir = await nodeDir('alias-ok', { 'private/aliases': `# x\r\ntahoe: ${DIR}\r\nro: ${DIR_RO}\r\n` });
    assert.equal((await resolveAlias(dir, 'tahoe')).text, DIR);
    assert.equal((await resolveAlias(dir, 'tahoe:')).text, DIR);
    const ro = await resolveAlias(dir, 'ro:');
    assert.equal(ro.kind, 'DIR2-RO');
    assert.equal(ro.writable, false);
  });

  it('resolveAlias reports a missing aliases file', async () => {
    const dir = await nodeDir('alias-nofile', {});
    await rejectsConfig(resolveAlias(dir, 'tahoe'), /unknown alias "tahoe": cannot read .*private\/aliases/);
  });

  it('resolveAlias reports an unknown alias', async () => {
    const dir = await nodeDir('alias-unknown', { 'private/aliases': `tahoe: ${DIR}\n` });
    await rejectsConfig(resolveAlias(dir, 'other:'), /unknown alias "other" \(not in .*private\/aliases\)/);
  });

  it('resolveAlias rejects a file cap or a broken cap under the alias', async () => {
    const dir = await nodeDir('alias-file', { 'private/aliases': `f: ${CHK}\nbad: URI:DIR2:xyz\n` });
    await rejectsConfig(resolveAlias(dir, 'f'), /alias "f": a CHK capability names a file, not a directory/);
    await rejectsConfig(resolveAlias(dir, 'bad'), /alias "bad": malformed DIR2 capability/);
  });

  it('resolveAlias error messages never quote the cap', async () => {
    const dir = await nodeDir('alias-secret', { 'private/aliases': `f: ${CHK}\n` });
    await assert.rejects(resolveAlias(dir, 'f'), (e: unknown) => e instanceof Error && !e.message.includes('4zhgf23twgjzxlhat543enjx3q'));
  });
});
