/*
 * conn: the proxy's connection I/O. Accepts the connections the kernel
 * redirected (identity from the kernel's origin record, unknown pods reset,
 * connection caps), terminates TLS, and pumps bytes between four bounded
 * buffers per connection; arms epoll from what is pending; runs the
 * timeouts (request head, keep-alive idle, upstream connect, write stall).
 * What the bytes mean is the exchange's (exchange.h).
 *
 * This header also holds the proxy's state (struct mg_proxy), shared by
 * the modules of userspace/proxy/ (conn, exchange, upstream, proxy);
 * mcpgated sees only proxy.h.
 */
#ifndef MCPGATE_CONN_H
#define MCPGATE_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include <jansson.h>

#include "mcpgate/abi.h"
#include "mcpgate/buf.h"
#include "mcpgate/exchange.h"
#include "mcpgate/http.h"
#include "mcpgate/mask.h"
#include "mcpgate/pods.h"
#include "mcpgate/proxy.h"
#include "mcpgate/upstream.h"

struct mg_authn;
struct mg_loop;
struct mg_tunnel;
struct mg_worker;

/* Buffers of one connection. Input holds a maximal request (or response)
 * head plus read-ahead; output what one pump may queue. */
#define MG_CONN_IN_MAX	 (MG_HTTP_HEAD_MAX + 16 * 1024)
#define MG_CONN_OUT_MAX	 (256 * 1024)
#define MG_CONN_IO_CHUNK 16384 /* one SSL_read / SSL_write */
/* The masker may write more than it reads (markers): input is fed only
 * while the client's buffer has this much room. */
#define MG_CONN_MASK_ROOM (160 * 1024 / 2 + 32 * 1024)

/* Limits (the caps themselves are options, defaults in proxy.h). A client
 * over a connection cap still gets a 429 Status, which needs its TLS
 * handshake and request head: at most MG_CONN_REFUSING_MAX such connections
 * are kept at once, each for at most MG_CONN_REFUSE_HEAD_MS; past that, a
 * reset. */
#define MG_CONN_REFUSING_MAX   64
#define MG_CONN_REFUSE_HEAD_MS 5000
#define MG_CONN_RETRY_AFTER_S  1
#define MG_CONN_MAX_LISTENERS  4
/* accept() out of fds or memory: listeners paused this long, doubling. */
#define MG_CONN_BACKOFF_MIN_MS 50
#define MG_CONN_BACKOFF_MAX_MS 1000
/* The timeouts are checked this often (mg_conn_on_sweep()). */
#define MG_CONN_SWEEP_MS 1000

/** One client connection. */
struct mg_conn {
	struct mg_proxy *p;
	uint64_t id;
	int fd;
	SSL *ssl;
	bool hs_done;
	struct mg_upstream *up;
	struct mg_buf cin, cout, uin, uout;
	struct mg_abi_origin o;
	struct mg_pod_ident ident;
	char client[64];
	struct mg_exchange x;
	uint64_t exchanges; /* started on this connection */
	bool tunnel;
	struct mg_tunnel *tmask; /* exec/attach: server frames are masked */
	bool tmask_drained;
	bool c_eof;		/* the pod closed its sending side */
	bool u_eof;		/* the API server closed its sending side */
	bool close_after_flush; /* send what is in cout, then close */
	bool dead;
	const char *limited; /* over a connection cap: answer 429 (this reason), close */
	bool pod_counted;    /* holds one of its pod's max_conns_per_pod */
	uint64_t wstall_ms;  /* cout has waited since, with no write progress; 0: empty */
	size_t head_scanned; /* cin bytes already known to hold no complete head */
	uint64_t last_ms;
	uint64_t head_since_ms; /* waiting for a request head since */
	struct mg_conn *next, *prev;
};

/* Open connections of one pod, by pod cgroup id: linear probing, at most
 * half full (sized for every connection that may hold a count). */
struct mg_conn_pod_slot {
	uint64_t key;
	unsigned n; /* 0: free */
};

