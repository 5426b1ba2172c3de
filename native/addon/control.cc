// The supervisor's control socket with the launcher: an AF_UNIX SOCK_SEQPACKET pair (message
// boundaries kept, peer close seen as a zero-length read) that carries short text messages and, once,
// the TAP fd as SCM_RIGHTS. Node has no API for either, hence these calls; and the peer credentials of
// a box's control socket (SO_PEERCRED), which Node has no API for either.
//
// recvMessage blocks in a libuv thread-pool thread (an AsyncWorker), so the event loop never waits on
// it; it holds one of the pool's threads until a message or the peer's close arrives. The worker
// receives on its own dup of the fd, so closing the fd meanwhile can neither make it fail with EBADF
// nor, worse, read from an unrelated file that reused the number. (closeFd does not shutdown(): the
// socket may be shared with a child, e.g. the launcher's end right after spawn.)
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "bindings.h"
#include "cmsg.h"
#include "napi_util.h"

namespace tapbox {
namespace {

constexpr size_t kMaxMessage = 64 * 1024;
constexpr int kMaxFd = 0x7fffffff;

bool GetFd(napi_env env, napi_value value, int* fd) {
  size_t index;
  if (!GetIndex(env, value, "fd", kMaxFd, &index)) return false;
  *fd = static_cast<int>(index);
  return true;
}

// socketpair() -> [fd, fd], both close-on-exec (hand one to a child through spawn's stdio, which dup2s).
Napi::Value Socketpair(const Napi::CallbackInfo& info) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    ThrowErrno(info.Env(), "socketpair", errno);
    return Napi::Value();
  }
  Napi::Array pair = Napi::Array::New(info.Env(), 2);
  pair.Set(0u, Napi::Number::New(info.Env(), fds[0]));
  pair.Set(1u, Napi::Number::New(info.Env(), fds[1]));
  return pair;
}

// sendMessage(fd, data[, passFd]): one message, optionally carrying one fd.
Napi::Value SendMessage(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  int fd, pass_fd = -1;
  uint8_t* data;
  size_t length;
  if (!GetFd(env, info[0], &fd) || !GetBytes(env, info[1], &data, &length)) return Napi::Value();
  if (info.Length() > 2 && !info[2].IsUndefined() && !GetFd(env, info[2], &pass_fd)) return Napi::Value();

  iovec iov{data, length};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (pass_fd >= 0) {
    std::memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &pass_fd, sizeof(int));
  }
  ssize_t sent;
  do {
    sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) ThrowErrno(env, "sendmsg", errno);
  return Napi::Value();
}

// closeFd(fd)
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info.Env(), info[0], &fd)) return Napi::Value();
  if (close(fd) != 0 && errno != EINTR) ThrowErrno(info.Env(), "close", errno);
  return Napi::Value();
}

class RecvWorker : public Napi::AsyncWorker {
 public:
  // Takes ownership of `fd` (a dup made for this one receive).
  RecvWorker(Napi::Function callback, int fd) : Napi::AsyncWorker(callback, "tapbox:recvMessage"), fd_(fd) {}
  ~RecvWorker() override { close(fd_); }

 protected:
  void Execute() override {
    data_.resize(kMaxMessage);
    iovec iov{data_.data(), data_.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do {
      n = recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      errno_ = errno;
      SetError("recvmsg");
      return;
    }
    data_.resize(static_cast<size_t>(n));
    // Keep the first fd passed; close any extra one rather than leak it into this process (cmsg.cc).
    received_fd_ = TakeFirstFd(&msg, [](int extra) { close(extra); });
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
      if (received_fd_ >= 0) close(received_fd_);
      received_fd_ = -1;
      errno_ = EMSGSIZE;
      SetError("recvmsg");
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object message = Napi::Object::New(env);
    message.Set("data", Napi::Buffer<uint8_t>::Copy(env, data_.data(), data_.size()));
    if (received_fd_ >= 0) message.Set("fd", Napi::Number::New(env, received_fd_));
    Callback().Call({env.Null(), message});
  }

  void OnError(const Napi::Error&) override { Callback().Call({ErrnoError(Env(), "recvmsg", errno_).Value()}); }

 private:
  int fd_;
  int errno_ = 0;
  int received_fd_ = -1;
  std::vector<uint8_t> data_;
};

// recvMessage(fd, callback(err, { data, fd? })): one message; empty data and no fd = the peer closed.
Napi::Value RecvMessage(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info.Env(), info[0], &fd)) return Napi::Value();
  if (!info[1].IsFunction()) {
    Napi::TypeError::New(info.Env(), "recvMessage needs a callback").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) {
    ThrowErrno(info.Env(), "recvMessage", errno);
    return Napi::Value();
  }
  (new RecvWorker(info[1].As<Napi::Function>(), own))->Queue();
  return Napi::Value();
}

// peerCredentials(fd) -> { pid, uid, gid } of the process at the other end of a connected AF_UNIX
// socket (SO_PEERCRED), as the kernel recorded them at connect(): a box's control socket checks them.
Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info.Env(), info[0], &fd)) return Napi::Value();
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    ThrowErrno(info.Env(), "getsockopt(SO_PEERCRED)", errno);
    return Napi::Value();
  }
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("pid", Napi::Number::New(info.Env(), cred.pid));
  out.Set("uid", Napi::Number::New(info.Env(), cred.uid));
  out.Set("gid", Napi::Number::New(info.Env(), cred.gid));
  return out;
}

}  // namespace

void InitControl(Napi::Env env, Napi::Object exports) {
  exports.Set("socketpair", Napi::Function::New(env, Socketpair, "socketpair"));
  exports.Set("sendMessage", Napi::Function::New(env, SendMessage, "sendMessage"));
  exports.Set("recvMessage", Napi::Function::New(env, RecvMessage, "recvMessage"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
}

}  // namespace tapbox
