/*
 * Loads, attaches and pins the eBPF programs, and is the only way userspace
 * touches their maps. Interception outlives the daemon: links and maps are
 * pinned under <pin_dir>, a restarted daemon reuses them (never a second
 * attachment), and only mg_loader_uninstall() removes them.
 */
#ifndef MCPGATE_LOADER_H
#define MCPGATE_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mcpgate/abi.h"

struct mg_loader;

struct mg_loader_opts {
	const char *cgroup_path;	 /* cgroup v2 directory to attach at */
	const char *pin_dir;		 /* default MG_PIN_DIR */
	const char *btf_path;		 /* default /sys/kernel/btf/vmlinux */
	struct mg_abi_settings settings; /* proxy addresses */
};

/** One-line reason of a failure, for the operator (no secrets in here). */
struct mg_loader_err {
	char msg[256];
};

/**
 * Checks the environment (BTF, cgroup v2 at <cgroup_path>, bpffs, BPF
 * rights), then reuses the pinned attachment (only if it is of this build's
 * ABI: -EPROTO and "pinned mcpgate programs are ABI vN, this is vM: run
 * mcpgatectl uninstall" otherwise) or loads, attaches all programs and pins
 * them. All or nothing: on error nothing stays attached or pinned that was
 * not before. Writes <settings> (proxies, flags, abi_version) into the
 * settings map either way, and gives the daemon's own cgroup a MG_POD_PASS
 * entry when it lies under <cgroup_path> (a daemon running as a pod must
 * reach the API server to classify any pod, refuse-unknown or not).
 * Returns 0 with <*out> set, or -errno with <err> filled in.
 */
int mg_loader_open(struct mg_loader **out, const struct mg_loader_opts *o,
		   struct mg_loader_err *err);

/** Closes the daemon's fds; pins and attachment stay. Accepts NULL. */
void mg_loader_close(struct mg_loader *l);

/** True if the pinned links were reused rather than attached now. */
bool mg_loader_reused(const struct mg_loader *l);

/** True while every program is still attached (for /readyz). */
bool mg_loader_attached(struct mg_loader *l);

/** Sets the `intercept` entry of pod-level cgroup id <pod_cgroup_id> to <v>
 * (insert or replace). 0 / -errno. */
int mg_loader_set_pod(struct mg_loader *l, uint64_t pod_cgroup_id, const struct mg_abi_pod *v);

/** Removes the `intercept` entry of <pod_cgroup_id>; 0 also when absent. */
int mg_loader_del_pod(struct mg_loader *l, uint64_t pod_cgroup_id);

/** Copies up to <max> entries now in `intercept` into <ids> and <vals>
 * (either may be NULL); returns the count or -errno. Lets a restarted daemon
 * keep what its predecessor set. */
ssize_t mg_loader_list_pods(struct mg_loader *l, uint64_t *ids, struct mg_abi_pod *vals,
			    size_t max);

/**
 * Cuts every established TCP connection that a task of pod cgroup
 * <pod_cgroup_id> (directory <pod_cgroup_dir>, ancestors included) holds to
 * an address in `api_endpoints`, so a pod that has just become selected keeps
 * no unmediated connection. Uses the bpf_sock_destroy kfunc from a TCP
 * iterator where the kernel has it, else netlink SOCK_DESTROY in each
 * network namespace of the pod's tasks. Returns the number of sockets cut,
 * or -EOPNOTSUPP when the kernel offers neither way (the caller logs it and
 * counts it), or another -errno.
 */
int mg_loader_destroy_pod_sockets(struct mg_loader *l, uint64_t pod_cgroup_id,
				  const char *pod_cgroup_dir);

/** Ways to cut a pod's connections (mg_loader_cut_pod_sockets). */
enum mg_loader_cut_method {
	MG_LOADER_CUT_AUTO = 0, /* the kfunc where its object loads, else netlink */
	MG_LOADER_CUT_KFUNC,	/* TCP iterator + bpf_sock_destroy (Linux >= 6.5) */
	MG_LOADER_CUT_NETLINK,	/* sock_diag SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY) */
};

/**
 * mg_loader_destroy_pod_sockets() for a tool without the daemon's loader
 * (`mcpgatectl sockets cut`): the pod cgroup is <pod_cgroup_dir> (its inode
 * is the id), the API endpoints those in the map pinned under <pin_dir>
 * (default MG_PIN_DIR). Returns the number cut, or -errno with <err>
 * filled (-EOPNOTSUPP: <method>, or with AUTO both, unavailable here).
 */
int mg_loader_cut_pod_sockets(const char *pin_dir, const char *pod_cgroup_dir,
			      enum mg_loader_cut_method method, struct mg_loader_err *err);

/** The fd of the `events` ring buffer, to add to an epoll loop (readable
 * when records wait), or -1. */
int mg_loader_events_fd(struct mg_loader *l);

typedef void mg_loader_event_cb(void *data, const struct mg_abi_event *ev);

/** Consumes every waiting `events` record, calling <cb> for each. Returns
 * the number consumed or -errno. Never blocks. */
int mg_loader_read_events(struct mg_loader *l, mg_loader_event_cb *cb, void *data);

/** Makes `api_endpoints` hold exactly <addrs>[0..<n>). 0 / -errno. */
int mg_loader_set_endpoints(struct mg_loader *l, const struct mg_abi_addr *addrs, size_t n);

/** Copies up to <max> addresses now in `api_endpoints` into <addrs>; returns
 * the count or -errno. A restarted daemon's first certificate covers what
 * its predecessor left in the map, since pods are redirected for those. */
ssize_t mg_loader_list_endpoints(struct mg_loader *l, struct mg_abi_addr *addrs, size_t max);

/**
 * Looks up and removes the origin of an accepted connection by <t>.
 * Returns 0, -ENOENT when the kernel recorded none.
 */
int mg_loader_take_origin(struct mg_loader *l, const struct mg_abi_tuple *t,
			  struct mg_abi_origin *o);

/** Sums the per-CPU counters into <out>. 0 / -errno. */
int mg_loader_counters(struct mg_loader *l, uint64_t out[MG_CNT_MAX]);

/**
 * Detaches every mcpgate program and removes <pin_dir> (default MG_PIN_DIR).
 * Returns 0 (also when nothing was installed) or -errno with <err> filled.
 */
int mg_loader_uninstall(const char *pin_dir, struct mg_loader_err *err);

/** What is installed under a pin directory, read without a daemon. */
struct mg_loader_status {
	uint64_t counters[MG_CNT_MAX]; /* summed over CPUs */
	size_t n_counters;	       /* how many could be read (MG_CNT_MAX normally) */
	bool has_settings;	       /* <settings> read from the pinned map */
	struct mg_abi_settings settings;
	bool has_intercept;	  /* <pods> counted from the pinned map */
	unsigned long pods[3];	  /* intercept entries by enum mg_abi_pod_state */
	unsigned long pods_other; /* entries of a state this build does not know */
};

/**
 * Reads <st> from the maps pinned under <pin_dir> (default MG_PIN_DIR), for
 * `mcpgatectl status`: the counters, the settings the last daemon wrote,
 * the pod cgroups by state. Returns 0, or -errno of opening the counters
 * pin (-ENOENT: not installed) with <err> filled. The settings and the
 * intercept map are optional (has_*).
 */
int mg_loader_read_status(const char *pin_dir, struct mg_loader_status *st,
			  struct mg_loader_err *err);

/** Names of the counters, indexed by enum mg_abi_counter. */
extern const char *const mg_loader_counter_names[MG_CNT_MAX];

#endif /* MCPGATE_LOADER_H */
