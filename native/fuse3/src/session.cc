// blackmatch's libfuse 3 binding: one FUSE session over the low-level API (fuse_lowlevel.h).
//
// Threads and who owns what:
// - the loop thread runs fuse_session_loop: it reads a request from /dev/fuse, copies what it needs into a
//   Request and queues it to JavaScript through a thread-safe function. It never waits on JavaScript.
// - the JavaScript thread answers each request whenever it is ready, with the matching fuse_reply_* (libfuse
//   lets any thread reply). `outstanding` (under `mutex`) holds every request not yet answered, so that a
//   second answer, or one after the session is gone, is a JavaScript error and not a use-after-free.
// - the notifier thread sends cache invalidations to the kernel: the kernel may hold a directory lock while
//   it waits for one of our replies, so an invalidation sent from the JavaScript thread could deadlock.
//
// Lifetime: the session is torn down only after the loop has returned (the kernel ended the connection:
// unmounted, or the connection aborted). Until then the Session is referenced (not collected) and the
// thread-safe function alive, so the loop can always queue; a lazily detached mount still in use is served
// until its last user goes, or until the process exits.
#include <napi.h>
#include <fuse_lowlevel.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <errno.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

namespace {

// Request kinds. JavaScript gets each request's kind as its number here and reads its name from the addon's
// `ops` export (kOpNames): the one list of them.
enum Op : uint32_t {
  LOOKUP, FORGET, GETATTR, SETATTR, READLINK, MKNOD, MKDIR, UNLINK, RMDIR, SYMLINK, RENAME, LINK, OPEN, READ,
  WRITE, FLUSH, RELEASE, FSYNC, OPENDIR, READDIR, RELEASEDIR, STATFS, ACCESS, CREATE, READDIRPLUS, GETXATTR,
  SETXATTR, LISTXATTR, REMOVEXATTR,
  // Not a request: the kernel ended the session (unmounted), sent once when the loop returns.
  GONE,
};

// The name of each Op, in the enum's order: exported as `ops`.
const char* const kOpNames[] = {
    "lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink", "rmdir", "symlink",
    "rename", "link", "open", "read", "write", "flush", "release", "fsync", "opendir", "readdir",
    "releasedir", "statfs", "access", "create", "readdirplus", "getxattr", "setxattr", "listxattr",
    "removexattr", "gone",
};
static_assert(sizeof(kOpNames) / sizeof(kOpNames[0]) == GONE + 1, "one name per Op");

struct Request {
  Op op;
  fuse_req_t req = nullptr;
  uint64_t ino = 0;
  uint64_t ino2 = 0;  // newparent (rename, link)
  uint64_t fh = 0;
  std::string name;
  std::string name2;  // newname, symlink target
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t nlookup = 0;
  int flags = 0;
  uint32_t mode = 0;
  uint32_t umask = 0;
  int toSet = 0;
  struct stat attr {};
  bool hasFh = false;
  uint32_t uid = 0, gid = 0, pid = 0;
  char* data = nullptr;  // a write's bytes or an xattr's value, owned until handed to a Buffer
  int loopResult = 0;
  std::vector<std::pair<uint64_t, uint64_t>> forgets;
};

class Session;

struct Invalidation {
  bool entry;
  uint64_t ino;
  std::string name;
};

class Session : public Napi::ObjectWrap<Session> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Session(const Napi::CallbackInfo& info);
  ~Session() override { Close(); }

  void Queue(Request* r);
  fuse_session* se = nullptr;
  uint32_t maxWrite = 1 << 20;
  bool passthroughWanted = false;
  bool passthroughAvailable = false;

 private:
  Napi::Value Mount(const Napi::CallbackInfo& info);
  Napi::Value CloseMethod(const Napi::CallbackInfo& info);
  Napi::Value ReplyErr(const Napi::CallbackInfo& info);
  Napi::Value ReplyNone(const Napi::CallbackInfo& info);
  Napi::Value ReplyEntry(const Napi::CallbackInfo& info);
  Napi::Value ReplyCreate(const Napi::CallbackInfo& info);
  Napi::Value ReplyAttr(const Napi::CallbackInfo& info);
  Napi::Value ReplyOpen(const Napi::CallbackInfo& info);
  Napi::Value ReplyBuf(const Napi::CallbackInfo& info);
  Napi::Value ReplyWrite(const Napi::CallbackInfo& info);
  Napi::Value ReplyXattr(const Napi::CallbackInfo& info);
  Napi::Value ReplyStatfs(const Napi::CallbackInfo& info);
  Napi::Value ReplyReadlink(const Napi::CallbackInfo& info);
  Napi::Value ReplyDirectory(const Napi::CallbackInfo& info);
  Napi::Value Notify(const Napi::CallbackInfo& info);
  Napi::Value BackingClose(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);

