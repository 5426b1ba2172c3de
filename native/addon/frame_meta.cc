// Theory of operation: one bounds-checked pass over the fixed headers, no allocation. It never rejects a
// frame: whatever it cannot make sense of is reported as -1 and left to the TypeScript stack, which
// stays the authority on validity (lengths, options, fragments).
#include "frame_meta.h"

#include "checksum.h"

namespace tapbox {
namespace {

constexpr size_t kEthernetHeader = 14;
constexpr int kEthertypeIpv4 = 0x0800;
constexpr int kEthertypeIpv6 = 0x86dd;
constexpr size_t kIpv6Header = 40;

inline int Read16(const uint8_t* p) { return (p[0] << 8) | p[1]; }

void ParseIpv4(const uint8_t* ip, size_t len, int32_t* meta) {
  if (len < 20 || (ip[0] >> 4) != 4) return;
  size_t header = static_cast<size_t>(ip[0] & 0x0f) * 4;
  if (header < 20 || header > len) return;
  meta[kMetaIpProtocol] = ip[9];
  meta[kMetaL4Offset] = static_cast<int32_t>(kEthernetHeader + header);
  meta[kMetaIpv4ChecksumOk] = Checksum(ip, header, 0) == 0xffff ? 1 : 0;
}

inline bool IsSkippableIpv6Extension(int next) {
  return next == 0 /* hop-by-hop */ || next == 43 /* routing */ || next == 60 /* destination options */;
}

void ParseIpv6(const uint8_t* ip, size_t len, int32_t* meta) {
  if (len < kIpv6Header || (ip[0] >> 4) != 6) return;
  int next = ip[6];
  size_t offset = kIpv6Header;
  while (IsSkippableIpv6Extension(next)) {
    if (offset + 8 > len) return;
    size_t ext_len = (static_cast<size_t>(ip[offset + 1]) + 1) * 8;
    next = ip[offset];
    offset += ext_len;
  }
  if (offset > len) return;
  meta[kMetaIpProtocol] = next;
  meta[kMetaL4Offset] = static_cast<int32_t>(kEthernetHeader + offset);
}

constexpr uint8_t kVnetNeedsChecksum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
constexpr uint8_t kVnetGsoNone = 0;        // VIRTIO_NET_HDR_GSO_NONE

}  // namespace

void ParseVnetHeader(const uint8_t* header, int32_t* meta) {
  meta[kMetaChecksumPartial] = (header[0] & kVnetNeedsChecksum) ? 1 : 0;
  bool gso = (header[1] & 0x7f) != kVnetGsoNone;  // the high bit is the ECN flag
  meta[kMetaGsoSize] = gso ? header[4] | (header[5] << 8) : 0;
}

void ParseFrame(const uint8_t* frame, size_t len, int32_t* meta) {
  meta[kMetaEthertype] = -1;
  meta[kMetaL3Offset] = -1;
  meta[kMetaIpProtocol] = -1;
  meta[kMetaL4Offset] = -1;
  meta[kMetaIpv4ChecksumOk] = 0;
  if (len < kEthernetHeader) return;
  int ethertype = Read16(frame + 12);
  meta[kMetaEthertype] = ethertype;
  meta[kMetaL3Offset] = static_cast<int32_t>(kEthernetHeader);
  const uint8_t* l3 = frame + kEthernetHeader;
  size_t l3_len = len - kEthernetHeader;
  if (ethertype == kEthertypeIpv4) ParseIpv4(l3, l3_len, meta);
  if (ethertype == kEthertypeIpv6) ParseIpv6(l3, l3_len, meta);
}

}  // namespace tapbox
