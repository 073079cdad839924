/*
 * netaddr: rtnetlink requests for the proxy address. See netaddr.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "mcpgate/netaddr.h"

struct nlreq {
	struct nlmsghdr nh;
	union {
		struct ifinfomsg ifi;
		struct ifaddrmsg ifa;
	};
	char attrs[256];
};

static void add_attr(struct nlmsghdr *nh, unsigned short type, const void *data, size_t len)
{
	struct rtattr *rta = (struct rtattr *)((char *)nh + NLMSG_ALIGN(nh->nlmsg_len));

	rta->rta_type = type;
	rta->rta_len = RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(rta), data, len);
	nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

/* Sends <nh> and waits for the kernel's ack. Returns 0 or the -errno the
 * kernel answered with. */
static int talk(struct nlmsghdr *nh)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	char buf[4096];
	ssize_t r;
	int fd, rc = -EIO;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	nh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	nh->nlmsg_seq = 1;
	if (sendto(fd, nh, nh->nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		goto out;
	}
	r = recv(fd, buf, sizeof(buf), 0);
	if (r < 0) {
		rc = -errno;
		goto out;
	}
	for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)r);
	     h = NLMSG_NEXT(h, r)) {
		if (h->nlmsg_type == NLMSG_ERROR) {
			struct nlmsgerr *e = NLMSG_DATA(h);

			rc = e->error;
			break;
		}
	}
out:
	close(fd);
	return rc;
}

static int set_up(unsigned idx)
{
	struct nlreq req;

	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	req.nh.nlmsg_type = RTM_NEWLINK;
	req.ifi.ifi_family = AF_UNSPEC;
	req.ifi.ifi_index = (int)idx;
	req.ifi.ifi_flags = IFF_UP;
	req.ifi.ifi_change = IFF_UP;
	return talk(&req.nh);
}

int mg_netaddr_ensure_link(const char *ifname, bool create_dummy)
{
	unsigned idx = if_nametoindex(ifname);
	struct nlreq req;
	struct rtattr *li;
	int rc;

	if (!idx) {
		if (!create_dummy)
			return -ENODEV;
		memset(&req, 0, sizeof(req));
		req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
		req.nh.nlmsg_type = RTM_NEWLINK;
		req.nh.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
		req.ifi.ifi_family = AF_UNSPEC;
		add_attr(&req.nh, IFLA_IFNAME, ifname, strlen(ifname) + 1);
		li = (struct rtattr *)((char *)&req.nh + NLMSG_ALIGN(req.nh.nlmsg_len));
		add_attr(&req.nh, IFLA_LINKINFO, NULL, 0);
		add_attr(&req.nh, IFLA_INFO_KIND, "dummy", 6);
		li->rta_len = (unsigned short)((char *)&req.nh + req.nh.nlmsg_len - (char *)li);
		rc = talk(&req.nh);
		/* No dummy driver: the kernel cannot find the link kind. */
		if (rc == -EOPNOTSUPP || rc == -ENOENT || rc == -EINVAL)
			return -EOPNOTSUPP;
		if (rc && rc != -EEXIST)
			return rc;
		idx = if_nametoindex(ifname);
		if (!idx)
			return -ENODEV;
	}
	return set_up(idx);
}

int mg_netaddr_ensure_addr(const char *ifname, const char *addr)
{
	unsigned idx = if_nametoindex(ifname);
	unsigned char bin[16];
	struct nlreq req;
	int family, rc;

	if (!idx)
		return -ENODEV;
	if (inet_pton(AF_INET, addr, bin) == 1)
		family = AF_INET;
	else if (inet_pton(AF_INET6, addr, bin) == 1)
		family = AF_INET6;
	else
		return -EINVAL;

	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
	req.nh.nlmsg_type = RTM_NEWADDR;
	req.nh.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	req.ifa.ifa_family = (unsigned char)family;
	req.ifa.ifa_prefixlen = family == AF_INET ? 32 : 128;
	req.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
	req.ifa.ifa_index = idx;
	if (family == AF_INET6)
		req.ifa.ifa_flags = IFA_F_NODAD; /* usable at once, no DAD wait */
	add_attr(&req.nh, IFA_LOCAL, bin, family == AF_INET ? 4 : 16);
	add_attr(&req.nh, IFA_ADDRESS, bin, family == AF_INET ? 4 : 16);
	rc = talk(&req.nh);
	return rc == -EEXIST ? 0 : rc;
}
