/*
 * A small API-server client for the daemon's own needs (pod watch, the
 * kubernetes Service and EndpointSlice, later TokenReview/TokenRequest).
 * Built on httpc (blocking libcurl calls): use it from worker threads,
 * never the event loop. The bearer token file is re-read on every request
 * through secretfile (projected tokens rotate), and never logged; POST
 * bodies and their answers (TokenReview, TokenRequest) are wiped.
 */
#ifndef MCPGATE_KUBE_H
#define MCPGATE_KUBE_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

struct mg_kube;

struct mg_kube_opts {
	const char *server;	 /* https://host:port, no trailing slash */
	const char *ca_file;	 /* CA bundle that verifies the API server */
	const char *token_file;	 /* bearer token; NULL: none */
	long connect_timeout_ms; /* default 5000 */
};

/** Creates a client; copies <o>'s strings. NULL on ENOMEM. */
struct mg_kube *mg_kube_new(const struct mg_kube_opts *o);
void mg_kube_free(struct mg_kube *k);

/**
 * GETs <path> (absolute, with query) and parses the JSON body into <*out>
 * (caller json_decref()s). <*status> gets the HTTP status. Returns 0 for a
 * 2xx JSON answer, -EPROTO for another status or bad JSON, -EIO on transport
 * errors; <errbuf> gets one line.
 */
int mg_kube_get_json(struct mg_kube *k, const char *path, json_t **out, long *status, char *errbuf,
		     size_t errlen);

/**
 * POSTs the JSON <body> to <path> and parses the answer like
 * mg_kube_get_json() (2xx only). The body may hold a secret (a TokenReview
 * carries a token): it is never logged.
 */
int mg_kube_post_json(struct mg_kube *k, const char *path, const char *body, json_t **out,
		      long *status, char *errbuf, size_t errlen);

/** Called for each complete line of a streamed body; nonzero stops. */
typedef int mg_kube_line_cb(void *data, const char *line, size_t len);

/**
 * GETs <path> and feeds each newline-terminated line of the body to <cb>
 * as it arrives, until the server ends the stream, <cb> returns nonzero, or
 * <*stop> becomes true. Lines over 16 MiB abort with -E2BIG.
 * Returns 0 when the stream ended normally, -errno otherwise.
 */
int mg_kube_stream_lines(struct mg_kube *k, const char *path, mg_kube_line_cb *cb, void *data,
			 const volatile bool *stop, long *status, char *errbuf, size_t errlen);

#endif /* MCPGATE_KUBE_H */
