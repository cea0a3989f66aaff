// What blackmatch reads from a Tahoe node directory: the gateway URL and the alias file.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CapError, parseDirCap, type Cap } from './caps.js';

export class ConfigError extends Error {}

/** Parses Tahoe's `private/aliases`: one `name: URI:...` per line; blank lines and `#` comments are skipped. */
export function parseAliases(text: string): Map<string, string> {
  const aliases = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    aliases.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return aliases;
}

export async function readNodeUrl(nodeDir: string): Promise<string> {
  const file = join(nodeDir, 'node.url');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new ConfigError(`cannot read ${file}: is ${nodeDir} a Tahoe node directory? (or pass --node-url)`);
  }
  return normalizeNodeUrl(text.trim());
}

export function normalizeNodeUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`bad node URL "${text}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`bad node URL "${text}": not http(s)`);
  // Keep a path prefix (a gateway behind a proxy at http://host/tahoe/), as Tahoe's own CLI does.
  return url.origin + (url.pathname.endsWith('/') ? url.pathname : url.pathname + '/');
}

/** Resolves --alias NAME to its directory cap; the name may carry Tahoe's trailing colon ("tahoe:"). */
export async function resolveAlias(nodeDir: string, alias: string): Promise<Cap> {
  const name = alias.replace(/:$/, '');
  const file = join(nodeDir, 'private', 'aliases');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new ConfigError(`unknown alias "${name}": cannot read ${file}`);
  }
  const capText = parseAliases(text).get(name);
  if (capText === undefined) throw new ConfigError(`unknown alias "${name}" (not in ${file})`);
  try {
    return parseDirCap(capText);
  } catch (e) {
    throw new ConfigError(`alias "${name}": ${(e as CapError).message}`);
  }
}
