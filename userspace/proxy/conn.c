/*
 * conn: accept, identify, terminate TLS, pump bytes. See conn.h.
 *
 * Each client connection owns four bounded buffers: cin (plaintext read
 * from the pod), uout (the rewritten request going upstream), uin (read from
 * the API server) and cout (the response going to the pod). One function,
 * pump_once(), moves bytes between them until no step makes progress, then
 * the epoll interest of both sockets is recomputed from what is pending.
 * Level triggered throughout, so a missed edge can never stall a connection.
 */
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "mcpgate/addr.h"
#include "mcpgate/buf.h"
#include "mcpgate/config.h"
#include "mcpgate/conn.h"
#include "mcpgate/exchange.h"
#include "mcpgate/http.h"
#include "mcpgate/loader.h"
#include "mcpgate/log.h"
#include "mcpgate/loop.h"
#include "mcpgate/mask.h"
#include "mcpgate/pods.h"
#include "mcpgate/proxy.h"
#include "mcpgate/tunnel.h"
#include "mcpgate/upstream.h"

/* Hand freed heap back to the system once this many connections closed
 * since the last peak, or this many buffer bytes were freed (glibc keeps
 * it otherwise: 13 -> 64 MiB after 3000 connections). */
#define TRIM_AFTER_CLOSED 64
#define TRIM_AFTER_FREED  (4u << 20)
/* pump_once() rounds per wake-up, accept() calls per listener wake-up:
 * one busy connection or listener cannot starve the others. */
#define PUMP_ROUNDS  64
#define ACCEPT_BATCH 64
/* A detector candidate the tunnel masker holds goes out once the stream
 * has been quiet this long. */
#define TUNMASK_HOLD_MS 1000

static void on_client_io(struct mg_loop *loop, int fd, uint32_t events, void *data);
static void on_upstream_io(struct mg_loop *loop, int fd, uint32_t events, void *data);

/* ---- limits ---- */

static size_t pod_hash(const struct mg_proxy *p, uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 17) & (p->n_pod_slots - 1);
}

/* The slot of pod <key>: its own, or the free one where it would go. */
static struct mg_conn_pod_slot *pod_slot(struct mg_proxy *p, uint64_t key)
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
	struct mg_conn_pod_slot *s;

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
void mg_conn_buf_drop(struct mg_proxy *p, struct mg_buf *b)
{
	p->freed_since_trim += b->cap;
	mg_buf_free(b);
}

/* ---- connection teardown ---- */

void mg_conn_free(struct mg_conn *c)
{
	struct mg_proxy *p = c->p;

	mg_loop_del_fd(p->o.loop, c->fd);
	close(c->fd);
	SSL_free(c->ssl);
	mg_upstream_free(p->o.loop, c->up);
	mg_conn_buf_drop(p, &c->cin);
	mg_conn_buf_drop(p, &c->cout);
	mg_conn_buf_drop(p, &c->uin);
	mg_conn_buf_drop(p, &c->uout);
	mg_pod_ident_release(&c->ident);
	mg_exchange_clear(&c->x);
	mg_tunnel_free(c->tmask);
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

json_t *mg_conn_pod_json(const struct mg_conn *c)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "namespace", c->ident.namespace, "name",
			 c->ident.name, "uid", c->ident.uid, "serviceAccount",
			 c->ident.service_account, "node", c->ident.node, "container",
			 c->ident.container_id);
}

static void log_close(struct mg_conn *c, const char *why)
{
	json_t *ev = json_pack("{s:s,s:I,s:s}", "event", "close", "conn", (json_int_t)c->id,
			       "reason", why);

	if (c->tmask) {
		struct mg_mask_stats ms;
		uint64_t hits = 0;

		mg_tunnel_stats(c->tmask, &ms);
		for (unsigned i = 0; i < MG_MASK_DET_MAX; i++)
			hits += ms.hits[i];
		json_object_set_new(ev, "maskedHits", json_integer((json_int_t)hits));
	}
	mg_log_json("info", ev);
}