  fuse_req_t Take(const Napi::CallbackInfo& info);
  bool Close();
  void NotifierLoop();

  Napi::ThreadSafeFunction tsfn;
  std::thread loop;
  std::thread notifier;
  std::mutex mutex;
  std::condition_variable notifierWake;
  std::deque<Invalidation> invalidations;
  bool stopping = false;
  bool mounted = false;
  bool closed = false;
  bool loopDone = false;
  std::unordered_set<fuse_req_t> outstanding;
  std::string mountpoint;
  friend void Deliver(Napi::Env, Napi::Function, Session*, Request*);
};

Session* SessionOf(fuse_req_t req) { return static_cast<Session*>(fuse_req_userdata(req)); }

Request* NewRequest(Op op, fuse_req_t req, fuse_ino_t ino) {
  auto* r = new Request();
  r->op = op;
  r->req = req;
  r->ino = ino;
  const fuse_ctx* ctx = fuse_req_ctx(req);
  r->uid = ctx->uid;
  r->gid = ctx->gid;
  r->pid = ctx->pid;
  r->umask = ctx->umask;
  return r;
}

void Send(Request* r) { SessionOf(r->req)->Queue(r); }

// ---- the loop thread: requests in ------------------------------------------------------------------------

void OnInit(void* userdata, fuse_conn_info* conn) {
  auto* s = static_cast<Session*>(userdata);
  conn->max_write = s->maxWrite;  // with FUSE_MAX_PAGES, requests of up to 1 MiB
  conn->max_readahead = conn->max_readahead > s->maxWrite ? s->maxWrite : conn->max_readahead;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  // readdirplus on every listing, not only the first: we have every entry's attributes for free.
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA) conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
  // Writes must reach us one by one (close() means stored), so no kernel write-back cache.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
#ifdef FUSE_CAP_PASSTHROUGH
  if (s->passthroughWanted && (conn->capable & FUSE_CAP_PASSTHROUGH)) {
    conn->want |= FUSE_CAP_PASSTHROUGH;  // backing files on an ordinary filesystem: libfuse's default depth
    s->passthroughAvailable = true;
  }
#endif
}

// Ops that carry only a node and a name in it (lookup, unlink, rmdir, removexattr).
template <Op op>
void OnNamedOp(fuse_req_t req, fuse_ino_t ino, const char* name) {
  auto* r = NewRequest(op, req, ino);
  r->name = name;
  Send(r);
}

void OnForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  auto* r = NewRequest(FORGET, req, 0);
  r->forgets.reserve(count);
  for (size_t i = 0; i < count; i++) r->forgets.emplace_back(forgets[i].ino, forgets[i].nlookup);
  Session* s = SessionOf(req);
  fuse_reply_none(req);  // forget has no reply; the request is gone now
  r->req = nullptr;
  s->Queue(r);
}

void OnForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  fuse_forget_data one{ino, nlookup};
  OnForgetMulti(req, 1, &one);
}

void WithFile(Request* r, fuse_file_info* fi) {
  if (!fi) return;
  r->hasFh = true;
  r->fh = fi->fh;
  r->flags = fi->flags;
}

void OnSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int toSet, fuse_file_info* fi) {
  auto* r = NewRequest(SETATTR, req, ino);
  WithFile(r, fi);
  r->attr = *attr;
  r->toSet = toSet;
  Send(r);
}

void OnReadlink(fuse_req_t req, fuse_ino_t ino) { Send(NewRequest(READLINK, req, ino)); }

void OnMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  auto* r = NewRequest(MKNOD, req, parent);
  r->name = name;
  r->mode = mode;
  r->size = rdev;
  Send(r);
}

void OnMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  auto* r = NewRequest(MKDIR, req, parent);
  r->name = name;
  r->mode = mode;
  Send(r);
}

void OnSymlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  auto* r = NewRequest(SYMLINK, req, parent);
  r->name = name;
  r->name2 = target;
  Send(r);
}

void OnRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname, unsigned int flags) {
  auto* r = NewRequest(RENAME, req, parent);
  r->name = name;
  r->ino2 = newparent;
  r->name2 = newname;
  r->flags = static_cast<int>(flags);
  Send(r);
}

void OnLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  auto* r = NewRequest(LINK, req, ino);
  r->ino2 = newparent;
  r->name2 = newname;
  Send(r);
}

