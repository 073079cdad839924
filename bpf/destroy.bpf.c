// SPDX-License-Identifier: GPL-2.0
/*
 * Cuts a pod's open connections to the API server (issue 8 item 5): when a
 * pod becomes selected, a connection it opened before is unmediated, and the
 * egress program only starves it. A TCP iterator walks the sockets of the
 * network namespace it was created in and calls the bpf_sock_destroy kfunc
 * (Linux >= 6.5) on each one whose cgroup is <pod_cgroup_id> or below it and
 * whose peer is in `api_endpoints` (the redirect object's map, shared by fd).
 *
 * The only object here that needs kernel types (struct sock, struct cgroup)
 * and a kfunc, hence its own file with a vmlinux.h generated at build time:
 * bpf/redirect.bpf.c stays UAPI-only and loads on older kernels; where this
 * one does not load, the loader falls back to netlink SOCK_DESTROY.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "mcpgate/abi.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET	 2
#define AF_INET6 10

/* Filled by the loader before each run; read back after it. */
__u64 pod_cgroup_id = 0;
__u64 cut = 0;	  /* sockets destroyed */
__u64 failed = 0; /* bpf_sock_destroy() refused */

/* The redirect object's api_endpoints; the loader reuses its fd. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_ENDPOINTS_MAX);
	__type(key, struct mg_abi_addr);
	__type(value, __u32);
} api_endpoints SEC(".maps");

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* True when the socket's cgroup is the pod's or below it. The walk goes up
 * through cgroup->self.parent (the parent's css, at the start of its
 * struct cgroup). */
static __always_inline int in_pod(struct sock *sk, __u64 pod)
{
	struct cgroup *cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);

	for (int i = 0; i < MG_MAX_CGROUP_DEPTH && cg; i++) {
		if (BPF_CORE_READ(cg, kn, id) == pod)
			return 1;
		cg = (struct cgroup *)((void *)BPF_CORE_READ(cg, self.parent) -
				       bpf_core_field_offset(struct cgroup, self));
	}
	return 0;
}

SEC("iter/tcp")
int mg_destroy_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct mg_abi_addr dst = {};
	struct tcp_sock *tp;
	__u8 state;

	if (!skc)
		return 0;
	state = skc->skc_state;
	/* Listeners, request and time-wait sockets carry no pod connection. */
	if (state == TCP_LISTEN || state == TCP_NEW_SYN_RECV || state == TCP_TIME_WAIT ||
	    state == TCP_CLOSE)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;

	if (skc->skc_family == AF_INET) {
		dst.addr[10] = 0xff;
		dst.addr[11] = 0xff;
		__builtin_memcpy(&dst.addr[12], &skc->skc_daddr, 4);
	} else if (skc->skc_family == AF_INET6) {
		/* A v4-mapped peer is already in the map's IPv4 key form. */
		__builtin_memcpy(dst.addr, &skc->skc_v6_daddr, 16);
	} else {
		return 0;
	}
	dst.port = skc->skc_dport;
	if (!bpf_map_lookup_elem(&api_endpoints, &dst))
		return 0;
	if (!in_pod((struct sock *)tp, pod_cgroup_id))
		return 0;
	if (bpf_sock_destroy(skc))
		__sync_fetch_and_add(&failed, 1);
	else
		__sync_fetch_and_add(&cut, 1);
	return 0;
}
