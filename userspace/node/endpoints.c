/*
 * endpoints: API endpoint discovery with a last good set. See
 * include/mcpgate/endpoints.h for what is believed and why.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcpgate/addr.h"
#include "mcpgate/config.h"
#include "mcpgate/endpoints.h"
#include "mcpgate/kube.h"
#include "mcpgate/log.h"
#include "mcpgate/metrics.h"

#define LABEL_SERVICE_NAME "kubernetes.io/service-name"
#define LABEL_MANAGED_BY   "endpointslice.kubernetes.io/managed-by"

#define SERVICE_PATH "/api/v1/namespaces/" MG_ENDPOINTS_NAMESPACE "/services/" MG_ENDPOINTS_SERVICE
#define SLICES_PATH                                                                                \
	"/apis/discovery.k8s.io/v1/namespaces/" MG_ENDPOINTS_NAMESPACE "/endpointslices"           \
	"?labelSelector=kubernetes.io%2Fservice-name%3D" MG_ENDPOINTS_SERVICE

/* ---- computing a set (pure) ---- */

static bool is_v4_text(const char *s)
{
	return s && !strchr(s, ':');
}

/* Adds <a> to <r> unless present; past the cap it only counts it, so an
 * overflow reports how many were wanted. */
static void add_addr(struct mg_endpoints_result *r, const struct mg_abi_addr *a)
{
	for (size_t i = 0; i < r->n; i++)
		if (!memcmp(&r->addrs[i], a, sizeof(*a)))
			return;
	r->wanted++;
	if (r->n < MG_ENDPOINTS_MAX)
		r->addrs[r->n++] = *a;
}

/* A TCP port of a Service or slice port entry <p>, or 0. */
static unsigned tcp_port(json_t *p)
{
	const char *proto = json_string_value(json_object_get(p, "protocol"));
	json_int_t port = json_integer_value(json_object_get(p, "port"));

	if ((proto && strcmp(proto, "TCP")) || port <= 0 || port > 65535)
		return 0;
	return (unsigned)port;
}

/* The Service's ClusterIPs, primary first: spec.clusterIPs, or the single
 * spec.clusterIP of an API server older than dual-stack. New reference. */
static json_t *service_ips(json_t *svc)
{
	json_t *spec = json_object_get(svc, "spec");
	json_t *ips = json_object_get(spec, "clusterIPs");

	if (json_is_array(ips) && json_array_size(ips))
		return json_incref(ips);
	ips = json_object_get(spec, "clusterIP");
	return json_is_string(ips) ? json_pack("[O]", ips) : json_array();
}

bool mg_endpoints_slice_trusted(json_t *slice, json_t *svc_ips)
{
	json_t *md = json_object_get(slice, "metadata");
	json_t *labels = json_object_get(md, "labels");
	json_t *owners = json_object_get(md, "ownerReferences");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	const char *svc = json_string_value(json_object_get(labels, LABEL_SERVICE_NAME));
	const char *type = json_string_value(json_object_get(slice, "addressType"));
	const char *primary = json_string_value(json_array_get(svc_ips, 0));
	const char *secondary = json_string_value(json_array_get(svc_ips, 1));
	const char *want_type;

	if (!name || !type || !primary || !svc || strcmp(svc, MG_ENDPOINTS_SERVICE))
		return false;
	if (ns && strcmp(ns, MG_ENDPOINTS_NAMESPACE))
		return false;
	if (json_object_get(labels, LABEL_MANAGED_BY) ||
	    (owners && !(json_is_array(owners) && json_array_size(owners) == 0)))
		return false;
	if (!strcmp(name, MG_ENDPOINTS_SERVICE)) {
		want_type = is_v4_text(primary) ? "IPv4" : "IPv6";
	} else if (!strcmp(name, MG_ENDPOINTS_SERVICE "-v4")) {
		/* the secondary slice exists only for a secondary ClusterIP of its family */
		if (!secondary || !is_v4_text(secondary) || is_v4_text(primary))
			return false;
		want_type = "IPv4";
	} else if (!strcmp(name, MG_ENDPOINTS_SERVICE "-v6")) {
		if (!secondary || is_v4_text(secondary) || !is_v4_text(primary))
			return false;
		want_type = "IPv6";
	} else {
		return false;
	}
	return !strcmp(type, want_type);
}

