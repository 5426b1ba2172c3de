// TapDevice: the TAP fd on the Node event loop, one JS call per batch of frames.
//
// Theory of operation. A uv_poll handle watches the (non-blocking) fd. When it is readable we read()
// frames until EAGAIN or until the ring is full: the ring is one ArrayBuffer of `batchFrames` slots of
// `frameSize` bytes (the largest frame), allocated once and shared with JS, so a frame is never copied
// after the kernel wrote it. For each frame the Int32Array `meta` gets (offset, length) and, with
// vnetHdr, the virtio-net facts of frame_meta.h; then a single call onFrames(count) hands the batch to
// JS, which parses and reads the frames as views on the ring. The views are valid until onFrames
// returns: the next batch overwrites the slots.
// libuv polls level-triggered, so a full ring simply means we get called again on the next loop turn,
// after the other handles had their share.
//
// Writes are synchronous write() calls (a TAP write hands the frame to the sandbox's kernel and rarely
// fails). On EAGAIN the frame is copied to a bounded FIFO of preallocated slots and the poll handle
// also waits for POLLOUT to flush it; when the FIFO is full the frame is dropped and counted, as a
// wire would lose it. Counters live in a Float64Array shared with JS, so reading them costs no call.
//
// With vnetHdr (a TAP opened with IFF_VNET_HDR and TUNSETOFFLOAD by the launcher), every frame read is
// preceded by a struct virtio_net_hdr: the sandbox's kernel may then skip TCP/UDP checksums (the
// frame's meta says so) and hand us TCP super-segments of up to 64 KiB whatever the MTU, which cuts
// the frames per byte by 40x at MTU 1500 (measured). Each slot grows by the header, kept in front of
// the frame; JS sees only the frame. Our writes get an all-zero header (no offload asked) through writev.
//
// The object owns the fd: close() stops the handle and closes it. While open, the handle keeps the
// event loop alive and a reference keeps the JS object (and its callbacks) from being collected.
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "bindings.h"
#include "frame_meta.h"
#include "napi_util.h"
#include "udp_relay.h"

namespace tapbox {
namespace {

// Indices into the shared counters array.
enum Counter : int {
  kFramesIn = 0,
  kBytesIn,
  kFramesOut,
  kBytesOut,
  kQueuedOut,   // frames that met EAGAIN and went through the pending FIFO
  kDroppedOut,  // frames dropped because the FIFO was full (or too large for a slot)
  kWriteErrors, // frames the kernel refused (e.g. interface down)
  kOversizeIn,  // frames longer than frameSize (the sandbox raised its MTU): dropped
  kRelayedIn,   // frames from the sandbox the UDP relay sent on a host socket (also in kFramesIn)
  kRelayedOut,  // frames the UDP relay built from host datagrams (also in kFramesOut)
  kCounterCount,
};

constexpr size_t kMinFrameSize = 64;
constexpr size_t kMaxFrameSize = 256 * 1024;
constexpr size_t kMaxBatchFrames = 4096;

class TapDevice : public Napi::ObjectWrap<TapDevice>, public UdpRelayHost {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TapDevice",
                       {
                           InstanceMethod<&TapDevice::WriteFrame>("writeFrame"),
                           InstanceMethod<&TapDevice::Pause>("pause"),
                           InstanceMethod<&TapDevice::Resume>("resume"),
                           InstanceMethod<&TapDevice::Close>("close"),
                           InstanceMethod<&TapDevice::EnableUdpRelay>("enableUdpRelay"),
                           InstanceMethod<&TapDevice::AddUdpFlow>("addUdpFlow"),
                           InstanceMethod<&TapDevice::UdpFlowSend>("udpFlowSend"),
                           InstanceMethod<&TapDevice::ReadUdpFlow>("readUdpFlow"),
                           InstanceMethod<&TapDevice::RemoveUdpFlow>("removeUdpFlow"),
                       });
  }

