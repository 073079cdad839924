/*
 * tunnel: masks what the API server sends back over an exec/attach tunnel.
 * The tunnel carries the Kubernetes channel protocols on WebSocket
 * (v4/v5.channel.k8s.io: binary frames, first payload byte the channel) or
 * SPDY/3.1 (data frames, one stream per channel). This module parses the
 * server-to-client frames as they stream, runs each data payload through
 * the per-channel text masker, and re-frames the result: one frame in may
 * become several frames out (or none, while a detector candidate is held),
 * each a complete frame for the same channel, which both protocols' readers
 * treat as more bytes of that stream. Control frames pass unchanged, after
 * what was held for earlier data. Client-to-server bytes are not touched.
 *
 * Fail closed: a frame shape the parser does not accept (a masked server
 * frame, a text data frame, a channel out of range) is an error; the proxy
 * then closes the tunnel rather than pass bytes it could not mask.
 */
#ifndef MCPGATE_TUNNEL_H
#define MCPGATE_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpgate/buf.h"
#include "mcpgate/rules.h"

enum mg_tunnel_proto {
	MG_TUNNEL_WEBSOCKET = 1,
	MG_TUNNEL_SPDY,
};

struct mg_tunnel;

/** A masker for a tunnel of <proto> under <cfg> (NULL: defaults), or NULL. */
struct mg_tunnel *mg_tunnel_new(enum mg_tunnel_proto proto, const struct mg_mask_cfg *cfg);
void mg_tunnel_free(struct mg_tunnel *t);

/**
 * Consumes server-to-client bytes from <in> (as many as can be handled
 * while <out> has room) and appends masked frames to <out>. Returns >= 0
 * bytes consumed, or -EPROTO / -ENOMEM (the tunnel must be closed).
 */
ssize_t mg_tunnel_feed(struct mg_tunnel *t, const char *in, size_t len, struct mg_buf *out);

/**
 * Emits, as frames, whatever the channel maskers still hold (an idle pause:
 * a candidate that stopped growing). Call it on a timer. 0 or -errno.
 */
int mg_tunnel_flush(struct mg_tunnel *t, struct mg_buf *out);

/** What was masked, summed over the channels. */
void mg_tunnel_stats(const struct mg_tunnel *t, struct mg_mask_stats *st);

#endif /* MCPGATE_TUNNEL_H */
