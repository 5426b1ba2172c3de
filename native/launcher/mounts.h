/* mounts.h — mount primitives (mounts.c) and the sandbox's filesystem (filesystem.c). */
#ifndef TAPBOX_MOUNTS_H
#define TAPBOX_MOUNTS_H

#include "plan.h"
#include "report.h"

#define mount_error(...) fail("EMOUNT", EXIT_SETUP_FAILED, __VA_ARGS__)

/* Builds the root of plan->fs_mode, pivots into it and enters the working directory.
 * Any failure is reported (EMOUNT) and exits 125. */
void filesystem_setup(const struct launch_plan *plan);
/* After filesystem_setup: a detached proc instance (close-on-exec) when the mode shows no /proc
 * (-o, -h), for the command to write its own uid map through; else -1. */
int filesystem_hidden_proc(void);

/* A detached recursive copy of the tree at path (relative to dirfd), read-only all the way down
 * if asked. */
int mounts_copy_tree(int dirfd, const char *path, bool read_only);
void mounts_make_read_only(int tree, const char *path);
/* An O_PATH descriptor of a host directory, to be an overlay's lower layer. */
int mounts_open_lower(const char *path);
/* Attaches a detached tree at dest (inside the current root), creating the mount point. */
void mounts_attach(int tree, const char *dest);
void mounts_create_point(const char *path, bool directory);
/* A detached mount of a new fstype instance; options: NULL-terminated key, value pairs. */
int mounts_new_fs(const char *fstype, const char *options[], unsigned attr, const char *what);
/* A detached overlay of lower whose writes go to <layer>.upper in the store directory.
 * Returns the mount fd, or -1 with errno set. */
int mounts_overlay(int lower, int store, const char *layer, const char *what);
void mounts_pivot(const char *new_root);

#endif
