/* netlink.h — the few rtnetlink requests the launcher needs, each acknowledged by the kernel. */
#ifndef TAPBOX_NETLINK_H
#define TAPBOX_NETLINK_H

#include <stdbool.h>

/* Each returns 0 or -errno. */
int rtnl_open(void);
int rtnl_set_link(int rtnl, int ifindex, unsigned mtu, unsigned txqlen, const unsigned char *mac, bool up);
int rtnl_add_address(int rtnl, int ifindex, int family, const void *addr, unsigned prefix);
int rtnl_add_default_route(int rtnl, int ifindex, int family, const void *gateway);

#endif
