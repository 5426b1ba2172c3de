/* seccomp.h — the command's syscall filter and the name table behind it. */
#ifndef TAPBOX_SECCOMP_H
#define TAPBOX_SECCOMP_H

#include "plan.h"

struct syscall_name {
	const char *name;
	int x86_64;  /* -1 where the architecture lacks the call */
	int aarch64;
};

extern const struct syscall_name syscall_table[];
extern const size_t syscall_table_len;

/* The default policy: the deny-list described in seccomp.c. */
void seccomp_plan_default(struct seccomp_plan *plan);
/* --allow-syscall / --deny-syscall NAME: reports EUSAGE for a name no architecture knows. */
void seccomp_plan_set(struct seccomp_plan *plan, const char *name, enum syscall_rule rule, const char *flag);
/* --seccomp FILE: the file's names become the deny-list (format in seccomp.c). */
void seccomp_plan_load(struct seccomp_plan *plan, const char *path);
/* Installs the filter on the calling thread; no_new_privs must be set. */
void seccomp_install(const struct seccomp_plan *plan);

#endif
