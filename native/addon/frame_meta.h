// The compact per-frame metadata the TAP reader writes next to each frame's (offset, length), so the
// TypeScript stack can dispatch a frame without parsing its Ethernet and IP headers again.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tapbox {

// Int32 fields per frame in the shared metadata array; the indices are exported to JS as constants.
enum MetaField : int {
  kMetaOffset = 0,        // byte offset of the Ethernet header in the ring
  kMetaLength = 1,        // frame length, Ethernet header included
  kMetaEthertype = 2,     // e.g. 0x0800, 0x86dd, 0x0806; -1 if the frame is shorter than 14 bytes
  kMetaL3Offset = 3,      // offset of the network header from the frame start, -1 if none
  kMetaIpProtocol = 4,    // IPv4 protocol / IPv6 last next-header (after hop-by-hop, routing, dst opts), -1 if none
  kMetaL4Offset = 5,      // offset of that protocol's header from the frame start, -1 if not IP or truncated
  kMetaIpv4ChecksumOk = 6,  // 1 if an IPv4 header checksum verifies, else 0
  // With the virtio-net header (TapDevice option vnetHdr), else 0:
  kMetaChecksumPartial = 7,  // 1: the sender offloaded the L4 checksum; its field holds the pseudo-header sum only
  kMetaGsoSize = 8,          // > 0: a TCP super-segment the sender's kernel would cut into segments of this size
  kMetaStride = 9,
};

/** Fills meta[kMetaEthertype .. kMetaIpv4ChecksumOk] for one Ethernet frame. */
void ParseFrame(const uint8_t* frame, size_t len, int32_t* meta);

// struct virtio_net_hdr (linux/virtio_net.h), which precedes every frame on a TAP opened with
// IFF_VNET_HDR: flags, gso_type, then little-endian u16 hdr_len, gso_size, csum_start, csum_offset.
constexpr size_t kVnetHeaderSize = 10;

/** Fills meta[kMetaChecksumPartial], meta[kMetaGsoSize] from a virtio-net header. */
void ParseVnetHeader(const uint8_t* header, int32_t* meta);

}  // namespace tapbox
