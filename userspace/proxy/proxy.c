/*
 * proxy: accept, identify, terminate TLS, forward strictly. See proxy.h.
 *
 * Each client connection owns four bounded buffers: cin (plaintext read
 * from the pod), uout (the rewritten request going upstream), uin (read from
 * the API server) and cout (the response going to the pod). One function,
 * pump(), moves bytes between them until no step makes progress, then the
 * epoll interest of both sockets is recomputed from what is pending. Level
 * triggered throughout, so a missed edge can never stall a connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <malloc.h>
#include <sys/timerfd.h>

#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "mcpgate/buf.h"
#include "mcpgate/config.h"
#include "mcpgate/creds.h"
#include "mcpgate/kube.h"
#include "mcpgate/http.h"
#include "mcpgate/loader.h"
#include "mcpgate/log.h"
#include "mcpgate/loop.h"
#include "mcpgate/mask.h"
#include "mcpgate/metrics.h"
#include "mcpgate/pods.h"
#include "mcpgate/proxy.h"
#include "mcpgate/reqinfo.h"
#include "mcpgate/tls.h"
#include "mcpgate/tunmask.h"
#include "mcpgate/worker.h"

#define MAX_LISTENERS 4
#define IN_MAX (64 * 1024 + 16 * 1024)	/* a max head plus read-ahead */
#define OUT_MAX (256 * 1024)
#define IO_CHUNK 16384
#define TOKEN_MAX 8192
#define PATH_LOG_MAX 1024

/* Limits (the caps themselves are options, defaults in proxy.h). A client
 * over a connection cap still gets a 429 Status, which needs its TLS
 * handshake and request head: at most REFUSING_MAX such connections are
 * kept at once, each for at most REFUSE_HEAD_MS; past that, a reset. */
#define REFUSING_MAX 64
#define REFUSE_HEAD_MS 5000
#define RETRY_AFTER_S 1
/* accept() out of fds or memory: listeners paused this long, doubling. */
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
/* Hand freed heap back to the system once this many connections closed
 * since the last peak, or this many buffer bytes were freed (glibc keeps
 * it otherwise: 13 -> 64 MiB after 3000 connections). */
#define TRIM_AFTER_CLOSED 64
#define TRIM_AFTER_FREED (4u << 20)

struct conn;

/* What the loop calls back with: which connection, which socket. */
struct side {
	struct conn *c;
	struct upstream *u;
	bool upstream;
};

/* A TLS connection to one API server address; owned by a conn while a
 * request uses it, by the pool while idle. */
struct upstream {
	int fd;
	SSL *ssl;
	struct mg_abi_addr dst;
	bool connecting;	/* TCP connect in progress */
	bool hs_done;
	uint64_t since_ms;	/* connect start, or idle start in the pool */
	struct side side;
	struct upstream *next;	/* pool list */
};

/* One request/response exchange. */
struct exch {
	bool active;
	char audit_id[37];
	char method[16];
	char path[PATH_LOG_MAX];
	uint64_t t0_ns;
	bool head_req;		/* HEAD: no response body */
	bool upgrade;		/* request asked for an upgrade */
	bool client_keep_alive;
	bool client_http11;
	enum mg_http_body req_body;
	uint64_t req_left;
	struct mg_http_chunked req_ch;
	bool req_done;
	bool resp_head;
	int status;
	enum mg_http_body resp_body;
	uint64_t resp_left;
	struct mg_http_chunked resp_ch;
	bool resp_chunk_out;	/* we chunk the body to the client */
	bool resp_done;
	bool up_keep_alive;
	bool close_client;	/* the client connection ends with this response */
	bool pooled;		/* sent on a reused upstream connection */
	char *replay;		/* the whole request, kept while it may be resent */
	size_t replay_len;
	bool creds_wait;	/* head built but for its credential, which a worker fetches */
	bool review_wait;	/* the pod's token is being checked with a TokenReview */
	/* request info, by the API server's rules (reqinfo) */
	bool resource_req;
	char verb[20];
	char resource[96];	/* resource or resource/subresource */
	char res_only[64];	/* the resource alone: the masker's hint */
	char api_group[64];
	char api_version[16];
	char ns[64];
	char name[254];
	bool watch;
	struct mg_mask_body *mask;	/* this response's masker, NULL when unmasked */
	bool mask_gzip;
	char *held_head;	/* masked response: head waits for the first safe bytes */
	size_t held_len;
	uint64_t bytes_in, bytes_out;
};

struct conn {
	struct mg_proxy *p;
	uint64_t id;
	int fd;
	SSL *ssl;
	bool hs_done;
	struct side side;
	struct upstream *up;
	struct mg_buf cin, cout, uin, uout;
	struct mg_abi_origin o;
	struct mg_pod_ident ident;
	char client[64];
	struct exch x;
	bool tunnel;
	struct mg_tunmask *tmask;	/* exec/attach: server frames are masked */
	bool tmask_drained;
	bool c_eof;		/* the pod closed its sending side */
	bool u_eof;		/* the API server closed its sending side */
	bool close_after_flush;	/* send what is in cout, then close */
	bool dead;
	const char *limited;	/* over a connection cap: answer 429 (this reason), close */
	bool pod_counted;	/* holds one of its pod's max_conns_per_pod */
	uint64_t wstall_ms;	/* cout has waited since, with no write progress; 0: empty */
	size_t head_scanned;	/* cin bytes already known to hold no complete head */
	uint64_t last_ms;
	uint64_t head_since_ms;	/* waiting for a request head since */
	struct conn *next, *prev;
};

/* Per-request metrics: counts by (verb, resource, code, decision). */
#define MET_SLOTS 512
#define LAT_BUCKETS 12
static const double lat_bounds[LAT_BUCKETS] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
						 0.05,	 0.1,	0.25,	0.5,   1,    5 };
struct met {
	bool used;
	char verb[20];		/* as in struct exch */
	char resource[96];
	char decision[16];
	int code;
	uint64_t count;
};

/* A credential fetch or TokenReview handed to the worker pool:
 * mg_creds_get() and mg_kube_post_json() make network calls, which never
 * happen on the event loop. */
enum { JOB_CREDS = 0, JOB_REVIEW };

/* TokenReview answers, by SHA-256 of the token (never the token itself),
 * kept for a minute so a busy pod costs one review, not one per request. */
#define REVIEW_CACHE 256
#define REVIEW_TTL_MS 60000
struct review_entry {
	unsigned char hash[32];
	char username[254];
	bool authenticated;
	uint64_t expires_ms;
};

struct cjob {
	struct mg_proxy *p;
	int kind;
	uint64_t conn_id;
	char *token;		/* JOB_REVIEW: wiped and freed with the job */
	unsigned char hash[32];
	bool authenticated;
	char username[254];
	char error[200];
	char ns[64], pod[254], uid[40], sa[254];
	struct mg_creds_result res;
	int rc;
};

/* Open connections of one pod, by pod cgroup id: linear probing, at most
 * half full (sized for every connection that may hold a count). */
struct pod_slot {
	uint64_t key;
	unsigned n;	/* 0: free */
};

/* Pod cgroup ids whose refusal was logged lately: a pod that keeps
 * reconnecting is counted every time but logged once. */
#define UNKNOWN_LOGGED_MAX 64

struct mg_proxy {
	struct mg_proxy_opts o;
	uint64_t unknown_logged[UNKNOWN_LOGGED_MAX];
	unsigned unknown_logged_next;
	struct mg_worker *worker;	/* credential fetches, TokenReviews */
	/* limits */
	struct pod_slot *pod_slots;
	size_t n_pod_slots;	/* a power of two */
	unsigned refusing;	/* connections kept only to answer 429 */
	int backoff_fd;		/* timerfd: listeners paused after accept failed */
	unsigned backoff_ms;
	bool backing_off;	/* since the first failure, until an accept succeeds */
	bool paused;		/* listeners have no epoll interest now */
	uint64_t peak_active;	/* since the last malloc_trim */
	uint64_t freed_since_trim;	/* buffer bytes freed since then */
	struct review_entry reviews[REVIEW_CACHE];
	unsigned review_next;
	int lfd[MAX_LISTENERS];
	size_t nl;
	struct conn *conns;
	struct upstream *pool;
	size_t pool_n;
	uint64_t next_id;
	int sweep_fd;
	struct mg_proxy_stats st;
	struct mg_mask_cfg mcfg;	/* defaults, when no mask_cfg was given */
	/* daemon token cache */
	char token[TOKEN_MAX];
	size_t token_len;
	struct timespec token_mtime;
	uint64_t token_checked_ms;
	/* metrics */
	struct met met[MET_SLOTS];
	uint64_t lat_count[LAT_BUCKETS + 1];
	double lat_sum;
	uint64_t lat_n;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- addresses ---- */

static int to_abi(const struct sockaddr_storage *ss, struct mg_abi_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		a->addr[10] = 0xff;
		a->addr[11] = 0xff;
		memcpy(a->addr + 12, &s->sin_addr, 4);
		a->port = s->sin_port;
		return 0;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;

		memcpy(a->addr, &s->sin6_addr, 16);
		a->port = s->sin6_port;
		return 0;
	}
	return -EAFNOSUPPORT;
}

static bool is_mapped(const struct mg_abi_addr *a)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return !memcmp(a->addr, mapped, 12);
}

static socklen_t from_abi(const struct mg_abi_addr *a, struct sockaddr_storage *ss)
{
	return (socklen_t)mg_config_sockaddr(a, ss);
}

/* The bare IP of <a>, for upstream certificate IP verification. */
static void ip_text(const struct mg_abi_addr *a, char *buf, size_t len)
{
	if (is_mapped(a))
		inet_ntop(AF_INET, a->addr + 12, buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, a->addr, buf, (socklen_t)len);
}

/* ---- small helpers ---- */

static void new_uuid(char out[37])
{
	unsigned char b[16];

	if (getrandom(b, sizeof(b), 0) != sizeof(b))
		memset(b, 0, sizeof(b)); /* getrandom cannot fail for 16 bytes after boot */
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
		 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
}

/* Re-reads the daemon's token file when it changed (checked at most once a
 * second): projected tokens rotate underneath us. The token is never logged. */
static struct mg_str daemon_token(struct mg_proxy *p)
{
	uint64_t now = now_ms();
	struct stat st;
	FILE *f;

	if (!p->o.token_file)
		return MG_STR_NULL;
	if (p->token_len && now - p->token_checked_ms < 1000)
		return (struct mg_str){ p->token, p->token_len };
	p->token_checked_ms = now;
	if (stat(p->o.token_file, &st) ||
	    (p->token_len && st.st_mtim.tv_sec == p->token_mtime.tv_sec &&
	     st.st_mtim.tv_nsec == p->token_mtime.tv_nsec))
		return (struct mg_str){ p->token, p->token_len };
	f = fopen(p->o.token_file, "re");
	if (f) {
		size_t n = fread(p->token, 1, sizeof(p->token) - 1, f);

		fclose(f);
		while (n && (p->token[n - 1] == '\n' || p->token[n - 1] == '\r' ||
			     p->token[n - 1] == ' '))
			n--;
		p->token_len = n;
		p->token_mtime = st.st_mtim;
	}
	return (struct mg_str){ p->token, p->token_len };
}

/* ---- metrics ---- */

static unsigned met_hash(unsigned h, const char *s)
{
	for (; *s; s++)
		h = h * 33 + (unsigned char)*s;
	return h * 33 + 0xff; /* a separator no string holds */
}

/* Each label kept as its own string: the resource name is the pod's text,
 * and no byte of it may move a boundary between labels. */
static void met_add(struct mg_proxy *p, const char *verb, const char *resource, int code,
		    const char *decision, double secs)
{
	unsigned h = met_hash(met_hash(met_hash(5381, verb), resource), decision) + (unsigned)code;
	size_t i;

	for (i = 0; i < MET_SLOTS; i++) {
		struct met *m = &p->met[(h + i) % MET_SLOTS];

		if (!m->used) {
			m->used = true;
			snprintf(m->verb, sizeof(m->verb), "%s", verb);
			snprintf(m->resource, sizeof(m->resource), "%s", resource);
			snprintf(m->decision, sizeof(m->decision), "%s", decision);
			m->code = code;
		}
		if (m->code == code && !strncmp(m->verb, verb, sizeof(m->verb) - 1) &&
		    !strncmp(m->resource, resource, sizeof(m->resource) - 1) &&
		    !strncmp(m->decision, decision, sizeof(m->decision) - 1)) {
			m->count++;
			break;
		}
	}
	for (i = 0; i < LAT_BUCKETS && secs > lat_bounds[i]; i++)
		;
	p->lat_count[i]++;
	p->lat_sum += secs;
	p->lat_n++;
}

