/* fuzz_stub.h — what the launcher harness shares with its stand-in for report.c. */
#ifndef TAPBOX_FUZZ_STUB_H
#define TAPBOX_FUZZ_STUB_H

#include <setjmp.h>

/* fail() jumps here instead of exiting. */
extern jmp_buf fuzz_fail_jump;

#endif
