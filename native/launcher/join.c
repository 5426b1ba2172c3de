/* join.c — `tapbox exec`: a new process inside a running sandbox (--join PID).
 *
 * Theory of operation
 * -------------------
 * The box's supervisor hands the caller the host PID of the box's command and the launcher arguments
 * the box was started with; the caller runs
 *
 *     tapbox-launcher --join PID [the box's arguments] -- COMMAND [ARGS...]
 *
 * The command of a box lives in a nested user and mount namespace (userns.c) inside the sandbox's
 * user, PID, network, UTS, IPC and cgroup namespaces. We join them in the order the kernel's
 * ownership rules allow, from the host, as the box's own uid:
 *
 *   1. pidfd_open(PID), then the namespace descriptors from /proc/PID/ns, then a signal 0 through
 *      the pidfd: if PID died and its number was reused in between, that fails and we stop;
 *   2. the box's cgroup (--cgroup DIR, the directory the supervisor made): its limits count us;
 *   3. the sandbox's user namespace (the parent of the command's), where we hold every capability as
 *      its owner; then its PID, network, UTS, IPC and cgroup namespaces, which it owns;
 *   4. the command's mount namespace (its locked copy of the box's mounts, rooted at the box's root),
 *      then the command's nested user namespace, where our uid is the box command's uid;
 *   5. chdir to the box's working directory; fork, as joining a PID namespace only places children
 *      in it: the child is a process of the box under its PID 1, and takes the same last steps as the
 *      box's command (init_exec: limits, capability bounding set, no_new_privs, seccomp, exec).
 * The parent waits for it, forwarding signals, and exits with its status. It is not dumpable, so the
 * box's processes can't ptrace it while it holds capabilities in the sandbox's namespaces.
 *
 * A namespace we already share (the host's network under --net host) is skipped: setns to it is
 * refused, and there is nothing to join. Traffic needs nothing more: the network namespace's only
 * link is the box's tap0, read by its supervisor through its policy.
 */
#include "join.h"

#include "init.h"
#include "limits.h"
#include "report.h"
#include "signals.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define join_error(...) fail("ENOBOX", EXIT_SETUP_FAILED, __VA_ARGS__)

struct ns {
	const char *name;
	int type;
	int fd;
};

static int open_ns(pid_t pid, const char *name)
{
	char path[64];
	int fd;

	snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)pid, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		join_error("opening %s failed (%s); is the box still running, and is it yours?", path, strerror(errno));
	return fd;
}

/* Whether we are in that namespace already. */
static int shared(int fd, const char *name)
{
	char path[64];
	struct stat ours, theirs;

	snprintf(path, sizeof path, "/proc/self/ns/%s", name);
	return stat(path, &ours) == 0 && fstat(fd, &theirs) == 0 && ours.st_ino == theirs.st_ino &&
	       ours.st_dev == theirs.st_dev;
}

static void enter(int fd, int type, const char *name)
{
	if (shared(fd, name))
		return;
	if (setns(fd, type) != 0)
		join_error("joining the box's %s namespace failed (%s)", name, strerror(errno));
}

_Noreturn void join_run(const struct launch_plan *plan, const sigset_t *signals)
{
	struct ns outer[] = {
		{ "pid", CLONE_NEWPID, -1 }, { "net", CLONE_NEWNET, -1 }, { "uts", CLONE_NEWUTS, -1 },
		{ "ipc", CLONE_NEWIPC, -1 }, { "cgroup", CLONE_NEWCGROUP, -1 },
	};
	pid_t pid = plan->join_pid;
	int pidfd = syscall(SYS_pidfd_open, pid, 0);

	if (pidfd < 0)
		join_error("the box's process %d is gone (%s); the box has stopped", (int)pid, strerror(errno));
	int user = open_ns(pid, "user");
	int mnt = open_ns(pid, "mnt");
	for (size_t i = 0; i < sizeof outer / sizeof outer[0]; i++)
		outer[i].fd = open_ns(pid, outer[i].name);
	int sandbox_user = ioctl(user, NS_GET_PARENT);
	if (sandbox_user < 0)
		join_error("finding the box's user namespace failed (%s)", strerror(errno));
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) != 0)
		join_error("the box's process %d ended while we joined it; the box has stopped", (int)pid);
	close(pidfd);

	if (prctl(PR_SET_DUMPABLE, 0) != 0)
		join_error("making the helper undumpable failed (%s)", strerror(errno));
	if (plan->cgroup)
		limits_join_cgroup(plan->cgroup);
	enter(sandbox_user, CLONE_NEWUSER, "user");
	for (size_t i = 0; i < sizeof outer / sizeof outer[0]; i++)
		enter(outer[i].fd, outer[i].type, outer[i].name);
	enter(mnt, CLONE_NEWNS, "mnt");
	enter(user, CLONE_NEWUSER, "user");
	if (chdir(plan->cwd) != 0)
		join_error("changing to the box's working directory %s failed (%s)", plan->cwd, strerror(errno));

	pid_t child = fork();
	if (child < 0)
		fail("EINIT", EXIT_SETUP_FAILED, "starting the command in the box failed (%s); the box may be at its --pids limit",
		     strerror(errno));
	if (child == 0) {
		init_new_session();
		/* Our own /proc/self maps stay ours to write after exec (exec resets it anyway). */
		prctl(PR_SET_DUMPABLE, 1);
		init_exec(plan);
	}
	_exit(supervise(child, signals, 0, 0));
}