/* The limits' counters and the worker pool's gauges. */
static void write_limit_metrics(const struct mg_proxy *p, FILE *f)
{
	const struct mg_proxy_stats *st = &p->st;
	struct mg_worker_stats ws = { 0 };
	const struct {
		const char *reason;
		uint64_t n;
	} lim[] = {
		{ "max_connections", st->limited_conns },
		{ "max_connections_per_pod", st->limited_pod_conns },
		{ "connection_reset", st->limited_reset },
		{ "worker_queue_full", st->limited_worker_queue },
		{ "worker_pod_quota", st->limited_worker_pod },
		{ "write_stall", st->write_stalls },
		{ "accept_backoff", st->accept_backoffs },
	};

	if (p->worker)
		mg_worker_get_stats(p->worker, &ws);
	fprintf(f, "# HELP mcpgate_limited_total Connections and requests refused (429, or a "
		   "reset past that) or cut to protect the node, by limit.\n"
		   "# TYPE mcpgate_limited_total counter\n");
	for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++)
		fprintf(f, "mcpgate_limited_total{reason=\"%s\"} %llu\n", lim[i].reason,
			(unsigned long long)lim[i].n);
	fprintf(f,
		"# HELP mcpgate_worker_jobs Credential and TokenReview jobs in the pool now.\n"
		"# TYPE mcpgate_worker_jobs gauge\n"
		"mcpgate_worker_jobs{state=\"queued\"} %u\n"
		"mcpgate_worker_jobs{state=\"running\"} %u\n"
		"# HELP mcpgate_accept_paused Whether the listeners are paused (accept out of fds).\n"
		"# TYPE mcpgate_accept_paused gauge\n"
		"mcpgate_accept_paused %d\n"
		"# HELP mcpgate_malloc_trims_total Freed memory handed back after connections closed.\n"
		"# TYPE mcpgate_malloc_trims_total counter\n"
		"mcpgate_malloc_trims_total %llu\n",
		ws.queued, ws.running, p->paused, (unsigned long long)st->malloc_trims);
}

void mg_proxy_write_metrics(const struct mg_proxy *p, void *file)
{
	FILE *f = file;
	uint64_t cum = 0;

	write_limit_metrics(p, f);

	fprintf(f, "# HELP mcpgate_requests_total Requests, by verb, resource, code and decision.\n"
		   "# TYPE mcpgate_requests_total counter\n");
	for (size_t i = 0; i < MET_SLOTS; i++) {
		const struct met *m = &p->met[i];
		char code[12];

		if (!m->used)
			continue;
		snprintf(code, sizeof(code), "%d", m->code);
		mg_metrics_put_u64(f, "mcpgate_requests_total",
				   (struct mg_metrics_label[]){ { "verb", m->verb },
								{ "resource", m->resource },
								{ "code", code },
								{ "decision", m->decision } },
				   4, m->count);
	}
	fprintf(f, "# HELP mcpgate_request_duration_seconds Time from request head to the end "
		   "of the response (tunnels excluded).\n"
		   "# TYPE mcpgate_request_duration_seconds histogram\n");
	for (size_t i = 0; i <= LAT_BUCKETS; i++) {
		char le[32];

		cum += p->lat_count[i];
		if (i < LAT_BUCKETS)
			snprintf(le, sizeof(le), "%g", lat_bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		mg_metrics_put_u64(f, "mcpgate_request_duration_seconds_bucket",
				   &(struct mg_metrics_label){ "le", le }, 1, cum);
	}
	fprintf(f,
		"mcpgate_request_duration_seconds_sum %.6f\n"
		"mcpgate_request_duration_seconds_count %llu\n",
		p->lat_sum, (unsigned long long)p->lat_n);
}

/* ---- upstream pool ---- */

static void upstream_free(struct mg_proxy *p, struct upstream *u)
{
	if (!u)
		return;
	if (u->fd >= 0) {
		mg_loop_del_fd(p->o.loop, u->fd);
		close(u->fd);
	}
	SSL_free(u->ssl);
	free(u);
}

/* Returns an idle pooled connection to <dst> that is still usable, or NULL.
 * An idle TLS connection may have received session tickets (fine) or a
 * close (not fine): a non-blocking read tells them apart. */
static struct upstream *pool_take(struct mg_proxy *p, const struct mg_abi_addr *dst)
{
	struct upstream **pp = &p->pool, *u;

	while ((u = *pp)) {
		char b;
		int r;

		if (memcmp(&u->dst, dst, sizeof(*dst))) {
			pp = &u->next;
			continue;
		}
		*pp = u->next;
		p->pool_n--;
		u->next = NULL;
		ERR_clear_error();
		r = SSL_read(u->ssl, &b, 1);
		if (r <= 0 && SSL_get_error(u->ssl, r) == SSL_ERROR_WANT_READ)
			return u;
		upstream_free(p, u); /* closed, or spoke unasked: not reusable */
	}
	return NULL;
}

static void pool_put(struct mg_proxy *p, struct upstream *u)
{
	mg_loop_del_fd(p->o.loop, u->fd);
	if (p->pool_n >= p->o.pool_max) {
		upstream_free(p, u);
		return;
	}
	u->since_ms = now_ms();
	u->side.c = NULL;
	u->next = p->pool;
	p->pool = u;
	p->pool_n++;
}

/* ---- limits ---- */

static size_t pod_hash(const struct mg_proxy *p, uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 17) & (p->n_pod_slots - 1);
}

/* The slot of pod <key>: its own, or the free one where it would go. */
static struct pod_slot *pod_slot(struct mg_proxy *p, uint64_t key)
{
	size_t i = pod_hash(p, key);

	while (p->pod_slots[i].n && p->pod_slots[i].key != key)
		i = (i + 1) & (p->n_pod_slots - 1);
	return &p->pod_slots[i];
}

/* One connection of pod <key> closed. A slot that empties is filled back
 * from the run after it (backward-shift deletion), so lookups never need
 * tombstones. */
static void pod_conn_put(struct mg_proxy *p, uint64_t key)
{
	size_t mask = p->n_pod_slots - 1, i = (size_t)(pod_slot(p, key) - p->pod_slots), j = i;

	if (!p->pod_slots[i].n || --p->pod_slots[i].n)
		return;
	for (;;) {
		size_t home;

		j = (j + 1) & mask;
		if (!p->pod_slots[j].n)
			return;
		home = pod_hash(p, p->pod_slots[j].key);
		/* stays if its home lies cyclically in (i, j] */
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		p->pod_slots[i] = p->pod_slots[j];
		p->pod_slots[j].n = 0;
		i = j;
	}
}

/* Whether a new connection of pod <key> fits under the caps. Returns NULL
 * and counts it against the pod, or the name of the cap it is over (and
 * counts that in the stats). Connections kept only to answer 429 count
 * against neither cap. */
static const char *admit(struct mg_proxy *p, uint64_t key)
{
	struct pod_slot *s;

	if (p->st.active >= p->refusing + (uint64_t)p->o.max_conns) {
		p->st.limited_conns++;
		return "max_connections";
	}
	s = pod_slot(p, key);
	if (s->n >= p->o.max_conns_per_pod) {
		p->st.limited_pod_conns++;
		return "max_connections_per_pod";
	}
	s->key = key;
	s->n++;
	return NULL;
}

/* Frees <b>, counting what goes back to the heap for the next trim. */
static void buf_drop(struct mg_proxy *p, struct mg_buf *b)
{
	p->freed_since_trim += b->cap;
	mg_buf_free(b);
}

/* ---- connection teardown ---- */

static void conn_free(struct conn *c)
{
	struct mg_proxy *p = c->p;

	mg_loop_del_fd(p->o.loop, c->fd);
	close(c->fd);
	SSL_free(c->ssl);
	upstream_free(p, c->up);
	buf_drop(p, &c->cin);
	buf_drop(p, &c->cout);
	buf_drop(p, &c->uin);
	buf_drop(p, &c->uout);
	mg_pod_ident_release(&c->ident);
	mg_mask_body_free(c->x.mask);
	free(c->x.held_head);
	free(c->x.replay);
	mg_tunmask_free(c->tmask);
	if (c->pod_counted)
		pod_conn_put(p, c->o.pod_cgroup_id);
	if (c->limited)
		p->refusing--;
	if (c->prev)
		c->prev->next = c->next;
	else
		p->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	p->st.active--;
	free(c);
}

static json_t *pod_json(const struct conn *c)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "namespace", c->ident.namespace, "name",
			 c->ident.name, "uid", c->ident.uid, "serviceAccount",
			 c->ident.service_account, "node", c->ident.node, "container",
			 c->ident.container_id);
}

static void log_close(struct conn *c, const char *why)
{
	json_t *ev = json_pack("{s:s,s:I,s:s}", "event", "close", "conn", (json_int_t)c->id,
			       "reason", why);

	if (c->tmask) {
		struct mg_mask_stats ms;
		uint64_t hits = 0;

		mg_tunmask_stats(c->tmask, &ms);
		for (unsigned i = 0; i < MG_MASK_DET_MAX; i++)
			hits += ms.hits[i];
		json_object_set_new(ev, "maskedHits", json_integer((json_int_t)hits));
	}
	mg_log_json("info", ev);
}

/* ---- the request record ---- */

static int mask_text_sink(void *ctx, const char *buf, size_t len)
{
	return mg_buf_append(ctx, buf, len) ? -ENOBUFS : 0;
}

/* The request path as it may be logged: exec/attach commands and other
 * query values can carry secrets, so the detectors run over it first. */
static void loggable_path(struct mg_proxy *p, const char *path, char *out, size_t cap)
{
	struct mg_buf b;
	struct mg_mask_text *t;
	struct mg_mask_sink sink;

	if (!strchr(path, '?')) {
		snprintf(out, cap, "%s", path);
		return;
	}
	mg_buf_init(&b, cap - 1);
	sink = (struct mg_mask_sink){ mask_text_sink, &b };
	t = mg_mask_text_new(p->o.mask_cfg);
	if (!t || mg_mask_text_feed(t, path, strlen(path), &sink) ||
	    mg_mask_text_finish(t, &sink)) {
		snprintf(out, cap, "%.*s?(query withheld)", (int)(strchr(path, '?') - path), path);
	} else {
		snprintf(out, cap, "%.*s", (int)mg_buf_size(&b), mg_buf_head(&b));
	}
	mg_mask_text_free(t);
	mg_buf_free(&b);
}

static void finish_exchange(struct conn *c, const char *decision)
{
	char logpath[PATH_LOG_MAX + 256];
	struct mg_proxy *p = c->p;
	struct exch *x = &c->x;
	double secs = (double)(now_ns() - x->t0_ns) / 1e9;
	json_t *ev;

	ev = json_pack("{s:s,s:I,s:s,s:o,s:I,s:s,s:s,s:{s:b,s:s,s:s,s:s,s:s,s:s,s:s},s:i,s:s,"
		       "s:I,s:I,s:f,s:b,s:b}",
		       "event", "request", "conn", (json_int_t)c->id, "auditID", x->audit_id, "pod",
		       pod_json(c), "pid", (json_int_t)c->o.tgid, "method", x->method, "path",
		       (loggable_path(p, x->path, logpath, sizeof(logpath)), logpath), "request", "isResourceRequest", x->resource_req, "verb", x->verb,
		       "apiGroup", x->api_group, "apiVersion", x->api_version, "resource",
		       x->resource, "namespace", x->ns, "name", x->name, "status", x->status,
		       "decision", decision, "bytesIn", (json_int_t)x->bytes_in, "bytesOut",
		       (json_int_t)x->bytes_out, "latencyMs", secs * 1000.0, "upgrade", c->tunnel,
		       "pooled", x->pooled);
	if (x->mask) {
		const struct mg_mask_stats *ms = mg_mask_body_stats(x->mask);
		json_t *hits = json_object();

		for (unsigned i = 0; i < MG_MASK_DET_MAX; i++) {
			const char *name = mg_mask_det_name(p->o.mask_cfg ? p->o.mask_cfg : &p->mcfg, i);

			if (ms->hits[i] && name)
				json_object_set_new(hits, name, json_integer((json_int_t)ms->hits[i]));
		}
		json_object_set_new(ev, "masked",
				    json_pack("{s:I,s:I,s:I,s:o}", "secrets",
					      (json_int_t)ms->secrets, "secretFields",
					      (json_int_t)ms->secret_fields, "lastApplied",
					      (json_int_t)ms->last_applied, "detectors", hits));
		mg_mask_body_free(x->mask);
		x->mask = NULL;
	}
	free(x->held_head);
	x->held_head = NULL;
	free(x->replay);
	x->replay = NULL;
	mg_log_json(x->status >= 500 ? "warn" : "info", ev);
	met_add(p, x->verb, x->resource, x->status, decision, secs);
	x->active = false;
}

