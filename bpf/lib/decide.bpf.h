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
#include "addr.bpf.h"

/*
 * Returns the proxy address a connection to <dst> must be sent to: the IPv4
 * proxy for IPv4 and IPv4-mapped destinations (a v4-mapped connect leaves the
 * host as IPv4), the IPv6 one otherwise; NULL when that family has no proxy
 * configured, in which case the caller refuses the connect (fail closed:
 * an API endpoint is never reached unmediated).
 */
static __always_inline const struct mg_abi_addr *mg_pick_proxy(const struct mg_abi_settings *s,
							       const struct mg_abi_addr *dst)
{
	const struct mg_abi_addr *p = mg_addr_is_v4mapped(dst) ? &s->proxy4 : &s->proxy6;

	return p->port ? p : (const struct mg_abi_addr *)0;
}

/* What connect4/6 do with one connect. */
enum mg_verdict {
	MG_VERDICT_PASS = 0,	   /* leave the connect alone */
	MG_VERDICT_REDIRECT,	   /* rewrite it to the proxy */
	MG_VERDICT_REFUSE_UNKNOWN, /* fail it: the pod is pending or unknown */
};

/*
 * The connect decision. <pod> is the `intercept` value of the first
 * ancestor that has one, NULL when no cgroup on the path has an entry;
 * <flags> are settings.flags; <is_api> says the destination is in
 * `api_endpoints`. A state this build does not know (a newer daemon's) is
 * treated as pending: refusing an API connect is the safe reading.
 */
static __always_inline enum mg_verdict mg_decide(const struct mg_abi_pod *pod, __u32 flags,
						 int is_api)
{
	if (!is_api)
		return MG_VERDICT_PASS;
	if (!pod)
		return (flags & MG_SET_REFUSE_UNKNOWN) ? MG_VERDICT_REFUSE_UNKNOWN
						       : MG_VERDICT_PASS;
	if (pod->state == MG_POD_PASS)
		return MG_VERDICT_PASS;
	if (pod->state == MG_POD_SELECTED)
		return MG_VERDICT_REDIRECT;
	return MG_VERDICT_REFUSE_UNKNOWN;
}

/*
 * The egress decision for one packet to <is_api> (its destination
 * address:port is in `api_endpoints`) from a socket whose first ancestor
 * entry is <pod> (NULL: none). True means drop: a selected pod's API traffic
 * goes to the proxy address, never to an API endpoint, so a packet that does
 * was not made by connect() (a raw or packet socket, or a connection opened
 * before the pod was selected); a pending or unknown pod is refused as its
 * connects are.
 */
static __always_inline int mg_egress_drop(const struct mg_abi_pod *pod, __u32 flags, int is_api)
{
	return mg_decide(pod, flags, is_api) != MG_VERDICT_PASS;
}

/* Events (not counters) each CPU may emit per window: a pod flooding raw
 * packets at an API endpoint must not flood the daemon's log too. */
#define MG_EVENTS_PER_WINDOW 32
#define MG_EVENTS_WINDOW_NS  1000000000ull

/** Per-CPU state of the event rate limit (BPF-internal, not in abi.h). */
struct mg_event_budget {
	__u64 window_start; /* ktime of the current window */
	__u32 used;	    /* events emitted in it */
	__u32 pad;
};

/* True when one more event may be emitted at <now>; charges it to <b>. */
static __always_inline int mg_event_allow(struct mg_event_budget *b, __u64 now)
{
	if (now - b->window_start >= MG_EVENTS_WINDOW_NS) {
		b->window_start = now;
		b->used = 0;
	}
	if (b->used >= MG_EVENTS_PER_WINDOW)
		return 0;
	b->used++;
	return 1;
}

#endif /* MCPGATE_DECIDE_BPF_H */
