#include "udp_relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

namespace tapbox {
namespace {

// Datagrams read per recvmmsg call, and the room for each: the largest UDP payload (65535 - 8) after
// the headers of the frame it becomes.
constexpr size_t kReadBatch = 8;
constexpr size_t kMaxPayload = 65535 - kUdpHeader;
constexpr size_t kHeadroom = kEthernetHeader + kIpv6Header + kUdpHeader;
constexpr size_t kSlotSize = kHeadroom + kMaxPayload;
// Longest inbound packet an ICMP error may quote (as netstack/transport/udp/session.ts).
constexpr size_t kQuoteLimit4 = 548;
constexpr size_t kQuoteLimit6 = 1232;

}  // namespace

struct UdpRelay::Flow {
  uint32_t id = 0;
  int fd = -1;
  uv_poll_t* poll = nullptr;
  UdpRelay* relay = nullptr;
  Key key;
  UdpFrameAddrs addrs;
  double fields[kFlowFieldCount] = {};
  uint64_t last_active = 0;  // uv_now of the last datagram either way
  std::vector<uint8_t> quote;
  size_t quote_length = 0;
};

bool UdpRelay::Key::operator==(const Key& o) const { return std::memcmp(bytes, o.bytes, sizeof bytes) == 0; }

size_t UdpRelay::KeyHash::operator()(const Key& k) const {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (uint8_t b : k.bytes) h = (h ^ b) * 1099511628211ULL;
  return static_cast<size_t>(h);
}

UdpRelay::Key UdpRelay::KeyOf(int family, const uint8_t* sandbox, uint16_t sandbox_port, const uint8_t* remote, uint16_t remote_port) {
  Key k;
  const size_t n = family == 4 ? 4 : 16;
  k.bytes[0] = static_cast<uint8_t>(family);
  std::memcpy(k.bytes + 1, sandbox, n);
  std::memcpy(k.bytes + 17, remote, n);
  k.bytes[33] = static_cast<uint8_t>(sandbox_port >> 8);
  k.bytes[34] = static_cast<uint8_t>(sandbox_port);
  k.bytes[35] = static_cast<uint8_t>(remote_port >> 8);
  k.bytes[36] = static_cast<uint8_t>(remote_port);
  return k;
}

UdpRelay::UdpRelay(uv_loop_t* loop, UdpRelayHost* host, const uint8_t* our_mac, const uint8_t* sandbox_mac, size_t mtu)
    : loop_(loop), host_(host), sandbox_mac_(sandbox_mac), mtu_(mtu) {
  std::memcpy(our_mac_, our_mac, 6);
  next_ip_id_ = static_cast<uint16_t>(std::random_device{}());
}

UdpRelay::~UdpRelay() { Clear(); }

int64_t UdpRelay::AddFlow(const UdpFlowSpec& spec) {
  sockaddr_storage to{};
  socklen_t to_length;
  if (spec.host_family == 4) {
    auto* a = reinterpret_cast<sockaddr_in*>(&to);
    a->sin_family = AF_INET;
    a->sin_port = htons(spec.host_port);
    std::memcpy(&a->sin_addr, spec.host_addr, 4);
    to_length = sizeof(sockaddr_in);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&to);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(spec.host_port);
    std::memcpy(&a->sin6_addr, spec.host_addr, 16);
    to_length = sizeof(sockaddr_in6);
  }
  const Key key = KeyOf(spec.addrs.family, spec.addrs.sandbox, spec.addrs.sandbox_port, spec.addrs.remote, spec.addrs.remote_port);
  if (by_tuple_.count(key)) return -EEXIST;
  int fd = socket(to.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), to_length) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  auto flow = std::make_unique<Flow>();
  flow->id = next_id_++;
  flow->fd = fd;
  flow->relay = this;
  flow->key = key;
  flow->addrs = spec.addrs;
  std::memcpy(flow->addrs.our_mac, our_mac_, 6);
  flow->last_active = uv_now(loop_);
  flow->quote.resize(spec.addrs.family == 4 ? kQuoteLimit4 : kQuoteLimit6);
  flow->poll = new uv_poll_t;
  int err = uv_poll_init(loop_, flow->poll, fd);
  if (err == 0) {
    flow->poll->data = flow.get();
    err = uv_poll_start(flow->poll, UV_READABLE, OnPoll);
    if (err != 0) uv_close(reinterpret_cast<uv_handle_t*>(flow->poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  } else {
    delete flow->poll;
  }
  if (err != 0) {
    close(fd);
    return err;  // a negative errno already
  }
  if (slots_.empty()) slots_.resize(kReadBatch * kSlotSize);
  const uint32_t id = flow->id;
  by_tuple_[key] = flow.get();
  by_id_[id] = std::move(flow);
  return id;
}

bool UdpRelay::RemoveFlow(uint32_t id, double* fields) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  Fill(*it->second, fields);
  std::unique_ptr<Flow> flow = std::move(it->second);
  by_id_.erase(it);
  by_tuple_.erase(flow->key);
  Close(std::move(flow));
  return true;
}

