/*
 * endpoints: the addresses a pod may dial to reach the API server, which the
 * kernel must redirect (`api_endpoints`): configured extras, the ClusterIPs
 * of the `default/kubernetes` Service, and the addresses of the API server's
 * own EndpointSlices in `default`.
 *
 * Whoever can write an EndpointSlice labelled
 * `kubernetes.io/service-name=kubernetes` must not be able to add an address
 * (a pod's API connects to it would go to the proxy... and its upstream) or
 * to shrink the set (a dropped address is a way around the proxy). So:
 *
 * - A slice is believed only if it is one the API server's endpoint
 *   reconciler writes (k8s.io/kubernetes pkg/controlplane/reconcilers,
 *   EndpointsAdapter): named `kubernetes` with the address type of the
 *   Service's primary ClusterIP, or `kubernetes-v4`/`kubernetes-v6` for the
 *   secondary family of a dual-stack Service; labelled
 *   `kubernetes.io/service-name=kubernetes` and with no
 *   `endpointslice.kubernetes.io/managed-by` label and no ownerReferences
 *   (the reconciler sets neither; the endpointslice and mirroring controllers
 *   set both, and never for this selector-less Service). Names are unique in
 *   a namespace and the API server holds these, so another writer cannot
 *   create one. Every other slice is rejected, logged and counted.
 * - A fetch replaces the last good set only when it is complete: both
 *   requests answered, the Service has a ClusterIP, and the union fits
 *   MG_ENDPOINTS_MAX. A failed, ClusterIP-less or overflowing fetch keeps
 *   the last good set (counted); it is never cut. When no believed slice
 *   has an address (deleted, emptied, or only forged ones left), the slice
 *   addresses of the last good set are kept (counted) while the rest is
 *   applied.
 *
 * The parsing half (mg_endpoints_compute) is pure and unit-tested; the
 * thread half fetches through the kube client and hands a changed set to
 * the owner's apply callback, which must make the proxy's certificate cover
 * it before the kernel map holds it.
 */
#ifndef MCPGATE_ENDPOINTS_H
#define MCPGATE_ENDPOINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "mcpgate/abi.h"

struct mg_kube;

/** The Service and EndpointSlice namespace and name the API server uses. */
#define MG_ENDPOINTS_NAMESPACE "default"
#define MG_ENDPOINTS_SERVICE   "kubernetes"

/** Why a fetch did or did not produce a set. */
enum mg_endpoints_verdict {
	MG_ENDPOINTS_OK = 0,   /* <addrs> is a complete new set */
	MG_ENDPOINTS_FAILED,   /* a request failed or an answer was malformed */
	MG_ENDPOINTS_EMPTY,    /* the Service has no ClusterIP */
	MG_ENDPOINTS_OVERFLOW, /* more than MG_ENDPOINTS_MAX addresses */
};

/** The outcome of one fetch, computed from the two API answers. */
struct mg_endpoints_result {
	enum mg_endpoints_verdict verdict;
	struct mg_abi_addr addrs[MG_ENDPOINTS_MAX]; /* extras first, then discovered */
	size_t n;
	size_t rejected;	     /* slices not believed */
	char rejected_names[4][254]; /* the first few, for the log */
	size_t wanted;		     /* addresses counted before the cap (overflow) */
	size_t slice_from;	     /* addrs[slice_from..n): the slice part */
	bool slices_kept;	     /* no believed slice address: the previous slice part */
};

/**
 * Computes the set from <svc> (the Service object) and <slices> (the
 * EndpointSliceList of `default`), either NULL when its request failed,
 * prefixed by <extra>[0..<n_extra>) (configured; always kept). When no
 * believed slice has an address, the slice part is <prev>[0..<n_prev>)
 * (the last good one) instead: a slice that vanishes or empties never
 * shrinks the set, while a cluster that never had one still gets its
 * ClusterIPs. Fills <r>.
 */
void mg_endpoints_compute(const struct mg_abi_addr *extra, size_t n_extra,
			  const struct mg_abi_addr *prev, size_t n_prev, json_t *svc,
			  json_t *slices, struct mg_endpoints_result *r);

/** True if the slice <slice> (an EndpointSlice object) is one the API server
 * writes for the Service whose ClusterIPs are <svc_ips> (its spec.clusterIPs
 * array, primary first). */
bool mg_endpoints_slice_trusted(json_t *slice, json_t *svc_ips);

/* ---- the refresh thread ---- */

struct mg_endpoints;

/**
 * Makes <addrs>[0..<n>) the set the pods' API connects are redirected for.
 * Called on the refresh thread, only when the set changed; returns 0 when
 * it is in place (certificate first, then the kernel map), or -errno to
 * have it retried on the next refresh.
 */
typedef int mg_endpoints_apply_cb(void *data, const struct mg_abi_addr *addrs, size_t n);

/** GETs <path> from the API into <*out> (0) or fails (-errno). The default
 * goes through the kube client; tests put their own answers here. */
typedef int mg_endpoints_fetch_cb(void *data, const char *path, json_t **out);

struct mg_endpoints_opts {
	struct mg_kube *kube;
	const struct mg_abi_addr *extra; /* configured addresses (copied) */
	size_t n_extra;
	const struct mg_abi_addr *initial; /* what the map holds now (copied) */
	size_t n_initial;
	unsigned interval_s; /* between refreshes, >= 1 */
	mg_endpoints_apply_cb *apply;
	void *apply_data;
	mg_endpoints_fetch_cb *fetch; /* NULL: mg_kube_get_json on <kube> */
	void *fetch_data;
};

/** Counters for /metrics. */
struct mg_endpoints_stats {
	uint64_t fetches_failed;
	uint64_t fetches_empty;	 /* no ClusterIP */
	uint64_t slices_missing; /* no believed slice address: slice part kept */
	uint64_t overflows;
	uint64_t rejected_slices;
	uint64_t apply_failed;
	size_t n_current;
};

int mg_endpoints_new(struct mg_endpoints **out, const struct mg_endpoints_opts *o);
/** Starts the refresh thread. 0 / -errno. */
int mg_endpoints_start(struct mg_endpoints *e);
/** Stops the thread if started, frees. Accepts NULL. */
void mg_endpoints_free(struct mg_endpoints *e);

/** Runs one refresh now, on the caller's thread (the thread's body; tests). */
void mg_endpoints_refresh(struct mg_endpoints *e);

/** True once a complete set from the API is in place (certificate and map). */
bool mg_endpoints_synced(struct mg_endpoints *e);
void mg_endpoints_get_stats(struct mg_endpoints *e, struct mg_endpoints_stats *st);

struct mg_metrics;

/**
 * Registers the endpoint families in <m> (mcpgate_api_endpoints,
 * mcpgate_endpoints_fetches_kept_total{reason},
 * mcpgate_endpointslices_rejected_total), filled from the stats at each
 * render. Once per <e>. 0, or -ENOMEM / -EEXIST.
 */
int mg_endpoints_register_metrics(struct mg_endpoints *e, struct mg_metrics *m);

#endif /* MCPGATE_ENDPOINTS_H */
