/* netdev.h — the sandbox's network: lo, and under --net tap the tap0 link handed to the supervisor. */
#ifndef TAPBOX_NETDEV_H
#define TAPBOX_NETDEV_H

#include "plan.h"

/* Brings lo up; under --net tap also creates and configures tap0 and returns its fd (else -1).
 * Any failure is reported (ETUN, ENETCFG) and exits 125. */
int netdev_setup(const struct net_plan *net);

#endif
