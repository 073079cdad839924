// SPDX-License-Identifier: GPL-2.0
/*
 * mcpgate kernel half: send selected pods' API-server connections to the
 * node-local proxy, remember where they were going, and keep pods the daemon
 * has not classified (pending, or unknown with refuse-unknown) away from the
 * API server.
 *
 *   cgroup/connect4|6   first `intercept` entry on the cgroup's ancestor path:
 *                       SELECTED + API endpoint -> rewrite dst to the proxy,
 *                       record the origin by socket cookie; PENDING (or no
 *                       entry with MG_SET_REFUSE_UNKNOWN) + API endpoint ->
 *                       refuse, count, event; PASS -> untouched
 *   sockops             TCP_CONNECT_CB (source port chosen, SYN not sent):
 *                       copy the origin to `origins` under the 4-tuple the
 *                       proxy will see on accept(); STATE_CB to CLOSE: forget
 *                       both, so a later socket with the same 4-tuple never
 *                       inherits a dead connection's pod
 *   cgroup/getpeername4|6  the pod still sees the address it dialled
 *   cgroup_skb/egress   a packet to an API endpoint address:port from a pod
 *                       whose connects would be redirected or refused did
 *                       not come through connect() (raw socket, a socket
 *                       opened before selection): dropped, counted, event
 *
 * Attached once, with bpf links, at the kubepods cgroup so these hooks run
 * before a socket load-balancer attached at the root rewrites the ClusterIP.
 * UAPI context structs only (no vmlinux.h, no kfuncs): loads on Linux 5.8+
 * (ring buffer), checked on 6.1 by `make test-kernel`.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/socket.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "mcpgate/abi.h"
#include "lib/decide.bpf.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#define SOCK_STREAM_TYPE 1
#define ETH_P_IP_NR	 0x0800
#define ETH_P_IPV6_NR	 0x86DD
/* IPv6 extension headers walked to find the transport header; a longer
 * chain is treated as an API packet of unknown port (dropped when the pod's
 * API packets are). */
#define MG_IPV6_EXT_MAX 8
#define TCP_CLOSE_STATE 7 /* BPF_TCP_CLOSE */

char LICENSE[] SEC("license") = "GPL";

/* Pod-level cgroup ids (directory inodes) -> what to do with the pod's API
 * connects (struct mg_abi_pod: pass, selected, pending). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_INTERCEPT_MAX);
	__type(key, __u64);
	__type(value, struct mg_abi_pod);
} intercept SEC(".maps");

/* The API server's addresses: ClusterIPs, EndpointSlice, extra endpoints. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_ENDPOINTS_MAX);
	__type(key, struct mg_abi_addr);
	__type(value, __u32);
} api_endpoints SEC(".maps");

/* Origin by socket cookie, from connect() until the socket closes: sockops
 * reads it on connect, getpeername for the socket's whole life. LRU so a
 * missed close can never fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MG_PENDING_MAX);
	__type(key, __u64);
	__type(value, struct mg_abi_origin);
} socks SEC(".maps");

/* Origin by 4-tuple: what the proxy looks up on accept(). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MG_ORIGINS_MAX);
	__type(key, struct mg_abi_tuple);
	__type(value, struct mg_abi_origin);
} origins SEC(".maps");

/* Proxy addresses. A map rather than const volatile globals so a restarted
 * daemon can change them without reattaching (the links are pinned). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_abi_settings);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MG_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Refusals and drops the daemon logs with the pod's identity (struct
 * mg_abi_event). Best effort: rate-limited per CPU and lost when full; the
 * counters are exact. */
#define MG_EVENTS_BYTES (64 * 1024)
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MG_EVENTS_BYTES);
} events SEC(".maps");

/* Per-CPU event budget (mg_event_allow); internal, not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_event_budget);
} event_budget SEC(".maps");

/* Context fields must be read with exactly the width the verifier allows:
 * without this, clang merges two adjacent 4-byte loads of an IPv6 address
 * into one 8-byte load, which the verifier rejects. */