/* Pod cgroup ids whose refusal was logged lately: a pod that keeps
 * reconnecting is counted every time but logged once. */
#define MG_CONN_UNKNOWN_LOGGED_MAX 64

/* Per-request metrics: counts by (verb, resource, code, decision). */
#define MG_PROXY_MET_SLOTS 512
struct mg_proxy_met {
	bool used;
	char verb[20];
	char resource[96];
	enum mg_exchange_decision decision;
	int code;
	uint64_t count;
};

/** The proxy: listeners, connections, limits, pool, metrics. */
struct mg_proxy {
	struct mg_proxy_opts o;
	uint64_t unknown_logged[MG_CONN_UNKNOWN_LOGGED_MAX];
	unsigned unknown_logged_next;
	struct mg_worker *worker; /* credential fetches, TokenReviews */
	struct mg_authn *authn;	  /* NULL: no TokenReview */
	/* limits */
	struct mg_conn_pod_slot *pod_slots;
	size_t n_pod_slots; /* a power of two */
	unsigned refusing;  /* connections kept only to answer 429 */
	int backoff_fd;	    /* timerfd: listeners paused after accept failed */
	unsigned backoff_ms;
	bool backing_off;	   /* since the first failure, until an accept succeeds */
	bool paused;		   /* listeners have no epoll interest now */
	uint64_t peak_active;	   /* since the last malloc_trim */
	uint64_t freed_since_trim; /* buffer bytes freed since then */
	int lfd[MG_CONN_MAX_LISTENERS];
	size_t nl;
	struct mg_conn *conns;
	struct mg_upstream_pool pool;
	uint64_t next_id;
	int sweep_fd;
	struct mg_proxy_stats st;
	struct mg_mask_cfg mcfg;     /* defaults, when no mask_cfg was given */
	struct mg_secretfile *token; /* the daemon's token file, re-read on change */
	/* metrics: counted here on the loop, mirrored into the registry's
	 * families before each render (mg_proxy_register_metrics) */
	struct mg_proxy_met met[MG_PROXY_MET_SLOTS];
	struct mg_metrics_family *m_limited, *m_worker, *m_paused, *m_trims, *m_requests;
	struct mg_metrics_series *m_latency; /* NULL until registered */
};

/* ---- for the other modules of userspace/proxy/ ---- */

/** The connection with id <id>, or NULL (it closed). */
struct mg_conn *mg_conn_find(struct mg_proxy *p, uint64_t id);

/** Moves bytes until nothing progresses, then closes or re-arms <c>. */
void mg_conn_pump(struct mg_conn *c);

/**
 * Queues the Status in <c>->x.reply for the client (a 429 with its limit
 * gets Retry-After) and closes once it is written: after a refusal we no
 * longer know where the next request would start.
 */
void mg_conn_reply(struct mg_conn *c);

/** Like mg_conn_reply() with <code> and <msg>. */
void mg_conn_reply_status(struct mg_conn *c, int code, const char *msg);

/**
 * Gives <c> an upstream connection to the pod's original destination: an
 * idle pooled one if there is one, else a new one. 0 / -errno.
 */
int mg_conn_attach_upstream(struct mg_conn *c);

/** Closes <c>'s upstream connection, if any (never pooled). */
void mg_conn_close_upstream(struct mg_conn *c);

/** Frees <b>, counting what goes back to the heap for the next trim. */
void mg_conn_buf_drop(struct mg_proxy *p, struct mg_buf *b);

/** The pod of <c>, for logs. */
json_t *mg_conn_pod_json(const struct mg_conn *c);

/* loop callbacks, registered by proxy.c */
void mg_conn_on_listen(struct mg_loop *loop, int lfd, uint32_t events, void *data);
void mg_conn_on_backoff_end(struct mg_loop *loop, int fd, uint32_t events, void *data);
void mg_conn_on_sweep(struct mg_loop *loop, int fd, uint32_t events, void *data);

/** Closes <c> at once (mg_proxy_free). */
void mg_conn_free(struct mg_conn *c);

#endif /* MCPGATE_CONN_H */