// Ops that carry only a node and, for some, an open handle (getattr, open, flush, release, opendir, releasedir).
template <Op op>
void OnHandleOp(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* r = NewRequest(op, req, ino);
  WithFile(r, fi);
  Send(r);
}

// Ops that read `size` bytes at `off` through a handle (read, readdir, readdirplus).
template <Op op>
void OnSizedOp(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  auto* r = NewRequest(op, req, ino);
  WithFile(r, fi);
  r->size = size;
  r->offset = static_cast<uint64_t>(off);
  Send(r);
}

// The session reuses its receive buffer for the next request: the bytes are copied once, here, and the copy
// becomes the JavaScript Buffer itself. False (the request answered and gone) when there is no memory.
bool CopyData(Request* r, const char* buf, size_t size) {
  r->data = static_cast<char*>(malloc(size ? size : 1));
  if (!r->data) {
    fuse_reply_err(r->req, ENOMEM);
    delete r;
    return false;
  }
  memcpy(r->data, buf, size);
  r->size = size;
  return true;
}

void OnWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  auto* r = NewRequest(WRITE, req, ino);
  WithFile(r, fi);
  if (!CopyData(r, buf, size)) return;
  r->offset = static_cast<uint64_t>(off);
  Send(r);
}

void OnFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  auto* r = NewRequest(FSYNC, req, ino);
  WithFile(r, fi);
  r->mode = datasync ? 1 : 0;
  Send(r);
}

void OnStatfs(fuse_req_t req, fuse_ino_t ino) { Send(NewRequest(STATFS, req, ino)); }

void OnAccess(fuse_req_t req, fuse_ino_t ino, int mask) {
  auto* r = NewRequest(ACCESS, req, ino);
  r->mode = static_cast<uint32_t>(mask);
  Send(r);
}

void OnCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  auto* r = NewRequest(CREATE, req, parent);
  WithFile(r, fi);
  r->name = name;
  r->mode = mode;
  Send(r);
}

// getxattr and listxattr with size 0 ask only for the length (answered with replyXattr).
// Only user.* attributes exist (blackmatch keeps no others): any other name is answered here, on the loop
// thread, without a trip to JavaScript, and with EOPNOTSUPP, as a filesystem without ACLs or security labels
// answers (ext4 mounted noacl does the same). It matters: `ls -l` asks for security.selinux and
// system.posix_acl_access for every entry it shows unless one answer says the device has no such support
// (coreutils' ls.c, getfilecon_cache and file_has_acl_cache), and the kernel asks for security.capability before
// every write. ENODATA would mean "supported, not set" and keep them asking.
// True when the name was outside user.* and is answered with `errno` here.
bool AnsweredOutsideUser(fuse_req_t req, const char* name, int errno_) {
  if (std::strncmp(name, "user.", 5) == 0) return false;
  fuse_reply_err(req, errno_);
  return true;
}

void OnGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  if (AnsweredOutsideUser(req, name, EOPNOTSUPP)) return;
  auto* r = NewRequest(GETXATTR, req, ino);
  r->name = name;
  r->size = size;
  Send(r);
}

// flags: XATTR_CREATE or XATTR_REPLACE, as the caller gave them to setxattr(2).
void OnSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  if (AnsweredOutsideUser(req, name, EOPNOTSUPP)) return;
  auto* r = NewRequest(SETXATTR, req, ino);
  r->name = name;
  r->flags = flags;
  if (CopyData(r, value, size)) Send(r);
}

void OnRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  if (AnsweredOutsideUser(req, name, EOPNOTSUPP)) return;
  OnNamedOp<REMOVEXATTR>(req, ino, name);
}

void OnListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto* r = NewRequest(LISTXATTR, req, ino);
  r->size = size;
  Send(r);
}

void Deliver(Napi::Env env, Napi::Function handler, Session* s, Request* r);

// ---- the JavaScript thread: requests become calls ---------------------------------------------------------

Napi::Object StatToJs(Napi::Env env, const struct stat& st) {
  auto o = Napi::Object::New(env);
  o.Set("mode", st.st_mode);
  o.Set("uid", st.st_uid);
  o.Set("gid", st.st_gid);
  o.Set("size", static_cast<double>(st.st_size));
  auto time = [&](const struct timespec& t) {
    auto v = Napi::Object::New(env);
    v.Set("sec", static_cast<double>(t.tv_sec));
    v.Set("nsec", static_cast<double>(t.tv_nsec));
    return v;
  };
  o.Set("atime", time(st.st_atim));
  o.Set("mtime", time(st.st_mtim));
  return o;
}