#define CTX_U32(field) (*(volatile __u32 *)&(field))

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline __u32 settings_flags(void)
{
	struct mg_abi_settings *s;
	__u32 zero = 0;

	s = bpf_map_lookup_elem(&settings, &zero);
	return s ? s->flags : 0;
}

/* Queues one event for the daemon unless this CPU's budget is spent. */
static __always_inline void emit_event(__u32 type, __u32 tgid, __u64 pod_id, __u64 cgroup_id,
				       const struct mg_abi_addr *dst)
{
	struct mg_event_budget *b;
	struct mg_abi_event *e;
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0;

	b = bpf_map_lookup_elem(&event_budget, &zero);
	if (!b || !mg_event_allow(b, now))
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	e->type = type;
	e->tgid = tgid;
	e->pod_cgroup_id = pod_id;
	e->cgroup_id = cgroup_id;
	e->ktime_ns = now;
	e->dst = *dst;
	bpf_ringbuf_submit(e, 0);
}

/* Returns the `intercept` entry of the caller's cgroup or of its nearest
 * ancestor that has one, with that cgroup's id in <*pod_id>; NULL (and 0)
 * when none has. Walking ancestors means every container cgroup a pod ever
 * gets is covered without a map update. */
static __always_inline const struct mg_abi_pod *find_pod(__u64 *pod_id)
{
	for (int lvl = 0; lvl < MG_MAX_CGROUP_DEPTH; lvl++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(lvl);
		const struct mg_abi_pod *v;

		if (!id)
			break;
		v = bpf_map_lookup_elem(&intercept, &id);
		if (v) {
			*pod_id = id;
			return v;
		}
	}
	*pod_id = 0;
	return 0;
}

/*
 * The shared half of connect4/6. <dst> is the destination as dialled.
 * Returns the proxy address to rewrite to, NULL to leave the connect alone,
 * or sets <*refuse> when the connect must fail (fail closed).
 */
static __always_inline const struct mg_abi_addr *
decide(struct bpf_sock_addr *ctx, const struct mg_abi_addr *dst, __u32 family, int *refuse)
{
	struct mg_abi_origin o = {};
	const struct mg_abi_addr *proxy;
	const struct mg_abi_pod *pod;
	struct mg_abi_settings *s;
	__u32 zero = 0;
	__u64 pod_id, cookie;
	int is_api;

	pod = find_pod(&pod_id);
	is_api = bpf_map_lookup_elem(&api_endpoints, dst) != 0;
	switch (mg_decide(pod, settings_flags(), is_api)) {
	case MG_VERDICT_PASS:
		if (pod && pod->state == MG_POD_SELECTED)
			count(MG_CNT_PASSED);
		return 0;
	case MG_VERDICT_REFUSE_UNKNOWN:
		count(MG_CNT_REFUSED_UNKNOWN);
		emit_event(MG_EV_REFUSED_UNKNOWN, bpf_get_current_pid_tgid() >> 32, pod_id,
			   bpf_get_current_cgroup_id(), dst);
		*refuse = 1;
		return 0;
	case MG_VERDICT_REDIRECT:
		break;
	}

	s = bpf_map_lookup_elem(&settings, &zero);
	proxy = s ? mg_pick_proxy(s, dst) : 0;
	if (!proxy) {
		count(MG_CNT_NO_PROXY);
		*refuse = 1;
		return 0;
	}

	cookie = bpf_get_socket_cookie(ctx);
	o.orig_dst = *dst;
	o.pod_cgroup_id = pod_id;
	o.cgroup_id = bpf_get_current_cgroup_id();
	o.netns_cookie = bpf_get_netns_cookie(ctx);
	o.socket_cookie = cookie;
	o.ktime_ns = bpf_ktime_get_ns();
	o.tgid = bpf_get_current_pid_tgid() >> 32;
	o.uid = (__u32)bpf_get_current_uid_gid();
	o.family = family;
	if (bpf_map_update_elem(&socks, &cookie, &o, BPF_ANY)) {
		count(MG_CNT_MAP_FULL);
		*refuse = 1;
		return 0;
	}
	count(MG_CNT_REDIRECTED);
	return proxy;
}

