/* init.c — PID 1 of the sandbox and the command's last steps before exec.
 *
 * PID 1 forks the command, forwards the signals it receives to it, reaps every zombie of the
 * namespace (orphans are re-parented to it), and exits with the command's status as soon as the
 * command exits: the kernel then kills whatever is left in the PID namespace. Under --timeout it
 * sends SIGTERM to every process of the namespace when the time is up, and SIGKILL --grace seconds
 * later.
 *
 * The command's last steps, in order: a new session; its own user namespace with its final uid
 * (userns.c; with the user's subordinate ids, PID 1 writes its maps); the resource limits (limits.c);
 * the capability bounding set (capabilities.c); default signal dispositions; every descriptor above
 * 2 close-on-exec (the TAP's, the control socket, the store's lock); no_new_privs; the seccomp filter
 * (seccomp.c), last, as it forbids some of the steps above.
 */
#include "init.h"

#include "capabilities.h"
#include "limits.h"
#include "mounts.h"
#include "report.h"
#include "seccomp.h"
#include "signals.h"
#include "userns.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOBODY 65534

static void identity_inside(const struct launch_plan *plan, uid_t *uid, gid_t *gid)
{
	*uid = 0;
	*gid = 0;
	if (plan->identity == IDENTITY_SAME_UID) {
		*uid = plan->outer_uid;
		*gid = plan->outer_gid;
	} else if (plan->identity == IDENTITY_NOBODY) {
		*uid = NOBODY;
		*gid = NOBODY;
	}
}

/* Whether some $PATH directory holds a file of that name (execvp says EACCES, not ENOENT, when a
 * $PATH directory is unreadable, even if the command exists nowhere). */
static bool on_path(const char *name)
{
	const char *dir = getenv("PATH") ? getenv("PATH") : "/bin:/usr/bin";
	char candidate[PATH_MAX];
	struct stat st;

	for (;;) {
		int len = strcspn(dir, ":");
		/* An empty $PATH entry means the current directory. */
		int n = len ? snprintf(candidate, sizeof candidate, "%.*s/%s", len, dir, name)
			    : snprintf(candidate, sizeof candidate, "%s", name);
		if (n < (int)sizeof candidate && stat(candidate, &st) == 0)
			return true;
		if (dir[len] == '\0')
			return false;
		dir += len + 1;
	}
}

static _Noreturn void report_exec_failure(const char *command, int err)
{
	struct stat st;

	if (err == EACCES && !strchr(command, '/') && !on_path(command))
		err = ENOENT;
	if (err == ENOENT && strchr(command, '/') && stat(command, &st) == 0)
		fail("ENOENT", EXIT_NOT_FOUND, "cannot run %s: its interpreter (the #! line) or a library it needs is missing",
		     command);
	if (err == ENOENT)
		fail("ENOENT", EXIT_NOT_FOUND, "command not found: %s", command);
	if (err == EACCES)
		fail("EACCES", EXIT_NOT_EXECUTABLE, "permission denied: %s is not executable (chmod +x it, or run it through its interpreter)",
		     command);
	fail("EEXEC", EXIT_NOT_EXECUTABLE, "cannot run %s: %s", command, strerror(err));
}

void init_new_session(void)
{
	/* A new session: the command can't reach the caller's terminal (TIOCSTI needs it as the
	 * controlling terminal). A pty slave from the supervisor becomes its own controlling terminal,
	 * so job control works; an inherited terminal stays someone else's, and that is fine. */
	setsid();
	if (isatty(STDIN_FILENO))
		ioctl(STDIN_FILENO, TIOCSCTTY, 0);
}

/* handshake: our end of the socketpair over which PID 1 maps the subordinate ids for us, or -1. */
static _Noreturn void exec_command(const struct launch_plan *plan, int handshake)
{
	uid_t uid;
	gid_t gid;

	init_new_session();
	/* PID 1's PR_SET_DUMPABLE 0 was inherited; our own /proc/self maps must be writable by us (or
	 * PID 1's /proc/PID of ours, by it). */
	prctl(PR_SET_DUMPABLE, 1);
	identity_inside(plan, &uid, &gid);
	if (handshake >= 0)
		userns_enter_nested_ranged(handshake);
	else
		userns_enter_nested(uid, gid, filesystem_hidden_proc());
	init_exec(plan);
}

_Noreturn void init_exec(const struct launch_plan *plan)
{
	limits_apply(&plan->limits);
	caps_restrict(plan->keep_caps);
	signals_reset_for_exec();
	/* Every fd above 2 is closed by exec; fd 3 stays usable until then to report an exec failure. */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
		fail("EINIT", EXIT_SETUP_FAILED, "marking inherited descriptors close-on-exec failed (%s); Linux 5.11 or newer is required",
		     strerror(errno));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		fail("EINIT", EXIT_SETUP_FAILED, "setting no_new_privs failed (%s)", strerror(errno));
	seccomp_install(&plan->seccomp);

	execvp(plan->command[0], plan->command);
	report_exec_failure(plan->command[0], errno);
}

