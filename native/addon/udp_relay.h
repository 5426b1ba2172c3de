// UdpRelay: the native fast path for UDP flows the TypeScript side has admitted (see
// docs/architecture.md, "One UDP datagram, file by file: the native relay").
//
// The forwarder decides every flow in JS, from its first datagram (policy, DNS pins, inspection,
// audit, limits); once a flow is admitted and nothing needs to see its datagrams one by one, JS hands
// it here with AddFlow: the exact 4-tuple the sandbox uses, and where the host socket connects. From
// then on, the TAP reader (tap_device.cc) offers each frame to Offer() before JS: a frame of the
// plain shape ParseUdpFrame accepts whose tuple is exactly an admitted flow's is sent on that flow's
// connected socket and never reaches JS; anything else (another tuple, a fragment, options, a bad
// checksum) goes to the stack as before. Datagrams the host socket receives are read with recvmmsg
// (one call, no EAGAIN read for a lone answer) and written to the TAP as frames built here; one too
// big for the MTU goes to JS (the stack fragments it), as does an ECONNREFUSED (JS sends the ICMP
// error, quoting the last datagram C relayed). Bytes and datagrams are counted here per flow and read
// back by JS on demand and at the flow's end; so is the time since the last datagram, which the
// stack's idle timer asks before expiring the session. RemoveFlow closes the socket at once (a flow
// that ends, expires or is revoked by a live policy change).
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "udp_frame.h"

namespace tapbox {

/** What the relay needs from the TAP device it sits in. */
class UdpRelayHost {
 public:
  virtual ~UdpRelayHost() = default;
  /** Writes one frame to the TAP (or queues it, as the device's own writes). */
  virtual void WriteRelayFrame(const uint8_t* frame, size_t length) = 0;
  /** Tells JS about flow `id`: kind kRefused (data: the last IP packet relayed) or kOversize (data: a datagram to send through the stack). */
  virtual void RelayEvent(uint32_t id, int kind, const uint8_t* data, size_t length) = 0;
};

enum UdpRelayEvent : int { kRefused = 1, kOversize = 2 };

/** Per-flow figures JS reads back (Float64Array fields). */
enum UdpFlowField : int { kFlowBytesUp = 0, kFlowBytesDown, kFlowDatagramsUp, kFlowDatagramsDown, kFlowIdleMs, kFlowFieldCount };

struct UdpFlowSpec {
  UdpFrameAddrs addrs;        // remote = where the sandbox sent to, sandbox = its address; our MAC
  int host_family = 4;        // where the host socket connects (the remote, or host loopback)
  uint8_t host_addr[16] = {};
  uint16_t host_port = 0;
};

class UdpRelay {
 public:
  UdpRelay(uv_loop_t* loop, UdpRelayHost* host, const uint8_t* our_mac, const uint8_t* sandbox_mac, size_t mtu);
  ~UdpRelay();

  /** Opens a socket connected to the spec's host address and starts relaying; the flow id, or -errno. */
  int64_t AddFlow(const UdpFlowSpec& spec);
  /** Stops relaying flow `id` and closes its socket; false if there is no such flow. */
  bool RemoveFlow(uint32_t id, double* fields);
  /** The flow's figures (kFlowFieldCount doubles); false if there is no such flow. */
  bool Read(uint32_t id, double* fields) const;
  /** Sends a datagram JS received for flow `id` (one the stack reassembled, say) on its socket. */
  bool Send(uint32_t id, const uint8_t* payload, size_t length);
  /** True if the frame belonged to an admitted flow and was relayed (or dropped) here. */
  bool Offer(const uint8_t* frame, size_t length, bool checksum_partial);
  /** Closes every flow (the device is closing). */
  void Clear();

 private:
  struct Flow;
  struct Key {
    uint8_t bytes[1 + 16 + 16 + 2 + 2] = {};
    bool operator==(const Key& o) const;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  static Key KeyOf(int family, const uint8_t* sandbox, uint16_t sandbox_port, const uint8_t* remote, uint16_t remote_port);
  static void OnPoll(uv_poll_t* handle, int status, int events);
  void ReadSocket(uint32_t id);
  void SendOn(Flow* flow, const uint8_t* payload, size_t length);
  void Fill(const Flow& flow, double* fields) const;
  void Close(std::unique_ptr<Flow> flow);

  uv_loop_t* loop_;
  UdpRelayHost* host_;
  uint8_t our_mac_[6];
  const uint8_t* sandbox_mac_;  // the stack's learned MAC, updated in place by JS
  size_t mtu_;
  uint32_t next_id_ = 1;
  uint16_t next_ip_id_;
  std::unordered_map<uint32_t, std::unique_ptr<Flow>> by_id_;
  std::unordered_map<Key, Flow*, KeyHash> by_tuple_;
  std::vector<uint8_t> slots_;  // recvmmsg buffers, a frame's headers in front of each
};

}  // namespace tapbox
