/*
 * admin: a minimal, non-blocking HTTP/1.1 GET server. See admin.h.
 *
 * It shares the event loop with the proxy, so nothing here may wait on a
 * peer: a response is built whole, then written as the socket takes it
 * (EPOLLOUT), and a client that neither finishes its request nor reads its
 * answer within ADMIN_IO_TIMEOUT_MS is cut. Connections are capped, so a
 * flood of scrapers costs bounded memory.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mcpgate/addr.h"
#include "mcpgate/admin.h"
#include "mcpgate/config.h"
#include "mcpgate/log.h"
#include "mcpgate/loop.h"

#define ADMIN_REQ_MAX	    8192
#define ADMIN_CONN_MAX	    32		      /* admin connections open at once */
#define ADMIN_IO_TIMEOUT_MS 5000	      /* a whole request-response, at most */
#define ADMIN_RESP_MAX	    (8 * 1024 * 1024) /* a larger body is answered 500, not queued */
#define ADMIN_SWEEP_MS	    1000

struct aconn {
	struct mg_admin *a;
	int fd;
	uint64_t since_ms;
	size_t len;
	char buf[ADMIN_REQ_MAX];
	char *out; /* the whole response once built; NULL while reading */
	size_t out_len, out_off;
	struct aconn *next, *prev;
};

struct mg_admin {
	struct mg_loop *loop;
	int lfd;
	int sweep_fd;
	mg_admin_handler *h;
	void *data;
	struct aconn *conns;
	size_t n_conns;
	uint64_t refused, timed_out;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

static void finish(struct aconn *c)
{
	struct mg_admin *a = c->a;

	mg_loop_del_fd(a->loop, c->fd);
	close(c->fd);
	free(c->out);
	if (c->prev)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	a->n_conns--;
	free(c);
}

/* Sends what the socket takes now. Returns true when <c> is done (all
 * written, or the peer is gone) and must be finished. */
static bool flush_out(struct aconn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return false;
		if (w <= 0)
			return true;
		c->out_off += (size_t)w;
	}
	return true;
}

/* Builds the whole response (head + <body>) into <c>->out and switches the
 * connection to writing. Returns true when <c> is done already. */
static bool respond(struct aconn *c, int status, const char *ctype, const char *body)
{
	size_t bl = strlen(body);
	char head[256];
	int hl;

	if (bl > ADMIN_RESP_MAX) {
		status = 500;
		ctype = "text/plain";
		body = "response too large\n";
		bl = strlen(body);
	}
	hl = snprintf(head, sizeof(head),
		      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		      "Connection: close\r\n\r\n",
		      status, reason(status), ctype, bl);
	c->out = malloc((size_t)hl + bl);
	if (!c->out)
		return true;
	memcpy(c->out, head, (size_t)hl);
	memcpy(c->out + hl, body, bl);
	c->out_len = (size_t)hl + bl;
	c->out_off = 0;
	if (flush_out(c))
		return true;
	/* The rest goes as the peer reads; nothing more is read from it. */
	return mg_loop_mod_fd(c->a->loop, c->fd, EPOLLOUT) != 0;
}

/* Reads the request; once its head is complete, answers it. Returns true
 * when <c> is done. */
static bool on_readable(struct aconn *c)
{
	struct mg_admin_resp r = {404, "text/plain; charset=utf-8", NULL};
	char method[8], path[1024];
	bool done;
	ssize_t n;

	n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return false;
	if (n <= 0)
		return true;
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	if (!strstr(c->buf, "\r\n\r\n")) {
		if (c->len >= sizeof(c->buf) - 1)
			return respond(c, 400, "text/plain", "request too large\n");
		return false;
	}
	if (sscanf(c->buf, "%7s %1023s HTTP/1.", method, path) != 2)
		return respond(c, 400, "text/plain", "bad request\n");
	if (strcmp(method, "GET"))
		return respond(c, 405, "text/plain", "GET only\n");
	c->a->h(c->a->data, path, &r);
	done = respond(c, r.status, r.content_type, r.body ? r.body : "not found\n");
	free(r.body);
	return done;
}

