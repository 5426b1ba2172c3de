/* report.h — the control socket on fd 3: error reports, the TAP hand-over, the go-ahead. */
#ifndef TAPBOX_REPORT_H
#define TAPBOX_REPORT_H

#include <stdbool.h>

#define CONTROL_FD 3

/* Exit codes of the launcher itself (the command's own codes pass through unchanged). */
enum {
	EXIT_SETUP_FAILED = 125,
	EXIT_NOT_EXECUTABLE = 126,
	EXIT_NOT_FOUND = 127,
};

/* Decides once whether fd 3 is the supervisor's SOCK_SEQPACKET socket (else we were run by hand). */
void control_init(void);
bool control_connected(void);

/* Sends "ERR <code> <sentence>" to the supervisor (or the sentence to stderr) and exits. */
_Noreturn void fail(const char *code, int exit_code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sends "WARN <sentence>" to the supervisor (or the sentence to stderr); setup goes on. */
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sends the message with fd attached (SCM_RIGHTS). Returns 0 or -errno. */
int control_send_fd(const char *message, int fd);

/* Blocks until the supervisor sends "GO"; exits 125 if it closes the socket instead. */
void control_wait_go(void);

/* Closes the socket: from here on, sentences go to stderr (as when run by hand). */
void control_close(void);

#endif