void mg_conn_reply_status(struct mg_conn *c, int code, const char *msg)
{
	char buf[2048];
	size_t n = mg_http_status_json(buf, sizeof(buf), code, NULL, msg, false);

	if (n < sizeof(buf))
		mg_buf_append(&c->cout, buf, n);
	c->close_after_flush = true;
	c->p->st.rejected_requests++;
	if (c->x.active) {
		c->x.status = code;
		mg_exchange_finish(c, MG_EXCHANGE_ERROR);
	} else {
		mg_log_json("warn", json_pack("{s:s,s:I,s:o,s:i,s:s}", "event", "rejected", "conn",
					      (json_int_t)c->id, "pod", mg_conn_pod_json(c),
					      "status", code, "reason", msg));
	}
}

/* Answers 429 TooManyRequests with Retry-After (client-go honours it and
 * retries) and closes: nothing of this request went upstream. <why> names
 * the limit in the log; <counter>, if not NULL, is its metric (connection
 * caps are counted at accept). */
static void reply_limited(struct mg_conn *c, uint64_t *counter, const char *why, const char *msg)
{
	char buf[2048], hdr[32];
	size_t n = mg_http_status_json(buf, sizeof(buf), 429, NULL, msg, false);
	const char *eol = memchr(buf, '\n', n < sizeof(buf) ? n : 0);
	int hl = snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", MG_CONN_RETRY_AFTER_S);

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
	mg_log_json("warn",
		    json_pack("{s:s,s:I,s:o,s:s}", "event", "limited", "conn", (json_int_t)c->id,
			      "pod", mg_conn_pod_json(c), "reason", why));
	if (c->x.active) {
		c->x.status = 429;
		mg_exchange_finish(c, MG_EXCHANGE_LIMITED);
	}
}

/* A 429 of <c>->x.reply carries its limit: Retry-After, and counted as
 * limited; any other code is an error Status. The client sends nothing
 * more on this connection. */
void mg_conn_reply(struct mg_conn *c)
{
	struct mg_exchange_reply *r = &c->x.reply;

	c->c_eof = true;
	if (r->code == 429 && r->limit)
		reply_limited(c, r->counter, r->limit, r->msg);
	else
		mg_conn_reply_status(c, r->code, r->msg);
}

struct mg_conn *mg_conn_find(struct mg_proxy *p, uint64_t id)
{
	struct mg_conn *c;

	for (c = p->conns; c && c->id != id; c = c->next)
		;
	return c;
}

/* A request that may be sent again if a reused connection turns out to
 * have been closed by the API server before it answered: no body and a
 * safe method (RFC 9110 §9.2.1), the rule Go's transport follows. */
static bool replayable(const struct mg_conn *c)
{
	const struct mg_exchange *x = &c->x;

	return x->req_body == MG_HTTP_BODY_NONE && !x->upgrade &&
	       (mg_str_eq(x->info.method, MG_STR("GET")) ||
		mg_str_eq(x->info.method, MG_STR("HEAD")) ||
		mg_str_eq(x->info.method, MG_STR("OPTIONS")));
}

static int connect_upstream(struct mg_conn *c);

/* Gives <c> an upstream connection to the pod's original destination: an
 * idle pooled one if there is one, else a new one. On a pooled one, a
 * replayable request (all of it is in uout now) is kept for a resend. */
int mg_conn_attach_upstream(struct mg_conn *c)
{
	struct mg_proxy *p = c->p;
	struct mg_upstream *u;
	int rc;

	u = mg_upstream_pool_take(&p->pool, &c->o.orig_dst);
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
	c->up = u;
	rc = mg_loop_add_fd(p->o.loop, u->fd, EPOLLOUT | EPOLLIN, on_upstream_io, c);
	/* Not watched, not kept: the finished head in uout must never go out
	 * after the pod was answered 502. */
	if (rc)
		mg_conn_close_upstream(c);
	return rc;
}

/* The reused upstream connection of <c> failed (closed, reset, write
 * error) before a byte of the response came: the API server closed it
 * idle as we reused it. A replayable request is sent once more, on a new
 * connection. Returns true if it was; false leaves everything as it was. */
