// Each binding file registers its functions and classes on the module's exports.
#pragma once

#include <napi.h>

namespace tapbox {

void InitPacket(Napi::Env env, Napi::Object exports);
void InitTapDevice(Napi::Env env, Napi::Object exports);
void InitControl(Napi::Env env, Napi::Object exports);
void InitSockDiag(Napi::Env env, Napi::Object exports);
void InitFlock(Napi::Env env, Napi::Object exports);
void InitHostSockets(Napi::Env env, Napi::Object exports);

}  // namespace tapbox
