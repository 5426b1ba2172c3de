/* plan.c — command-line parsing into a struct launch_plan.
 *
 *   tapbox-launcher [--net tap|none|host] [--vnet-hdr] [--mtu N] [--mac MAC]
 *                   [--ip4 ADDR/PREFIX] [--gw4 ADDR] [--ip6 ADDR/PREFIX] [--gw6 ADDR]
 *                   [--resolv NS]... [--hostname NAME] [--same-uid | --nobody]
 *                   [--subuid START:COUNT --subgid START:COUNT]
 *                   [--fs read-only|default|custom|hermetic | --rootfs DIR] [--home DIR] [--store DIR]
 *                   [--cwd DIR] [--bind-ro SRC[:DEST]]... [--bind-rw SRC[:DEST]]...
 *                   [--overlay SRC[:DEST]]... [--tmpfs DIR]...
 *                   [--storage BYTES] [--memory BYTES] [--pids N] [--cpus N] [--cpuset LIST]
 *                   [--cgroup DIR]
 *                   [--timeout SECONDS] [--grace SECONDS]
 *                   [--seccomp default|off|FILE] [--allow-syscall NAME]... [--deny-syscall NAME]...
 *                   [--cap-add CAP]... [--cap-drop CAP]...
 *                   -- COMMAND [ARGS...]
 *   tapbox-launcher --probe      (exits 0 if the sandbox's namespaces can be created, else explains)
 *   tapbox-launcher --sweep-store DIR   (removes DIR's run directories whose launcher is gone: the
 *                                        clean-up of a box whose supervisor was killed)
 *   tapbox-launcher --userns-only --subuid START:COUNT --subgid START:COUNT -- COMMAND [ARGS...]
 *                                (COMMAND as root of a bare user namespace with those ids: idmap.c)
 *   tapbox-launcher --apply-owners ROOT < "UID GID PATH\0"...    (idmap.c)
 *   tapbox-launcher --remove-tree PATH                           (idmap.c)
 *
 * Host paths are canonicalised here, in the host's mount namespace, so that the sandbox sees
 * exactly the file the caller named.
 */
#include "plan.h"

#include "capabilities.h"
#include "report.h"
#include "seccomp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define usage_error(...) fail("EUSAGE", EXIT_SETUP_FAILED, __VA_ARGS__)

static const struct net_plan default_net = {
	.mode = NET_TAP,
	.mtu = 65520,
	.mac = { 0x02, 0x00, 0x00, 0x00, 0x01, 0x00 },
	.prefix4 = 24,
	.prefix6 = 64,
};

static void parse_ip(int family, const char *text, void *out, const char *flag)
{
	if (inet_pton(family, text, out) != 1)
		usage_error("%s expects an IPv%d address, not \"%s\"", flag, family == AF_INET ? 4 : 6, text);
}

static void parse_cidr(int family, const char *text, void *addr, unsigned *prefix, const char *flag)
{
	unsigned max = family == AF_INET ? 32 : 128;
	char copy[INET6_ADDRSTRLEN + 8];
	char *slash, *end;

	if (strlen(text) >= sizeof copy || !(slash = strchr(strcpy(copy, text), '/')))
		usage_error("%s expects ADDRESS/PREFIX (e.g. %s), not \"%s\"", flag,
			    family == AF_INET ? "10.0.2.100/24" : "fd00::100/64", text);
	*slash = '\0';
	parse_ip(family, copy, addr, flag);
	errno = 0;
	unsigned long value = strtoul(slash + 1, &end, 10);
	if (errno || *end || end == slash + 1 || value > max)
		usage_error("%s: the prefix length in \"%s\" must be a number from 0 to %u", flag, text, max);
	*prefix = value;
}

static void parse_mac(const char *text, unsigned char mac[6])
{
	char tail;

	if (sscanf(text, "%2hhx:%2hhx:%2hhx:%2hhx:%2hhx:%2hhx%c", &mac[0], &mac[1], &mac[2], &mac[3], &mac[4],
		   &mac[5], &tail) != 6)
		usage_error("--mac expects six hex bytes like 02:00:00:00:01:00, not \"%s\"", text);
	if (mac[0] & 0x01)
		usage_error("--mac %s is a multicast address; use a unicast one (first byte even, e.g. 02:...)", text);
}

