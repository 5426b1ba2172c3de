/* report.c — the control socket on fd 3.
 *
 * Protocol (one SOCK_SEQPACKET message each, no terminator):
 *   launcher -> supervisor   "TAP" with the TAP fd attached (SCM_RIGHTS), once, under --net tap
 *   launcher -> supervisor   "ERR <CODE> <one sentence naming the cause and the fix>"
 *   launcher -> supervisor   "WARN <one sentence>": the sandbox runs, with less than was asked (a fallback)
 *   supervisor -> launcher   "GO": the stack runs, the command may start
 * Without a socket on fd 3 (the launcher run by hand) sentences go to stderr and nobody is waited for.
 */
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static bool connected;

void control_init(void)
{
	struct stat st;
	int type = 0;
	socklen_t len = sizeof type;

	connected = fstat(CONTROL_FD, &st) == 0 && S_ISSOCK(st.st_mode) &&
		    getsockopt(CONTROL_FD, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
		    type == SOCK_SEQPACKET;
	/* Usable by every setup step, closed by the command's exec. */
	if (connected)
		fcntl(CONTROL_FD, F_SETFD, FD_CLOEXEC);
}

bool control_connected(void)
{
	return connected;
}

/* Closing a socket with unread messages makes the peer's next recv fail with ECONNRESET before it
 * reads what we sent: read away anything pending (an early "GO") so the error arrives cleanly. */
static void discard_unread_messages(void)
{
	char buf[64];

	while (recv(CONTROL_FD, buf, sizeof buf, MSG_DONTWAIT) > 0)
		;
}

_Noreturn void fail(const char *code, int exit_code, const char *fmt, ...)
{
	char sentence[1024];
	char message[1200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sentence, sizeof sentence, fmt, ap);
	va_end(ap);

	int n = snprintf(message, sizeof message, "ERR %s %s", code, sentence);
	if (n > (int)sizeof message - 1)
		n = sizeof message - 1;
	if (!connected || send(CONTROL_FD, message, n, MSG_NOSIGNAL) < 0)
		dprintf(STDERR_FILENO, "tapbox-launcher: %s\n", sentence);
	else
		discard_unread_messages();
	_exit(exit_code);
}

void warn(const char *fmt, ...)
{
	char message[1200] = "WARN ";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message + 5, sizeof message - 5, fmt, ap);
	va_end(ap);
	if (!connected || send(CONTROL_FD, message, strlen(message), MSG_NOSIGNAL) < 0)
		dprintf(STDERR_FILENO, "tapbox-launcher: warning: %s\n", message + 5);
}

int control_send_fd(const char *message, int fd)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control = { 0 };
	struct iovec iov = { .iov_base = (void *)message, .iov_len = strlen(message) };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof control.buf,
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));

	while (sendmsg(CONTROL_FD, &msg, MSG_NOSIGNAL) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

void control_wait_go(void)
{
	char buf[16];
	ssize_t n;

	if (!connected)
		return;
	do
		n = recv(CONTROL_FD, buf, sizeof buf, 0);
	while (n < 0 && errno == EINTR);

	if (n == 0) /* the supervisor gave up before the start: nobody left to tell */
		_exit(EXIT_SETUP_FAILED);
	if (n < 0)
		fail("EPROTO", EXIT_SETUP_FAILED, "reading the go-ahead from the supervisor failed (%s); restart tapbox",
		     strerror(errno));
	if (n != 2 || memcmp(buf, "GO", 2) != 0)
		fail("EPROTO", EXIT_SETUP_FAILED,
		     "the supervisor sent an unexpected control message instead of GO; tapbox and its launcher are from different builds, reinstall tapbox");
}

void control_close(void)
{
	if (connected)
		close(CONTROL_FD);
	connected = false;
}