static bool resend_on_new_upstream(struct mg_conn *c)
{
	struct mg_exchange *x = &c->x;

	if (!x->active || !x->replay || x->resp_head || mg_buf_size(&c->uin) || c->tunnel)
		return false;
	mg_conn_close_upstream(c);
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
static int connect_upstream(struct mg_conn *c)
{
	struct mg_upstream *u;
	int rc;

	rc = mg_upstream_connect(&u, &c->o.orig_dst, c->p->o.client_ctx);
	if (rc)
		return rc;
	u->since_ms = mg_proxy_now_ms();
	c->up = u;
	rc = mg_loop_add_fd(c->p->o.loop, u->fd, EPOLLOUT, on_upstream_io, c);
	if (rc)
		mg_conn_close_upstream(c);
	return rc;
}

void mg_conn_close_upstream(struct mg_conn *c)
{
	mg_upstream_free(c->p->o.loop, c->up);
	c->up = NULL;
}

/* ---- I/O ---- */

/* Reads from an SSL into <b>. Returns >0 bytes, 0 would block, -1 EOF,
 * -2 error. Reads land on the stack first, so an idle connection holds no
 * buffer memory at all (one extra copy, cheap next to the decryption). */
static int ssl_read_into(SSL *ssl, struct mg_buf *b)
{
	char tmp[MG_CONN_IO_CHUNK];
	size_t want = mg_buf_room(b);
	int r;

	if (want == 0)
		return 0;
	if (want > MG_CONN_IO_CHUNK)
		want = MG_CONN_IO_CHUNK;
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

		if (n > MG_CONN_IO_CHUNK)
			n = MG_CONN_IO_CHUNK;
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

/* What one step of pump_once() did. */
enum step {
	STEP_IDLE = 0, /* nothing to do */
	STEP_PROGRESS, /* moved bytes or state */
	STEP_STOP,     /* state changed under the later steps: pump again from the top */
};

typedef enum step step_fn(struct mg_conn *c);

/* The downstream TLS handshake. Returns 1 when it completed now, 0 when
 * it was done before, -1 while it is pending (or failed: <c> dead). */
static int client_handshake(struct mg_conn *c)
{
	int r;

	if (c->hs_done)
		return 0;
	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r != 1) {
		r = SSL_get_error(c->ssl, r);
		if (r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE) {
			c->p->st.tls_failed++;
			mg_log_json("warn",
				    json_pack("{s:s,s:I,s:o}", "event", "client_tls_failed", "conn",
					      (json_int_t)c->id, "pod", mg_conn_pod_json(c)));
			c->dead = true;
		}
		return -1;
	}
	c->hs_done = true;
	c->head_since_ms = mg_proxy_now_ms();
	return 1;
}

/* pod -> cin */
static enum step read_client(struct mg_conn *c)
{
	int r;

	if (c->c_eof || c->close_after_flush)
		return STEP_IDLE;
	r = ssl_read_into(c->ssl, &c->cin);
	if (r < 0)
		c->c_eof = true;
	return r ? STEP_PROGRESS : STEP_IDLE;
}

/* Moves what fits of <from> into <to>, as it is (a tunnel). */
static enum step copy_bytes(struct mg_buf *from, struct mg_buf *to)
{
	size_t n = mg_buf_size(from);

	if (n > mg_buf_room(to))
		n = mg_buf_room(to);
	if (!n)
		return STEP_IDLE;
	mg_buf_append(to, mg_buf_head(from), n);
	mg_buf_consume(from, n);
	return STEP_PROGRESS;
}

/* cin -> uout: tunnel bytes, or the next request head and its body. */
static enum step client_to_upstream(struct mg_conn *c)
{
	bool progress = false;

	if (c->tunnel)
		return copy_bytes(&c->cin, &c->uout);
	if (!c->x.active && !c->close_after_flush)
		progress |= mg_exchange_take_request(c);
	if (c->x.active && !c->x.req_done)
		progress |= mg_exchange_forward_request_body(c);
	return progress ? STEP_PROGRESS : STEP_IDLE;
}

/* The upstream failed before a byte of the response: the pod gets a
 * Status <msg>; after that (or in a tunnel) both sides go. */
static enum step upstream_failed(struct mg_conn *c, const char *msg)
{
	mg_conn_close_upstream(c);
	if (c->x.active && !c->x.resp_head && !c->tunnel)
		mg_conn_reply_status(c, 502, msg);
	else
		c->dead = true;
	return STEP_STOP;
}

/* Connect and handshake, then uout -> API server -> uin. */
static enum step upstream_io(struct mg_conn *c)
{
	struct mg_proxy *p = c->p;
	bool progress = false;
	const char *why;
	int r;

	if (!c->up)
		return STEP_IDLE;
	r = mg_upstream_progress(c->up, &why);
	if (r < 0) {
		if (why)
			mg_log_json("warn",
				    json_pack("{s:s,s:I,s:s}", "event", "upstream_tls_failed",
					      "conn", (json_int_t)c->id, "error", why));
		p->st.upstream_failed++;
		return upstream_failed(c, "mcpgate: cannot reach the API server over TLS");
	}
	if (r == 0)
		return STEP_IDLE;
	if (mg_buf_size(&c->uout)) {
		uint64_t ignored = 0;

		r = ssl_write_from(c->up->ssl, &c->uout, &ignored);
		if (r < 0 && resend_on_new_upstream(c))
			return STEP_STOP;
		if (r < 0)
			return upstream_failed(c, "mcpgate: the API server closed the connection");
		if (r > 0) {
			p->st.bytes_up += (uint64_t)r;
			progress = true;
		}
	}
	if (!c->u_eof) {
		r = ssl_read_into(c->up->ssl, &c->uin);
		if (r == -2 && c->x.active && c->x.resp_head) {
			c->dead = true; /* a cut body must not look complete */
			return STEP_STOP;
		}
		if (r < 0)
			c->u_eof = true;
		progress |= r != 0;
	}
	return progress ? STEP_PROGRESS : STEP_IDLE;
}

/* uin -> cout through the exec/attach frame masker. */
static enum step masked_tunnel_to_client(struct mg_conn *c)
{
	bool progress = false;
	ssize_t n = 0;

	if (mg_buf_size(&c->uin))
		n = mg_tunnel_feed(c->tmask, mg_buf_head(&c->uin), mg_buf_size(&c->uin), &c->cout);
	if (n < 0) {
		mg_log_json("warn", json_pack("{s:s,s:I,s:i}", "event", "tunnel_mask_failed",
					      "conn", (json_int_t)c->id, "rc", (int)n));
		c->p->st.mask_failed++;
		c->dead = true;
		return STEP_STOP;
	}
	if (n > 0) {
		mg_buf_consume(&c->uin, (size_t)n);
		progress = true;
	}
	if (c->u_eof && !mg_buf_size(&c->uin) && !c->tmask_drained) {
		if (mg_tunnel_flush(c->tmask, &c->cout)) {
			c->dead = true;
			return STEP_STOP;
		}
		c->tmask_drained = true;
		progress = true;
	}
	return progress ? STEP_PROGRESS : STEP_IDLE;
}

/* uin -> cout for an exchange: its response head and body; the end of the
 * exchange; an API server that closed too early. */
static enum step response_to_client(struct mg_conn *c)
{
	struct mg_exchange *x = &c->x;
	bool progress = false;
	bool drained;

	if (!x->resp_head)
		progress |= mg_exchange_take_response_head(c);
	if (x->active && x->resp_head && !x->resp_done)
		progress |= mg_exchange_forward_response_body(c);
	drained = c->u_eof && !mg_buf_size(&c->uin);
	if (x->active && !x->resp_head && drained) {
		/* closed before it answered: a reused connection the API
		 * server closed idle as we took it, or a real failure */
		if (resend_on_new_upstream(c))
			return STEP_STOP;
		mg_conn_close_upstream(c);
		c->u_eof = false;
		mg_conn_reply_status(c, 502, "mcpgate: the API server closed the connection");
		progress = true;
	}
	if (x->active && x->resp_head && !x->resp_done && drained &&
	    x->resp_body != MG_HTTP_BODY_CLOSE) {
		mg_log_json("warn", json_pack("{s:s,s:I}", "event", "upstream_cut_body", "conn",
					      (json_int_t)c->id));
		c->dead = true;
		return STEP_STOP;
	}
	if (x->active && x->resp_done && x->req_done) {
		mg_exchange_complete(c);
		progress = true;
	}
	return progress ? STEP_PROGRESS : STEP_IDLE;
}

/* uin -> cout */
static enum step upstream_to_client(struct mg_conn *c)
{
	if (c->tunnel && c->tmask)
		return masked_tunnel_to_client(c);
	if (c->tunnel)
		return copy_bytes(&c->uin, &c->cout);
	if (c->x.active)
		return response_to_client(c);
	return STEP_IDLE;
}

/* cout -> pod */
static enum step write_client(struct mg_conn *c)
{
	struct mg_proxy *p = c->p;
	uint64_t before = p->st.bytes_down;

	if (!mg_buf_size(&c->cout))
		return STEP_IDLE;
	if (ssl_write_from(c->ssl, &c->cout, &p->st.bytes_down) < 0) {
		c->dead = true;
		return STEP_STOP;
	}
	if (p->st.bytes_down == before)
		return STEP_IDLE;
	c->wstall_ms = 0; /* the client reads: the stall clock restarts */
	return STEP_PROGRESS;
}

/* One round of moving bytes, in the order they flow. Returns whether
 * anything progressed (then mg_conn_pump() runs another round). */
static bool pump_once(struct mg_conn *c)
{
	static step_fn *const steps[] = {
		read_client, client_to_upstream, upstream_io, upstream_to_client, write_client,
	};
	int hs = client_handshake(c);
	bool progress = hs > 0;

	if (hs < 0)
		return false;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		enum step s = steps[i](c);

		if (s == STEP_STOP)
			return true;
		progress |= s == STEP_PROGRESS;
	}
	return progress;
}

