// Extended attributes: user.* attributes kept in the link metadata (tahoe/posix.ts), and the caps of an entry
// as read-only user.tahoe.* attributes computed from its link (never stored, never logged). Owns no state: it
// reads listings and open files, and changes link metadata through the namespace.
import { FsError } from '../errors.js';
import { readOnlyCap } from '../tahoe/caps.js';
import { capTextOf, tryParseCap } from '../tahoe/links.js';
import { CAP_XATTR_PREFIX, checkXattrName, isUserXattr, ownMetadataOf, withoutXattr, withXattr, xattrValue, type OwnMetadata } from '../tahoe/posix.js';
import type { Directories } from './directories.js';
import type { Namespace } from './namespace.js';
import type { OpenFiles } from './open-files.js';

export class ExtendedAttributes {
  constructor(
    private readonly dirs: Directories,
    private readonly files: OpenFiles,
    private readonly names: Namespace,
    /** listxattr names the computed user.tahoe.* attributes too (so that `getfattr -d` shows them). */
    private readonly listCaps: boolean,
  ) {}

  async get(path: string, name: string): Promise<Buffer> {
    if (name.startsWith(CAP_XATTR_PREFIX)) {
      const value = (await this.caps(path))[name];
      if (value === undefined) throw new FsError('ENODATA', `no ${name}: ${path}`);
      return Buffer.from(value);
    }
    if (!isUserXattr(name)) throw new FsError('ENOTSUP', `only user.* attributes are kept: ${name}`);
    return xattrValue(await this.ownOf(path), name);
  }

  async list(path: string): Promise<string[]> {
    const names = Object.keys((await this.ownOf(path)).xattrs ?? {});
    // Not listed by default: cp -a, rsync -X and tar --xattrs would copy caps (secrets) wherever files go.
    if (this.listCaps) names.push(...Object.keys(await this.caps(path)));
    return names;
  }

  async set(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    checkWritable(name);
    await this.names.editOwn(path, (own) => withXattr(own, name, value, flags));
  }

  async remove(path: string, name: string): Promise<void> {
    checkWritable(name);
    await this.names.editOwn(path, (own) => withoutXattr(own, name));
  }

  /** Our metadata of an entry (posix.ts): an open file's as its link is to carry it. */
  async ownOf(path: string): Promise<OwnMetadata> {
    if (path === '/') return {};
    const open = this.files.get(path);
    if (open) return open.own;
    const { child } = await this.dirs.lookup(path);
    if (!child) throw new FsError('ENOENT', `no such file: ${path}`);
    return ownMetadataOf(child.metadata);
  }

  /** The computed user.tahoe.* attributes: none for a file whose content is not stored yet (its cap is to come). */
  private async caps(path: string): Promise<Record<string, string>> {
    let text: string | undefined;
    let roUri: string | undefined;
    if (path === '/') {
      text = this.dirs.root.cap;
    } else {
      const open = this.files.get(path);
      if (open && (open.dirty || !open.child)) return {};
      const child = open?.child ?? (await this.dirs.lookup(path)).child;
      if (!child) throw new FsError('ENOENT', `no such file: ${path}`);
      text = capTextOf(child);
      roUri = child.roUri;
    }
    const cap = tryParseCap(text);
    if (!cap) return {};
    const values: Record<string, string> = { [`${CAP_XATTR_PREFIX}readcap`]: roUri ?? readOnlyCap(cap.text) };
    if (cap.writable) values[`${CAP_XATTR_PREFIX}writecap`] = cap.text;
    if (cap.storageIndex) values[`${CAP_XATTR_PREFIX}storage-index`] = cap.storageIndex;
    return values;
  }
}

/** Programs may store user.* attributes; ours (user.tahoe.*) are computed, and no other namespace is kept. */
function checkWritable(name: string): void {
  if (name.startsWith(CAP_XATTR_PREFIX)) throw new FsError('EPERM', `${name} is computed from the cap: read-only`);
  if (!isUserXattr(name)) throw new FsError('ENOTSUP', `only user.* attributes are kept: ${name}`);
  checkXattrName(name);
}
