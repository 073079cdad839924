/*
 * The IPv4-mapped address form of include/mcpgate/abi.h over plain values:
 * the one copy of that logic. Compiled by clang -target bpf into the
 * programs (through decide.bpf.h) and by gcc into userspace/core/addr.c, so
 * the kernel and the daemon cannot disagree on which key an address is.
 */
#ifndef MCPGATE_ADDR_BPF_H
#define MCPGATE_ADDR_BPF_H

#include <linux/types.h>
#include "mcpgate/abi.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* struct mg_abi_addr is only 2-byte aligned (bytes and a __be16): words go
 * in and out through __builtin_memcpy, never through a cast pointer. */

/* Fills <a> with the IPv4-mapped form of <ip4> (network order) and <port>
 * (network order, low 16 bits of the context field). */
static __always_inline void mg_addr_set_v4(struct mg_abi_addr *a, __u32 ip4, __u32 port)
{
	__u32 w[4] = {0, 0, 0, ip4};

	__builtin_memcpy(a->addr, w, sizeof(w));
	a->addr[10] = 0xff;
	a->addr[11] = 0xff;
	a->port = (__be16)port;
	a->pad = 0;
}

/* Fills <a> from four network-order words <ip6> and <port>. */
static __always_inline void mg_addr_set_v6(struct mg_abi_addr *a, const __u32 ip6[4], __u32 port)
{
	__u32 w[4] = {ip6[0], ip6[1], ip6[2], ip6[3]};

	__builtin_memcpy(a->addr, w, sizeof(w));
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
	__u32 w[4];

	__builtin_memcpy(w, a->addr, sizeof(w));
	return mg_ip6_is_v4mapped(w);
}

#endif /* MCPGATE_ADDR_BPF_H */
