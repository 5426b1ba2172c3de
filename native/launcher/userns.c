/* userns.c — user namespaces.
 *
 * The sandbox uses two user namespaces. The outer launcher clones the first one and maps the invoking
 * uid/gid to 0 in it, so the setup (netns, mounts, hostname) runs with full capabilities over the
 * sandbox's own namespaces and none over the host's. The command then runs in a nested one (as
 * bubblewrap does for --uid), mapped to the uid it should see: 0, the invoking uid, or nobody.
 *
 * With --subuid/--subgid (a root of the user's own, such as an image's, whose files have other owners),
 * the outer namespace also maps ids 1..N to the user's subordinate range, as rootless podman does. Only
 * the setuid newuidmap/newgidmap (shadow's "uidmap") may write such maps, and they check the range
 * against /etc/subuid and /etc/subgid themselves: the launcher can't widen it. If newuidmap refuses
 * (not installed, not setuid, no range), the single map is written instead and the supervisor is
 * warned; if newgidmap refuses after newuidmap agreed, nothing runs.
 *
 * setgroups: an unprivileged gid map needs setgroups(2) denied for good, but newgidmap allows it in
 * the outer namespace (a subordinate gid range is the admin's grant). Dropping a supplementary group
 * must stay impossible for the command, or it could read a file whose group is denied what others may
 * (mode 0604, group "staff"). So the command's nested namespace always has setgroups denied, which
 * its own children inherit; with the range, that map is wider than one id, which only a process with
 * CAP_SETUID over the outer namespace may write: PID 1 writes it for the command (userns_map_nested),
 * identity over 0..N, with "deny" first. PID 1 and the setup never call setgroups.
 */
#include "userns.h"

#include "report.h"
#include "signals.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The subordinate ids mapped to 1..N in the sandbox's namespace (0: the single map). */
static unsigned long ranged_uids, ranged_gids;

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

/* Writes the maps (uid_map's and gid_map's lines), setgroups denied first: an unprivileged gid_map is
 * accepted only then, and the command must never drop a group (see above). */
static int write_maps(int dirfd, const char *proc_dir, const char *uid_map, const char *gid_map)
{
	char path[64];
	int err;

	snprintf(path, sizeof path, "%s/setgroups", proc_dir);
	if ((err = write_file(dirfd, path, "deny")) != 0)
		return err;
	snprintf(path, sizeof path, "%s/uid_map", proc_dir);
	if ((err = write_file(dirfd, path, uid_map)) != 0)
		return err;
	snprintf(path, sizeof path, "%s/gid_map", proc_dir);
	return write_file(dirfd, path, gid_map);
}

/* Maps one id outside to one id inside. */
static int write_single_maps(int dirfd, const char *proc_dir, uid_t inside_uid, uid_t outside_uid, gid_t inside_gid,
			     gid_t outside_gid)
{
	char uid_map[64], gid_map[64];

	snprintf(uid_map, sizeof uid_map, "%u %u 1\n", inside_uid, outside_uid);
	snprintf(gid_map, sizeof gid_map, "%u %u 1\n", inside_gid, outside_gid);
	return write_maps(dirfd, proc_dir, uid_map, gid_map);
}

int userns_write_maps(pid_t pid, uid_t inside_uid, uid_t outside_uid, gid_t inside_gid, gid_t outside_gid)
{
	char proc_dir[32];

	snprintf(proc_dir, sizeof proc_dir, "/proc/%d", (int)pid);
	return write_single_maps(AT_FDCWD, proc_dir, inside_uid, outside_uid, inside_gid, outside_gid);
}

