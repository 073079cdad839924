/*
 * The redirect decision over plain values. No helpers, no maps, no context
 * access: the same code is compiled by clang -target bpf into the programs
 * and by gcc into tests/unit/test_decide.c, so what the kernel decides can be
 * checked outside the kernel too.
 */
#ifndef MCPGATE_DECIDE_BPF_H
#define MCPGATE_DECIDE_BPF_H

#include <linux/types.h>
#include "mcpgate/abi.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* Fills <a> with the IPv4-mapped form of <ip4> (network order) and <port>
 * (network order, low 16 bits of the context field). */
static __always_inline void mg_addr_set_v4(struct mg_abi_addr *a, __u32 ip4, __u32 port)
{
	__u32 *w = (__u32 *)a->addr;

	w[0] = 0;
	w[1] = 0;
	w[2] = 0;
	w[3] = ip4;
	a->addr[10] = 0xff;
	a->addr[11] = 0xff;
	a->port = (__be16)port;
	a->pad = 0;
}

/* Fills <a> from four network-order words <ip6> and <port>. */
static __always_inline void mg_addr_set_v6(struct mg_abi_addr *a, const __u32 ip6[4], __u32 port)
{
	__u32 *w = (__u32 *)a->addr;

	w[0] = ip6[0];
	w[1] = ip6[1];
	w[2] = ip6[2];
	w[3] = ip6[3];
	a->port = (__be16)port;
	a->pad = 0;
}

/* True when the four network-order words <ip6> are ::ffff:a.b.c.d. */
static __always_inline int mg_ip6_is_v4mapped(const __u32 ip6[4])
{
	const __u8 *b = (const __u8 *)ip6;

	return ip6[0] == 0 && ip6[1] == 0 && b[8] == 0 && b[9] == 0 && b[10] == 0xff &&
	       b[11] == 0xff;
}

static __always_inline int mg_addr_is_v4mapped(const struct mg_abi_addr *a)
{
	return mg_ip6_is_v4mapped((const __u32 *)a->addr);
}

/*
 * Returns the proxy address a connection to <dst> must be sent to: the IPv4
 * proxy for IPv4 and IPv4-mapped destinations (a v4-mapped connect leaves the
 * host as IPv4), the IPv6 one otherwise; NULL when that family has no proxy
 * configured, in which case the caller refuses the connect (fail closed:
 * an API endpoint is never reached unmediated).
 */
static __always_inline const struct mg_abi_addr *
mg_pick_proxy(const struct mg_abi_settings *s, const struct mg_abi_addr *dst)
{
	const struct mg_abi_addr *p = mg_addr_is_v4mapped(dst) ? &s->proxy4 : &s->proxy6;

	return p->port ? p : (const struct mg_abi_addr *)0;
}

#endif /* MCPGATE_DECIDE_BPF_H */
