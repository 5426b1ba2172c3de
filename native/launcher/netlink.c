/* netlink.c — rtnetlink requests: link up/MTU/MAC, addresses, default routes.
 *
 * Every request carries NLM_F_ACK and we wait for the matching NLMSG_ERROR, so a failure is reported
 * at the step that caused it instead of surfacing later as a silently unreachable network.
 */
#include "netlink.h"

#include <errno.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct rtnl_request {
	struct nlmsghdr hdr;
	unsigned char body[256];
};

static void add_attr(struct rtnl_request *req, unsigned short type, const void *data, size_t len)
{
	struct rtattr *rta = (struct rtattr *)((char *)req + NLMSG_ALIGN(req->hdr.nlmsg_len));

	rta->rta_type = type;
	rta->rta_len = RTA_LENGTH(len);
	memcpy(RTA_DATA(rta), data, len);
	req->hdr.nlmsg_len = NLMSG_ALIGN(req->hdr.nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

static size_t address_length(int family)
{
	return family == AF_INET ? sizeof(struct in_addr) : sizeof(struct in6_addr);
}

int rtnl_open(void)
{
	struct sockaddr_nl local = { .nl_family = AF_NETLINK };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&local, sizeof local) != 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* Sends the request and returns the kernel's verdict on it: 0 or -errno. */
static int rtnl_talk(int rtnl, struct nlmsghdr *req)
{
	static unsigned sequence;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	union {
		struct nlmsghdr align;
		char buf[8192];
	} reply;

	req->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	req->nlmsg_seq = ++sequence;
	if (sendto(rtnl, req, req->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
		return -errno;
	for (;;) {
		ssize_t n = recv(rtnl, reply.buf, sizeof reply.buf, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		int len = (int)n;
		for (struct nlmsghdr *h = &reply.align; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_seq == req->nlmsg_seq && h->nlmsg_type == NLMSG_ERROR)
				return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
		}
	}
}

int rtnl_set_link(int rtnl, int ifindex, unsigned mtu, unsigned txqlen, const unsigned char *mac, bool up)
{
	struct rtnl_request req = {
		.hdr = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg)), .nlmsg_type = RTM_NEWLINK },
	};
	struct ifinfomsg *ifi = NLMSG_DATA(&req.hdr);

	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	ifi->ifi_change = IFF_UP;
	ifi->ifi_flags = up ? IFF_UP : 0;
	if (mtu)
		add_attr(&req, IFLA_MTU, &mtu, sizeof mtu);
	if (txqlen)
		add_attr(&req, IFLA_TXQLEN, &txqlen, sizeof txqlen);
	if (mac)
		add_attr(&req, IFLA_ADDRESS, mac, 6);
	return rtnl_talk(rtnl, &req.hdr);
}

int rtnl_add_address(int rtnl, int ifindex, int family, const void *addr, unsigned prefix)
{
	struct rtnl_request req = {
		.hdr = {
			.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg)),
			.nlmsg_type = RTM_NEWADDR,
			.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL,
		},
	};
	struct ifaddrmsg *ifa = NLMSG_DATA(&req.hdr);

	ifa->ifa_family = family;
	ifa->ifa_prefixlen = prefix;
	ifa->ifa_index = ifindex;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	/* No duplicate address detection: the address is usable at once, and the link has no other host. */
	ifa->ifa_flags = family == AF_INET6 ? IFA_F_NODAD | IFA_F_PERMANENT : IFA_F_PERMANENT;
	add_attr(&req, IFA_LOCAL, addr, address_length(family));
	add_attr(&req, IFA_ADDRESS, addr, address_length(family));
	return rtnl_talk(rtnl, &req.hdr);
}

int rtnl_add_default_route(int rtnl, int ifindex, int family, const void *gateway)
{
	struct rtnl_request req = {
		.hdr = {
			.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg)),
			.nlmsg_type = RTM_NEWROUTE,
			.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL,
		},
	};
	struct rtmsg *rtm = NLMSG_DATA(&req.hdr);
	unsigned oif = ifindex;

	rtm->rtm_family = family;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_BOOT;
	rtm->rtm_scope = RT_SCOPE_UNIVERSE;
	rtm->rtm_type = RTN_UNICAST;
	add_attr(&req, RTA_GATEWAY, gateway, address_length(family));
	add_attr(&req, RTA_OIF, &oif, sizeof oif);
	return rtnl_talk(rtnl, &req.hdr);
}
