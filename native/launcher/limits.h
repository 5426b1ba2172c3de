/* limits.h — resource limits of the command. */
#ifndef TAPBOX_LIMITS_H
#define TAPBOX_LIMITS_H

#include "plan.h"

/* In the command's process, in its own user namespace, before exec (see limits.c for how). */
void limits_apply(const struct limits *limits);

#endif
