/*
 * proxy: the proxy object (options, listeners, timers, the worker pool),
 * and, in one place until the addr and metrics modules replace them, the
 * address conversions and the request metrics. See proxy.h; the work is
 * done by conn.c (connection I/O), exchange.c (stages, heads) and
 * upstream.c (the API server connections and their pool).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "mcpgate/addr.h"
#include "mcpgate/authn.h"
#include "mcpgate/config.h"
#include "mcpgate/conn.h"
#include "mcpgate/exchange.h"
#include "mcpgate/log.h"
#include "mcpgate/loop.h"
#include "mcpgate/mask.h"
#include "mcpgate/metrics.h"
#include "mcpgate/proxy.h"
#include "mcpgate/secretfile.h"
#include "mcpgate/upstream.h"
#include "mcpgate/worker.h"

uint64_t mg_proxy_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t mg_proxy_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the daemon's token ---- */

/* Re-reads the daemon's token file when it changed (checked at most once a
 * second): projected tokens rotate underneath us. The token is never logged. */
struct mg_str mg_proxy_daemon_token(struct mg_proxy *p)
{
	return p->token ? mg_secretfile_get(p->token, mg_proxy_now_ms()) : MG_STR_NULL;
}

/* ---- metrics ---- */

static const double lat_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
				    0.05,   0.1,   0.25,   0.5,	  1,	5};

static unsigned met_hash(unsigned h, const char *s)
{
	for (; *s; s++)
		h = h * 33 + (unsigned char)*s;
	return h * 33 + 0xff; /* a separator no string holds */
}

/* Each label kept as its own string: the resource name is the pod's text,
 * and no byte of it may move a boundary between labels. The slot table
 * bounds the label combinations a pod can invent (MG_PROXY_MET_SLOTS). */
void mg_proxy_count_request(struct mg_proxy *p, const char *verb, const char *resource, int code,
			    enum mg_exchange_decision decision, double secs)
{
	unsigned h =
		met_hash(met_hash(5381, verb), resource) * 33 + (unsigned)decision + (unsigned)code;
	size_t i;

	for (i = 0; i < MG_PROXY_MET_SLOTS; i++) {
		struct mg_proxy_met *m = &p->met[(h + i) % MG_PROXY_MET_SLOTS];

		if (!m->used) {
			m->used = true;
			snprintf(m->verb, sizeof(m->verb), "%s", verb);
			snprintf(m->resource, sizeof(m->resource), "%s", resource);
			m->decision = decision;
			m->code = code;
		}
		if (m->code == code && !strncmp(m->verb, verb, sizeof(m->verb) - 1) &&
		    !strncmp(m->resource, resource, sizeof(m->resource) - 1) &&
		    m->decision == decision) {
			m->count++;
			break;
		}
	}
	mg_metrics_observe(p->m_latency, secs);
}

static void set_labelled(struct mg_metrics_family *f, const char *value, int64_t v)
{
	mg_metrics_set(mg_metrics_with(f, (const char *const[]){value}), v);
}

/* Before each render: the limits' counters, the worker pool's gauges and
 * the request table, mirrored into their families. */
static void collect_metrics(void *data)
{
	struct mg_proxy *p = data;
	const struct mg_proxy_stats *st = &p->st;
	struct mg_worker_stats ws = {0};
	const struct {
		const char *reason;
		uint64_t n;
	} lim[] = {
		{"max_connections", st->limited_conns},
		{"max_connections_per_pod", st->limited_pod_conns},
		{"connection_reset", st->limited_reset},
		{"worker_queue_full", st->limited_worker_queue},
		{"worker_pod_quota", st->limited_worker_pod},
		{"write_stall", st->write_stalls},
		{"accept_backoff", st->accept_backoffs},
	};

	for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++)
		set_labelled(p->m_limited, lim[i].reason, (int64_t)lim[i].n);
	if (p->worker)
		mg_worker_get_stats(p->worker, &ws);
	set_labelled(p->m_worker, "queued", ws.queued);
	set_labelled(p->m_worker, "running", ws.running);
	mg_metrics_set(mg_metrics_with(p->m_paused, NULL), p->paused);
	mg_metrics_set(mg_metrics_with(p->m_trims, NULL), (int64_t)st->malloc_trims);

	mg_metrics_clear(p->m_requests);
	for (size_t i = 0; i < MG_PROXY_MET_SLOTS; i++) {
		const struct mg_proxy_met *m = &p->met[i];
		char code[12];

		if (!m->used)
			continue;
		snprintf(code, sizeof(code), "%d", m->code);
		mg_metrics_set(mg_metrics_with(p->m_requests,
					       (const char *const[]){
						       m->verb, m->resource, code,
						       mg_exchange_decision_str(m->decision)}),
			       (int64_t)m->count);
	}
}

