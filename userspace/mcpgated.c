/*
 * mcpgated: the node daemon. Wires the modules together:
 *
 *   config -> loader (attach/reuse) -> proxy address on the node
 *   pods (cgroup tree + pod watch) -> intercept map
 *   endpoints thread (Service + EndpointSlice + configured) -> api_endpoints
 *   proxy listeners + admin listener on one event loop
 *
 * Exit status 2 with one line on stderr for a bad configuration or
 * environment; SIGTERM/SIGINT stop it cleanly, leaving interception in
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

#include "mcpgate/admin.h"
#include "mcpgate/config.h"
#include "mcpgate/creds.h"
#include "mcpgate/kube.h"
#include "mcpgate/loader.h"
#include "mcpgate/log.h"
#include "mcpgate/loop.h"
#include "mcpgate/mask.h"
#include "mcpgate/metrics.h"
#include "mcpgate/netaddr.h"
#include "mcpgate/pods.h"
#include "mcpgate/proxy.h"
#include "mcpgate/tls.h"

struct daemon {
	struct mg_config cfg;
	struct mg_loader *loader;
	struct mg_loop *loop;
	struct mg_pods *pods;
	struct mg_kube *kube;
	struct mg_proxy *proxy;
	struct mg_admin *admin;
	pthread_t ep_thread;
	bool ep_started;
	volatile bool stop;
	pthread_mutex_t ep_mu;
	bool ep_synced;		/* endpoints fetched from the API at least once */
	size_t n_endpoints;
	struct mg_abi_addr ep[MG_ENDPOINTS_MAX];	/* current api_endpoints (for SANs) */
	bool ep_changed;	/* the leaf must be reissued with new IP SANs */
	struct mg_creds *creds;
	struct mg_mask_cfg mask_cfg;
	struct mg_tls_ca *ca;
	struct mg_tls_server *tls;
	SSL_CTX *client_ctx;
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

static int set_intercept(void *data, uint64_t id, bool on)
{
	struct daemon *d = data;
	struct mg_abi_pod v = { .state = MG_POD_SELECTED };
	int rc = on ? mg_loader_set_pod(d->loader, id, &v) : mg_loader_del_pod(d->loader, id);

	mg_log_json(rc ? "error" : "info",
		    json_pack("{s:s,s:I,s:b,s:i}", "event", on ? "intercept" : "release",
			      "pod_cgroup_id", (json_int_t)id, "on", on, "rc", rc));
	return rc;
}

/* ---- API endpoints ---- */

/* Adds every address of <addrs> (JSON array of strings) x <port> to <out>. */
static void add_addrs(json_t *addrs, unsigned port, struct mg_abi_addr *out, size_t *n)
{
	size_t i;
	json_t *a;

	json_array_foreach(addrs, i, a) {
		const char *s = json_string_value(a);

		if (s && *n < MG_ENDPOINTS_MAX && !mg_config_parse_addr(s, port, &out[*n]))
			(*n)++;
	}
}

/* Fetches the kubernetes Service's ClusterIPs and the default/kubernetes
 * EndpointSlices. Returns 0 when both answered. */
static int fetch_endpoints(struct daemon *d, struct mg_abi_addr *out, size_t *n)
{
	json_t *svc = NULL, *slices = NULL, *ports, *p, *items, *it, *eps, *ep;
	char err[512];
	long status;
	size_t i, j, k;
	int rc;

	rc = mg_kube_get_json(d->kube, "/api/v1/namespaces/default/services/kubernetes", &svc,
			      &status, err, sizeof(err));
	if (rc)
		goto out;
	ports = json_object_get(json_object_get(svc, "spec"), "ports");
	json_array_foreach(ports, i, p) {
		unsigned port = (unsigned)json_integer_value(json_object_get(p, "port"));
		json_t *ips = json_object_get(json_object_get(svc, "spec"), "clusterIPs");

		if (json_is_array(ips))
			add_addrs(ips, port, out, n);
		else {
			json_t *one = json_pack("[O]", json_object_get(json_object_get(svc, "spec"),
								      "clusterIP"));

			add_addrs(one, port, out, n);
			json_decref(one);
		}
	}
	rc = mg_kube_get_json(d->kube,
			      "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
			      "?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes",
			      &slices, &status, err, sizeof(err));
	if (rc)
		goto out;
	items = json_object_get(slices, "items");
	json_array_foreach(items, i, it) {
		ports = json_object_get(it, "ports");
		eps = json_object_get(it, "endpoints");
		json_array_foreach(ports, j, p) {
			unsigned port = (unsigned)json_integer_value(json_object_get(p, "port"));

			json_array_foreach(eps, k, ep)
				add_addrs(json_object_get(ep, "addresses"), port, out, n);
		}
	}
out:
	if (rc)
		mg_log_json("warn", json_pack("{s:s,s:s}", "event", "endpoints_fetch_failed",
					      "error", err));
	json_decref(svc);
	json_decref(slices);
	return rc;
}

