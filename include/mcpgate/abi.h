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

#include <linux/types.h>

#define MG_ABI_VERSION 1

/* Where the loader pins maps and links; a restarted daemon reuses them. */
#define MG_PIN_DIR "/sys/fs/bpf/mcpgate"

#define MG_MAX_CGROUP_DEPTH 16	/* ancestor levels walked by connect4/6 */
#define MG_INTERCEPT_MAX    16384	/* selected pod cgroups per node */
#define MG_ENDPOINTS_MAX    256	/* API addresses (ClusterIPs, EndpointSlice, extra) */
#define MG_PENDING_MAX      65536	/* connects between connect() and SYN */
#define MG_ORIGINS_MAX      65536	/* 4-tuple -> origin, until the proxy reads it */

/** An address:port; <addr> is IPv6 or IPv4-mapped, <port> network order. */
struct mg_abi_addr {
	__u8 addr[16];
	__be16 port;
	__u16 pad;
};

/** Key of `origins`: the TCP 4-tuple as the proxy sees it on accept(). */
struct mg_abi_tuple {
	struct mg_abi_addr client;	/* the pod's source address:port */
	struct mg_abi_addr proxy;	/* the proxy address:port it was sent to */
};

/** What the kernel recorded at connect() time for one redirected socket. */
struct mg_abi_origin {
	struct mg_abi_addr orig_dst;	/* where the pod meant to connect */
	__u64 pod_cgroup_id;		/* the matched ancestor in `intercept` */
	__u64 cgroup_id;		/* the connecting task's own cgroup */
	__u64 netns_cookie;		/* the socket's network namespace */
	__u64 socket_cookie;
	__u64 ktime_ns;			/* bpf_ktime_get_ns() at connect */
	__u32 tgid;
	__u32 uid;
	__u32 family;			/* AF_INET or AF_INET6 of the pod's socket */
	__u32 pad;
};

/** Value of `intercept` (key: pod-level cgroup id, the directory's inode). */
struct mg_abi_pod {
	__u32 flags;	/* reserved, 0 */
	__u32 pad;
};

/** Single entry of the `settings` array map. */
struct mg_abi_settings {
	struct mg_abi_addr proxy4;	/* IPv4-mapped; port 0 = no IPv4 proxy */
	struct mg_abi_addr proxy6;	/* port 0 = no IPv6 proxy */
	__u32 abi_version;		/* MG_ABI_VERSION of the loader that wrote it */
	__u32 pad;
};

/** Indexes of the per-CPU `counters` array. */
enum mg_abi_counter {
	MG_CNT_REDIRECTED = 0,	/* connect rewritten to the proxy */
	MG_CNT_PASSED,		/* selected pod, not an API endpoint: untouched */
	MG_CNT_ORIGIN_MISSING,	/* a socket dialled the proxy directly, with no origin */
	MG_CNT_MAP_FULL,	/* a record could not be stored: connect refused */
	MG_CNT_NO_PROXY,	/* API endpoint of a family with no proxy address: refused */
	MG_CNT_MAX,
};

#endif /* MCPGATE_ABI_H */