/* Runs `helper PID 0 OWN 1 1 START COUNT` (newuidmap or newgidmap); 0, or -1 with its complaint in reason. */
static int run_map_helper(const char *helper, pid_t pid, unsigned long own, const struct id_range *range, char *reason,
			  size_t len)
{
	char pid_s[16], own_s[24], start_s[24], count_s[24];
	int out[2], status;
	size_t got = 0;
	ssize_t n;

	snprintf(pid_s, sizeof pid_s, "%d", (int)pid);
	snprintf(own_s, sizeof own_s, "%lu", own);
	snprintf(start_s, sizeof start_s, "%lu", range->start);
	snprintf(count_s, sizeof count_s, "%lu", range->count);
	if (pipe2(out, O_CLOEXEC) != 0) {
		snprintf(reason, len, "creating a pipe failed: %s", strerror(errno));
		return -1;
	}
	pid_t child = fork();
	if (child < 0) {
		snprintf(reason, len, "starting %s failed: %s", helper, strerror(errno));
		close(out[0]);
		close(out[1]);
		return -1;
	}
	if (child == 0) {
		dup2(out[1], STDOUT_FILENO);
		dup2(out[1], STDERR_FILENO);
		execlp(helper, helper, pid_s, "0", own_s, "1", "1", start_s, count_s, (char *)NULL);
		dprintf(STDERR_FILENO, "%s: %s", helper, errno == ENOENT ? "not installed" : strerror(errno));
		_exit(127);
	}
	close(out[1]);
	while (got < len - 1 && (n = read(out[0], reason + got, len - 1 - got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		got += n;
	}
	close(out[0]);
	reason[got] = '\0';
	while (got > 0 && (reason[got - 1] == '\n' || reason[got - 1] == ' '))
		reason[--got] = '\0';
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (got == 0)
		snprintf(reason, len, "%s exited with status %d", helper, exit_code_of(status));
	return -1;
}

int userns_map_subordinate(pid_t pid, const struct launch_plan *plan, char *reason, size_t len)
{
	if (run_map_helper("newuidmap", pid, plan->outer_uid, &plan->subuid, reason, len) != 0)
		return -1;
	if (run_map_helper("newgidmap", pid, plan->outer_gid, &plan->subgid, reason, len) != 0)
		return -2;
	return 0;
}

void userns_set_ranged(const struct launch_plan *plan)
{
	ranged_uids = plan->subuid.count;
	ranged_gids = plan->subgid.count;
}

bool userns_ranged(void)
{
	return ranged_uids != 0;
}

void userns_enter_nested_ranged(int handshake)
{
	char reason[512], byte = 1;

	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
		userns_explain_refusal(reason, sizeof reason, errno);
		fail("EUSERNS", EXIT_SETUP_FAILED, "%s", reason);
	}
	/* PID 1 maps us, then answers; EOF: it failed and reported why. */
	if (write(handshake, &byte, 1) != 1 || read(handshake, &byte, 1) != 1)
		_exit(EXIT_SETUP_FAILED);
	close(handshake);
}

void userns_map_nested(pid_t command, int handshake, int proc)
{
	char proc_dir[32], uid_map[64], gid_map[64], byte;
	int err;

	/* EOF: the command failed before it unshared (and said why); its exit status ends the sandbox. */
	if (read(handshake, &byte, 1) != 1) {
		close(handshake);
		return;
	}
	/* One line per extent of the outer map (0, then the range): the kernel maps a line through one only. */
	snprintf(proc_dir, sizeof proc_dir, proc >= 0 ? "%d" : "/proc/%d", (int)command);
	snprintf(uid_map, sizeof uid_map, "0 0 1\n1 1 %lu\n", ranged_uids);
	snprintf(gid_map, sizeof gid_map, "0 0 1\n1 1 %lu\n", ranged_gids);
	err = write_maps(proc >= 0 ? proc : AT_FDCWD, proc_dir, uid_map, gid_map);
	if (err != 0) {
		kill(command, SIGKILL);
		fail("EUSERNS", EXIT_SETUP_FAILED, "mapping the command's ids 0-%lu in its nested user namespace failed (%s)",
		     ranged_uids, strerror(-err));
	}
	if (write(handshake, &byte, 1) != 1)
		kill(command, SIGKILL);
	close(handshake);
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
	if ((err = proc >= 0 ? write_single_maps(proc, "self", uid, 0, gid, 0) : write_single_maps(AT_FDCWD, "/proc/self", uid, 0, gid, 0)) != 0)
		fail("EUSERNS", EXIT_SETUP_FAILED,
		     "mapping the command's uid %u in its nested user namespace failed (%s); run without --same-uid/--nobody",
		     uid, strerror(-err));
}