SEC("cgroup/connect4")
int mg_connect4(struct bpf_sock_addr *ctx)
{
	const struct mg_abi_addr *proxy;
	struct mg_abi_addr dst;
	int refuse = 0;

	if (ctx->type != SOCK_STREAM_TYPE)
		return 1;
	mg_addr_set_v4(&dst, ctx->user_ip4, ctx->user_port);
	proxy = decide(ctx, &dst, AF_INET, &refuse);
	if (refuse)
		return 0;
	if (proxy) {
		ctx->user_ip4 = ((const __u32 *)proxy->addr)[3];
		ctx->user_port = proxy->port;
	}
	return 1;
}

SEC("cgroup/connect6")
int mg_connect6(struct bpf_sock_addr *ctx)
{
	const struct mg_abi_addr *proxy;
	struct mg_abi_addr dst;
	__u32 ip6[4];
	int refuse = 0;

	if (ctx->type != SOCK_STREAM_TYPE)
		return 1;
	ip6[0] = CTX_U32(ctx->user_ip6[0]);
	ip6[1] = CTX_U32(ctx->user_ip6[1]);
	ip6[2] = CTX_U32(ctx->user_ip6[2]);
	ip6[3] = CTX_U32(ctx->user_ip6[3]);
	mg_addr_set_v6(&dst, ip6, ctx->user_port);
	proxy = decide(ctx, &dst, AF_INET6, &refuse);
	if (refuse)
		return 0;
	if (proxy) {
		/* A v4-mapped destination gets the v4-mapped IPv4 proxy. */
		const __u32 *w = (const __u32 *)proxy->addr;

		ctx->user_ip6[0] = w[0];
		ctx->user_ip6[1] = w[1];
		ctx->user_ip6[2] = w[2];
		ctx->user_ip6[3] = w[3];
		ctx->user_port = proxy->port;
	}
	return 1;
}

/* A socket in the attached subtree dialling the proxy address itself, not
 * through a redirect, is counted: it will be turned away on accept. */
static __always_inline void check_direct(struct bpf_sock_ops *skops)
{
	struct mg_abi_settings *s;
	__u32 zero = 0, port = bpf_ntohl(skops->remote_port) & 0xffff;

	s = bpf_map_lookup_elem(&settings, &zero);
	if (!s)
		return;
	if ((s->proxy4.port && bpf_htons(port) == s->proxy4.port &&
	     skops->remote_ip4 == ((const __u32 *)s->proxy4.addr)[3]) ||
	    (s->proxy6.port && bpf_htons(port) == s->proxy6.port &&
	     skops->remote_ip6[3] == ((const __u32 *)s->proxy6.addr)[3] &&
	     skops->remote_ip6[0] == ((const __u32 *)s->proxy6.addr)[0]))
		count(MG_CNT_ORIGIN_MISSING);
}

/* Fills <t> with the socket's 4-tuple as the proxy sees it on accept().
 * Called at TCP_CONNECT_CB and again at the CLOSE state change, which runs
 * before the kernel unhashes the socket, so both calls see the same ports. */
static __always_inline void sock_tuple(struct bpf_sock_ops *skops, struct mg_abi_tuple *t)
{
	__u32 r6[4];

	r6[0] = CTX_U32(skops->remote_ip6[0]);
	r6[1] = CTX_U32(skops->remote_ip6[1]);
	r6[2] = CTX_U32(skops->remote_ip6[2]);
	r6[3] = CTX_U32(skops->remote_ip6[3]);
	/* remote_port holds the network-order port in its upper 16 bits on
	 * little-endian (a UAPI quirk of bpf_sock_ops), local_port is host order. */
	if (skops->family == AF_INET || mg_ip6_is_v4mapped(r6)) {
		/* A v4-mapped socket's v6 source is set only after tcp_connect()
		 * returns; its IPv4 fields are already final here. */
		mg_addr_set_v4(&t->client, skops->local_ip4, bpf_htons(skops->local_port));
		mg_addr_set_v4(&t->proxy, skops->remote_ip4,
			       bpf_htons(bpf_ntohl(skops->remote_port)));
	} else {
		__u32 l6[4];

		l6[0] = CTX_U32(skops->local_ip6[0]);
		l6[1] = CTX_U32(skops->local_ip6[1]);
		l6[2] = CTX_U32(skops->local_ip6[2]);
		l6[3] = CTX_U32(skops->local_ip6[3]);
		mg_addr_set_v6(&t->client, l6, bpf_htons(skops->local_port));
		mg_addr_set_v6(&t->proxy, r6, bpf_htons(bpf_ntohl(skops->remote_port)));
	}
}