static unsigned parse_mtu(const char *text)
{
	char *end;
	errno = 0;
	unsigned long value = strtoul(text, &end, 10);

	if (errno || *end || end == text || value < 1280 || value > 65535)
		usage_error("--mtu must be a number from 1280 (the IPv6 minimum) to 65535, not \"%s\"", text);
	return value;
}

static const char *canonical_path(const char *path, const char *flag)
{
	char *resolved = realpath(path, NULL);

	if (!resolved)
		usage_error("%s %s: %s; pass an existing path", flag, path, strerror(errno));
	return resolved;
}

static const char *absolute_dest(const char *path, const char *flag)
{
	if (path[0] != '/')
		usage_error("%s: \"%s\" must be an absolute path inside the sandbox", flag, path);
	return path;
}

static void add_mount(struct launch_plan *plan, enum mount_kind kind, const char *source, const char *dest)
{
	if (plan->n_mounts == PLAN_MAX_MOUNTS)
		usage_error("too many --bind-ro/--bind-rw/--tmpfs flags (at most %d); bind a common parent directory instead",
			    PLAN_MAX_MOUNTS - 1);
	plan->mounts[plan->n_mounts++] = (struct mount_entry){ .kind = kind, .source = source, .dest = dest };
}

/* SRC[:DEST] — DEST defaults to SRC as given when absolute (-M /lib64 shows /usr/lib64's files at
 * /lib64, where programs look for them), else to the canonical SRC. */
static void add_bind(struct launch_plan *plan, enum mount_kind kind, char *arg, const char *flag)
{
	char *colon = strchr(arg, ':');
	struct stat st;

	if (colon)
		*colon = '\0';
	const char *source = canonical_path(arg, flag);
	if (kind == MOUNT_OVERLAY && (stat(source, &st) != 0 || !S_ISDIR(st.st_mode)))
		usage_error("%s %s: an overlay needs a directory; bind a file with -M or -w instead", flag, source);
	/* The host's /proc would show the host's processes: "-M /proc" means a fresh one. */
	if (kind != MOUNT_OVERLAY && strcmp(source, "/proc") == 0)
		kind = MOUNT_PROC;
	add_mount(plan, kind, source, colon ? absolute_dest(colon + 1, flag) : arg[0] == '/' ? arg : source);
}

static unsigned long long parse_number(const char *text, const char *flag, unsigned long long min,
				       unsigned long long max)
{
	char *end;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);

	if (errno || *end || end == text || text[0] == '-' || value < min || value > max)
		usage_error("%s takes a whole number from %llu to %llu, not \"%s\"", flag, min, max, text);
	return value;
}

/* --join-tty "0,1,2" → a bit per fd; each of 0, 1, 2 at most once. */
static unsigned parse_std_fds(const char *text)
{
	unsigned fds = 0;

	for (const char *p = text;; p += 2) {
		if (p[0] < '0' || p[0] > '2' || (fds & (1u << (p[0] - '0'))) || (p[1] != ',' && p[1] != '\0'))
			usage_error("--join-tty takes some of 0, 1, 2 separated by commas, not \"%s\"", text);
		fds |= 1u << (p[0] - '0');
		if (p[1] == '\0')
			return fds;
	}
}

static enum fs_mode parse_fs_mode(const char *text)
{
	static const char *const names[] = { [FS_READ_ONLY] = "read-only", [FS_DEFAULT] = "default",
					     [FS_CUSTOM] = "custom", [FS_HERMETIC] = "hermetic" };

	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcmp(text, names[i]) == 0)
			return i;
	usage_error("--fs expects read-only, default, custom or hermetic, not \"%s\" (--rootfs DIR for a root of your own)",
		    text);
}

static const char *existing_directory(const char *path, const char *flag)
{
	const char *canonical = canonical_path(path, flag);
	struct stat st;

	if (stat(canonical, &st) != 0 || !S_ISDIR(st.st_mode))
		usage_error("%s %s is not a directory", flag, path);
	return canonical;
}

