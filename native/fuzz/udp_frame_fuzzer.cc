// libFuzzer harness for native/addon/udp_frame.cc: ParseUdpFrame on arbitrary frames, and
// BuildUdpFrame on what it accepted.
//
// Input: one flags byte (bit 0: the checksum is partial; bit 1: put the expected MACs in front, so
// the fuzzer reaches the IP and UDP checks; bits 2-3: the MTU, 1280/1500/9000/65520), then the frame.
// An accepted frame must lie within the input and say what its headers say (checked again here, by
// a plain reading of the bytes); the frame BuildUdpFrame makes of the reply (ports and addresses
// swapped, the same payload) must parse back the same way, which checks its lengths and checksums.
// A wrong answer aborts as a crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../addon/udp_frame.h"

namespace {

const uint8_t kOurMac[6] = {0x02, 0, 0, 0, 0, 0x02};
const uint8_t kSandboxMac[6] = {0x02, 0, 0, 0, 0x01, 0};
const size_t kMtus[4] = {1280, 1500, 9000, 65520};

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "udp_frame: %s\n", what);
  std::abort();
}

uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  std::vector<uint8_t> frame(data + 1, data + size);
  if ((flags & 2) && frame.size() >= 12) {
    std::memcpy(frame.data(), kOurMac, 6);
    std::memcpy(frame.data() + 6, kSandboxMac, 6);
  }
  const tapbox::UdpFrameRules rules{kOurMac, kSandboxMac, kMtus[(flags >> 2) & 3]};
  tapbox::UdpDatagram d;
  if (!tapbox::ParseUdpFrame(frame.data(), frame.size(), flags & 1, rules, &d)) return 0;

  const uint8_t* base = frame.data();
  const size_t addr = d.family == 4 ? 4 : 16;
  Check(d.family == 4 || d.family == 6, "family");
  Check(d.ip_offset == tapbox::kEthernetHeader && d.ip_offset + d.ip_length <= frame.size(), "IP packet outside the frame");
  Check(d.ip_length <= rules.mtu && frame.size() - tapbox::kEthernetHeader <= rules.mtu, "longer than the MTU");
  Check(d.payload_offset + d.payload_length == d.ip_offset + d.ip_length, "payload does not end the IP packet");
  Check(d.src >= base && d.src + addr <= base + frame.size() && d.dst >= base && d.dst + addr <= base + frame.size(), "addresses outside the frame");
  const uint8_t* ip = base + d.ip_offset;
  const uint8_t* udp = base + d.payload_offset - tapbox::kUdpHeader;
  if (d.family == 4) {
    Check(ip[0] == 0x45 && ip[9] == 17 && (Be16(ip + 6) & 0x3fff) == 0 && Be16(ip + 2) == d.ip_length, "IPv4 header");
  } else {
    Check((ip[0] >> 4) == 6 && ip[6] == 17 && Be16(ip + 4) + tapbox::kIpv6Header == d.ip_length, "IPv6 header");
  }
  Check(Be16(udp) == d.src_port && Be16(udp + 2) == d.dst_port && Be16(udp + 4) == d.payload_length + tapbox::kUdpHeader, "UDP header");

  // The reply, built as the relay builds it, parses back (with the MACs' roles swapped).
  tapbox::UdpFrameAddrs addrs;
  addrs.family = d.family;
  std::memcpy(addrs.remote, d.dst, addr);
  std::memcpy(addrs.sandbox, d.src, addr);
  addrs.remote_port = d.dst_port;
  addrs.sandbox_port = d.src_port;
  std::memcpy(addrs.our_mac, kOurMac, 6);
  const size_t headers = tapbox::UdpFrameHeaders(d.family);
  std::vector<uint8_t> reply(headers + d.payload_length);
  std::memcpy(reply.data() + headers, base + d.payload_offset, d.payload_length);
  const size_t length = tapbox::BuildUdpFrame(reply.data(), addrs, kSandboxMac, d.payload_length, 0x1234);
  Check(length == reply.size(), "built frame length");
  const tapbox::UdpFrameRules back{kSandboxMac, kOurMac, 65535};
  tapbox::UdpDatagram r;
  Check(tapbox::ParseUdpFrame(reply.data(), reply.size(), false, back, &r), "the built frame does not parse");
  Check(r.family == d.family && r.src_port == d.dst_port && r.dst_port == d.src_port && r.payload_length == d.payload_length, "the built frame's fields");
  Check(std::memcmp(r.src, d.dst, addr) == 0 && std::memcmp(r.dst, d.src, addr) == 0, "the built frame's addresses");
  Check(std::memcmp(reply.data() + r.payload_offset, base + d.payload_offset, d.payload_length) == 0, "the built frame's payload");
  return 0;
}
