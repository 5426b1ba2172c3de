#include "napi_util.h"

#include <uv.h>

#include <cmath>
#include <cstring>
#include <string>

namespace tapbox {

bool GetBytes(napi_env env, napi_value value, uint8_t** data, size_t* length) {
  bool is_typedarray = false;
  napi_is_typedarray(env, value, &is_typedarray);
  napi_typedarray_type type = napi_int8_array;
  void* base = nullptr;
  if (is_typedarray) napi_get_typedarray_info(env, value, &type, length, &base, nullptr, nullptr);
  if (!is_typedarray || (type != napi_uint8_array && type != napi_uint8_clamped_array)) {
    napi_throw_type_error(env, nullptr, "expected a Uint8Array or Buffer");
    return false;
  }
  *data = static_cast<uint8_t*>(base);
  return true;
}

bool GetIndex(napi_env env, napi_value value, const char* what, size_t max, size_t* out) {
  double d = -1;
  if (napi_get_value_double(env, value, &d) != napi_ok || !(d >= 0) || d > static_cast<double>(max) ||
      std::floor(d) != d) {
    std::string message = std::string(what) + " must be an integer from 0 to " + std::to_string(max);
    napi_throw_range_error(env, nullptr, message.c_str());
    return false;
  }
  *out = static_cast<size_t>(d);
  return true;
}

Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err) {
  Napi::Error error = Napi::Error::New(env, std::string(syscall) + ": " + std::strerror(err));
  error.Set("code", Napi::String::New(env, uv_err_name(-err)));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

void ThrowErrno(Napi::Env env, const char* syscall, int err) { ErrnoError(env, syscall, err).ThrowAsJavaScriptException(); }

void RaisePendingException(Napi::Env env) {
  if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
}

}  // namespace tapbox