/* Queues a Kubernetes Status error for the client and closes the
 * connection once it is written: after a framing error we no longer know
 * where the next request would start. */
static void reply_status(struct conn *c, int code, const char *msg)
{
	char buf[2048];
	size_t n = mg_http_status_json(buf, sizeof(buf), code, NULL, msg, false);

	if (n < sizeof(buf))
		mg_buf_append(&c->cout, buf, n);
	c->close_after_flush = true;
	c->p->st.rejected_requests++;
	if (c->x.active) {
		c->x.status = code;
		finish_exchange(c, "error");
	} else {
		mg_log_json("warn", json_pack("{s:s,s:I,s:o,s:i,s:s}", "event", "rejected", "conn",
					      (json_int_t)c->id, "pod", pod_json(c), "status", code,
					      "reason", msg));
	}
}

/* Answers 429 TooManyRequests with Retry-After (client-go honours it and
 * retries) and closes: nothing of this request went upstream. <why> names
 * the limit in the log; <counter>, if not NULL, is its metric (connection
 * caps are counted at accept). */
static void reply_limited(struct conn *c, uint64_t *counter, const char *why, const char *msg)
{
	char buf[2048], hdr[32];
	size_t n = mg_http_status_json(buf, sizeof(buf), 429, NULL, msg, false);
	const char *eol = memchr(buf, '\n', n < sizeof(buf) ? n : 0);
	int hl = snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", RETRY_AFTER_S);

	if (counter)
		(*counter)++;
	if (eol) { /* the header goes right after the status line */
		mg_buf_append(&c->cout, buf, (size_t)(eol + 1 - buf));
		mg_buf_append(&c->cout, hdr, (size_t)hl);
		mg_buf_append(&c->cout, eol + 1, n - (size_t)(eol + 1 - buf));
	}
	mg_buf_free(&c->uout); /* a head built for upstream never leaves */
	c->close_after_flush = true;
	c->c_eof = true;
	mg_log_json("warn", json_pack("{s:s,s:I,s:o,s:s}", "event", "limited", "conn",
				      (json_int_t)c->id, "pod", pod_json(c), "reason", why));
	if (c->x.active) {
		c->x.status = 429;
		finish_exchange(c, "limited");
	}
}

/* A job the worker pool refused (submit_job's <rc>): 429 over its limits. */
static void refuse_job(struct conn *c, int rc)
{
	struct mg_proxy_stats *st = &c->p->st;

	if (rc == -EDQUOT)
		reply_limited(c, &st->limited_worker_pod, "worker_pod_quota",
			      "mcpgate: too many of this pod's requests are waiting for a credential "
			      "or a token review; retry later");
	else if (rc == -EAGAIN)
		reply_limited(c, &st->limited_worker_queue, "worker_queue_full",
			      "mcpgate: too many requests are waiting for a credential or a token "
			      "review; retry later");
	else
		reply_status(c, 503, "mcpgate: credential worker unavailable");
}

/* ---- request forwarding ---- */

/* Headers never forwarded upstream: the pod's own credentials and any
 * identity it might try to claim, and hop-by-hop fields (RFC 9110 §7.6.1)
 * which the proxy regenerates itself. */
static bool drop_request_header(struct mg_str name)
{
	static const struct mg_str drop[] = {
		MG_STR("authorization"),  MG_STR("proxy-authorization"), MG_STR("connection"),
		MG_STR("keep-alive"),	  MG_STR("proxy-connection"),	 MG_STR("te"),
		MG_STR("trailer"),	  MG_STR("transfer-encoding"),	 MG_STR("upgrade"),
		MG_STR("audit-id"),	  MG_STR("x-remote-user"),	 MG_STR("x-remote-group"),
		MG_STR("content-length"),
	};

	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
		if (mg_str_caseeq(name, drop[i]))
			return true;
	return (name.len >= 12 && !strncasecmp(name.ptr, "impersonate-", 12)) ||
	       (name.len >= 15 && !strncasecmp(name.ptr, "x-remote-extra-", 15));
}

static int put(struct mg_buf *b, const char *s)
{
	return mg_buf_append(b, s, strlen(s));
}

/* Writes header <name> with the elements of list <value> that do not
 * contain <drop>; if none is left, <name>: <fallback>, or nothing when
 * <fallback> is NULL. */
static int put_list_without(struct mg_buf *b, struct mg_str name, struct mg_str value,
			    const char *drop, const char *fallback)
{
	const char *p = value.ptr, *end = value.ptr + value.len;
	bool first = true;
	int rc = 0;

	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *e = comma ? comma : end;
		struct mg_str item = { p, (size_t)(e - p) };

		while (item.len && (*item.ptr == ' ' || *item.ptr == '\t')) {
			item.ptr++;
			item.len--;
		}
		while (item.len && (item.ptr[item.len - 1] == ' ' || item.ptr[item.len - 1] == '\t'))
			item.len--;
		if (item.len && !memmem(item.ptr, item.len, drop, strlen(drop))) {
			if (first) {
				rc |= mg_buf_append_str(b, name);
				rc |= put(b, ": ");
			} else {
				rc |= put(b, ", ");
			}
			rc |= mg_buf_append_str(b, item);
			first = false;
		}
		p = comma ? comma + 1 : end;
	}
	if (first && fallback) {
		rc |= mg_buf_append_str(b, name);
		rc |= put(b, ": ");
		rc |= put(b, fallback);
		first = false;
	}
	if (!first)
		rc |= put(b, "\r\n");
	return rc;
}

/* Writes the request head as it goes upstream into <c>->uout. */
static int build_upstream_head(struct conn *c, const struct mg_http_req *req)
{
	struct mg_buf *b = &c->uout;
	struct mg_str tok = daemon_token(c->p);
	char num[32];
	int rc = 0;

	rc |= mg_buf_append_str(b, req->method);
	rc |= put(b, " ");
	rc |= mg_buf_append_str(b, req->target);
	rc |= put(b, " HTTP/1.1\r\n");
	for (size_t i = 0; i < req->n_headers; i++) {
		if (drop_request_header(req->headers[i].name))
			continue;
		/* Responses are masked, so they must come as identity-encoded JSON
		 * (or text): ask for no compression, no protobuf. */
		if (mg_str_caseeq(req->headers[i].name, MG_STR("accept-encoding")) ||
		    mg_str_caseeq(req->headers[i].name, MG_STR("sec-websocket-extensions")))
			continue;
		if (mg_str_caseeq(req->headers[i].name, MG_STR("accept"))) {
			/* JSON (Table parameters kept), never protobuf */
			rc |= put_list_without(b, req->headers[i].name, req->headers[i].value,
					       "protobuf", "application/json");
			continue;
		}
		/* base64.channel.k8s.io carries the terminal as text frames the
		 * tunnel masker does not parse: never offered upstream. */
		if (mg_str_caseeq(req->headers[i].name, MG_STR("sec-websocket-protocol"))) {
			rc |= put_list_without(b, req->headers[i].name, req->headers[i].value,
					       "base64", NULL);
			continue;
		}
		rc |= mg_buf_append_str(b, req->headers[i].name);
		rc |= put(b, ": ");
		rc |= mg_buf_append_str(b, req->headers[i].value);
		rc |= put(b, "\r\n");
	}
	if (!c->p->o.creds && tok.len) {
		rc |= put(b, "Authorization: Bearer ");
		rc |= mg_buf_append_str(b, tok);
		rc |= put(b, "\r\n");
	}
	rc |= put(b, "Audit-ID: ");
	rc |= put(b, c->x.audit_id);
	rc |= put(b, "\r\n");
	if (req->body == MG_HTTP_BODY_LENGTH) {
		snprintf(num, sizeof(num), "Content-Length: %llu\r\n",
			 (unsigned long long)req->content_length);
		rc |= put(b, num);
	} else if (req->body == MG_HTTP_BODY_CHUNKED) {
		rc |= put(b, "Transfer-Encoding: chunked\r\n");
	}
	if (req->upgrade) {
		rc |= put(b, "Connection: Upgrade\r\nUpgrade: ");
		rc |= mg_buf_append_str(b, req->upgrade_proto);
		rc |= put(b, "\r\n");
	}
	/* With a provider, the credential and the final CRLF come when the
	 * worker has it (finish_upstream_head). */
	if (!c->p->o.creds)
		rc |= put(b, "\r\n");
	return rc ? -ENOBUFS : 0;
}

static void on_event(struct mg_loop *loop, int fd, uint32_t events, void *data);

/* A request that may be sent again if a reused connection turns out to
 * have been closed by the API server before it answered: no body and a
 * safe method (RFC 9110 §9.2.1), the rule Go's transport follows. */
static bool replayable(const struct conn *c)
{
	const struct exch *x = &c->x;

	return x->req_body == MG_HTTP_BODY_NONE && !x->upgrade &&
	       (!strcmp(x->method, "GET") || !strcmp(x->method, "HEAD") ||
		!strcmp(x->method, "OPTIONS"));
}

static int connect_upstream(struct conn *c);

/* Gives <c> an upstream connection to the pod's original destination: an
 * idle pooled one if there is one, else a new one. On a pooled one, a
 * replayable request (all of it is in uout now) is kept for a resend. */
static int attach_upstream(struct conn *c)
{
	struct mg_proxy *p = c->p;
	struct upstream *u;

	u = pool_take(p, &c->o.orig_dst);
	if (!u)
		return connect_upstream(c);
	c->x.pooled = true;
	p->st.pool_reused++;
	if (replayable(c) && !c->x.replay) {
		c->x.replay_len = mg_buf_size(&c->uout);
		c->x.replay = malloc(c->x.replay_len ?: 1);
		if (c->x.replay)
			memcpy(c->x.replay, mg_buf_head(&c->uout), c->x.replay_len);
	}
	u->side = (struct side){ c, u, true };
	c->up = u;
	return mg_loop_add_fd(p->o.loop, u->fd, EPOLLOUT | EPOLLIN, on_event, &u->side);
}

/* The reused upstream connection of <c> failed (closed, reset, write
 * error) before a byte of the response came: the API server closed it
 * idle as we reused it. A replayable request is sent once more, on a new
 * connection. Returns true if it was; false leaves everything as it was. */
static bool resend_on_new_upstream(struct conn *c)
{
	struct exch *x = &c->x;

	if (!x->active || !x->replay || x->resp_head || mg_buf_size(&c->uin) || c->tunnel)
		return false;
	upstream_free(c->p, c->up);
	c->up = NULL;
	c->u_eof = false;
	mg_buf_free(&c->uout);
	if (mg_buf_append(&c->uout, x->replay, x->replay_len) || connect_upstream(c)) {
		free(x->replay);
		x->replay = NULL;
		return false;
	}
	c->p->st.pool_resent++;
	mg_log_json("info", json_pack("{s:s,s:I,s:s}", "event", "upstream_resend", "conn",
				      (json_int_t)c->id, "auditID", x->audit_id));
	free(x->replay); /* once only */
	x->replay = NULL;
	return true;
}

