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
 * With --join-tty (`tapbox exec -t`), before the fork we open a pty in the box's own devpts (its
 * /dev/ptmx, as a terminal opened inside the box would be: `tty` and ttyname() find it in its
 * /dev/pts), send its master to the caller on the control socket (fd 3, "PTY" + SCM_RIGHTS), and wait
 * for "GO" (the caller has sized it to its terminal); the child gets the slave as the fds named, and as
 * its controlling terminal when stdin is one. The caller relays between its terminal and the master.
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

/* A pty of the box's devpts (we are in its mount namespace): its master goes to the caller, its slave
 * is returned for the command. */
static int open_box_terminal(void)
{
	int unlock = 0;

	if (!control_connected())
		join_error("--join-tty hands the terminal's master over the control socket on fd 3, and there is none; run it through tapbox exec -t");
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		join_error("opening a terminal in the box (/dev/ptmx) failed (%s); run exec without -t", strerror(errno));
	if (ioctl(master, TIOCSPTLCK, &unlock) != 0)
		join_error("unlocking the box's terminal failed (%s); run exec without -t", strerror(errno));
	int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
		join_error("opening the box's terminal's slave failed (%s); run exec without -t", strerror(errno));
	int err = control_send_fd("PTY", master);
	if (err < 0)
		join_error("handing the box's terminal to tapbox failed (%s)", strerror(-err));
	close(master);
	control_wait_go();
	/* What fails from here (e.g. command not found) is said on stderr, the terminal with -t. */
	control_close();
	return slave;
}

/* The child's stdin, stdout, stderr named in `fds` become the terminal. */
static void use_terminal(int slave, unsigned fds)
{
	for (int fd = 0; fd <= 2; fd++)
		if ((fds & (1u << fd)) && dup2(slave, fd) < 0)
			fail("EINIT", EXIT_SETUP_FAILED, "giving the command its terminal failed (%s)", strerror(errno));
	close(slave);
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

	int terminal = plan->join_tty ? open_box_terminal() : -1;

	pid_t child = fork();
	if (child < 0)
		fail("EINIT", EXIT_SETUP_FAILED, "starting the command in the box failed (%s); the box may be at its --pids limit",
		     strerror(errno));
	if (child == 0) {
		if (terminal >= 0)
			use_terminal(terminal, plan->join_tty);
		init_new_session();
		/* Our own /proc/self maps stay ours to write after exec (exec resets it anyway). */
		prctl(PR_SET_DUMPABLE, 1);
		init_exec(plan);
	}
	if (terminal >= 0)
		close(terminal);
	_exit(supervise(child, signals, 0, 0));
}