/* Adds every address x TCP port of the believed <slice>; returns how many
 * addresses (before ports) it held. */
static size_t add_slice(struct mg_endpoints_result *r, json_t *slice)
{
	bool v4 = !strcmp(json_string_value(json_object_get(slice, "addressType")), "IPv4");
	json_t *ports = json_object_get(slice, "ports"), *p, *ep, *a;
	size_t i, j, k, n = 0;

	json_array_foreach(json_object_get(slice, "endpoints"), j, ep)
	{
		json_array_foreach(json_object_get(ep, "addresses"), k, a)
		{
			const char *s = json_string_value(a);
			struct mg_abi_addr addr;

			/* an address of the other family than the slice says is malformed */
			if (!s || is_v4_text(s) != v4 || mg_addr_parse_ip(s, 1, &addr))
				continue;
			n++;
			json_array_foreach(ports, i, p)
			{
				unsigned port = tcp_port(p);

				if (port && !mg_addr_parse_ip(s, port, &addr))
					add_addr(r, &addr);
			}
		}
	}
	return n;
}

void mg_endpoints_compute(const struct mg_abi_addr *extra, size_t n_extra,
			  const struct mg_abi_addr *prev, size_t n_prev, json_t *svc,
			  json_t *slices, struct mg_endpoints_result *r)
{
	json_t *ips, *items, *it, *p, *ip;
	size_t i, j, n_svc = 0, n_slice = 0;

	memset(r, 0, sizeof(*r));
	for (i = 0; i < n_extra; i++)
		add_addr(r, &extra[i]);
	items = json_object_get(slices, "items");
	if (!json_is_object(svc) || !json_is_array(items)) {
		r->verdict = MG_ENDPOINTS_FAILED;
		return;
	}
	ips = service_ips(svc);
	json_array_foreach(json_object_get(json_object_get(svc, "spec"), "ports"), i, p)
	{
		unsigned port = tcp_port(p);

		json_array_foreach(ips, j, ip)
		{
			struct mg_abi_addr a;

			if (port && json_is_string(ip) &&
			    !mg_addr_parse_ip(json_string_value(ip), port, &a)) {
				add_addr(r, &a);
				n_svc++;
			}
		}
	}
	r->slice_from = r->n;
	json_array_foreach(items, i, it)
	{
		if (mg_endpoints_slice_trusted(it, ips)) {
			n_slice += add_slice(r, it);
			continue;
		}
		if (r->rejected < sizeof(r->rejected_names) / sizeof(r->rejected_names[0])) {
			const char *name = json_string_value(
				json_object_get(json_object_get(it, "metadata"), "name"));

			snprintf(r->rejected_names[r->rejected], sizeof(r->rejected_names[0]), "%s",
				 name ? name : "");
		}
		r->rejected++;
	}
	json_decref(ips);
	if (!n_slice) {
		r->slices_kept = true;
		for (i = 0; i < n_prev; i++)
			add_addr(r, &prev[i]);
	}
	if (r->wanted > MG_ENDPOINTS_MAX)
		r->verdict = MG_ENDPOINTS_OVERFLOW;
	else if (!n_svc)
		r->verdict = MG_ENDPOINTS_EMPTY;
	else
		r->verdict = MG_ENDPOINTS_OK;
	if (r->verdict != MG_ENDPOINTS_OK)
		r->n = 0;
}

/* ---- the refresh thread ---- */

