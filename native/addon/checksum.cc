// Theory of operation: the ones' complement sum does not care about word order or byte order beyond a
// final swap (RFC 1071 §2), so we add the buffer as native little-endian 32-bit words into a 64-bit
// accumulator (no carry can be lost below 2^32 words), fold to 16 bits, and swap the two bytes to get
// the big-endian sum. Loads go through memcpy, so any alignment and offset is fine, and the compiler
// turns the unrolled loop into vector adds.
#include "checksum.h"

#include <cstring>

namespace tapbox {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the word-order trick below assumes little endian");

inline uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline uint16_t Fold(uint64_t sum) {
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

inline uint16_t Swap(uint16_t v) { return static_cast<uint16_t>((v >> 8) | (v << 8)); }

// Sum of the bytes as little-endian words (a trailing odd byte is the low byte of a last word).
uint64_t SumLittleEndian(const uint8_t* p, size_t len) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  while (len >= 16) {
    a += Load32(p);
    b += Load32(p + 4);
    c += Load32(p + 8);
    d += Load32(p + 12);
    p += 16;
    len -= 16;
  }
  uint64_t sum = a + b + c + d;
  while (len >= 4) {
    sum += Load32(p);
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    sum += static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8);
    p += 2;
    len -= 2;
  }
  if (len) sum += p[0];
  return sum;
}

inline uint16_t AddFolded(uint16_t a, uint16_t b) { return Fold(static_cast<uint64_t>(a) + b); }

}  // namespace

uint16_t Checksum(const uint8_t* p, size_t len, uint16_t initial) {
  return AddFolded(Swap(Fold(SumLittleEndian(p, len))), initial);
}

uint16_t CopyChecksum(uint8_t* dst, const uint8_t* src, size_t len, uint16_t initial) {
  // One pass: each 16-byte block is loaded once, stored and added while it sits in registers.
  uint64_t a = 0, b = 0, c = 0, d = 0;
  size_t i = 0;
  for (; i + 16 <= len; i += 16) {
    uint32_t w[4];
    std::memcpy(w, src + i, sizeof w);
    std::memcpy(dst + i, w, sizeof w);
    a += w[0];
    b += w[1];
    c += w[2];
    d += w[3];
  }
  std::memcpy(dst + i, src + i, len - i);
  uint64_t sum = a + b + c + d + SumLittleEndian(src + i, len - i);
  return AddFolded(Swap(Fold(sum)), initial);
}

uint16_t ChecksumUpdate(uint16_t field, uint16_t old_word, uint16_t new_word) {
  // HC' = ~(~HC + ~m + m')
  uint64_t sum = static_cast<uint16_t>(~field) + static_cast<uint16_t>(~old_word) + uint64_t{new_word};
  return static_cast<uint16_t>(~Fold(sum));
}

}  // namespace tapbox
