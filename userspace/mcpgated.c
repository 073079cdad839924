/*
 * mcpgated: the node daemon. Wires the modules together:
 *
 *   config -> loader (attach/reuse) -> proxy address on the node
 *   pods (cgroup tree + pod watch) -> intercept map
 *   endpoints thread (Service + EndpointSlice + configured) -> api_endpoints
 *   proxy listeners + admin listener on one event loop
 *
 * Exit status 2 with one line on stderr for a bad configuration or
 * environment; SIGHUP reloads the selector (--select-labels/-namespaces);
 * SIGTERM/SIGINT stop it cleanly, leaving interception in
 * place (only `mcpgatectl uninstall` removes it).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "mcpgate/addr.h"
#include "mcpgate/admin.h"
#include "mcpgate/config.h"
#include "mcpgate/creds.h"
#include "mcpgate/endpoints.h"
#include "mcpgate/kube.h"
#include "mcpgate/loader.h"
#include "mcpgate/log.h"
#include "mcpgate/loop.h"
#include "mcpgate/mask.h"
#include "mcpgate/metrics.h"
#include "mcpgate/netaddr.h"
#include "mcpgate/pods.h"
#include "mcpgate/proxy.h"
#include "mcpgate/sacheck.h"
#include "mcpgate/tls.h"

struct daemon_metrics;

struct daemon {
	struct mg_config cfg;
	struct mg_loader *loader;
	struct mg_loop *loop;
	struct mg_pods *pods;
	struct mg_kube *kube;
	struct mg_proxy *proxy;
	struct mg_admin *admin;
	int argc; /* for a SIGHUP reload */
	char **argv;
	struct mg_endpoints *endpoints;
	struct mg_sacheck *sacheck; /* NULL with --sa-check-interval 0 */
	volatile bool stop;
	/* What api_endpoints holds, for the leaf's SANs: written at startup,
	 * then only by the endpoints thread (apply_endpoints). */
	size_t n_endpoints;
	struct mg_abi_addr ep[MG_ENDPOINTS_MAX];
	struct mg_creds *creds;
	struct mg_mask_cfg mask_cfg;
	struct mg_tls_ca *ca;
	struct mg_tls_server *tls;
	SSL_CTX *client_ctx;
	/* cutting newly selected pods' open connections (atomics) */
	uint64_t sockets_cut, cut_unsupported, cut_failed;
	struct mg_metrics *metrics; /* what /metrics renders */
	struct daemon_metrics *dm;
	/* set up by main's steps */
	struct mg_pods_selector selector;
	struct mg_abi_addr proxy4, proxy6; /* port 0: none */
	sigset_t sigmask;
	int sfd;
};

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static int die(const char *fmt, ...)
{
	va_list ap;

	fputs("mcpgated: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stdout);
	/* _exit: worker threads may be running; no destructors under them. */
	_exit(2);
}

/* ---- pods -> intercept ---- */

static int set_pod_state(void *data, uint64_t id, const struct mg_abi_pod *v)
{
	struct daemon *d = data;
	int rc = v ? mg_loader_set_pod(d->loader, id, v) : mg_loader_del_pod(d->loader, id);

	if (rc)
		mg_log_json("error",
			    json_pack("{s:s,s:I,s:i,s:i}", "event", "intercept_write_failed",
				      "pod_cgroup_id", (json_int_t)id, "state",
				      v ? (int)v->state : -1, "rc", rc));
	return rc;
}

/* A pod just became selected: cut the API connections it opened before,
 * so a long-lived client keeps no unmediated connection. Where the kernel
 * offers no way to, say so once per pod and count it. */
static void cut_pod_sockets(void *data, uint64_t id, const char *dir,
			    const struct mg_pod_ident *pod)
{
	struct daemon *d = data;
	int rc = mg_loader_destroy_pod_sockets(d->loader, id, dir);
	json_t *j = json_pack("{s:s,s:I,s:s,s:s,s:s}", "event", "pod_sockets_cut", "pod_cgroup_id",
			      (json_int_t)id, "namespace", pod->namespace, "name", pod->name, "uid",
			      pod->uid);

	if (rc >= 0) {
		__atomic_add_fetch(&d->sockets_cut, (uint64_t)rc, __ATOMIC_RELAXED);
		json_object_set_new(j, "sockets", json_integer(rc));
		mg_log_json("info", j);
		return;
	}
	__atomic_add_fetch(rc == -EOPNOTSUPP ? &d->cut_unsupported : &d->cut_failed, 1,
			   __ATOMIC_RELAXED);
	json_object_set_new(j, "error",
			    json_string(rc == -EOPNOTSUPP
						? "this kernel offers neither bpf_sock_destroy nor "
						  "SOCK_DESTROY: connections opened before the pod "
						  "was selected stay open until they close"
						: strerror(-rc)));
	mg_log_json(rc == -EOPNOTSUPP ? "warn" : "error", j);
}

/* ---- TLS and API endpoints ---- */

/* The leaf's IP SANs: the --tls-san IPs, then every address of <a>[0..<n>)
 * and <b>[0..<nb>), each once (an address serves several ports). Fills
 * <ips> with pointers into <bufs> or the config; returns the count. */
static size_t leaf_ips(struct daemon *d, const struct mg_abi_addr *a, size_t n,
		       const struct mg_abi_addr *b, size_t nb, const char **ips, char (*bufs)[64])
{
	size_t ni = 0, nbuf = 0;

	for (size_t i = 0; i < d->cfg.n_tls_sans; i++)
		if (mg_tls_is_ip_literal(d->cfg.tls_sans[i]))
			ips[ni++] = d->cfg.tls_sans[i];
	for (size_t i = 0; i < n + nb; i++) {
		const char *ip =
			mg_addr_fmt_ip(i < n ? &a[i] : &b[i - n], bufs[nbuf], sizeof(bufs[0]));
		bool dup = false;

		for (size_t j = 0; j < ni && !dup; j++)
			dup = !strcmp(ips[j], ip);
		if (!dup) {
			ips[ni++] = ip;
			nbuf++;
		}
	}
	return ni;
}

/* Fills d->ep with the configured addresses and those the pinned map holds
 * (a restarted daemon's pods are redirected for them already). Returns the
 * count. */
static size_t initial_endpoints(struct daemon *d)
{
	struct mg_abi_addr pinned[MG_ENDPOINTS_MAX];
	ssize_t np = mg_loader_list_endpoints(d->loader, pinned, MG_ENDPOINTS_MAX);
	size_t n = 0;

	for (size_t i = 0; i < d->cfg.n_endpoints; i++)
		d->ep[n++] = d->cfg.endpoints[i];
	for (ssize_t i = 0; i < np && n < MG_ENDPOINTS_MAX; i++) {
		bool dup = false;

		for (size_t j = 0; j < n && !dup; j++)
			dup = !memcmp(&d->ep[j], &pinned[i], sizeof(pinned[i]));
		if (!dup)
			d->ep[n++] = pinned[i];
	}
	return n;
}

/* Builds the downstream TLS state for the API server's names and the
 * addresses a pod may dial now (d->ep: configured, and what the pinned map
 * holds) plus --tls-san. Returns NULL with <err> filled. */
static struct mg_tls_server *build_tls(struct daemon *d, struct mg_tls_err *err)
{
	static const char *ips[2 * MG_ENDPOINTS_MAX + MG_CONFIG_MAX_SANS];
	static char bufs[2 * MG_ENDPOINTS_MAX][64];
	const char *dns[8 + MG_CONFIG_MAX_SANS];
	struct mg_tls_server_opts o = {0};
	char svc[200];
	size_t nd = 0;

	snprintf(svc, sizeof(svc), "kubernetes.default.svc.%s", d->cfg.cluster_domain);
	dns[nd++] = "kubernetes";
	dns[nd++] = "kubernetes.default";
	dns[nd++] = "kubernetes.default.svc";
	dns[nd++] = svc;
	for (size_t i = 0; i < d->cfg.n_tls_sans; i++)
		if (!mg_tls_is_ip_literal(d->cfg.tls_sans[i]))
			dns[nd++] = d->cfg.tls_sans[i];
	o.dns_names = dns;
	o.n_dns = nd;
	o.ips = ips;
	o.n_ips = leaf_ips(d, d->ep, d->n_endpoints, NULL, 0, ips, bufs);
	o.validity_seconds = d->cfg.leaf_validity;
	return mg_tls_server_new(d->ca, &o, err);
}

/* Reissues the leaf for the IPs of <a> and <b> (see leaf_ips). 0 / -errno,
 * logged. Runs on the endpoints thread: key generation never blocks the
 * loop, and the loop keeps serving the old leaf meanwhile. */
static int reissue_leaf(struct daemon *d, const struct mg_abi_addr *a, size_t n,
			const struct mg_abi_addr *b, size_t nb)
{
	const char **ips = calloc(2 * MG_ENDPOINTS_MAX + MG_CONFIG_MAX_SANS, sizeof(*ips));
	char(*bufs)[64] = calloc(2 * MG_ENDPOINTS_MAX, sizeof(*bufs));
	struct mg_tls_err err = {{0}};
	size_t ni;
	int rc = -ENOMEM;

	if (ips && bufs) {
		ni = leaf_ips(d, a, n, b, nb, ips, bufs);
		rc = mg_tls_server_set_ips(d->tls, ips, ni, &err);
	}
	if (rc)
		mg_log_json("error", json_pack("{s:s,s:s}", "event", "tls_leaf_failed", "error",
					       rc == -ENOMEM ? "out of memory" : err.msg));
	else
		mg_log_json("info", json_pack("{s:s,s:I}", "event", "tls_leaf_reissued", "ips",
					      (json_int_t)ni));
	free(ips);
	free(bufs);
	return rc;
}

/* The endpoints module's apply callback: a new set of API addresses.
 * Order matters. A pod whose connect is redirected to an address must meet
 * a leaf naming it, so the leaf covering old and new addresses is in place
 * before the map changes; after it, a leaf for the new set alone. If the
 * leaf cannot be issued the map is still updated (an address pods dial
 * must be redirected, whatever the certificate) and -EIO makes the module
 * retry, keeping /readyz at 503 meanwhile. */
static int apply_endpoints(void *data, const struct mg_abi_addr *addrs, size_t n)
{
	struct daemon *d = data;
	int leaf_rc, rc;

	leaf_rc = reissue_leaf(d, d->ep, d->n_endpoints, addrs, n);
	rc = mg_loader_set_endpoints(d->loader, addrs, n);
	if (rc)
		return rc;
	memcpy(d->ep, addrs, n * sizeof(*addrs));
	d->n_endpoints = n;
	if (leaf_rc || reissue_leaf(d, addrs, n, NULL, 0))
		return -EIO;
	return 0;
}

static SSL_CTX *server_ctx(void *data)
{
	struct daemon *d = data;

	return mg_tls_server_ctx(d->tls);
}

/* Once a second on the loop: renew the leaf before expiry. Open
 * connections keep their context. */
static void on_tls_timer(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct daemon *d = data;
	struct mg_tls_err err;
	int rc;

	(void)loop;
	(void)fd;
	(void)events;
	rc = mg_tls_server_maybe_renew(d->tls, time(NULL));
	if (rc > 0)
		mg_log_json("info", json_pack("{s:s}", "event", "tls_leaf_renewed"));
	else if (rc < 0) {
		mg_tls_server_last_err(d->tls, &err);
		mg_log_json("error",
			    json_pack("{s:s,s:s}", "event", "tls_renew_failed", "error", err.msg));
	}
}

/* ---- upstream credentials ---- */

/* Splits a comma-separated list into <out> (pointers into <buf>). */
static size_t split_list(char *buf, const char **out, size_t max)
{
	char *save = NULL, *t;
	size_t n = 0;

	for (t = strtok_r(buf, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
		out[n++] = t;
	return n;
}

/* Builds the configured provider, or NULL for "none" (the daemon's own
 * token file, attached by the proxy directly). Exits 2 on a bad setting. */
static struct mg_creds *build_creds(struct daemon *d)
{
	static char aud_buf[512], grp_buf[512];
	static const char *aud[16], *grp[16];
	struct mg_creds_config cc = {0};
	struct mg_config *c = &d->cfg;
	struct mg_creds *cr;
	char err[512];

	if (!strcmp(c->creds_provider, "none"))
		return NULL;
	cc.api_server = c->api_server;
	cc.api_ca_file = c->api_ca_file;
	cc.token_file = c->api_token_file;
	if (!strcmp(c->creds_provider, "eks")) {
		cc.kind = MG_CREDS_EKS;
		cc.cluster_name = c->eks_cluster;
		cc.region = c->eks_region[0] ? c->eks_region : NULL;
		cc.sts_endpoint = c->sts_endpoint[0] ? c->sts_endpoint : NULL;
		cc.sts_ca_file = c->sts_ca_file[0] ? c->sts_ca_file : NULL;
		cc.role_arn = c->role_arn[0] ? c->role_arn : NULL;
	} else if (!strcmp(c->creds_provider, "serviceaccount")) {
		cc.kind = MG_CREDS_SERVICEACCOUNT;
		cc.namespace_name = c->sa_namespace[0] ? c->sa_namespace : NULL;
		cc.service_account = c->sa_name[0] ? c->sa_name : NULL;
		snprintf(aud_buf, sizeof(aud_buf), "%s", c->sa_audiences);
		cc.audiences = aud;
		cc.n_audiences = split_list(aud_buf, aud, 16);
		cc.expiration_seconds = c->sa_expiration;
	} else {
		cc.kind = MG_CREDS_IMPERSONATE;
		cc.user = c->impersonate_user[0] ? c->impersonate_user : NULL;
		snprintf(grp_buf, sizeof(grp_buf), "%s", c->impersonate_groups);
		cc.groups = grp;
		cc.n_groups = split_list(grp_buf, grp, 16);
	}
	cr = mg_creds_new(&cc, err, sizeof(err));
	if (!cr)
		die("credentials (--creds-provider %s): %s", c->creds_provider, err);
	return cr;
}

/* ---- admin ---- */

/* The daemon's own /metrics families, in the order they are shown. */
struct daemon_metrics {
	struct mg_metrics_family *bpf_events, *connections, *refused, *upgrades, *open, *bytes,
		*intercepted, *pods, *cut, *cut_failed;
};

static struct mg_metrics_family *family(struct daemon *d, enum mg_metrics_type type,
					const char *name, const char *help, const char *label)
{
	struct mg_metrics_family *f = mg_metrics_add(d->metrics, type, name, help,
						     label ? &label : NULL, label ? 1 : 0, NULL, 0);

	if (!f)
		die("metrics: cannot register %s", name);
	return f;
}

/* Sets the series of <f> with the one label value <value> (NULL: none). */
static void put(struct mg_metrics_family *f, const char *value, uint64_t v)
{
	mg_metrics_set(mg_metrics_with(f, value ? &value : NULL), (int64_t)v);
}

static uint64_t load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Fills the daemon's families from the loader, the proxy and the pods. */
static void collect_metrics(void *data)
{
	struct daemon *d = data;
	struct daemon_metrics *m = d->dm;
	uint64_t cnt[MG_CNT_MAX] = {0};
	struct mg_proxy_stats st;
	struct mg_pods_counts pc;

	mg_loader_counters(d->loader, cnt);
	for (int i = 0; i < MG_CNT_MAX; i++)
		put(m->bpf_events, mg_loader_counter_names[i], cnt[i]);
	mg_proxy_get_stats(d->proxy, &st);
	put(m->connections, "accepted", st.accepted);
	put(m->connections, "rejected_no_origin", st.rejected_no_origin);
	put(m->connections, "rejected_unknown_pod", st.rejected_unknown_pod);
	put(m->connections, "upstream_failed", st.upstream_failed);
	put(m->connections, "tls_failed", st.tls_failed);
	put(m->refused, "mask_failed", st.mask_failed);
	put(m->refused, "no_credential", st.creds_failed);
	put(m->refused, "bad_request", st.rejected_requests);
	put(m->refused, "token_review", st.review_failed);
	put(m->upgrades, NULL, st.upgrades);
	put(m->open, NULL, st.active);
	put(m->bytes, "up", st.bytes_up);
	put(m->bytes, "down", st.bytes_down);
	put(m->intercepted, NULL, mg_pods_intercepted(d->pods));
	mg_pods_counts(d->pods, &pc);
	put(m->pods, "selected", pc.selected);
	put(m->pods, "pending", pc.pending);
	put(m->pods, "pass", pc.pass);
	put(m->cut, NULL, load(&d->sockets_cut));
	put(m->cut_failed, "unsupported", load(&d->cut_unsupported));
	put(m->cut_failed, "error", load(&d->cut_failed));
}

/* The /metrics registry: the daemon's families and those the endpoint,
 * ServiceAccount-check and proxy modules register. */
static void register_metrics(struct daemon *d)
{
	static struct daemon_metrics dm;
	struct daemon_metrics *m = &dm;
	int rc;

	d->dm = m;
	d->metrics = mg_metrics_new();
	if (!d->metrics)
		die("out of memory");
	m->bpf_events = family(d, MG_METRICS_COUNTER, "mcpgate_bpf_events_total",
			       "Events counted by the eBPF programs.", "event");
	m->connections = family(d, MG_METRICS_COUNTER, "mcpgate_connections_total",
				"Connections accepted on the proxy port.", "result");
	m->refused = family(d, MG_METRICS_COUNTER, "mcpgate_refused_total",
			    "Requests or responses mcpgate stopped, by why.", "reason");
	m->upgrades = family(d, MG_METRICS_COUNTER, "mcpgate_upgrades_total",
			     "Exec/attach/port-forward tunnels opened.", NULL);
	m->open = family(d, MG_METRICS_GAUGE, "mcpgate_open_connections", "Connections open now.",
			 NULL);
	m->bytes = family(d, MG_METRICS_COUNTER, "mcpgate_relayed_bytes_total",
			  "Bytes relayed, by direction.", "direction");
	m->intercepted = family(d, MG_METRICS_GAUGE, "mcpgate_intercepted_pods",
				"Pods selected (API connects go to the proxy).", NULL);
	if ((rc = mg_endpoints_register_metrics(d->endpoints, d->metrics)))
		die("metrics: endpoints: %s", strerror(-rc));
	m->pods = family(d, MG_METRICS_GAUGE, "mcpgate_pods",
			 "Pod cgroups in the intercept map, by state.", "state");
	m->cut = family(d, MG_METRICS_COUNTER, "mcpgate_pod_sockets_cut_total",
			"Open API connections cut when their pod became selected.", NULL);
	m->cut_failed = family(d, MG_METRICS_COUNTER, "mcpgate_pod_sockets_cut_failed_total",
			       "Newly selected pods whose open connections could not be cut, "
			       "by why.",
			       "reason");
	if (d->sacheck && (rc = mg_sacheck_register_metrics(d->sacheck, d->metrics)))
		die("metrics: ServiceAccount check: %s", strerror(-rc));
	if ((rc = mg_metrics_on_collect(d->metrics, collect_metrics, d)) ||
	    (rc = mg_proxy_register_metrics(d->proxy, d->metrics)))
		die("metrics: %s", strerror(-rc));
}

static void on_admin(void *data, const char *path, struct mg_admin_resp *r)
{
	struct daemon *d = data;

	if (!strcmp(path, "/healthz")) {
		r->status = 200;
		r->body = strdup("ok\n");
	} else if (!strcmp(path, "/readyz")) {
		bool attached = mg_loader_attached(d->loader), synced = mg_pods_synced(d->pods),
		     ep = mg_endpoints_synced(d->endpoints);

		/* "api endpoints synced" means the set from the API is in the
		 * map AND the leaf names every address in it. */
		r->status = attached && synced && ep ? 200 : 503;
		if (asprintf(&r->body,
			     "programs attached: %s\npod watch synced: %s\n"
			     "api endpoints synced: %s\n",
			     attached ? "yes" : "no", synced ? "yes" : "no", ep ? "yes" : "no") < 0)
			r->body = NULL;
	} else if (!strcmp(path, "/metrics")) {
		r->status = 200;
		r->content_type = "text/plain; version=0.0.4; charset=utf-8";
		r->body = mg_metrics_render_text(d->metrics);
	}
}

/* ---- signals ---- */

/* SIGHUP: the admin changed the selector (flags or --config file). Only the
 * selector is taken from the new configuration; anything else needs a
 * restart. A bad configuration leaves everything as it was. */
static void reload_selector(struct daemon *d)
{
	static struct mg_config c;
	struct mg_pods_selector sel;
	char err[512];
	int rc;

	rc = mg_config_load(&c, d->argc, d->argv, err, sizeof(err));
	if (!rc)
		rc = mg_pods_selector_parse(&sel, c.select_labels, c.select_namespaces, err,
					    sizeof(err));
	if (rc) {
		mg_log_json("error",
			    json_pack("{s:s,s:s}", "event", "reload_failed", "error", err));
		return;
	}
	rc = mg_pods_set_selector(d->pods, &sel);
	mg_log_json("info", json_pack("{s:s,s:s,s:s,s:I,s:b}", "event", "selector", "labels",
				      c.select_labels, "namespaces", c.select_namespaces, "sel_gen",
				      (json_int_t)mg_pods_gen(d->pods), "changed", rc == 1));
}

static void on_signal(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct signalfd_siginfo si;
	struct daemon *d = data;

	(void)events;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo == SIGHUP) {
		reload_selector(d);
		return;
	}
	mg_log_json("info",
		    json_pack("{s:s,s:i}", "event", "stopping", "signal", (int)si.ssi_signo));
	d->stop = true;
	mg_loop_stop(loop);
}

static void on_inotify(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	(void)loop;
	(void)fd;
	(void)events;
	mg_pods_on_inotify(data);
}

/* ---- kernel events ---- */

/* Logs one refusal or drop of the kernel half with the pod it came from
 * (namespace/name/uid when the cgroup is known; a pending or unknown pod
 * may have none yet). */
static void log_kernel_event(void *data, const struct mg_abi_event *ev)
{
	struct daemon *d = data;
	struct mg_pod_ident id = {0};
	char dst[64];
	json_t *j;

	j = json_pack("{s:s,s:I,s:I,s:s}", "event",
		      ev->type == MG_EV_EGRESS_DROPPED ? "egress_dropped" : "refused_unknown",
		      "pod_cgroup_id", (json_int_t)ev->pod_cgroup_id, "cgroup_id",
		      (json_int_t)ev->cgroup_id, "dst", mg_addr_fmt(&ev->dst, dst, sizeof(dst)));
	if (ev->tgid)
		json_object_set_new(j, "pid", json_integer(ev->tgid));
	if (ev->pod_cgroup_id &&
	    mg_pods_lookup(d->pods, ev->pod_cgroup_id, ev->cgroup_id, &id) == 0)
		json_object_set_new(j, "pod",
				    json_pack("{s:s,s:s,s:s,s:b}", "namespace", id.namespace,
					      "name", id.name, "uid", id.uid, "known", id.known));
	mg_pod_ident_release(&id);
	mg_log_json("warn", j);
}

static void on_kernel_events(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct daemon *d = data;

	(void)loop;
	(void)fd;
	(void)events;
	mg_loader_read_events(d->loader, log_kernel_event, d);
}

/* ---- setup ---- */

/* Every client connection costs two fds (its own and its upstream's): the
 * soft RLIMIT_NOFILE goes up to the hard one (as Go and nginx do), and a
 * limit still short of --max-connections is said once. Running out anyway
 * only pauses the listeners (the proxy backs off on EMFILE). */
static void raise_nofile(const struct mg_config *c)
{
	rlim_t want = 2 * (rlim_t)c->max_connections + 256;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < want)
		mg_log("warn", "RLIMIT_NOFILE %llu is below 2 x --max-connections + 256 = %llu",
		       (unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

/* Puts the proxy addresses on the node: the dummy interface if the kernel
 * has the link type, else the fallback interface. */
static void setup_addresses(struct daemon *d)
{
	const char *ifname = d->cfg.proxy_interface;
	int rc;

	if (!d->cfg.manage_address)
		return;
	rc = mg_netaddr_ensure_link(ifname, true);
	if (rc == -EOPNOTSUPP) {
		mg_log("info", "kernel has no dummy links; putting the proxy address on %s",
		       d->cfg.fallback_interface);
		ifname = d->cfg.fallback_interface;
		rc = mg_netaddr_ensure_link(ifname, false);
	}
	if (rc)
		die("interface %s: %s", ifname, strerror(-rc));
	if (d->cfg.proxy_addr4[0] && (rc = mg_netaddr_ensure_addr(ifname, d->cfg.proxy_addr4)))
		die("adding %s to %s: %s", d->cfg.proxy_addr4, ifname, strerror(-rc));
	if (d->cfg.proxy_addr6[0] && (rc = mg_netaddr_ensure_addr(ifname, d->cfg.proxy_addr6)))
		die("adding %s to %s: %s", d->cfg.proxy_addr6, ifname, strerror(-rc));
}

/* ---- main, step by step: each step dies with one line on failure ---- */

/* Options, the pod selector and the masking rules. Returns 1 when --help
 * was printed. */
static int load_config(struct daemon *d, int argc, char **argv)
{
	char err[512];
	int rc;

	d->argc = argc;
	d->argv = argv;
	rc = mg_config_load(&d->cfg, argc, argv, err, sizeof(err));
	if (rc == 1)
		return 1;
	if (rc)
		die("%s", err);
	if (mg_pods_selector_parse(&d->selector, d->cfg.select_labels, d->cfg.select_namespaces,
				   err, sizeof(err)))
		die("%s", err);
	mg_mask_cfg_default(&d->mask_cfg);
	if (d->cfg.mask_config[0]) {
		struct mg_mask_err merr = {0};

		if (mg_mask_cfg_load(&d->mask_cfg, d->cfg.mask_config, &merr))
			die("--mask-config %s: %s", d->cfg.mask_config,
			    merr.reason ? merr.reason : strerror(errno));
	}
	return 0;
}

/* Blocked before any thread starts, so every thread inherits the mask and
 * the signals reach the loop's signalfd only: a SIGHUP taken by a worker
 * thread would kill the process (its default action). */
static void block_signals(struct daemon *d)
{
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&d->sigmask);
	sigaddset(&d->sigmask, SIGTERM);
	sigaddset(&d->sigmask, SIGINT);
	sigaddset(&d->sigmask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &d->sigmask, NULL);
}

/* Loads (or reuses) and attaches the eBPF half. */
static void open_loader(struct daemon *d)
{
	struct mg_loader_opts lo = {0};
	struct mg_loader_err lerr;

	lo.cgroup_path = d->cfg.cgroup_path;
	lo.pin_dir = d->cfg.pin_dir;
	lo.btf_path = d->cfg.btf_path;
	if (d->cfg.proxy_addr4[0])
		mg_addr_parse_ip(d->cfg.proxy_addr4, d->cfg.proxy_port, &d->proxy4);
	if (d->cfg.proxy_addr6[0])
		mg_addr_parse_ip(d->cfg.proxy_addr6, d->cfg.proxy_port, &d->proxy6);
	lo.settings.proxy4 = d->proxy4;
	lo.settings.proxy6 = d->proxy6;
	if (!strcmp(d->cfg.unknown_pods, "refuse"))
		lo.settings.flags |= MG_SET_REFUSE_UNKNOWN;
	if (mg_loader_open(&d->loader, &lo, &lerr))
		die("%s", lerr.msg);
	mg_log_json("info", json_pack("{s:s,s:s,s:s,s:b}", "event", "attached", "cgroup",
				      d->cfg.cgroup_path, "pin_dir", d->cfg.pin_dir, "reused",
				      mg_loader_reused(d->loader)));
}

/* The mcpgate CA, the upstream TLS context, and the proxy's certificate
 * for the initial API endpoints. */
static void setup_tls(struct daemon *d)
{
	struct mg_tls_err terr;

	if (mg_tls_ca_load_or_create(&d->ca, d->cfg.ca_cert, d->cfg.ca_key, "mcpgate CA", &terr))
		die("mcpgate CA: %s", terr.msg);
	d->client_ctx = mg_tls_client_ctx_new(d->cfg.api_ca_file, &terr);
	if (!d->client_ctx)
		die("upstream TLS (--api-ca-file %s): %s", d->cfg.api_ca_file, terr.msg);
	d->n_endpoints = initial_endpoints(d);
	d->tls = build_tls(d, &terr);
	if (!d->tls)
		die("proxy certificate: %s", terr.msg);
}

/* Initial API endpoints, before any API answer: the configured ones and
 * what a predecessor left (never fewer: a dropped address would let pods
 * around the proxy until the first fetch). */
static void set_initial_endpoints(struct daemon *d)
{
	int rc;

	if (d->n_endpoints && (rc = mg_loader_set_endpoints(d->loader, d->ep, d->n_endpoints)))
		die("api_endpoints map: %s", strerror(-rc));
}

/* The pods module, seeded with the intercept entries a predecessor left,
 * then a scan of the cgroup tree; its inotify and the kernel's event ring
 * go on the loop. */
static void start_pods(struct daemon *d)
{
	static uint64_t preset[MG_INTERCEPT_MAX];
	static struct mg_abi_pod preset_v[MG_INTERCEPT_MAX];
	struct mg_pods_opts po = {0};
	ssize_t npreset;
	int rc;

	po.selector = d->selector;
	po.cgroup_root = d->cfg.cgroup_path;
	po.node_name = d->cfg.node_name;
	po.set_state = set_pod_state;
	po.on_selected = cut_pod_sockets;
	po.async_cuts = true;
	po.cb_data = d;
	if ((rc = mg_pods_new(&d->pods, &po)))
		die("pods: %s", strerror(-rc));
	npreset = mg_loader_list_pods(d->loader, preset, preset_v, MG_INTERCEPT_MAX);
	/* Every entry: the pods module keeps or releases those of pod cgroups
	 * and leaves alone an entry of a cgroup that is not a pod's (the
	 * loader's PASS entry for the daemon's own cgroup). */
	if (npreset > 0)
		mg_pods_preset(d->pods, preset, preset_v, (size_t)npreset);
	mg_log_json("info", json_pack("{s:s,s:s,s:s,s:I,s:I}", "event", "selector", "labels",
				      d->cfg.select_labels, "namespaces", d->cfg.select_namespaces,
				      "sel_gen", (json_int_t)mg_pods_gen(d->pods), "preset",
				      (json_int_t)(npreset > 0 ? npreset : 0)));
	mg_pods_scan(d->pods);
	mg_loop_add_fd(d->loop, mg_pods_inotify_fd(d->pods), EPOLLIN, on_inotify, d->pods);
	if (mg_loader_events_fd(d->loader) >= 0)
		mg_loop_add_fd(d->loop, mg_loader_events_fd(d->loader), EPOLLIN, on_kernel_events,
			       d);
}

/* The API client and the threads that use it: the pod watch, endpoint
 * discovery, and (unless off) the ServiceAccount check. */
static void start_api_threads(struct daemon *d)
{
	struct mg_kube_opts ko = {0};
	struct mg_endpoints_opts eo = {0};
	int rc;

	ko.server = d->cfg.api_server;
	ko.ca_file = d->cfg.api_ca_file;
	ko.token_file = d->cfg.api_token_file;
	d->kube = mg_kube_new(&ko);
	if (!d->kube)
		die("out of memory");
	if ((rc = mg_pods_watch_start(d->pods, d->kube)))
		die("pod watch thread: %s", strerror(-rc));

	eo.kube = d->kube;
	eo.extra = d->cfg.endpoints;
	eo.n_extra = d->cfg.n_endpoints;
	eo.initial = d->ep;
	eo.n_initial = d->n_endpoints;
	eo.interval_s = d->cfg.endpoints_interval;
	eo.apply = apply_endpoints;
	eo.apply_data = d;
	if ((rc = mg_endpoints_new(&d->endpoints, &eo)) || (rc = mg_endpoints_start(d->endpoints)))
		die("endpoints thread: %s", strerror(-rc));

	if (d->cfg.sa_check_interval) {
		struct mg_sacheck_opts so = {0};

		so.kube = d->kube;
		so.pods = d->pods;
		so.interval_s = d->cfg.sa_check_interval;
		if ((rc = mg_sacheck_new(&d->sacheck, &so)) || (rc = mg_sacheck_start(d->sacheck)))
			die("ServiceAccount check thread: %s", strerror(-rc));
	}
}

/* The proxy and its listeners on the proxy addresses. */
static void start_proxy(struct daemon *d)
{
	struct mg_proxy_opts pxo = {0};
	int rc;

	pxo.loop = d->loop;
	pxo.loader = d->loader;
	pxo.pods = d->pods;
	pxo.connect_timeout_ms = d->cfg.upstream_connect_timeout_ms;
	pxo.header_timeout_ms = d->cfg.header_timeout_ms;
	pxo.idle_timeout_ms = d->cfg.idle_timeout_ms;
	pxo.server_ctx = server_ctx;
	pxo.server_ctx_data = d;
	pxo.client_ctx = d->client_ctx;
	pxo.token_file = d->cfg.api_token_file;
	d->creds = build_creds(d);
	pxo.creds = d->creds;
	pxo.mask_cfg = &d->mask_cfg;
	pxo.review_kube = d->cfg.token_review ? d->kube : NULL;
	pxo.max_conns = d->cfg.max_connections;
	pxo.max_conns_per_pod = d->cfg.max_connections_per_pod;
	pxo.write_stall_ms = d->cfg.write_stall_timeout_ms;
	pxo.worker_threads = d->cfg.worker_threads;
	pxo.worker_queue = d->cfg.worker_queue;
	pxo.worker_per_pod = d->cfg.worker_jobs_per_pod;
	raise_nofile(&d->cfg);
	if ((rc = mg_proxy_new(&d->proxy, &pxo)))
		die("proxy: %s", strerror(-rc));
	if (d->cfg.proxy_addr4[0] && (rc = mg_proxy_listen(d->proxy, &d->proxy4)))
		die("listen %s:%u: %s", d->cfg.proxy_addr4, d->cfg.proxy_port, strerror(-rc));
	if (d->cfg.proxy_addr6[0] && (rc = mg_proxy_listen(d->proxy, &d->proxy6)))
		die("listen [%s]:%u: %s", d->cfg.proxy_addr6, d->cfg.proxy_port, strerror(-rc));
}

/* The certificate renewal timer, the metrics registry and the admin
 * listener. */
static void start_admin(struct daemon *d)
{
	struct mg_abi_addr admin_addr;
	int rc;

	if ((rc = mg_loop_add_timer(d->loop, 1000, on_tls_timer, d)) < 0)
		die("timer: %s", strerror(-rc));
	register_metrics(d);
	mg_addr_parse_hostport(d->cfg.admin_listen, &admin_addr);
	if ((rc = mg_admin_new(&d->admin, d->loop, &admin_addr, on_admin, d)))
		die("admin listener %s: %s", d->cfg.admin_listen, strerror(-rc));
}

/* SIGTERM/SIGINT stop the loop, SIGHUP reloads the selector. */
static void watch_signals(struct daemon *d)
{
	d->sfd = signalfd(-1, &d->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d->sfd < 0 || mg_loop_add_fd(d->loop, d->sfd, EPOLLIN, on_signal, d))
		die("signalfd: %s", strerror(errno));
}

static int run(struct daemon *d)
{
	mg_log_json("info", json_pack("{s:s,s:s,s:s,s:i,s:s,s:s}", "event", "ready", "node",
				      d->cfg.node_name, "proxy4", d->cfg.proxy_addr4, "port",
				      (int)d->cfg.proxy_port, "proxy6", d->cfg.proxy_addr6, "admin",
				      d->cfg.admin_listen));
	return mg_loop_run(d->loop);
}

/* Stops the threads first (they call into the others), then frees in the
 * reverse order of creation. Interception stays in place (pinned). */
static void teardown(struct daemon *d)
{
	d->stop = true;
	mg_endpoints_free(d->endpoints);
	mg_sacheck_free(d->sacheck);
	mg_admin_free(d->admin);
	mg_proxy_free(d->proxy);
	mg_creds_free(d->creds);
	mg_pods_free(d->pods);
	mg_kube_free(d->kube);
	mg_loop_free(d->loop);
	mg_loader_close(d->loader);
	mg_metrics_free(d->metrics);
	mg_tls_server_free(d->tls);
	mg_tls_ca_free(d->ca);
	SSL_CTX_free(d->client_ctx);
	if (d->sfd >= 0)
		close(d->sfd);
}

int main(int argc, char **argv)
{
	static struct daemon d = {.sfd = -1};
	int rc;

	if (load_config(&d, argc, argv))
		return 0;
	block_signals(&d);
	open_loader(&d);
	setup_addresses(&d);
	setup_tls(&d);
	if ((rc = mg_loop_new(&d.loop)))
		die("event loop: %s", strerror(-rc));
	set_initial_endpoints(&d);
	start_pods(&d);
	start_api_threads(&d);
	start_proxy(&d);
	start_admin(&d);
	watch_signals(&d);
	rc = run(&d);
	teardown(&d);
	return rc ? 1 : 0;
}
