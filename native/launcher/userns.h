/* userns.h — user namespace maps, the nested namespace of the command, and why a kernel said no. */
#ifndef TAPBOX_USERNS_H
#define TAPBOX_USERNS_H

#include "plan.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Maps outside_uid/gid (ours) to inside_uid/gid in pid's new user namespace. Returns 0 or -errno. */
int userns_write_maps(pid_t pid, uid_t inside_uid, uid_t outside_uid, gid_t inside_gid, gid_t outside_gid);

/* Maps 0 to our uid/gid and 1..count to plan's subordinate ranges in pid's new user namespace, through
 * newuidmap and newgidmap. Returns 0; -1 when newuidmap refused (nothing was mapped); -2 when newgidmap
 * refused after newuidmap mapped the uids. reason: the helper's own complaint. */
int userns_map_subordinate(pid_t pid, const struct launch_plan *plan, char *reason, size_t len);

/* In the sandbox, once the outer launcher mapped plan's ranges: the command's nested namespace then
 * maps them too (root identity only; --same-uid and --nobody keep their single id). */
void userns_set_ranged(const struct launch_plan *plan);
bool userns_ranged(void);

/* The nested namespace with the ranges, in two halves over a socketpair: the command unshares and
 * waits; PID 1 (which holds CAP_SETUID over the sandbox's namespace) writes its maps (setgroups denied,
 * ids 0..N as they are) and lets it go on. proc as for userns_enter_nested. */
void userns_enter_nested_ranged(int handshake);
void userns_map_nested(pid_t command, int handshake, int proc);

/* One sentence: why user namespaces were refused (err) and which setting fixes it, read from /proc/sys. */
void userns_explain_refusal(char *buf, size_t len, int err);

/* In the command's process: enters a nested user+mount namespace where it is uid/gid, 0 of the
 * sandbox's namespace outside. Copying the mounts into a less privileged namespace locks them, so the
 * command, even as root inside, can neither unmount nor remount writable what setup made read-only.
 * proc: a descriptor of a proc instance of the sandbox's PID namespace when none is mounted at /proc,
 * else -1. */
void userns_enter_nested(uid_t uid, gid_t gid, int proc);

#endif
