// The compact per-frame metadata the TAP reader writes next to each frame: where it lies in the ring,
// and, with the virtio-net header, what the sending kernel left to us. The frame's own headers are
// parsed once, by the TypeScript stack (netstack/), which is the authority on their validity; a second
// parse here measured 13 ns a frame in C to save at most ~25 ns of JS, and was removed (2026-12).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tapbox {

// Int32 fields per frame in the shared metadata array; the indices are exported to JS as constants.
enum MetaField : int {
  kMetaOffset = 0,  // byte offset of the Ethernet header in the ring
  kMetaLength = 1,  // frame length, Ethernet header included
  // With the virtio-net header (TapDevice option vnetHdr), else 0:
  kMetaChecksumPartial = 2,  // 1: the sender offloaded the L4 checksum; its field holds the pseudo-header sum only
  kMetaGsoSize = 3,          // > 0: a TCP super-segment the sender's kernel would cut into segments of this size
  kMetaStride = 4,
};

// struct virtio_net_hdr (linux/virtio_net.h), which precedes every frame on a TAP opened with
// IFF_VNET_HDR: flags, gso_type, then little-endian u16 hdr_len, gso_size, csum_start, csum_offset.
constexpr size_t kVnetHeaderSize = 10;

/** Fills meta[kMetaChecksumPartial], meta[kMetaGsoSize] from a virtio-net header. */
void ParseVnetHeader(const uint8_t* header, int32_t* meta);

// VIRTIO_NET_HDR_GSO_TCPV4 / TCPV6.
constexpr size_t kVnetGsoTcpV4 = 1;
constexpr size_t kVnetGsoTcpV6 = 4;

/**
 * The virtio-net header of a TCP super-segment we write: NEEDS_CSUM from `checksum_start` (the TCP
 * header's offset in the frame; the checksum field holds the pseudo-header sum), cut by the reader's
 * kernel, if at all, into segments of `gso_size`.
 */
void BuildTcpGsoHeader(uint8_t* header, uint8_t gso_type, uint16_t gso_size, uint16_t checksum_start);

}  // namespace tapbox
