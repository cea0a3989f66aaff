import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { errnoName, FsError, fromLocalFs, isExpected, toErrno } from '../../src/errors.js';

/** An error shaped like the ones node:fs throws. */
function fsFailure(code: string, message = `${code}: something failed`): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code, syscall: 'write' });
}

describe('FsError', () => {
  it('carries the platform errno number for its code', () => {
    for (const code of ['ENOENT', 'EEXIST', 'EIO', 'EROFS', 'ENOTEMPTY', 'EACCES', 'ENOSPC'] as const) {
      const e = new FsError(code, 'x');
      assert.equal(e.code, code);
      assert.equal(e.errno, constants.errno[code]);
      assert.ok(e.errno > 0);
    }
    // Linux values, which FUSE hands back to the kernel as they are.
    if (process.platform === 'linux') {
      assert.equal(new FsError('ENOENT', 'x').errno, 2);
      assert.equal(new FsError('EIO', 'x').errno, 5);
      assert.equal(new FsError('EEXIST', 'x').errno, 17);
    }
  });

  it('is an Error with its name, message and cause', () => {
    const cause = new Error('inner');
    const e = new FsError('ENOENT', 'no such thing', { cause });
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'FsError');
    assert.equal(e.message, 'no such thing');
    assert.equal(e.cause, cause);
  });

  it('errnoName maps numbers back to names', () => {
    assert.equal(errnoName(constants.errno.ENOENT), 'ENOENT');
    assert.equal(errnoName(constants.errno.ENOSPC), 'ENOSPC');
    assert.equal(errnoName(-12345), undefined);
  });
});

describe('toErrno', () => {
  it('keeps the errno of an FsError', () => {
    assert.equal(toErrno(new FsError('ENOTDIR', 'x')), constants.errno.ENOTDIR);
    assert.equal(toErrno(new FsError('ENOSPC', 'x')), constants.errno.ENOSPC);
  });

  it('turns anything else into EIO, even errors that look like errno errors', () => {
    for (const thrown of [new Error('bug'), fsFailure('ENOENT'), 'a string', null, undefined, 42, { code: 'EEXIST' }]) {
      assert.equal(toErrno(thrown), constants.errno.EIO, `for ${String(thrown)}`);
    }
  });
});

describe('fromLocalFs', () => {
  it('keeps ENOSPC and the other resource errors visible', () => {
    for (const code of ['ENOSPC', 'EDQUOT', 'EMFILE', 'ENFILE'] as const) {
      const e = fromLocalFs(fsFailure(code), 'write cache file');
      assert.equal(e.code, code);
      assert.equal(e.errno, constants.errno[code]);
    }
  });

  it('turns other local failures into EIO, keeping context and cause', () => {
    const original = fsFailure('EACCES', 'EACCES: permission denied');
    const e = fromLocalFs(original, 'stage write');
    assert.equal(e.code, 'EIO');
    assert.equal(e.message, 'stage write: EACCES: permission denied');
    assert.equal(e.cause, original);
    assert.equal(fromLocalFs(fsFailure('ENOENT'), 'x').code, 'EIO');
  });

  it('passes an FsError through unchanged', () => {
    const original = new FsError('EROFS', 'read-only');
    assert.equal(fromLocalFs(original, 'x'), original);
  });

  it('copes with thrown values that are not errors', () => {
    assert.equal(fromLocalFs('boom', 'w').message, 'w: boom');
    assert.equal(fromLocalFs(null, 'w').message, 'w: null');
    assert.equal(fromLocalFs(undefined, 'w').code, 'EIO');
  });
});

describe('isExpected', () => {
  it('is true for FsErrors other than EIO only', () => {
    assert.equal(isExpected(new FsError('ENOENT', 'x')), true);
    assert.equal(isExpected(new FsError('EIO', 'x')), false);
    assert.equal(isExpected(new Error('x')), false);
  });
});
