/* filesystem.c — the sandbox's root, per filesystem mode, built in its own mount namespace.
 *
 * Three phases, so that nothing of the host is looked up once anything covers it:
 *  1. Capture (host view): "/" becomes MS_PRIVATE (nothing propagates back to the host); every host
 *     path the mode needs is captured as a descriptor: detached recursive copies (open_tree) for
 *     binds, made read-only all the way down while still detached when they are to be read-only (no
 *     writable submount such as /dev/shm or /run/user survives), O_PATH directories for overlays'
 *     lower layers, a fresh proc instance (the kernel allows one only while a full /proc is in view).
 *  2. Store: the throw-away layers live on a tmpfs mounted over /tmp of this namespace (capped by
 *     --storage), or in the run directory the outer launcher made under -d DIR (store.c removes it).
 *     Overlays (upper and work directories in the store), the private /tmp, the empty home and the
 *     generated resolv.conf are created there; the root is the store's "root" directory (or, under
 *     --rootfs, an overlay of the user's root), then pivot_root into it and detach the old root.
 *  3. Attach, in order, by descriptor, inside the new root (a symlink planted there can't send a
 *     mount to a host path): the mode's system directories, /proc, /sys, /dev, /tmp, the home, the
 *     working directory, then -M / -w / -k / -e in the order given, then resolv.conf and hosts.
 *
 * The modes:
 *  read-only  the host's root, read-only all the way down; /run hidden by an empty read-only tmpfs
 *             (no D-Bus, docker.sock, systemd sockets); fresh /proc, minimal /dev over the host's
 *             (whose devpts holds the user's other terminals, writable by the same uid); a private
 *             /tmp; cwd writable.
 *  -x         a tmpfs root; every top-level host directory except /proc /sys /dev /run /tmp /home
 *             /root and the cwd's top directory as an overlay whose writes are thrown away
 *             (top-level symlinks such as /bin -> usr/bin recreated); the cwd's top directory stays
 *             one too when programs can't run without it (/usr, /etc, /lib*, /bin, /sbin); fresh
 *             /proc, read-only /sys, minimal /dev, private /tmp, an empty /run; $HOME empty and
 *             thrown away unless it holds the cwd (then writable); the cwd's parent as an overlay
 *             above empty throw-away ancestors (not when the parent is /tmp, /home, ...: those stay
 *             private); the cwd writable.
 *  -o         a tmpfs root with only -k / -M / -w / -e, the cwd, an empty home, /dev and /tmp.
 *  -h         a tmpfs root with only -M / -w / -e, the cwd, /dev and /tmp.
 *  --rootfs   an overlay of the user's root directory; fresh /proc, read-only /sys, minimal /dev,
 *             private /tmp, the home as under -x, the cwd writable.
 * The minimal /dev (every mode): null, zero, full, random, urandom, tty, a private devpts and /dev/shm,
 * and the command's terminal as /dev/console when stdin is one (the supervisor's pty, never the
 * caller's own terminal: see src/supervisor/terminal.ts).
 * When a host directory can't be an overlay's lower layer (a filesystem overlayfs refuses, or mounts
 * inside it: the kernel won't clone a lower layer with locked submounts), -x binds it read-only
 * instead: stricter, never more open. -k on such a directory fails with that reason.
 */
#include "mounts.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define STAGING_DIR "/tmp"
#define STAGED_ROOT STAGING_DIR "/root"

enum step_kind {
	STEP_ATTACH,  /* fd -> dest */
	STEP_SYMLINK, /* dest -> target */
	STEP_TMPFS,   /* a fresh tmpfs on dest; read-only if fd is 1 */
	STEP_DEVICES, /* the minimal /dev */
	STEP_DIR,     /* an empty directory (in the root tmpfs) */
};

struct step {
	enum step_kind kind;
	int fd;
	const char *dest;
	const char *target;
};

#define MAX_STEPS 256

static struct step steps[MAX_STEPS];
static size_t n_steps;
static int store = -1;
static unsigned layers;
static int hidden_proc = -1;

static const char *const device_nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };
static int device_trees[sizeof device_nodes / sizeof device_nodes[0]];
/* The command's terminal (the slave of the supervisor's pty, in the host's devpts), shown as
 * /dev/console so that ttyname() finds it in the minimal /dev, as container runtimes do; -1 when
 * stdin is not a terminal. */
static int console_tree = -1;

