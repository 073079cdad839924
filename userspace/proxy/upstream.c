/*
 * upstream: TLS client connections to the API server and their pool. See
 * upstream.h.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "mcpgate/addr.h"
#include "mcpgate/loop.h"
#include "mcpgate/proxy.h"
#include "mcpgate/tls.h"
#include "mcpgate/upstream.h"

void mg_upstream_free(struct mg_loop *loop, struct mg_upstream *u)
{
	if (!u)
		return;
	if (u->fd >= 0) {
		mg_loop_del_fd(loop, u->fd);
		close(u->fd);
	}
	SSL_free(u->ssl);
	free(u);
}

int mg_upstream_connect(struct mg_upstream **out, const struct mg_abi_addr *dst, SSL_CTX *ctx)
{
	char ip[MG_ADDR_STRLEN];
	struct sockaddr_storage ss;
	struct mg_upstream *u;
	socklen_t sl;
	int rc;

	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->dst = *dst;
	sl = mg_addr_to_sockaddr(&u->dst, &ss);
	u->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->fd < 0) {
		rc = -errno;
		goto err;
	}
	setsockopt(u->fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	if (connect(u->fd, (struct sockaddr *)&ss, sl) && errno != EINPROGRESS) {
		rc = -errno;
		goto err;
	}
	u->connecting = true;
	u->ssl = SSL_new(ctx);
	if (!u->ssl) {
		rc = -ENOMEM;
		goto err;
	}
	SSL_set_fd(u->ssl, u->fd);
	SSL_set_connect_state(u->ssl);
	/* The API server must present a certificate for the address the pod
	 * dialled, signed by the cluster CA: no name, no skip-verify. */
	mg_addr_fmt_ip(&u->dst, ip, sizeof(ip));
	if (mg_tls_client_prepare(u->ssl, ip)) {
		rc = -EINVAL;
		goto err;
	}
	*out = u;
	return 0;
err:
	if (u->fd >= 0)
		close(u->fd);
	SSL_free(u->ssl);
	free(u);
	return rc;
}

int mg_upstream_progress(struct mg_upstream *u, const char **why)
{
	int r;

	*why = NULL;
	if (u->connecting) {
		struct sockaddr_storage ss;
		socklen_t l = sizeof(ss);
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr)
			return -1;
		/* Still connecting: getpeername fails until the handshake is done. */
		if (getpeername(u->fd, (struct sockaddr *)&ss, &l))
			return 0;
		u->connecting = false;
	}
	if (u->hs_done)
		return 1;
	ERR_clear_error();
	r = SSL_do_handshake(u->ssl);
	if (r == 1) {
		u->hs_done = true;
		return 1;
	}
	r = SSL_get_error(u->ssl, r);
	if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
		return 0;
	*why = X509_verify_cert_error_string(SSL_get_verify_result(u->ssl));
	return -1;
}

/* An idle TLS connection may have received session tickets (fine) or a
 * close (not fine): a non-blocking read tells them apart. */
struct mg_upstream *mg_upstream_pool_take(struct mg_upstream_pool *pool,
					  const struct mg_abi_addr *dst)
{
	struct mg_upstream **pp = &pool->idle, *u;

	while ((u = *pp)) {
		char b;
		int r;

		if (memcmp(&u->dst, dst, sizeof(*dst))) {
			pp = &u->next;
			continue;
		}
		*pp = u->next;
		pool->n--;
		u->next = NULL;
		ERR_clear_error();
		r = SSL_read(u->ssl, &b, 1);
		if (r <= 0 && SSL_get_error(u->ssl, r) == SSL_ERROR_WANT_READ)
			return u;
		mg_upstream_free(pool->loop, u); /* closed, or spoke unasked: not reusable */
	}
	return NULL;
}

void mg_upstream_pool_put(struct mg_upstream_pool *pool, struct mg_upstream *u, uint64_t now_ms)
{
	mg_loop_del_fd(pool->loop, u->fd);
	if (pool->n >= pool->max) {
		mg_upstream_free(pool->loop, u);
		return;
	}
	u->since_ms = now_ms;
	u->next = pool->idle;
	pool->idle = u;
	pool->n++;
}

void mg_upstream_pool_sweep(struct mg_upstream_pool *pool, uint64_t now_ms)
{
	struct mg_upstream **pp, *u;

	for (pp = &pool->idle; (u = *pp);) {
		if (now_ms - u->since_ms > pool->idle_ms) {
			*pp = u->next;
			pool->n--;
			mg_upstream_free(pool->loop, u);
		} else {
			pp = &u->next;
		}
	}
}

void mg_upstream_pool_clear(struct mg_upstream_pool *pool)
{
	while (pool->idle) {
		struct mg_upstream *u = pool->idle;

		pool->idle = u->next;
		mg_upstream_free(pool->loop, u);
	}
	pool->n = 0;
}
