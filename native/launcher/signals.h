/* signals.h — the signals both supervising processes (outer launcher, PID 1) pass on. */
#ifndef TAPBOX_SIGNALS_H
#define TAPBOX_SIGNALS_H

#include <signal.h>

/* Blocks SIGCHLD and the forwarded signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2,
 * SIGWINCH) and stores that set for sigwaitinfo(). Blocked, not handled: nothing runs asynchronously. */
void signals_block(sigset_t *set);

/* Translates a wait status into an exit code: the code itself, or 128+N after signal N. */
int exit_code_of(int status);

/* Default dispositions and an empty mask for the command: ignored signals would survive exec. */
void signals_reset_for_exec(void);

#endif
