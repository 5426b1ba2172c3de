/* userns.h — user namespace maps, the nested namespace of the command, and why a kernel said no. */
#ifndef TAPBOX_USERNS_H
#define TAPBOX_USERNS_H

#include <stddef.h>
#include <sys/types.h>

/* Maps outside_uid/gid (ours) to inside_uid/gid in pid's new user namespace. Returns 0 or -errno. */
int userns_write_maps(pid_t pid, uid_t inside_uid, uid_t outside_uid, gid_t inside_gid, gid_t outside_gid);

/* One sentence: why user namespaces were refused (err) and which setting fixes it, read from /proc/sys. */
void userns_explain_refusal(char *buf, size_t len, int err);

/* In the command's process: enters a nested user+mount namespace where it is uid/gid, 0 of the
 * sandbox's namespace outside. Copying the mounts into a less privileged namespace locks them, so the
 * command, even as root inside, can neither unmount nor remount writable what setup made read-only.
 * proc: a descriptor of a proc instance of the sandbox's PID namespace when none is mounted at /proc,
 * else -1. */
void userns_enter_nested(uid_t uid, gid_t gid, int proc);

#endif
