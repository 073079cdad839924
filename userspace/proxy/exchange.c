/*
 * exchange: one request and its response, as stages. See exchange.h.
 *
 * The order of a request: its head is parsed (the framing and what it
 * means, reqinfo), then the request stages run; once they all CONTINUEd the
 * request is on its way and its body streams. The response head is parsed,
 * the response stages run, and the rewritten head goes to the pod (held
 * back while a masker may still refuse the body); then the body streams.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "mcpgate/authn.h"
#include "mcpgate/buf.h"
#include "mcpgate/conn.h"
#include "mcpgate/creds.h"
#include "mcpgate/exchange.h"
#include "mcpgate/http.h"
#include "mcpgate/log.h"
#include "mcpgate/mask.h"
#include "mcpgate/proxy.h"
#include "mcpgate/reqinfo.h"
#include "mcpgate/tunnel.h"
#include "mcpgate/upstream.h"
#include "mcpgate/worker.h"

/* A request path is logged up to this length (and masked first). */
#define MG_EXCHANGE_PATH_LOG_MAX 1024
/* The response status line's reason phrase is passed up to this length. */
#define REASON_MAX 60
/* The head going to the pod: the API server's (at most the http module's
 * limit) with room for the fields the proxy regenerates. */
#define CLIENT_HEAD_MAX (MG_HTTP_HEAD_MAX + 16 * 1024)
/* Methods longer than this get 414 from the request-info scratch space. */
#define METHOD_MAX 16

/* ---- decisions ---- */

const char *mg_exchange_decision_str(enum mg_exchange_decision d)
{
	static const char *const names[MG_EXCHANGE_DECISION_MAX] = {
		[MG_EXCHANGE_ALLOW] = "allow",	   [MG_EXCHANGE_ERROR] = "error",
		[MG_EXCHANGE_LIMITED] = "limited", [MG_EXCHANGE_ABORTED] = "aborted",
		[MG_EXCHANGE_DENY] = "deny",	   [MG_EXCHANGE_HELD] = "held",
	};

	return (unsigned)d < MG_EXCHANGE_DECISION_MAX ? names[d] : "unknown";
}

/* ---- the stage runner ---- */

/* Runs the list of <x> from its current stage on. */
static enum mg_stage_rc run_from(struct mg_exchange *x)
{
	struct mg_exchange_run *r = &x->run;

	while (r->next < r->n) {
		enum mg_stage_rc rc = r->list[r->next].run(x);

		if (rc == MG_STAGE_CONTINUE) {
			r->next++;
			continue;
		}
		r->waiting = rc == MG_STAGE_WAIT;
		return rc;
	}
	return MG_STAGE_CONTINUE;
}

enum mg_stage_rc mg_exchange_run(struct mg_exchange *x, const struct mg_stage *list, size_t n)
{
	x->run = (struct mg_exchange_run){.list = list, .n = n};
	return run_from(x);
}

void mg_exchange_resume(struct mg_exchange *x, enum mg_stage_rc rc)
{
	x->run.waiting = false;
	if (rc == MG_STAGE_CONTINUE) {
		x->run.next++;
		rc = run_from(x);
	}
	if (rc != MG_STAGE_WAIT && x->settled)
		x->settled(x, rc);
}

enum mg_stage_rc mg_exchange_reply(struct mg_exchange *x, int code, const char *fmt, ...)
{
	va_list ap;

	x->reply.code = code;
	x->reply.limit = NULL;
	x->reply.counter = NULL;
	va_start(ap, fmt);
	vsnprintf(x->reply.msg, sizeof(x->reply.msg), fmt, ap);
	va_end(ap);
	return MG_STAGE_REPLY;
}

/* Whether stage <fn> of <x> is the one waiting: a worker result for an
 * exchange that ended (or a later one on the same connection) is dropped. */
static bool stage_waits(const struct mg_exchange *x, uint64_t seq, mg_stage_fn *fn)
{
	return x->active && x->seq == seq && x->run.waiting && x->run.next < x->run.n &&
	       x->run.list[x->run.next].run == fn;
}

/* ---- the request record ---- */

