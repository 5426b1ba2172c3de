// The frames of the native UDP relay (udp_relay.cc): which frames from the sandbox it may relay
// itself, and the frames it builds towards the sandbox. Pure functions, fuzzed by
// native/fuzz/udp_frame_fuzzer.cc.
//
// ParseUdpFrame is deliberately narrow: it accepts only the plain shape a kernel sends for a UDP
// datagram that fits the MTU (Ethernet to our MAC from the sandbox's, IPv4 without options and not a
// fragment, or IPv6 without extension headers; UDP length exactly the IP payload; a valid IP header
// checksum and UDP checksum, or a checksum the sandbox's kernel left to us). Everything else returns
// false and goes to the TypeScript stack, which is the authority on every other shape (fragments,
// options, padding inside IP, odd lengths) and drops what it must.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tapbox {

constexpr size_t kEthernetHeader = 14;
constexpr size_t kIpv4Header = 20;
constexpr size_t kIpv6Header = 40;
constexpr size_t kUdpHeader = 8;
constexpr uint8_t kUdpProtocol = 17;

/** A UDP datagram from the sandbox, as views into the frame it was parsed from. */
struct UdpDatagram {
  int family = 0;                  // 4 or 6
  const uint8_t* src = nullptr;    // the sandbox's address (4 or 16 bytes)
  const uint8_t* dst = nullptr;    // the address it sent to
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  size_t ip_offset = 0;            // the IP packet: offset in the frame and length
  size_t ip_length = 0;
  size_t payload_offset = 0;       // the UDP payload
  size_t payload_length = 0;
};

/** What ParseUdpFrame checks the frame's link and size against. */
struct UdpFrameRules {
  const uint8_t* our_mac = nullptr;      // the frame's destination must be it
  const uint8_t* sandbox_mac = nullptr;  // and its source the sandbox's MAC
  size_t mtu = 0;                        // largest IP packet
};

/**
 * True if `frame` (`length` bytes, Ethernet header first) is a UDP datagram of the plain shape above;
 * `checksum_partial`: the virtio-net header said the UDP checksum holds only the pseudo-header sum.
 */
bool ParseUdpFrame(const uint8_t* frame, size_t length, bool checksum_partial, const UdpFrameRules& rules, UdpDatagram* out);

/** The addresses and ports of a frame towards the sandbox: from `remote` to `sandbox`. */
struct UdpFrameAddrs {
  int family = 4;
  uint8_t remote[16] = {};
  uint8_t sandbox[16] = {};
  uint16_t remote_port = 0;
  uint16_t sandbox_port = 0;
  uint8_t our_mac[6] = {};
};

/** Bytes in front of the payload: Ethernet, IP (20 or 40) and UDP headers. */
inline size_t UdpFrameHeaders(int family) { return kEthernetHeader + (family == 4 ? kIpv4Header : kIpv6Header) + kUdpHeader; }

/**
 * Writes the headers of a frame carrying the `payload_length` bytes already at
 * frame + UdpFrameHeaders(family): Ethernet to `sandbox_mac`, IPv4 (DF, TTL 64, `ip_id`) or IPv6 (hop
 * limit 64) and UDP with its checksum, as the TypeScript stack writes them (netstack/stack/stack.ts).
 * Returns the frame's length. The caller checks the IP packet fits the MTU.
 */
size_t BuildUdpFrame(uint8_t* frame, const UdpFrameAddrs& addrs, const uint8_t* sandbox_mac, size_t payload_length, uint16_t ip_id);

}  // namespace tapbox