void Deliver(Napi::Env env, Napi::Function handler, Session* s, Request* r) {
  if (env == nullptr) {  // the function is being torn down: answer nothing more
    free(r->data);
    delete r;
    return;
  }
  Napi::HandleScope scope(env);
  {
    std::lock_guard<std::mutex> lock(s->mutex);
    // Queued before the loop returned and delivered after close(): the connection is gone, nobody waits.
    if (s->closed) {
      free(r->data);
      delete r;
      return;
    }
    if (r->req) s->outstanding.insert(r->req);
  }
  auto req = Napi::Number::New(env, static_cast<double>(reinterpret_cast<uintptr_t>(r->req)));
  auto o = Napi::Object::New(env);
  o.Set("ino", static_cast<double>(r->ino));
  o.Set("uid", r->uid);
  o.Set("gid", r->gid);
  o.Set("pid", r->pid);
  if (r->hasFh) {
    o.Set("fh", static_cast<double>(r->fh));
    o.Set("flags", r->flags);
  }
  switch (r->op) {
    case FORGET: {
      auto list = Napi::Array::New(env, r->forgets.size() * 2);
      for (size_t i = 0; i < r->forgets.size(); i++) {
        list.Set(i * 2, static_cast<double>(r->forgets[i].first));
        list.Set(i * 2 + 1, static_cast<double>(r->forgets[i].second));
      }
      o.Set("forgets", list);
      break;
    }
    case SETATTR:
      o.Set("toSet", r->toSet);
      o.Set("attr", StatToJs(env, r->attr));
      break;
    case RENAME:
      o.Set("flags", r->flags);
      [[fallthrough]];
    case LINK:
      o.Set("newParent", static_cast<double>(r->ino2));
      o.Set("newName", Napi::Buffer<char>::Copy(env, r->name2.data(), r->name2.size()));
      break;
    case SYMLINK:
      o.Set("target", Napi::Buffer<char>::Copy(env, r->name2.data(), r->name2.size()));
      break;
    case WRITE:
    case SETXATTR: {
      char* data = r->data;
      r->data = nullptr;
      o.Set("data", Napi::Buffer<char>::New(env, data, r->size, [](Napi::Env, char* p) { free(p); }));
      if (r->op == SETXATTR) {
        o.Set("flags", r->flags);
        o.Set("size", static_cast<double>(r->size));
      } else {
        o.Set("offset", static_cast<double>(r->offset));
      }
      break;
    }
    case GETXATTR:
    case LISTXATTR:
      o.Set("size", static_cast<double>(r->size));
      break;
    case REMOVEXATTR:
      break;
    case MKNOD:
      o.Set("rdev", static_cast<double>(r->size));
      break;
    case GONE:
      o.Set("result", r->loopResult);
      break;
    default:
      o.Set("size", static_cast<double>(r->size));
      o.Set("offset", static_cast<double>(r->offset));
      break;
  }
  bool named = r->op == LOOKUP || r->op == GETXATTR || r->op == SETXATTR || r->op == REMOVEXATTR;
  if (named || !r->name.empty()) o.Set("name", Napi::Buffer<char>::Copy(env, r->name.data(), r->name.size()));
  if (r->op == MKDIR || r->op == CREATE || r->op == MKNOD || r->op == ACCESS || r->op == FSYNC) {
    o.Set("mode", r->mode);
    o.Set("umask", r->umask);
  }
  Op op = r->op;
  delete r;
  handler.Call({Napi::Number::New(env, static_cast<double>(op)), req, o});
}

}  // namespace

// ---- the session object -----------------------------------------------------------------------------------

Napi::Function Session::Init(Napi::Env env) {
  return DefineClass(env, "Session",
                     {
                         InstanceMethod("mount", &Session::Mount),
                         InstanceMethod("close", &Session::CloseMethod),
                         InstanceMethod("replyErr", &Session::ReplyErr),
                         InstanceMethod("replyNone", &Session::ReplyNone),
                         InstanceMethod("replyEntry", &Session::ReplyEntry),
                         InstanceMethod("replyCreate", &Session::ReplyCreate),
                         InstanceMethod("replyAttr", &Session::ReplyAttr),
                         InstanceMethod("replyOpen", &Session::ReplyOpen),
                         InstanceMethod("replyBuf", &Session::ReplyBuf),
                         InstanceMethod("replyWrite", &Session::ReplyWrite),
                         InstanceMethod("replyXattr", &Session::ReplyXattr),
                         InstanceMethod("replyStatfs", &Session::ReplyStatfs),
                         InstanceMethod("replyReadlink", &Session::ReplyReadlink),
                         InstanceMethod("replyDirectory", &Session::ReplyDirectory),
                         InstanceMethod("notify", &Session::Notify),
                         InstanceMethod("backingClose", &Session::BackingClose),
                         InstanceMethod("info", &Session::Info),
                     });
}

