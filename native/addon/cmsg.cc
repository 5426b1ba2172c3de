// Theory of operation: the kernel fills msg_control with cmsghdr records; each SCM_RIGHTS record
// carries (cmsg_len - CMSG_LEN(0)) / sizeof(int) fds. Walk them with CMSG_FIRSTHDR / CMSG_NXTHDR and
// keep the first fd. Every length in a record is checked against the buffer before it is used.
#include "cmsg.h"

#include <cstdint>
#include <cstring>

namespace tapbox {

int TakeFirstFd(const msghdr* msg, void (*close_fd)(int)) {
  int first = -1;
  bool found = false;  // not `first < 0`: a record may hold any int, and each must be kept or closed once
  msghdr* m = const_cast<msghdr*>(msg);
  const uint8_t* end = static_cast<const uint8_t*>(msg->msg_control) + msg->msg_controllen;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(m); cmsg; cmsg = CMSG_NXTHDR(m, cmsg)) {
    // CMSG_FIRSTHDR checks only that a header fits: a record shorter than its header or longer than
    // what is left of the buffer ends the walk (found by the fuzzer; the kernel never writes one).
    const uint8_t* at = reinterpret_cast<const uint8_t*>(cmsg);
    if (cmsg->cmsg_len < sizeof(cmsghdr) || cmsg->cmsg_len > static_cast<size_t>(end - at)) break;
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    size_t count = cmsg->cmsg_len >= CMSG_LEN(0) ? (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int) : 0;
    for (size_t i = 0; i < count; i++) {
      int received;
      std::memcpy(&received, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
      if (!found) {
        found = true;
        first = received;
      } else {
        close_fd(received);
      }
    }
  }
  return first;
}

}  // namespace tapbox
