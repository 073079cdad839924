/*
 * netaddr: puts the proxy address on the node, the way NodeLocal DNSCache
 * does: on a dummy interface the daemon owns, or (kernels built without
 * CONFIG_DUMMY) on a configured interface such as lo. rtnetlink, no shell.
 */
#ifndef MCPGATE_NETADDR_H
#define MCPGATE_NETADDR_H

#include <stdbool.h>
#include <stddef.h>

/**
 * Makes sure interface <ifname> exists and is up, creating it as a dummy
 * link if <create_dummy> and it is missing. Returns 0, -EOPNOTSUPP when the
 * kernel has no dummy link type, or -errno.
 */
int mg_netaddr_ensure_link(const char *ifname, bool create_dummy);

/**
 * Adds <addr> (textual IPv4 or IPv6) as a host address (/32 or /128) to
 * <ifname> unless present. 0 / -errno.
 */
int mg_netaddr_ensure_addr(const char *ifname, const char *addr);

#endif /* MCPGATE_NETADDR_H */
