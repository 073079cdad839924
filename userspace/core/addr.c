/*
 * addr: address forms. See addr.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpgate/addr.h"
#include "../../bpf/lib/addr.bpf.h"

bool mg_addr_is_v4(const struct mg_abi_addr *a)
{
	return mg_addr_is_v4mapped(a);
}

int mg_addr_from_raw(int family, const void *ip, uint16_t port, struct mg_abi_addr *out)
{
	uint32_t w[4];

	memset(out, 0, sizeof(*out));
	if (family == AF_INET) {
		memcpy(w, ip, 4);
		mg_addr_set_v4(out, w[0], port);
		return 0;
	}
	if (family == AF_INET6) {
		memcpy(w, ip, 16);
		mg_addr_set_v6(out, w, port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

int mg_addr_parse_ip(const char *s, unsigned port, struct mg_abi_addr *out)
{
	uint32_t w[4];

	memset(out, 0, sizeof(*out));
	if (port > 65535)
		return -EINVAL;
	if (inet_pton(AF_INET, s, w) == 1)
		return mg_addr_from_raw(AF_INET, w, htons((uint16_t)port), out);
	if (inet_pton(AF_INET6, s, w) == 1)
		return mg_addr_from_raw(AF_INET6, w, htons((uint16_t)port), out);
	return -EINVAL;
}

/* Splits "host:port" / "[host]:port" at <s>: <host> gets the host (room
 * for <cap> bytes), <*port_text> points at the port digits. */
static int split_hostport(const char *s, char *host, size_t cap, const char **port_text)
{
	const char *colon, *h = s;
	size_t hl;

	if (*s == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		/* One colon only: a bare IPv6 address needs its brackets. */
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= cap)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port_text = colon + 1;
	return 0;
}

int mg_addr_parse_hostport(const char *s, struct mg_abi_addr *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *pt;
	unsigned long port;
	char *end;

	memset(out, 0, sizeof(*out));
	if (split_hostport(s, host, sizeof(host), &pt))
		return -EINVAL;
	if (*pt < '0' || *pt > '9')
		return -EINVAL; /* no sign, no space: strtoul would take them */
	errno = 0;
	port = strtoul(pt, &end, 10);
	if (errno || *end || port == 0 || port > 65535)
		return -EINVAL;
	return mg_addr_parse_ip(host, (unsigned)port, out);
}

int mg_addr_from_sockaddr(const struct sockaddr *sa, struct mg_abi_addr *out)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)sa;

		return mg_addr_from_raw(AF_INET, &s->sin_addr, s->sin_port, out);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)sa;

		return mg_addr_from_raw(AF_INET6, &s->sin6_addr, s->sin6_port, out);
	}
	memset(out, 0, sizeof(*out));
	return -EAFNOSUPPORT;
}

socklen_t mg_addr_to_sockaddr(const struct mg_abi_addr *a, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (mg_addr_is_v4(a)) {
		struct sockaddr_in *s = (void *)ss;

		s->sin_family = AF_INET;
		memcpy(&s->sin_addr, a->addr + 12, 4);
		s->sin_port = a->port;
		return sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (void *)ss;

		s->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, a->addr, 16);
		s->sin6_port = a->port;
		return sizeof(*s);
	}
}

const char *mg_addr_fmt_ip(const struct mg_abi_addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (mg_addr_is_v4(a))
		inet_ntop(AF_INET, a->addr + 12, ip, sizeof(ip));
	else
		inet_ntop(AF_INET6, a->addr, ip, sizeof(ip));
	snprintf(buf, len, "%s", ip);
	return buf;
}

const char *mg_addr_fmt(const struct mg_abi_addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	mg_addr_fmt_ip(a, ip, sizeof(ip));
	snprintf(buf, len, mg_addr_is_v4(a) ? "%s:%u" : "[%s]:%u", ip, ntohs(a->port));
	return buf;
}