/* TCP_CONNECT_CB: the source port is chosen and the SYN not yet sent, so the
 * 4-tuple is final and the proxy cannot accept() before the record exists. */
static __always_inline void on_tcp_connect(struct bpf_sock_ops *skops)
{
	struct mg_abi_tuple t = {};
	struct mg_abi_origin *o;
	__u64 cookie = bpf_get_socket_cookie(skops);

	o = bpf_map_lookup_elem(&socks, &cookie);
	if (!o) {
		check_direct(skops);
		return;
	}
	sock_tuple(skops, &t);
	if (bpf_map_update_elem(&origins, &t, o, BPF_ANY)) {
		count(MG_CNT_MAP_FULL);
		return;
	}
	/* Ask for state callbacks so the records go with the socket. */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

/* The pod's socket is closing (closed, reset, refused, timed out, or into
 * TIME_WAIT). Its `origins` entry, if the proxy has not taken it yet (the
 * connection was reset in the accept queue, or never accepted), must go
 * now: otherwise the next socket with the same 4-tuple (a hostNetwork pod
 * binding the same port, a reused pod IP) would be served as this pod. Only
 * this socket's own entry is removed, by its cookie. */
static __always_inline void on_tcp_close(struct bpf_sock_ops *skops)
{
	struct mg_abi_tuple t = {};
	struct mg_abi_origin *o;
	__u64 cookie = bpf_get_socket_cookie(skops);

	sock_tuple(skops, &t);
	o = bpf_map_lookup_elem(&origins, &t);
	if (o && o->socket_cookie == cookie)
		bpf_map_delete_elem(&origins, &t);
	bpf_map_delete_elem(&socks, &cookie);
}

SEC("sockops")
int mg_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		on_tcp_connect(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == TCP_CLOSE_STATE)
			on_tcp_close(skops);
		break;
	default:
		break;
	}
	return 1;
}

/* Writes the recorded original peer into a getpeername() result. Returns
 * the record or NULL for a socket that was not redirected. */
static __always_inline struct mg_abi_origin *origin_of(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	return bpf_map_lookup_elem(&socks, &cookie);
}

SEC("cgroup/getpeername4")
int mg_getpeername4(struct bpf_sock_addr *ctx)
{
	struct mg_abi_origin *o = origin_of(ctx);

	if (o) {
		ctx->user_ip4 = ((const __u32 *)o->orig_dst.addr)[3];
		ctx->user_port = o->orig_dst.port;
	}
	return 1;
}

SEC("cgroup/getpeername6")
int mg_getpeername6(struct bpf_sock_addr *ctx)
{
	struct mg_abi_origin *o = origin_of(ctx);

	if (o) {
		const __u32 *w = (const __u32 *)o->orig_dst.addr;

		ctx->user_ip6[0] = w[0];
		ctx->user_ip6[1] = w[1];
		ctx->user_ip6[2] = w[2];
		ctx->user_ip6[3] = w[3];
		ctx->user_port = o->orig_dst.port;
	}
	return 1;
}

/* ---- cgroup_skb/egress: paths around the proxy ---- */

/* find_pod() for a packet: the ancestors of the cgroup of the socket that
 * sent it. Softirq context (TCP retransmits) has no meaningful current
 * task, so the socket's cgroup is the only identity. */
static __always_inline const struct mg_abi_pod *find_pod_skb(struct __sk_buff *skb, __u64 *pod_id)
{
	for (int lvl = 0; lvl < MG_MAX_CGROUP_DEPTH; lvl++) {
		__u64 id = bpf_skb_ancestor_cgroup_id(skb, lvl);
		const struct mg_abi_pod *v;

		if (!id)
			break;
		v = bpf_map_lookup_elem(&intercept, &id);
		if (v) {
			*pod_id = id;
			return v;
		}
	}
	*pod_id = 0;
	return 0;
}

