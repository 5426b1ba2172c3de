/* idmap.h — a bare user namespace with the user's subordinate ids, and the image store's file
 * operations run in it (idmap.c). */
#ifndef TAPBOX_IDMAP_H
#define TAPBOX_IDMAP_H

#include "plan.h"

#include <signal.h>

/* --userns-only: runs plan->command as root of a new user namespace mapped with plan's ranges, and
 * exits with its status. */
_Noreturn void idmap_run_bare(const struct launch_plan *plan, const sigset_t *signals);

/* --apply-owners ROOT: the owners read from stdin, given to the entries under root; returns 0. */
int idmap_apply_owners(const char *root);

/* --remove-tree PATH: removes it and all below it; returns 0. */
int idmap_remove_tree(const char *path);

#endif