static void on_conn(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct aconn *c = data;
	bool done;

	(void)loop;
	(void)fd;
	if (c->out)
		done = (events & (EPOLLERR | EPOLLHUP)) || flush_out(c);
	else
		done = on_readable(c);
	if (done)
		finish(c);
}

static void on_accept(struct mg_loop *loop, int lfd, uint32_t events, void *data)
{
	struct mg_admin *a = data;

	(void)events;
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct aconn *c;

		if (fd < 0)
			return;
		if (a->n_conns >= ADMIN_CONN_MAX) {
			/* Turned away at once rather than queued: the probes
			 * retry, and the proxy's loop stays free. */
			if (!a->refused++)
				mg_log_json("warn", json_pack("{s:s,s:i}", "event", "admin_busy",
							      "max", ADMIN_CONN_MAX));
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->a = a;
		c->fd = fd;
		c->since_ms = now_ms();
		if (mg_loop_add_fd(loop, fd, EPOLLIN, on_conn, c)) {
			close(fd);
			free(c);
			continue;
		}
		c->next = a->conns;
		if (a->conns)
			a->conns->prev = c;
		a->conns = c;
		a->n_conns++;
	}
}

/* Cuts the admin clients that are too slow to send or to read. */
static void on_sweep(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct mg_admin *a = data;
	uint64_t now = now_ms();
	struct aconn *c, *next;

	(void)loop;
	(void)fd;
	(void)events;
	for (c = a->conns; c; c = next) {
		next = c->next;
		if (now - c->since_ms <= ADMIN_IO_TIMEOUT_MS)
			continue;
		a->timed_out++;
		mg_log_json("warn",
			    json_pack("{s:s,s:s,s:I,s:I}", "event", "admin_timeout", "stage",
				      c->out ? "writing" : "reading", "sent",
				      (json_int_t)c->out_off, "size", (json_int_t)c->out_len));
		/* RST: the kernel drops what the client never read, at once. */
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &(struct linger){1, 0},
			   sizeof(struct linger));
		finish(c);
	}
}

int mg_admin_new(struct mg_admin **out, struct mg_loop *loop, const struct mg_abi_addr *addr,
		 mg_admin_handler *h, void *data)
{
	struct sockaddr_storage ss;
	struct mg_admin *a;
	socklen_t sl;
	int rc;

	sl = mg_addr_to_sockaddr(addr, &ss);
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->loop = loop;
	a->h = h;
	a->data = data;
	a->sweep_fd = -1;
	a->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (a->lfd < 0) {
		rc = -errno;
		goto err;
	}
	setsockopt(a->lfd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
	if (bind(a->lfd, (struct sockaddr *)&ss, sl) || listen(a->lfd, 64)) {
		rc = -errno;
		goto err;
	}
	a->sweep_fd = mg_loop_add_timer(loop, ADMIN_SWEEP_MS, on_sweep, a);
	if (a->sweep_fd < 0) {
		rc = a->sweep_fd;
		goto err;
	}
	rc = mg_loop_add_fd(loop, a->lfd, EPOLLIN, on_accept, a);
	if (rc)
		goto err;
	*out = a;
	return 0;
err:
	if (a->sweep_fd >= 0) {
		mg_loop_del_fd(loop, a->sweep_fd);
		close(a->sweep_fd);
	}
	if (a->lfd >= 0)
		close(a->lfd);
	free(a);
	return rc;
}

void mg_admin_free(struct mg_admin *a)
{
	if (!a)
		return;
	while (a->conns)
		finish(a->conns);
	mg_loop_del_fd(a->loop, a->sweep_fd);
	close(a->sweep_fd);
	mg_loop_del_fd(a->loop, a->lfd);
	close(a->lfd);
	free(a);
}
