/* tapbox-launcher — puts a command in a rootless sandbox whose only network is a TAP device.
 *
 * Theory of operation
 * -------------------
 * The Node supervisor spawns us as
 *
 *     tapbox-launcher [options] -- COMMAND [ARGS...]
 *
 * with a SOCK_SEQPACKET control socket on fd 3 (protocol in report.c). We run in two processes:
 *
 *   outer launcher (host namespaces)
 *     - dies with the supervisor (PR_SET_PDEATHSIG), checking the parent did not die first;
 *     - clone()s the sandbox with new user, mount, PID, UTS, IPC and cgroup namespaces, and a new
 *       network namespace unless --net host;
 *     - joins the sandbox's cgroup first when the supervisor prepared one (limits.c);
 *     - maps the invoking uid/gid to 0 in the new user namespace, and with --subuid/--subgid the
 *       user's subordinate ids to 1..N (userns.c), then lets it proceed;
 *     - with a store directory (-d), creates the run directory for the throw-away layers first and
 *       removes it after the sandbox exited (store.c);
 *     - forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH to it and exits with
 *       its status.
 *
 *   sandbox, PID 1 of the new PID namespace, root of the new user namespace
 *     - dies with the outer launcher (PR_SET_PDEATHSIG; the sync pipe closes the race), and can't be
 *       ptraced by the command (PR_SET_DUMPABLE 0);
 *     - sets the hostname, brings lo up and, under --net tap, creates and configures tap0 and sends
 *       its fd to the supervisor, keeping no copy (netdev.c);
 *     - builds the filesystem of the chosen mode and pivots into it (filesystem.c);
 *     - waits for "GO" from the supervisor, whose stack then reads the TAP;
 *     - forks the command and stays PID 1 for it (init.c); the command gets its own session, a nested
 *       user namespace with its final uid, its limits, a reduced capability bounding set, no
 *       descriptor above 2, no_new_privs and a seccomp filter (init.c lists the steps).
 *
 * Everything fails closed: a failed step is reported as "ERR <CODE> <sentence>" on fd 3 (or on stderr
 * when run by hand), the launcher exits 125, and the command never starts. The command's own exit
 * code passes through; 128+N when it is killed by signal N.
 *
 * With --join PID it makes no sandbox: it starts the command inside the running one (join.c). With
 * --userns-only, --apply-owners or --remove-tree it serves the image store instead (idmap.c).
 *
 * The launcher is single-threaded, so after clone() the child may call anything the parent could.
 */
#include "idmap.h"
#include "init.h"
#include "join.h"
#include "limits.h"
#include "mounts.h"
#include "netdev.h"
#include "plan.h"
#include "report.h"
#include "signals.h"
#include "store.h"
#include "userns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static void set_hostname(const char *name)
{
	char reason[512];

	if (sethostname(name, strlen(name)) == 0)
		return;
	/* The first privileged step: a refusal here means the namespace came without its capabilities,
	 * which is how Ubuntu's AppArmor restriction shows up. */
	if (errno == EPERM) {
		userns_explain_refusal(reason, sizeof reason, errno);
		fail("EUSERNS", EXIT_SETUP_FAILED, "%s", reason);
	}
	fail("EUTS", EXIT_SETUP_FAILED, "setting the hostname to %s failed (%s)", name, strerror(errno));
}

/* The byte that lets the sandbox proceed says which maps the outer launcher wrote. */
#define SYNC_SINGLE '1'
#define SYNC_RANGED 'R'

static _Noreturn void sandbox_main(const struct launch_plan *plan, int sync_fd, const sigset_t *signals)
{
	char ready;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		_exit(EXIT_SETUP_FAILED);
	/* EOF instead of a byte: the outer launcher died or failed (and reported why). */
	if (read(sync_fd, &ready, 1) != 1)
		_exit(EXIT_SETUP_FAILED);
	close(sync_fd);
	if (ready == SYNC_RANGED)
		userns_set_ranged(plan);
	/* Not dumpable (once the outer launcher has written our maps through /proc): the command, same
	 * uid, can't ptrace PID 1 to borrow its capabilities over the sandbox's unlocked mounts. */
	if (prctl(PR_SET_DUMPABLE, 0) != 0)
		_exit(EXIT_SETUP_FAILED);

	set_hostname(plan->hostname);
	if (plan->probe) /* namespaces created, uid mapped, capabilities held inside: all it takes */
		_exit(0);
	if (plan->net.mode != NET_HOST) {
		int tap = netdev_setup(&plan->net);
		if (tap >= 0) {
			int err = control_send_fd("TAP", tap);
			if (err < 0)
				fail("ETUN", EXIT_SETUP_FAILED, "handing the TAP device to the supervisor failed (%s)",
				     strerror(-err));
			close(tap);
		}
	}
	filesystem_setup(plan);
	control_wait_go();
	init_run(plan, signals);
}

