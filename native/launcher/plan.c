/* plan.c — command-line parsing into a struct launch_plan.
 *
 *   tapbox-launcher [--net tap|none|host] [--vnet-hdr] [--mtu N] [--mac MAC]
 *                   [--ip4 ADDR/PREFIX] [--gw4 ADDR] [--ip6 ADDR/PREFIX] [--gw6 ADDR]
 *                   [--resolv NS]... [--hostname NAME] [--same-uid | --nobody]
 *                   [--cwd DIR] [--bind-ro SRC[:DEST]]... [--bind-rw SRC[:DEST]]... [--tmpfs DIR]...
 *                   -- COMMAND [ARGS...]
 *   tapbox-launcher --probe      (exits 0 if the sandbox's namespaces can be created, else explains)
 *
 * Host paths are canonicalised here, in the host's mount namespace, so that the sandbox sees
 * exactly the file the caller named.
 */
#include "plan.h"

#include "report.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
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

/* SRC[:DEST] — DEST defaults to the canonical SRC. */
static void add_bind(struct launch_plan *plan, enum mount_kind kind, char *arg, const char *flag)
{
	char *colon = strchr(arg, ':');

	if (colon)
		*colon = '\0';
	const char *source = canonical_path(arg, flag);
	add_mount(plan, kind, source, colon ? absolute_dest(colon + 1, flag) : source);
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
	{ NULL, 0, NULL, 0 },
};

void plan_parse(struct launch_plan *plan, int argc, char **argv)
{
	const char *cwd = NULL;
	int opt;

	*plan = (struct launch_plan){
		.net = default_net,
		.identity = IDENTITY_ROOT,
		.outer_uid = getuid(),
		.outer_gid = getgid(),
		.hostname = "tapbox",
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
		case ':': usage_error("%s needs a value", argv[optind - 1]);
		default: usage_error("unknown option %s; see the usage at the top of native/launcher/plan.c", argv[optind - 1]);
		}
	}
	if (plan->probe) {
		plan->net.mode = NET_NONE;
		return;
	}
	if (optind >= argc)
		usage_error("no command given; put it after --, e.g. tapbox-launcher -- sh");
	plan->command = &argv[optind];

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
}
