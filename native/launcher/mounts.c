/* mounts.c — the read-only mode's filesystem, built in the sandbox's own mount namespace.
 *
 * Every mount, in order, and why:
 *  1. "/" and everything below it become MS_PRIVATE: nothing we mount or unmount from here on
 *     propagates back to the host (or arrives from it).
 *  2. Detached copies (open_tree OPEN_TREE_CLONE|AT_RECURSIVE) are taken of the host's / and of each
 *     bind source, before anything covers a host path (the working directory may well sit in /tmp).
 *     The root copy, and every --bind-ro copy, is made read-only all the way down (mount_setattr
 *     AT_RECURSIVE, MOUNT_ATTR_RDONLY) while still detached: no writable submount (/dev/shm,
 *     /run/user/...) survives, and no copy is ever visible writable.
 *  3. A private tmpfs is mounted on /tmp of *this* namespace as a staging area (the host's /tmp is not
 *     touched): it holds the generated resolv.conf and the directory where the root copy is attached.
 *  4. pivot_root into the root copy; the old root, staging tmpfs included, is detached, so nothing
 *     of the setup remains reachable and nothing is left on the host to clean up.
 *  5. A fresh proc on /proc, for the sandbox's PID namespace (the host's processes are not visible).
 *  6. A fresh tmpfs on /tmp, private to this sandbox and gone with it.
 *  7. The working directory, bound writable at the same path (writes persist on the host), then the
 *     --bind-ro / --bind-rw / --tmpfs entries in the order given. Destinations resolve inside the new
 *     root (a symlink can't point them outside it); a missing one is created only where writable.
 *  8. The generated resolv.conf bound read-only over /etc/resolv.conf (under --resolv).
 */
#include "mounts.h"

#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define STAGING_DIR "/tmp"
#define STAGED_ROOT STAGING_DIR "/root"
#define STAGED_RESOLV STAGING_DIR "/resolv.conf"

#define mount_error(...) fail("EMOUNT", EXIT_SETUP_FAILED, __VA_ARGS__)

static void make_read_only(int tree, const char *path)
{
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY };

	if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
		mount_error("making the copy of %s read-only failed (%s); the kernel must be Linux 5.12 or newer",
			    path, strerror(errno));
}

/* A detached, recursive copy of the mount tree at path. */
static int copy_tree(const char *path, bool read_only)
{
	int tree = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);

	if (tree < 0)
		mount_error("bind-mounting %s into the sandbox failed (%s); check that it exists and that you can read it",
			    path, strerror(errno));
	if (read_only)
		make_read_only(tree, path);
	return tree;
}

static void write_resolv_conf(const struct launch_plan *plan)
{
	int fd = open(STAGED_RESOLV, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

	if (fd < 0 || fchmod(fd, 0644) != 0)
		mount_error("writing the sandbox's resolv.conf failed (%s)", strerror(errno));
	for (size_t i = 0; i < plan->n_resolvers; i++)
		dprintf(fd, "nameserver %s\n", plan->resolvers[i]);
	close(fd);
}

/* Creates path (and its parents) when missing; this succeeds only on a writable mount (a tmpfs). */
static void create_mount_point(const char *path, bool directory)
{
	char partial[PATH_MAX];
	struct stat st;

	if (stat(path, &st) == 0)
		return;
	if (strlen(path) >= sizeof partial)
		mount_error("the mount point %s is too long", path);
	strcpy(partial, path);
	for (char *slash = strchr(partial + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(partial, 0755) != 0 && errno != EEXIST)
			goto failed;
		*slash = '/';
	}
	if (directory ? mkdir(path, 0755) == 0 : close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) == 0)
		return;
failed:
	mount_error("the mount point %s does not exist inside the sandbox and can't be created there (%s); "
		    "use a destination that exists, or mount a --tmpfs on one of its parents first",
		    path, strerror(errno));
}

static void attach_tree(int tree, const char *dest)
{
	struct stat st;

	if (fstat(tree, &st) != 0)
		mount_error("inspecting the copy for %s failed (%s)", dest, strerror(errno));
	create_mount_point(dest, S_ISDIR(st.st_mode));
	if (move_mount(tree, "", AT_FDCWD, dest, MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS) != 0)
		mount_error("mounting onto %s inside the sandbox failed (%s); a file can only cover a file, "
			    "and a directory a directory", dest, strerror(errno));
	close(tree);
}

static void mount_fresh(const char *fstype, const char *dest, unsigned long flags, const char *options)
{
	create_mount_point(dest, true);
	if (mount(fstype, dest, fstype, flags, options) != 0)
		mount_error("mounting a fresh %s on %s failed (%s)", fstype, dest, strerror(errno));
}

static void pivot_into(const char *new_root)
{
	/* pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then drops it. */
	if (chdir(new_root) != 0 || syscall(SYS_pivot_root, ".", ".") != 0 || umount2(".", MNT_DETACH) != 0 ||
	    chdir("/") != 0)
		mount_error("switching to the sandbox's root failed (%s)", strerror(errno));
}

void mounts_setup_read_only(const struct launch_plan *plan)
{
	int trees[PLAN_MAX_MOUNTS];
	int resolv_tree = -1;

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		mount_error("making the sandbox's mounts private failed (%s)", strerror(errno));

	int root_tree = copy_tree("/", true);
	for (size_t i = 0; i < plan->n_mounts; i++) {
		const struct mount_entry *m = &plan->mounts[i];
		trees[i] = m->kind == MOUNT_TMPFS ? -1 : copy_tree(m->source, m->kind == MOUNT_BIND_RO);
	}

	if (mount("tmpfs", STAGING_DIR, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700,size=1m") != 0 ||
	    mkdir(STAGED_ROOT, 0755) != 0)
		mount_error("creating the staging tmpfs on %s failed (%s); the host needs a %s directory",
			    STAGING_DIR, strerror(errno), STAGING_DIR);
	if (plan->n_resolvers > 0) {
		write_resolv_conf(plan);
		resolv_tree = copy_tree(STAGED_RESOLV, true);
	}
	if (move_mount(root_tree, "", AT_FDCWD, STAGED_ROOT, MOVE_MOUNT_F_EMPTY_PATH) != 0)
		mount_error("attaching the sandbox's root failed (%s)", strerror(errno));
	close(root_tree);
	pivot_into(STAGED_ROOT);

	mount_fresh("proc", "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_fresh("tmpfs", "/tmp", MS_NOSUID | MS_NODEV, "mode=1777");
	for (size_t i = 0; i < plan->n_mounts; i++) {
		const struct mount_entry *m = &plan->mounts[i];
		if (m->kind == MOUNT_TMPFS)
			mount_fresh("tmpfs", m->dest, MS_NOSUID | MS_NODEV, "mode=0755");
		else
			attach_tree(trees[i], m->dest);
	}
	if (resolv_tree >= 0)
		attach_tree(resolv_tree, "/etc/resolv.conf");

	if (chdir(plan->cwd) != 0)
		mount_error("entering the working directory %s inside the sandbox failed (%s)", plan->cwd,
			    strerror(errno));
}
