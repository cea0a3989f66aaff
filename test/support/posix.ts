// POSIX tools for the system tests of metadata: bounded child processes (optionally as another local user),
// and Python's os module for what Node has no call for (extended attributes, fd-level sequences, unix sockets,
// a whole-node snapshot). Errors come back as errno names, so tests compare them with expectErrno.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Python from the system, not from a user's PATH: a child running as another uid must be able to run it. */
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

export interface ChildOptions {
  cwd?: string;
  /** Written to the child's stdin, which is then closed. */
  input?: string | Buffer;
  uid?: number;
  gid?: number;
  /** SIGKILL after this long (default 60 s): every child is bounded. */
  timeoutMs?: number;
  /** The whole environment, instead of ours (or the plain one of another uid). */
  env?: NodeJS.ProcessEnv;
}

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  timedOut: boolean;
}

/** Runs a program to completion, bounded; never rejects for a non-zero exit (see mustRun). */
export function runChild(cmd: string, args: string[], opts: ChildOptions = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const asOther = opts.uid !== undefined;
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      uid: opts.uid,
      gid: opts.gid,
      // Another user gets a plain environment: nothing of root's (HOME, pyenv shims) that it cannot read.
      env: opts.env ?? (asOther ? { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' } : { ...process.env, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' }),
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let stderr = '';
    let timedOut = false;
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (stderr.length > 100_000) stderr = stderr.slice(-50_000);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${cmd}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr, timedOut });
    });
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => undefined); // a child that exits without reading
      child.stdin!.end(opts.input);
    }
  });
}

/** Runs a program that must succeed; its stdout as text. */
export async function mustRun(cmd: string, args: string[], opts: ChildOptions = {}): Promise<string> {
  const r = await runChild(cmd, args, opts);
  if (r.code !== 0) {
    const why = r.timedOut ? `killed after ${(opts.timeoutMs ?? 60_000) / 1000} s` : `exit ${r.code ?? r.signal}`;
    throw new Error(`${cmd} ${args.join(' ')}: ${why}\n${r.stderr.trim()}`);
  }
  return r.stdout.toString();
}

/**
 * One step for python (see PY_OPS). A target is a path, or a number: the handle of an earlier 'open' in the
 * same run. Values are text (UTF-8) or bytes; flags are os constants joined by '|', e.g. 'O_CREAT|O_WRONLY'.
 */
export type PyOp =
  | ['setxattr', string | number, string, string | Buffer, string?]
  | ['getxattr', string | number, string]
  | ['listxattr', string | number]
  | ['removexattr', string | number, string]
  | ['open', string, string, number]
  | ['write', number, string | Buffer]
  | ['fchmod', number, number]
  | ['close', number]
  | ['read', string]
  | ['chown', string, number, number]
  | ['unlink', string]
  | ['mkdir', string, number]
  | ['bind', string]
  | ['snapshot', string]
  | ['tarlist', string];

/** What one step gave: ok (bytes come back as {b64}) or the errno name (EOPNOTSUPP for ENOTSUP). */
export interface PyResult {
  ok?: unknown;
  err?: string;
}

const PY_OPS = String.raw`
import base64, errno, json, os, socket, stat, sys, tarfile

fds = []
def target(t): return fds[t] if isinstance(t, int) else t
def value(v): return base64.b64decode(v['b64']) if isinstance(v, dict) else v.encode()
def b64(b): return base64.b64encode(b).decode()
def flags(s):
    f = 0
    for name in (s or '').split('|'):
        if name: f |= getattr(os, name)
    return f
def errname(e):
    name = errno.errorcode.get(e.errno, str(e.errno))
    return 'EOPNOTSUPP' if name == 'ENOTSUP' else name
KINDS = {stat.S_IFREG: 'file', stat.S_IFDIR: 'dir', stat.S_IFLNK: 'symlink', stat.S_IFIFO: 'fifo',
         stat.S_IFSOCK: 'socket', stat.S_IFCHR: 'char', stat.S_IFBLK: 'block'}

def snapshot(p):
    # What must look the same from any mount of the same root: no times, no caps' listing.
    st = os.lstat(p)
    kind = KINDS.get(stat.S_IFMT(st.st_mode), 'other')
    out = {'type': kind, 'mode': '%04o' % stat.S_IMODE(st.st_mode), 'uid': st.st_uid, 'gid': st.st_gid}
    if kind != 'dir': out['size'] = st.st_size
    if kind in ('char', 'block'): out['rdev'] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
    if kind == 'symlink': out['target'] = b64(os.readlink(os.fsencode(p)))
    try:
        names = sorted(n for n in os.listxattr(p, follow_symlinks=False) if not n.startswith('user.tahoe.'))
        out['xattrs'] = {n: b64(os.getxattr(p, n, follow_symlinks=False)) for n in names}
    except OSError as e:
        out['xattrs'] = errname(e)
    if kind in ('file', 'dir'):
        try: out['readcap'] = os.getxattr(p, 'user.tahoe.readcap').decode()
        except OSError as e: out['readcap'] = errname(e)
    return out

def tarlist(p):
    # One line per member with everything the archive says of it, pax headers included: for failure messages.
    lines = []
    with tarfile.open(p) as t:
        for m in t.getmembers():
            pax = dict(sorted(m.pax_headers.items()))
            lines.append(json.dumps([m.name, m.type.decode('latin-1'), '%04o' % m.mode, m.uid, m.gid, m.uname, m.gname,
                                     m.size, m.mtime, m.linkname, m.devmajor, m.devminor, pax], ensure_ascii=False))
    return lines

def run(op):
    k, a = op[0], op[1:]
    if k == 'setxattr': os.setxattr(target(a[0]), a[1], value(a[2]), flags(a[3] if len(a) > 3 else '')); return None
    if k == 'getxattr': return {'b64': b64(os.getxattr(target(a[0]), a[1]))}
    if k == 'listxattr': return os.listxattr(target(a[0]))
    if k == 'removexattr': os.removexattr(target(a[0]), a[1]); return None
    if k == 'open': fds.append(os.open(a[0], flags(a[1]), a[2])); return len(fds) - 1
    if k == 'write': return os.write(target(a[0]), value(a[1]))
    if k == 'fchmod': os.fchmod(target(a[0]), a[1]); return None
    if k == 'close': os.close(target(a[0])); return None
    if k == 'read':
        with open(a[0], 'rb') as f: return {'b64': b64(f.read())}
    if k == 'chown': os.chown(a[0], a[1], a[2]); return None
    if k == 'unlink': os.unlink(a[0]); return None
    if k == 'mkdir': os.mkdir(a[0], a[1]); return None
    if k == 'bind':
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try: s.bind(a[0])
        finally: s.close()
        return None
    if k == 'snapshot': return snapshot(a[0])
    if k == 'tarlist': return tarlist(a[0])
    raise ValueError('unknown op ' + k)

results = []
for op in json.load(sys.stdin):
    try: results.append({'ok': run(op)})
    except OSError as e: results.append({'err': errname(e)})
print(json.dumps(results))
`;

