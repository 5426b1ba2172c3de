/* idmap.c — the image store's side of the launcher: files owned by the user's subordinate ids.
 *
 * Theory of operation
 * -------------------
 * An image's files keep their owners (uid 1000, gid 42, ...) as the user's subordinate ids on the
 * host, as rootless podman keeps them: image uid N is host uid START+N-1 for 1 <= N <= COUNT, and
 * image uid 0 is the user. Only a process in a user namespace with that map may give a file such an
 * owner, or remove it afterwards (the user's own uid may not). The supervisor (src/idmap/) runs
 *
 *     tapbox-launcher --userns-only --subuid START:COUNT --subgid START:COUNT -- COMMAND...
 *
 * which clones a bare user namespace (no other namespace: the host's files, processes and network),
 * has newuidmap/newgidmap map it (userns.c; refused: exit 125, nothing ran), and runs COMMAND there as
 * its root, with every capability over that namespace only, and no_new_privs. COMMAND is the launcher
 * itself in one of two modes, which are plain file operations (exit 1 when one fails):
 *
 *   --apply-owners ROOT   reads "UID GID PATH" records, each ended by a NUL, on stdin, and gives each
 *                         PATH under ROOT that owner. Every directory on the way is opened with
 *                         O_NOFOLLOW from ROOT down, and the owner is set on the entry itself
 *                         (AT_SYMLINK_NOFOLLOW): a symlink in the tree can't lead the chown out of it.
 *   --remove-tree PATH    removes PATH and everything below it, never following a symlink (store.c),
 *                         and fails if anything is left.
 *
 * Outside such a namespace they work on the user's own files only, as the kernel decides.
 */
#include "idmap.h"

#include "init.h"
#include "report.h"
#include "signals.h"
#include "store.h"
#include "userns.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The namespace could not be had: 125, as for every setup failure. An operation that failed: 1. */
#define idmap_error(...) fail("EUSERNS", EXIT_SETUP_FAILED, __VA_ARGS__)
#define operation_error(...) fail("EIDMAP", 1, __VA_ARGS__)

_Noreturn void idmap_run_bare(const struct launch_plan *plan, const sigset_t *signals)
{
	char reason[512], ready;
	int sync[2];

	if (pipe2(sync, O_CLOEXEC) != 0)
		idmap_error("creating a pipe failed (%s)", strerror(errno));
	pid_t child = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
	if (child < 0) {
		userns_explain_refusal(reason, sizeof reason, errno);
		idmap_error("%s", reason);
	}
	if (child == 0) {
		close(sync[1]);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || read(sync[0], &ready, 1) != 1)
			_exit(EXIT_SETUP_FAILED);
		close(sync[0]);
		signals_reset_for_exec();
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
			idmap_error("setting no_new_privs failed (%s)", strerror(errno));
		execvp(plan->command[0], plan->command);
		idmap_error("cannot run %s (%s)", plan->command[0], strerror(errno));
	}
	close(sync[0]);
	if (userns_map_subordinate(child, plan, reason, sizeof reason) != 0) {
		kill(child, SIGKILL);
		idmap_error("mapping your subordinate ids failed: %s", reason);
	}
	if (write(sync[1], "1", 1) != 1)
		idmap_error("starting the command failed (%s)", strerror(errno));
	close(sync[1]);
	_exit(supervise(child, signals, 0, 0));
}

/* Gives root/path (relative, no "." or ".." components) the owner uid:gid; 0 or an errno. */
static int chown_below(int root, char *path, uid_t uid, gid_t gid)
{
	int dir = root;
	char *part = path, *slash;
	int err = 0;

	while ((slash = strchr(part, '/'))) {
		*slash = '\0';
		int next = openat(dir, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		*slash = '/';
		if (next < 0) {
			err = errno;
			break;
		}
		if (dir != root)
			close(dir);
		dir = next;
		part = slash + 1;
	}
	if (err == 0 && fchownat(dir, part, uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
		err = errno;
	if (dir != root)
		close(dir);
	return err;
}

static unsigned long parse_id(const char *text, char **end)
{
	errno = 0;
	unsigned long id = strtoul(text, end, 10);
	if (errno || *end == text || text[0] == '-' || id > PLAN_MAX_SUBIDS || **end != ' ')
		return ULONG_MAX;
	return id;
}

int idmap_apply_owners(const char *root_path)
{
	int root = open(root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	char *record = NULL, *end;
	size_t size = 0;
	ssize_t len;

	if (root < 0)
		operation_error("opening %s failed (%s)", root_path, strerror(errno));
	while ((len = getdelim(&record, &size, '\0', stdin)) > 0) {
		unsigned long uid = parse_id(record, &end);
		unsigned long gid = uid == ULONG_MAX ? ULONG_MAX : parse_id(end + 1, &end);
		char *path = end + 1;
		if (gid == ULONG_MAX || record[len - 1] != '\0' || path[0] == '\0' || path[0] == '/' ||
		    strstr(path, "//") || strcmp(path, "..") == 0 || strncmp(path, "../", 3) == 0 ||
		    strstr(path, "/../") || (strlen(path) >= 3 && strcmp(path + strlen(path) - 3, "/..") == 0))
			operation_error("--apply-owners: a record is not \"UID GID PATH\" with a relative PATH under %s", root_path);
		int err = chown_below(root, path, uid, gid);
		if (err != 0)
			operation_error("giving %s/%s the owner %lu:%lu failed (%s)", root_path, path, uid, gid, strerror(err));
	}
	free(record);
	close(root);
	return 0;
}

int idmap_remove_tree(const char *path)
{
	const char *slash = strrchr(path, '/');
	char parent_path[PATH_MAX];
	struct stat st;

	if (path[0] != '/' || !slash[1] || strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0 ||
	    (size_t)(slash - path) >= sizeof parent_path)
		operation_error("--remove-tree takes an absolute path to a file or directory, not \"%s\"", path);
	snprintf(parent_path, sizeof parent_path, "%.*s", slash == path ? 1 : (int)(slash - path), path);
	int parent = open(parent_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (parent < 0)
		operation_error("opening %s failed (%s)", parent_path, strerror(errno));
	remove_entry(parent, slash + 1);
	if (fstatat(parent, slash + 1, &st, AT_SYMLINK_NOFOLLOW) == 0)
		operation_error("%s could not be removed in full; check what is left in it (ls -lan %s)", path, path);
	close(parent);
	return 0;
}
