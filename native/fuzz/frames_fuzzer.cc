// libFuzzer harness for native/addon/frame_meta.cc: ParseVnetHeader on arbitrary bytes.
//
// The input's first 10 bytes are the virtio-net header the TAP reader hands to ParseVnetHeader.
// AddressSanitizer catches any read past them (libFuzzer passes exactly `size` heap bytes); both
// fields are compared with a plain re-implementation of the contract (frame_meta.h), so a wrong field
// aborts as a crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "../addon/frame_meta.h"

namespace {

void Check(bool ok, const char* what, int32_t got, int32_t want) {
  if (ok) return;
  std::fprintf(stderr, "frame_meta: %s is %d, the reference says %d\n", what, got, want);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < tapbox::kVnetHeaderSize) return 0;
  int32_t meta[tapbox::kMetaStride];
  for (int32_t& m : meta) m = 0x7eadbeef;  // fields ParseVnetHeader must overwrite
  tapbox::ParseVnetHeader(data, meta);
  int32_t partial = data[0] & 1;
  int32_t gso = (data[1] & 0x7f) ? data[4] | (data[5] << 8) : 0;
  Check(meta[tapbox::kMetaChecksumPartial] == partial, "checksumPartial", meta[tapbox::kMetaChecksumPartial], partial);
  Check(meta[tapbox::kMetaGsoSize] == gso, "gsoSize", meta[tapbox::kMetaGsoSize], gso);
  return 0;
}