function encodeValue(v: unknown): unknown {
  return Buffer.isBuffer(v) ? { b64: v.toString('base64') } : v;
}

/** Decodes {b64} results into Buffers. */
function decode(v: unknown): unknown {
  if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 1 && typeof (v as { b64?: unknown }).b64 === 'string') {
    return Buffer.from((v as { b64: string }).b64, 'base64');
  }
  return v;
}

/** Runs the steps in one python process (so handles stay open between them), bounded; one result per step. */
export async function py(ops: PyOp[], opts: Omit<ChildOptions, 'input'> = {}): Promise<PyResult[]> {
  const input = JSON.stringify(ops.map((op) => op.map(encodeValue)));
  const r = await runChild(PYTHON, ['-c', PY_OPS], { ...opts, input });
  if (r.code !== 0) throw new Error(`python steps ${ops.map((o) => o[0]).join(', ')}: ${r.timedOut ? 'timed out' : `exit ${r.code ?? r.signal}`}\n${r.stderr.trim()}`);
  const results = JSON.parse(r.stdout.toString()) as PyResult[];
  return results.map((x) => ('ok' in x ? { ok: decode(x.ok) } : x));
}

/** One step: its result, or a rejection whose code is the errno name (for expectErrno). */
export async function py1(op: PyOp, opts: Omit<ChildOptions, 'input'> = {}): Promise<unknown> {
  const [r] = await py([op], opts);
  if (r!.err !== undefined) throw Object.assign(new Error(`${op[0]} ${String(op[1])}${op[0].endsWith('xattr') && op.length > 2 ? ` ${String(op[2])}` : ''}: ${r!.err}`), { code: r!.err });
  return r!.ok;
}

export const getxattr = async (path: string, name: string): Promise<Buffer> => (await py1(['getxattr', path, name])) as Buffer;
export const getxattrText = async (path: string, name: string): Promise<string> => (await getxattr(path, name)).toString();
export const setxattr = async (path: string, name: string, value: string | Buffer, flags = ''): Promise<void> => {
  await py1(['setxattr', path, name, value, flags]);
};
export const listxattr = async (path: string): Promise<string[]> => (await py1(['listxattr', path])) as string[];
export const removexattr = async (path: string, name: string): Promise<void> => {
  await py1(['removexattr', path, name]);
};

/** What must look the same from any mount of the same root (see snapshot in PY_OPS): type, mode, owner, size, device, link target, user xattrs, readcap. */
export type NodeSnapshot = Record<string, unknown>;

export async function snapshots(paths: string[]): Promise<Record<string, NodeSnapshot | string>> {
  const results = await py(paths.map((p): PyOp => ['snapshot', p]));
  return Object.fromEntries(paths.map((p, i) => [p, (results[i]!.ok as NodeSnapshot | undefined) ?? `error ${results[i]!.err}`]));
}

/** The names `getfattr -d` shows (the default: user.* that listxattr lists), with their values. */
export async function getfattrDump(path: string): Promise<Record<string, Buffer>> {
  const text = await mustRun('getfattr', ['-d', '--absolute-names', '-e', 'hex', path]);
  const out: Record<string, Buffer> = {};
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq < 0) out[line] = Buffer.alloc(0);
    else out[line.slice(0, eq)] = Buffer.from(line.slice(eq + 1).replace(/^0x/, ''), 'hex');
  }
  return out;
}

/**
 * Gives other users search permission on `path` and every directory above it that lacks it (mkdtemp makes 0700
 * directories, and /tmp may be one too), so that another uid can reach what is under it; returns what puts the
 * modes back.
 */
export async function openPathToOthers(path: string): Promise<() => Promise<void>> {
  const widened: Array<[string, number]> = [];
  for (let d = path; ; d = dirname(d)) {
    const bits = (await stat(d)).mode & 0o7777;
    if ((bits & 0o011) !== 0o011) {
      widened.push([d, bits]);
      await chmod(d, bits | 0o011);
    }
    if (d === dirname(d)) break;
  }
  return async () => {
    for (const [d, mode] of widened.reverse()) await chmod(d, mode).catch(() => undefined);
  };
}