/* What each socket waits for now. */
static void rearm(struct mg_conn *c)
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
		struct mg_upstream *u = c->up;

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

void mg_conn_pump(struct mg_conn *c)
{
	for (int i = 0; i < PUMP_ROUNDS && !c->dead && pump_once(c); i++)
		;
	c->last_ms = mg_proxy_now_ms();
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
			mg_exchange_finish(c, MG_EXCHANGE_ABORTED);
		}
		if (c->hs_done)
			SSL_shutdown(c->ssl);
		log_close(c, c->tunnel ? "tunnel closed" : "closed");
		mg_conn_free(c);
		return;
	}
	rearm(c);
}

/* EPOLLERR/EPOLLHUP are reported whatever the interest: without taking
 * them as EOF, a reset peer whose fd we are not reading would wake us in a
 * loop. */
static void on_client_io(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct mg_conn *c = data;

	(void)loop;
	(void)fd;
	if (events & (EPOLLERR | EPOLLHUP))
		c->c_eof = true;
	mg_conn_pump(c);
}

static void on_upstream_io(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct mg_conn *c = data;

	(void)loop;
	(void)fd;
	if (events & (EPOLLERR | EPOLLHUP))
		c->u_eof = true;
	mg_conn_pump(c);
}

/* ---- accept ---- */

