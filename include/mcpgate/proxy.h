/*
 * proxy: accepts the connections the kernel redirected, finds out from the
 * kernel which pod opened each one, and relays it. A connection the kernel
 * did not vouch for (no origin record) is closed and counted: nobody reaches
 * the API server through this port without the eBPF programs having seen
 * the connect.
 *
 * Today the relay is a plain TCP splice to the original destination; the
 * TLS-terminating HTTP proxy replaces it (issue: the proxy).
 */
#ifndef MCPGATE_PROXY_H
#define MCPGATE_PROXY_H

#include <stdint.h>

#include "mcpgate/abi.h"

struct mg_loop;
struct mg_loader;
struct mg_pods;
struct mg_proxy;

struct mg_proxy_opts {
	struct mg_loop *loop;
	struct mg_loader *loader;
	struct mg_pods *pods;
	unsigned connect_timeout_ms;
};

struct mg_proxy_stats {
	uint64_t accepted;		/* connections with an origin */
	uint64_t rejected_no_origin;	/* closed: the kernel recorded no origin */
	uint64_t upstream_failed;	/* original destination unreachable */
	uint64_t active;		/* open now */
	uint64_t bytes_up, bytes_down;
};

int mg_proxy_new(struct mg_proxy **out, const struct mg_proxy_opts *o);
/** Closes listeners and every connection. Accepts NULL. */
void mg_proxy_free(struct mg_proxy *p);

/** Listens on <addr> (IPv4-mapped or IPv6). 0 / -errno. */
int mg_proxy_listen(struct mg_proxy *p, const struct mg_abi_addr *addr);

void mg_proxy_get_stats(const struct mg_proxy *p, struct mg_proxy_stats *s);

#endif /* MCPGATE_PROXY_H */
