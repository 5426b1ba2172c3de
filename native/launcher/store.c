/* store.c — the on-disk store of throw-away layers (-d DIR, or the -o / -h base directory).
 *
 * By default every throw-away layer lives in a tmpfs inside the sandbox's mount namespace and
 * vanishes with it. With a store directory, the outer launcher (host namespaces, the caller's uid)
 * creates DIR/.tapbox-run-XXXXXX, holds an flock on it for the sandbox's lifetime, and removes it
 * once the sandbox has exited. If tapbox itself is SIGKILLed the lock dies with the process, and the
 * next launch with the same store removes every unlocked run directory it finds.
 *
 * Removal never follows a symlink the sandbox planted: each entry is lstat'ed and only removed by
 * name (unlinkat); directories are entered through O_NOFOLLOW descriptors, and made searchable
 * (overlayfs leaves its work directory at mode 0) through that descriptor, never through a path.
 * Hard links can't reach outside: the layers sit on their own mount inside the sandbox.
 */
#include "store.h"

#include "report.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define RUN_PREFIX ".tapbox-run-"

static void remove_children(int dir)
{
	DIR *listing = fdopendir(dir);
	struct dirent *entry;

	if (!listing) {
		close(dir);
		return;
	}
	while ((entry = readdir(listing)))
		if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
			remove_entry(dirfd(listing), entry->d_name);
	closedir(listing);
}

void remove_entry(int parent, const char *name)
{
	struct stat st;
	char self[64];

	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		int path_fd = openat(parent, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (path_fd < 0)
			return;
		/* chmod through the descriptor's /proc link: the very directory we opened. */
		snprintf(self, sizeof self, "/proc/self/fd/%d", path_fd);
		chmod(self, 0700);
		int dir = openat(path_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		close(path_fd);
		if (dir >= 0)
			remove_children(dir);
		unlinkat(parent, name, AT_REMOVEDIR);
	} else {
		unlinkat(parent, name, 0);
	}
}

static void sweep_stale_runs(int store)
{
	int listing_fd = openat(store, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *listing = listing_fd >= 0 ? fdopendir(listing_fd) : NULL;
	struct dirent *entry;

	if (!listing)
		return;
	while ((entry = readdir(listing))) {
		if (strncmp(entry->d_name, RUN_PREFIX, strlen(RUN_PREFIX)) != 0)
			continue;
		int run = openat(store, entry->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (run < 0)
			continue;
		/* Unlocked: its launcher is gone. */
		if (flock(run, LOCK_EX | LOCK_NB) == 0)
			remove_entry(store, entry->d_name);
		close(run);
	}
	closedir(listing);
}

void store_sweep(const char *dir)
{
	int store = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (store < 0)
		fail("EMOUNT", EXIT_SETUP_FAILED, "the store directory %s can't be opened (%s); pass an existing directory you own",
		     dir, strerror(errno));
	sweep_stale_runs(store);
	close(store);
}

void store_prepare(struct launch_plan *plan)
{
	if (!plan->store)
		return;
	store_sweep(plan->store);

	/* Another launcher's sweep may take a directory in the instant between mkdtemp and flock: a
	 * locked directory that still has a link is ours. */
	for (int attempt = 0; attempt < 3; attempt++) {
		struct stat st;
		snprintf(plan->run_dir, sizeof plan->run_dir, "%s/" RUN_PREFIX "XXXXXX", plan->store);
		if (!mkdtemp(plan->run_dir))
			fail("EMOUNT", EXIT_SETUP_FAILED, "creating a run directory in %s failed (%s); check that you can write there",
			     plan->store, strerror(errno));
		/* Kept open (and locked) until we exit; inherited by the sandbox, closed at the command's exec. */
		int lock = open(plan->run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (lock < 0 || flock(lock, LOCK_EX) != 0)
			fail("EMOUNT", EXIT_SETUP_FAILED, "locking %s failed (%s)", plan->run_dir, strerror(errno));
		if (fstat(lock, &st) == 0 && st.st_nlink > 0)
			return;
		close(lock);
	}
	fail("EMOUNT", EXIT_SETUP_FAILED, "creating a run directory in %s kept failing; is another program removing its entries?",
	     plan->store);
}

void store_remove(const struct launch_plan *plan)
{
	if (!plan->store)
		return;
	int store = open(plan->store, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (store < 0)
		return;
	remove_entry(store, strrchr(plan->run_dir, '/') + 1);
	close(store);
}
