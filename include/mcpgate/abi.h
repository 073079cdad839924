/*
 * The kernel/user contract: the plain-data structs and map layouts shared by
 * bpf/redirect.bpf.c and userspace/loader.c. Nothing else lives here. Every
 * struct is padded explicitly so both compilers (clang -target bpf, gcc)
 * agree on the layout byte for byte.
 *
 * Addresses: both families are stored as 16-byte IPv6 addresses, IPv4 in
 * IPv4-mapped form (::ffff:a.b.c.d), so one key type serves connect4,
 * connect6 (including v4-mapped destinations) and the proxy's accept().
 * Ports are in network byte order everywhere.
 */
#ifndef MCPGATE_ABI_H
#define MCPGATE_ABI_H

/* bpf/destroy.bpf.c includes a generated vmlinux.h, which already defines
 * the __u8.. types (and clashes with the UAPI headers). */
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define MG_ABI_VERSION 2

/* Where the loader pins maps and links; a restarted daemon reuses them. */
#define MG_PIN_DIR "/sys/fs/bpf/mcpgate"

/* Names under MG_PIN_DIR: each map is pinned under its name in the
 * programs, each bpf link under link_<program hook>. Renaming one is an
 * ABI change (MG_ABI_VERSION): a daemon of the old name finds no pin. */
#define MG_PIN_MAP_INTERCEPT	 "intercept"
#define MG_PIN_MAP_ENDPOINTS	 "api_endpoints"
#define MG_PIN_MAP_SOCKS	 "socks"
#define MG_PIN_MAP_ORIGINS	 "origins"
#define MG_PIN_MAP_SETTINGS	 "settings"
#define MG_PIN_MAP_COUNTERS	 "counters"
#define MG_PIN_MAP_EVENTS	 "events"
#define MG_PIN_LINK_CONNECT4	 "link_connect4"
#define MG_PIN_LINK_CONNECT6	 "link_connect6"
#define MG_PIN_LINK_SOCKOPS	 "link_sockops"
#define MG_PIN_LINK_GETPEERNAME4 "link_getpeername4"
#define MG_PIN_LINK_GETPEERNAME6 "link_getpeername6"
#define MG_PIN_LINK_EGRESS	 "link_egress"

#define MG_MAX_CGROUP_DEPTH 16	  /* ancestor levels walked by connect4/6 */
#define MG_INTERCEPT_MAX    16384 /* selected pod cgroups per node */
#define MG_ENDPOINTS_MAX    256	  /* API addresses (ClusterIPs, EndpointSlice, extra) */
#define MG_PENDING_MAX	    65536 /* connects between connect() and SYN */
#define MG_ORIGINS_MAX	    65536 /* 4-tuple -> origin, until the proxy reads it */

/** An address:port; <addr> is IPv6 or IPv4-mapped, <port> network order. */
struct mg_abi_addr {
	__u8 addr[16];
	__be16 port;
	__u16 pad;
};

/** Key of `origins`: the TCP 4-tuple as the proxy sees it on accept(). */
struct mg_abi_tuple {
	struct mg_abi_addr client; /* the pod's source address:port */
	struct mg_abi_addr proxy;  /* the proxy address:port it was sent to */
};

/** What the kernel recorded at connect() time for one redirected socket. */
struct mg_abi_origin {
	struct mg_abi_addr orig_dst; /* where the pod meant to connect */
	__u64 pod_cgroup_id;	     /* the matched ancestor in `intercept` */
	__u64 cgroup_id;	     /* the connecting task's own cgroup */
	__u64 netns_cookie;	     /* the socket's network namespace */
	__u64 socket_cookie;
	__u64 ktime_ns; /* bpf_ktime_get_ns() at connect */
	__u32 tgid;
	__u32 uid;
	__u32 family; /* AF_INET or AF_INET6 of the pod's socket */
	__u32 pad;
};

/** What the kernel does with API connects from one pod cgroup. */
enum mg_abi_pod_state {
	MG_POD_PASS = 0,     /* known, not selected: API connects untouched */
	MG_POD_SELECTED = 1, /* API connects redirected to the proxy; any other
			      * packet to an API endpoint dropped (egress) */
	MG_POD_PENDING = 2,  /* cgroup seen, pod metadata not known yet: API
			      * connects refused, packets to API endpoints dropped */
};

/**
 * Value of `intercept` (key: pod-level cgroup id, the directory's inode).
 * The daemon keeps one entry per pod cgroup it knows under the attach point,
 * selected or not, so that with MG_SET_REFUSE_UNKNOWN a cgroup with no
 * entry on its ancestor path is known to be new and unknown.
 */
struct mg_abi_pod {
	__u32 state;   /* enum mg_abi_pod_state */
	__u32 sel_gen; /* selector generation that selected it (0 if never):
			* a restarted daemon with the same selector keeps a
			* selection sticky even if the pod's labels changed */
};

/** Single entry of the `settings` array map. */
struct mg_abi_settings {
	struct mg_abi_addr proxy4; /* IPv4-mapped; port 0 = no IPv4 proxy */
	struct mg_abi_addr proxy6; /* port 0 = no IPv6 proxy */
	__u32 abi_version;	   /* MG_ABI_VERSION of the loader that wrote it */
	__u32 flags;		   /* MG_SET_* */
};

/* settings.flags: an API connect (or an egress packet to an API endpoint)
 * from a cgroup under the attach point with no `intercept` entry on its
 * ancestor path is refused (dropped), not passed: a pod the daemon has not
 * classified yet never reaches the API server directly. */
#define MG_SET_REFUSE_UNKNOWN 0x1u

/** Indexes of the per-CPU `counters` array. */
enum mg_abi_counter {
	MG_CNT_REDIRECTED = 0,	/* connect rewritten to the proxy */
	MG_CNT_PASSED,		/* selected pod, not an API endpoint: untouched */
	MG_CNT_ORIGIN_MISSING,	/* a socket dialled the proxy directly, with no origin */
	MG_CNT_MAP_FULL,	/* a record could not be stored: connect refused */
	MG_CNT_NO_PROXY,	/* API endpoint of a family with no proxy address: refused */
	MG_CNT_REFUSED_UNKNOWN, /* API connect from a pending or unknown pod cgroup: refused */
	MG_CNT_EGRESS_DROPPED,	/* packet from a selected/pending/unknown pod straight to an
				 * API endpoint (raw socket, ...): dropped by cgroup_skb/egress */
	MG_CNT_MAX,
};

/** Kinds of `events` ring-buffer records. */
enum mg_abi_event_type {
	MG_EV_EGRESS_DROPPED = 1,  /* cgroup_skb/egress dropped a packet to an API endpoint */
	MG_EV_REFUSED_UNKNOWN = 2, /* connect refused: pod cgroup pending or unknown */
};

/** One record of the `events` ring buffer, read by the daemon to log the pod.
 * The kernel may rate-limit them; the counters are exact. */
struct mg_abi_event {
	__u32 type;	     /* enum mg_abi_event_type */
	__u32 tgid;	     /* 0 when not known (softirq context) */
	__u64 pod_cgroup_id; /* the matched ancestor, 0 when unknown */
	__u64 cgroup_id;     /* the socket's own cgroup */
	__u64 ktime_ns;
	struct mg_abi_addr dst; /* the API endpoint address:port */
};

#endif /* MCPGATE_ABI_H */