/* Starts a new TLS connection to the pod's original destination. */
static int connect_upstream(struct conn *c)
{
	struct mg_proxy *p = c->p;
	struct sockaddr_storage ss;
	struct upstream *u;
	socklen_t sl;
	char ip[INET6_ADDRSTRLEN];

	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->dst = c->o.orig_dst;
	u->side = (struct side){ c, u, true };
	sl = from_abi(&u->dst, &ss);
	u->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->fd < 0) {
		free(u);
		return -errno;
	}
	setsockopt(u->fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	if (connect(u->fd, (struct sockaddr *)&ss, sl) && errno != EINPROGRESS) {
		int rc = -errno;

		close(u->fd);
		free(u);
		return rc;
	}
	u->connecting = true;
	u->since_ms = now_ms();
	u->ssl = SSL_new(p->o.client_ctx);
	if (!u->ssl) {
		close(u->fd);
		free(u);
		return -ENOMEM;
	}
	SSL_set_fd(u->ssl, u->fd);
	SSL_set_connect_state(u->ssl);
	/* The API server must present a certificate for the address the pod
	 * dialled, signed by the cluster CA: no name, no skip-verify. */
	ip_text(&u->dst, ip, sizeof(ip));
	if (mg_tls_client_prepare(u->ssl, ip)) {
		SSL_free(u->ssl);
		close(u->fd);
		free(u);
		return -EINVAL;
	}
	c->up = u;
	return mg_loop_add_fd(p->o.loop, u->fd, EPOLLOUT, on_event, &u->side);
}

/* ---- credentials ---- */

/* Worker side of a TokenReview: POSTs it with the daemon's credential. */
static void do_review(struct mg_proxy *p, struct cjob *j)
{
	json_t *req = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "authentication.k8s.io/v1",
				"kind", "TokenReview", "spec", "token", j->token);
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_t *resp = NULL, *st;
	long status = 0;

	json_decref(req); /* jansson keeps no copy past this; the body is wiped below */
	j->rc = body ? mg_kube_post_json(p->o.review_kube, "/apis/authentication.k8s.io/v1/tokenreviews",
					 body, &resp, &status, j->error, sizeof(j->error))
		     : -ENOMEM;
	if (body) {
		explicit_bzero(body, strlen(body));
		free(body);
	}
	if (!j->rc) {
		st = json_object_get(resp, "status");
		j->authenticated = json_is_true(json_object_get(st, "authenticated"));
		snprintf(j->username, sizeof(j->username), "%s",
			 json_string_value(json_object_get(json_object_get(st, "user"), "username"))
				 ?: "");
	}
	json_decref(resp);
}

/* Pool side of a job: the network call, on a worker thread. */
static void run_job(void *arg)
{
	struct cjob *j = arg;
	struct mg_creds_subject who;

	if (j->kind == JOB_REVIEW) {
		do_review(j->p, j);
		return;
	}
	who = (struct mg_creds_subject){ j->ns, j->pod, j->uid, j->sa, NULL };
	j->rc = mg_creds_get(j->p->o.creds, &who, &j->res);
}

static void job_free(struct cjob *j)
{
	if (j->token) {
		explicit_bzero(j->token, strlen(j->token));
		free(j->token);
	}
	mg_creds_result_free(&j->res);
	free(j);
}

static void job_done(void *arg, int status);

/* Queues a job for <c>'s current request, counted against <c>'s pod: a
 * credential fetch, or (with <token>, taken over on success) a
 * TokenReview. 0, -EDQUOT / -EAGAIN over the pool's limits (the caller
 * answers 429), -ENOMEM. */
static int submit_job(struct conn *c, int kind, char *token, const unsigned char *hash)
{
	struct cjob *j = calloc(1, sizeof(*j));
	int rc;

	if (!j)
		return -ENOMEM;
	j->p = c->p;
	j->kind = kind;
	j->token = token;
	if (hash)
		memcpy(j->hash, hash, 32);
	j->conn_id = c->id;
	snprintf(j->ns, sizeof(j->ns), "%s", c->ident.namespace);
	snprintf(j->pod, sizeof(j->pod), "%s", c->ident.name);
	snprintf(j->uid, sizeof(j->uid), "%s", c->ident.uid);
	snprintf(j->sa, sizeof(j->sa), "%s", c->ident.service_account);
	rc = mg_worker_submit(c->p->worker, c->o.pod_cgroup_id, run_job, job_done, j);
	if (rc) {
		j->token = NULL; /* still the caller's */
		job_free(j);
	}
	return rc;
}

static void pump(struct conn *c);
static void review_arrived(struct conn *c, struct cjob *j);

/* Completes the upstream head with the fetched credential and sends the
 * request on its way, or refuses it: never a fallback to another credential. */
static void creds_arrived(struct conn *c, struct cjob *j)
{
	struct mg_buf *b = &c->uout;
	int rc = 0;

	c->x.creds_wait = false;
	if (j->rc < 0 || !j->res.authorization) {
		char msg[400];

		c->p->st.creds_failed++;
		snprintf(msg, sizeof(msg), "mcpgate: no upstream credential: %s: %s",
			 j->res.reason[0] ? j->res.reason : "error", j->res.message);
		mg_log_json("warn", json_pack("{s:s,s:I,s:s,s:s,s:o}", "event", "creds_failed",
					      "conn", (json_int_t)c->id, "reason", j->res.reason,
					      "message", j->res.message, "pod", pod_json(c)));
		c->c_eof = true;
		reply_status(c, j->res.http_status ? j->res.http_status : 502, msg);
		pump(c);
		return;
	}
	rc |= put(b, "Authorization: ");
	rc |= put(b, j->res.authorization);
	rc |= put(b, "\r\n");
	for (size_t i = 0; i < j->res.n_headers; i++) {
		rc |= put(b, j->res.headers[i].name);
		rc |= put(b, ": ");
		rc |= put(b, j->res.headers[i].value);
		rc |= put(b, "\r\n");
	}
	rc |= put(b, "\r\n");
	if (rc) {
		reply_status(c, 431, "mcpgate: request head too large");
	} else if (!c->up && attach_upstream(c)) {
		c->p->st.upstream_failed++;
		reply_status(c, 502, "mcpgate: cannot connect to the API server");
	} else {
		c->p->st.requests++;
	}
	pump(c);
}

/* Loop side of a job: the result goes to its connection if that is still
 * waiting for it (the client may have gone meanwhile). */
static void job_done(void *arg, int status)
{
	struct cjob *j = arg;
	struct conn *c = NULL;

	if (!status)
		for (c = j->p->conns; c && c->id != j->conn_id; c = c->next)
			;
	if (c && c->x.active && j->kind == JOB_CREDS && c->x.creds_wait)
		creds_arrived(c, j);
	else if (c && c->x.active && j->kind == JOB_REVIEW && c->x.review_wait)
		review_arrived(c, j);
	job_free(j);
}

static bool after_review(struct conn *c);

/* The pod's own token must belong to the pod's ServiceAccount: the kernel
 * says which pod is talking, the token must agree. */
static bool review_verdict(struct conn *c, bool authenticated, const char *username)
{
	char want[400], msg[600];

	snprintf(want, sizeof(want), "system:serviceaccount:%s:%s", c->ident.namespace,
		 c->ident.service_account);
	if (authenticated && c->ident.known && !strcmp(username, want))
		return true;
	c->p->st.review_failed++;
	mg_log_json("warn", json_pack("{s:s,s:I,s:o,s:b,s:s,s:s}", "event", "token_review_failed",
				      "conn", (json_int_t)c->id, "pod", pod_json(c), "authenticated",
				      authenticated, "tokenUser", username, "expected", want));
	snprintf(msg, sizeof(msg),
		 "mcpgate: the bearer token does not belong to this pod's ServiceAccount (%s)", want);
	c->c_eof = true;
	reply_status(c, 401, msg);
	return false;
}

static struct review_entry *review_find(struct mg_proxy *p, const unsigned char *hash)
{
	uint64_t now = now_ms();

	for (size_t i = 0; i < REVIEW_CACHE; i++)
		if (p->reviews[i].expires_ms > now && !memcmp(p->reviews[i].hash, hash, 32))
			return &p->reviews[i];
	return NULL;
}

/* Checks the request's bearer token (from <req>, before it is dropped)
 * against the cache, or sends it to the worker for a TokenReview. */
static bool review_gate(struct conn *c, const struct mg_http_req *req)
{
	struct mg_str auth = mg_http_header(req->headers, req->n_headers, MG_STR("authorization"));
	unsigned char hash[32];
	struct review_entry *e;
	char *tok;
	int rc;

	if (auth.len <= 7 || strncasecmp(auth.ptr, "bearer ", 7)) {
		c->c_eof = true;
		reply_status(c, 401, "mcpgate: a bearer token is required (token review is on)");
		return true;
	}
	auth.ptr += 7;
	auth.len -= 7;
	while (auth.len && *auth.ptr == ' ') {
		auth.ptr++;
		auth.len--;
	}
	SHA256((const unsigned char *)auth.ptr, auth.len, hash);
	e = review_find(c->p, hash);
	if (e) {
		if (review_verdict(c, e->authenticated, e->username))
			return after_review(c);
		return true;
	}
	tok = strndup(auth.ptr, auth.len);
	rc = tok ? submit_job(c, JOB_REVIEW, tok, hash) : -ENOMEM;
	if (rc) {
		if (tok)
			explicit_bzero(tok, auth.len);
		free(tok);
		refuse_job(c, rc);
		return true;
	}
	c->x.review_wait = true;
	return true;
}

static void review_arrived(struct conn *c, struct cjob *j)
{
	struct mg_proxy *p = c->p;

	c->x.review_wait = false;
	if (j->rc) {
		mg_log_json("warn", json_pack("{s:s,s:I,s:s}", "event", "token_review_error", "conn",
					      (json_int_t)c->id, "error", j->error));
		c->c_eof = true;
		reply_status(c, 503, "mcpgate: token review failed; refusing the request");
	} else {
		struct review_entry *e = &p->reviews[p->review_next++ % REVIEW_CACHE];

		memcpy(e->hash, j->hash, 32);
		snprintf(e->username, sizeof(e->username), "%s", j->username);
		e->authenticated = j->authenticated;
		e->expires_ms = now_ms() + REVIEW_TTL_MS;
		if (review_verdict(c, j->authenticated, j->username))
			after_review(c);
	}
	pump(c);
}

