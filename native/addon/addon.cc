// tapbox_native: the per-frame hot path of the supervisor (TAP I/O, checksums, frame metadata, the
// native UDP relay of admitted flows: udp_relay.h; the host sockets of relayed TCP flows:
// host_sockets.cc), the control-socket calls Node has no API for
// (socketpair, SCM_RIGHTS), attribution's exact socket lookup (sock_diag), and flock (the image
// store's locks, a sandbox's lease on its root). Loaded by native/addon/index.ts.
#include "bindings.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  tapbox::InitPacket(env, exports);
  tapbox::InitTapDevice(env, exports);
  tapbox::InitControl(env, exports);
  tapbox::InitSockDiag(env, exports);
  tapbox::InitFlock(env, exports);
  tapbox::InitHostSockets(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(tapbox_native, Init)