/* RST rather than FIN: the peer learns at once it was turned away. */
static void reset_close(int fd)
{
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){1, 0}, sizeof(struct linger));
	close(fd);
}

static void reject(struct mg_proxy *p, int fd, const struct mg_abi_addr *client, const char *why)
{
	char cli[64];

	p->st.rejected_no_origin++;
	mg_log_json("warn", json_pack("{s:s,s:s,s:s}", "event", "reject", "client",
				      mg_addr_fmt(client, cli, sizeof(cli)), "reason", why));
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
	for (i = 0; i < MG_CONN_UNKNOWN_LOGGED_MAX && p->unknown_logged[i] != o->pod_cgroup_id; i++)
		;
	if (i == MG_CONN_UNKNOWN_LOGGED_MAX) {
		p->unknown_logged[p->unknown_logged_next++ % MG_CONN_UNKNOWN_LOGGED_MAX] =
			o->pod_cgroup_id;
		mg_log_json("warn",
			    json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s}", "event", "reject",
				      "reason", "unknown pod", "client",
				      mg_addr_fmt(client, cli, sizeof(cli)), "orig_dst",
				      mg_addr_fmt(&o->orig_dst, dst, sizeof(dst)), "pod_cgroup_id",
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
	struct mg_abi_tuple t = {0};
	struct mg_pod_ident ident = {0};
	struct mg_abi_origin o;
	const char *limited;
	SSL_CTX *ctx;
	struct mg_conn *c;
	char dst[64];
	int found;

	if (getpeername(fd, (struct sockaddr *)&peer, &pl) ||
	    getsockname(fd, (struct sockaddr *)&local, &ll) ||
	    mg_addr_from_sockaddr((struct sockaddr *)&peer, &t.client) ||
	    mg_addr_from_sockaddr((struct sockaddr *)&local, &t.proxy)) {
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
	if (limited && p->refusing >= MG_CONN_REFUSING_MAX) {
		/* Not even room to say 429: a reset, like a full backlog. */
		p->st.limited_reset++;
		mg_pod_ident_release(&ident);
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){1, 0},
			   sizeof(struct linger));
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
	c->last_ms = c->head_since_ms = mg_proxy_now_ms();
	mg_buf_init(&c->cin, MG_CONN_IN_MAX);
	mg_buf_init(&c->cout, MG_CONN_OUT_MAX);
	mg_buf_init(&c->uin, MG_CONN_IN_MAX);
	mg_buf_init(&c->uout, MG_CONN_OUT_MAX);
	mg_addr_fmt(&t.client, c->client, sizeof(c->client));

	mg_log_json("info",
		    json_pack("{s:s,s:I,s:o,s:I,s:I,s:I,s:I,s:s,s:s,s:b}", "event", "connect",
			      "conn", (json_int_t)c->id, "pod", mg_conn_pod_json(c), "pid",
			      (json_int_t)o.tgid, "uid", (json_int_t)o.uid, "cgroup_id",
			      (json_int_t)o.cgroup_id, "pod_cgroup_id", (json_int_t)o.pod_cgroup_id,
			      "orig_dst", mg_addr_fmt(&o.orig_dst, dst, sizeof(dst)), "client",
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
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	c->next = p->conns;
	if (p->conns)
		p->conns->prev = c;
	p->conns = c;
	p->st.accepted++;
	p->st.active++;
	if (p->st.active > p->peak_active)
		p->peak_active = p->st.active;
	if (mg_loop_add_fd(p->o.loop, fd, EPOLLIN, on_client_io, c)) {
		mg_conn_free(c);
		return;
	}
}

static void listen_backoff(struct mg_proxy *p, int err);

void mg_conn_on_listen(struct mg_loop *loop, int lfd, uint32_t events, void *data)
{
	struct mg_proxy *p = data;

	(void)loop;
	(void)events;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM)
				listen_backoff(p, errno);
			return;
		}
		if (p->backing_off) {
			p->backing_off = false;
			p->backoff_ms = MG_CONN_BACKOFF_MIN_MS;
			mg_log_json("info", json_pack("{s:s,s:I}", "event", "accept_resumed",
						      "open", (json_int_t)p->st.active));
		}
		accept_one(p, fd);
	}
}