/* Every host path bound both read-only and writable is a contradiction, not a precedence rule. */
static void check_bind_conflicts(const struct launch_plan *plan)
{
	for (size_t i = 1; i < plan->n_mounts; i++)
		for (size_t j = 1; j < plan->n_mounts; j++)
			if (plan->mounts[i].kind == MOUNT_BIND_RO && plan->mounts[j].kind == MOUNT_BIND_RW &&
			    strcmp(plan->mounts[i].source, plan->mounts[j].source) == 0)
				usage_error("%s is bound both read-only and writable; give it once", plan->mounts[i].source);
}

#define MAX_ADJUSTMENTS 64

/* --allow-syscall, --deny-syscall, --cap-add, --cap-drop: applied once --seccomp is known. */
struct adjustments {
	const char *names[MAX_ADJUSTMENTS];
	int kinds[MAX_ADJUSTMENTS];
	size_t count;
};

static void add_adjustment(struct adjustments *list, int kind, const char *name)
{
	if (list->count == MAX_ADJUSTMENTS)
		usage_error("too many --allow-syscall/--deny-syscall/--cap-add/--cap-drop flags (at most %d)", MAX_ADJUSTMENTS);
	list->names[list->count] = name;
	list->kinds[list->count++] = kind;
}

static void add_resolver(struct launch_plan *plan, const char *text)
{
	unsigned char addr[sizeof(struct in6_addr)];

	if (inet_pton(AF_INET, text, addr) != 1 && inet_pton(AF_INET6, text, addr) != 1)
		usage_error("--resolv expects a nameserver IP address, not \"%s\"", text);
	if (plan->n_resolvers == PLAN_MAX_RESOLVERS)
		usage_error("too many --resolv flags (at most %d)", PLAN_MAX_RESOLVERS);
	plan->resolvers[plan->n_resolvers++] = text;
}

/* START:COUNT of /etc/subuid or /etc/subgid; newuidmap/newgidmap check it against those files again. */
static void parse_range(const char *text, struct id_range *range, const char *flag)
{
	char *colon, *end;

	errno = 0;
	range->start = strtoul(text, &colon, 10);
	if (errno || colon == text || *colon != ':' || text[0] == '-' || range->start == 0 || range->start > UINT32_MAX)
		usage_error("%s expects START:COUNT from /etc/subuid or /etc/subgid (e.g. 100000:65536), not \"%s\"", flag, text);
	range->count = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || colon[1] == '-' || range->count == 0 || range->count > PLAN_MAX_SUBIDS ||
	    range->start + range->count - 1 > UINT32_MAX - 1)
		usage_error("%s: the count in \"%s\" must be a number from 1 to %d that ends below 2^32-1", flag, text, PLAN_MAX_SUBIDS);
}

static void set_net_mode(struct launch_plan *plan, const char *text)
{
	if (strcmp(text, "tap") == 0)
		plan->net.mode = NET_TAP;
	else if (strcmp(text, "none") == 0)
		plan->net.mode = NET_NONE;
	else if (strcmp(text, "host") == 0)
		plan->net.mode = NET_HOST;
	else
		usage_error("--net expects tap, none or host, not \"%s\"", text);
}

enum {
	OPT_NET = 256, OPT_VNET_HDR, OPT_MTU, OPT_MAC, OPT_IP4, OPT_GW4, OPT_IP6, OPT_GW6, OPT_RESOLV,
	OPT_HOSTNAME, OPT_SAME_UID, OPT_NOBODY, OPT_CWD, OPT_BIND_RO, OPT_BIND_RW, OPT_TMPFS, OPT_PROBE,
	OPT_FS, OPT_ROOTFS, OPT_HOME, OPT_STORE, OPT_OVERLAY, OPT_STORAGE, OPT_MEMORY, OPT_PIDS, OPT_CPUS,
	OPT_TIMEOUT, OPT_GRACE, OPT_SECCOMP, OPT_ALLOW_SYSCALL, OPT_DENY_SYSCALL, OPT_CAP_ADD, OPT_CAP_DROP,
	OPT_CPUSET, OPT_CGROUP, OPT_JOIN, OPT_JOIN_TTY, OPT_SWEEP_STORE, OPT_SUBUID, OPT_SUBGID, OPT_USERNS_ONLY,
	OPT_APPLY_OWNERS, OPT_REMOVE_TREE,
};