struct mg_endpoints {
	pthread_mutex_t mu; /* guards cur, n_cur, synced, st */
	struct mg_kube *kube;
	struct mg_abi_addr extra[MG_ENDPOINTS_MAX];
	size_t n_extra;
	unsigned interval_s;
	mg_endpoints_apply_cb *apply;
	void *apply_data;
	mg_endpoints_fetch_cb *fetch;
	void *fetch_data;

	struct mg_abi_addr cur[MG_ENDPOINTS_MAX]; /* the last good set, in place */
	size_t n_cur;
	struct mg_abi_addr slice[MG_ENDPOINTS_MAX]; /* its slice part (refresh thread only) */
	size_t n_slice;
	bool last_slices_kept;
	bool synced;
	struct mg_endpoints_stats st;
	enum mg_endpoints_verdict last_verdict; /* log a kept set once per change */
	size_t last_rejected;

	pthread_t thread;
	bool started;
	volatile bool stop;

	/* /metrics families, filled by collect_metrics() */
	struct mg_metrics_family *m_current, *m_kept, *m_rejected;
};

static int kube_fetch(void *data, const char *path, json_t **out)
{
	struct mg_endpoints *e = data;
	char err[512];
	long status;
	int rc = mg_kube_get_json(e->kube, path, out, &status, err, sizeof(err));

	if (rc)
		mg_log_json("warn", json_pack("{s:s,s:s,s:s}", "event", "endpoints_fetch_failed",
					      "path", path, "error", err));
	return rc;
}

int mg_endpoints_new(struct mg_endpoints **out, const struct mg_endpoints_opts *o)
{
	struct mg_endpoints *e;

	if (o->n_extra > MG_ENDPOINTS_MAX || o->n_initial > MG_ENDPOINTS_MAX || !o->apply)
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	pthread_mutex_init(&e->mu, NULL);
	e->kube = o->kube;
	if (o->n_extra)
		memcpy(e->extra, o->extra, o->n_extra * sizeof(*o->extra));
	e->n_extra = o->n_extra;
	if (o->n_initial) {
		memcpy(e->cur, o->initial, o->n_initial * sizeof(*o->initial));
		/* Which of them came from a slice is unknown: all are kept
		 * should the first fetch find no slice. */
		memcpy(e->slice, o->initial, o->n_initial * sizeof(*o->initial));
	}
	e->n_cur = o->n_initial;
	e->n_slice = o->n_initial;
	e->interval_s = o->interval_s ? o->interval_s : 10;
	e->apply = o->apply;
	e->apply_data = o->apply_data;
	e->fetch = o->fetch ? o->fetch : kube_fetch;
	e->fetch_data = o->fetch ? o->fetch_data : e;
	e->last_verdict = MG_ENDPOINTS_OK;
	*out = e;
	return 0;
}

static json_t *addr_list(const struct mg_abi_addr *a, size_t n)
{
	json_t *list = json_array();
	char buf[64];

	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, json_string(mg_addr_fmt(&a[i], buf, sizeof(buf))));
	return list;
}

/* Logs what a fetch that did not replace the set kept, once per change of
 * verdict, so a persistent condition is not a line every interval. */
static void log_kept(struct mg_endpoints *e, const struct mg_endpoints_result *r)
{
	static const char *const why[] = {
		[MG_ENDPOINTS_FAILED] = "fetch failed",
		[MG_ENDPOINTS_EMPTY] = "the kubernetes Service has no ClusterIP",
		[MG_ENDPOINTS_OVERFLOW] = "more addresses than the map holds",
	};

	if (r->verdict == e->last_verdict)
		return;
	mg_log_json(r->verdict == MG_ENDPOINTS_FAILED ? "warn" : "error",
		    json_pack("{s:s,s:s,s:I,s:i,s:I}", "event", "api_endpoints_kept", "reason",
			      why[r->verdict], "wanted", (json_int_t)r->wanted, "max",
			      MG_ENDPOINTS_MAX, "kept", (json_int_t)e->n_cur));
}

/* Logs, once per change, that no believed slice had an address and the
 * previous slice part was kept. */
