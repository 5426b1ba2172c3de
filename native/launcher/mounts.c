/* mounts.c — the mount primitives filesystem.c assembles the sandbox's root from.
 *
 * Everything taken from the host is captured as a file descriptor while the host's tree is still in
 * view (a detached copy from open_tree, or an O_PATH directory for an overlay's lower layer), and
 * attached by descriptor once the sandbox's root is "/". Destinations are therefore resolved inside
 * the new root: an absolute symlink planted there can't point a mount at a host path.
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

void mounts_make_read_only(int tree, const char *path)
{
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY };

	if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
		mount_error("making the copy of %s read-only failed (%s); the kernel must be Linux 5.12 or newer",
			    path, strerror(errno));
}

int mounts_copy_tree(int dirfd, const char *path, bool read_only)
{
	int flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | (path[0] ? 0 : AT_EMPTY_PATH);
	int tree = open_tree(dirfd, path, flags);

	if (tree < 0)
		mount_error("bind-mounting %s into the sandbox failed (%s); check that it exists and that you can read it",
			    path, strerror(errno));
	if (read_only)
		mounts_make_read_only(tree, path);
	return tree;
}

int mounts_open_lower(const char *path)
{
	int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		mount_error("opening %s as an overlay's lower layer failed (%s); -k takes an existing directory",
			    path, strerror(errno));
	return fd;
}

/* mkdir -p inside the current root; succeeds only where writable (a tmpfs, an overlay). */
void mounts_create_point(const char *path, bool directory)
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
	if (directory) {
		if (mkdir(path, 0755) == 0)
			return;
	} else {
		int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

		if (fd >= 0) {
			close(fd);
			return;
		}
	}
failed:
	mount_error("the mount point %s does not exist inside the sandbox and can't be created there (%s); "
		    "use a destination that exists, or mount a tmpfs (-e) on one of its parents first",
		    path, strerror(errno));
}

void mounts_attach(int tree, const char *dest)
{
	struct stat st;

	if (fstat(tree, &st) != 0)
		mount_error("inspecting the copy for %s failed (%s)", dest, strerror(errno));
	mounts_create_point(dest, S_ISDIR(st.st_mode));
	if (move_mount(tree, "", AT_FDCWD, dest, MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS) != 0)
		mount_error("mounting onto %s inside the sandbox failed (%s); a file can only cover a file, "
			    "and a directory a directory", dest, strerror(errno));
	close(tree);
}

/* A detached mount of a new filesystem instance. */
int mounts_new_fs(const char *fstype, const char *options[], unsigned attr, const char *what)
{
	int fs = fsopen(fstype, FSOPEN_CLOEXEC);

	if (fs < 0)
		mount_error("creating %s failed (%s); the kernel must be Linux 5.2 or newer", what, strerror(errno));
	for (size_t i = 0; options && options[i]; i += 2) {
		if (fsconfig(fs, FSCONFIG_SET_STRING, options[i], options[i + 1], 0) != 0)
			mount_error("creating %s failed: the option %s=%s was refused (%s)", what, options[i],
				    options[i + 1], strerror(errno));
	}
	if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0)
		mount_error("creating %s failed (%s)", what, strerror(errno));
	int mnt = fsmount(fs, FSMOUNT_CLOEXEC, attr);
	if (mnt < 0)
		mount_error("mounting %s failed (%s)", what, strerror(errno));
	close(fs);
	return mnt;
}

/* How overlayfs is told its layers, decided by the kernel's answer to the run's first overlay.
 * By descriptor (Linux 6.13+: "lowerdir+", "upperdir" and "workdir" take an fd). Older kernels take
 * only paths; there each layer is named "/proc/self/fd/N", the magic link of the descriptor captured
 * earlier, which the kernel resolves to that very directory (mount and dentry) without walking the
 * host path again, so a path swapped or covered since the capture can't change the layer: the same
 * guarantee as the descriptor. This serves Linux 5.11 (unprivileged overlayfs with userxattr) to 6.12.
 * The host's /proc is still in view at this point (phase 2 runs before pivot_root). */
static enum { LAYERS_UNDECIDED, LAYERS_BY_FD, LAYERS_BY_PATH } layer_naming;

static int set_layer(int fs, const char *fd_key, const char *path_key, int fd)
{
	char path[32];

	if (layer_naming == LAYERS_BY_FD)
		return fsconfig(fs, FSCONFIG_SET_FD, fd_key, NULL, fd);
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	return fsconfig(fs, FSCONFIG_SET_STRING, path_key, path, 0);
}

/* Asks the kernel once whether overlayfs takes a lower layer by descriptor. */
static void decide_layer_naming(int lower)
{
	int fs = fsopen("overlay", FSOPEN_CLOEXEC);

	if (fs < 0)
		mount_error("overlayfs is not available (%s); load the overlay module (modprobe overlay) or use the "
			    "read-only mode", strerror(errno));
	layer_naming = fsconfig(fs, FSCONFIG_SET_FD, "lowerdir+", NULL, lower) == 0 ? LAYERS_BY_FD : LAYERS_BY_PATH;
	close(fs);
}

int mounts_overlay(int lower, int store, const char *layer, const char *what)
{
	char upper[64], work[64];

	if (layer_naming == LAYERS_UNDECIDED)
		decide_layer_naming(lower);
	/* Each overlay gets its own upper and work directory in the throw-away store. */
	snprintf(upper, sizeof upper, "%s.upper", layer);
	snprintf(work, sizeof work, "%s.work", layer);
	if (mkdirat(store, upper, 0755) != 0 || mkdirat(store, work, 0700) != 0)
		mount_error("creating the throw-away layer for %s failed (%s); is --storage too small?", what,
			    strerror(errno));
	int fs = fsopen("overlay", FSOPEN_CLOEXEC);
	int upper_fd = openat(store, upper, O_PATH | O_DIRECTORY | O_CLOEXEC);
	int work_fd = openat(store, work, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fs < 0 || upper_fd < 0 || work_fd < 0 || set_layer(fs, "lowerdir+", "lowerdir", lower) != 0 ||
	    set_layer(fs, "upperdir", "upperdir", upper_fd) != 0 || set_layer(fs, "workdir", "workdir", work_fd) != 0 ||
	    fsconfig(fs, FSCONFIG_SET_FLAG, "userxattr", NULL, 0) != 0 ||
	    fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0) {
		int err = errno;
		if (fs >= 0)
			close(fs);
		if (upper_fd >= 0)
			close(upper_fd);
		if (work_fd >= 0)
			close(work_fd);
		errno = err;
		return -1;
	}
	int mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID);
	int err = errno;
	close(fs);
	close(upper_fd);
	close(work_fd);
	errno = err;
	return mnt;
}

void mounts_pivot(const char *new_root)
{
	/* pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then drops it. */
	if (chdir(new_root) != 0 || syscall(SYS_pivot_root, ".", ".") != 0 || umount2(".", MNT_DETACH) != 0 ||
	    chdir("/") != 0)
		mount_error("switching to the sandbox's root failed (%s)", strerror(errno));
}