/* accept() failed for want of fds or memory: the connection stays in the
 * backlog, so the level-triggered listener would wake the loop again at
 * once, forever. Instead the listeners pause for backoff_ms (doubling up
 * to MG_CONN_BACKOFF_MAX_MS while it keeps failing); the backlog waits meanwhile.
 * Logged once per episode, counted each time. */
static void listen_backoff(struct mg_proxy *p, int err)
{
	struct itimerspec its = {
		.it_value = {p->backoff_ms / 1000, (long)(p->backoff_ms % 1000) * 1000000L}};

	for (size_t i = 0; i < p->nl; i++)
		mg_loop_mod_fd(p->o.loop, p->lfd[i], 0);
	timerfd_settime(p->backoff_fd, 0, &its, NULL);
	p->st.accept_backoffs++;
	p->paused = true;
	if (!p->backing_off)
		mg_log_json("warn", json_pack("{s:s,s:s,s:i,s:I}", "event", "accept_backoff",
					      "error", strerror(err), "pauseMs", (int)p->backoff_ms,
					      "open", (json_int_t)p->st.active));
	p->backing_off = true;
	if (p->backoff_ms < MG_CONN_BACKOFF_MAX_MS)
		p->backoff_ms = p->backoff_ms * 2 < MG_CONN_BACKOFF_MAX_MS ? p->backoff_ms * 2
									   : MG_CONN_BACKOFF_MAX_MS;
}