static void log_slices_kept(struct mg_endpoints *e, const struct mg_endpoints_result *r)
{
	if (r->slices_kept != e->last_slices_kept && (r->slices_kept || e->n_slice))
		mg_log_json(r->slices_kept ? "warn" : "info",
			    json_pack("{s:s,s:s,s:I}", "event", "api_endpoints_slices", "state",
				      r->slices_kept
					      ? "no address in a believed EndpointSlice: the "
						"last good slice addresses are kept"
					      : "believed EndpointSlice addresses again",
				      "kept", (json_int_t)(r->slices_kept ? e->n_slice : 0)));
	e->last_slices_kept = r->slices_kept;
}

static void log_rejected(struct mg_endpoints *e, const struct mg_endpoints_result *r)
{
	json_t *names;

	if (r->rejected == e->last_rejected)
		return;
	e->last_rejected = r->rejected;
	if (!r->rejected)
		return;
	names = json_array();
	for (size_t i = 0; i < r->rejected && i < 4; i++)
		json_array_append_new(names, json_string(r->rejected_names[i]));
	mg_log_json("warn",
		    json_pack("{s:s,s:s,s:I,s:o}", "event", "endpointslice_rejected", "reason",
			      "not written by the API server's endpoint reconciler "
			      "(name, managed-by, ownerReferences or address type)",
			      "count", (json_int_t)r->rejected, "slices", names));
}

/* True if <r> holds exactly the addresses of <cur>[0..<n>), in any order
 * (both are free of duplicates): an API answer in another order is no
 * change, and reissues nothing. */
static bool same_set(const struct mg_endpoints_result *r, const struct mg_abi_addr *cur, size_t n)
{
	if (r->n != n)
		return false;
	for (size_t i = 0; i < r->n; i++) {
		bool in = false;

		for (size_t j = 0; j < n && !in; j++)
			in = !memcmp(&r->addrs[i], &cur[j], sizeof(cur[j]));
		if (!in)
			return false;
	}
	return true;
}

void mg_endpoints_refresh(struct mg_endpoints *e)
{
	struct mg_endpoints_result *r = calloc(1, sizeof(*r));
	json_t *svc = NULL, *slices = NULL;
	bool changed;
	int rc;

	if (!r)
		return;
	if (e->fetch(e->fetch_data, SERVICE_PATH, &svc) == 0)
		e->fetch(e->fetch_data, SLICES_PATH, &slices);
	mg_endpoints_compute(e->extra, e->n_extra, e->slice, e->n_slice, svc, slices, r);
	json_decref(svc);
	json_decref(slices);

	pthread_mutex_lock(&e->mu);
	e->st.rejected_slices += r->rejected;
	if (r->verdict == MG_ENDPOINTS_FAILED)
		e->st.fetches_failed++;
	else if (r->verdict == MG_ENDPOINTS_EMPTY)
		e->st.fetches_empty++;
	else if (r->verdict == MG_ENDPOINTS_OVERFLOW)
		e->st.overflows++;
	if (r->verdict == MG_ENDPOINTS_OK && r->slices_kept)
		e->st.slices_missing++;
	changed = r->verdict == MG_ENDPOINTS_OK && (!e->synced || !same_set(r, e->cur, e->n_cur));
	pthread_mutex_unlock(&e->mu);

	if (r->verdict != MG_ENDPOINTS_FAILED)
		log_rejected(e, r);
	if (r->verdict != MG_ENDPOINTS_OK)
		log_kept(e, r);
	else
		log_slices_kept(e, r);
	e->last_verdict = r->verdict;
	if (!changed)
		goto out;

	/* Only this thread writes cur: applying outside the lock keeps
	 * mg_endpoints_synced() and the stats readable meanwhile. */
	rc = e->apply(e->apply_data, r->addrs, r->n);
	mg_log_json(rc ? "error" : "info",
		    json_pack("{s:s,s:o,s:i}", "event", "api_endpoints", "endpoints",
			      addr_list(r->addrs, r->n), "rc", rc));
	pthread_mutex_lock(&e->mu);
	if (rc) {
		e->st.apply_failed++;
	} else {
		memcpy(e->cur, r->addrs, r->n * sizeof(r->addrs[0]));
		e->n_cur = r->n;
		e->synced = true;
		e->n_slice = r->n - r->slice_from;
		memcpy(e->slice, r->addrs + r->slice_from, e->n_slice * sizeof(r->addrs[0]));
	}
	pthread_mutex_unlock(&e->mu);
out:
	free(r);
}