/* The sandbox's uid/gid maps: with --subuid/--subgid the ranges when newuidmap agrees, else the
 * invoking ids alone (userns.c). Returns the byte that tells the sandbox which. */
static char write_sandbox_maps(const struct launch_plan *plan, pid_t child)
{
	char reason[512];
	int err;

	if (plan->subuid.count) {
		err = userns_map_subordinate(child, plan, reason, sizeof reason);
		if (err == 0)
			return SYNC_RANGED;
		if (err == -2) {
			kill(child, SIGKILL);
			fail("EUSERNS", EXIT_SETUP_FAILED, "newgidmap refused your subordinate gids (%s); give yourself a range in /etc/subgid "
							   "(sudo usermod --add-subgids 100000-165535 $USER) or remove the uid range from /etc/subuid", reason);
		}
		warn("newuidmap refused your subordinate uids (%s), so files of the image owned by others than you show as nobody; "
		     "install uidmap (its newuidmap must be setuid root) and give yourself a range: "
		     "sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER", reason);
	}
	err = userns_write_maps(child, 0, plan->outer_uid, 0, plan->outer_gid);
	if (err < 0) {
		kill(child, SIGKILL);
		userns_explain_refusal(reason, sizeof reason, -err);
		fail("EUSERNS", EXIT_SETUP_FAILED, "writing the user namespace's uid/gid maps failed: %s", reason);
	}
	return SYNC_SINGLE;
}

static pid_t clone_sandbox(const struct launch_plan *plan)
{
	unsigned long flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC |
			      CLONE_NEWCGROUP | SIGCHLD;

	if (plan->net.mode != NET_HOST)
		flags |= CLONE_NEWNET;
	/* The raw syscall with no stack behaves like fork(): the child continues right here. */
	return syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
}

int main(int argc, char **argv)
{
	pid_t parent = getppid();
	struct launch_plan plan;
	char reason[512];
	sigset_t signals;
	int sync[2];

	control_init();
	plan_parse(&plan, argc, argv);
	if (plan.sweep_store) {
		store_sweep(plan.sweep_store);
		return 0;
	}
	if (plan.join_pid) {
		signals_block(&signals);
		join_run(&plan, &signals);
	}
	if (plan.apply_owners)
		return idmap_apply_owners(plan.apply_owners);
	if (plan.remove_tree)
		return idmap_remove_tree(plan.remove_tree);
	if (plan.net.mode == NET_TAP && !control_connected())
		fail("EUSAGE", EXIT_SETUP_FAILED, "--net tap needs the supervisor's control socket on fd 3; "
						  "run the command through tapbox, or pass --net none");
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(EXIT_SETUP_FAILED);
	if (plan.userns_only) {
		signals_block(&signals);
		idmap_run_bare(&plan, &signals);
	}

	store_prepare(&plan);
	if (plan.cgroup)
		limits_join_cgroup(plan.cgroup);
	signals_block(&signals);
	if (pipe2(sync, O_CLOEXEC) != 0)
		fail("EINIT", EXIT_SETUP_FAILED, "creating a pipe failed (%s)", strerror(errno));

	pid_t child = clone_sandbox(&plan);
	if (child < 0) {
		userns_explain_refusal(reason, sizeof reason, errno);
		fail("EUSERNS", EXIT_SETUP_FAILED, "%s", reason);
	}
	if (child == 0) {
		close(sync[1]);
		sandbox_main(&plan, sync[0], &signals);
	}
	close(sync[0]);

	char ready = write_sandbox_maps(&plan, child);
	if (write(sync[1], &ready, 1) != 1)
		fail("EINIT", EXIT_SETUP_FAILED, "starting the sandbox failed (%s)", strerror(errno));
	close(sync[1]);
	int code = supervise(child, &signals, 0, 0);
	store_remove(&plan);
	return code;
}
