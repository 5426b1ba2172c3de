// The ancillary data of one recvmsg() on the control socket: which fds the launcher passed.
#pragma once

#include <sys/socket.h>

namespace tapbox {

/**
 * Walks the control messages of `msg` and returns the first fd passed as SCM_RIGHTS (-1 if none);
 * every other fd is handed to `close_fd`, so none leaks. Never reads outside msg_control, whatever
 * the lengths in the headers say (fuzzed: native/fuzz/cmsg_fuzzer.cc).
 */
int TakeFirstFd(const msghdr* msg, void (*close_fd)(int));

}  // namespace tapbox
