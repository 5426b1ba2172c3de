/* mounts.h — the sandbox's filesystem. */
#ifndef TAPBOX_MOUNTS_H
#define TAPBOX_MOUNTS_H

#include "plan.h"

/* Read-only mode: builds the new root, pivots into it and enters the working directory.
 * Any failure is reported (EMOUNT) and exits 125. */
void mounts_setup_read_only(const struct launch_plan *plan);

#endif
