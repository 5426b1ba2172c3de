// The virtio-net header facts of one frame (frame_meta.h): two fields read from 10 bytes, no allocation.
#include "frame_meta.h"

namespace tapbox {
namespace {

constexpr uint8_t kVnetNeedsChecksum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
constexpr uint8_t kVnetGsoNone = 0;        // VIRTIO_NET_HDR_GSO_NONE

}  // namespace

void ParseVnetHeader(const uint8_t* header, int32_t* meta) {
  meta[kMetaChecksumPartial] = (header[0] & kVnetNeedsChecksum) ? 1 : 0;
  bool gso = (header[1] & 0x7f) != kVnetGsoNone;  // the high bit is the ECN flag
  meta[kMetaGsoSize] = gso ? header[4] | (header[5] << 8) : 0;
}

}  // namespace tapbox