/* The deadline's next step: SIGTERM to everyone, then SIGKILL after the grace period. */
struct deadline {
	struct timespec at;
	int signal; /* 0: none pending */
	unsigned grace_s;
	unsigned timeout_s;
};

static void deadline_start(struct deadline *d, unsigned timeout_s, unsigned grace_s)
{
	*d = (struct deadline){ .signal = timeout_s ? (grace_s ? SIGTERM : SIGKILL) : 0, .grace_s = grace_s,
				.timeout_s = timeout_s };
	clock_gettime(CLOCK_MONOTONIC, &d->at);
	d->at.tv_sec += timeout_s;
}

static struct timespec deadline_remaining(const struct deadline *d)
{
	struct timespec now, left;

	clock_gettime(CLOCK_MONOTONIC, &now);
	left.tv_sec = d->at.tv_sec - now.tv_sec;
	left.tv_nsec = d->at.tv_nsec - now.tv_nsec;
	if (left.tv_nsec < 0) {
		left.tv_sec--;
		left.tv_nsec += 1000000000L;
	}
	if (left.tv_sec < 0)
		left = (struct timespec){ 0, 0 };
	return left;
}

/* The message only if stderr takes it now: a command that filled a stderr pipe nobody reads must
 * not keep PID 1 blocked past its deadline (and the signal already went). */
static void say_if_writable(const char *fmt, unsigned a, unsigned b)
{
	struct pollfd err = { .fd = STDERR_FILENO, .events = POLLOUT };

	if (poll(&err, 1, 0) == 1 && (err.revents & POLLOUT))
		dprintf(STDERR_FILENO, fmt, a, b);
}

/* From PID 1, kill(-1) reaches every other process of the sandbox's PID namespace. */
static void deadline_expired(struct deadline *d)
{
	kill(-1, d->signal);
	if (d->signal == SIGTERM)
		say_if_writable("tapbox: the command ran past --timeout %us; stopping it (SIGTERM, SIGKILL in %us)\n",
				d->timeout_s, d->grace_s);
	else if (d->grace_s == 0)
		say_if_writable("tapbox: the command ran past --timeout %us; killing it\n", d->timeout_s, 0);
	if (d->signal == SIGTERM) {
		d->signal = SIGKILL;
		d->at.tv_sec += d->grace_s;
	} else {
		d->signal = 0;
	}
}

int supervise(pid_t pid, const sigset_t *signals, unsigned timeout_s, unsigned grace_s)
{
	struct deadline deadline;

	deadline_start(&deadline, timeout_s, grace_s);
	for (;;) {
		siginfo_t info;
		int sig;

		if (deadline.signal) {
			struct timespec left = deadline_remaining(&deadline);
			sig = sigtimedwait(signals, &info, &left);
			if (sig < 0 && errno == EAGAIN) {
				deadline_expired(&deadline);
				continue;
			}
		} else {
			sig = sigwaitinfo(signals, &info);
		}
		if (sig < 0)
			continue; /* EINTR only: the set is valid */
		if (sig != SIGCHLD) {
			kill(pid, sig);
			continue;
		}
		/* As PID 1 we also collect re-parented orphans here. */
		int status;
		pid_t done;
		while ((done = waitpid(-1, &status, WNOHANG)) > 0) {
			if (done == pid)
				return exit_code_of(status);
		}
	}
}

_Noreturn void init_run(const struct launch_plan *plan, const sigset_t *signals)
{
	int handshake[2] = { -1, -1 };

	/* Root with the subordinate ids: a nested map wider than one id, which only we may write (userns.c). */
	if (userns_ranged() && plan->identity == IDENTITY_ROOT &&
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, handshake) != 0)
		fail("EINIT", EXIT_SETUP_FAILED, "creating a socket pair failed (%s)", strerror(errno));
	pid_t command = fork();

	if (command < 0)
		fail("EINIT", EXIT_SETUP_FAILED, "starting the command failed (%s); raise the process limit (ulimit -u)",
		     strerror(errno));
	if (command == 0) {
		if (handshake[0] >= 0)
			close(handshake[0]);
		exec_command(plan, handshake[1]);
	}
	if (handshake[0] >= 0) {
		close(handshake[1]);
		userns_map_nested(command, handshake[0], filesystem_hidden_proc());
	}
	_exit(supervise(command, signals, plan->timeout_s, plan->grace_s));
}
