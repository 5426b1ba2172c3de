/* limits.c — the sandbox's resource limits: a cgroup when the supervisor prepared one, else what an
 * unprivileged process has.
 *
 * With a cgroup (--cgroup DIR, cgroup v2 delegated to the user, src/supervisor/cgroup.ts wrote memory.max,
 * pids.max and cpu.max there): the outer launcher moves itself into DIR before it clones the
 * sandbox, so PID 1 and everything the command starts are created inside it and the limits hold for
 * the sandbox as a whole, with no moment where a process of it runs outside. The sandbox's own
 * cgroup namespace is rooted there (CLONE_NEWCGROUP comes after the move).
 *
 * Without one, per process (the supervisor warned that they are so):
 *   --memory  RLIMIT_DATA: each process's heap and private mappings (brk, anonymous mmap) at most
 *             that much; an allocation loop fails with ENOMEM. Unlike RLIMIT_AS it does not count
 *             address space merely reserved (V8's code range, the JVM's heap reservation), so
 *             node, python and java start under a sensible cap. A fork gets its own.
 *   --pids    RLIMIT_NPROC, set after the command entered its own user namespace. The kernel counts
 *             processes per user *per user namespace* (Linux 5.14+), so the limit counts the
 *             sandbox's processes only, not the caller's others; a fork bomb stops there.
 *   --cpus    the CPU affinity: the command and its children run on N of the CPUs it may use.
 * --cpuset LIST is the affinity in both cases. A limit that can't be set (above the caller's own hard
 * limit, say) stops the launch: nothing runs unlimited, or less limited than asked, after asking for
 * a limit.
 */
#include "limits.h"

#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define limit_error(...) fail("ELIMIT", EXIT_SETUP_FAILED, __VA_ARGS__)

void limits_join_cgroup(const char *dir)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof path, "%s/cgroup.procs", dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || dprintf(fd, "%d\n", (int)getpid()) < 0)
		limit_error("joining the sandbox's cgroup %s failed (%s); run tapbox doctor", dir, strerror(errno));
	close(fd);
}

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

static void set_affinity(cpu_set_t *cpus, const char *flag)
{
	if (CPU_COUNT(cpus) == 0)
		limit_error("%s leaves no CPU to run on; name CPUs that are online and allowed to you (nproc, taskset -p $$)", flag);
	if (sched_setaffinity(0, sizeof *cpus, cpus) != 0)
		limit_error("%s could not be enforced: setting the CPU affinity failed (%s)", flag, strerror(errno));
}

static void restrict_cpus(unsigned count, const char *list)
{
	cpu_set_t allowed, chosen;
	unsigned kept = 0;

	if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
		limit_error("the CPU affinity could not be read (%s)", strerror(errno));
	CPU_ZERO(&chosen);
	if (list) {
		for (const char *p = list; *p; p += *p == ',') {
			char *end;
			unsigned long cpu = strtoul(p, &end, 10);
			if (end == p || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed))
				limit_error("--cpuset %s names CPU %.*s, which you may not run on; pick among those taskset -p $$ shows",
					    list, (int)strcspn(p, ","), p);
			CPU_SET(cpu, &chosen);
			p = end;
		}
		allowed = chosen;
		CPU_ZERO(&chosen);
	}
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &allowed) && (!count || kept++ < count))
			CPU_SET(cpu, &chosen);
	set_affinity(&chosen, list ? "--cpuset" : "--cpus");
}

void limits_apply(const struct limits *limits)
{
	if (limits->memory_bytes)
		set_rlimit(RLIMIT_DATA, limits->memory_bytes, "--memory", "bytes; ulimit -Hd shows KiB");
	if (limits->pids)
		set_rlimit(RLIMIT_NPROC, limits->pids, "--pids", "processes; ulimit -Hu");
	if (limits->cpus || limits->cpuset)
		restrict_cpus(limits->cpus, limits->cpuset);
}
