/*
 * kube: the daemon's own API-server calls, on httpc. See kube.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpgate/httpc.h"
#include "mcpgate/kube.h"
#include "mcpgate/secretfile.h"

#define MG_KUBE_MAX_BODY   (64u << 20)
#define MG_KUBE_MAX_LINE   (16u << 20)
#define MG_KUBE_MAX_URL	   4096
#define MG_KUBE_TIMEOUT_MS 60000L
/* A silent watch (no event, no bookmark) for this long is dead. */
#define MG_KUBE_WATCH_SILENCE_S	   120L
#define MG_KUBE_CONNECT_TIMEOUT_MS 5000L

struct mg_kube {
	char *server;
	char *ca_file;
	char *token_file;
	long connect_timeout_ms;
};

struct mg_kube *mg_kube_new(const struct mg_kube_opts *o)
{
	struct mg_kube *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	k->server = strdup(o->server ? o->server : "");
	k->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
	k->token_file = o->token_file ? strdup(o->token_file) : NULL;
	k->connect_timeout_ms =
		o->connect_timeout_ms ? o->connect_timeout_ms : MG_KUBE_CONNECT_TIMEOUT_MS;
	if (!k->server || (o->ca_file && !k->ca_file) || (o->token_file && !k->token_file)) {
		mg_kube_free(k);
		return NULL;
	}
	return k;
}

void mg_kube_free(struct mg_kube *k)
{
	if (!k)
		return;
	free(k->server);
	free(k->ca_file);
	free(k->token_file);
	free(k);
}

/* Performs <method> <path> on <k>'s server into <r>. The token file is
 * re-read for every call (projected tokens rotate; the calls are rare); an
 * unreadable one means no Authorization line, and the server's 401 says so.
 * Returns mg_httpc_do()'s result with <errbuf> filled on error. */
static int call(struct mg_kube *k, const char *method, const char *path, struct mg_httpc_req *q,
		struct mg_httpc_resp *r, long *status, char *errbuf, size_t errlen)
{
	static const char *const accept_json[] = {"Accept: application/json",
						  "Content-Type: application/json"};
	struct mg_secret tok = {0};
	char url[MG_KUBE_MAX_URL];
	int rc;

	snprintf(url, sizeof(url), "%s%s", k->server, path);
	if (k->token_file && mg_secretfile_read(k->token_file, &tok) == 0)
		q->bearer = (struct mg_str){tok.ptr, tok.len};
	q->url = url;
	q->ca_file = k->ca_file;
	q->headers = accept_json;
	q->n_headers = q->body ? 2 : 1;
	q->user_agent = "mcpgated/0.1";
	q->connect_timeout_ms = k->connect_timeout_ms;
	rc = mg_httpc_do(q, r);
	mg_secret_wipe(&tok);
	*status = r->status;
	if (rc)
		snprintf(errbuf, errlen, "%s %s: %s", method, path, r->err);
	return rc;
}

/* Checks <r> holds a 2xx JSON answer and parses it into <*out>. */
static int parse_json(const char *method, const char *path, const struct mg_httpc_resp *r,
		      json_t **out, char *errbuf, size_t errlen)
{
	json_error_t jerr;

	if (r->status < 200 || r->status > 299) {
		snprintf(errbuf, errlen, "%s %s: HTTP %ld", method, path, r->status);
		return -EPROTO;
	}
	*out = json_loadb(r->body, r->len, 0, &jerr);
	if (!*out) {
		snprintf(errbuf, errlen, "%s %s: bad JSON: %s", method, path, jerr.text);
		return -EPROTO;
	}
	return 0;
}

int mg_kube_get_json(struct mg_kube *k, const char *path, json_t **out, long *status, char *errbuf,
		     size_t errlen)
{
	struct mg_httpc_req q = {.timeout_ms = MG_KUBE_TIMEOUT_MS, .max_body = MG_KUBE_MAX_BODY};
	struct mg_httpc_resp r;
	int rc;

	*out = NULL;
	rc = call(k, "GET", path, &q, &r, status, errbuf, errlen);
	if (!rc)
		rc = parse_json("GET", path, &r, out, errbuf, errlen);
	mg_httpc_resp_free(&r);
	return rc;
}

int mg_kube_post_json(struct mg_kube *k, const char *path, const char *body, json_t **out,
		      long *status, char *errbuf, size_t errlen)
{
	/* The body may be a TokenReview carrying a token, the answer a
	 * TokenRequest's token: both wiped. */
	struct mg_httpc_req q = {.body = body,
				 .body_len = strlen(body),
				 .timeout_ms = MG_KUBE_TIMEOUT_MS,
				 .max_body = MG_KUBE_MAX_BODY,
				 .wipe = true};
	struct mg_httpc_resp r;
	int rc;

	*out = NULL;
	rc = call(k, "POST", path, &q, &r, status, errbuf, errlen);
	if (!rc)
		rc = parse_json("POST", path, &r, out, errbuf, errlen);
	mg_httpc_resp_free(&r);
	return rc;
}

int mg_kube_stream_lines(struct mg_kube *k, const char *path, mg_kube_line_cb *cb, void *data,
			 const volatile bool *stop, long *status, char *errbuf, size_t errlen)
{
	struct mg_httpc_req q = {.low_speed_time_s = MG_KUBE_WATCH_SILENCE_S,
				 .max_body = MG_KUBE_MAX_LINE,
				 .on_line = cb,
				 .data = data,
				 .stop = stop};
	struct mg_httpc_resp r;
	int rc;

	rc = call(k, "GET", path, &q, &r, status, errbuf, errlen);
	if (!rc && (r.status < 200 || r.status > 299)) {
		snprintf(errbuf, errlen, "GET %s: HTTP %ld", path, r.status);
		rc = -EPROTO;
	}
	mg_httpc_resp_free(&r);
	return rc;
}