// new Session(handler: (op, req, args) => void)
Session::Session(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Session>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) {
    Napi::TypeError::New(env, "Session(handler): handler must be a function").ThrowAsJavaScriptException();
    return;
  }
  tsfn = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "blackmatch-fuse3", 0, 1);
  // Unreferenced until mounted: a Session that never mounts must not keep the process alive.
  tsfn.Unref(env);
}

void Session::Queue(Request* r) {
  auto status = tsfn.NonBlockingCall(r, [this](Napi::Env env, Napi::Function fn, Request* req) { Deliver(env, fn, this, req); });
  if (status != napi_ok) {
    if (r->req) fuse_reply_err(r->req, EIO);
    free(r->data);
    delete r;
  }
}

namespace {
const fuse_lowlevel_ops kOps = [] {
  fuse_lowlevel_ops ops{};
  ops.init = OnInit;
  ops.lookup = OnNamedOp<LOOKUP>;
  ops.forget = OnForget;
  ops.forget_multi = OnForgetMulti;
  ops.getattr = OnHandleOp<GETATTR>;
  ops.setattr = OnSetattr;
  ops.readlink = OnReadlink;
  ops.mknod = OnMknod;
  ops.mkdir = OnMkdir;
  ops.unlink = OnNamedOp<UNLINK>;
  ops.rmdir = OnNamedOp<RMDIR>;
  ops.symlink = OnSymlink;
  ops.rename = OnRename;
  ops.link = OnLink;
  ops.open = OnHandleOp<OPEN>;
  ops.read = OnSizedOp<READ>;
  ops.write = OnWrite;
  ops.flush = OnHandleOp<FLUSH>;
  ops.release = OnHandleOp<RELEASE>;
  ops.fsync = OnFsync;
  ops.opendir = OnHandleOp<OPENDIR>;
  ops.readdir = OnSizedOp<READDIR>;
  ops.readdirplus = OnSizedOp<READDIRPLUS>;
  ops.releasedir = OnHandleOp<RELEASEDIR>;
  ops.statfs = OnStatfs;
  ops.access = OnAccess;
  ops.create = OnCreate;
  ops.getxattr = OnGetxattr;
  ops.setxattr = OnSetxattr;
  ops.listxattr = OnListxattr;
  ops.removexattr = OnRemovexattr;
  return ops;
}();
}  // namespace

// mount(mountpoint: string, options: string[] (each "-o" argument), maxWrite: number, passthrough: boolean)
Napi::Value Session::Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (se) {
    Napi::Error::New(env, "already mounted").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  mountpoint = info[0].As<Napi::String>().Utf8Value();
  auto options = info[1].As<Napi::Array>();
  maxWrite = info[2].As<Napi::Number>().Uint32Value();
  passthroughWanted = info[3].As<Napi::Boolean>().Value();
  std::vector<std::string> argv{"blackmatch"};
  for (uint32_t i = 0; i < options.Length(); i++) {
    argv.emplace_back("-o");
    argv.emplace_back(options.Get(i).As<Napi::String>().Utf8Value());
  }
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(cargv.size()), cargv.data());
  se = fuse_session_new(&args, &kOps, sizeof(kOps), this);
  if (!se) {
    Napi::Error::New(env, "fuse_session_new failed (bad mount options?)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (fuse_session_mount(se, mountpoint.c_str()) != 0) {
    fuse_session_destroy(se);
    se = nullptr;
    Napi::Error::New(env, "fuse_session_mount failed: cannot mount " + mountpoint).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  mounted = true;
  tsfn.Ref(env);
  Ref();  // not collected while the loop may still queue to it
  loop = std::thread([this] {
    auto* gone = new Request();
    gone->op = GONE;
    gone->loopResult = fuse_session_loop(se);
    {
      std::lock_guard<std::mutex> lock(mutex);
      loopDone = true;
    }
    Queue(gone);
  });
  notifier = std::thread([this] { NotifierLoop(); });
  return env.Undefined();
}

void Session::NotifierLoop() {
  std::unique_lock<std::mutex> lock(mutex);
  for (;;) {
    notifierWake.wait(lock, [this] { return stopping || !invalidations.empty(); });
    if (stopping) return;
    Invalidation next = std::move(invalidations.front());
    invalidations.pop_front();
    lock.unlock();
    // ENOENT (the kernel does not know the entry or node) is the common, harmless answer.
    if (next.entry) fuse_lowlevel_notify_inval_entry(se, next.ino, next.name.data(), next.name.size());
    else fuse_lowlevel_notify_inval_inode(se, next.ino, 0, 0);
    lock.lock();
  }
}

// close() -> whether the session is torn down: only once the loop has returned (the mount is gone); before
// that it does nothing and returns false (unmount the mountpoint first; the kernel then ends the loop).
Napi::Value Session::CloseMethod(const Napi::CallbackInfo& info) {
  bool closedNow = Close();
  return Napi::Boolean::New(info.Env(), closedNow);
}

bool Session::Close() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!se || closed) return closed;
    if (!loopDone) return false;
    closed = true;
    stopping = true;
    outstanding.clear();  // answers after this point are refused: the connection is gone
  }
  notifierWake.notify_all();
  // The connection is gone: an invalidation in progress fails at once, so these joins do not wait long.
  if (notifier.joinable()) notifier.join();
  if (loop.joinable()) loop.join();
  // A loop that ended on an error leaves the mount in place ("Transport endpoint is not connected").
  fuse_session_unmount(se);
  fuse_session_destroy(se);
  se = nullptr;
  tsfn.Release();
  Unref();
  return true;
}

