// Internet checksum (RFC 1071) primitives shared by the addon's JS bindings and the frame parser.
//
// Every sum here is the 16-bit ones' complement sum of the bytes read as big-endian words, folded but
// not inverted: the same contract as netstack/header/checksum.ts.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tapbox {

/** Sum of `len` bytes at `p`, added to the folded sum `initial`; folded to 16 bits. */
uint16_t Checksum(const uint8_t* p, size_t len, uint16_t initial);

/** Copies `len` bytes from `src` to `dst` (non-overlapping) and returns their sum, as Checksum does. */
uint16_t CopyChecksum(uint8_t* dst, const uint8_t* src, size_t len, uint16_t initial);

/**
 * RFC 1624 eqn. 3: the new value of a stored (inverted) checksum field after one 16-bit word of the
 * covered data changed from `old_word` to `new_word`.
 */
uint16_t ChecksumUpdate(uint16_t field, uint16_t old_word, uint16_t new_word);

}  // namespace tapbox
