/*
 * httpc: the daemon's one libcurl client. Blocking: call it from worker
 * threads, never from the event loop. One request, one answer: TLS always
 * verifies the peer (<ca_file> or the system store), only http and https
 * are spoken, redirects are never followed, the body is bounded.
 *
 * Credentials: the bearer token becomes an Authorization line that is wiped
 * after the call, as is every extra header line (they carry session tokens).
 * With <wipe> set the response body is wiped too, whenever it moves and when
 * it is freed: STS and TokenRequest answers are credentials.
 */
#ifndef MCPGATE_HTTPC_H
#define MCPGATE_HTTPC_H

#include <stdbool.h>
#include <stddef.h>

#include "mcpgate/str.h"

/** Size of mg_httpc_resp.err (libcurl's CURL_ERROR_SIZE). */
#define MG_HTTPC_ERR_MAX 256

/** Called for each complete line of a streamed body; nonzero stops. */
typedef int mg_httpc_line_cb(void *data, const char *line, size_t len);

struct mg_httpc_req {
	const char *url;  /* absolute http(s) URL */
	const char *body; /* non-NULL: POST <body>[0..<body_len>) */
	size_t body_len;
	const char *ca_file;	    /* CA bundle; NULL: the system store */
	struct mg_str bearer;	    /* token for "Authorization: Bearer"; empty: none */
	const char *const *headers; /* extra "Name: value" lines */
	size_t n_headers;
	const char *user_agent;	 /* NULL: "mcpgate" */
	long connect_timeout_ms; /* 0: libcurl's default */
	long timeout_ms;	 /* whole transfer; 0: none */
	long low_speed_time_s;	 /* >0: abort after so long under 1 byte/s */
	size_t max_body;	 /* response body limit (line limit when streaming) */
	bool wipe;		 /* the bodies hold credentials */
	bool no_proxy;		 /* ignore proxy environment variables */
	/* Streaming: each newline-terminated line goes to <on_line> as it
	 * arrives (empty lines skipped) and nothing is kept in the response. */
	mg_httpc_line_cb *on_line;
	void *data;
	const volatile bool *stop; /* becomes true: end the transfer */
};

struct mg_httpc_resp {
	long status; /* HTTP status, 0 when none came */
	char *body;  /* NUL-terminated (also when empty) */
	size_t len;
	char err[MG_HTTPC_ERR_MAX]; /* one line on a transport error */
	/* private */
	size_t cap;
	bool too_big, wipe;
	int line_rc;
	const struct mg_httpc_req *q;
};

/**
 * Performs <q> into <r> (which needs no initialisation). Returns 0 once an
 * answer came back, whatever its status (also when <on_line> or <stop>
 * ended a stream), -E2BIG when the body or a line exceeded <max_body>,
 * -EIO on another transport error (<r->err> says which), -ENOMEM.
 * <r->status> is set whenever the server answered. Free <r> in every case.
 */
int mg_httpc_do(const struct mg_httpc_req *q, struct mg_httpc_resp *r);

/** Frees <r>'s body (wiped first when the request asked); idempotent. */
void mg_httpc_resp_free(struct mg_httpc_resp *r);

#endif /* MCPGATE_HTTPC_H */