static void add_step(enum step_kind kind, int fd, const char *dest, const char *target)
{
	if (n_steps == MAX_STEPS)
		mount_error("too many mounts (at most %d); bind a common parent directory instead", MAX_STEPS);
	steps[n_steps++] = (struct step){ .kind = kind, .fd = fd, .dest = dest, .target = target };
}

static bool is_under(const char *path, const char *dir)
{
	size_t len = strlen(dir);

	if (strcmp(dir, "/") == 0)
		return true;
	return strncmp(path, dir, len) == 0 && (path[len] == '\0' || path[len] == '/');
}

static bool home_holds_cwd(const struct launch_plan *plan)
{
	return plan->home && is_under(plan->cwd, plan->home);
}

/* ---- phase 2 helpers: the store ---- */

static void mount_store(const struct launch_plan *plan)
{
	char options[64] = "mode=0755";

	if (plan->store) {
		if (mount(plan->run_dir, STAGING_DIR, NULL, MS_BIND, NULL) != 0)
			mount_error("using %s as the store of throw-away layers failed (%s)", plan->run_dir,
				    strerror(errno));
	} else {
		if (plan->limits.storage_bytes)
			snprintf(options, sizeof options, "mode=0755,size=%llu", plan->limits.storage_bytes);
		if (mount("tmpfs", STAGING_DIR, "tmpfs", MS_NOSUID | MS_NODEV, options) != 0)
			mount_error("creating the tmpfs for throw-away layers on %s failed (%s); the host needs a %s directory",
				    STAGING_DIR, strerror(errno), STAGING_DIR);
	}
	store = open(STAGING_DIR, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (store < 0)
		mount_error("opening the store of throw-away layers failed (%s)", strerror(errno));
}

/* A new empty directory in the store, as a detached tree to attach later. */
static int store_dir(const char *name, mode_t mode)
{
	if (mkdirat(store, name, mode) != 0 || fchmodat(store, name, mode, 0) != 0)
		mount_error("creating %s in the store of throw-away layers failed (%s)", name, strerror(errno));
	return mounts_copy_tree(store, name, false);
}

/* An overlay of lower, or (when overlayfs refuses the host directory) a read-only copy of it. */
static int overlay_or_read_only(int lower, const char *what)
{
	char layer[32];

	snprintf(layer, sizeof layer, "layer%u", layers++);
	int mnt = mounts_overlay(lower, store, layer, what);
	if (mnt < 0)
		mnt = mounts_copy_tree(lower, "", true);
	close(lower);
	return mnt;
}

static int overlay_or_fail(int lower, const char *what)
{
	char layer[32];

	snprintf(layer, sizeof layer, "layer%u", layers++);
	int mnt = mounts_overlay(lower, store, layer, what);
	/* EINVAL: the kernel won't take a lower layer with mounts inside it from a user namespace. */
	if (mnt < 0 && errno == EINVAL)
		mount_error("creating the throw-away overlay of %s failed: it has mounts inside it, which overlayfs "
			    "can't take as a lower layer here; bind it with -M, or overlay a directory without mounts", what);
	if (mnt < 0)
		mount_error("creating the throw-away overlay of %s failed (%s); overlayfs in a user namespace needs "
			    "Linux 5.11 or newer and a lower directory on a filesystem it supports", what, strerror(errno));
	close(lower);
	return mnt;
}

static void write_resolv_conf(const struct launch_plan *plan)
{
	int fd = openat(store, "resolv.conf", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

	if (fd < 0 || fchmod(fd, 0644) != 0)
		mount_error("writing the sandbox's resolv.conf failed (%s)", strerror(errno));
	for (size_t i = 0; i < plan->n_resolvers; i++)
		dprintf(fd, "nameserver %s\n", plan->resolvers[i]);
	close(fd);
}

/* The host's /etc/hosts plus the sandbox's own hostname: programs that look up their own name (a
 * common start-up step) get an answer here instead of a query the DNS proxy would deny and log. */
static void write_hosts(const struct launch_plan *plan)
{
	char buf[65536];
	ssize_t n = 0;
	int host = open("/etc/hosts", O_RDONLY | O_CLOEXEC);
	int fd = openat(store, "hosts", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

	if (fd < 0 || fchmod(fd, 0644) != 0)
		mount_error("writing the sandbox's /etc/hosts failed (%s)", strerror(errno));
	if (host >= 0) {
		n = read(host, buf, sizeof buf);
		close(host);
	}
	if (n > 0 && write(fd, buf, n) != n)
		mount_error("writing the sandbox's /etc/hosts failed (%s)", strerror(errno));
	dprintf(fd, "%s127.0.1.1\t%s\n::1\t%s\n", n > 0 && buf[n - 1] != '\n' ? "\n" : "", plan->hostname,
		plan->hostname);
	close(fd);
}

/* ---- -x: the host's top-level directories ---- */

static bool excluded_top_level(const char *name)
{
	static const char *const private_dirs[] = { "proc", "sys", "dev", "run", "tmp", "home", "root" };

	for (size_t i = 0; i < sizeof private_dirs / sizeof private_dirs[0]; i++)
		if (strcmp(name, private_dirs[i]) == 0)
			return true;
	return false;
}

/* Directories nothing runs without: they stay overlays even when they hold the cwd. */
static bool essential_top_level(const char *name)
{
	return strcmp(name, "usr") == 0 || strcmp(name, "etc") == 0 || strcmp(name, "bin") == 0 ||
	       strcmp(name, "sbin") == 0 || strncmp(name, "lib", 3) == 0;
}

/* The top-level directory holding path, as a name without slashes ("" for "/"). */
static const char *top_level_of(const char *path)
{
	static char top[NAME_MAX + 1];
	size_t len = strcspn(path + 1, "/");

	snprintf(top, sizeof top, "%.*s", (int)len, path + 1);
	return top;
}

static bool cwd_top_is_overlaid(const struct launch_plan *plan)
{
	const char *top = top_level_of(plan->cwd);
	return !excluded_top_level(top) && essential_top_level(top);
}

static void capture_system_dirs(const struct launch_plan *plan)
{
	const char *cwd_top = top_level_of(plan->cwd);
	DIR *root = opendir("/");
	struct dirent *entry;

	if (!root)
		mount_error("listing / failed (%s)", strerror(errno));
	while ((entry = readdir(root))) {
		const char *name = entry->d_name;
		char path[PATH_MAX], target[PATH_MAX];
		struct stat st;

		if (name[0] == '.' || excluded_top_level(name))
			continue;
		if (strcmp(name, cwd_top) == 0 && !essential_top_level(name))
			continue;
		snprintf(path, sizeof path, "/%s", name);
		if (lstat(path, &st) != 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			ssize_t len = readlink(path, target, sizeof target - 1);
			if (len < 0)
				continue;
			target[len] = '\0';
			add_step(STEP_SYMLINK, -1, strdup(path), strdup(target));
		} else if (S_ISDIR(st.st_mode)) {
			int lower = open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (lower >= 0) /* the store is not mounted yet: overlays are made in phase 2 */
				add_step(STEP_ATTACH, lower, strdup(path), NULL);
		}
	}
	closedir(root);
}

/* ---- phase 3: attaching ---- */

static void setup_devices(void)
{
	static const char *const links[][2] = {
		{ "/dev/ptmx", "pts/ptmx" },	      { "/dev/fd", "/proc/self/fd" },
		{ "/dev/stdin", "/proc/self/fd/0" },  { "/dev/stdout", "/proc/self/fd/1" },
		{ "/dev/stderr", "/proc/self/fd/2" },
	};
	char path[32];

	mounts_create_point("/dev", true);
	if (mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") != 0)
		mount_error("mounting a tmpfs on /dev failed (%s)", strerror(errno));
	for (size_t i = 0; i < sizeof device_nodes / sizeof device_nodes[0]; i++) {
		snprintf(path, sizeof path, "/dev/%s", device_nodes[i]);
		mounts_attach(device_trees[i], path);
	}
	/* A private devpts instance: terminals opened inside (ptmx) are the sandbox's own. */
	if (mkdir("/dev/pts", 0755) != 0 ||
	    mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") != 0)
		mount_error("mounting a private devpts on /dev/pts failed (%s)", strerror(errno));
	if (mkdir("/dev/shm", 01777) != 0 ||
	    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=01777") != 0)
		mount_error("mounting a private tmpfs on /dev/shm failed (%s)", strerror(errno));
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
		if (symlink(links[i][1], links[i][0]) != 0)
			mount_error("creating %s failed (%s)", links[i][0], strerror(errno));
	if (console_tree >= 0)
		mounts_attach(console_tree, "/dev/console");
}

static void apply_step(const struct step *step)
{
	switch (step->kind) {
	case STEP_ATTACH:
		mounts_attach(step->fd, step->dest);
		break;
	case STEP_SYMLINK:
		if (symlink(step->target, step->dest) != 0)
			mount_error("recreating the symlink %s -> %s failed (%s)", step->dest, step->target,
				    strerror(errno));
		break;
	case STEP_TMPFS:
		mounts_create_point(step->dest, true);
		if (mount("tmpfs", step->dest, "tmpfs", MS_NOSUID | MS_NODEV | (step->fd == 1 ? MS_RDONLY : 0),
			  "mode=0755") != 0)
			mount_error("mounting a fresh tmpfs on %s failed (%s)", step->dest, strerror(errno));
		break;
	case STEP_DEVICES:
		setup_devices();
		break;
	case STEP_DIR:
		mounts_create_point(step->dest, true);
		break;
	}
}

/* ---- the modes ---- */

static int fresh_proc(void)
{
	return mounts_new_fs("proc", NULL, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, "a fresh /proc");
}

static void capture_devices(void)
{
	char path[32];

	for (size_t i = 0; i < sizeof device_nodes / sizeof device_nodes[0]; i++) {
		snprintf(path, sizeof path, "/dev/%s", device_nodes[i]);
		device_trees[i] = mounts_copy_tree(AT_FDCWD, path, false);
	}
	char tty[PATH_MAX];
	if (isatty(STDIN_FILENO) && ttyname_r(STDIN_FILENO, tty, sizeof tty) == 0 && strncmp(tty, "/dev/pts/", 9) == 0)
		console_tree = mounts_copy_tree(AT_FDCWD, tty, false);
}

/* The captured host directories (O_PATH lowers) become overlays once the store exists. */
static void overlay_captured_lowers(size_t first, size_t last)
{
	for (size_t i = first; i < last; i++)
		if (steps[i].kind == STEP_ATTACH)
			steps[i].fd = overlay_or_read_only(steps[i].fd, steps[i].dest);
}

/* -x: the cwd's parent as an overlay (its siblings visible, writes thrown away), above ancestors
 * that are empty throw-away directories; none when the home or an overlaid top directory already
 * shows the parent. Returns its path, or NULL. */
static const char *cwd_parent_to_overlay(const struct launch_plan *plan)
{
	static char parent[PATH_MAX];

	snprintf(parent, sizeof parent, "%s", plan->cwd);
	*strrchr(parent, '/') = '\0';
	/* A top-level parent is /tmp, /home, ... (private in -x) or the cwd's excluded top directory. */
	bool top_level = strchr(parent + 1, '/') == NULL;
	if (parent[0] == '\0' || cwd_top_is_overlaid(plan) || home_holds_cwd(plan) ||
	    (top_level && excluded_top_level(parent + 1)))
		return NULL;
	return parent;
}

int filesystem_hidden_proc(void)
{
	return hidden_proc;
}

void filesystem_setup(const struct launch_plan *plan)
{
	enum fs_mode mode = plan->fs_mode;
	bool has_proc = mode != FS_CUSTOM && mode != FS_HERMETIC;
	bool has_home = plan->home && (mode == FS_DEFAULT || mode == FS_CUSTOM || mode == FS_ROOTFS);
	const char *parent = mode == FS_DEFAULT ? cwd_parent_to_overlay(plan) : NULL;
	int trees[PLAN_MAX_MOUNTS];
	int root_tree = -1, rootfs_lower = -1, proc = -1, sys_tree = -1, home_tree = -1, parent_lower = -1;

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		mount_error("making the sandbox's mounts private failed (%s)", strerror(errno));

	/* Phase 1: capture what the host shows. */
	if (mode == FS_DEFAULT)
		capture_system_dirs(plan);
	size_t system_steps = n_steps;
	if (mode == FS_READ_ONLY)
		root_tree = mounts_copy_tree(AT_FDCWD, "/", true);
	if (mode == FS_ROOTFS)
		rootfs_lower = mounts_open_lower(plan->rootfs);
	if (has_proc)
		proc = fresh_proc();
	else
		hidden_proc = fresh_proc(); /* never attached: only for the command's uid map */
	if (mode == FS_DEFAULT || mode == FS_ROOTFS)
		sys_tree = mounts_copy_tree(AT_FDCWD, "/sys", true);
	capture_devices();
	if (has_home && home_holds_cwd(plan))
		home_tree = mounts_copy_tree(AT_FDCWD, plan->home, false);
	if (parent)
		parent_lower = mounts_open_lower(parent);
	for (size_t i = 0; i < plan->n_mounts; i++) {
		const struct mount_entry *m = &plan->mounts[i];
		trees[i] = -1;
		if (m->kind == MOUNT_BIND_RO || m->kind == MOUNT_BIND_RW)
			trees[i] = mounts_copy_tree(AT_FDCWD, m->source, m->kind == MOUNT_BIND_RO);
		else if (m->kind == MOUNT_OVERLAY)
			trees[i] = mounts_open_lower(m->source);
		else if (m->kind == MOUNT_PROC && !has_proc)
			trees[i] = fresh_proc();
	}

	/* Phase 2: the store and the layers in it, then the root. */
	mount_store(plan);
	overlay_captured_lowers(0, system_steps);
	if (parent_lower >= 0)
		parent_lower = overlay_or_fail(parent_lower, parent);
	for (size_t i = 0; i < plan->n_mounts; i++)
		if (plan->mounts[i].kind == MOUNT_OVERLAY)
			trees[i] = overlay_or_fail(trees[i], plan->mounts[i].source);
	int tmp_tree = store_dir("tmp", 01777);
	int empty_home = has_home && home_tree < 0 ? store_dir("home", 0755) : -1;
	int resolv_tree = -1, hosts_tree = -1;
	if (plan->n_resolvers > 0) {
		write_resolv_conf(plan);
		resolv_tree = mounts_copy_tree(store, "resolv.conf", true);
		write_hosts(plan);
		hosts_tree = mounts_copy_tree(store, "hosts", true);
	}
	if (mkdirat(store, "root", 0755) != 0)
		mount_error("creating the sandbox's root failed (%s)", strerror(errno));
	if (root_tree >= 0 || rootfs_lower >= 0) {
		int tree = root_tree >= 0 ? root_tree : overlay_or_fail(rootfs_lower, plan->rootfs);
		if (move_mount(tree, "", AT_FDCWD, STAGED_ROOT, MOVE_MOUNT_F_EMPTY_PATH) != 0)
			mount_error("attaching the sandbox's root failed (%s)", strerror(errno));
		close(tree);
	} else if (mount(STAGED_ROOT, STAGED_ROOT, NULL, MS_BIND, NULL) != 0) {
		mount_error("creating the sandbox's root failed (%s)", strerror(errno));
	}

	/* What phase 3 attaches after the system directories, in order. */
	if (proc >= 0)
		add_step(STEP_ATTACH, proc, "/proc", NULL);
	if (sys_tree >= 0)
		add_step(STEP_ATTACH, sys_tree, "/sys", NULL);
	add_step(STEP_DEVICES, -1, "/dev", NULL);
	add_step(STEP_ATTACH, tmp_tree, "/tmp", NULL);
	if (mode == FS_READ_ONLY)
		add_step(STEP_TMPFS, 1, "/run", NULL);
	else if (mode == FS_DEFAULT)
		add_step(STEP_DIR, -1, "/run", NULL);
	if (has_home)
		add_step(STEP_ATTACH, home_tree >= 0 ? home_tree : empty_home, plan->home, NULL);
	if (parent_lower >= 0)
		add_step(STEP_ATTACH, parent_lower, parent, NULL);
	for (size_t i = 0; i < plan->n_mounts; i++) {
		const struct mount_entry *m = &plan->mounts[i];
		if (m->kind == MOUNT_TMPFS)
			add_step(STEP_TMPFS, 0, m->dest, NULL);
		else if (trees[i] >= 0) /* -M /proc where a fresh /proc is already planned needs nothing */
			add_step(STEP_ATTACH, trees[i], m->dest, NULL);
	}
	if (resolv_tree >= 0)
		add_step(STEP_ATTACH, resolv_tree, "/etc/resolv.conf", NULL);
	if (hosts_tree >= 0)
		add_step(STEP_ATTACH, hosts_tree, "/etc/hosts", NULL);

	mounts_pivot(STAGED_ROOT);

	/* Phase 3: attach, inside the new root. */
	for (size_t i = 0; i < n_steps; i++)
		apply_step(&steps[i]);
	close(store);

	if (chdir(plan->cwd) != 0)
		mount_error("entering the working directory %s inside the sandbox failed (%s)", plan->cwd,
			    strerror(errno));
}