fuse_req_t Session::Take(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber()) {
    Napi::TypeError::New(info.Env(), "a reply needs the request number first").ThrowAsJavaScriptException();
    return nullptr;
  }
  auto req = reinterpret_cast<fuse_req_t>(static_cast<uintptr_t>(info[0].As<Napi::Number>().Int64Value()));
  std::lock_guard<std::mutex> lock(mutex);
  if (outstanding.erase(req) == 0) {
    Napi::Error::New(info.Env(), "reply to a request that is not outstanding (answered twice, or the session ended)").ThrowAsJavaScriptException();
    return nullptr;
  }
  return req;
}

namespace {
double Num(const Napi::Object& o, const char* key) {
  auto v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0;
}

struct timespec Time(const Napi::Object& o, const char* key) {
  struct timespec t {};
  auto v = o.Get(key);
  if (!v.IsObject()) return t;
  auto to = v.As<Napi::Object>();
  t.tv_sec = static_cast<time_t>(Num(to, "sec"));
  t.tv_nsec = static_cast<long>(Num(to, "nsec"));
  return t;
}

// attr: { ino, mode, nlink, uid, gid, size, blocks?, blksize?, rdev?, atime, mtime, ctime }
struct stat JsToStat(const Napi::Object& a) {
  struct stat st {};
  st.st_ino = static_cast<ino_t>(Num(a, "ino"));
  st.st_mode = static_cast<mode_t>(Num(a, "mode"));
  st.st_nlink = static_cast<nlink_t>(Num(a, "nlink"));
  st.st_uid = static_cast<uid_t>(Num(a, "uid"));
  st.st_gid = static_cast<gid_t>(Num(a, "gid"));
  st.st_size = static_cast<off_t>(Num(a, "size"));
  st.st_rdev = static_cast<dev_t>(Num(a, "rdev"));
  st.st_blksize = static_cast<blksize_t>(Num(a, "blksize"));
  st.st_blocks = static_cast<blkcnt_t>((st.st_size + 511) / 512);
  st.st_atim = Time(a, "atime");
  st.st_mtim = Time(a, "mtime");
  st.st_ctim = Time(a, "ctime");
  return st;
}

// entry: { ino, generation, attr, entryTimeout, attrTimeout } (timeouts in seconds)
fuse_entry_param JsToEntry(const Napi::Object& e) {
  fuse_entry_param p{};
  p.ino = static_cast<fuse_ino_t>(Num(e, "ino"));
  p.generation = static_cast<uint64_t>(Num(e, "generation"));
  p.attr = JsToStat(e.Get("attr").As<Napi::Object>());
  if (p.attr.st_ino == 0) p.attr.st_ino = p.ino;
  p.entry_timeout = Num(e, "entryTimeout");
  p.attr_timeout = Num(e, "attrTimeout");
  return p;
}
}  // namespace

