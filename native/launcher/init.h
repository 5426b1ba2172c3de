/* init.h — PID 1 of the sandbox. */
#ifndef TAPBOX_INIT_H
#define TAPBOX_INIT_H

#include "plan.h"

#include <signal.h>

/* Starts the command and supervises it until it exits, then exits with its status.
 * signals: the blocked set from signals_block(). */
_Noreturn void init_run(const struct launch_plan *plan, const sigset_t *signals);

/* Waits for pid with the blocked signals in set, forwarding the others to it; returns its exit code.
 * A non-zero timeout_s stops every process of the PID namespace (we must be its PID 1) once it has
 * passed: SIGTERM, then SIGKILL grace_s seconds later (at once when grace_s is 0). */
int supervise(pid_t pid, const sigset_t *signals, unsigned timeout_s, unsigned grace_s);

/* In the command's process: a session of its own, with the pty on stdin (if any) as its terminal. */
void init_new_session(void);

/* The command's last steps once it is in its final namespaces: limits, capability bounding set,
 * signal dispositions, descriptors, no_new_privs, seccomp, exec. Reports an exec failure on fd 3. */
_Noreturn void init_exec(const struct launch_plan *plan);

#endif
