// libFuzzer harness for native/addon/cmsg.cc: TakeFirstFd on an arbitrary control buffer.
//
// The input is the msg_control bytes of one recvmsg() (the kernel writes well-formed records, but the
// walk must not trust a length to stay inside the buffer). The buffer is an exactly-sized heap copy,
// aligned as cmsghdr needs, so AddressSanitizer sees any read past it. The fds it reports are checked
// against a plain reference walk that clamps every record to the buffer: the first SCM_RIGHTS fd is
// returned, every other one goes to close_fd (recorded here, never really closed).
#include <sys/socket.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../addon/cmsg.h"

namespace {

std::vector<int> closed;

void RecordClose(int fd) { closed.push_back(fd); }

// Every fd of every SCM_RIGHTS record, in order, each record clamped to the bytes that exist.
std::vector<int> Reference(const uint8_t* buf, size_t len) {
  std::vector<int> fds;
  size_t at = 0;
  while (at + sizeof(cmsghdr) <= len) {
    cmsghdr h;
    std::memcpy(&h, buf + at, sizeof h);
    if (h.cmsg_len < sizeof(cmsghdr)) break;
    if (h.cmsg_len > len - at) break;  // a record that overruns the buffer ends the walk
    if (h.cmsg_level == SOL_SOCKET && h.cmsg_type == SCM_RIGHTS) {
      size_t data = CMSG_LEN(0);
      size_t n = h.cmsg_len >= data ? (h.cmsg_len - data) / sizeof(int) : 0;
      for (size_t i = 0; i < n; i++) {
        int fd;
        std::memcpy(&fd, buf + at + data + i * sizeof(int), sizeof fd);
        fds.push_back(fd);
      }
    }
    at += CMSG_ALIGN(h.cmsg_len);
  }
  return fds;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Exactly `size` bytes, on the heap, aligned for cmsghdr (operator new aligns to 16).
  std::vector<uint8_t> owned(data, data + size);
  uint8_t* control = owned.empty() ? nullptr : owned.data();
  msghdr msg{};
  msg.msg_control = control;
  msg.msg_controllen = size;
  closed.clear();
  int first = tapbox::TakeFirstFd(&msg, RecordClose);
  std::vector<int> want = Reference(data, size);
  int want_first = want.empty() ? -1 : want[0];
  std::vector<int> want_closed = want.empty() ? std::vector<int>() : std::vector<int>(want.begin() + 1, want.end());
  if (first != want_first || closed != want_closed) {
    std::fprintf(stderr, "cmsg: first fd %d (reference %d), %zu closed (reference %zu)\n", first, want_first, closed.size(), want_closed.size());
    std::abort();
  }
  return 0;
}