void mg_conn_on_backoff_end(struct mg_loop *loop, int fd, uint32_t events, void *data)
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
static uint64_t head_timeout_ms(const struct mg_conn *c)
{
	if (c->limited)
		return MG_CONN_REFUSE_HEAD_MS;
	if (mg_buf_size(&c->cin) || !c->hs_done)
		return c->p->o.header_timeout_ms;
	return c->p->o.idle_timeout_ms;
}

/* The client stopped reading: nothing of cout went out for write_stall_ms.
 * Each such exchange holds up to MG_CONN_OUT_MAX + MG_CONN_IN_MAX and an upstream
 * connection, so both sides go (an unfinished exchange's upstream is
 * closed, never pooled). */
static void write_stalled(struct mg_conn *c, uint64_t now)
{
	c->p->st.write_stalls++;
	mg_log_json("warn",
		    json_pack("{s:s,s:I,s:o,s:I,s:I,s:b}", "event", "write_stall", "conn",
			      (json_int_t)c->id, "pod", mg_conn_pod_json(c), "stalledMs",
			      (json_int_t)(now - c->wstall_ms), "pendingBytes",
			      (json_int_t)mg_buf_size(&c->cout), "upstreamClosed", c->up != NULL));
	c->dead = true;
	mg_conn_pump(c);
}

/* Once a second: timeouts (write stall, upstream connect, request head,
 * keep-alive idle), idle pooled connections past their time, and memory
 * handed back after a burst. */
void mg_conn_on_sweep(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct mg_proxy *p = data;
	uint64_t now = mg_proxy_now_ms();
	struct mg_conn *c, *next;

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
		if (c->tmask && now - c->last_ms >= TUNMASK_HOLD_MS) {
			size_t before = mg_buf_size(&c->cout);

			if (mg_tunnel_flush(c->tmask, &c->cout))
				c->dead = true;
			if (c->dead || mg_buf_size(&c->cout) != before) {
				mg_conn_pump(c);
				continue;
			}
		}
		if (c->up && (c->up->connecting || !c->up->hs_done) &&
		    now - c->up->since_ms > p->o.connect_timeout_ms) {
			p->st.upstream_failed++;
			mg_conn_close_upstream(c);
			if (c->x.active && !c->x.resp_head)
				mg_conn_reply_status(
					c, 504, "mcpgate: timed out connecting to the API server");
			else
				c->dead = true;
			mg_conn_pump(c);
		} else if (!c->x.active && !c->tunnel && !c->close_after_flush &&
			   now - c->head_since_ms > head_timeout_ms(c)) {
			if (mg_buf_size(&c->cin))
				mg_conn_reply_status(c, 408,
						     "mcpgate: request head not received in time");
			else
				c->dead = true;
			mg_conn_pump(c);
		}
	}
	mg_upstream_pool_sweep(&p->pool, now);
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
