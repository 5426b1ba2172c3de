/* signals.c — blocked-signal bookkeeping shared by the outer launcher and PID 1. */
#include "signals.h"

#include <stddef.h>
#include <sys/wait.h>

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };

void signals_block(sigset_t *set)
{
	/* An inherited SIG_IGN for SIGCHLD would have the kernel reap the child before we see its status. */
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(set);
	sigaddset(set, SIGCHLD);
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaddset(set, forwarded[i]);
	sigprocmask(SIG_BLOCK, set, NULL);
}

int exit_code_of(int status)
{
	return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

void signals_reset_for_exec(void)
{
	sigset_t none;

	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL); /* fails harmlessly for SIGKILL, SIGSTOP and the libc-reserved ones */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}
