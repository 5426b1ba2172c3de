// HostSockets: the host side of relayed TCP flows (see docs/architecture.md, step 6 and 8), one
// non-blocking socket per flow polled by libuv, with no Node stream in between. Node's net.Socket
// costs a relayed short connection about a fifth of the supervisor's time on its own (the Duplex and
// its two states, the connect request, the read and write requests, destroy's ticks); this is what a
// relay needs of it and no more.
//
// The division of work: C owns the descriptors and moves bytes; JS (src/egress/forwarder/host-socket.ts)
// keeps everything that is a decision — what to write, when to stop reading, when to close — and hears
// of each event through one callback, onEvent(id, kind, value, length). C never holds a JS buffer: write()
// takes what the kernel accepts now and returns the count; JS keeps the rest and asks to hear when the
// socket is writable again. Nothing here parses the sandbox's bytes.
#include <napi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "bindings.h"
#include "napi_util.h"

namespace tapbox {
namespace {

// A read takes at most this much; a read that fills it is followed by another (up to kReadsPerWakeup),
// as libuv does for its streams, so a fast sender costs one poll per many reads.
constexpr size_t kReadBlock = 64 * 1024;
constexpr int kReadsPerWakeup = 16;
// Reads shorter than this are copied into a Buffer of their size (the block is read into again);
// longer ones hand the block itself to JS, which keeps the read's part of it: at most 4x the bytes
// held, and the stack's send buffer keeps such Buffers by reference, so the bytes of a bulk download
// are never copied on their way to the sandbox.
constexpr size_t kHandOverFrom = 16 * 1024;
// Keepalive probes once the idle time has passed, as libuv sets them for Node's setKeepAlive.
constexpr int kKeepAliveInterval = 1;
constexpr int kKeepAliveProbes = 10;

enum HostSocketEvent : int { kConnected = 1, kData = 2, kEnd = 3, kWritable = 4, kError = 5 };

class HostSockets : public Napi::ObjectWrap<HostSockets> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "HostSockets",
                       {
                           InstanceMethod<&HostSockets::Connect>("connect"),
                           InstanceMethod<&HostSockets::Write>("write"),
                           InstanceMethod<&HostSockets::SetReading>("setReading"),
                           InstanceMethod<&HostSockets::WantWritable>("wantWritable"),
                           InstanceMethod<&HostSockets::Shutdown>("shutdown"),
                           InstanceMethod<&HostSockets::Close>("close"),
                       });
  }

  // new HostSockets(onEvent(id, kind, value, length))
  explicit HostSockets(const Napi::CallbackInfo& info) : Napi::ObjectWrap<HostSockets>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsFunction()) {
      Napi::TypeError::New(env, "new HostSockets(onEvent)").ThrowAsJavaScriptException();
      return;
    }
    on_event_ = Napi::Persistent(info[0].As<Napi::Function>());
    async_context_ = std::make_unique<Napi::AsyncContext>(env, "tapbox:HostSockets");
    napi_get_uv_event_loop(env, &loop_);
  }

  ~HostSockets() override {
    for (auto& entry : sockets_) Release(std::move(entry.second), false);
  }

 private:
  struct Socket {
    uint32_t id = 0;
    int fd = -1;
    uv_poll_t* poll = nullptr;
    HostSockets* owner = nullptr;
    bool connecting = true;
    bool reading = false;
    bool want_writable = false;
    bool eof = false;
    int polled = 0;  // the events the poll handle is started with
  };

  // connect(family, address, port, keepAliveSeconds) → id. Non-blocking: kConnected or kError follows.
  // Throws an errno error when the socket can't even start connecting (ENETUNREACH with no route, EMFILE).
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t family, port, keepalive;
    uint8_t* address;
    size_t address_length;
    if (!GetIndex(env, info[0], "family", 6, &family) || !GetBytes(env, info[1], &address, &address_length) ||
        !GetIndex(env, info[2], "port", 65535, &port) || !GetIndex(env, info[3], "keepAliveSeconds", 0x7fff, &keepalive)) {
      return env.Undefined();
    }
    sockaddr_storage to{};
    socklen_t to_length;
    if (family == 4 && address_length == 4) {
      auto* a = reinterpret_cast<sockaddr_in*>(&to);
      a->sin_family = AF_INET;
      a->sin_port = htons(static_cast<uint16_t>(port));
      std::memcpy(&a->sin_addr, address, 4);
      to_length = sizeof(sockaddr_in);
    } else if (family == 6 && address_length == 16) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&to);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(static_cast<uint16_t>(port));
      std::memcpy(&a->sin6_addr, address, 16);
      to_length = sizeof(sockaddr_in6);
    } else {
      Napi::RangeError::New(env, "connect(family, address, ...): a 4-byte IPv4 or 16-byte IPv6 address").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int fd = socket(to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ThrowErrno(env, "socket", errno);
      return env.Undefined();
    }
    if (keepalive > 0) {
      const int on = 1, idle = static_cast<int>(keepalive), interval = kKeepAliveInterval, probes = kKeepAliveProbes;
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
    }
    int rc;
    do {
      rc = connect(fd, reinterpret_cast<sockaddr*>(&to), to_length);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EINPROGRESS) {
      const int err = errno;
      close(fd);
      ThrowErrno(env, "connect", err);
      return env.Undefined();
    }
    auto s = std::make_unique<Socket>();
    s->id = next_id_++;
    s->fd = fd;
    s->owner = this;
    s->poll = new uv_poll_t;
    int err = uv_poll_init(loop_, s->poll, fd);
    if (err != 0) {
      delete s->poll;
      close(fd);
      ThrowErrno(env, "uv_poll_init", -err);
      return env.Undefined();
    }
    s->poll->data = s.get();
    // Even a connect that completed at once (loopback) is reported from the poll: always asynchronously.
    Poll(s.get());
    const uint32_t id = s->id;
    sockets_[id] = std::move(s);
    return Napi::Number::New(env, id);
  }

  // write(id, bytes) → how many bytes the kernel took now (0: none, the socket is full). Throws an errno
  // error (EPIPE, ECONNRESET...) when the socket failed; JS closes it.
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Socket* s = Find(env, info[0]);
    uint8_t* data;
    size_t length;
    if (!s) {
      if (!env.IsExceptionPending()) ThrowErrno(env, "write", EBADF);  // closed already
      return env.Undefined();
    }
    if (!GetBytes(env, info[1], &data, &length)) return env.Undefined();
    ssize_t n;
    do {
      n = send(s->fd, data, length, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, 0);
      ThrowErrno(env, "write", errno);
      return env.Undefined();
    }
    return Napi::Number::New(env, static_cast<double>(n));
  }

  // setReading(id, on): kData events flow while on (a new socket is off).
  Napi::Value SetReading(const Napi::CallbackInfo& info) {
    Socket* s = Find(info.Env(), info[0]);
    if (s) {
      s->reading = info[1].ToBoolean();
      Poll(s);
    }
    return info.Env().Undefined();
  }

  // wantWritable(id): one kWritable event once the socket takes bytes again.
  Napi::Value WantWritable(const Napi::CallbackInfo& info) {
    Socket* s = Find(info.Env(), info[0]);
    if (s) {
      s->want_writable = true;
      Poll(s);
    }
    return info.Env().Undefined();
  }

  // shutdown(id): our end of the byte stream (a FIN once what was written has gone).
  Napi::Value Shutdown(const Napi::CallbackInfo& info) {
    Socket* s = Find(info.Env(), info[0]);
    if (s) shutdown(s->fd, SHUT_WR);
    return info.Env().Undefined();
  }

  // close(id, reset): closes the socket; with reset, the peer gets a RST instead of a FIN.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t id;
    if (!GetIndex(env, info[0], "id", 0xffffffff, &id)) return env.Undefined();
    auto it = sockets_.find(static_cast<uint32_t>(id));
    if (it == sockets_.end()) return env.Undefined();
    std::unique_ptr<Socket> owned = std::move(it->second);
    sockets_.erase(it);
    Release(std::move(owned), info[1].ToBoolean());
    return env.Undefined();
  }

  // The socket of the id argument, or null (closed already, or a bad id: then an exception is pending).
  Socket* Find(Napi::Env env, Napi::Value value) {
    size_t id;
    return GetIndex(env, value, "id", 0xffffffff, &id) ? Alive(static_cast<uint32_t>(id)) : nullptr;
  }

  // The socket's pending error (SO_ERROR, which reading clears), 0 if none.
  static int PendingError(int fd) {
    int err = 0;
    socklen_t size = sizeof err;
    return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &size) < 0 ? errno : err;
  }

  static void Release(std::unique_ptr<Socket> s, bool reset) {
    if (reset) {
      const linger abort{1, 0};
      setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
    }
    // The handle goes first (libuv takes the fd out of epoll), then the fd; no poll callback follows.
    uv_close(reinterpret_cast<uv_handle_t*>(s->poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    close(s->fd);
  }

  // Starts, changes or stops the poll to what the socket waits for.
  void Poll(Socket* s) {
    const int events = s->connecting ? UV_WRITABLE : (s->reading && !s->eof ? UV_READABLE : 0) | (s->want_writable ? UV_WRITABLE : 0);
    if (events == s->polled) return;
    s->polled = events;
    if (events == 0) uv_poll_stop(s->poll);
    else uv_poll_start(s->poll, events, OnPoll);
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    // handle->data is the socket: valid here, as a closed handle gets no more callbacks.
    auto* s = static_cast<Socket*>(handle->data);
    s->owner->Ready(s, status, events);
  }

  void Ready(Socket* s, int status, int events) {
    const uint32_t id = s->id;
    if (s->connecting) {
      const int err = PendingError(s->fd);
      if (err == EINPROGRESS) return;  // not yet (a spurious wake-up)
      s->connecting = false;
      s->polled = -1;  // libuv stops the handle on POLLERR: start it afresh
      Poll(s);
      if (err != 0) return EmitError(id, "connect", err);
      return Emit(id, kConnected);
    }
    if (status < 0) {
      // POLLERR (libuv stopped the handle): bytes that came before a RST are still read first, as
      // Node's streams do; then the socket's pending error (a RST, a keepalive timeout) says which.
      if (s->reading && !s->eof) Read(id);
      s = Alive(id);
      if (!s) return;
      const int err = PendingError(s->fd);
      if (err != 0) return EmitError(id, "read", err);
      s->polled = -1;
      return Poll(s);
    }
    if ((events & UV_WRITABLE) && s->want_writable) {
      s->want_writable = false;
      Poll(s);
      Emit(id, kWritable);
      s = Alive(id);
      if (!s) return;
    }
    if ((events & UV_READABLE) && s->reading && !s->eof) Read(id);
  }

  void Read(uint32_t id) {
    Napi::Env env = Env();
    for (int reads = 0; reads < kReadsPerWakeup; reads++) {
      Socket* s = Alive(id);
      if (!s || !s->reading || s->eof) return;
      Napi::HandleScope scope(env);
      if (spare_.IsEmpty()) spare_ = Napi::Persistent(Napi::Buffer<uint8_t>::New(env, kReadBlock));
      Napi::Buffer<uint8_t> block = spare_.Value();
      ssize_t n;
      do {
        n = read(s->fd, block.Data(), kReadBlock);
      } while (n < 0 && errno == EINTR);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        return EmitError(id, "read", errno);
      }
      if (n == 0) {
        s->eof = true;
        Poll(s);
        return Emit(id, kEnd);
      }
      const size_t length = static_cast<size_t>(n);
      Napi::Value bytes;
      if (length < kHandOverFrom) {
        bytes = Napi::Buffer<uint8_t>::Copy(env, block.Data(), length);
      } else {
        bytes = block;
        spare_.Reset();
      }
      Emit(id, kData, bytes, length);
      if (length < kReadBlock) return;  // the socket is drained: the next poll tells
    }
  }

  Socket* Alive(uint32_t id) {
    auto it = sockets_.find(id);
    return it == sockets_.end() ? nullptr : it->second.get();
  }

  void EmitError(uint32_t id, const char* syscall, int err) {
    Napi::HandleScope scope(Env());
    Emit(id, kError, ErrnoError(Env(), syscall, err).Value());
  }

  void Emit(uint32_t id, int kind) {
    Napi::HandleScope scope(Env());
    Emit(id, kind, Env().Undefined());
  }

  // Inside a HandleScope of the caller's (`value` lives in it). kData: `length` bytes of `value` are the read's.
  void Emit(uint32_t id, int kind, Napi::Value value, size_t length = 0) {
    Napi::Env env = Env();
    on_event_.MakeCallback(Value(), {Napi::Number::New(env, id), Napi::Number::New(env, kind), value, Napi::Number::New(env, static_cast<double>(length))}, *async_context_);
    RaisePendingException(env);
  }

  uv_loop_t* loop_ = nullptr;
  uint32_t next_id_ = 1;
  std::unordered_map<uint32_t, std::unique_ptr<Socket>> sockets_;
  Napi::Reference<Napi::Buffer<uint8_t>> spare_;  // the next read's memory (handed to JS by a long read)
  Napi::FunctionReference on_event_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
};

}  // namespace

void InitHostSockets(Napi::Env env, Napi::Object exports) {
  exports.Set("HostSockets", HostSockets::Define(env));
  Napi::Object events = Napi::Object::New(env);
  events.Set("connected", static_cast<int>(kConnected));
  events.Set("data", static_cast<int>(kData));
  events.Set("end", static_cast<int>(kEnd));
  events.Set("writable", static_cast<int>(kWritable));
  events.Set("error", static_cast<int>(kError));
  exports.Set("hostSocketEvents", events);
}

}  // namespace tapbox
