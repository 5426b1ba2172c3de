/* userns.c — user namespaces.
 *
 * The sandbox uses two user namespaces. The outer launcher clones the first one and maps the invoking
 * uid/gid to 0 in it, so the setup (netns, mounts, hostname) runs with full capabilities over the
 * sandbox's own namespaces and none over the host's. The command then runs in a nested one (as
 * bubblewrap does for --uid), mapped to the uid it should see: 0, the invoking uid, or nobody.
 */
#include "userns.h"

#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int write_file(int dirfd, const char *path, const char *text)
{
	int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	int err = n < 0 ? -errno : (size_t)n == strlen(text) ? 0 : -EIO;
	close(fd);
	return err;
}

static int write_maps(int dirfd, const char *proc_dir, uid_t inside_uid, uid_t outside_uid, gid_t inside_gid,
		      gid_t outside_gid)
{
	char path[64], map[64];
	int err;

	/* An unprivileged gid_map is accepted only once setgroups(2) is denied for good. */
	snprintf(path, sizeof path, "%s/setgroups", proc_dir);
	if ((err = write_file(dirfd, path, "deny")) != 0)
		return err;
	snprintf(path, sizeof path, "%s/uid_map", proc_dir);
	snprintf(map, sizeof map, "%u %u 1\n", inside_uid, outside_uid);
	if ((err = write_file(dirfd, path, map)) != 0)
		return err;
	snprintf(path, sizeof path, "%s/gid_map", proc_dir);
	snprintf(map, sizeof map, "%u %u 1\n", inside_gid, outside_gid);
	return write_file(dirfd, path, map);
}

int userns_write_maps(pid_t pid, uid_t inside_uid, uid_t outside_uid, gid_t inside_gid, gid_t outside_gid)
{
	char proc_dir[32];

	snprintf(proc_dir, sizeof proc_dir, "/proc/%d", (int)pid);
	return write_maps(AT_FDCWD, proc_dir, inside_uid, outside_uid, inside_gid, outside_gid);
}

/* The integer in a /proc/sys file, or -1 when the file does not exist on this kernel. */
static long read_sysctl(const char *path)
{
	char buf[32] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	long value = -1;

	if (fd < 0)
		return -1;
	if (read(fd, buf, sizeof buf - 1) > 0)
		sscanf(buf, "%ld", &value);
	close(fd);
	return value;
}

void userns_explain_refusal(char *buf, size_t len, int err)
{
	long max_namespaces = read_sysctl("/proc/sys/user/max_user_namespaces");

	if (read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == 0)
		snprintf(buf, len, "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0); "
				   "enable them with: sudo sysctl -w kernel.unprivileged_userns_clone=1");
	else if (max_namespaces == 0)
		snprintf(buf, len, "user namespaces are disabled (user.max_user_namespaces=0); "
				   "enable them with: sudo sysctl -w user.max_user_namespaces=15000");
	else if (read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1)
		snprintf(buf, len, "AppArmor restricts unprivileged user namespaces "
				   "(kernel.apparmor_restrict_unprivileged_userns=1); allow them with: "
				   "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, "
				   "or install an AppArmor profile granting userns to tapbox-launcher");
	else if (err == ENOSPC || err == EUSERS)
		snprintf(buf, len, "the limit of user namespaces is reached (user.max_user_namespaces=%ld); "
				   "raise it with: sudo sysctl -w user.max_user_namespaces=%ld",
			 max_namespaces, max_namespaces * 2 + 1000);
	else
		snprintf(buf, len, "the kernel refused to create a user namespace (%s); if tapbox runs inside a "
				   "container, allow user namespaces there (e.g. docker run --security-opt "
				   "seccomp=unconfined --security-opt apparmor=unconfined)",
			 strerror(err));
}

void userns_enter_nested(uid_t uid, gid_t gid, int proc)
{
	char reason[512];
	int err;

	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
		userns_explain_refusal(reason, sizeof reason, errno);
		fail("EUSERNS", EXIT_SETUP_FAILED, "%s", reason);
	}
	/* Writing our own maps: uid/gid here is 0 in the parent namespace, the only id we may map. */
	/* Where the sandbox shows no /proc (-o, -h), through the detached instance filesystem.c kept. */
	if ((err = proc >= 0 ? write_maps(proc, "self", uid, 0, gid, 0) : write_maps(AT_FDCWD, "/proc/self", uid, 0, gid, 0)) != 0)
		fail("EUSERNS", EXIT_SETUP_FAILED,
		     "mapping the command's uid %u in its nested user namespace failed (%s); run without --same-uid/--nobody",
		     uid, strerror(-err));
}
