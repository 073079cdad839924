/*
 * The streaming detector scanner over text: pods/log and other text bodies,
 * and exec/attach output (one text masker per channel). The JSON masker runs
 * the same scanner over decoded string values. Detectors are described in
 * mcpgate/rules.h, streaming and holding rules in mcpgate/mask.h.
 */
#ifndef MCPGATE_SCAN_H
#define MCPGATE_SCAN_H

#include "mcpgate/rules.h"

/* ---- text streams (logs, exec/attach output) ---- */

struct mg_mask_text;

/** A text masker with its own copy of <cfg> (NULL: defaults), or NULL. */
struct mg_mask_text *mg_mask_text_new(const struct mg_mask_cfg *cfg);

/** Masks <in>[0..<len>) into <out>. Returns 0 or the sink's negative return. */
int mg_mask_text_feed(struct mg_mask_text *t, const char *in, size_t len,
		      const struct mg_mask_sink *out);

/**
 * Decides what is held as if the stream paused here for good. For an
 * interactive exec whose channel has been idle for a short while: held bytes
 * of a candidate (after `ghp_`, `eyJ`, …) are masked, not written, and what
 * continues the candidate after the flush is swallowed into the same hit, so
 * a secret split across frames on both sides of a flush stays masked. A
 * matched prefix with nothing after it yet, or a run after an access key id
 * shorter than 20 chars, stays pending and held.
 */
int mg_mask_text_flush(struct mg_mask_text *t, const struct mg_mask_sink *out);

/**
 * Ends the stream: decides what is still held (a candidate cut short is
 * masked, see above) and writes the rest. Returns 0 or the sink's error.
 */
int mg_mask_text_finish(struct mg_mask_text *t, const struct mg_mask_sink *out);

const struct mg_mask_stats *mg_mask_text_stats(const struct mg_mask_text *t);
void mg_mask_text_free(struct mg_mask_text *t);

/* ---- exec/attach: one text masker per channel ---- */

#define MG_MASK_EXEC_CHANNELS 8

struct mg_mask_exec;

/** Per-channel text maskers for one exec/attach session, or NULL. */
struct mg_mask_exec *mg_mask_exec_new(const struct mg_mask_cfg *cfg);

/**
 * Masks one frame payload <in>[0..<len>) of server-to-client <channel>
 * (1 stdout, 2 stderr, 3 error; < MG_MASK_EXEC_CHANNELS) into <out>; the
 * caller frames the output for the same channel. Returns 0, -EINVAL for a
 * channel out of range, -ENOMEM, or the sink's error.
 */
int mg_mask_exec_feed(struct mg_mask_exec *x, unsigned channel, const char *in, size_t len,
		      const struct mg_mask_sink *out);

/** mg_mask_text_flush() on <channel>. */
int mg_mask_exec_flush(struct mg_mask_exec *x, unsigned channel, const struct mg_mask_sink *out);

/** mg_mask_text_finish() on <channel> (call for each channel at the end). */
int mg_mask_exec_finish(struct mg_mask_exec *x, unsigned channel, const struct mg_mask_sink *out);

/** Counts summed over all channels into <st>. */
void mg_mask_exec_stats(const struct mg_mask_exec *x, struct mg_mask_stats *st);
void mg_mask_exec_free(struct mg_mask_exec *x);

#endif /* MCPGATE_SCAN_H */
