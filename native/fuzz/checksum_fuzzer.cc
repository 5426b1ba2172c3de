// libFuzzer harness for native/addon/checksum.cc: Checksum, CopyChecksum and ChecksumUpdate against a
// byte-at-a-time RFC 1071 reference written here, at every alignment and length the input gives.
//
// Input layout: byte 0 = start offset (0-15, to exercise unaligned loads), bytes 1-2 = the folded
// initial sum, bytes 3-4 = word index to rewrite, bytes 5-6 = its new value, the rest = the data.
// Any difference from the reference aborts, so a wrong sum is reported as a crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "../addon/checksum.h"

namespace {

uint16_t ReferenceFold(uint64_t sum) {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

uint16_t ReferenceChecksum(const uint8_t* p, size_t len, uint16_t initial) {
  uint64_t sum = initial;
  for (size_t i = 0; i < len; i++) sum += (i % 2 == 0) ? p[i] << 8 : p[i];
  return ReferenceFold(sum);
}

void Expect(bool ok, const char* what, unsigned got, unsigned want, size_t len) {
  if (ok) return;
  std::fprintf(stderr, "checksum: %s = 0x%04x, the reference says 0x%04x (length %zu)\n", what, got, want, len);
  std::abort();
}

// A ones' complement sum has two zeros, 0x0000 and 0xffff; RFC 1624 eqn. 3 may yield either.
bool SameOnesComplement(uint16_t a, uint16_t b) { return a == b || (a % 0xffff) == (b % 0xffff); }

uint16_t Read16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kHeader = 7;
  if (size < kHeader) return 0;
  size_t shift = data[0] % 16;
  uint16_t initial = Read16(data + 1);
  size_t word_index = Read16(data + 3);
  uint16_t new_word = Read16(data + 5);
  size_t len = size - kHeader;

  // Exactly-sized heap buffers (never null, even when empty), so AddressSanitizer sees any read or
  // write past the range.
  std::unique_ptr<uint8_t[]> src(new uint8_t[shift + len]);
  std::memcpy(src.get() + shift, data + kHeader, len);
  const uint8_t* p = src.get() + shift;

  uint16_t want = ReferenceChecksum(p, len, initial);
  Expect(tapbox::Checksum(p, len, initial) == want, "Checksum", tapbox::Checksum(p, len, initial), want, len);

  std::unique_ptr<uint8_t[]> dst(new uint8_t[shift + len]);
  uint16_t copied = tapbox::CopyChecksum(dst.get() + shift, p, len, initial);
  Expect(copied == want, "CopyChecksum", copied, want, len);
  Expect(std::memcmp(dst.get() + shift, p, len) == 0, "CopyChecksum's copy", 0, 0, len);

  // Incremental update: store a checksum over the even-length data, rewrite one word, and compare the
  // updated field with a checksum computed afresh.
  size_t words = len / 2;
  if (words == 0) return 0;
  std::vector<uint8_t> buf(p, p + words * 2);
  size_t at = (word_index % words) * 2;
  uint16_t field = static_cast<uint16_t>(~ReferenceChecksum(buf.data(), buf.size(), 0));
  uint16_t old_word = Read16(buf.data() + at);
  buf[at] = static_cast<uint8_t>(new_word >> 8);
  buf[at + 1] = static_cast<uint8_t>(new_word);
  uint16_t updated = tapbox::ChecksumUpdate(field, old_word, new_word);
  uint16_t fresh = static_cast<uint16_t>(~ReferenceChecksum(buf.data(), buf.size(), 0));
  Expect(SameOnesComplement(updated, fresh), "ChecksumUpdate", updated, fresh, buf.size());
  return 0;
}
