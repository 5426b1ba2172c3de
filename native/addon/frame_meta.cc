// The virtio-net header facts of one frame (frame_meta.h): two fields read from 10 bytes, no allocation;
// and the header of a TCP super-segment we write.
#include "frame_meta.h"

namespace tapbox {
namespace {

constexpr uint8_t kVnetNeedsChecksum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
constexpr uint8_t kVnetGsoNone = 0;        // VIRTIO_NET_HDR_GSO_NONE
constexpr uint16_t kTcpChecksumOffset = 16;  // offsetof(struct tcphdr, check)

void PutLe16(uint8_t* at, uint16_t value) {
  at[0] = static_cast<uint8_t>(value);
  at[1] = static_cast<uint8_t>(value >> 8);
}

}  // namespace

void ParseVnetHeader(const uint8_t* header, int32_t* meta) {
  meta[kMetaChecksumPartial] = (header[0] & kVnetNeedsChecksum) ? 1 : 0;
  bool gso = (header[1] & 0x7f) != kVnetGsoNone;  // the high bit is the ECN flag
  meta[kMetaGsoSize] = gso ? header[4] | (header[5] << 8) : 0;
}

void BuildTcpGsoHeader(uint8_t* header, uint8_t gso_type, uint16_t gso_size, uint16_t checksum_start) {
  header[0] = kVnetNeedsChecksum;
  header[1] = gso_type;
  PutLe16(header + 2, static_cast<uint16_t>(checksum_start + 20));  // hdr_len: a hint, at least the headers' minimum
  PutLe16(header + 4, gso_size);
  PutLe16(header + 6, checksum_start);
  PutLe16(header + 8, kTcpChecksumOffset);
}

}  // namespace tapbox