int mg_proxy_register_metrics(struct mg_proxy *p, struct mg_metrics *m)
{
	static const char *const reason[] = {"reason"}, *const state[] = {"state"},
				 *const req[] = {"verb", "resource", "code", "decision"};
	struct mg_metrics_family *lat;

	p->m_limited = mg_metrics_add(m, MG_METRICS_COUNTER, "mcpgate_limited_total",
				      "Connections and requests refused (429, or a reset past "
				      "that) or cut to protect the node, by limit.",
				      reason, 1, NULL, 0);
	p->m_worker = mg_metrics_add(m, MG_METRICS_GAUGE, "mcpgate_worker_jobs",
				     "Credential and TokenReview jobs in the pool now.", state, 1,
				     NULL, 0);
	p->m_paused = mg_metrics_add(m, MG_METRICS_GAUGE, "mcpgate_accept_paused",
				     "Whether the listeners are paused (accept out of fds).", NULL,
				     0, NULL, 0);
	p->m_trims = mg_metrics_add(m, MG_METRICS_COUNTER, "mcpgate_malloc_trims_total",
				    "Freed memory handed back after connections closed.", NULL, 0,
				    NULL, 0);
	p->m_requests =
		mg_metrics_add(m, MG_METRICS_COUNTER, "mcpgate_requests_total",
			       "Requests, by verb, resource, code and decision.", req, 4, NULL, 0);
	lat = mg_metrics_add(m, MG_METRICS_HISTOGRAM, "mcpgate_request_duration_seconds",
			     "Time from request head to the end of the response (tunnels "
			     "excluded).",
			     NULL, 0, lat_bounds, sizeof(lat_bounds) / sizeof(lat_bounds[0]));
	if (!p->m_limited || !p->m_worker || !p->m_paused || !p->m_trims || !p->m_requests ||
	    !lat || !(p->m_latency = mg_metrics_with(lat, NULL)))
		return -ENOMEM;
	return mg_metrics_on_collect(m, collect_metrics, p);
}

/* ---- public ---- */

