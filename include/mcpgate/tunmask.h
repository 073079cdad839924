/*
 * Transitional: the exec/attach frame masker is the `tunnel` module now
 * (mcpgate/tunnel.h, mg_tunnel_*). These names keep the proxy building until
 * it calls the new ones; delete this header then.
 */
#ifndef MCPGATE_TUNMASK_H
#define MCPGATE_TUNMASK_H

#include "mcpgate/tunnel.h"

#define mg_tunmask	     mg_tunnel
#define mg_tunmask_proto     mg_tunnel_proto
#define MG_TUNMASK_WEBSOCKET MG_TUNNEL_WEBSOCKET
#define MG_TUNMASK_SPDY	     MG_TUNNEL_SPDY
#define mg_tunmask_new	     mg_tunnel_new
#define mg_tunmask_free	     mg_tunnel_free
#define mg_tunmask_feed	     mg_tunnel_feed
#define mg_tunmask_flush     mg_tunnel_flush
#define mg_tunmask_stats     mg_tunnel_stats

#endif /* MCPGATE_TUNMASK_H */
