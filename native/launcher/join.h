/* join.h — a new process inside a running sandbox (tapbox exec). */
#ifndef TAPBOX_JOIN_H
#define TAPBOX_JOIN_H

#include "plan.h"

#include <signal.h>

/* Joins the namespaces and cgroup of the sandbox whose command is plan->join_pid, runs the command
 * there with the plan's limits, capabilities and seccomp filter, and exits with its status. */
_Noreturn void join_run(const struct launch_plan *plan, const sigset_t *signals);

#endif