void UdpRelay::Close(std::unique_ptr<Flow> flow) {
  // The handle goes first (libuv takes the fd out of epoll), then the fd; no poll callback follows.
  uv_close(reinterpret_cast<uv_handle_t*>(flow->poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  close(flow->fd);
}

void UdpRelay::Clear() {
  for (auto& entry : by_id_) Close(std::move(entry.second));
  by_id_.clear();
  by_tuple_.clear();
}

bool UdpRelay::Read(uint32_t id, double* fields) const {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  Fill(*it->second, fields);
  return true;
}

void UdpRelay::Fill(const Flow& flow, double* fields) const {
  std::memcpy(fields, flow.fields, sizeof flow.fields);
  fields[kFlowIdleMs] = static_cast<double>(uv_now(loop_) - flow.last_active);
}

bool UdpRelay::Send(uint32_t id, const uint8_t* payload, size_t length) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  SendOn(it->second.get(), payload, length);
  return true;
}

void UdpRelay::SendOn(Flow* flow, const uint8_t* payload, size_t length) {
  flow->fields[kFlowBytesUp] += static_cast<double>(length);
  flow->fields[kFlowDatagramsUp]++;
  flow->last_active = uv_now(loop_);
  ssize_t n;
  do {
    n = send(flow->fd, payload, length, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  // A full socket buffer drops the datagram, as a wire would; an ICMP error the host had for an
  // earlier datagram surfaces here or at the next read.
  if (n < 0 && errno == ECONNREFUSED) host_->RelayEvent(flow->id, kRefused, flow->quote.data(), flow->quote_length);
}

bool UdpRelay::Offer(const uint8_t* frame, size_t length, bool checksum_partial) {
  if (by_tuple_.empty()) return false;
  UdpDatagram d;
  const UdpFrameRules rules{our_mac_, sandbox_mac_, mtu_};
  if (!ParseUdpFrame(frame, length, checksum_partial, rules, &d)) return false;
  auto it = by_tuple_.find(KeyOf(d.family, d.src, d.src_port, d.dst, d.dst_port));
  if (it == by_tuple_.end()) return false;
  Flow* flow = it->second;
  flow->quote_length = std::min(d.ip_length, flow->quote.size());
  std::memcpy(flow->quote.data(), frame + d.ip_offset, flow->quote_length);
  SendOn(flow, frame + d.payload_offset, d.payload_length);  // last: it may call into JS
  return true;
}

void UdpRelay::OnPoll(uv_poll_t* handle, int status, int events) {
  // handle->data is the flow: valid here, as a closed handle gets no more callbacks.
  auto* flow = static_cast<Flow*>(handle->data);
  UdpRelay* relay = flow->relay;
  const uint32_t id = flow->id;
  if (status < 0) {
    // An ICMP error queued on the socket is POLLERR, on which libuv stops the handle: take the
    // error (which clears it), tell JS, and poll again.
    int err = 0;
    socklen_t size = sizeof err;
    getsockopt(flow->fd, SOL_SOCKET, SO_ERROR, &err, &size);
    if (err == ECONNREFUSED) relay->host_->RelayEvent(id, kRefused, flow->quote.data(), flow->quote_length);
    auto it = relay->by_id_.find(id);
    if (it == relay->by_id_.end()) return;
    uv_poll_start(handle, UV_READABLE, OnPoll);
  }
  relay->ReadSocket(id);
}

void UdpRelay::ReadSocket(uint32_t id) {
  mmsghdr messages[kReadBatch];
  iovec iov[kReadBatch];
  for (size_t i = 0; i < kReadBatch; i++) {
    iov[i] = {slots_.data() + i * kSlotSize + kHeadroom, kMaxPayload};
    std::memset(&messages[i], 0, sizeof messages[i]);
    messages[i].msg_hdr.msg_iov = &iov[i];
    messages[i].msg_hdr.msg_iovlen = 1;
  }
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  int count;
  do {
    count = recvmmsg(it->second->fd, messages, kReadBatch, MSG_DONTWAIT, nullptr);
  } while (count < 0 && errno == EINTR);
  if (count < 0) {
    Flow* flow = it->second.get();
    if (errno == ECONNREFUSED) host_->RelayEvent(id, kRefused, flow->quote.data(), flow->quote_length);
    return;
  }
  for (int i = 0; i < count; i++) {
    it = by_id_.find(id);  // JS (an oversize datagram) may have ended the flow
    if (it == by_id_.end()) return;
    Flow* flow = it->second.get();
    const size_t length = messages[i].msg_len;
    uint8_t* payload = slots_.data() + i * kSlotSize + kHeadroom;
    flow->fields[kFlowBytesDown] += static_cast<double>(length);
    flow->fields[kFlowDatagramsDown]++;
    flow->last_active = uv_now(loop_);
    const size_t headers = UdpFrameHeaders(flow->addrs.family);
    if (headers - kEthernetHeader + length > mtu_) {
      host_->RelayEvent(id, kOversize, payload, length);
      continue;
    }
    uint8_t* frame = payload - headers;
    const size_t frame_length = BuildUdpFrame(frame, flow->addrs, sandbox_mac_, length, next_ip_id_++);
    host_->WriteRelayFrame(frame, frame_length);
  }
}

}  // namespace tapbox
