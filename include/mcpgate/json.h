/*
 * The streaming JSON masker: Secret data/stringData by object kind, detector
 * hits in every other string, last-applied annotations through a nested
 * masker; bounded memory, any split of the input gives the same output.
 * The rules it follows are in mcpgate/mask.h.
 */
#ifndef MCPGATE_JSON_H
#define MCPGATE_JSON_H

#include "mcpgate/rules.h"
#include "mcpgate/str.h"

/* ---- JSON bodies ---- */

/** How a JSON body is read. */
struct mg_mask_json_opts {
	bool stream;		/* a watch: a sequence of top-level values (NDJSON) */
	struct mg_str resource; /* the request's resource ("secrets", "configmaps"); may be empty */
};

struct mg_mask_json;

/**
 * A JSON masker with its own copy of <cfg> (NULL: defaults). Returns NULL
 * when out of memory or when <cfg> is invalid.
 */
struct mg_mask_json *mg_mask_json_new(const struct mg_mask_cfg *cfg,
				      const struct mg_mask_json_opts *opts);

/**
 * Masks <in>[0..<len>) and writes what is safe to <out> (possibly nothing:
 * undecided bytes are held). Returns 0, -EINVAL when the input is malformed
 * or cannot be masked safely (see mg_mask_json_error()), -ENOMEM, or the
 * sink's negative return. Errors are sticky: later calls return them again.
 */
int mg_mask_json_feed(struct mg_mask_json *m, const char *in, size_t len,
		      const struct mg_mask_sink *out);

/**
 * Ends the body: writes what is still held and returns 0, or -EINVAL if the
 * document (or the last value of a stream) is incomplete.
 */
int mg_mask_json_finish(struct mg_mask_json *m, const struct mg_mask_sink *out);

const struct mg_mask_stats *mg_mask_json_stats(const struct mg_mask_json *m);
const struct mg_mask_err *mg_mask_json_error(const struct mg_mask_json *m);
void mg_mask_json_free(struct mg_mask_json *m);

#endif /* MCPGATE_JSON_H */