/* Tries to parse a request head from cin and start its exchange. */
static bool start_exchange(struct conn *c)
{
	struct mg_http_req req;
	struct mg_http_err err;
	struct exch *x = &c->x;
	ssize_t n;
	int rc;

	if (!mg_buf_size(&c->cin))
		return false;
	/* The parser is stateless: re-run it only when a new line ended (or
	 * the head limit is reached), so a head trickling in byte by byte
	 * costs a bounded number of passes. */
	if (c->head_scanned && mg_buf_size(&c->cin) < 64 * 1024 &&
	    !memchr(mg_buf_head(&c->cin) + c->head_scanned - 1, '\n',
		    mg_buf_size(&c->cin) - c->head_scanned + 1))
		return false;
	n = mg_http_parse_req(&req, mg_buf_head(&c->cin), mg_buf_size(&c->cin), NULL, &err);
	if (n == 0) {
		c->head_scanned = mg_buf_size(&c->cin);
		return false;
	}
	c->head_scanned = 0;
	memset(x, 0, sizeof(*x));
	x->t0_ns = now_ns();
	new_uuid(x->audit_id);
	if (n < 0) {
		char msg[200];

		snprintf(msg, sizeof(msg), "mcpgate: malformed request: %s", err.reason);
		x->active = true;
		snprintf(x->method, sizeof(x->method), "-");
		reply_status(c, err.status, msg);
		c->c_eof = true; /* read nothing more from this client */
		return true;
	}
	x->active = true;
	snprintf(x->method, sizeof(x->method), "%.*s", (int)(req.method.len < 15 ? req.method.len : 15),
		 req.method.ptr);
	snprintf(x->path, sizeof(x->path), "%.*s",
		 (int)(req.target.len < PATH_LOG_MAX - 1 ? req.target.len : PATH_LOG_MAX - 1),
		 req.target.ptr);
	{
		char scratch[MG_REQINFO_SCRATCH_LEN(8192, 16)];
		struct mg_reqinfo_err rerr;
		struct mg_reqinfo ri;

		rc = mg_reqinfo_parse(&ri, req.method, req.target, scratch, sizeof(scratch), &rerr);
		if (rc) {
			char msg[200];

			snprintf(msg, sizeof(msg), "mcpgate: request target refused: %s",
				 rc == -ENOBUFS ? "too long" : rerr.reason);
			mg_buf_consume(&c->cin, (size_t)n);
			c->c_eof = true;
			reply_status(c, rc == -ENOBUFS ? 414 : 400, msg);
			return true;
		}
		x->resource_req = ri.is_resource_request;
		x->watch = ri.watch;
		snprintf(x->verb, sizeof(x->verb), "%.*s", (int)ri.verb.len, ri.verb.ptr);
		mg_reqinfo_format_resource(&ri, x->resource, sizeof(x->resource));
		snprintf(x->res_only, sizeof(x->res_only), "%.*s", (int)ri.resource.len,
			 ri.resource.ptr);
		snprintf(x->api_group, sizeof(x->api_group), "%.*s", (int)ri.api_group.len,
			 ri.api_group.ptr);
		snprintf(x->api_version, sizeof(x->api_version), "%.*s", (int)ri.api_version.len,
			 ri.api_version.ptr);
		snprintf(x->ns, sizeof(x->ns), "%.*s", (int)ri.namespace.len, ri.namespace.ptr);
		snprintf(x->name, sizeof(x->name), "%.*s", (int)ri.name.len, ri.name.ptr);
	}
	if (c->limited) {
		char msg[200];

		snprintf(msg, sizeof(msg), "mcpgate: too many connections%s (at most %u); retry later",
			 strcmp(c->limited, "max_connections") ? " from this pod" : "",
			 strcmp(c->limited, "max_connections") ? c->p->o.max_conns_per_pod
							       : c->p->o.max_conns);
		mg_buf_consume(&c->cin, (size_t)n);
		reply_limited(c, NULL, c->limited, msg);
		return true;
	}
	x->head_req = mg_str_eq(req.method, MG_STR("HEAD"));
	x->upgrade = req.upgrade;
	x->client_keep_alive = req.keep_alive;
	x->client_http11 = req.minor == 1;
	x->req_body = req.body;
	x->req_left = req.content_length;
	x->req_done = req.body == MG_HTTP_BODY_NONE ||
		      (req.body == MG_HTTP_BODY_LENGTH && req.content_length == 0);
	if (req.body == MG_HTTP_BODY_CHUNKED)
		mg_http_chunked_init(&x->req_ch, 0);

	rc = build_upstream_head(c, &req);
	mg_buf_consume(&c->cin, (size_t)n);
	if (rc) {
		reply_status(c, 431, "mcpgate: request head too large");
		return true;
	}
	if (c->p->o.review_kube)
		return review_gate(c, &req);
	return after_review(c);
}

/* Once the pod's token is known good (or not checked): fetch the
 * credential, or go upstream with the daemon's. */
static bool after_review(struct conn *c)
{
	if (c->p->o.creds) {
		int rc = submit_job(c, JOB_CREDS, NULL, NULL);

		if (rc) {
			refuse_job(c, rc);
			return true;
		}
		c->x.creds_wait = true;
		return true;
	}
	if (!c->up && attach_upstream(c)) {
		c->p->st.upstream_failed++;
		reply_status(c, 502, "mcpgate: cannot connect to the API server");
		return true;
	}
	c->p->st.requests++;
	return true;
}

/* Moves request body bytes cin -> uout. */
static bool forward_request_body(struct conn *c)
{
	struct exch *x = &c->x;
	bool progress = false;

	while (!x->req_done && !x->creds_wait && !x->review_wait && mg_buf_size(&c->cin) &&
	       mg_buf_room(&c->uout) > 64) {
		size_t room = mg_buf_room(&c->uout) - 32;

		if (x->req_body == MG_HTTP_BODY_LENGTH) {
			size_t n = mg_buf_size(&c->cin);

			if (n > x->req_left)
				n = (size_t)x->req_left;
			if (n > room)
				n = room;
			mg_buf_append(&c->uout, mg_buf_head(&c->cin), n);
			mg_buf_consume(&c->cin, n);
			x->req_left -= n;
			x->bytes_in += n;
			x->req_done = x->req_left == 0;
			progress = true;
		} else {
			struct mg_http_err err;
			struct mg_str data;
			size_t avail = mg_buf_size(&c->cin);
			ssize_t n;

			if (avail > room / 2)
				avail = room / 2;
			n = mg_http_chunked_feed(&x->req_ch, mg_buf_head(&c->cin), avail, &data, &err);
			if (n < 0) {
				/* The upstream already has part of this request:
				 * it cannot be completed, so both sides go. */
				char msg[200];

				snprintf(msg, sizeof(msg), "mcpgate: malformed chunked body: %s",
					 err.reason);
				reply_status(c, 400, msg);
				c->c_eof = true;
				upstream_free(c->p, c->up);
				c->up = NULL;
				return true;
			}
			if (data.len) {
				char h[MG_HTTP_CHUNK_HEADER_MAX];

				mg_buf_append(&c->uout, h, mg_http_chunk_header(h, data.len));
				mg_buf_append_str(&c->uout, data);
				put(&c->uout, MG_HTTP_CHUNK_CRLF);
				x->bytes_in += data.len;
			}
			mg_buf_consume(&c->cin, (size_t)n);
			if (mg_http_chunked_done(&x->req_ch)) {
				put(&c->uout, MG_HTTP_CHUNK_LAST);
				x->req_done = true;
			}
			if (n == 0)
				break;
			progress = true;
		}
	}
	return progress;
}

/* Response headers not passed to the pod: hop-by-hop ones, regenerated. */
static bool drop_response_header(struct mg_str name, bool upgrade)
{
	if (upgrade)
		return false;
	return mg_str_caseeq(name, MG_STR("connection")) ||
	       mg_str_caseeq(name, MG_STR("keep-alive")) ||
	       mg_str_caseeq(name, MG_STR("transfer-encoding")) ||
	       mg_str_caseeq(name, MG_STR("proxy-connection")) ||
	       mg_str_caseeq(name, MG_STR("trailer")) || mg_str_caseeq(name, MG_STR("upgrade")) ||
	       mg_str_caseeq(name, MG_STR("content-length"));
}

/* ---- masking ---- */

/* The masker's sink: flushes a held response head on the first output,
 * then frames each piece for the client. */
static int mask_sink(void *ctx, const char *buf, size_t len)
{
	struct conn *c = ctx;
	struct exch *x = &c->x;
	int rc = 0;

	if (!len)
		return 0;
	if (x->held_head) {
		rc |= mg_buf_append(&c->cout, x->held_head, x->held_len);
		free(x->held_head);
		x->held_head = NULL;
	}
	if (x->resp_chunk_out) {
		char h[MG_HTTP_CHUNK_HEADER_MAX];

		rc |= mg_buf_append(&c->cout, h, mg_http_chunk_header(h, len));
	}
	rc |= mg_buf_append(&c->cout, buf, len);
	if (x->resp_chunk_out)
		rc |= put(&c->cout, MG_HTTP_CHUNK_CRLF);
	x->bytes_out += len;
	return rc ? -ENOBUFS : 0;
}

/* Masking failed: a Status if the client has seen nothing of this
 * response yet, else the connection is cut. Never raw bytes. */
static void mask_failed(struct conn *c, const char *why)
{
	struct exch *x = &c->x;
	char logpath[PATH_LOG_MAX + 256];

	c->p->st.mask_failed++;
	loggable_path(c->p, x->path, logpath, sizeof(logpath));
	mg_log_json("warn", json_pack("{s:s,s:I,s:s,s:s,s:o}", "event", "mask_failed", "conn",
				      (json_int_t)c->id, "path", logpath, "reason", why, "pod",
				      pod_json(c)));
	upstream_free(c->p, c->up);
	c->up = NULL;
	if (x->held_head) {
		char msg[256];

		free(x->held_head);
		x->held_head = NULL;
		snprintf(msg, sizeof(msg), "mcpgate: the response cannot be masked safely: %s", why);
		reply_status(c, 502, msg);
	} else {
		c->dead = true;
	}
}

/* Hands decoded body bytes to the client: through the masker when this
 * response is masked, else framed as they are. 0, or -1 when it failed. */
static int deliver(struct conn *c, const char *data, size_t len)
{
	struct exch *x = &c->x;

	if (x->mask) {
		struct mg_mask_sink sink = { mask_sink, c };

		if (mg_mask_body_feed(x->mask, data, len, &sink)) {
			const struct mg_mask_err *e = mg_mask_body_error(x->mask);

			mask_failed(c, e && e->reason ? e->reason : "output overflow");
			return -1;
		}
		return 0;
	}
	if (x->resp_chunk_out) {
		char h[MG_HTTP_CHUNK_HEADER_MAX];

		mg_buf_append(&c->cout, h, mg_http_chunk_header(h, len));
	}
	mg_buf_append(&c->cout, data, len);
	if (x->resp_chunk_out)
		put(&c->cout, MG_HTTP_CHUNK_CRLF);
	x->bytes_out += len;
	return 0;
}

/* The body ended: flush the masker, close the chunked coding. */
static int end_body(struct conn *c)
{
	struct exch *x = &c->x;

	if (x->mask) {
		struct mg_mask_sink sink = { mask_sink, c };

		if (mg_mask_body_finish(x->mask, &sink)) {
			const struct mg_mask_err *e = mg_mask_body_error(x->mask);

			mask_failed(c, e && e->reason ? e->reason : "incomplete body");
			return -1;
		}
		if (x->held_head) { /* an empty body: the head goes now */
			mg_buf_append(&c->cout, x->held_head, x->held_len);
			free(x->held_head);
			x->held_head = NULL;
		}
	}
	if (x->resp_chunk_out)
		put(&c->cout, MG_HTTP_CHUNK_LAST);
	x->resp_done = true;
	return 0;
}

/* Decides how the response body must be masked. Returns 0 (x->mask set or
 * left NULL for bodies that need none), or -1 after refusing the response:
 * what cannot be masked does not pass. */
static int choose_mask(struct conn *c, const struct mg_http_resp *resp)
{
	struct exch *x = &c->x;
	struct mg_mask_body_opts mo = { 0 };
	enum mg_mask_ctype ct;
	bool resource = x->resource_req;
	char why[160];

	if (x->resp_body == MG_HTTP_BODY_NONE ||
	    (x->resp_body == MG_HTTP_BODY_LENGTH && x->resp_left == 0))
		return 0;
	ct = resp->has_content_type ? mg_mask_content_type(resp->content_type) : MG_MASK_CT_REFUSE;
	if (!resource && (ct == MG_MASK_CT_REFUSE || ct == MG_MASK_CT_PROTOBUF) &&
	    (!strncmp(x->path, "/openapi/", 9) || !strcmp(x->path, "/metrics")))
		return 0; /* API schemas and metrics: no API objects in there */
	if (ct == MG_MASK_CT_PROTOBUF || ct == MG_MASK_CT_REFUSE) {
		snprintf(why, sizeof(why), "content type %.*s", (int)resp->content_type.len,
			 resp->content_type.ptr ? resp->content_type.ptr : "");
		goto refuse;
	}
	if (resp->has_content_encoding) {
		if (mg_str_caseeq(resp->content_encoding, MG_STR("gzip")))
			mo.gzip = true;
		else if (!mg_str_caseeq(resp->content_encoding, MG_STR("identity"))) {
			snprintf(why, sizeof(why), "content encoding %.*s",
				 (int)resp->content_encoding.len, resp->content_encoding.ptr);
			goto refuse;
		}
	}
	mo.kind = ct == MG_MASK_CT_TEXT ? MG_MASK_KIND_TEXT
		  : x->watch		 ? MG_MASK_KIND_JSON_STREAM
					 : MG_MASK_KIND_JSON;
	mo.resource = mg_str_of(x->res_only);
	x->mask = mg_mask_body_new(c->p->o.mask_cfg, &mo);
	if (!x->mask) {
		snprintf(why, sizeof(why), "out of memory");
		goto refuse;
	}
	x->mask_gzip = mo.gzip;
	return 0;
refuse:
	c->p->st.mask_failed++;
	upstream_free(c->p, c->up);
	c->up = NULL;
	{
		char msg[256];

		snprintf(msg, sizeof(msg), "mcpgate: refusing a response that cannot be masked (%s)",
			 why);
		reply_status(c, 502, msg);
	}
	return -1;
}