Napi::Value Session::ReplyErr(const Napi::CallbackInfo& info) {
  auto req = Take(info);
  if (req) fuse_reply_err(req, info[1].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value Session::ReplyNone(const Napi::CallbackInfo& info) {
  auto req = Take(info);
  if (req) fuse_reply_none(req);
  return info.Env().Undefined();
}

Napi::Value Session::ReplyEntry(const Napi::CallbackInfo& info) {
  auto req = Take(info);
  if (!req) return info.Env().Undefined();
  auto e = JsToEntry(info[1].As<Napi::Object>());
  fuse_reply_entry(req, &e);
  return info.Env().Undefined();
}

namespace {
// options: { fh, keepCache, directIo, backingFd?, backingId? }
fuse_file_info JsToOpen(Session* s, fuse_req_t req, const Napi::Object& o) {
  fuse_file_info fi{};
  fi.fh = static_cast<uint64_t>(Num(o, "fh"));
  fi.keep_cache = o.Get("keepCache").ToBoolean() ? 1 : 0;
  fi.direct_io = o.Get("directIo").ToBoolean() ? 1 : 0;
#ifdef FUSE_CAP_PASSTHROUGH
  // A new backing file (from an open descriptor), or the one the node's other passed-through handles use.
  auto fd = o.Get("backingFd");
  auto existing = o.Get("backingId");
  if (s->passthroughAvailable && fd.IsNumber()) {
    int id = fuse_passthrough_open(req, fd.As<Napi::Number>().Int32Value());
    if (id > 0) fi.backing_id = id;
  } else if (s->passthroughAvailable && existing.IsNumber()) {
    fi.backing_id = existing.As<Napi::Number>().Int32Value();
  }
#endif
  return fi;
}
}  // namespace

// replyCreate(req, entry, open) -> backing id (0 when not passed through)
Napi::Value Session::ReplyCreate(const Napi::CallbackInfo& info) {
  auto req = Take(info);
  if (!req) return info.Env().Undefined();
  auto e = JsToEntry(info[1].As<Napi::Object>());
  auto fi = JsToOpen(this, req, info[2].As<Napi::Object>());
  fuse_reply_create(req, &e, &fi);
#ifdef FUSE_CAP_PASSTHROUGH
  return Napi::Number::New(info.Env(), fi.backing_id);
#else
  return Napi::Number::New(info.Env(), 0);
#endif
}

Napi::Value Session::ReplyAttr(const Napi::CallbackInfo& info) {
  auto req = Take(info);
  if (!req) return info.Env().Undefined();
  auto st = JsToStat(info[1].As<Napi::Object>());
  fuse_reply_attr(req, &st, info[2].As<Napi::Number>().DoubleValue());
  return info.Env().Undefined();
}

// replyOpen(req, open) -> backing id (0 when not passed through)
Napi::Value Session::ReplyOpen(const Napi::CallbackInfo& info) {
  auto req = Take(info);
  if (!req) return info.Env().Undefined();
  auto fi = JsToOpen(this, req, info[1].As<Napi::Object>());
  fuse_reply_open(req, &fi);
#ifdef FUSE_CAP_PASSTHROUGH
  return Napi::Number::New(info.Env(), fi.backing_id);
#else
  return Napi::Number::New(info.Env(), 0);
#endif
}

// replyBuf(req, buffer, length)
Napi::Value Session::ReplyBuf(const Napi::CallbackInfo& info) {
  auto req = Take(info);
  if (!req) return info.Env().Undefined();
  auto buf = info[1].As<Napi::Buffer<char>>();
  size_t length = info[2].As<Napi::Number>().Int64Value();
  fuse_reply_buf(req, buf.Data(), length < buf.Length() ? length : buf.Length());
  return info.Env().Undefined();
}

Napi::Value Session::ReplyWrite(const Napi::CallbackInfo& info) {
  auto req = Take(info);
  if (req) fuse_reply_write(req, info[1].As<Napi::Number>().Int64Value());
  return info.Env().Undefined();
}

// replyXattr(req, size): the length of a value or of the name list, for a getxattr or listxattr of size 0
Napi::Value Session::ReplyXattr(const Napi::CallbackInfo& info) {
  auto req = Take(info);
  if (req) fuse_reply_xattr(req, info[1].As<Napi::Number>().Int64Value());
  return info.Env().Undefined();
}

Napi::Value Session::ReplyStatfs(const Napi::CallbackInfo& info) {
  auto req = Take(info);
  if (!req) return info.Env().Undefined();
  auto o = info[1].As<Napi::Object>();
  struct statvfs st {};
  st.f_bsize = static_cast<unsigned long>(Num(o, "bsize"));
  st.f_frsize = static_cast<unsigned long>(Num(o, "frsize"));
  st.f_blocks = static_cast<fsblkcnt_t>(Num(o, "blocks"));
  st.f_bfree = static_cast<fsblkcnt_t>(Num(o, "bfree"));
  st.f_bavail = static_cast<fsblkcnt_t>(Num(o, "bavail"));
  st.f_files = static_cast<fsfilcnt_t>(Num(o, "files"));
  st.f_ffree = static_cast<fsfilcnt_t>(Num(o, "ffree"));
  st.f_favail = static_cast<fsfilcnt_t>(Num(o, "favail"));
  st.f_namemax = static_cast<unsigned long>(Num(o, "namemax"));
  fuse_reply_statfs(req, &st);
  return info.Env().Undefined();
}

Napi::Value Session::ReplyReadlink(const Napi::CallbackInfo& info) {
  auto req = Take(info);
  if (!req) return info.Env().Undefined();
  auto target = info[1].As<Napi::Buffer<char>>();
  std::string text(target.Data(), target.Length());
  fuse_reply_readlink(req, text.c_str());
  return info.Env().Undefined();
}

// replyDirectory(req, size, firstOffset, entries: Array<{ name: Buffer, ino, mode } | entry & { name }>, plus)
// -> how many entries fitted. Offsets are positions in the caller's list: entry i has offset firstOffset+i+1.
Napi::Value Session::ReplyDirectory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto req = Take(info);
  if (!req) return env.Undefined();
  size_t size = info[1].As<Napi::Number>().Int64Value();
  double first = info[2].As<Napi::Number>().DoubleValue();
  auto entries = info[3].As<Napi::Array>();
  bool plus = info[4].ToBoolean();
  std::vector<char> buf(size);
  size_t used = 0;
  uint32_t fitted = 0;
  for (uint32_t i = 0; i < entries.Length(); i++) {
    auto e = entries.Get(i).As<Napi::Object>();
    auto nameBuf = e.Get("name").As<Napi::Buffer<char>>();
    std::string name(nameBuf.Data(), nameBuf.Length());
    off_t next = static_cast<off_t>(first + i + 1);
    size_t need;
    if (plus) {
      auto p = JsToEntry(e);
      need = fuse_add_direntry_plus(req, buf.data() + used, size - used, name.c_str(), &p, next);
    } else {
      struct stat st {};
      st.st_ino = static_cast<ino_t>(Num(e, "ino"));
      st.st_mode = static_cast<mode_t>(Num(e, "mode"));
      need = fuse_add_direntry(req, buf.data() + used, size - used, name.c_str(), &st, next);
    }
    if (need > size - used) break;
    used += need;
    fitted++;
  }
  fuse_reply_buf(req, buf.data(), used);
  return Napi::Number::New(env, fitted);
}

// notify(kind: 'entry' | 'inode', ino, name?: Buffer): queued for the notifier thread.
Napi::Value Session::Notify(const Napi::CallbackInfo& info) {
  Invalidation inv;
  inv.entry = info[0].As<Napi::String>().Utf8Value() == "entry";
  inv.ino = static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue());
  if (inv.entry) {
    auto name = info[2].As<Napi::Buffer<char>>();
    inv.name.assign(name.Data(), name.Length());
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (stopping || !se) return info.Env().Undefined();
    invalidations.push_back(std::move(inv));
  }
  notifierWake.notify_one();
  return info.Env().Undefined();
}

