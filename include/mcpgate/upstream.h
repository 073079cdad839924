/*
 * upstream: TLS connections to the API server, and the pool that keeps idle
 * ones for reuse. A connection belongs to one client connection while a
 * request uses it (which registers its fd in the loop), to the pool while
 * idle (no fd interest: a pooled connection is checked when taken).
 */
#ifndef MCPGATE_UPSTREAM_H
#define MCPGATE_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "mcpgate/abi.h"

struct mg_loop;

#define MG_UPSTREAM_POOL_MAX_DEFAULT	 64
#define MG_UPSTREAM_POOL_IDLE_MS_DEFAULT 60000

/** One TLS connection to an API server address. */
struct mg_upstream {
	int fd;
	SSL *ssl;
	struct mg_abi_addr dst;
	bool connecting; /* TCP connect in progress */
	bool hs_done;
	uint64_t since_ms;	  /* connect start, or idle start in the pool */
	struct mg_upstream *next; /* pool list */
};

/** Idle connections, any destination, newest first. */
struct mg_upstream_pool {
	struct mg_loop *loop;
	struct mg_upstream *idle;
	size_t n;
	unsigned max;	  /* idle connections kept */
	unsigned idle_ms; /* how long one is kept */
};

/**
 * Starts a non-blocking TCP connect to <dst> and prepares its TLS client
 * with <ctx>, verifying the certificate against the bare IP of <dst> (no
 * name, no skip-verify). The fd is not in any loop yet. 0 / -errno.
 */
int mg_upstream_connect(struct mg_upstream **out, const struct mg_abi_addr *dst, SSL_CTX *ctx);

/**
 * Advances <u>: TCP connect, then TLS handshake. Returns 1 when ready, 0
 * while in progress, -1 when it failed: <*why> is then NULL for a failed
 * TCP connect, else the TLS failure (the certificate verification error).
 */
int mg_upstream_progress(struct mg_upstream *u, const char **why);

/** Removes <u>'s fd from <loop> and closes it. Accepts NULL. */
void mg_upstream_free(struct mg_loop *loop, struct mg_upstream *u);

/**
 * Returns an idle connection to <dst> that is still usable, or NULL.
 * Those found closed (or that spoke unasked) are freed on the way.
 */
struct mg_upstream *mg_upstream_pool_take(struct mg_upstream_pool *pool,
					  const struct mg_abi_addr *dst);

/** Keeps <u> idle from <now_ms> on, or frees it when the pool is full. */
void mg_upstream_pool_put(struct mg_upstream_pool *pool, struct mg_upstream *u, uint64_t now_ms);

/** Frees the idle connections older than the pool's idle_ms. */
void mg_upstream_pool_sweep(struct mg_upstream_pool *pool, uint64_t now_ms);

/** Frees every idle connection. */
void mg_upstream_pool_clear(struct mg_upstream_pool *pool);

#endif /* MCPGATE_UPSTREAM_H */