/* Parses the response head in uin and writes its rewritten form to cout
 * (or holds it, for a masked body, until the first masked bytes exist). */
static bool take_response_head(struct conn *c)
{
	struct exch *x = &c->x;
	struct mg_http_resp resp;
	struct mg_http_err err;
	struct mg_buf head;
	char line[96];
	ssize_t n;
	bool close_client;

	if (!mg_buf_size(&c->uin))
		return false;
	n = mg_http_parse_resp(&resp, mg_buf_head(&c->uin), mg_buf_size(&c->uin), NULL, &err);
	if (n == 0)
		return false;
	if (n < 0) {
		char msg[200];

		snprintf(msg, sizeof(msg), "mcpgate: bad response from the API server: %s",
			 err.reason);
		upstream_free(c->p, c->up);
		c->up = NULL;
		reply_status(c, 502, msg);
		return true;
	}
	/* 1xx other than 101 (100 Continue): pass on, keep waiting. */
	if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
		snprintf(line, sizeof(line), "HTTP/1.1 %d Continue\r\n\r\n", resp.status);
		put(&c->cout, line);
		mg_buf_consume(&c->uin, (size_t)n);
		return true;
	}
	x->status = resp.status;
	x->resp_head = true;
	if (resp.status == 101 && !x->upgrade) {
		upstream_free(c->p, c->up);
		c->up = NULL;
		reply_status(c, 502, "mcpgate: unsolicited protocol switch from the API server");
		return true;
	}
	x->resp_body = mg_http_resp_body_kind(&resp, x->head_req);
	x->resp_left = resp.content_length;
	x->up_keep_alive = resp.keep_alive;
	if (x->resp_body == MG_HTTP_BODY_CHUNKED)
		mg_http_chunked_init(&x->resp_ch, 0);
	if (resp.status != 101 && choose_mask(c, &resp))
		return true;
	/* A body delimited by close, or a masked one (its length changes),
	 * reaches an HTTP/1.1 client chunked, so the connection survives it. */
	x->resp_chunk_out = x->client_http11 &&
			    (x->resp_body == MG_HTTP_BODY_CHUNKED ||
			     ((x->resp_body == MG_HTTP_BODY_CLOSE || x->mask) && x->client_keep_alive));
	if (!x->client_http11 && x->resp_body != MG_HTTP_BODY_NONE &&
	    (x->resp_body == MG_HTTP_BODY_CHUNKED || x->mask))
		x->client_keep_alive = false; /* HTTP/1.0: the body ends with the connection */
	close_client = !x->client_keep_alive ||
		       ((x->resp_body == MG_HTTP_BODY_CLOSE || x->mask) && !x->resp_chunk_out);

	size_t cout_before = c->cout.len;
	int hrc = 0;

	mg_buf_init(&head, 80 * 1024);
	snprintf(line, sizeof(line), "HTTP/1.1 %d %.*s\r\n", resp.status,
		 (int)(resp.reason.len < 60 ? resp.reason.len : 60), resp.reason.ptr);
	put(&head, line);
	for (size_t i = 0; i < resp.n_headers; i++) {
		if (drop_response_header(resp.headers[i].name, resp.status == 101))
			continue;
		/* A masked gzip body leaves re-compressed: the encoding stays. */
		hrc |= mg_buf_append_str(&head, resp.headers[i].name);
		hrc |= put(&head, ": ");
		hrc |= mg_buf_append_str(&head, resp.headers[i].value);
		hrc |= put(&head, "\r\n");
	}
	if (resp.status != 101) {
		if (x->resp_chunk_out)
			put(&head, "Transfer-Encoding: chunked\r\n");
		else if (!x->mask && (x->resp_body == MG_HTTP_BODY_LENGTH ||
				      (resp.has_content_length && x->head_req))) {
			snprintf(line, sizeof(line), "Content-Length: %llu\r\n",
				 (unsigned long long)resp.content_length);
			put(&head, line);
		}
		if (close_client)
			put(&head, "Connection: close\r\n");
	}
	hrc |= put(&head, "\r\n");
	mg_buf_consume(&c->uin, (size_t)n);
	if (hrc) {
		mg_buf_free(&head);
		upstream_free(c->p, c->up);
		c->up = NULL;
		reply_status(c, 502, "mcpgate: response head too large");
		return true;
	}
	if (x->mask) {
		/* Held: if masking fails before any byte is out, the client
		 * gets a Status instead of half a response. */
		x->held_len = mg_buf_size(&head);
		x->held_head = malloc(x->held_len);
		if (!x->held_head) {
			mg_buf_free(&head);
			upstream_free(c->p, c->up);
			c->up = NULL;
			reply_status(c, 503, "mcpgate: out of memory");
			return true;
		}
		memcpy(x->held_head, mg_buf_head(&head), x->held_len);
	} else {
		mg_buf_append(&c->cout, mg_buf_head(&head), mg_buf_size(&head));
	}
	mg_buf_free(&head);

	if (resp.status == 101 && (!strcmp(x->resource, "pods/exec") ||
				   !strcmp(x->resource, "pods/attach"))) {
		/* The terminal stream is masked frame by frame; a protocol we
		 * cannot parse does not get a tunnel. */
		enum mg_tunmask_proto tp = 0;

		if (mg_str_caseeq(resp.upgrade_proto, MG_STR("websocket")))
			tp = MG_TUNMASK_WEBSOCKET;
		else if (resp.upgrade_proto.len >= 4 && !strncasecmp(resp.upgrade_proto.ptr, "SPDY", 4))
			tp = MG_TUNMASK_SPDY;
		c->tmask = tp ? mg_tunmask_new(tp, c->p->o.mask_cfg) : NULL;
		if (!c->tmask) {
			c->cout.len = cout_before; /* the 101 head must not go out */
			if (c->cout.off > c->cout.len)
				c->cout.off = c->cout.len;
			upstream_free(c->p, c->up);
			c->up = NULL;
			reply_status(c, 502, "mcpgate: exec/attach over an upgrade protocol that "
					     "cannot be masked");
			return true;
		}
	}
	if (resp.status == 101 && !c->tmask && strcmp(x->resource, "pods/portforward")) {
		/* pods/proxy, services/proxy, nodes/proxy (which reaches the
		 * kubelet's own exec) would be tunnels nothing could mask. */
		c->cout.len = cout_before;
		if (c->cout.off > c->cout.len)
			c->cout.off = c->cout.len;
		upstream_free(c->p, c->up);
		c->up = NULL;
		reply_status(c, 403, "mcpgate: protocol upgrades are allowed for exec, attach and "
				     "port-forward only");
		return true;
	}
	if (resp.status == 101) {
		c->tunnel = true;
		c->p->st.upgrades++;
		x->resp_done = x->req_done = true;
		finish_exchange(c, "allow");
		return true;
	}
	if (x->resp_body == MG_HTTP_BODY_NONE ||
	    (x->resp_body == MG_HTTP_BODY_LENGTH && x->resp_left == 0))
		end_body(c);
	/* Not close_after_flush yet: the head of a masked body is held and
	 * the body may still be on its way, so cout can be empty long before
	 * the response is out. complete_exchange() closes. */
	x->close_client = close_client;
	return true;
}

/* Moves response body bytes uin -> cout (through the masker when it
 * applies), re-chunking as needed. The masker may write more than it
 * reads (markers), so input is fed only while cout has ample room. */
static bool forward_response_body(struct conn *c)
{
	struct exch *x = &c->x;
	bool progress = false;

	while (!x->resp_done && !c->dead && mg_buf_room(&c->cout) > 160 * 1024 / 2 + 32 * 1024) {
		size_t avail = mg_buf_size(&c->uin);

		if (avail > IO_CHUNK)
			avail = IO_CHUNK;
		if (x->resp_body == MG_HTTP_BODY_CHUNKED) {
			struct mg_http_err err;
			struct mg_str data;
			ssize_t n;

			if (!avail)
				break;
			n = mg_http_chunked_feed(&x->resp_ch, mg_buf_head(&c->uin), avail, &data,
						 &err);
			if (n < 0) {
				/* Mid-stream: the client has part of a body; all we can
				 * do is cut the connection. */
				mg_log_json("warn", json_pack("{s:s,s:I,s:s}", "event",
							      "bad_upstream_chunk", "conn",
							      (json_int_t)c->id, "reason",
							      err.reason));
				c->dead = true;
				return true;
			}
			if (data.len && deliver(c, data.ptr, data.len))
				return true;
			mg_buf_consume(&c->uin, (size_t)n);
			if (mg_http_chunked_done(&x->resp_ch) && end_body(c))
				return true;
			if (n == 0)
				break;
			progress = true;
			continue;
		}
		if (x->resp_body == MG_HTTP_BODY_CLOSE && !avail && c->u_eof) {
			x->up_keep_alive = false;
			end_body(c);
			return true;
		}
		if (!avail)
			break;
		if (x->resp_body == MG_HTTP_BODY_LENGTH && avail > x->resp_left)
			avail = (size_t)x->resp_left;
		if (deliver(c, mg_buf_head(&c->uin), avail))
			return true;
		mg_buf_consume(&c->uin, avail);
		if (x->resp_body == MG_HTTP_BODY_LENGTH) {
			x->resp_left -= avail;
			if (x->resp_left == 0 && end_body(c))
				return true;
		}
		progress = true;
	}
	return progress;
}

/* The exchange is over on both sides: log it, recycle what can be. */
static void complete_exchange(struct conn *c)
{
	struct exch *x = &c->x;
	bool reuse = x->up_keep_alive && !mg_buf_size(&c->uin) && !mg_buf_size(&c->uout) &&
		     c->up && !c->u_eof;

	if (x->close_client)
		c->close_after_flush = true;
	finish_exchange(c, "allow");
	if (c->up) {
		if (reuse) {
			pool_put(c->p, c->up);
		} else {
			upstream_free(c->p, c->up);
		}
		c->up = NULL;
	}
	c->u_eof = false;
	c->head_since_ms = now_ms();
	/* An idle keep-alive connection keeps no buffer memory. */
	if (!mg_buf_size(&c->cout))
		buf_drop(c->p, &c->cout);
	if (!mg_buf_size(&c->cin))
		buf_drop(c->p, &c->cin);
	buf_drop(c->p, &c->uin);
	buf_drop(c->p, &c->uout);
}

/* ---- I/O ---- */

/* Reads from an SSL into <b>. Returns >0 bytes, 0 would block, -1 EOF,
 * -2 error. Reads land on the stack first, so an idle connection holds no
 * buffer memory at all (one extra copy, cheap next to the decryption). */
static int ssl_read_into(SSL *ssl, struct mg_buf *b)
{
	char tmp[IO_CHUNK];
	size_t want = mg_buf_room(b);
	int r;

	if (want == 0)
		return 0;
	if (want > IO_CHUNK)
		want = IO_CHUNK;
	ERR_clear_error();
	r = SSL_read(ssl, tmp, (int)want);
	if (r > 0) {
		if (mg_buf_append(b, tmp, (size_t)r))
			return -2;
		return r;
	}
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		return -1;
	case SSL_ERROR_SYSCALL:
		return ERR_peek_error() ? -2 : -1; /* EOF without close_notify */
	default:
		return -2;
	}
}

/* Writes as much of <b> as the SSL takes. Returns bytes written, -2 error. */
static int ssl_write_from(SSL *ssl, struct mg_buf *b, uint64_t *counter)
{
	int total = 0;

	while (mg_buf_size(b)) {
		size_t n = mg_buf_size(b);
		int r;

		if (n > IO_CHUNK)
			n = IO_CHUNK;
		ERR_clear_error();
		r = SSL_write(ssl, mg_buf_head(b), (int)n);
		if (r > 0) {
			mg_buf_consume(b, (size_t)r);
			total += r;
			*counter += (uint64_t)r;
			continue;
		}
		switch (SSL_get_error(ssl, r)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return total;
		default:
			return -2;
		}
	}
	return total;
}

