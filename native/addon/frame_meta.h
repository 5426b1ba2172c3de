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
  kMetaStride = 7,
};

/** Fills meta[kMetaEthertype .. kMetaIpv4ChecksumOk] for one Ethernet frame. */
void ParseFrame(const uint8_t* frame, size_t len, int32_t* meta);

}  // namespace tapbox