  // new TapDevice(fd, { frameSize, batchFrames, pendingFrames, vnetHdr }, onFrames(count), onError(err))
  // Created paused: call resume() to start reading.
  explicit TapDevice(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TapDevice>(info) {
    Napi::Env env = info.Env();
    size_t fd;
    if (!GetIndex(env, info[0], "fd", 0x7fffffff, &fd)) return;
    if (!info[1].IsObject() || !info[2].IsFunction() || !info[3].IsFunction()) {
      Napi::TypeError::New(env, "new TapDevice(fd, options, onFrames, onError)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object options = info[1].As<Napi::Object>();
    if (!GetIndex(env, options.Get("frameSize"), "frameSize", kMaxFrameSize, &frame_size_) ||
        !GetIndex(env, options.Get("batchFrames"), "batchFrames", kMaxBatchFrames, &batch_frames_) ||
        !GetIndex(env, options.Get("pendingFrames"), "pendingFrames", kMaxBatchFrames, &pending_frames_)) {
      return;
    }
    header_size_ = options.Get("vnetHdr").ToBoolean() ? kVnetHeaderSize : 0;
    // One spare byte per slot: the kernel truncates a frame to the buffer it is given, so a read that
    // fills the spare byte tells an oversize frame from a full-size one.
    slot_size_ = header_size_ + frame_size_ + 1;
    if (frame_size_ < kMinFrameSize || batch_frames_ == 0) {
      Napi::RangeError::New(env, "frameSize must be at least 64 and batchFrames at least 1").ThrowAsJavaScriptException();
      return;
    }
    int flags = fcntl(static_cast<int>(fd), F_GETFL);
    if (flags < 0 || fcntl(static_cast<int>(fd), F_SETFL, flags | O_NONBLOCK) < 0) {
      ThrowErrno(env, "fcntl", errno);
      return;
    }

    Napi::ArrayBuffer ring = Napi::ArrayBuffer::New(env, slot_size_ * batch_frames_);
    Napi::Int32Array meta = Napi::Int32Array::New(env, kMetaStride * batch_frames_);
    Napi::Float64Array counters = Napi::Float64Array::New(env, kCounterCount);
    ring_ = static_cast<uint8_t*>(ring.Data());
    meta_ = meta.Data();
    counters_ = counters.Data();
    std::memset(counters_, 0, sizeof(double) * kCounterCount);
    Napi::Object self = info.This().As<Napi::Object>();
    self.Set("ring", ring);
    self.Set("meta", meta);
    self.Set("counters", counters);
    pending_.resize(frame_size_ * pending_frames_);
    pending_length_.resize(pending_frames_);
    pending_headers_.resize(header_size_ ? kVnetHeaderSize * pending_frames_ : 0);

    on_frames_ = Napi::Persistent(info[2].As<Napi::Function>());
    on_error_ = Napi::Persistent(info[3].As<Napi::Function>());
    async_context_ = std::make_unique<Napi::AsyncContext>(env, "tapbox:TapDevice");

    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    int err = uv_poll_init(loop, poll_, static_cast<int>(fd));
    if (err != 0) {
      delete poll_;
      poll_ = nullptr;
      ThrowErrno(env, "uv_poll_init", -err);
      return;
    }
    poll_->data = this;
    fd_ = static_cast<int>(fd);
    Ref();
  }

  ~TapDevice() override {
    // With a handle left, only reached at environment teardown (an open device references itself).
    if (poll_) {
      poll_->data = nullptr;  // a close callback still to come must not touch this object
      auto* handle = reinterpret_cast<uv_handle_t*>(poll_);
      if (!uv_is_closing(handle)) uv_close(handle, [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    }
    if (fd_ >= 0) close(fd_);
  }

 private:
  // writeFrame(buf, off, len[, gsoType, gsoSize, checksumStart]) -> true if written or queued, false
  // if dropped. With gsoType (VIRTIO_NET_HDR_GSO_TCPV4 or TCPV6; vnetHdr only) the frame is a TCP
  // super-segment the sandbox's kernel takes as one received packet of segments of gsoSize, its
  // checksum partial: the field at checksumStart + 16 holds the pseudo-header sum (NEEDS_CSUM).
  Napi::Value WriteFrame(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    uint8_t* data;
    size_t size, offset, length, gso_type = 0, gso_size = 0, checksum_start = 0;
    if (!GetBytes(env, info[0], &data, &size) || !GetIndex(env, info[1], "offset", size, &offset) ||
        !GetIndex(env, info[2], "length", size - offset, &length)) {
      return Napi::Value();
    }
    if (info.Length() > 3 && (!GetIndex(env, info[3], "gsoType", kVnetGsoTcpV6, &gso_type) || !GetIndex(env, info[4], "gsoSize", 0xffff, &gso_size) ||
                              !GetIndex(env, info[5], "checksumStart", length, &checksum_start))) {
      return Napi::Value();
    }
    if (fd_ < 0) {
      Napi::Error::New(info.Env(), "the TAP device is closed").ThrowAsJavaScriptException();
      return Napi::Value();
    }
    if (info.Length() <= 3) return Napi::Boolean::New(env, Send(data + offset, length));
    const bool gso = gso_type != 0;
    if (header_size_ == 0 || (gso && gso_type != kVnetGsoTcpV4 && gso_type != kVnetGsoTcpV6) || (gso && gso_size == 0) || checksum_start + 20 > length) {
      Napi::RangeError::New(env, "writeFrame: a TCP segment with its checksum left to the kernel needs vnetHdr, its TCP header in the frame, and for a super-segment a TCP gsoType and a gsoSize").ThrowAsJavaScriptException();
      return Napi::Value();
    }
    uint8_t header[kVnetHeaderSize];
    BuildTcpGsoHeader(header, static_cast<uint8_t>(gso_type), static_cast<uint16_t>(gso ? gso_size : 0), static_cast<uint16_t>(checksum_start));
    return Napi::Boolean::New(env, Send(data + offset, length, header));
  }

  Napi::Value Pause(const Napi::CallbackInfo&) {
    paused_ = true;
    UpdatePoll();
    return Napi::Value();
  }

  Napi::Value Resume(const Napi::CallbackInfo&) {
    paused_ = false;
    UpdatePoll();
    return Napi::Value();
  }

  Napi::Value Close(const Napi::CallbackInfo&) {
    Shutdown();
    return Napi::Value();
  }

  void Shutdown() {
    if (fd_ < 0) return;
    if (relay_) relay_->Clear();
    // The reference is dropped in the close callback, a later loop turn: never while a batch of ours
    // may still be on the stack (close() can be called from inside onFrames).
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) {
      auto* self = static_cast<TapDevice*>(h->data);
      delete reinterpret_cast<uv_poll_t*>(h);
      if (!self) return;
      self->poll_ = nullptr;
      self->Unref();
    });
    close(fd_);
    fd_ = -1;
    pending_count_ = 0;
  }

  // `header`: the frame's virtio-net header (vnetHdr only); null: all zero, nothing offloaded.
  bool Send(const uint8_t* frame, size_t length, const uint8_t* header = nullptr) {
    if (pending_count_ == 0) {
      ssize_t n = WriteOnce(frame, length, header);
      if (n >= 0) {
        Count(kFramesOut, kBytesOut, length);
        return true;
      }
      if (errno != EAGAIN && errno != ENOBUFS) {
        counters_[kWriteErrors]++;
        return false;
      }
    }
    // Behind earlier pending frames, or the kernel said EAGAIN: queue to keep the order.
    if (pending_count_ == pending_frames_ || length > frame_size_) {
      counters_[kDroppedOut]++;
      return false;
    }
    size_t tail = (pending_head_ + pending_count_) % pending_frames_;
    std::memcpy(pending_.data() + tail * frame_size_, frame, length);
    pending_length_[tail] = length;
    if (header_size_) {
      uint8_t* saved = pending_headers_.data() + tail * kVnetHeaderSize;
      if (header) std::memcpy(saved, header, kVnetHeaderSize);
      else std::memset(saved, 0, kVnetHeaderSize);
    }
    pending_count_++;
    counters_[kQueuedOut]++;
    if (pending_count_ == 1) UpdatePoll();
    return true;
  }

  ssize_t WriteOnce(const uint8_t* frame, size_t length, const uint8_t* header) {
    static const uint8_t kNoOffload[kVnetHeaderSize] = {};
    iovec iov[2] = {{const_cast<uint8_t*>(header ? header : kNoOffload), header_size_}, {const_cast<uint8_t*>(frame), length}};
    ssize_t n;
    do {
      n = header_size_ ? writev(fd_, iov, 2) : write(fd_, frame, length);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  void FlushPending() {
    while (pending_count_ > 0) {
      const uint8_t* frame = pending_.data() + pending_head_ * frame_size_;
      size_t length = pending_length_[pending_head_];
      ssize_t n = WriteOnce(frame, length, header_size_ ? pending_headers_.data() + pending_head_ * kVnetHeaderSize : nullptr);
      if (n < 0 && (errno == EAGAIN || errno == ENOBUFS)) break;
      if (n < 0) {
        counters_[kWriteErrors]++;
      } else {
        Count(kFramesOut, kBytesOut, length);
      }
      pending_head_ = (pending_head_ + 1) % pending_frames_;
      pending_count_--;
    }
    UpdatePoll();
  }

  void UpdatePoll() {
    if (fd_ < 0) return;
    int events = (paused_ ? 0 : UV_READABLE) | (pending_count_ > 0 ? UV_WRITABLE : 0);
    if (events == 0) {
      uv_poll_stop(poll_);
    } else {
      uv_poll_start(poll_, events, OnPoll);
    }
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<TapDevice*>(handle->data);
    if (status < 0) {
      self->Fail("poll", -status);
      return;
    }
    if (events & UV_WRITABLE) self->FlushPending();
    if ((events & UV_READABLE) && !self->paused_ && self->fd_ >= 0) self->ReadBatch();
  }

  void ReadBatch() {
    size_t count = 0;
    int error = 0;
    while (count < batch_frames_ && fd_ >= 0) {
      uint8_t* slot = ring_ + count * slot_size_;
      ssize_t n = read(fd_, slot, slot_size_);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) error = errno;
        break;
      }
      if (n == 0) {
        // End of file: a TAP never returns it, a socket (tests, a relay) does once its peer is gone.
        error = EPIPE;
        break;
      }
      if (static_cast<size_t>(n) < header_size_) continue;  // no room for a frame: nothing to deliver
      size_t length = static_cast<size_t>(n) - header_size_;
      if (length > frame_size_) {
        counters_[kOversizeIn]++;
        continue;
      }
      int32_t* meta = meta_ + count * kMetaStride;
      meta[kMetaOffset] = static_cast<int32_t>(count * slot_size_ + header_size_);
      meta[kMetaLength] = static_cast<int32_t>(length);
      if (header_size_) {
        ParseVnetHeader(slot, meta);
      } else {
        meta[kMetaChecksumPartial] = 0;
        meta[kMetaGsoSize] = 0;
      }
      Count(kFramesIn, kBytesIn, length);
      // A datagram of a flow the relay holds goes to its host socket; its slot is read into again.
      if (relay_ && meta[kMetaGsoSize] == 0 && relay_->Offer(slot + header_size_, length, meta[kMetaChecksumPartial] == 1)) {
        counters_[kRelayedIn]++;
        // Nothing for JS yet: stop here rather than read again only to meet EAGAIN (a request/response
        // flow has one frame in flight); the level-triggered poll calls back at once if more wait.
        if (count == 0) break;
        continue;
      }
      count++;
    }
    if (count > 0) {
      Napi::Env env = Env();
      Napi::HandleScope scope(env);
      on_frames_.MakeCallback(Value(), {Napi::Number::New(env, static_cast<double>(count))}, *async_context_);
      RaisePendingException(env);
    }
    if (error != 0 && fd_ >= 0) Fail("read", error);
  }

  // enableUdpRelay(ourMac, sandboxMac, mtu, onEvent(id, kind, data)): `sandboxMac` is the stack's
  // learned MAC, which JS updates in place; it is kept referenced and read on every frame built.
  Napi::Value EnableUdpRelay(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    uint8_t *our_mac, *sandbox_mac;
    size_t our_size, sandbox_size, mtu;
    if (!GetBytes(env, info[0], &our_mac, &our_size) || !GetBytes(env, info[1], &sandbox_mac, &sandbox_size) ||
        !GetIndex(env, info[2], "mtu", 65535, &mtu)) {
      return Napi::Value();
    }
    if (our_size != 6 || sandbox_size != 6 || !info[3].IsFunction() || relay_) {
      Napi::TypeError::New(info.Env(), "enableUdpRelay(ourMac, sandboxMac, mtu, onEvent), once").ThrowAsJavaScriptException();
      return Napi::Value();
    }
    sandbox_mac_ref_ = Napi::Persistent(info[1].As<Napi::Object>());
    on_relay_event_ = Napi::Persistent(info[3].As<Napi::Function>());
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    relay_ = std::make_unique<UdpRelay>(loop, this, our_mac, sandbox_mac, mtu);
    return Napi::Value();
  }

  // addUdpFlow(family, sandboxAddr, sandboxPort, remoteAddr, remotePort, hostAddr, hostPort) -> flow id.
  // The host socket connects to hostAddr (4 or 16 bytes, its family from its length):hostPort.
  Napi::Value AddUdpFlow(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    size_t family, sandbox_port, remote_port, host_port, sandbox_size, remote_size, host_size;
    uint8_t *sandbox, *remote, *host;
    if (!GetIndex(env, info[0], "family", 6, &family) || !GetBytes(env, info[1], &sandbox, &sandbox_size) ||
        !GetIndex(env, info[2], "sandboxPort", 0xffff, &sandbox_port) || !GetBytes(env, info[3], &remote, &remote_size) ||
        !GetIndex(env, info[4], "remotePort", 0xffff, &remote_port) || !GetBytes(env, info[5], &host, &host_size) ||
        !GetIndex(env, info[6], "hostPort", 0xffff, &host_port)) {
      return Napi::Value();
    }
    const size_t addr_size = family == 4 ? 4 : 16;
    if ((family != 4 && family != 6) || sandbox_size != addr_size || remote_size != addr_size || (host_size != 4 && host_size != 16)) {
      Napi::RangeError::New(info.Env(), "addUdpFlow: family 4 or 6 with addresses of its length").ThrowAsJavaScriptException();
      return Napi::Value();
    }
    if (!relay_) {
      Napi::Error::New(info.Env(), "addUdpFlow before enableUdpRelay").ThrowAsJavaScriptException();
      return Napi::Value();
    }
    if (fd_ < 0) {
      ThrowErrno(info.Env(), "udp relay socket", EBADF);  // the device closed: as a socket that can't open
      return Napi::Value();
    }
    UdpFlowSpec spec;
    spec.addrs.family = static_cast<int>(family);
    std::memcpy(spec.addrs.sandbox, sandbox, addr_size);
    std::memcpy(spec.addrs.remote, remote, addr_size);
    spec.addrs.sandbox_port = static_cast<uint16_t>(sandbox_port);
    spec.addrs.remote_port = static_cast<uint16_t>(remote_port);
    spec.host_family = host_size == 4 ? 4 : 6;
    std::memcpy(spec.host_addr, host, host_size);
    spec.host_port = static_cast<uint16_t>(host_port);
    int64_t id = relay_->AddFlow(spec);
    if (id < 0) {
      ThrowErrno(info.Env(), "udp relay socket", static_cast<int>(-id));
      return Napi::Value();
    }
    return Napi::Number::New(env, static_cast<double>(id));
  }

  // udpFlowSend(id, payload) -> false if the flow is gone.
  Napi::Value UdpFlowSend(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    size_t id, size;
    uint8_t* data;
    if (!GetIndex(env, info[0], "id", 0xffffffff, &id) || !GetBytes(env, info[1], &data, &size)) return Napi::Value();
    return Napi::Boolean::New(env, relay_ && relay_->Send(static_cast<uint32_t>(id), data, size));
  }

  // readUdpFlow(id, out: Float64Array(udpFlowFields.count)) -> false if the flow is gone.
  Napi::Value ReadUdpFlow(const Napi::CallbackInfo& info) { return FlowFigures(info, false); }

  // removeUdpFlow(id, out) -> its last figures in `out`; false if the flow was already gone.
  Napi::Value RemoveUdpFlow(const Napi::CallbackInfo& info) { return FlowFigures(info, true); }

  Napi::Value FlowFigures(const Napi::CallbackInfo& info, bool remove) {
    napi_env env = info.Env();
    size_t id;
    if (!GetIndex(env, info[0], "id", 0xffffffff, &id)) return Napi::Value();
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
        info[1].As<Napi::Float64Array>().ElementLength() < kFlowFieldCount) {
      Napi::TypeError::New(info.Env(), "expected a Float64Array of the flow fields").ThrowAsJavaScriptException();
      return Napi::Value();
    }
    double* out = info[1].As<Napi::Float64Array>().Data();
    const uint32_t flow = static_cast<uint32_t>(id);
    return Napi::Boolean::New(env, relay_ && (remove ? relay_->RemoveFlow(flow, out) : relay_->Read(flow, out)));
  }

  void WriteRelayFrame(const uint8_t* frame, size_t length) override {
    if (fd_ < 0) return;
    counters_[kRelayedOut]++;
    Send(frame, length);
  }

  void RelayEvent(uint32_t id, int kind, const uint8_t* data, size_t length) override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    on_relay_event_.MakeCallback(Value(),
                                 {Napi::Number::New(env, id), Napi::Number::New(env, kind), Napi::Buffer<uint8_t>::Copy(env, data, length)},
                                 *async_context_);
    RaisePendingException(env);
  }

  // The fd failed (a read or poll error; end of file on a socket): stop reading and tell JS. (A TAP
  // outlives the sandbox's processes: its network namespace lives as long as we hold the fd.)
  void Fail(const char* what, int err) {
    paused_ = true;
    pending_count_ = 0;
    UpdatePoll();
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    on_error_.MakeCallback(Value(), {ErrnoError(env, what, err).Value()}, *async_context_);
    RaisePendingException(env);
  }

  void Count(Counter frames, Counter bytes, size_t length) {
    counters_[frames]++;
    counters_[bytes] += static_cast<double>(length);
  }

  int fd_ = -1;
  size_t frame_size_ = 0;   // largest frame, Ethernet header included
  size_t header_size_ = 0;  // virtio-net header in front of each frame read, 0 without vnetHdr
  size_t slot_size_ = 0;    // ring slot: header + frame + 1 spare byte
  size_t batch_frames_ = 0;
  size_t pending_frames_ = 0;
  bool paused_ = true;
  uv_poll_t* poll_ = nullptr;
  uint8_t* ring_ = nullptr;
  int32_t* meta_ = nullptr;
  double* counters_ = nullptr;
  std::vector<uint8_t> pending_;
  std::vector<size_t> pending_length_;
  std::vector<uint8_t> pending_headers_;  // each pending frame's virtio-net header (vnetHdr only)
  size_t pending_head_ = 0;
  size_t pending_count_ = 0;
  Napi::FunctionReference on_frames_;
  Napi::FunctionReference on_error_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
  std::unique_ptr<UdpRelay> relay_;
  Napi::ObjectReference sandbox_mac_ref_;
  Napi::FunctionReference on_relay_event_;
};

}  // namespace

