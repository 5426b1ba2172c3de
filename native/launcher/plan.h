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

enum mount_kind {
	MOUNT_BIND_RO,
	MOUNT_BIND_RW,
	MOUNT_TMPFS,
};

struct mount_entry {
	enum mount_kind kind;
	const char *source; /* canonical host path; NULL for tmpfs */
	const char *dest;   /* absolute path inside the sandbox */
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

#define PLAN_MAX_MOUNTS 64
#define PLAN_MAX_RESOLVERS 8

struct launch_plan {
	bool probe; /* only check that the namespaces can be set up (tapbox doctor), run nothing */
	struct net_plan net;
	enum identity identity;
	uid_t outer_uid;
	gid_t outer_gid;
	const char *hostname;
	const char *cwd; /* canonical; bound writable at the same path */
	/* Applied in order after the read-only root, /proc and /tmp: the cwd first, then the extras. */
	struct mount_entry mounts[PLAN_MAX_MOUNTS];
	size_t n_mounts;
	const char *resolvers[PLAN_MAX_RESOLVERS];
	size_t n_resolvers;
	char **command; /* NULL-terminated argv; NULL when probing */
};

/* Fills plan from argv; on a bad flag reports EUSAGE and exits 125. */
void plan_parse(struct launch_plan *plan, int argc, char **argv);

#endif