/* Advances the upstream connection: TCP connect, then TLS handshake. */
static int upstream_progress(struct conn *c)
{
	struct upstream *u = c->up;
	int r;

	if (u->connecting) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr)
			return -1;
		/* Still connecting: getpeername fails until the handshake is done. */
		{
			struct sockaddr_storage ss;
			socklen_t l = sizeof(ss);

			if (getpeername(u->fd, (struct sockaddr *)&ss, &l))
				return 0;
		}
		u->connecting = false;
	}
	if (!u->hs_done) {
		ERR_clear_error();
		r = SSL_do_handshake(u->ssl);
		if (r == 1) {
			u->hs_done = true;
			return 1;
		}
		r = SSL_get_error(u->ssl, r);
		if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
			return 0;
		mg_log_json("warn",
			    json_pack("{s:s,s:I,s:s}", "event", "upstream_tls_failed", "conn",
				      (json_int_t)c->id, "error",
				      X509_verify_cert_error_string(SSL_get_verify_result(u->ssl))));
		return -1;
	}
	return 1;
}

static bool pump_once(struct conn *c)
{
	struct mg_proxy *p = c->p;
	bool progress = false;
	int r;

	if (!c->hs_done) {
		ERR_clear_error();
		r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			r = SSL_get_error(c->ssl, r);
			if (r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE) {
				p->st.tls_failed++;
				mg_log_json("warn", json_pack("{s:s,s:I,s:o}", "event",
							      "client_tls_failed", "conn",
							      (json_int_t)c->id, "pod", pod_json(c)));
				c->dead = true;
			}
			return false;
		}
		c->hs_done = true;
		c->head_since_ms = now_ms();
		progress = true;
	}

	/* pod -> cin */
	if (!c->c_eof && !c->close_after_flush) {
		r = ssl_read_into(c->ssl, &c->cin);
		if (r > 0)
			progress = true;
		else if (r < 0) {
			c->c_eof = true;
			progress = true;
		}
	}

	/* cin -> uout */
	if (c->tunnel) {
		size_t n = mg_buf_size(&c->cin);

		if (n > mg_buf_room(&c->uout))
			n = mg_buf_room(&c->uout);
		if (n) {
			mg_buf_append(&c->uout, mg_buf_head(&c->cin), n);
			mg_buf_consume(&c->cin, n);
			progress = true;
		}
	} else if (!c->x.active && !c->close_after_flush) {
		progress |= start_exchange(c);
	}
	if (c->x.active && !c->tunnel && !c->x.req_done)
		progress |= forward_request_body(c);

	/* upstream */
	if (c->up) {
		r = upstream_progress(c);
		if (r < 0) {
			p->st.upstream_failed++;
			upstream_free(p, c->up);
			c->up = NULL;
			if (c->x.active && !c->x.resp_head && !c->tunnel)
				reply_status(c, 502, "mcpgate: cannot reach the API server over TLS");
			else
				c->dead = true;
			return true;
		}
		if (r > 0) {
			uint64_t dummy = 0;

			if (mg_buf_size(&c->uout)) {
				r = ssl_write_from(c->up->ssl, &c->uout, &dummy);
				if (r < 0 && resend_on_new_upstream(c))
					return true;
				if (r < 0 && c->x.active && !c->x.resp_head && !c->tunnel) {
					upstream_free(p, c->up);
					c->up = NULL;
					reply_status(c, 502, "mcpgate: the API server closed the connection");
					return true;
				}
				if (r < 0) {
					c->dead = true;
					return true;
				}
				if (r > 0) {
					p->st.bytes_up += (uint64_t)r;
					progress = true;
				}
			}
			if (!c->u_eof) {
				r = ssl_read_into(c->up->ssl, &c->uin);
				if (r > 0)
					progress = true;
				else if (r == -2 && c->x.active && c->x.resp_head) {
					c->dead = true; /* a cut body must not look complete */
					return true;
				} else if (r < 0) {
					c->u_eof = true;
					progress = true;
				}
			}
		}
	}

	/* uin -> cout */
	if (c->tunnel && c->tmask) {
		ssize_t n = 0;

		if (mg_buf_size(&c->uin))
			n = mg_tunmask_feed(c->tmask, mg_buf_head(&c->uin), mg_buf_size(&c->uin),
					    &c->cout);
		if (n < 0) {
			mg_log_json("warn", json_pack("{s:s,s:I,s:i}", "event", "tunnel_mask_failed",
						      "conn", (json_int_t)c->id, "rc", (int)n));
			c->p->st.mask_failed++;
			c->dead = true;
			return true;
		}
		if (n > 0) {
			mg_buf_consume(&c->uin, (size_t)n);
			progress = true;
		}
		if (c->u_eof && !mg_buf_size(&c->uin) && !c->tmask_drained) {
			if (mg_tunmask_flush(c->tmask, &c->cout)) {
				c->dead = true;
				return true;
			}
			c->tmask_drained = true;
			progress = true;
		}
	} else if (c->tunnel) {
		size_t n = mg_buf_size(&c->uin);

		if (n > mg_buf_room(&c->cout))
			n = mg_buf_room(&c->cout);
		if (n) {
			mg_buf_append(&c->cout, mg_buf_head(&c->uin), n);
			mg_buf_consume(&c->uin, n);
			progress = true;
		}
	} else if (c->x.active) {
		if (!c->x.resp_head)
			progress |= take_response_head(c);
		if (c->x.active && c->x.resp_head && !c->x.resp_done)
			progress |= forward_response_body(c);
		if (c->x.active && !c->x.resp_head && c->u_eof && !mg_buf_size(&c->uin) &&
		    resend_on_new_upstream(c))
			return true;
		if (c->x.active && !c->x.resp_head && c->u_eof && !mg_buf_size(&c->uin)) {
			upstream_free(p, c->up);
			c->up = NULL;
			c->u_eof = false;
			reply_status(c, 502, "mcpgate: the API server closed the connection");
			progress = true;
		}
		if (c->x.active && c->x.resp_head && !c->x.resp_done && c->u_eof &&
		    !mg_buf_size(&c->uin) && c->x.resp_body != MG_HTTP_BODY_CLOSE) {
			mg_log_json("warn", json_pack("{s:s,s:I}", "event", "upstream_cut_body", "conn",
						      (json_int_t)c->id));
			c->dead = true;
			return true;
		}
		if (c->x.active && c->x.resp_done && c->x.req_done) {
			complete_exchange(c);
			progress = true;
		}
	}

	/* cout -> pod */
	if (mg_buf_size(&c->cout)) {
		uint64_t before = p->st.bytes_down;

		r = ssl_write_from(c->ssl, &c->cout, &p->st.bytes_down);
		if (r < 0) {
			c->dead = true;
			return true;
		}
		if (p->st.bytes_down != before) {
			progress = true;
			c->wstall_ms = 0; /* the client reads: the stall clock restarts */
		}
	}
	return progress;
}

/* What each socket waits for now. */
static void rearm(struct conn *c)
{
	struct mg_loop *l = c->p->o.loop;
	uint32_t ce = 0, ue = 0;

	if (!c->hs_done) {
		ce = EPOLLIN | (SSL_want_write(c->ssl) ? EPOLLOUT : 0);
	} else {
		if (!c->c_eof && !c->close_after_flush && mg_buf_room(&c->cin))
			ce |= EPOLLIN;
		if (mg_buf_size(&c->cout) || SSL_want_write(c->ssl))
			ce |= EPOLLOUT;
	}
	mg_loop_mod_fd(l, c->fd, ce);
	if (c->up) {
		struct upstream *u = c->up;

		if (u->connecting)
			ue = EPOLLOUT;
		else {
			if (!c->u_eof && mg_buf_room(&c->uin))
				ue |= EPOLLIN;
			if (mg_buf_size(&c->uout) || SSL_want_write(u->ssl) || !u->hs_done)
				ue |= EPOLLOUT;
			if (!u->hs_done)
				ue |= EPOLLIN;
		}
		mg_loop_mod_fd(l, u->fd, ue);
	}
}

static void pump(struct conn *c)
{
	for (int i = 0; i < 64 && !c->dead && pump_once(c); i++)
		;
	c->last_ms = now_ms();
	if (!mg_buf_size(&c->cout))
		c->wstall_ms = 0;
	else if (!c->wstall_ms)
		c->wstall_ms = c->last_ms;
	if (!c->dead) {
		/* Tunnels end when both directions ended and drained. */
		if (c->tunnel && c->c_eof && !mg_buf_size(&c->cin) && !mg_buf_size(&c->uout) &&
		    c->up && c->up->hs_done)
			SSL_shutdown(c->up->ssl);
		if (c->tunnel && c->u_eof && !mg_buf_size(&c->uin) && !mg_buf_size(&c->cout)) {
			c->dead = true;
		}
		if (c->close_after_flush && !mg_buf_size(&c->cout))
			c->dead = true;
		if (!c->tunnel && !c->x.active && c->c_eof && !mg_buf_size(&c->cout))
			c->dead = true;
		/* EOF mid-exchange is an abort, unless the client already sent
		 * its whole request and said it would send no other: then it
		 * is a half-close, and the answer still goes out. */
		if (!c->tunnel && c->x.active && c->c_eof && !c->close_after_flush &&
		    !(c->x.req_done && !c->x.client_keep_alive))
			c->dead = true;
	}
	if (c->dead) {
		if (c->x.active) {
			if (!c->x.status)
				c->x.status = 499; /* nginx's "client closed request" */
			finish_exchange(c, "aborted");
		}
		if (c->hs_done)
			SSL_shutdown(c->ssl);
		log_close(c, c->tunnel ? "tunnel closed" : "closed");
		conn_free(c);
		return;
	}
	rearm(c);
}

static void on_event(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct side *s = data;

	(void)loop;
	(void)fd;
	if (!s->c)
		return;
	/* Reported whatever the interest: without this a reset peer whose fd
	 * we are not reading would wake us in a loop. */
	if (events & (EPOLLERR | EPOLLHUP)) {
		if (s->upstream)
			s->c->u_eof = true;
		else
			s->c->c_eof = true;
	}
	pump(s->c);
}

/* ---- accept ---- */

/* RST rather than FIN: the peer learns at once it was turned away. */
static void reset_close(int fd)
{
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){ 1, 0 }, sizeof(struct linger));
	close(fd);
}

static void reject(struct mg_proxy *p, int fd, const struct mg_abi_addr *client, const char *why)
{
	char cli[64];

	p->st.rejected_no_origin++;
	mg_log_json("warn", json_pack("{s:s,s:s,s:s}", "event", "reject", "client",
				      mg_config_fmt_addr(client, cli, sizeof(cli)), "reason", why));
	reset_close(fd);
}

/* The kernel recorded an origin, but the pods module has no identity for
 * its pod cgroup (unknown cgroup, or a pod whose metadata is not known:
 * deleted, or not listed yet). Without an identity there is no credential
 * to choose and nothing to audit against, and the daemon's own credential
 * must never serve an unknown caller: reset, whatever the provider. Logged
 * once per pod cgroup id (recent ones), counted every time. */
static void reject_unknown_pod(struct mg_proxy *p, int fd, const struct mg_abi_addr *client,
			       const struct mg_abi_origin *o)
{
	char cli[64], dst[64];
	unsigned i;

	p->st.rejected_unknown_pod++;
	for (i = 0; i < UNKNOWN_LOGGED_MAX && p->unknown_logged[i] != o->pod_cgroup_id; i++)
		;
	if (i == UNKNOWN_LOGGED_MAX) {
		p->unknown_logged[p->unknown_logged_next++ % UNKNOWN_LOGGED_MAX] = o->pod_cgroup_id;
		mg_log_json("warn",
			    json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s}", "event", "reject", "reason",
				      "unknown pod", "client",
				      mg_config_fmt_addr(client, cli, sizeof(cli)), "orig_dst",
				      mg_config_fmt_addr(&o->orig_dst, dst, sizeof(dst)), "pod_cgroup_id",
				      (json_int_t)o->pod_cgroup_id, "cgroup_id",
				      (json_int_t)o->cgroup_id, "pid", (json_int_t)o->tgid, "note",
				      "later refusals of this cgroup are counted, not logged"));
	}
	reset_close(fd);
}