/* Transport protocols whose first four bytes are the source and destination
 * ports: any of them can carry a connection to the API port. */
static __always_inline int has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE ||
	       proto == IPPROTO_SCTP || proto == IPPROTO_DCCP;
}

/* Reads the destination address:port of the packet in <skb> into <dst>.
 * Returns 1 when found, 0 when the packet has no port to match (not a
 * ported protocol, a non-first fragment: it cannot complete a datagram
 * without its first one), -1 when the port cannot be read (an IPv6
 * extension chain too long to walk or truncated, a ported first fragment
 * too short to hold the ports): the caller then treats the packet as going
 * to an API endpoint, as a receiver that reassembles it might. */
static __always_inline int packet_dst(struct __sk_buff *skb, struct mg_abi_addr *dst)
{
	__be16 port;
	__u32 off;
	__u8 proto;

	if (skb->protocol == bpf_htons(ETH_P_IP_NR)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 0;
		if (bpf_ntohs(ip.frag_off) & 0x1fff)
			return 0; /* the first fragment carried the ports */
		proto = ip.protocol;
		off = ip.ihl * 4;
		if (!has_ports(proto))
			return 0;
		mg_addr_set_v4(dst, ip.daddr, 0);
		/* A first fragment too short to hold the ports must not slip by. */
		if (bpf_skb_load_bytes(skb, off + 2, &port, sizeof(port)))
			return -1;
		dst->port = port;
		return 1;
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6_NR)) {
		struct ipv6hdr ip6;
		__u32 w[4];

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return 0;
		__builtin_memcpy(w, &ip6.daddr, sizeof(w));
		mg_addr_set_v6(dst, w, 0);
		proto = ip6.nexthdr;
		off = sizeof(ip6);
		for (int i = 0; i < MG_IPV6_EXT_MAX; i++) {
			__u8 h[4];

			if (proto != IPPROTO_HOPOPTS && proto != IPPROTO_ROUTING &&
			    proto != IPPROTO_DSTOPTS && proto != IPPROTO_FRAGMENT &&
			    proto != IPPROTO_AH)
				break;
			if (bpf_skb_load_bytes(skb, off, h, sizeof(h)))
				return -1; /* a truncated chain (RFC 7112) */
			if (proto == IPPROTO_FRAGMENT) {
				if (((h[2] << 8) | h[3]) & 0xfff8)
					return 0; /* not the first fragment */
				off += 8;
			} else if (proto == IPPROTO_AH) {
				off += (h[1] + 2) * 4;
			} else {
				off += (h[1] + 1) * 8;
			}
			proto = h[0];
		}
		if (proto == IPPROTO_HOPOPTS || proto == IPPROTO_ROUTING ||
		    proto == IPPROTO_DSTOPTS || proto == IPPROTO_FRAGMENT || proto == IPPROTO_AH)
			return -1;
		if (!has_ports(proto))
			return 0;
		if (bpf_skb_load_bytes(skb, off + 2, &port, sizeof(port)))
			return -1;
		dst->port = port;
		return 1;
	}
	return 0;
}

SEC("cgroup_skb/egress")
int mg_egress(struct __sk_buff *skb)
{
	struct mg_abi_addr dst = {};
	const struct mg_abi_pod *pod;
	__u64 pod_id;
	int found, is_api;

	found = packet_dst(skb, &dst);
	if (!found)
		return 1;
	/* Most packets are not to an API endpoint: one lookup, then out. */
	is_api = found < 0 || bpf_map_lookup_elem(&api_endpoints, &dst) != 0;
	if (!is_api)
		return 1;
	pod = find_pod_skb(skb, &pod_id);
	if (!mg_egress_drop(pod, settings_flags(), is_api))
		return 1;
	count(MG_CNT_EGRESS_DROPPED);
	emit_event(MG_EV_EGRESS_DROPPED, 0, pod_id, bpf_skb_cgroup_id(skb), &dst);
	return 0;
}
