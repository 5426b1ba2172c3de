// Small helpers shared by the addon's bindings: argument checks and errno errors, without C++
// exceptions (NAPI_DISABLE_CPP_EXCEPTIONS): a failed check throws in JS and the binding returns early.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace tapbox {

/** The bytes of a Uint8Array (Buffer included) argument; throws a TypeError and returns false otherwise. */
bool GetBytes(napi_env env, napi_value value, uint8_t** data, size_t* length);

/** `value` as a non-negative integer <= `max`; throws a RangeError naming `what` and returns false otherwise. */
bool GetIndex(napi_env env, napi_value value, const char* what, size_t max, size_t* out);

/** Throws `Error("<syscall>: <strerror>")` with `code` set to the errno name (e.g. "EAGAIN") and `errno`. */
void ThrowErrno(Napi::Env env, const char* syscall, int err);

/** The same error as a value, for callbacks. */
Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err);

/** After a JS callback from a libuv callback: an exception it threw has nobody up the stack to catch it, so it is an uncaught exception. */
void RaisePendingException(Napi::Env env);

}  // namespace tapbox