static void *refresh_main(void *arg)
{
	struct mg_endpoints *e = arg;

	while (!e->stop) {
		mg_endpoints_refresh(e);
		for (unsigned t = 0; t < e->interval_s * 10 && !e->stop; t++) {
			struct timespec ts = {0, 100 * 1000000L};

			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

int mg_endpoints_start(struct mg_endpoints *e)
{
	int rc = pthread_create(&e->thread, NULL, refresh_main, e);

	if (rc)
		return -rc;
	e->started = true;
	return 0;
}

void mg_endpoints_free(struct mg_endpoints *e)
{
	if (!e)
		return;
	if (e->started) {
		e->stop = true;
		pthread_join(e->thread, NULL);
	}
	pthread_mutex_destroy(&e->mu);
	free(e);
}

bool mg_endpoints_synced(struct mg_endpoints *e)
{
	bool s;

	pthread_mutex_lock(&e->mu);
	s = e->synced;
	pthread_mutex_unlock(&e->mu);
	return s;
}

void mg_endpoints_get_stats(struct mg_endpoints *e, struct mg_endpoints_stats *st)
{
	pthread_mutex_lock(&e->mu);
	*st = e->st;
	st->n_current = e->n_cur;
	pthread_mutex_unlock(&e->mu);
}

/* ---- metrics ---- */

static void collect_metrics(void *data)
{
	struct mg_endpoints *e = data;
	static const char *const reasons[] = {"failed", "empty", "overflow", "apply_failed",
					      "no_slice"};
	struct mg_endpoints_stats st;
	uint64_t kept[5];

	mg_endpoints_get_stats(e, &st);
	kept[0] = st.fetches_failed;
	kept[1] = st.fetches_empty;
	kept[2] = st.overflows;
	kept[3] = st.apply_failed;
	kept[4] = st.slices_missing;
	mg_metrics_set(mg_metrics_with(e->m_current, NULL), (int64_t)st.n_current);
	for (size_t i = 0; i < 5; i++)
		mg_metrics_set(mg_metrics_with(e->m_kept, &reasons[i]), (int64_t)kept[i]);
	mg_metrics_set(mg_metrics_with(e->m_rejected, NULL), (int64_t)st.rejected_slices);
}

int mg_endpoints_register_metrics(struct mg_endpoints *e, struct mg_metrics *m)
{
	static const char *const reason[] = {"reason"};

	if (e->m_current)
		return -EEXIST;
	e->m_current =
		mg_metrics_add(m, MG_METRICS_GAUGE, "mcpgate_api_endpoints",
			       "Addresses in api_endpoints (the last good set).", NULL, 0, NULL, 0);
	e->m_kept = mg_metrics_add(m, MG_METRICS_COUNTER, "mcpgate_endpoints_fetches_kept_total",
				   "Endpoint fetches that kept the last good set (no_slice: its "
				   "EndpointSlice addresses), by why.",
				   reason, 1, NULL, 0);
	e->m_rejected =
		mg_metrics_add(m, MG_METRICS_COUNTER, "mcpgate_endpointslices_rejected_total",
			       "EndpointSlices labelled for the kubernetes Service but not "
			       "written by the API server, summed over fetches.",
			       NULL, 0, NULL, 0);
	if (!e->m_current || !e->m_kept || !e->m_rejected)
		return -ENOMEM;
	return mg_metrics_on_collect(m, collect_metrics, e);
}
