/* report_stub.c — report.c for the plan harness: no control socket, and fail() returns to the harness
 * (longjmp) instead of exiting, after formatting its sentence as the real one does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>

#include "../launcher/report.h"
#include "fuzz_stub.h"

jmp_buf fuzz_fail_jump;

_Noreturn void fail(const char *code, int exit_code, const char *fmt, ...)
{
	char sentence[1024];
	va_list ap;

	(void)code;
	(void)exit_code;
	va_start(ap, fmt);
	vsnprintf(sentence, sizeof sentence, fmt, ap);
	va_end(ap);
	longjmp(fuzz_fail_jump, 1);
}
