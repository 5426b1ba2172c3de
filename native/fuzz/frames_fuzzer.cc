// libFuzzer harness for native/addon/frame_meta.cc: ParseFrame and ParseVnetHeader on arbitrary bytes.
//
// The input is one Ethernet frame as the TAP reader hands it to ParseFrame; its first 10 bytes double
// as a virtio-net header for ParseVnetHeader. AddressSanitizer catches any read past the frame (libFuzzer
// passes exactly `size` heap bytes). Every metadata field is then compared with a deliberately plain
// re-implementation of the same contract (frame_meta.h), so a wrong offset or protocol aborts as a crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "../addon/checksum.h"
#include "../addon/frame_meta.h"

namespace {

using tapbox::MetaField;

struct Expected {
  int32_t ethertype = -1, l3_offset = -1, protocol = -1, l4_offset = -1, ipv4_checksum_ok = 0;
};

uint32_t ReferenceSum(const uint8_t* p, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (len & 1) sum += p[len - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}

Expected Reference(const uint8_t* f, size_t len) {
  Expected e;
  if (len < 14) return e;
  e.ethertype = (f[12] << 8) | f[13];
  e.l3_offset = 14;
  const uint8_t* ip = f + 14;
  size_t n = len - 14;
  if (e.ethertype == 0x0800 && n >= 20 && ip[0] >> 4 == 4) {
    size_t ihl = (ip[0] & 15) * 4;
    if (ihl >= 20 && ihl <= n) {
      e.protocol = ip[9];
      e.l4_offset = static_cast<int32_t>(14 + ihl);
      e.ipv4_checksum_ok = ReferenceSum(ip, ihl) == 0xffff;
    }
  }
  if (e.ethertype == 0x86dd && n >= 40 && ip[0] >> 4 == 6) {
    int next = ip[6];
    size_t at = 40;
    // Hop-by-hop, routing and destination options: (length + 1) * 8 bytes each.
    while (next == 0 || next == 43 || next == 60) {
      if (at + 8 > n) return e;
      next = ip[at];
      at += (ip[at + 1] + 1) * 8;
    }
    if (at <= n) {
      e.protocol = next;
      e.l4_offset = static_cast<int32_t>(14 + at);
    }
  }
  return e;
}

void Check(bool ok, const char* what, int32_t got, int32_t want) {
  if (ok) return;
  std::fprintf(stderr, "frame_meta: %s is %d, the reference says %d\n", what, got, want);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int32_t meta[tapbox::kMetaStride];
  for (int32_t& m : meta) m = 0x7eadbeef;  // fields ParseFrame must overwrite
  tapbox::ParseFrame(data, size, meta);
  Expected e = Reference(data, size);
  Check(meta[tapbox::kMetaEthertype] == e.ethertype, "ethertype", meta[tapbox::kMetaEthertype], e.ethertype);
  Check(meta[tapbox::kMetaL3Offset] == e.l3_offset, "l3Offset", meta[tapbox::kMetaL3Offset], e.l3_offset);
  Check(meta[tapbox::kMetaIpProtocol] == e.protocol, "ipProtocol", meta[tapbox::kMetaIpProtocol], e.protocol);
  Check(meta[tapbox::kMetaL4Offset] == e.l4_offset, "l4Offset", meta[tapbox::kMetaL4Offset], e.l4_offset);
  Check(meta[tapbox::kMetaIpv4ChecksumOk] == e.ipv4_checksum_ok, "ipv4ChecksumOk", meta[tapbox::kMetaIpv4ChecksumOk],
        e.ipv4_checksum_ok);
  // The offsets JS will use to slice the frame must stay inside it.
  Check(meta[tapbox::kMetaL4Offset] <= static_cast<int64_t>(size), "l4Offset within the frame", meta[tapbox::kMetaL4Offset],
        static_cast<int32_t>(size));

  if (size >= tapbox::kVnetHeaderSize) {
    meta[tapbox::kMetaChecksumPartial] = meta[tapbox::kMetaGsoSize] = 0x7eadbeef;
    tapbox::ParseVnetHeader(data, meta);
    int32_t partial = data[0] & 1;
    int32_t gso = (data[1] & 0x7f) ? data[4] | (data[5] << 8) : 0;
    Check(meta[tapbox::kMetaChecksumPartial] == partial, "checksumPartial", meta[tapbox::kMetaChecksumPartial], partial);
    Check(meta[tapbox::kMetaGsoSize] == gso, "gsoSize", meta[tapbox::kMetaGsoSize], gso);
  }
  return 0;
}
