/* limits.c — --memory, --pids and --cpus, enforced with what an unprivileged process has.
 *
 *   --memory  RLIMIT_AS on the command and everything it starts: each process may map at most that
 *             much address space, so an allocation loop fails (ENOMEM) or dies instead of eating the
 *             host. Address space is not resident memory: runtimes that reserve large heaps up front
 *             (the JVM, Go, Node) need a generous value.
 *   --pids    RLIMIT_NPROC, set after the command entered its own user namespace. The kernel counts
 *             processes per user *per user namespace* (Linux 5.14+), so the limit counts the
 *             sandbox's processes only, not the caller's others; a fork bomb stops there.
 *   --cpus    the CPU affinity: the command and its children run on N of the CPUs it may use.
 * cgroup v2 would cap resident memory and CPU time instead; it needs a cgroup delegated to the user
 * (systemd's Delegate=), which the launcher does not create or use (yet). A limit that can't be set
 * (above the caller's own hard limit, say) stops the launch: nothing runs unlimited, or less limited
 * than asked, after asking for a limit.
 */
#include "limits.h"

#include "report.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>

#define limit_error(...) fail("ELIMIT", EXIT_SETUP_FAILED, __VA_ARGS__)

static void set_rlimit(int resource, unsigned long long value, const char *flag, const char *ulimit)
{
	struct rlimit limit = { .rlim_cur = value, .rlim_max = value }, hard;

	if (setrlimit(resource, &limit) == 0)
		return;
	/* Only a privileged process may raise its hard limit: asking above it is not silently lowered. */
	if (errno == EPERM && getrlimit(resource, &hard) == 0 && hard.rlim_max != RLIM_INFINITY && hard.rlim_max < value)
		limit_error("%s %llu can't be enforced: you run under a hard limit of %llu (%s); ask for at most that", flag,
			    value, (unsigned long long)hard.rlim_max, ulimit);
	limit_error("%s could not be enforced (%s)", flag, strerror(errno));
}

static void restrict_cpus(unsigned cpus)
{
	cpu_set_t allowed;
	unsigned kept = 0;

	if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
		limit_error("--cpus could not be enforced: reading the CPU affinity failed (%s)", strerror(errno));
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed))
			continue;
		if (kept < cpus)
			kept++;
		else
			CPU_CLR(cpu, &allowed);
	}
	if (sched_setaffinity(0, sizeof allowed, &allowed) != 0)
		limit_error("--cpus could not be enforced: setting the CPU affinity failed (%s)", strerror(errno));
}

void limits_apply(const struct limits *limits)
{
	if (limits->memory_bytes)
		set_rlimit(RLIMIT_AS, limits->memory_bytes, "--memory", "bytes; ulimit -Hv shows KiB");
	if (limits->pids)
		set_rlimit(RLIMIT_NPROC, limits->pids, "--pids", "processes; ulimit -Hu");
	if (limits->cpus)
		restrict_cpus(limits->cpus);
}