// backingClose(backingId): the kernel forgot the node the backing file was bound to (libfuse's own close
// needs a request; a forget has none, so this is its ioctl on the session's descriptor).
Napi::Value Session::BackingClose(const Napi::CallbackInfo& info) {
#ifdef FUSE_CAP_PASSTHROUGH
  if (!info[0].IsNumber()) return info.Env().Undefined();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  std::lock_guard<std::mutex> lock(mutex);
  if (se && !closed) ioctl(fuse_session_fd(se), _IOW(229, 2, uint32_t), &id);  // FUSE_DEV_IOC_BACKING_CLOSE
#endif
  return info.Env().Undefined();
}

// info() -> { passthrough: whether the kernel and libfuse agreed to it at init }
Napi::Value Session::Info(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("passthrough", passthroughAvailable);
  return o;
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("Session", Session::Init(env));
  exports.Set("libfuseVersion", Napi::Number::New(env, fuse_version()));
  // ops[n] is the name of request kind n, as the handler gets it.
  auto ops = Napi::Array::New(env, GONE + 1);
  for (uint32_t i = 0; i <= GONE; i++) ops.Set(i, Napi::String::New(env, kOpNames[i]));
  ops.Freeze();
  exports.Set("ops", ops);
#ifdef FUSE_CAP_PASSTHROUGH
  exports.Set("passthroughBuilt", Napi::Boolean::New(env, true));
#else
  exports.Set("passthroughBuilt", Napi::Boolean::New(env, false));
#endif
  return exports;
}

NODE_API_MODULE(blackmatch_fuse3, InitModule)