// tapHasVnetHdr(fd): whether the TAP behind `fd` was created with IFF_VNET_HDR (the launcher asks for
// it and falls back to a plain device where the kernel refuses it; the device's own flags say which).
Napi::Value TapHasVnetHdr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t fd;
  if (!GetIndex(env, info[0], "fd", 0x7fffffff, &fd)) return env.Undefined();
  ifreq ifr{};
  if (ioctl(static_cast<int>(fd), TUNGETIFF, &ifr) != 0) {
    ThrowErrno(env, "TUNGETIFF", errno);
    return env.Undefined();
  }
  return Napi::Boolean::New(env, (ifr.ifr_flags & IFF_VNET_HDR) != 0);
}

void InitTapDevice(Napi::Env env, Napi::Object exports) {
  exports.Set("TapDevice", TapDevice::Define(env));
  exports.Set("tapHasVnetHdr", Napi::Function::New<TapHasVnetHdr>(env, "tapHasVnetHdr"));
  Napi::Object meta = Napi::Object::New(env);
  meta.Set("stride", static_cast<int>(kMetaStride));
  meta.Set("offset", static_cast<int>(kMetaOffset));
  meta.Set("length", static_cast<int>(kMetaLength));
  meta.Set("checksumPartial", static_cast<int>(kMetaChecksumPartial));
  meta.Set("gsoSize", static_cast<int>(kMetaGsoSize));
  exports.Set("metaFields", meta);
  Napi::Object counters = Napi::Object::New(env);
  counters.Set("framesIn", static_cast<int>(kFramesIn));
  counters.Set("bytesIn", static_cast<int>(kBytesIn));
  counters.Set("framesOut", static_cast<int>(kFramesOut));
  counters.Set("bytesOut", static_cast<int>(kBytesOut));
  counters.Set("queuedOut", static_cast<int>(kQueuedOut));
  counters.Set("droppedOut", static_cast<int>(kDroppedOut));
  counters.Set("writeErrors", static_cast<int>(kWriteErrors));
  counters.Set("oversizeIn", static_cast<int>(kOversizeIn));
  counters.Set("relayedIn", static_cast<int>(kRelayedIn));
  counters.Set("relayedOut", static_cast<int>(kRelayedOut));
  exports.Set("counterFields", counters);
  Napi::Object flow = Napi::Object::New(env);
  flow.Set("bytesUp", static_cast<int>(kFlowBytesUp));
  flow.Set("bytesDown", static_cast<int>(kFlowBytesDown));
  flow.Set("datagramsUp", static_cast<int>(kFlowDatagramsUp));
  flow.Set("datagramsDown", static_cast<int>(kFlowDatagramsDown));
  flow.Set("idleMs", static_cast<int>(kFlowIdleMs));
  flow.Set("count", static_cast<int>(kFlowFieldCount));
  exports.Set("udpFlowFields", flow);
}

}  // namespace tapbox
