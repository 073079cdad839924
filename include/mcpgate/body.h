/*
 * Response bodies: chooses and drives a masker for a body (JSON, a watch
 * stream, text), inflating and re-deflating gzip bodies, and classifies
 * Content-Types for the proxy (what can be masked, what must be refused).
 */
#ifndef MCPGATE_BODY_H
#define MCPGATE_BODY_H

#include <stdbool.h>
#include <stddef.h>

#include "mcpgate/rules.h"
#include "mcpgate/str.h"

/* ---- whole response bodies (JSON, watch, text; optionally gzip) ---- */

enum mg_mask_kind {
	MG_MASK_KIND_JSON = 0,	  /* one JSON document */
	MG_MASK_KIND_JSON_STREAM, /* a watch: NDJSON events */
	MG_MASK_KIND_TEXT,	  /* pods/log and other text/plain */
};

struct mg_mask_body_opts {
	enum mg_mask_kind kind;
	bool gzip;		/* Content-Encoding: gzip: inflate, mask, deflate (gzip) */
	struct mg_str resource; /* request resource hint for JSON */
};

struct mg_mask_body;

/** A body masker for <opts> under <cfg> (NULL: defaults), or NULL. */
struct mg_mask_body *mg_mask_body_new(const struct mg_mask_cfg *cfg,
				      const struct mg_mask_body_opts *opts);

/**
 * Masks body bytes <in>[0..<len>) (compressed when opts.gzip) into <out>.
 * Gzip output is sync-flushed at the end of each feed that produced output,
 * so a gzip watch stays live. Returns 0 or -errno as mg_mask_json_feed();
 * corrupt gzip is -EINVAL.
 */
int mg_mask_body_feed(struct mg_mask_body *b, const char *in, size_t len,
		      const struct mg_mask_sink *out);

/** Ends the body (gzip must be complete too). Returns 0 or -errno. */
int mg_mask_body_finish(struct mg_mask_body *b, const struct mg_mask_sink *out);

const struct mg_mask_stats *mg_mask_body_stats(const struct mg_mask_body *b);
const struct mg_mask_err *mg_mask_body_error(const struct mg_mask_body *b);
void mg_mask_body_free(struct mg_mask_body *b);

/* ---- helpers for the proxy ---- */

/** What the proxy can do with a response Content-Type. */
enum mg_mask_ctype {
	MG_MASK_CT_JSON = 0, /* application/json and +json types (any parameters) */
	MG_MASK_CT_TEXT,     /* text/plain (logs) */
	MG_MASK_CT_PROTOBUF, /* application/vnd.kubernetes.protobuf: refuse */
	MG_MASK_CT_REFUSE,   /* anything else (yaml, cbor, unknown): refuse */
};

/** Classifies the Content-Type value <ct> (media type case-insensitive). */
enum mg_mask_ctype mg_mask_content_type(struct mg_str ct);

/**
 * True if <buf>[0..<len>) starts with the Kubernetes protobuf envelope magic
 * "k8s\0". Needs len >= 4 for a definite answer; fewer bytes give false.
 */
bool mg_mask_is_protobuf(const char *buf, size_t len);

#endif /* MCPGATE_BODY_H */
