/*
 * proxy: one connection's state machine. Accepts the connections the kernel
 * redirected, finds out from the kernel which pod opened each one (a
 * connection with no origin record is reset and counted: nobody reaches the
 * API server through this port without the eBPF programs having seen the
 * connect), terminates TLS with the mcpgate certificate, parses each request
 * strictly, and forwards it over a pooled, verified TLS connection to the
 * API server the pod dialled, with the pod's credentials stripped and the
 * daemon's attached. Bodies stream both ways, chunk by chunk; upgrades
 * (exec/attach/port-forward over WebSocket or SPDY) become byte tunnels.
 * Nothing blocks: every socket is non-blocking on the one event loop.
 *
 * The work is split over userspace/proxy/: conn (connection I/O, accept,
 * caps, timeouts), exchange (the request and response stages, the heads),
 * upstream (API server connections and their pool); proxy.c holds the
 * object, its listeners and, for now, the request metrics.
 */
#ifndef MCPGATE_PROXY_H
#define MCPGATE_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

#include "mcpgate/abi.h"
#include "mcpgate/exchange.h"
#include "mcpgate/str.h"

struct mg_creds;
struct mg_kube;
struct mg_mask_cfg;
struct mg_loop;
struct mg_loader;
struct mg_pods;
struct mg_proxy;

/** Returns the current downstream SSL_CTX with a reference the proxy drops. */
typedef SSL_CTX *mg_proxy_server_ctx_fn(void *data);

struct mg_proxy_opts {
	struct mg_loop *loop;
	struct mg_loader *loader;
	struct mg_pods *pods;
	mg_proxy_server_ctx_fn *server_ctx; /* downstream TLS (mcpgate cert) */
	void *server_ctx_data;
	SSL_CTX *client_ctx;		    /* upstream TLS, verifying */
	const char *token_file;		    /* the daemon's credential (re-read on change) */
	struct mg_creds *creds;		    /* upstream credential provider; NULL: token_file */
	const struct mg_mask_cfg *mask_cfg; /* what responses mask; NULL: defaults */
	struct mg_kube *review_kube;	    /* TokenReview of the pod's own token; NULL: off */
	unsigned connect_timeout_ms;	    /* upstream connect + TLS; default 5000 */
	unsigned header_timeout_ms;	    /* a request head must arrive in; default 30000 */
	unsigned idle_timeout_ms;	    /* keep-alive idle; default 90000 */
	unsigned pool_idle_ms;		    /* pooled upstream kept; default 60000 */
	unsigned pool_max;		    /* idle upstream connections kept; default 64 */
	/* limits that keep one pod from starving the node; 0: the default */
	unsigned max_conns;	    /* client connections in all */
	unsigned max_conns_per_pod; /* per pod (its pod cgroup id, from the kernel) */
	unsigned write_stall_ms;    /* no progress writing to a client: both sides closed */
	unsigned worker_threads;    /* credential fetches and TokenReviews (worker.h) */
	unsigned worker_queue;
	unsigned worker_per_pod; /* jobs in flight per pod */
};

#define MG_PROXY_CONNECT_TIMEOUT_MS_DEFAULT 5000
#define MG_PROXY_HEADER_TIMEOUT_MS_DEFAULT  30000
#define MG_PROXY_IDLE_TIMEOUT_MS_DEFAULT    90000
#define MG_PROXY_MAX_CONNS_DEFAULT	    512
#define MG_PROXY_MAX_CONNS_PER_POD_DEFAULT  64
#define MG_PROXY_WRITE_STALL_MS_DEFAULT	    30000

struct mg_proxy_stats {
	uint64_t accepted;	       /* connections with an origin */
	uint64_t rejected_no_origin;   /* reset: the kernel recorded no origin */
	uint64_t rejected_unknown_pod; /* reset: the origin's pod has no identity here */
	uint64_t upstream_failed;      /* connect or TLS to the API server failed */
	uint64_t tls_failed;	       /* downstream handshakes that failed */
	uint64_t active;	       /* open client connections now */
	uint64_t requests;	       /* requests forwarded */
	uint64_t rejected_requests;    /* answered by the proxy itself (4xx/5xx) */
	uint64_t upgrades;	       /* tunnels after 101 */
	uint64_t pool_reused;	       /* requests sent on a pooled connection */
	uint64_t pool_resent;	       /* resent: the API closed a reused connection unanswered */
	uint64_t creds_failed;	       /* requests refused: no upstream credential */
	uint64_t mask_failed;	       /* responses stopped: could not be masked safely */
	uint64_t review_failed;	       /* requests refused: the pod's token is not its own */
	uint64_t bytes_up, bytes_down;
	/* limits: refused (429 with Retry-After) or cut to protect the node */
	uint64_t limited_conns;	       /* 429: max_conns reached */
	uint64_t limited_pod_conns;    /* 429: the pod's max_conns_per_pod reached */
	uint64_t limited_reset;	       /* reset at accept: over a cap, no room left to answer */
	uint64_t limited_worker_queue; /* 429: the worker queue was full */
	uint64_t limited_worker_pod;   /* 429: the pod had worker_per_pod jobs in flight */
	uint64_t write_stalls;	       /* closed: the client stopped reading */
	uint64_t accept_backoffs;      /* listeners paused: accept ran out of fds or memory */
	uint64_t malloc_trims;	       /* freed memory handed back after connections closed */
};

int mg_proxy_new(struct mg_proxy **out, const struct mg_proxy_opts *o);
/** Closes listeners and every connection. Accepts NULL. */
void mg_proxy_free(struct mg_proxy *p);

/** Listens on <addr> (IPv4-mapped or IPv6). 0 / -errno. */
int mg_proxy_listen(struct mg_proxy *p, const struct mg_abi_addr *addr);

void mg_proxy_get_stats(const struct mg_proxy *p, struct mg_proxy_stats *s);

struct mg_metrics;

/**
 * Registers the proxy's families in <m> (limits, worker jobs, requests by
 * verb/resource/code/decision, the latency histogram); they are filled from
 * the proxy's counters before each render. 0 or -ENOMEM.
 */
int mg_proxy_register_metrics(struct mg_proxy *p, struct mg_metrics *m);

/* ---- for the modules of userspace/proxy/ (conn.h) ---- */

/* How often the daemon's token file is stat()ed for a rotation. */
#define MG_PROXY_TOKEN_RECHECK_MS 1000

/**
 * The daemon's token, re-read when its file changed (checked at most once a
 * second): projected tokens rotate underneath us. Empty without a file.
 */
struct mg_str mg_proxy_daemon_token(struct mg_proxy *p);

/** Counts one finished exchange in the request metrics. */
void mg_proxy_count_request(struct mg_proxy *p, const char *verb, const char *resource, int code,
			    enum mg_exchange_decision d, double secs);

uint64_t mg_proxy_now_ms(void);
uint64_t mg_proxy_now_ns(void);

#endif /* MCPGATE_PROXY_H */
