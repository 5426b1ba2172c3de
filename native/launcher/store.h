/* store.h — throw-away layers kept on disk (-d DIR), and their removal. */
#ifndef TAPBOX_STORE_H
#define TAPBOX_STORE_H

#include "plan.h"

/* In the outer launcher, before clone: removes the run directories of sandboxes that are gone, then
 * creates and locks plan->run_dir under plan->store. No-op when the layers live in memory. */
void store_prepare(struct launch_plan *plan);
/* Removes the run directories under the store `dir` whose launcher is gone (unlocked). */
void store_sweep(const char *dir);
/* Removes name under the directory parent, and all below it, never following a symlink; what can't
 * be removed stays (idmap.c checks). */
void remove_entry(int parent, const char *name);
/* After the sandbox exited: removes plan->run_dir. */
void store_remove(const struct launch_plan *plan);

#endif