int mg_proxy_new(struct mg_proxy **out, const struct mg_proxy_opts *o)
{
	struct mg_proxy *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		return -ENOMEM;
	p->o = *o;
	if (!p->o.connect_timeout_ms)
		p->o.connect_timeout_ms = MG_PROXY_CONNECT_TIMEOUT_MS_DEFAULT;
	if (!p->o.header_timeout_ms)
		p->o.header_timeout_ms = MG_PROXY_HEADER_TIMEOUT_MS_DEFAULT;
	if (!p->o.idle_timeout_ms)
		p->o.idle_timeout_ms = MG_PROXY_IDLE_TIMEOUT_MS_DEFAULT;
	if (!p->o.pool_idle_ms)
		p->o.pool_idle_ms = MG_UPSTREAM_POOL_IDLE_MS_DEFAULT;
	if (!p->o.pool_max)
		p->o.pool_max = MG_UPSTREAM_POOL_MAX_DEFAULT;
	if (!p->o.max_conns)
		p->o.max_conns = MG_PROXY_MAX_CONNS_DEFAULT;
	if (!p->o.max_conns_per_pod)
		p->o.max_conns_per_pod = MG_PROXY_MAX_CONNS_PER_POD_DEFAULT;
	if (!p->o.write_stall_ms)
		p->o.write_stall_ms = MG_PROXY_WRITE_STALL_MS_DEFAULT;
	p->backoff_ms = MG_CONN_BACKOFF_MIN_MS;
	p->sweep_fd = p->backoff_fd = -1;
	mg_mask_cfg_default(&p->mcfg);
	if (!p->o.mask_cfg)
		p->o.mask_cfg = &p->mcfg;
	/* Every counted connection may be a different pod: at most half full. */
	for (p->n_pod_slots = 64; p->n_pod_slots < 2 * (size_t)p->o.max_conns;)
		p->n_pod_slots *= 2;
	p->pod_slots = calloc(p->n_pod_slots, sizeof(*p->pod_slots));
	if (!p->pod_slots) {
		rc = -ENOMEM;
		goto err;
	}
	p->sweep_fd = mg_loop_add_timer(o->loop, MG_CONN_SWEEP_MS, mg_conn_on_sweep, p);
	if (p->sweep_fd < 0) {
		rc = p->sweep_fd;
		goto err;
	}
	p->backoff_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (p->backoff_fd < 0) {
		rc = -errno;
		goto err;
	}
	rc = mg_loop_add_fd(o->loop, p->backoff_fd, EPOLLIN, mg_conn_on_backoff_end, p);
	if (rc)
		goto err;
	p->pool = (struct mg_upstream_pool){o->loop, NULL, 0, p->o.pool_max, p->o.pool_idle_ms};
	if (p->o.token_file &&
	    !(p->token = mg_secretfile_open(p->o.token_file, MG_PROXY_TOKEN_RECHECK_MS))) {
		rc = -ENOMEM;
		goto err;
	}
	if (p->o.review_kube) {
		rc = mg_authn_new(&p->authn, p->o.review_kube);
		if (rc)
			goto err;
	}
	if (p->o.creds || p->o.review_kube) {
		struct mg_worker_opts wo = {o->loop, p->o.worker_threads, p->o.worker_queue,
					    p->o.worker_per_pod};

		rc = mg_worker_new(&p->worker, &wo);
		if (rc)
			goto err;
	}
	*out = p;
	return 0;
err:
	mg_proxy_free(p);
	return rc;
}

void mg_proxy_free(struct mg_proxy *p)
{
	if (!p)
		return;
	while (p->conns)
		mg_conn_free(p->conns);
	mg_upstream_pool_clear(&p->pool);
	for (size_t i = 0; i < p->nl; i++) {
		mg_loop_del_fd(p->o.loop, p->lfd[i]);
		close(p->lfd[i]);
	}
	if (p->sweep_fd >= 0) {
		mg_loop_del_fd(p->o.loop, p->sweep_fd);
		close(p->sweep_fd);
	}
	if (p->backoff_fd >= 0) {
		mg_loop_del_fd(p->o.loop, p->backoff_fd);
		close(p->backoff_fd);
	}
	/* Last: the jobs it hands back look for connections, and find none. */
	mg_worker_free(p->worker);
	mg_authn_free(p->authn);
	free(p->pod_slots);
	mg_secretfile_free(p->token);
	free(p);
}

int mg_proxy_listen(struct mg_proxy *p, const struct mg_abi_addr *addr)
{
	struct sockaddr_storage ss;
	socklen_t sl = mg_addr_to_sockaddr(addr, &ss);
	int fd, rc;

	if (p->nl == MG_CONN_MAX_LISTENERS)
		return -ENOSPC;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &(int){1}, sizeof(int));
	setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &(int){1}, sizeof(int));
	if (bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 1024)) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = mg_loop_add_fd(p->o.loop, fd, EPOLLIN, mg_conn_on_listen, p);
	if (rc) {
		close(fd);
		return rc;
	}
	p->lfd[p->nl++] = fd;
	return 0;
}

void mg_proxy_get_stats(const struct mg_proxy *p, struct mg_proxy_stats *s)
{
	*s = p->st;
}