static const struct option options[] = {
	{ "net", required_argument, NULL, OPT_NET },
	{ "vnet-hdr", no_argument, NULL, OPT_VNET_HDR },
	{ "mtu", required_argument, NULL, OPT_MTU },
	{ "mac", required_argument, NULL, OPT_MAC },
	{ "ip4", required_argument, NULL, OPT_IP4 },
	{ "gw4", required_argument, NULL, OPT_GW4 },
	{ "ip6", required_argument, NULL, OPT_IP6 },
	{ "gw6", required_argument, NULL, OPT_GW6 },
	{ "resolv", required_argument, NULL, OPT_RESOLV },
	{ "hostname", required_argument, NULL, OPT_HOSTNAME },
	{ "same-uid", no_argument, NULL, OPT_SAME_UID },
	{ "nobody", no_argument, NULL, OPT_NOBODY },
	{ "cwd", required_argument, NULL, OPT_CWD },
	{ "bind-ro", required_argument, NULL, OPT_BIND_RO },
	{ "bind-rw", required_argument, NULL, OPT_BIND_RW },
	{ "tmpfs", required_argument, NULL, OPT_TMPFS },
	{ "probe", no_argument, NULL, OPT_PROBE },
	{ "fs", required_argument, NULL, OPT_FS },
	{ "rootfs", required_argument, NULL, OPT_ROOTFS },
	{ "home", required_argument, NULL, OPT_HOME },
	{ "store", required_argument, NULL, OPT_STORE },
	{ "overlay", required_argument, NULL, OPT_OVERLAY },
	{ "storage", required_argument, NULL, OPT_STORAGE },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "pids", required_argument, NULL, OPT_PIDS },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "cpuset", required_argument, NULL, OPT_CPUSET },
	{ "cgroup", required_argument, NULL, OPT_CGROUP },
	{ "join", required_argument, NULL, OPT_JOIN },
	{ "join-tty", required_argument, NULL, OPT_JOIN_TTY },
	{ "sweep-store", required_argument, NULL, OPT_SWEEP_STORE },
	{ "subuid", required_argument, NULL, OPT_SUBUID },
	{ "subgid", required_argument, NULL, OPT_SUBGID },
	{ "userns-only", no_argument, NULL, OPT_USERNS_ONLY },
	{ "apply-owners", required_argument, NULL, OPT_APPLY_OWNERS },
	{ "remove-tree", required_argument, NULL, OPT_REMOVE_TREE },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "grace", required_argument, NULL, OPT_GRACE },
	{ "seccomp", required_argument, NULL, OPT_SECCOMP },
	{ "allow-syscall", required_argument, NULL, OPT_ALLOW_SYSCALL },
	{ "deny-syscall", required_argument, NULL, OPT_DENY_SYSCALL },
	{ "cap-add", required_argument, NULL, OPT_CAP_ADD },
	{ "cap-drop", required_argument, NULL, OPT_CAP_DROP },
	{ NULL, 0, NULL, 0 },
};

