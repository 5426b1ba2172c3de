// Attribution's exact socket lookup (src/egress/audit/attribution.ts): which socket inode a flow's 4-tuple
// belongs to, asked of the kernel through NETLINK_SOCK_DIAG in the sandbox's network namespace. One
// request names the exact tuple (no dump), so a lookup costs the same whatever the sandbox's socket
// tables hold, unlike reading /proc/PID/net/tcp, which walks the host's whole established-hash.
//
// openSockDiag(pid): the netlink socket must be made inside the sandbox's network namespace. The
// supervisor can't setns() there itself (that needs CAP_SYS_ADMIN in its own user namespace, and Node
// is multi-threaded), but it owns the sandbox's user namespaces: a forked child (single-threaded) joins
// the one that owns the network namespace (NS_GET_USERNS), where it holds every capability, then the
// network namespace, opens the socket and hands it back over a socketpair (SCM_RIGHTS). The child calls only async-signal-safe functions
// between fork and _exit, as it must in a copy of a multi-threaded process.
//
// sockDiagInode(fd, proto, family, src, srcPort, dst, dstPort): the inode of the sandbox's socket
// that sent this flow, 0 when there is none (gone, or refused). Blocking, but a sock_diag round trip
// is microseconds, and the wait for an answer is capped at 100 ms (SO_RCVTIMEO).
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "bindings.h"
#include "napi_util.h"

namespace tapbox {
namespace {

// In the forked child: join the user namespace that owns PID's network namespace (the sandbox's
// outer one: the command itself may run in a nested one, whose capabilities don't reach the network
// namespace), then the network namespace; open the netlink socket, send it on `channel`. Returns the
// exit status (0 sent, else the step that failed).
int JoinAndOpen(const char* net_ns, int channel) {
  int net = open(net_ns, O_RDONLY | O_CLOEXEC);
  if (net < 0) return 10;
  int user = ioctl(net, NS_GET_USERNS);
  if (user < 0) return 15;
  if (setns(user, CLONE_NEWUSER) != 0) return 11;
  if (setns(net, CLONE_NEWNET) != 0) return 12;
  int diag = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (diag < 0) return 13;
  char byte = 'S';
  struct iovec iov = {&byte, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &diag, sizeof(int));
  return sendmsg(channel, &msg, MSG_NOSIGNAL) == 1 ? 0 : 14;
}

Napi::Value OpenSockDiag(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t pid;
  if (!GetIndex(env, info[0], "pid", 0x3fffffff, &pid)) return Napi::Value();
  char net_ns[64];
  snprintf(net_ns, sizeof net_ns, "/proc/%zu/ns/net", pid);
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    ThrowErrno(env, "socketpair", errno);
    return Napi::Value();
  }
  pid_t child = fork();
  if (child < 0) {
    int err = errno;
    close(pair[0]);
    close(pair[1]);
    ThrowErrno(env, "fork", err);
    return Napi::Value();
  }
  if (child == 0) _exit(JoinAndOpen(net_ns, pair[1]));
  close(pair[1]);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  int fd = -1;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    char byte;
    struct iovec iov = {&byte, 1};
    union {
      char buf[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } control;
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    if (recvmsg(pair[0], &msg, MSG_CMSG_CLOEXEC) == 1) {
      struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
      if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int))) memcpy(&fd, CMSG_DATA(c), sizeof(int));
    }
  }
  close(pair[0]);
  // An answer that never comes must not stall the supervisor: a lookup waits 100 ms at most.
  struct timeval limit = {0, 100 * 1000};
  if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) != 0) {
    close(fd);
    fd = -1;
  }
  if (fd < 0) {
    char why[96];
    snprintf(why, sizeof why, "cannot open a sock_diag socket in the sandbox's network namespace (step %d)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    Napi::Error::New(env, why).ThrowAsJavaScriptException();
    return Napi::Value();
  }
  return Napi::Number::New(env, fd);
}

bool GetAddress(napi_env env, napi_value value, const char* what, size_t want, uint8_t* out) {
  bool is_buffer = false;
  napi_is_buffer(env, value, &is_buffer);
  void* data;
  size_t length;
  if (!is_buffer || napi_get_buffer_info(env, value, &data, &length) != napi_ok || length != want) {
    Napi::TypeError::New(env, std::string(what) + " must be a Buffer of the address's bytes").ThrowAsJavaScriptException();
    return false;
  }
  memcpy(out, data, want);
  return true;
}

