// JS bindings of checksum.h. Arguments mirror netstack/header/checksum.ts; a range
// outside the buffer throws a RangeError instead of reading or writing out of bounds.
#include "bindings.h"
#include "checksum.h"
#include "napi_util.h"

namespace tapbox {
namespace {

bool GetRange(napi_env env, napi_value buf, napi_value off, napi_value len, uint8_t** start, size_t* length) {
  uint8_t* data;
  size_t size, offset;
  if (!GetBytes(env, buf, &data, &size) || !GetIndex(env, off, "offset", size, &offset) ||
      !GetIndex(env, len, "length", size - offset, length)) {
    return false;
  }
  *start = data + offset;
  return true;
}

bool GetWord(napi_env env, napi_value value, const char* what, uint16_t* out) {
  size_t word;
  if (!GetIndex(env, value, what, 0xffff, &word)) return false;
  *out = static_cast<uint16_t>(word);
  return true;
}

// checksum(buf, off, len, initial) -> folded sum
Napi::Value JsChecksum(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  uint8_t* start;
  size_t length;
  uint16_t initial;
  if (!GetRange(env, info[0], info[1], info[2], &start, &length) || !GetWord(env, info[3], "initial", &initial)) {
    return Napi::Value();
  }
  return Napi::Number::New(env, Checksum(start, length, initial));
}

// copyChecksum(dst, dstOff, src, srcOff, len, initial) -> folded sum of the copied bytes
Napi::Value JsCopyChecksum(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  uint8_t *dst, *src;
  size_t dst_size, dst_off, src_len;
  uint16_t initial;
  if (!GetRange(env, info[2], info[3], info[4], &src, &src_len) || !GetBytes(env, info[0], &dst, &dst_size) ||
      !GetIndex(env, info[1], "destination offset", dst_size, &dst_off) || !GetWord(env, info[5], "initial", &initial)) {
    return Napi::Value();
  }
  if (src_len > dst_size - dst_off) {
    napi_throw_range_error(env, nullptr, "the copy does not fit in the destination");
    return Napi::Value();
  }
  return Napi::Number::New(env, CopyChecksum(dst + dst_off, src, src_len, initial));
}

// checksumUpdate(field, oldWord, newWord) -> new field value
Napi::Value JsChecksumUpdate(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  uint16_t field, old_word, new_word;
  if (!GetWord(env, info[0], "field", &field) || !GetWord(env, info[1], "old word", &old_word) ||
      !GetWord(env, info[2], "new word", &new_word)) {
    return Napi::Value();
  }
  return Napi::Number::New(env, ChecksumUpdate(field, old_word, new_word));
}

}  // namespace

void InitPacket(Napi::Env env, Napi::Object exports) {
  exports.Set("checksum", Napi::Function::New(env, JsChecksum, "checksum"));
  exports.Set("copyChecksum", Napi::Function::New(env, JsCopyChecksum, "copyChecksum"));
  exports.Set("checksumUpdate", Napi::Function::New(env, JsChecksumUpdate, "checksumUpdate"));
}

}  // namespace tapbox