static void accept_one(struct mg_proxy *p, int fd)
{
	struct sockaddr_storage peer, local;
	socklen_t pl = sizeof(peer), ll = sizeof(local);
	struct mg_abi_tuple t = { 0 };
	struct mg_pod_ident ident = { 0 };
	struct mg_abi_origin o;
	const char *limited;
	SSL_CTX *ctx;
	struct conn *c;
	char dst[64];
	int found;

	if (getpeername(fd, (struct sockaddr *)&peer, &pl) ||
	    getsockname(fd, (struct sockaddr *)&local, &ll) || to_abi(&peer, &t.client) ||
	    to_abi(&local, &t.proxy)) {
		close(fd);
		return;
	}
	if (mg_loader_take_origin(p->o.loader, &t, &o)) {
		reject(p, fd, &t.client, "no origin recorded by the kernel");
		return;
	}
	found = mg_pods_lookup(p->o.pods, o.pod_cgroup_id, o.cgroup_id, &ident);
	if (found || !ident.known) {
		mg_pod_ident_release(&ident);
		reject_unknown_pod(p, fd, &t.client, &o);
		return;
	}
	limited = admit(p, o.pod_cgroup_id);
	if (limited && p->refusing >= REFUSING_MAX) {
		/* Not even room to say 429: a reset, like a full backlog. */
		p->st.limited_reset++;
		mg_pod_ident_release(&ident);
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){ 1, 0 }, sizeof(struct linger));
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		if (!limited)
			pod_conn_put(p, o.pod_cgroup_id);
		mg_pod_ident_release(&ident);
		close(fd);
		return;
	}
	c->ident = ident;
	c->limited = limited;
	c->pod_counted = !limited;
	p->refusing += !!limited;
	c->p = p;
	c->id = ++p->next_id;
	c->fd = fd;
	c->o = o;
	c->side = (struct side){ c, NULL, false };
	c->last_ms = c->head_since_ms = now_ms();
	mg_buf_init(&c->cin, IN_MAX);
	mg_buf_init(&c->cout, OUT_MAX);
	mg_buf_init(&c->uin, IN_MAX);
	mg_buf_init(&c->uout, OUT_MAX);
	mg_config_fmt_addr(&t.client, c->client, sizeof(c->client));

	mg_log_json("info",
		    json_pack("{s:s,s:I,s:o,s:I,s:I,s:I,s:I,s:s,s:s,s:b}", "event", "connect",
			      "conn", (json_int_t)c->id, "pod", pod_json(c), "pid",
			      (json_int_t)o.tgid, "uid", (json_int_t)o.uid, "cgroup_id",
			      (json_int_t)o.cgroup_id, "pod_cgroup_id", (json_int_t)o.pod_cgroup_id,
			      "orig_dst", mg_config_fmt_addr(&o.orig_dst, dst, sizeof(dst)), "client",
			      c->client, "pod_known", found == 0 && c->ident.known));

	ctx = p->o.server_ctx(p->o.server_ctx_data);
	c->ssl = ctx ? SSL_new(ctx) : NULL;
	SSL_CTX_free(ctx); /* the SSL holds its own reference */
	if (!c->ssl) {
		close(fd);
		mg_pod_ident_release(&c->ident);
		if (c->pod_counted)
			pod_conn_put(p, o.pod_cgroup_id);
		p->refusing -= !!c->limited;
		free(c);
		return;
	}
	SSL_set_fd(c->ssl, fd);
	SSL_set_accept_state(c->ssl);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	c->next = p->conns;
	if (p->conns)
		p->conns->prev = c;
	p->conns = c;
	p->st.accepted++;
	p->st.active++;
	if (p->st.active > p->peak_active)
		p->peak_active = p->st.active;
	if (mg_loop_add_fd(p->o.loop, fd, EPOLLIN, on_event, &c->side)) {
		conn_free(c);
		return;
	}
}

static void listen_backoff(struct mg_proxy *p, int err);

static void on_listen(struct mg_loop *loop, int lfd, uint32_t events, void *data)
{
	struct mg_proxy *p = data;

	(void)loop;
	(void)events;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				listen_backoff(p, errno);
			return;
		}
		if (p->backing_off) {
			p->backing_off = false;
			p->backoff_ms = BACKOFF_MIN_MS;
			mg_log_json("info", json_pack("{s:s,s:I}", "event", "accept_resumed", "open",
						      (json_int_t)p->st.active));
		}
		accept_one(p, fd);
	}
}

/* accept() failed for want of fds or memory: the connection stays in the
 * backlog, so the level-triggered listener would wake the loop again at
 * once, forever. Instead the listeners pause for backoff_ms (doubling up
 * to BACKOFF_MAX_MS while it keeps failing); the backlog waits meanwhile.
 * Logged once per episode, counted each time. */
static void listen_backoff(struct mg_proxy *p, int err)
{
	struct itimerspec its = { .it_value = { p->backoff_ms / 1000,
						(long)(p->backoff_ms % 1000) * 1000000L } };

	for (size_t i = 0; i < p->nl; i++)
		mg_loop_mod_fd(p->o.loop, p->lfd[i], 0);
	timerfd_settime(p->backoff_fd, 0, &its, NULL);
	p->st.accept_backoffs++;
	p->paused = true;
	if (!p->backing_off)
		mg_log_json("warn", json_pack("{s:s,s:s,s:i,s:I}", "event", "accept_backoff", "error",
					      strerror(err), "pauseMs", (int)p->backoff_ms, "open",
					      (json_int_t)p->st.active));
	p->backing_off = true;
	if (p->backoff_ms < BACKOFF_MAX_MS)
		p->backoff_ms = p->backoff_ms * 2 < BACKOFF_MAX_MS ? p->backoff_ms * 2 : BACKOFF_MAX_MS;
}

static void on_backoff_end(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct mg_proxy *p = data;
	uint64_t n;

	(void)events;
	if (read(fd, &n, sizeof(n)) < 0)
		return;
	p->paused = false;
	for (size_t i = 0; i < p->nl; i++)
		mg_loop_mod_fd(loop, p->lfd[i], EPOLLIN);
}

/* How long <c> may wait for its next request head: a connection kept only
 * to answer 429 gets little; a partial head or a pending handshake the
 * header timeout; an idle keep-alive connection the idle timeout. */
static uint64_t head_timeout_ms(const struct conn *c)
{
	if (c->limited)
		return REFUSE_HEAD_MS;
	if (mg_buf_size(&c->cin) || !c->hs_done)
		return c->p->o.header_timeout_ms;
	return c->p->o.idle_timeout_ms;
}

/* The client stopped reading: nothing of cout went out for write_stall_ms.
 * Each such exchange holds up to OUT_MAX + IN_MAX and an upstream
 * connection, so both sides go (an unfinished exchange's upstream is
 * closed, never pooled). */
static void write_stalled(struct conn *c, uint64_t now)
{
	c->p->st.write_stalls++;
	mg_log_json("warn", json_pack("{s:s,s:I,s:o,s:I,s:I,s:b}", "event", "write_stall", "conn",
				      (json_int_t)c->id, "pod", pod_json(c), "stalledMs",
				      (json_int_t)(now - c->wstall_ms), "pendingBytes",
				      (json_int_t)mg_buf_size(&c->cout), "upstreamClosed", c->up != NULL));
	c->dead = true;
	pump(c);
}

/* Once a second: timeouts (write stall, upstream connect, request head,
 * keep-alive idle), idle pooled connections past their time, and memory
 * handed back after a burst. */
static void on_sweep(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct mg_proxy *p = data;
	uint64_t now = now_ms();
	struct conn *c, *next;
	struct upstream **pp, *u;

	(void)loop;
	(void)fd;
	(void)events;
	for (c = p->conns; c; c = next) {
		next = c->next;
		if (c->wstall_ms && now - c->wstall_ms > p->o.write_stall_ms) {
			write_stalled(c, now);
			continue;
		}
		/* A held detector candidate that stopped growing goes out. */
		if (c->tmask && now - c->last_ms >= 1000) {
			size_t before = mg_buf_size(&c->cout);

			if (mg_tunmask_flush(c->tmask, &c->cout))
				c->dead = true;
			if (c->dead || mg_buf_size(&c->cout) != before) {
				pump(c);
				continue;
			}
		}
		if (c->up && (c->up->connecting || !c->up->hs_done) &&
		    now - c->up->since_ms > p->o.connect_timeout_ms) {
			p->st.upstream_failed++;
			upstream_free(p, c->up);
			c->up = NULL;
			if (c->x.active && !c->x.resp_head)
				reply_status(c, 504, "mcpgate: timed out connecting to the API server");
			else
				c->dead = true;
			pump(c);
		} else if (!c->x.active && !c->tunnel && !c->close_after_flush &&
			   now - c->head_since_ms > head_timeout_ms(c)) {
			if (mg_buf_size(&c->cin))
				reply_status(c, 408, "mcpgate: request head not received in time");
			else
				c->dead = true;
			pump(c);
		}
	}
	for (pp = &p->pool; (u = *pp);) {
		if (now - u->since_ms > p->o.pool_idle_ms) {
			*pp = u->next;
			p->pool_n--;
			upstream_free(p, u);
		} else {
			pp = &u->next;
		}
	}
	/* After a burst, the freed buffers and TLS state would stay with the
	 * process (glibc returns only the top of each heap on its own). */
	if (p->peak_active >= p->st.active + TRIM_AFTER_CLOSED ||
	    p->freed_since_trim >= TRIM_AFTER_FREED) {
		malloc_trim(0);
		p->st.malloc_trims++;
		p->peak_active = p->st.active;
		p->freed_since_trim = 0;
	}
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
		p->o.connect_timeout_ms = 5000;
	if (!p->o.header_timeout_ms)
		p->o.header_timeout_ms = 30000;
	if (!p->o.idle_timeout_ms)
		p->o.idle_timeout_ms = 90000;
	if (!p->o.pool_idle_ms)
		p->o.pool_idle_ms = 60000;
	if (!p->o.pool_max)
		p->o.pool_max = 64;
	if (!p->o.max_conns)
		p->o.max_conns = MG_PROXY_MAX_CONNS_DEFAULT;
	if (!p->o.max_conns_per_pod)
		p->o.max_conns_per_pod = MG_PROXY_MAX_CONNS_PER_POD_DEFAULT;
	if (!p->o.write_stall_ms)
		p->o.write_stall_ms = MG_PROXY_WRITE_STALL_MS_DEFAULT;
	p->backoff_ms = BACKOFF_MIN_MS;
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
	p->sweep_fd = mg_loop_add_timer(o->loop, 1000, on_sweep, p);
	if (p->sweep_fd < 0) {
		rc = p->sweep_fd;
		goto err;
	}
	p->backoff_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (p->backoff_fd < 0) {
		rc = -errno;
		goto err;
	}
	rc = mg_loop_add_fd(o->loop, p->backoff_fd, EPOLLIN, on_backoff_end, p);
	if (rc)
		goto err;
	if (p->o.creds || p->o.review_kube) {
		struct mg_worker_opts wo = { o->loop, p->o.worker_threads, p->o.worker_queue,
					     p->o.worker_per_pod };

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
		conn_free(p->conns);
	while (p->pool) {
		struct upstream *u = p->pool;

		p->pool = u->next;
		upstream_free(p, u);
	}
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
	explicit_bzero(p->reviews, sizeof(p->reviews));
	free(p->pod_slots);
	explicit_bzero(p->token, sizeof(p->token));
	free(p);
}

int mg_proxy_listen(struct mg_proxy *p, const struct mg_abi_addr *addr)
{
	struct sockaddr_storage ss;
	socklen_t sl = from_abi(addr, &ss);
	int fd, rc;

	if (p->nl == MAX_LISTENERS)
		return -ENOSPC;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &(int){ 1 }, sizeof(int));
	setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &(int){ 1 }, sizeof(int));
	if (bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 1024)) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = mg_loop_add_fd(p->o.loop, fd, EPOLLIN, on_listen, p);
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
