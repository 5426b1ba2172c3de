#include "udp_frame.h"

#include <cstring>

#include "checksum.h"

namespace tapbox {
namespace {

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr uint8_t kDefaultTtl = 64;

uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

void PutBe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

/** The pseudo-header sum (RFC 768 / RFC 8200 section 8.1) for a UDP datagram of `udp_length` bytes. */
uint16_t PseudoHeaderSum(const uint8_t* src, const uint8_t* dst, size_t addr_length, size_t udp_length) {
  uint16_t sum = Checksum(src, addr_length, 0);
  sum = Checksum(dst, addr_length, sum);
  uint8_t tail[4] = {0, kUdpProtocol, static_cast<uint8_t>(udp_length >> 8), static_cast<uint8_t>(udp_length)};
  return Checksum(tail, sizeof tail, sum);
}

}  // namespace

bool ParseUdpFrame(const uint8_t* frame, size_t length, bool checksum_partial, const UdpFrameRules& rules, UdpDatagram* out) {
  if (length < kEthernetHeader) return false;
  if (std::memcmp(frame, rules.our_mac, 6) != 0 || std::memcmp(frame + 6, rules.sandbox_mac, 6) != 0) return false;
  const uint16_t ether_type = Be16(frame + 12);
  const uint8_t* ip = frame + kEthernetHeader;
  const size_t available = length - kEthernetHeader;
  if (available > rules.mtu) return false;  // the stack drops it (only TCP super-segments may be longer)
  size_t header, ip_length, addr_length;
  if (ether_type == kEtherTypeIpv4) {
    if (available < kIpv4Header + kUdpHeader) return false;
    // Version 4 without options; neither a fragment nor the first of several (DF alone is fine).
    if (ip[0] != 0x45 || (Be16(ip + 6) & 0x3fff) != 0 || ip[9] != kUdpProtocol) return false;
    ip_length = Be16(ip + 2);
    if (ip_length < kIpv4Header + kUdpHeader || ip_length > available) return false;
    if (Checksum(ip, kIpv4Header, 0) != 0xffff) return false;
    header = kIpv4Header;
    addr_length = 4;
    out->family = 4;
    out->src = ip + 12;
    out->dst = ip + 16;
  } else if (ether_type == kEtherTypeIpv6) {
    if (available < kIpv6Header + kUdpHeader) return false;
    if ((ip[0] >> 4) != 6 || ip[6] != kUdpProtocol) return false;
    ip_length = kIpv6Header + Be16(ip + 4);
    if (ip_length < kIpv6Header + kUdpHeader || ip_length > available) return false;
    header = kIpv6Header;
    addr_length = 16;
    out->family = 6;
    out->src = ip + 8;
    out->dst = ip + 24;
  } else {
    return false;
  }
  const uint8_t* udp = ip + header;
  const size_t udp_length = ip_length - header;
  if (Be16(udp + 4) != udp_length) return false;
  if (!checksum_partial) {
    const uint16_t stored = Be16(udp + 6);
    if (stored == 0) {
      if (out->family == 6) return false;  // IPv6 forbids "no checksum"
    } else if (Checksum(udp, udp_length, PseudoHeaderSum(out->src, out->dst, addr_length, udp_length)) != 0xffff) {
      return false;
    }
  }
  out->src_port = Be16(udp);
  out->dst_port = Be16(udp + 2);
  out->ip_offset = kEthernetHeader;
  out->ip_length = ip_length;
  out->payload_offset = kEthernetHeader + header + kUdpHeader;
  out->payload_length = udp_length - kUdpHeader;
  return true;
}

size_t BuildUdpFrame(uint8_t* frame, const UdpFrameAddrs& addrs, const uint8_t* sandbox_mac, size_t payload_length, uint16_t ip_id) {
  const bool v4 = addrs.family == 4;
  const size_t addr_length = v4 ? 4 : 16;
  const size_t header = v4 ? kIpv4Header : kIpv6Header;
  const size_t udp_length = kUdpHeader + payload_length;
  std::memcpy(frame, sandbox_mac, 6);
  std::memcpy(frame + 6, addrs.our_mac, 6);
  PutBe16(frame + 12, v4 ? kEtherTypeIpv4 : kEtherTypeIpv6);
  uint8_t* ip = frame + kEthernetHeader;
  if (v4) {
    ip[0] = 0x45;
    ip[1] = 0;
    PutBe16(ip + 2, static_cast<uint16_t>(header + udp_length));
    PutBe16(ip + 4, ip_id);
    PutBe16(ip + 6, 0x4000);  // DF: a packet that fits the MTU is never fragmented on its way
    ip[8] = kDefaultTtl;
    ip[9] = kUdpProtocol;
    PutBe16(ip + 10, 0);
    std::memcpy(ip + 12, addrs.remote, 4);
    std::memcpy(ip + 16, addrs.sandbox, 4);
    PutBe16(ip + 10, static_cast<uint16_t>(~Checksum(ip, kIpv4Header, 0)));
  } else {
    ip[0] = 0x60;
    ip[1] = ip[2] = ip[3] = 0;
    PutBe16(ip + 4, static_cast<uint16_t>(udp_length));
    ip[6] = kUdpProtocol;
    ip[7] = kDefaultTtl;
    std::memcpy(ip + 8, addrs.remote, 16);
    std::memcpy(ip + 24, addrs.sandbox, 16);
  }
  uint8_t* udp = ip + header;
  PutBe16(udp, addrs.remote_port);
  PutBe16(udp + 2, addrs.sandbox_port);
  PutBe16(udp + 4, static_cast<uint16_t>(udp_length));
  PutBe16(udp + 6, 0);
  uint16_t sum = static_cast<uint16_t>(~Checksum(udp, udp_length, PseudoHeaderSum(addrs.remote, addrs.sandbox, addr_length, udp_length)));
  PutBe16(udp + 6, sum == 0 ? 0xffff : sum);  // a computed zero is sent as all ones (RFC 768)
  return kEthernetHeader + header + udp_length;
}

}  // namespace tapbox