/* Keeps api_endpoints = configured + Service + EndpointSlice. On an API
 * error the last good set stays: shrinking the set on a failed fetch would
 * open a way around the proxy. */
static void *endpoints_main(void *arg)
{
	struct daemon *d = arg;
	struct mg_abi_addr cur[MG_ENDPOINTS_MAX], fetched[MG_ENDPOINTS_MAX];
	size_t ncur = 0;

	while (!d->stop) {
		size_t n = 0;

		if (fetch_endpoints(d, fetched, &n) == 0) {
			struct mg_abi_addr all[MG_ENDPOINTS_MAX];
			size_t na = 0;

			for (size_t i = 0; i < d->cfg.n_endpoints && na < MG_ENDPOINTS_MAX; i++)
				all[na++] = d->cfg.endpoints[i];
			for (size_t i = 0; i < n && na < MG_ENDPOINTS_MAX; i++) {
				bool dup = false;

				for (size_t j = 0; j < na && !dup; j++)
					dup = !memcmp(&all[j], &fetched[i], sizeof(all[j]));
				if (!dup)
					all[na++] = fetched[i];
			}
			if (na != ncur || memcmp(all, cur, na * sizeof(all[0]))) {
				json_t *list = json_array();
				char buf[64];
				int rc = mg_loader_set_endpoints(d->loader, all, na);

				for (size_t i = 0; i < na; i++)
					json_array_append_new(
						list, json_string(mg_config_fmt_addr(
							      &all[i], buf, sizeof(buf))));
				mg_log_json(rc ? "error" : "info",
					    json_pack("{s:s,s:o,s:i}", "event", "api_endpoints",
						      "endpoints", list, "rc", rc));
				if (!rc) {
					memcpy(cur, all, na * sizeof(all[0]));
					ncur = na;
					pthread_mutex_lock(&d->ep_mu);
					memcpy(d->ep, cur, ncur * sizeof(cur[0]));
					d->n_endpoints = ncur;
					d->ep_changed = true;
					pthread_mutex_unlock(&d->ep_mu);
				}
			}
			pthread_mutex_lock(&d->ep_mu);
			d->ep_synced = true;
			pthread_mutex_unlock(&d->ep_mu);
		}
		for (unsigned t = 0; t < d->cfg.endpoints_interval * 10 && !d->stop; t++) {
			struct timespec ts = { 0, 100 * 1000000L };

			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

/* ---- TLS ---- */

/* Builds the downstream TLS state for the API server's names and every
 * address a pod may dial (configured + discovered endpoints + --tls-san).
 * Returns NULL with <err> filled. */
static struct mg_tls_server *build_tls(struct daemon *d, struct mg_tls_err *err)
{
	const char *dns[8 + MG_CONFIG_MAX_SANS], *ips[MG_ENDPOINTS_MAX + MG_CONFIG_MAX_SANS];
	char ipbuf[MG_ENDPOINTS_MAX][64], svc[200];
	struct mg_tls_server_opts o = { 0 };
	size_t nd = 0, ni = 0, n;

	snprintf(svc, sizeof(svc), "kubernetes.default.svc.%s", d->cfg.cluster_domain);
	dns[nd++] = "kubernetes";
	dns[nd++] = "kubernetes.default";
	dns[nd++] = "kubernetes.default.svc";
	dns[nd++] = svc;
	for (size_t i = 0; i < d->cfg.n_tls_sans; i++) {
		if (mg_tls_is_ip_literal(d->cfg.tls_sans[i]))
			ips[ni++] = d->cfg.tls_sans[i];
		else
			dns[nd++] = d->cfg.tls_sans[i];
	}
	pthread_mutex_lock(&d->ep_mu);
	n = d->n_endpoints;
	for (size_t i = 0; i < n; i++) {
		char *colon;

		mg_config_fmt_addr(&d->ep[i], ipbuf[i], sizeof(ipbuf[i]));
		/* "1.2.3.4:443" / "[::1]:443" -> the bare address */
		colon = strrchr(ipbuf[i], ':');
		*colon = '\0';
		if (ipbuf[i][0] == '[') {
			memmove(ipbuf[i], ipbuf[i] + 1, strlen(ipbuf[i]));
			ipbuf[i][strlen(ipbuf[i]) - 1] = '\0';
		}
		ips[ni++] = ipbuf[i];
	}
	d->ep_changed = false;
	pthread_mutex_unlock(&d->ep_mu);
	o.dns_names = dns;
	o.n_dns = nd;
	o.ips = ips;
	o.n_ips = ni;
	o.validity_seconds = d->cfg.leaf_validity;
	return mg_tls_server_new(d->ca, &o, err);
}

static SSL_CTX *server_ctx(void *data)
{
	struct daemon *d = data;

	return mg_tls_server_ctx(d->tls);
}

/* Once a second on the loop: reissue the leaf when the endpoint addresses
 * changed, renew it before expiry. Open connections keep their context. */
static void on_tls_timer(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct daemon *d = data;
	struct mg_tls_err err;
	bool changed;
	int rc;

	(void)loop;
	(void)fd;
	(void)events;
	pthread_mutex_lock(&d->ep_mu);
	changed = d->ep_changed;
	pthread_mutex_unlock(&d->ep_mu);
	if (changed) {
		struct mg_tls_server *t = build_tls(d, &err);

		if (t) {
			mg_tls_server_free(d->tls);
			d->tls = t;
			mg_log_json("info", json_pack("{s:s}", "event", "tls_leaf_reissued"));
		} else {
			mg_log_json("error", json_pack("{s:s,s:s}", "event", "tls_leaf_failed",
						       "error", err.msg));
		}
	}
	rc = mg_tls_server_maybe_renew(d->tls, time(NULL));
	if (rc > 0)
		mg_log_json("info", json_pack("{s:s}", "event", "tls_leaf_renewed"));
	else if (rc < 0) {
		mg_tls_server_last_err(d->tls, &err);
		mg_log_json("error", json_pack("{s:s,s:s}", "event", "tls_renew_failed", "error",
					       err.msg));
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
	struct mg_creds_config cc = { 0 };
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

static char *metrics_text(struct daemon *d)
{
	uint64_t cnt[MG_CNT_MAX] = { 0 };
	struct mg_proxy_stats st;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	mg_loader_counters(d->loader, cnt);
	mg_proxy_get_stats(d->proxy, &st);
	fprintf(f, "# HELP mcpgate_bpf_events_total Events counted by the eBPF programs.\n"
		   "# TYPE mcpgate_bpf_events_total counter\n");
	for (int i = 0; i < MG_CNT_MAX; i++)
		mg_metrics_put_u64(f, "mcpgate_bpf_events_total",
				   &(struct mg_metrics_label){ "event", mg_loader_counter_names[i] }, 1,
				   cnt[i]);
	fprintf(f,
		"# HELP mcpgate_connections_total Connections accepted on the proxy port.\n"
		"# TYPE mcpgate_connections_total counter\n"
		"mcpgate_connections_total{result=\"accepted\"} %llu\n"
		"mcpgate_connections_total{result=\"rejected_no_origin\"} %llu\n"
		"mcpgate_connections_total{result=\"rejected_unknown_pod\"} %llu\n"
		"mcpgate_connections_total{result=\"upstream_failed\"} %llu\n"
		"mcpgate_connections_total{result=\"tls_failed\"} %llu\n"
		"# HELP mcpgate_refused_total Requests or responses mcpgate stopped, by why.\n"
		"# TYPE mcpgate_refused_total counter\n"
		"mcpgate_refused_total{reason=\"mask_failed\"} %llu\n"
		"mcpgate_refused_total{reason=\"no_credential\"} %llu\n"
		"mcpgate_refused_total{reason=\"bad_request\"} %llu\n"
		"mcpgate_refused_total{reason=\"token_review\"} %llu\n"
		"# HELP mcpgate_upgrades_total Exec/attach/port-forward tunnels opened.\n"
		"# TYPE mcpgate_upgrades_total counter\n"
		"mcpgate_upgrades_total %llu\n"
		"# HELP mcpgate_open_connections Connections open now.\n"
		"# TYPE mcpgate_open_connections gauge\n"
		"mcpgate_open_connections %llu\n"
		"# HELP mcpgate_relayed_bytes_total Bytes relayed, by direction.\n"
		"# TYPE mcpgate_relayed_bytes_total counter\n"
		"mcpgate_relayed_bytes_total{direction=\"up\"} %llu\n"
		"mcpgate_relayed_bytes_total{direction=\"down\"} %llu\n"
		"# HELP mcpgate_intercepted_pods Pods whose cgroup is in the intercept map.\n"
		"# TYPE mcpgate_intercepted_pods gauge\n"
		"mcpgate_intercepted_pods %zu\n",
		(unsigned long long)st.accepted, (unsigned long long)st.rejected_no_origin,
		(unsigned long long)st.rejected_unknown_pod,
		(unsigned long long)st.upstream_failed, (unsigned long long)st.tls_failed,
		(unsigned long long)st.mask_failed, (unsigned long long)st.creds_failed,
		(unsigned long long)st.rejected_requests, (unsigned long long)st.review_failed,
		(unsigned long long)st.upgrades,
		(unsigned long long)st.active,
		(unsigned long long)st.bytes_up, (unsigned long long)st.bytes_down,
		mg_pods_intercepted(d->pods));
	mg_proxy_write_metrics(d->proxy, f);
	fclose(f);
	return out;
}

static void on_admin(void *data, const char *path, struct mg_admin_resp *r)
{
	struct daemon *d = data;

	if (!strcmp(path, "/healthz")) {
		r->status = 200;
		r->body = strdup("ok\n");
	} else if (!strcmp(path, "/readyz")) {
		bool attached = mg_loader_attached(d->loader), synced = mg_pods_synced(d->pods),
		     ep;

		pthread_mutex_lock(&d->ep_mu);
		ep = d->ep_synced;
		pthread_mutex_unlock(&d->ep_mu);
		r->status = attached && synced && ep ? 200 : 503;
		if (asprintf(&r->body, "programs attached: %s\npod watch synced: %s\n"
				       "api endpoints synced: %s\n",
			     attached ? "yes" : "no", synced ? "yes" : "no", ep ? "yes" : "no") < 0)
			r->body = NULL;
	} else if (!strcmp(path, "/metrics")) {
		r->status = 200;
		r->content_type = "text/plain; version=0.0.4; charset=utf-8";
		r->body = metrics_text(d);
	}
}

/* ---- signals ---- */

static void on_signal(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct signalfd_siginfo si;
	struct daemon *d = data;

	(void)events;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	mg_log_json("info", json_pack("{s:s,s:i}", "event", "stopping", "signal",
				      (int)si.ssi_signo));
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
	struct mg_pod_ident id = { 0 };
	char dst[64];
	json_t *j;

	j = json_pack("{s:s,s:I,s:I,s:s}", "event",
		      ev->type == MG_EV_EGRESS_DROPPED ? "egress_dropped" : "refused_unknown",
		      "pod_cgroup_id", (json_int_t)ev->pod_cgroup_id, "cgroup_id",
		      (json_int_t)ev->cgroup_id, "dst", mg_config_fmt_addr(&ev->dst, dst, sizeof(dst)));
	if (ev->tgid)
		json_object_set_new(j, "pid", json_integer(ev->tgid));
	if (ev->pod_cgroup_id && mg_pods_lookup(d->pods, ev->pod_cgroup_id, ev->cgroup_id, &id) == 0)
		json_object_set_new(j, "pod",
				    json_pack("{s:s,s:s,s:s,s:b}", "namespace", id.namespace, "name",
					      id.name, "uid", id.uid, "known", id.known));
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

int main(int argc, char **argv)
{
	struct mg_loader_opts lo = { 0 };
	struct mg_pods_opts po = { 0 };
	struct mg_proxy_opts pxo = { 0 };
	struct mg_kube_opts ko = { 0 };
	struct mg_loader_err lerr;
	struct mg_abi_addr admin_addr;
	static struct daemon d;
	char err[512];
	static uint64_t preset[MG_INTERCEPT_MAX];
	static struct mg_abi_pod preset_v[MG_INTERCEPT_MAX];
	ssize_t npreset;
	sigset_t mask;
	int rc, sfd;

	rc = mg_config_load(&d.cfg, argc, argv, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc)
		die("%s", err);
	if (mg_pods_selector_parse(&po.selector, d.cfg.select_labels, d.cfg.select_namespaces,
				   err, sizeof(err)))
		die("%s", err);
	mg_mask_cfg_default(&d.mask_cfg);
	if (d.cfg.mask_config[0]) {
		struct mg_mask_err merr = { 0 };

		if (mg_mask_cfg_load(&d.mask_cfg, d.cfg.mask_config, &merr))
			die("--mask-config %s: %s", d.cfg.mask_config,
			    merr.reason ? merr.reason : strerror(errno));
	}
	signal(SIGPIPE, SIG_IGN);
	/* Blocked before any thread starts: threads inherit the mask, and a
	 * SIGTERM delivered to a thread that does not block it would kill the
	 * daemon (exit 143) instead of reaching the signalfd. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	pthread_mutex_init(&d.ep_mu, NULL);

	lo.cgroup_path = d.cfg.cgroup_path;
	lo.pin_dir = d.cfg.pin_dir;
	lo.btf_path = d.cfg.btf_path;
	if (d.cfg.proxy_addr4[0])
		mg_config_parse_addr(d.cfg.proxy_addr4, d.cfg.proxy_port, &lo.settings.proxy4);
	if (d.cfg.proxy_addr6[0])
		mg_config_parse_addr(d.cfg.proxy_addr6, d.cfg.proxy_port, &lo.settings.proxy6);
	if (!strcmp(d.cfg.unknown_pods, "refuse"))
		lo.settings.flags |= MG_SET_REFUSE_UNKNOWN;
	rc = mg_loader_open(&d.loader, &lo, &lerr);
	if (rc)
		die("%s", lerr.msg);
	mg_log_json("info", json_pack("{s:s,s:s,s:s,s:b}", "event", "attached", "cgroup",
				      d.cfg.cgroup_path, "pin_dir", d.cfg.pin_dir, "reused",
				      mg_loader_reused(d.loader)));

	setup_addresses(&d);

	{
		struct mg_tls_err terr;

		if ((rc = mg_tls_ca_load_or_create(&d.ca, d.cfg.ca_cert, d.cfg.ca_key, "mcpgate CA",
						   &terr)))
			die("mcpgate CA: %s", terr.msg);
		d.client_ctx = mg_tls_client_ctx_new(d.cfg.api_ca_file, &terr);
		if (!d.client_ctx)
			die("upstream TLS (--api-ca-file %s): %s", d.cfg.api_ca_file, terr.msg);
		for (size_t i = 0; i < d.cfg.n_endpoints; i++)
			d.ep[i] = d.cfg.endpoints[i];
		d.n_endpoints = d.cfg.n_endpoints;
		d.tls = build_tls(&d, &terr);
		if (!d.tls)
			die("proxy certificate: %s", terr.msg);
	}

	if ((rc = mg_loop_new(&d.loop)))
		die("event loop: %s", strerror(-rc));

	/* Initial API endpoints: the configured ones, before any API answer. */
	if (d.cfg.n_endpoints &&
	    (rc = mg_loader_set_endpoints(d.loader, d.cfg.endpoints, d.cfg.n_endpoints)))
		die("api_endpoints map: %s", strerror(-rc));

	po.cgroup_root = d.cfg.cgroup_path;
	po.node_name = d.cfg.node_name;
	po.intercept = set_intercept;
	po.intercept_data = &d;
	if ((rc = mg_pods_new(&d.pods, &po)))
		die("pods: %s", strerror(-rc));
	npreset = mg_loader_list_pods(d.loader, preset, preset_v, MG_INTERCEPT_MAX);
	{
		/* Only selected entries are the pods module's to keep or release;
		 * others (the loader's PASS entry for the daemon's own cgroup) stay. */
		size_t k = 0;

		for (ssize_t i = 0; i < npreset; i++)
			if (preset_v[i].state == MG_POD_SELECTED)
				preset[k++] = preset[i];
		if (k)
			mg_pods_preset(d.pods, preset, k);
	}
	mg_pods_scan(d.pods);
	mg_loop_add_fd(d.loop, mg_pods_inotify_fd(d.pods), EPOLLIN, on_inotify, d.pods);
	if (mg_loader_events_fd(d.loader) >= 0)
		mg_loop_add_fd(d.loop, mg_loader_events_fd(d.loader), EPOLLIN, on_kernel_events, &d);

	ko.server = d.cfg.api_server;
	ko.ca_file = d.cfg.api_ca_file;
	ko.token_file = d.cfg.api_token_file;
	d.kube = mg_kube_new(&ko);
	if (!d.kube)
		die("out of memory");
	if ((rc = mg_pods_watch_start(d.pods, d.kube)))
		die("pod watch thread: %s", strerror(-rc));
	if ((rc = pthread_create(&d.ep_thread, NULL, endpoints_main, &d)))
		die("endpoints thread: %s", strerror(rc));
	d.ep_started = true;

	pxo.loop = d.loop;
	pxo.loader = d.loader;
	pxo.pods = d.pods;
	pxo.connect_timeout_ms = d.cfg.upstream_connect_timeout_ms;
	pxo.header_timeout_ms = d.cfg.header_timeout_ms;
	pxo.idle_timeout_ms = d.cfg.idle_timeout_ms;
	pxo.server_ctx = server_ctx;
	pxo.server_ctx_data = &d;
	pxo.client_ctx = d.client_ctx;
	pxo.token_file = d.cfg.api_token_file;
	d.creds = build_creds(&d);
	pxo.creds = d.creds;
	pxo.mask_cfg = &d.mask_cfg;
	pxo.review_kube = d.cfg.token_review ? d.kube : NULL;
	pxo.max_conns = d.cfg.max_connections;
	pxo.max_conns_per_pod = d.cfg.max_connections_per_pod;
	pxo.write_stall_ms = d.cfg.write_stall_timeout_ms;
	pxo.worker_threads = d.cfg.worker_threads;
	pxo.worker_queue = d.cfg.worker_queue;
	pxo.worker_per_pod = d.cfg.worker_jobs_per_pod;
	raise_nofile(&d.cfg);
	if ((rc = mg_proxy_new(&d.proxy, &pxo)))
		die("proxy: %s", strerror(-rc));
	if (d.cfg.proxy_addr4[0] && (rc = mg_proxy_listen(d.proxy, &lo.settings.proxy4)))
		die("listen %s:%u: %s", d.cfg.proxy_addr4, d.cfg.proxy_port, strerror(-rc));
	if (d.cfg.proxy_addr6[0] && (rc = mg_proxy_listen(d.proxy, &lo.settings.proxy6)))
		die("listen [%s]:%u: %s", d.cfg.proxy_addr6, d.cfg.proxy_port, strerror(-rc));

	if ((rc = mg_loop_add_timer(d.loop, 1000, on_tls_timer, &d)) < 0)
		die("timer: %s", strerror(-rc));
	mg_config_parse_hostport(d.cfg.admin_listen, &admin_addr);
	if ((rc = mg_admin_new(&d.admin, d.loop, &admin_addr, on_admin, &d)))
		die("admin listener %s: %s", d.cfg.admin_listen, strerror(-rc));

	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0 || mg_loop_add_fd(d.loop, sfd, EPOLLIN, on_signal, &d))
		die("signalfd: %s", strerror(errno));

	mg_log_json("info", json_pack("{s:s,s:s,s:s,s:i,s:s,s:s}", "event", "ready", "node",
				      d.cfg.node_name, "proxy4", d.cfg.proxy_addr4, "port",
				      (int)d.cfg.proxy_port, "proxy6", d.cfg.proxy_addr6, "admin",
				      d.cfg.admin_listen));
	rc = mg_loop_run(d.loop);

	d.stop = true;
	if (d.ep_started)
		pthread_join(d.ep_thread, NULL);
	mg_admin_free(d.admin);
	mg_proxy_free(d.proxy);
	mg_creds_free(d.creds);
	mg_pods_free(d.pods);
	mg_kube_free(d.kube);
	mg_loop_free(d.loop);
	mg_loader_close(d.loader);
	mg_tls_server_free(d.tls);
	mg_tls_ca_free(d.ca);
	SSL_CTX_free(d.client_ctx);
	close(sfd);
	return rc ? 1 : 0;
}
