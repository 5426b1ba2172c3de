/* plan.h — everything the launcher will do, decided from the command line before it clones. */
#ifndef TAPBOX_PLAN_H
#define TAPBOX_PLAN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum net_mode {
	NET_TAP,  /* new netns whose only link is tap0, handed to the supervisor */
	NET_NONE, /* new netns with only lo */
	NET_HOST, /* the host's network namespace */
};

enum identity {
	IDENTITY_ROOT,     /* uid/gid 0 inside (default) */
	IDENTITY_SAME_UID, /* the invoking uid/gid inside */
	IDENTITY_NOBODY,   /* 65534/65534 inside */
};

/* How the sandbox's root is assembled (filesystem.c explains each). */
enum fs_mode {
	FS_READ_ONLY, /* the host's root, read-only all the way down (no mode flag) */
	FS_DEFAULT,   /* -x: system directories as throw-away overlays */
	FS_CUSTOM,    /* -o: only what is asked for, plus cwd, an empty home, /dev and /tmp */
	FS_HERMETIC,  /* -h: only -M/-w paths and cwd, plus /dev and /tmp */
	FS_ROOTFS,    /* --rootfs: a user-supplied root as a throw-away overlay */
};

enum mount_kind {
	MOUNT_BIND_RO,
	MOUNT_BIND_RW,
	MOUNT_TMPFS,
	MOUNT_OVERLAY, /* the host path as the lower layer, writes thrown away */
	MOUNT_PROC,    /* a fresh proc: "-M /proc" (binding the host's /proc would show its processes) */
};

struct mount_entry {
	enum mount_kind kind;
	const char *source; /* canonical host path; NULL for tmpfs */
	const char *dest;   /* absolute path inside the sandbox */
};

/* Per-process resource limits (the fallback where no cgroup can be had: limits.c); 0 means none. */
struct limits {
	unsigned long long memory_bytes;
	unsigned long pids;
	unsigned cpus;           /* run on this many of the allowed CPUs */
	const char *cpuset;      /* run on these CPUs: "0,2,5" (NULL: all allowed) */
	unsigned long long storage_bytes; /* size of the tmpfs holding every throw-away layer */
};

/* Per native syscall number: what the seccomp filter does with it. */
enum syscall_rule {
	SYSCALL_ALLOW,
	SYSCALL_DENY,        /* EPERM */
	SYSCALL_CHECK_ARGS,  /* denied for dangerous arguments only (ioctl TIOCSTI, clone/unshare
				CLONE_NEWUSER, personality flags) */
	SYSCALL_NOSYS,       /* ENOSYS, so libc falls back to a call we can check (clone3 -> clone) */
};

#define SECCOMP_MAX_SYSCALL 512

struct seccomp_plan {
	bool enabled;
	unsigned char rules[SECCOMP_MAX_SYSCALL]; /* enum syscall_rule */
};

struct net_plan {
	enum net_mode mode;
	bool vnet_hdr;
	unsigned mtu;
	unsigned char mac[6];
	struct in_addr ip4, gw4;
	unsigned prefix4;
	struct in6_addr ip6, gw6;
	unsigned prefix6;
};

/* A subordinate id range of the invoking user (/etc/subuid, /etc/subgid), mapped from id 1 inside. */
struct id_range {
	unsigned long start;
	unsigned long count; /* 0: none */
};

/* The most subordinate ids mapped (podman's default size of a range): ids 1..65536 inside. */
#define PLAN_MAX_SUBIDS 65536

#define PLAN_MAX_MOUNTS 64
#define PLAN_MAX_RESOLVERS 8

struct launch_plan {
	bool probe; /* only check that the namespaces can be set up (tapbox doctor), run nothing */
	const char *sweep_store; /* --sweep-store DIR: only remove DIR's stale run directories (store.c) */
	/* --join PID: start the command inside the running sandbox whose command is PID (join.c), with
	 * this plan's seccomp filter, capabilities, limits and cgroup; no new sandbox. 0: none. */
	pid_t join_pid;
	/* --join-tty FDS (e.g. 0,1,2): which of the joined command's stdin, stdout, stderr get a pty of
	 * the box's own devpts, whose master goes to the caller on fd 3 (join.c). A bit per fd; 0: none. */
	unsigned join_tty;
	struct net_plan net;
	/* --userns-only: run the command in a bare user namespace mapped with subuid/subgid, and nothing
	 * else (idmap.c): the image store's chown pass and removals run there. */
	bool userns_only;
	/* --apply-owners ROOT, --remove-tree PATH: the image store's operations (idmap.c), run as root of
	 * such a namespace. NULL: none. */
	const char *apply_owners;
	const char *remove_tree;
	enum identity identity;
	/* --subuid/--subgid START:COUNT: the sandbox's user namespace maps 0 to the invoking uid/gid and
	 * 1..COUNT to the range, written by the setuid newuidmap/newgidmap (userns.c). count 0: 0 only. */
	struct id_range subuid, subgid;
	uid_t outer_uid;
	gid_t outer_gid;
	const char *hostname;
	enum fs_mode fs_mode;
	const char *cwd;    /* canonical; bound writable at the same path */
	const char *home;   /* canonical $HOME of the caller, or NULL; empty inside unless it holds cwd */
	const char *rootfs; /* canonical directory under FS_ROOTFS */
	/* Where the throw-away layers live: NULL for memory (a tmpfs), else a host directory in which
	 * the outer launcher creates run_dir and removes it after the sandbox exits (store.c). */
	const char *store;
	char run_dir[4096];
	/* Applied in order after the mode's root, /proc and /tmp: the cwd first, then the extras. */
	struct mount_entry mounts[PLAN_MAX_MOUNTS];
	size_t n_mounts;
	struct limits limits;
	/* The cgroup v2 directory the supervisor prepared with the sandbox's limits; the outer launcher
	 * joins it before clone(), so every process of the sandbox starts inside it. NULL: none. */
	const char *cgroup;
	unsigned timeout_s; /* SIGTERM to the command after this many seconds; 0: none */
	unsigned grace_s;   /* then SIGKILL this many seconds later (0: SIGKILL at once) */
	unsigned long long keep_caps; /* capability bounding set of the command (bit per CAP_*) */
	struct seccomp_plan seccomp;
	const char *resolvers[PLAN_MAX_RESOLVERS];
	size_t n_resolvers;
	char **command; /* NULL-terminated argv; NULL when probing */
};

/* Fills plan from argv; on a bad flag reports EUSAGE and exits 125. */
void plan_parse(struct launch_plan *plan, int argc, char **argv);

#endif
