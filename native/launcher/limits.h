/* limits.h — resource limits of the command. */
#ifndef TAPBOX_LIMITS_H
#define TAPBOX_LIMITS_H

#include "plan.h"

/* The outer launcher, before it clones the sandbox: every process of the sandbox starts in dir. */
void limits_join_cgroup(const char *dir);

/* In the command's process, in its own user namespace, before exec (see limits.c for how). */
void limits_apply(const struct limits *limits);

#endif
