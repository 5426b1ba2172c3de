/* netdev.c — network setup inside the sandbox's new network namespace.
 *
 * --net tap: tap0 is created through /dev/net/tun (IFF_TAP|IFF_NO_PI: plain Ethernet frames, no
 * packet-info prefix; with --vnet-hdr also IFF_VNET_HDR and the TUNSETOFFLOAD offloads, see create_tap), given
 * a fixed MAC and the MTU, brought up, addressed (10.0.2.100/24 and fd00::100/64 by default) and
 * routed through the gateways (10.0.2.2, fd00::2). The supervisor holds the device's only queue; the
 * device is persistent (see open_tap) and goes with the sandbox's network namespace.
 */
#include "netdev.h"

#include "netlink.h"
#include "report.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define TAP_NAME "tap0"
#define LOOPBACK_INDEX 1 /* lo is always the first link of a network namespace */

/* tap0's transmit queue: the frames the sandbox may have in flight to the supervisor while it is
 * busy. The kernel's default (1000) drops a burst of small packets (a DNS query flood loses half);
 * longer for small frames, bounded so that a full queue of MTU-sized frames holds at most ~128 MiB. */
static unsigned tx_queue_length(unsigned mtu)
{
	unsigned len = (128u << 20) / (mtu + 14);

	return len < 1000 ? 1000 : len > 4096 ? 4096 : len;
}

/* Creates tap0 on a new /dev/net/tun fd; with `vnet_hdr`, with the virtio-net header and the
 * offloads: the supervisor reads each frame's header and can take TCP/UDP checksums left to it
 * (TUN_F_CSUM) and TCP super-segments of up to 64 KiB whatever the MTU (TUN_F_TSO4/6), and writes
 * TCP segments whose checksum it leaves to the sandbox's kernel (which takes them as verified) and,
 * below MTU 65520, super-segments. The fd, or -errno of the TUNSETIFF or TUNSETOFFLOAD refused. */
static int create_tap(bool vnet_hdr)
{
	struct ifreq ifr = { 0 };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		if (errno == ENOENT || errno == ENXIO || errno == ENODEV)
			fail("ETUN", EXIT_SETUP_FAILED,
			     "/dev/net/tun is missing (%s); load the TUN/TAP driver with: sudo modprobe tun",
			     strerror(errno));
		fail("ETUN", EXIT_SETUP_FAILED, "/dev/net/tun cannot be opened (%s); allow it with: sudo chmod 0666 /dev/net/tun",
		     strerror(errno));
	}
	strcpy(ifr.ifr_name, TAP_NAME);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
	if (ioctl(fd, TUNSETIFF, &ifr) != 0 ||
	    (vnet_hdr && ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) != 0)) {
		int err = errno;

		close(fd); /* not persistent yet: the device goes with the fd */
		return -err;
	}
	return fd;
}

static int open_tap(const struct net_plan *net)
{
	int fd = create_tap(net->vnet_hdr);

	/* The offloads only make tapbox faster: where the kernel refuses them, a plain TAP (full
	 * checksums, MTU-sized frames). The supervisor asks the device which one it got (TUNGETIFF). */
	if (fd < 0 && net->vnet_hdr)
		fd = create_tap(false);
	if (fd < 0)
		fail("ETUN", EXIT_SETUP_FAILED, "creating the TAP device %s failed (%s); check that the kernel has CONFIG_TUN",
		     TAP_NAME, strerror(-fd));
	/* Persistent, so that the supervisor's last close() only detaches: a non-persistent device is
	 * unregistered inside that close(), 10-20 ms of RCU waits the user sits through at every exit. The
	 * device then goes with the namespace, which the kernel tears down in a worker once the sandbox's
	 * last process is gone. Nothing else can read it meanwhile: the queue is single (a second attach
	 * is refused) and the sandbox dies with the supervisor. Where the kernel refuses, the device stays
	 * non-persistent: slower exits, the same guarantees. */
	(void)ioctl(fd, TUNSETPERSIST, 1);
	return fd;
}

static void check(int err, const char *what)
{
	if (err < 0)
		fail("ENETCFG", EXIT_SETUP_FAILED, "%s failed inside the sandbox (%s); check --ip4/--gw4/--ip6/--gw6/--mtu "
						   "(each gateway must lie inside its address's prefix)",
		     what, strerror(-err));
}

static void configure_tap(int rtnl, const struct net_plan *net)
{
	char ip4[INET_ADDRSTRLEN], ip6[INET6_ADDRSTRLEN], what[128];
	int index = if_nametoindex(TAP_NAME);

	if (index == 0)
		fail("ENETCFG", EXIT_SETUP_FAILED, "%s vanished right after its creation (%s); retry", TAP_NAME,
		     strerror(errno));
	inet_ntop(AF_INET, &net->ip4, ip4, sizeof ip4);
	inet_ntop(AF_INET6, &net->ip6, ip6, sizeof ip6);

	snprintf(what, sizeof what, "bringing %s up with MTU %u", TAP_NAME, net->mtu);
	check(rtnl_set_link(rtnl, index, net->mtu, tx_queue_length(net->mtu), net->mac, true), what);
	snprintf(what, sizeof what, "adding %s/%u to %s", ip4, net->prefix4, TAP_NAME);
	check(rtnl_add_address(rtnl, index, AF_INET, &net->ip4, net->prefix4), what);
	snprintf(what, sizeof what, "adding %s/%u to %s", ip6, net->prefix6, TAP_NAME);
	check(rtnl_add_address(rtnl, index, AF_INET6, &net->ip6, net->prefix6), what);
	check(rtnl_add_default_route(rtnl, index, AF_INET, &net->gw4), "adding the IPv4 default route");
	check(rtnl_add_default_route(rtnl, index, AF_INET6, &net->gw6), "adding the IPv6 default route");
}

/* Writes one net.ipv4 sysctl of the sandbox's own network namespace, or fails naming what it was for. */
static void set_netns_sysctl(const char *name, const char *value, const char *what)
{
	char path[128];
	size_t len = strlen(value);
	int fd;

	snprintf(path, sizeof path, "/proc/sys/net/ipv4/%s", name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, value, len) != (ssize_t)len)
		fail("ENETCFG", EXIT_SETUP_FAILED, "%s inside the sandbox failed (%s); "
						   "this kernel needs net.ipv4.%s to be writable in a network namespace",
		     what, strerror(errno), name);
	close(fd);
}

int netdev_setup(const struct net_plan *net)
{
	int tap = -1;
	int rtnl = rtnl_open();

	check(rtnl, "opening rtnetlink");
	check(rtnl_set_link(rtnl, LOOPBACK_INDEX, 0, 0, NULL, true), "bringing lo up");
	/* The command runs in a nested user namespace without CAP_NET_RAW over this network namespace, so
	 * raw ICMP sockets are closed to it; ICMP datagram sockets (what ping uses when it may) are opened
	 * to its group instead. Group 0 here is the only group mapped, and every uid mode of the command
	 * maps onto it. Such sockets can only send echo requests, which our stack answers or drops. */
	set_netns_sysctl("ping_group_range", "0 0", "enabling ping sockets");
	/* Ports below 1024 are privileged to the network namespace's owner, which the command is not:
	 * without this a server inside (e.g. published with -p 8080:80) could not bind port 80. */
	set_netns_sysctl("ip_unprivileged_port_start", "0", "opening ports below 1024");
	if (net->mode == NET_TAP) {
		tap = open_tap(net);
		configure_tap(rtnl, net);
	}
	close(rtnl);
	return tap;
}