static void new_uuid(char out[37])
{
	unsigned char b[16];

	if (getrandom(b, sizeof(b), 0) != sizeof(b))
		memset(b, 0, sizeof(b)); /* getrandom cannot fail for 16 bytes after boot */
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

static int mask_text_sink(void *ctx, const char *buf, size_t len)
{
	return mg_buf_append(ctx, buf, len) ? -ENOBUFS : 0;
}

/* The request path as it may be logged (at most MG_EXCHANGE_PATH_LOG_MAX
 * bytes of it): exec/attach commands and other query values can carry
 * secrets, so the detectors run over it first. */
static void loggable_path(struct mg_proxy *p, struct mg_str path, char *out, size_t cap)
{
	struct mg_buf b;
	struct mg_mask_text *t;
	struct mg_mask_sink sink;
	const char *q;

	if (path.len > MG_EXCHANGE_PATH_LOG_MAX - 1)
		path.len = MG_EXCHANGE_PATH_LOG_MAX - 1;
	q = path.len ? memchr(path.ptr, '?', path.len) : NULL;
	if (!q) {
		snprintf(out, cap, "%.*s", (int)path.len, path.ptr ? path.ptr : "");
		return;
	}
	mg_buf_init(&b, cap - 1);
	sink = (struct mg_mask_sink){mask_text_sink, &b};
	t = mg_mask_text_new(p->o.mask_cfg);
	if (!t || mg_mask_text_feed(t, path.ptr, path.len, &sink) || mg_mask_text_finish(t, &sink))
		snprintf(out, cap, "%.*s?(query withheld)", (int)(q - path.ptr), path.ptr);
	else
		snprintf(out, cap, "%.*s", (int)mg_buf_size(&b), mg_buf_head(&b));
	mg_mask_text_free(t);
	mg_buf_free(&b);
}

/* Copies <s> into <*at> (NUL-terminated) and returns the copy. */
static struct mg_str keep(char **at, struct mg_str s)
{
	struct mg_str out = {*at, s.len};

	if (s.len)
		memcpy(*at, s.ptr, s.len);
	(*at)[s.len] = '\0';
	*at += s.len + 1;
	return out;
}

/* Keeps the method, target and request info of this request in <x>->info:
 * one block sized by the data, so a 253-character API group or a long
 * name is kept whole. 0 / -ENOMEM. */
static int keep_info(struct mg_exchange *x, const struct mg_http_req *req,
		     const struct mg_reqinfo *ri)
{
	struct mg_exchange_info *in = &x->info;
	size_t res_len = mg_reqinfo_format_resource(ri, NULL, 0);
	size_t len = req->method.len + req->target.len + ri->verb.len + res_len + ri->resource.len +
		     ri->api_group.len + ri->api_version.len + ri->namespace.len + ri->name.len + 9;
	char *at;

	in->mem = malloc(len);
	if (!in->mem)
		return -ENOMEM;
	at = in->mem;
	in->method = keep(&at, req->method);
	in->path = keep(&at, req->target);
	in->verb = keep(&at, ri->verb);
	in->resource = (struct mg_str){at, res_len};
	mg_reqinfo_format_resource(ri, at, res_len + 1);
	at += res_len + 1;
	in->res_only = keep(&at, ri->resource);
	in->api_group = keep(&at, ri->api_group);
	in->api_version = keep(&at, ri->api_version);
	in->ns = keep(&at, ri->namespace);
	in->name = keep(&at, ri->name);
	in->resource_req = ri->is_resource_request;
	in->watch = ri->watch;
	return 0;
}

/* Before the request info is known (a malformed head): "-" and "". */
static void no_info(struct mg_exchange *x)
{
	static const struct mg_str empty = {"", 0};

	free(x->info.mem);
	x->info = (struct mg_exchange_info){.method = MG_STR("-"),
					    .path = empty,
					    .verb = empty,
					    .resource = empty,
					    .res_only = empty,
					    .api_group = empty,
					    .api_version = empty,
					    .ns = empty,
					    .name = empty};
}

void mg_exchange_clear(struct mg_exchange *x)
{
	mg_mask_body_free(x->mask);
	x->mask = NULL;
	free(x->held_head);
	x->held_head = NULL;
	free(x->replay);
	x->replay = NULL;
	free(x->info.mem);
	x->info.mem = NULL;
}

static json_t *masked_json(struct mg_proxy *p, const struct mg_mask_stats *ms)
{
	json_t *hits = json_object();

	for (unsigned i = 0; i < MG_MASK_DET_MAX; i++) {
		const char *name = mg_mask_det_name(p->o.mask_cfg ? p->o.mask_cfg : &p->mcfg, i);

		if (ms->hits[i] && name)
			json_object_set_new(hits, name, json_integer((json_int_t)ms->hits[i]));
	}
	return json_pack("{s:I,s:I,s:I,s:o}", "secrets", (json_int_t)ms->secrets, "secretFields",
			 (json_int_t)ms->secret_fields, "lastApplied", (json_int_t)ms->last_applied,
			 "detectors", hits);
}

void mg_exchange_finish(struct mg_conn *c, enum mg_exchange_decision d)
{
	char logpath[MG_EXCHANGE_PATH_LOG_MAX + 256];
	struct mg_proxy *p = c->p;
	struct mg_exchange *x = &c->x;
	const struct mg_exchange_info *in = &x->info;
	double secs = (double)(mg_proxy_now_ns() - x->t0_ns) / 1e9;
	json_t *ev;

	loggable_path(p, in->path, logpath, sizeof(logpath));
	ev = json_pack("{s:s,s:I,s:s,s:o,s:I,s:s%,s:s,s:{s:b,s:s%,s:s%,s:s%,s:s%,s:s%,s:s%},s:i,"
		       "s:s,s:I,s:I,s:f,s:b,s:b}",
		       "event", "request", "conn", (json_int_t)c->id, "auditID", x->audit_id, "pod",
		       mg_conn_pod_json(c), "pid", (json_int_t)c->o.tgid, "method", in->method.ptr,
		       in->method.len, "path", logpath, "request", "isResourceRequest",
		       in->resource_req, "verb", in->verb.ptr, in->verb.len, "apiGroup",
		       in->api_group.ptr, in->api_group.len, "apiVersion", in->api_version.ptr,
		       in->api_version.len, "resource", in->resource.ptr, in->resource.len,
		       "namespace", in->ns.ptr, in->ns.len, "name", in->name.ptr, in->name.len,
		       "status", x->status, "decision", mg_exchange_decision_str(d), "bytesIn",
		       (json_int_t)x->bytes_in, "bytesOut", (json_int_t)x->bytes_out, "latencyMs",
		       secs * 1000.0, "upgrade", c->tunnel, "pooled", x->pooled);
	if (x->mask)
		json_object_set_new(ev, "masked", masked_json(p, mg_mask_body_stats(x->mask)));
	mg_log_json(x->status >= 500 ? "warn" : "info", ev);
	mg_proxy_count_request(p, in->verb.ptr, in->resource.ptr, x->status, d, secs);
	mg_exchange_clear(x);
	x->active = false;
}

/* ---- the head going upstream ---- */

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
		struct mg_str item = {p, (size_t)(e - p)};

		while (item.len && (*item.ptr == ' ' || *item.ptr == '\t')) {
			item.ptr++;
			item.len--;
		}
		while (item.len &&
		       (item.ptr[item.len - 1] == ' ' || item.ptr[item.len - 1] == '\t'))
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
static int build_upstream_head(struct mg_conn *c, const struct mg_http_req *req)
{
	struct mg_buf *b = &c->uout;
	struct mg_str tok = mg_proxy_daemon_token(c->p);
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

/* ---- the request head ---- */

static void settled(struct mg_exchange *x, enum mg_stage_rc rc);

/* Starts the exchange of a request whose head (<n> bytes of cin, or a
 * parse error) just arrived. */
static void begin(struct mg_conn *c)
{
	struct mg_exchange *x = &c->x;

	memset(x, 0, sizeof(*x));
	x->c = c;
	x->seq = ++c->exchanges;
	x->active = true;
	x->settled = settled;
	x->t0_ns = mg_proxy_now_ns();
	new_uuid(x->audit_id);
	no_info(x);
}

/* The request framing, from its head. */
static void take_request_framing(struct mg_exchange *x, const struct mg_http_req *req)
{
	x->head_req = mg_str_eq(req->method, MG_STR("HEAD"));
	x->upgrade = req->upgrade;
	x->client_keep_alive = req->keep_alive;
	x->client_http11 = req->minor == 1;
	x->req_body = req->body;
	x->req_left = req->content_length;
	x->req_done = req->body == MG_HTTP_BODY_NONE ||
		      (req->body == MG_HTTP_BODY_LENGTH && req->content_length == 0);
	if (req->body == MG_HTTP_BODY_CHUNKED)
		mg_http_chunked_init(&x->req_ch, 0);
}

/* Parses the head at the start of cin. Returns its length, 0 while it is
 * incomplete, or -1 with the reply filled in. The parser is stateless: it
 * re-runs only when a new line ended (or the head limit is reached), so a
 * head trickling in byte by byte costs a bounded number of passes. */
static ssize_t parse_request_head(struct mg_conn *c, struct mg_http_req *req)
{
	struct mg_http_err err;
	ssize_t n;

	if (c->head_scanned && mg_buf_size(&c->cin) < MG_HTTP_HEAD_MAX &&
	    !memchr(mg_buf_head(&c->cin) + c->head_scanned - 1, '\n',
		    mg_buf_size(&c->cin) - c->head_scanned + 1))
		return 0;
	n = mg_http_parse_req(req, mg_buf_head(&c->cin), mg_buf_size(&c->cin), NULL, &err);
	if (n == 0) {
		c->head_scanned = mg_buf_size(&c->cin);
		return 0;
	}
	c->head_scanned = 0;
	begin(c);
	if (n < 0)
		mg_exchange_reply(&c->x, err.status, "mcpgate: malformed request: %s", err.reason);
	return n;
}

/* What the request means, by the API server's rules. 0, or -1 with the
 * reply filled in (a target the API server would read differently). */
static int take_request_info(struct mg_exchange *x, const struct mg_http_req *req)
{
	char scratch[MG_REQINFO_SCRATCH_LEN(MG_HTTP_TARGET_MAX, METHOD_MAX)];
	struct mg_reqinfo_err rerr;
	struct mg_reqinfo ri;
	int rc;

	rc = mg_reqinfo_parse(&ri, req->method, req->target, scratch, sizeof(scratch), &rerr);
	if (rc) {
		mg_exchange_reply(x, rc == -ENOBUFS ? 414 : 400,
				  "mcpgate: request target refused: %s",
				  rc == -ENOBUFS ? "too long" : rerr.reason);
		return -1;
	}
	if (keep_info(x, req, &ri)) {
		mg_exchange_reply(x, 503, "mcpgate: out of memory");
		return -1;
	}
	return 0;
}

bool mg_exchange_take_request(struct mg_conn *c)
{
	struct mg_exchange *x = &c->x;
	struct mg_http_req req;
	enum mg_stage_rc rc;
	ssize_t n;

	if (!mg_buf_size(&c->cin))
		return false;
	n = parse_request_head(c, &req);
	if (n == 0)
		return false;
	if (n < 0) {
		mg_conn_reply(c); /* read nothing more from this client */
		return true;
	}
	if (take_request_info(x, &req)) {
		mg_buf_consume(&c->cin, (size_t)n);
		mg_conn_reply(c);
		return true;
	}
	take_request_framing(x, &req);
	/* <req> points into cin: the head is consumed only after the stages
	 * that read it ran, and none reads it after a WAIT. */
	x->req = &req;
	rc = mg_exchange_run(x, mg_exchange_request_stages, mg_exchange_n_request_stages);
	x->req = NULL;
	mg_buf_consume(&c->cin, (size_t)n);
	if (rc == MG_STAGE_REPLY)
		mg_conn_reply(c);
	return true;
}

/* A stage that waited resumed, and the request stages ran to their end:
 * the request is on its way, or refused. */
static void settled(struct mg_exchange *x, enum mg_stage_rc rc)
{
	if (rc == MG_STAGE_REPLY)
		mg_conn_reply(x->c);
	mg_conn_pump(x->c);
}

/* ---- request stages ---- */

/* identify: the pod is the one the kernel named for this connection at
 * accept (a connection of an unknown pod never gets this far). What is
 * left to decide is whether this connection may ask at all: one over a
 * connection cap was kept only to answer 429. */
static enum mg_stage_rc stage_identify(struct mg_exchange *x)
{
	struct mg_conn *c = x->c;
	bool per_pod;

	if (!c->ident.known)
		return mg_exchange_reply(x, 403, "mcpgate: unknown pod");
	if (!c->limited)
		return MG_STAGE_CONTINUE;
	per_pod = strcmp(c->limited, "max_connections");
	mg_exchange_reply(x, 429, "mcpgate: too many connections%s (at most %u); retry later",
			  per_pod ? " from this pod" : "",
			  per_pod ? c->p->o.max_conns_per_pod : c->p->o.max_conns);
	x->reply.limit = c->limited; /* counted at accept */
	return MG_STAGE_REPLY;
}

/* rewrite: the head as it goes upstream, without the pod's credentials. */
static enum mg_stage_rc stage_rewrite(struct mg_exchange *x)
{
	if (build_upstream_head(x->c, x->req))
		return mg_exchange_reply(x, 431, "mcpgate: request head too large");
	return MG_STAGE_CONTINUE;
}

/* A job the worker pool refused (mg_worker_submit()'s <rc>): 429 over its
 * limits, 503 otherwise. */
static enum mg_stage_rc refuse_job(struct mg_exchange *x, int rc)
{
	struct mg_proxy_stats *st = &x->c->p->st;

	if (rc == -EDQUOT) {
		mg_exchange_reply(x, 429,
				  "mcpgate: too many of this pod's requests are waiting for a "
				  "credential or a token review; retry later");
		x->reply.limit = "worker_pod_quota";
		x->reply.counter = &st->limited_worker_pod;
	} else if (rc == -EAGAIN) {
		mg_exchange_reply(x, 429,
				  "mcpgate: too many requests are waiting for a credential or a "
				  "token review; retry later");
		x->reply.limit = "worker_queue_full";
		x->reply.counter = &st->limited_worker_queue;
	} else {
		mg_exchange_reply(x, 503, "mcpgate: credential worker unavailable");
	}
	return MG_STAGE_REPLY;
}

/* authn: the pod's own bearer token must belong to the pod's
 * ServiceAccount (the kernel says which pod is talking, the token must
 * agree). Answers are cached by hash; a miss is a TokenReview on the
 * worker pool. Off without --token-review. */
struct authn_job {
	struct mg_proxy *p;
	uint64_t conn_id, seq;
	char *token; /* wiped and freed with the job */
	unsigned char hash[MG_AUTHN_HASH_LEN];
	struct mg_authn_answer ans;
	char error[MG_AUTHN_ERROR_MAX];
	int rc;
};

static enum mg_stage_rc stage_authn(struct mg_exchange *x);

static enum mg_stage_rc authn_verdict(struct mg_exchange *x, const struct mg_authn_answer *ans)
{
	struct mg_conn *c = x->c;
	char want[400];

	if (mg_authn_is_service_account(ans, c->ident.namespace, c->ident.service_account, want,
					sizeof(want)) &&
	    c->ident.known)
		return MG_STAGE_CONTINUE;
	c->p->st.review_failed++;
	mg_log_json("warn",
		    json_pack("{s:s,s:I,s:o,s:b,s:s,s:s}", "event", "token_review_failed", "conn",
			      (json_int_t)c->id, "pod", mg_conn_pod_json(c), "authenticated",
			      ans->authenticated, "tokenUser", ans->username, "expected", want));
	return mg_exchange_reply(
		x, 401,
		"mcpgate: the bearer token does not belong to this pod's ServiceAccount (%s)",
		want);
}

static void authn_run(void *arg)
{
	struct authn_job *j = arg;

	j->rc = mg_authn_review(j->p->authn, j->token, &j->ans, j->error, sizeof(j->error));
}

static void authn_done(void *arg, int status)
{
	struct authn_job *j = arg;
	struct mg_conn *c = status ? NULL : mg_conn_find(j->p, j->conn_id);

	if (c && stage_waits(&c->x, j->seq, stage_authn)) {
		if (j->rc) {
			mg_log_json("warn",
				    json_pack("{s:s,s:I,s:s}", "event", "token_review_error",
					      "conn", (json_int_t)c->id, "error", j->error));
			mg_exchange_resume(&c->x,
					   mg_exchange_reply(&c->x, 503,
							     "mcpgate: token review "
							     "failed; refusing the request"));
		} else {
			mg_authn_put(j->p->authn, j->hash, &j->ans, mg_proxy_now_ms());
			mg_exchange_resume(&c->x, authn_verdict(&c->x, &j->ans));
		}
	}
	explicit_bzero(j->token, strlen(j->token));
	free(j->token);
	free(j);
}

static enum mg_stage_rc stage_authn(struct mg_exchange *x)
{
	struct mg_conn *c = x->c;
	struct mg_proxy *p = c->p;
	struct mg_str auth;
	unsigned char hash[MG_AUTHN_HASH_LEN];
	const struct mg_authn_answer *ans;
	struct authn_job *j;
	int rc;

	if (!p->authn)
		return MG_STAGE_CONTINUE;
	auth = mg_http_header(x->req->headers, x->req->n_headers, MG_STR("authorization"));
	if (auth.len <= 7 || strncasecmp(auth.ptr, "bearer ", 7))
		return mg_exchange_reply(x, 401,
					 "mcpgate: a bearer token is required (token "
					 "review is on)");
	auth.ptr += 7;
	auth.len -= 7;
	while (auth.len && *auth.ptr == ' ') {
		auth.ptr++;
		auth.len--;
	}
	mg_authn_hash(auth, hash);
	ans = mg_authn_find(p->authn, hash, mg_proxy_now_ms());
	if (ans)
		return authn_verdict(x, ans);
	j = calloc(1, sizeof(*j));
	if (!j)
		return refuse_job(x, -ENOMEM);
	*j = (struct authn_job){.p = p, .conn_id = c->id, .seq = x->seq};
	memcpy(j->hash, hash, sizeof(hash));
	j->token = strndup(auth.ptr, auth.len);
	rc = j->token ? mg_worker_submit(p->worker, c->o.pod_cgroup_id, authn_run, authn_done, j)
		      : -ENOMEM;
	if (rc) {
		if (j->token)
			explicit_bzero(j->token, auth.len);
		free(j->token);
		free(j);
		return refuse_job(x, rc);
	}
	return MG_STAGE_WAIT;
}

/* creds: the upstream credential, fetched by the provider on the worker
 * pool, completes the upstream head. Never a fallback to another
 * credential. Without a provider the daemon's token is in the head
 * already (rewrite). */
struct creds_job {
	struct mg_proxy *p;
	uint64_t conn_id, seq;
	/* the subject, copied: the pod's identity may change meanwhile */
	char ns[sizeof(((struct mg_pod_ident *)0)->namespace)];
	char pod[sizeof(((struct mg_pod_ident *)0)->name)];
	char uid[sizeof(((struct mg_pod_ident *)0)->uid)];
	char sa[sizeof(((struct mg_pod_ident *)0)->service_account)];
	struct mg_creds_result res;
	int rc;
};

static enum mg_stage_rc stage_creds(struct mg_exchange *x);

static void creds_run(void *arg)
{
	struct creds_job *j = arg;
	struct mg_creds_subject who = {j->ns, j->pod, j->uid, j->sa, NULL};

	j->rc = mg_creds_get(j->p->o.creds, &who, &j->res);
}

static enum mg_stage_rc creds_arrived(struct mg_exchange *x, struct creds_job *j)
{
	struct mg_conn *c = x->c;
	struct mg_buf *b = &c->uout;
	int rc = 0;

	if (j->rc < 0 || !j->res.authorization) {
		c->p->st.creds_failed++;
		mg_log_json("warn",
			    json_pack("{s:s,s:I,s:s,s:s,s:o}", "event", "creds_failed", "conn",
				      (json_int_t)c->id, "reason", j->res.reason, "message",
				      j->res.message, "pod", mg_conn_pod_json(c)));
		return mg_exchange_reply(x, j->res.http_status ? j->res.http_status : 502,
					 "mcpgate: no upstream credential: %s: %s",
					 j->res.reason[0] ? j->res.reason : "error",
					 j->res.message);
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
	if (rc)
		return mg_exchange_reply(x, 431, "mcpgate: request head too large");
	return MG_STAGE_CONTINUE;
}

static void creds_done(void *arg, int status)
{
	struct creds_job *j = arg;
	struct mg_conn *c = status ? NULL : mg_conn_find(j->p, j->conn_id);

	if (c && stage_waits(&c->x, j->seq, stage_creds))
		mg_exchange_resume(&c->x, creds_arrived(&c->x, j));
	mg_creds_result_free(&j->res);
	free(j);
}

static enum mg_stage_rc stage_creds(struct mg_exchange *x)
{
	struct mg_conn *c = x->c;
	struct creds_job *j;
	int rc;

	if (!c->p->o.creds)
		return MG_STAGE_CONTINUE;
	j = calloc(1, sizeof(*j));
	if (!j)
		return refuse_job(x, -ENOMEM);
	j->p = c->p;
	j->conn_id = c->id;
	j->seq = x->seq;
	snprintf(j->ns, sizeof(j->ns), "%s", c->ident.namespace);
	snprintf(j->pod, sizeof(j->pod), "%s", c->ident.name);
	snprintf(j->uid, sizeof(j->uid), "%s", c->ident.uid);
	snprintf(j->sa, sizeof(j->sa), "%s", c->ident.service_account);
	rc = mg_worker_submit(c->p->worker, c->o.pod_cgroup_id, creds_run, creds_done, j);
	if (rc) {
		free(j);
		return refuse_job(x, rc);
	}
	return MG_STAGE_WAIT;
}

/* upstream: attach an API server connection (pooled, or new); the
 * request leaves as the loop writes uout. */
static enum mg_stage_rc stage_upstream(struct mg_exchange *x)
{
	struct mg_conn *c = x->c;

	if (!c->up && mg_conn_attach_upstream(c)) {
		c->p->st.upstream_failed++;
		return mg_exchange_reply(x, 502, "mcpgate: cannot connect to the API server");
	}
	c->p->st.requests++;
	return MG_STAGE_CONTINUE;
}

const struct mg_stage mg_exchange_request_stages[] = {
	{"identify", stage_identify}, {"rewrite", stage_rewrite},   {"authn", stage_authn},
	{"creds", stage_creds},	      {"upstream", stage_upstream},
};
const size_t mg_exchange_n_request_stages =
	sizeof(mg_exchange_request_stages) / sizeof(mg_exchange_request_stages[0]);

/* Moves request body bytes cin -> uout. */
bool mg_exchange_forward_request_body(struct mg_conn *c)
{
	struct mg_exchange *x = &c->x;
	bool progress = false;

	while (!x->req_done && !mg_exchange_waiting(x) && mg_buf_size(&c->cin) &&
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
			n = mg_http_chunked_feed(&x->req_ch, mg_buf_head(&c->cin), avail, &data,
						 &err);
			if (n < 0) {
				/* The upstream already has part of this request:
				 * it cannot be completed, so both sides go. */
				char msg[200];

				snprintf(msg, sizeof(msg), "mcpgate: malformed chunked body: %s",
					 err.reason);
				mg_conn_reply_status(c, 400, msg);
				c->c_eof = true;
				mg_conn_close_upstream(c);
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
	struct mg_conn *c = ctx;
	struct mg_exchange *x = &c->x;
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
static void mask_failed(struct mg_conn *c, const char *why)
{
	struct mg_exchange *x = &c->x;
	char logpath[MG_EXCHANGE_PATH_LOG_MAX + 256];

	c->p->st.mask_failed++;
	loggable_path(c->p, x->info.path, logpath, sizeof(logpath));
	mg_log_json("warn", json_pack("{s:s,s:I,s:s,s:s,s:o}", "event", "mask_failed", "conn",
				      (json_int_t)c->id, "path", logpath, "reason", why, "pod",
				      mg_conn_pod_json(c)));
	mg_conn_close_upstream(c);
	if (x->held_head) {
		char msg[256];

		free(x->held_head);
		x->held_head = NULL;
		snprintf(msg, sizeof(msg), "mcpgate: the response cannot be masked safely: %s",
			 why);
		mg_conn_reply_status(c, 502, msg);
	} else {
		c->dead = true;
	}
}

/* Hands decoded body bytes to the client: through the masker when this
 * response is masked, else framed as they are. 0, or -1 when it failed. */
static int deliver(struct mg_conn *c, const char *data, size_t len)
{
	struct mg_exchange *x = &c->x;

	if (x->mask) {
		struct mg_mask_sink sink = {mask_sink, c};

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
static int end_body(struct mg_conn *c)
{
	struct mg_exchange *x = &c->x;

	if (x->mask) {
		struct mg_mask_sink sink = {mask_sink, c};

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

/* ---- response stages ---- */

/* Which 101 upgrades may become tunnels. */
enum upgrade_verdict {
	UPGRADE_MASKED,	    /* exec/attach: the terminal is masked frame by frame */
	UPGRADE_PASSED,	    /* port-forward: the pod's own traffic, passed as it is */
	UPGRADE_UNMASKABLE, /* exec/attach over a protocol the tunnel masker cannot parse */
	UPGRADE_REFUSED,    /* anything else */
};

/* The upgrade policy, in one place: exec and attach carry a terminal,
 * which is masked (WebSocket or SPDY frames, into <*proto>); port-forward
 * passes; any other upgrade (pods/proxy, services/proxy, nodes/proxy, which
 * reaches the kubelet's own exec) would be a tunnel nothing could mask. */
static enum upgrade_verdict upgrade_policy(struct mg_str resource, struct mg_str upgrade,
					   enum mg_tunnel_proto *proto)
{
	if (mg_str_eq(resource, MG_STR("pods/exec")) ||
	    mg_str_eq(resource, MG_STR("pods/attach"))) {
		if (mg_str_caseeq(upgrade, MG_STR("websocket")))
			*proto = MG_TUNNEL_WEBSOCKET;
		else if (upgrade.len >= 4 && !strncasecmp(upgrade.ptr, "SPDY", 4))
			*proto = MG_TUNNEL_SPDY;
		else
			return UPGRADE_UNMASKABLE;
		return UPGRADE_MASKED;
	}
	if (mg_str_eq(resource, MG_STR("pods/portforward")))
		return UPGRADE_PASSED;
	return UPGRADE_REFUSED;
}

/* upgrade: a 101 must answer an upgrade the pod asked for, and become a
 * tunnel the upgrade policy allows (masked for exec/attach). */
static enum mg_stage_rc stage_upgrade(struct mg_exchange *x)
{
	struct mg_conn *c = x->c;
	enum mg_tunnel_proto proto = 0;

	if (x->resp->status != 101)
		return MG_STAGE_CONTINUE;
	if (!x->upgrade)
		return mg_exchange_reply(x, 502,
					 "mcpgate: unsolicited protocol switch from the "
					 "API server");
	switch (upgrade_policy(x->info.resource, x->resp->upgrade_proto, &proto)) {
	case UPGRADE_PASSED:
		return MG_STAGE_CONTINUE;
	case UPGRADE_MASKED:
		c->tmask = mg_tunnel_new(proto, c->p->o.mask_cfg);
		if (c->tmask)
			return MG_STAGE_CONTINUE;
		/* no masker, no tunnel */
		/* fallthrough */
	case UPGRADE_UNMASKABLE:
		return mg_exchange_reply(x, 502,
					 "mcpgate: exec/attach over an upgrade protocol "
					 "that cannot be masked");
	case UPGRADE_REFUSED:
	default:
		return mg_exchange_reply(x, 403,
					 "mcpgate: protocol upgrades are allowed for exec, "
					 "attach and port-forward only");
	}
}

/* mask: how the response body is masked (x->mask, or none for bodies that
 * need none). What cannot be masked does not pass. */
static enum mg_stage_rc stage_mask(struct mg_exchange *x)
{
	const struct mg_http_resp *resp = x->resp;
	struct mg_conn *c = x->c;
	struct mg_mask_body_opts mo = {0};
	enum mg_mask_ctype ct;
	char why[160];

	if (resp->status == 101 || x->resp_body == MG_HTTP_BODY_NONE ||
	    (x->resp_body == MG_HTTP_BODY_LENGTH && x->resp_left == 0))
		return MG_STAGE_CONTINUE;
	ct = resp->has_content_type ? mg_mask_content_type(resp->content_type) : MG_MASK_CT_REFUSE;
	if (!x->info.resource_req && (ct == MG_MASK_CT_REFUSE || ct == MG_MASK_CT_PROTOBUF) &&
	    (!strncmp(x->info.path.ptr, "/openapi/", 9) ||
	     mg_str_eq(x->info.path, MG_STR("/metrics"))))
		return MG_STAGE_CONTINUE; /* API schemas and metrics: no API objects in there */
	if (ct == MG_MASK_CT_PROTOBUF || ct == MG_MASK_CT_REFUSE) {
		snprintf(why, sizeof(why), "content type %.*s", (int)resp->content_type.len,
			 resp->content_type.ptr ? resp->content_type.ptr : "");
		goto refuse;
	}
	if (resp->has_content_encoding) {
		if (mg_str_caseeq(resp->content_encoding, MG_STR("gzip"))) {
			mo.gzip = true;
		} else if (!mg_str_caseeq(resp->content_encoding, MG_STR("identity"))) {
			snprintf(why, sizeof(why), "content encoding %.*s",
				 (int)resp->content_encoding.len, resp->content_encoding.ptr);
			goto refuse;
		}
	}
	mo.kind = ct == MG_MASK_CT_TEXT ? MG_MASK_KIND_TEXT
		  : x->info.watch	? MG_MASK_KIND_JSON_STREAM
					: MG_MASK_KIND_JSON;
	mo.resource = x->info.res_only;
	x->mask = mg_mask_body_new(c->p->o.mask_cfg, &mo);
	if (x->mask)
		return MG_STAGE_CONTINUE;
	snprintf(why, sizeof(why), "out of memory");
refuse:
	c->p->st.mask_failed++;
	return mg_exchange_reply(x, 502, "mcpgate: refusing a response that cannot be masked (%s)",
				 why);
}

const struct mg_stage mg_exchange_response_stages[] = {
	{"upgrade", stage_upgrade},
	{"mask", stage_mask},
};
const size_t mg_exchange_n_response_stages =
	sizeof(mg_exchange_response_stages) / sizeof(mg_exchange_response_stages[0]);

/* ---- the response head ---- */

/* The response framing, from its head. */
static void take_response_framing(struct mg_exchange *x, const struct mg_http_resp *resp)
{
	x->status = resp->status;
	x->resp_head = true;
	x->resp_body = mg_http_resp_body_kind(resp, x->head_req);
	x->resp_left = resp->content_length;
	x->up_keep_alive = resp->keep_alive;
	if (x->resp_body == MG_HTTP_BODY_CHUNKED)
		mg_http_chunked_init(&x->resp_ch, 0);
}

/* How the body reaches the pod. A body delimited by close, or a masked one
 * (its length changes), reaches an HTTP/1.1 client chunked, so the
 * connection survives it. Returns whether the client connection ends with
 * this response. */
static bool choose_client_framing(struct mg_exchange *x)
{
	x->resp_chunk_out =
		x->client_http11 &&
		(x->resp_body == MG_HTTP_BODY_CHUNKED ||
		 ((x->resp_body == MG_HTTP_BODY_CLOSE || x->mask) && x->client_keep_alive));
	if (!x->client_http11 && x->resp_body != MG_HTTP_BODY_NONE &&
	    (x->resp_body == MG_HTTP_BODY_CHUNKED || x->mask))
		x->client_keep_alive = false; /* HTTP/1.0: the body ends with the connection */
	return !x->client_keep_alive ||
	       ((x->resp_body == MG_HTTP_BODY_CLOSE || x->mask) && !x->resp_chunk_out);
}

/* Writes the head as it goes to the pod into <head>: hop-by-hop fields
 * regenerated, a 101's passed as they are. -ENOBUFS when too large. */
static int build_client_head(struct mg_exchange *x, const struct mg_http_resp *resp,
			     bool close_client, struct mg_buf *head)
{
	char line[96];
	int rc = 0;

	snprintf(line, sizeof(line), "HTTP/1.1 %d %.*s\r\n", resp->status,
		 (int)(resp->reason.len < REASON_MAX ? resp->reason.len : REASON_MAX),
		 resp->reason.ptr);
	rc |= put(head, line);
	for (size_t i = 0; i < resp->n_headers; i++) {
		if (drop_response_header(resp->headers[i].name, resp->status == 101))
			continue;
		/* A masked gzip body leaves re-compressed: the encoding stays. */
		rc |= mg_buf_append_str(head, resp->headers[i].name);
		rc |= put(head, ": ");
		rc |= mg_buf_append_str(head, resp->headers[i].value);
		rc |= put(head, "\r\n");
	}
	if (resp->status != 101) {
		if (x->resp_chunk_out) {
			rc |= put(head, "Transfer-Encoding: chunked\r\n");
		} else if (!x->mask && (x->resp_body == MG_HTTP_BODY_LENGTH ||
					(resp->has_content_length && x->head_req))) {
			snprintf(line, sizeof(line), "Content-Length: %llu\r\n",
				 (unsigned long long)resp->content_length);
			rc |= put(head, line);
		}
		if (close_client)
			rc |= put(head, "Connection: close\r\n");
	}
	rc |= put(head, "\r\n");
	return rc ? -ENOBUFS : 0;
}

/* Sends <head> to the pod, or, for a masked body, holds it: if masking
 * fails before any byte is out, the client gets a Status instead of half
 * a response. 0, or -1 with the reply filled in. */
static int send_client_head(struct mg_conn *c, struct mg_buf *head)
{
	struct mg_exchange *x = &c->x;

	if (!x->mask) {
		mg_buf_append(&c->cout, mg_buf_head(head), mg_buf_size(head));
		return 0;
	}
	x->held_len = mg_buf_size(head);
	x->held_head = malloc(x->held_len);
	if (!x->held_head) {
		mg_exchange_reply(x, 503, "mcpgate: out of memory");
		return -1;
	}
	memcpy(x->held_head, mg_buf_head(head), x->held_len);
	return 0;
}

/* An interim 1xx other than 101 (100 Continue): passed on, the real head
 * is still to come. */
static void pass_interim(struct mg_conn *c, const struct mg_http_resp *resp, size_t n)
{
	char line[96];

	snprintf(line, sizeof(line), "HTTP/1.1 %d Continue\r\n\r\n", resp->status);
	put(&c->cout, line);
	mg_buf_consume(&c->uin, n);
}

bool mg_exchange_take_response_head(struct mg_conn *c)
{
	struct mg_exchange *x = &c->x;
	struct mg_http_resp resp;
	struct mg_http_err err;
	struct mg_buf head;
	enum mg_stage_rc rc;
	bool close_client;
	ssize_t n;

	if (!mg_buf_size(&c->uin))
		return false;
	n = mg_http_parse_resp(&resp, mg_buf_head(&c->uin), mg_buf_size(&c->uin), NULL, &err);
	if (n == 0)
		return false;
	if (n < 0) {
		mg_exchange_reply(x, 502, "mcpgate: bad response from the API server: %s",
				  err.reason);
		goto fail;
	}
	if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
		pass_interim(c, &resp, (size_t)n);
		return true;
	}
	take_response_framing(x, &resp);
	x->resp = &resp;
	rc = mg_exchange_run(x, mg_exchange_response_stages, mg_exchange_n_response_stages);
	x->resp = NULL;
	if (rc == MG_STAGE_WAIT) /* no response stage waits yet: <resp> is in uin */
		mg_exchange_reply(x, 500, "mcpgate: a response stage cannot wait");
	if (rc != MG_STAGE_CONTINUE)
		goto fail;
	close_client = choose_client_framing(x);
	mg_buf_init(&head, CLIENT_HEAD_MAX);
	if (build_client_head(x, &resp, close_client, &head)) {
		mg_exchange_reply(x, 502, "mcpgate: response head too large");
		mg_buf_free(&head);
		goto fail;
	}
	n = send_client_head(c, &head) ? -n : n;
	mg_buf_free(&head);
	if (n < 0)
		goto fail;
	mg_buf_consume(&c->uin, (size_t)n);
	if (resp.status == 101) {
		c->tunnel = true;
		c->p->st.upgrades++;
		x->resp_done = x->req_done = true;
		mg_exchange_finish(c, MG_EXCHANGE_ALLOW);
		return true;
	}
	if (x->resp_body == MG_HTTP_BODY_NONE ||
	    (x->resp_body == MG_HTTP_BODY_LENGTH && x->resp_left == 0))
		end_body(c);
	/* Not close_after_flush yet: the head of a masked body is held and
	 * the body may still be on its way, so cout can be empty long before
	 * the response is out. mg_exchange_complete() closes. */
	x->close_client = close_client;
	return true;
fail:
	mg_tunnel_free(c->tmask);
	c->tmask = NULL;
	mg_conn_close_upstream(c);
	mg_conn_reply(c);
	return true;
}

/* ---- the response body ---- */

/* Moves response body bytes uin -> cout (through the masker when it
 * applies), re-chunking as needed. The masker may write more than it
 * reads (markers), so input is fed only while cout has ample room. */
bool mg_exchange_forward_response_body(struct mg_conn *c)
{
	struct mg_exchange *x = &c->x;
	bool progress = false;

	while (!x->resp_done && !c->dead && mg_buf_room(&c->cout) > MG_CONN_MASK_ROOM) {
		size_t avail = mg_buf_size(&c->uin);

		if (avail > MG_CONN_IO_CHUNK)
			avail = MG_CONN_IO_CHUNK;
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
				mg_log_json("warn",
					    json_pack("{s:s,s:I,s:s}", "event",
						      "bad_upstream_chunk", "conn",
						      (json_int_t)c->id, "reason", err.reason));
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
void mg_exchange_complete(struct mg_conn *c)
{
	struct mg_exchange *x = &c->x;
	bool reuse = x->up_keep_alive && !mg_buf_size(&c->uin) && !mg_buf_size(&c->uout) && c->up &&
		     !c->u_eof;

	if (x->close_client)
		c->close_after_flush = true;
	mg_exchange_finish(c, MG_EXCHANGE_ALLOW);
	if (c->up) {
		if (reuse) {
			mg_upstream_pool_put(&c->p->pool, c->up, mg_proxy_now_ms());
		} else {
			mg_upstream_free(c->p->o.loop, c->up);
		}
		c->up = NULL;
	}
	c->u_eof = false;
	c->head_since_ms = mg_proxy_now_ms();
	/* An idle keep-alive connection keeps no buffer memory. */
	if (!mg_buf_size(&c->cout))
		mg_conn_buf_drop(c->p, &c->cout);
	if (!mg_buf_size(&c->cin))
		mg_conn_buf_drop(c->p, &c->cin);
	mg_conn_buf_drop(c->p, &c->uin);
	mg_conn_buf_drop(c->p, &c->uout);
}