void plan_parse(struct launch_plan *plan, int argc, char **argv)
{
	const char *cwd = NULL;
	const char *seccomp = "default";
	struct adjustments syscalls = { .count = 0 }, caps = { .count = 0 };
	bool fs_given = false;
	int opt;

	*plan = (struct launch_plan){
		.net = default_net,
		.identity = IDENTITY_ROOT,
		.outer_uid = getuid(),
		.outer_gid = getgid(),
		.hostname = "tapbox",
		.fs_mode = FS_READ_ONLY,
		.grace_s = 10,
		.keep_caps = caps_default(),
	};
	inet_pton(AF_INET, "10.0.2.100", &plan->net.ip4);
	inet_pton(AF_INET, "10.0.2.2", &plan->net.gw4);
	inet_pton(AF_INET6, "fd00::100", &plan->net.ip6);
	inet_pton(AF_INET6, "fd00::2", &plan->net.gw6);
	/* The cwd is always the first mount; its slot is filled once --cwd is known. */
	plan->n_mounts = 1;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:", options, NULL)) != -1) {
		switch (opt) {
		case OPT_NET: set_net_mode(plan, optarg); break;
		case OPT_VNET_HDR: plan->net.vnet_hdr = true; break;
		case OPT_MTU: plan->net.mtu = parse_mtu(optarg); break;
		case OPT_MAC: parse_mac(optarg, plan->net.mac); break;
		case OPT_IP4: parse_cidr(AF_INET, optarg, &plan->net.ip4, &plan->net.prefix4, "--ip4"); break;
		case OPT_GW4: parse_ip(AF_INET, optarg, &plan->net.gw4, "--gw4"); break;
		case OPT_IP6: parse_cidr(AF_INET6, optarg, &plan->net.ip6, &plan->net.prefix6, "--ip6"); break;
		case OPT_GW6: parse_ip(AF_INET6, optarg, &plan->net.gw6, "--gw6"); break;
		case OPT_RESOLV: add_resolver(plan, optarg); break;
		case OPT_HOSTNAME:
			if (optarg[0] == '\0' || strlen(optarg) > HOST_NAME_MAX)
				usage_error("--hostname must be 1 to %d characters long", HOST_NAME_MAX);
			plan->hostname = optarg;
			break;
		case OPT_SAME_UID: plan->identity = IDENTITY_SAME_UID; break;
		case OPT_NOBODY: plan->identity = IDENTITY_NOBODY; break;
		case OPT_CWD: cwd = canonical_path(optarg, "--cwd"); break;
		case OPT_BIND_RO: add_bind(plan, MOUNT_BIND_RO, optarg, "--bind-ro"); break;
		case OPT_BIND_RW: add_bind(plan, MOUNT_BIND_RW, optarg, "--bind-rw"); break;
		case OPT_TMPFS: add_mount(plan, MOUNT_TMPFS, NULL, absolute_dest(optarg, "--tmpfs")); break;
		case OPT_PROBE: plan->probe = true; break;
		case OPT_FS:
			if (fs_given)
				usage_error("give one filesystem mode (--fs or --rootfs), not several");
			plan->fs_mode = parse_fs_mode(optarg);
			fs_given = true;
			break;
		case OPT_ROOTFS:
			if (fs_given)
				usage_error("give one filesystem mode (--fs or --rootfs), not several");
			plan->fs_mode = FS_ROOTFS;
			plan->rootfs = existing_directory(optarg, "--rootfs");
			fs_given = true;
			break;
		case OPT_HOME: plan->home = existing_directory(optarg, "--home"); break;
		case OPT_STORE: plan->store = existing_directory(optarg, "--store"); break;
		case OPT_OVERLAY: add_bind(plan, MOUNT_OVERLAY, optarg, "--overlay"); break;
		case OPT_STORAGE: plan->limits.storage_bytes = parse_number(optarg, "--storage", 4096, ~0ULL >> 1); break;
		case OPT_MEMORY: plan->limits.memory_bytes = parse_number(optarg, "--memory", 1 << 20, ~0ULL >> 1); break;
		case OPT_PIDS: plan->limits.pids = parse_number(optarg, "--pids", 1, 1 << 22); break;
		case OPT_CPUS: plan->limits.cpus = parse_number(optarg, "--cpus", 1, CPU_SETSIZE); break;
		case OPT_CPUSET:
			if (optarg[0] == '\0' || strspn(optarg, "0123456789,") != strlen(optarg))
				usage_error("--cpuset expects CPU numbers separated by commas, e.g. 0,2, not \"%s\"", optarg);
			plan->limits.cpuset = optarg;
			break;
		case OPT_CGROUP: plan->cgroup = existing_directory(optarg, "--cgroup"); break;
		case OPT_JOIN: plan->join_pid = parse_number(optarg, "--join", 2, 1 << 22); break;
		case OPT_JOIN_TTY: plan->join_tty = parse_std_fds(optarg); break;
		case OPT_SWEEP_STORE: plan->sweep_store = existing_directory(optarg, "--sweep-store"); break;
		case OPT_SUBUID: parse_range(optarg, &plan->subuid, "--subuid"); break;
		case OPT_SUBGID: parse_range(optarg, &plan->subgid, "--subgid"); break;
		case OPT_USERNS_ONLY: plan->userns_only = true; break;
		case OPT_APPLY_OWNERS: plan->apply_owners = existing_directory(optarg, "--apply-owners"); break;
		case OPT_REMOVE_TREE: plan->remove_tree = optarg; break;
		case OPT_TIMEOUT: plan->timeout_s = parse_number(optarg, "--timeout", 1, 1u << 30); break;
		case OPT_GRACE: plan->grace_s = parse_number(optarg, "--grace", 0, 1u << 30); break;
		case OPT_SECCOMP: seccomp = optarg; break;
		case OPT_ALLOW_SYSCALL: add_adjustment(&syscalls, SYSCALL_ALLOW, optarg); break;
		case OPT_DENY_SYSCALL: add_adjustment(&syscalls, SYSCALL_DENY, optarg); break;
		case OPT_CAP_ADD: add_adjustment(&caps, 1, optarg); break;
		case OPT_CAP_DROP: add_adjustment(&caps, 0, optarg); break;
		case ':': usage_error("%s needs a value", argv[optind - 1]);
		default: usage_error("unknown option %s; see the usage at the top of native/launcher/plan.c", argv[optind - 1]);
		}
	}
	if (!plan->subuid.count != !plan->subgid.count)
		usage_error("--subuid and --subgid go together; give both ranges or neither");
	if (plan->userns_only && (!plan->subuid.count || plan->probe))
		usage_error("--userns-only maps your subordinate ids for a command: give --subuid, --subgid and the command, not --probe");
	if (plan->probe) {
		plan->net.mode = NET_NONE;
		return;
	}
	if (plan->sweep_store || plan->apply_owners || plan->remove_tree)
		return;
	if (optind >= argc)
		usage_error("no command given; put it after --, e.g. tapbox-launcher -- sh");
	plan->command = &argv[optind];
	if (plan->join_tty && !plan->join_pid)
		usage_error("--join-tty gives a joined command its terminal; it needs --join PID");
	if (plan->userns_only) {
		plan->net.mode = NET_NONE; /* no namespace but the user one: not even the network's */
		return;
	}

	if (!cwd)
		cwd = canonical_path(".", "the current directory");
	struct stat st;
	if (stat(cwd, &st) != 0 || !S_ISDIR(st.st_mode))
		usage_error("--cwd %s is not a directory", cwd);
	/* Binding / writable would undo the read-only root. */
	if (strcmp(cwd, "/") == 0)
		usage_error("the working directory is /, which would make the whole filesystem writable; cd to a project directory or pass --cwd DIR");
	plan->cwd = cwd;
	plan->mounts[0] = (struct mount_entry){ .kind = MOUNT_BIND_RW, .source = cwd, .dest = cwd };
	check_bind_conflicts(plan);
	if (plan->store && plan->limits.storage_bytes)
		usage_error("--storage caps the in-memory store; with a store directory the disk's free space is the cap, so drop one");

	if (strcmp(seccomp, "off") == 0)
		plan->seccomp.enabled = false;
	else if (strcmp(seccomp, "default") == 0)
		seccomp_plan_default(&plan->seccomp);
	else
		seccomp_plan_load(&plan->seccomp, seccomp);
	if (!plan->seccomp.enabled && syscalls.count)
		usage_error("--allow-syscall and --deny-syscall adjust the seccomp filter, which --seccomp off turns off; drop one");
	for (size_t i = 0; i < syscalls.count; i++)
		seccomp_plan_set(&plan->seccomp, syscalls.names[i], syscalls.kinds[i],
				 syscalls.kinds[i] == SYSCALL_ALLOW ? "--allow-syscall" : "--deny-syscall");
	for (size_t i = 0; i < caps.count; i++) {
		unsigned long long bit = caps_bit(caps.names[i], caps.kinds[i] ? "--cap-add" : "--cap-drop");
		plan->keep_caps = caps.kinds[i] ? plan->keep_caps | bit : plan->keep_caps & ~bit;
	}
}