// The inode in one reply to our request: 0 for an error (ENOENT: no such socket) or an answer that is
// not this flow's socket (its own port, and the peer's unless unconnected, must be the flow's).
long long Answer(const struct nlmsghdr* h, uint16_t local_port, uint16_t remote_port) {
  if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) return 0;
  const struct inet_diag_msg* m = static_cast<const struct inet_diag_msg*>(NLMSG_DATA(h));
  if (ntohs(m->id.idiag_sport) != local_port) return 0;
  if (m->id.idiag_dport != 0 && ntohs(m->id.idiag_dport) != remote_port) return 0;
  return m->idiag_inode;
}

uint32_t next_seq = 1;

// One exact lookup; the inode, 0 when the kernel has no such socket, -1 on a transport error (or no
// answer within the socket's receive timeout). Replies to earlier, timed-out requests are skipped by
// their sequence number.
long long Ask(int fd, uint8_t proto, uint8_t family, const uint8_t* local, uint16_t local_port, const uint8_t* remote, uint16_t remote_port) {
  struct {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 req;
  } request = {};
  request.nlh.nlmsg_len = sizeof request;
  request.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  request.nlh.nlmsg_flags = NLM_F_REQUEST;
  request.nlh.nlmsg_seq = next_seq++;
  request.req.sdiag_family = family;
  request.req.sdiag_protocol = proto;
  request.req.idiag_states = ~0u;
  size_t bytes = family == AF_INET ? 4 : 16;
  // TCP's exact lookup takes the socket's own end as "src"; UDP's is the receive path's lookup and
  // takes the remote end as "src" ("swapped for historical reasons", udp_diag.c).
  bool swap = proto == IPPROTO_UDP;
  request.req.id.idiag_sport = htons(swap ? remote_port : local_port);
  request.req.id.idiag_dport = htons(swap ? local_port : remote_port);
  memcpy(request.req.id.idiag_src, swap ? remote : local, bytes);
  memcpy(request.req.id.idiag_dst, swap ? local : remote, bytes);
  request.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  request.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  struct sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &request, sizeof request, 0, reinterpret_cast<struct sockaddr*>(&kernel), sizeof kernel) < 0) return -1;
  alignas(struct nlmsghdr) char reply[8192];
  for (int stale = 0; stale < 64; stale++) {
    ssize_t n;
    while ((n = recv(fd, reply, sizeof reply, 0)) < 0 && errno == EINTR) {
    }
    if (n < 0) return -1;
    for (struct nlmsghdr* h = reinterpret_cast<struct nlmsghdr*>(reply); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != request.nlh.nlmsg_seq) break;  // an answer to an earlier request: read on
      return Answer(h, local_port, remote_port);
    }
  }
  return -1;
}


// sockDiagInode(fd, proto 'tcp' | 'udp', family 4 | 6, src Buffer, srcPort, dst Buffer, dstPort)
Napi::Value SockDiagInode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t fd, family, src_port, dst_port;
  if (!GetIndex(env, info[0], "fd", 0x7fffffff, &fd) || !GetIndex(env, info[2], "family", 6, &family) || !GetIndex(env, info[4], "srcPort", 65535, &src_port) ||
      !GetIndex(env, info[6], "dstPort", 65535, &dst_port))
    return Napi::Value();
  if (!info[1].IsString() || (family != 4 && family != 6)) {
    Napi::TypeError::New(env, "proto must be 'tcp' or 'udp' and family 4 or 6").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  std::string proto = info[1].As<Napi::String>().Utf8Value();
  if (proto != "tcp" && proto != "udp") {
    Napi::TypeError::New(env, "proto must be 'tcp' or 'udp'").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  size_t bytes = family == 4 ? 4 : 16;
  uint8_t src[16] = {};
  uint8_t dst[16] = {};
  if (!GetAddress(env, info[3], "src", bytes, src) || !GetAddress(env, info[5], "dst", bytes, dst)) return Napi::Value();
  uint8_t ip_proto = proto == "tcp" ? IPPROTO_TCP : IPPROTO_UDP;
  uint8_t af = family == 4 ? AF_INET : AF_INET6;
  long long inode = Ask(static_cast<int>(fd), ip_proto, af, src, static_cast<uint16_t>(src_port), dst, static_cast<uint16_t>(dst_port));
  if (inode < 0) {
    ThrowErrno(env, "sock_diag", errno);
    return Napi::Value();
  }
  return Napi::Number::New(env, static_cast<double>(inode));
}

}  // namespace

void InitSockDiag(Napi::Env env, Napi::Object exports) {
  exports.Set("openSockDiag", Napi::Function::New(env, OpenSockDiag, "openSockDiag"));
  exports.Set("sockDiagInode", Napi::Function::New(env, SockDiagInode, "sockDiagInode"));
}

}  // namespace tapbox
