// flock(2), which Node has no API for. The image store's locks and a sandbox's lease on its root
// directory (src/supervisor/root-lease.ts, src/images/store.ts) are flocks: the kernel drops them when
// their fd's last holder closes it or dies, so a killed tapbox never leaves a lock behind.
// Non-blocking only: a caller that must wait polls, and the event loop never sleeps in the kernel.
#include <sys/file.h>

#include <cerrno>

#include "bindings.h"
#include "napi_util.h"

namespace tapbox {
namespace {

// tryLock(fd, exclusive) -> true when the lock is held now, false when another holder's lock conflicts.
Napi::Value TryLock(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  size_t fd;
  if (!GetIndex(env, info[0], "fd", 0x7fffffff, &fd)) return Napi::Value();
  if (!info[1].IsBoolean()) {
    Napi::TypeError::New(env, "tryLock: exclusive must be a boolean").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  const int operation = (info[1].As<Napi::Boolean>().Value() ? LOCK_EX : LOCK_SH) | LOCK_NB;
  int rc;
  do rc = flock(static_cast<int>(fd), operation);
  while (rc != 0 && errno == EINTR);
  if (rc == 0) return Napi::Boolean::New(env, true);
  if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
  ThrowErrno(env, "flock", errno);
  return Napi::Value();
}

}  // namespace

void InitFlock(Napi::Env env, Napi::Object exports) {
  exports.Set("tryLock", Napi::Function::New(env, TryLock, "tryLock"));
}

}  // namespace tapbox
