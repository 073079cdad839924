/*
 * admin: a minimal, non-blocking HTTP/1.1 GET server. See admin.h.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mcpgate/admin.h"
#include "mcpgate/config.h"
#include "mcpgate/loop.h"

#define ADMIN_REQ_MAX 8192

struct mg_admin {
	struct mg_loop *loop;
	int lfd;
	mg_admin_handler *h;
	void *data;
};

struct aconn {
	struct mg_admin *a;
	int fd;
	size_t len;
	char buf[ADMIN_REQ_MAX];
};

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

/* Writes the whole response, blocking briefly if needed: admin answers are
 * small and the socket buffer takes them at once in practice. */
static void respond(int fd, int status, const char *ctype, const char *body)
{
	char head[256];
	size_t bl = strlen(body), off = 0;
	int hl;

	hl = snprintf(head, sizeof(head),
		      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		      "Connection: close\r\n\r\n",
		      status, reason(status), ctype, bl);
	send(fd, head, (size_t)hl, MSG_NOSIGNAL);
	while (off < bl) {
		ssize_t w = send(fd, body + off, bl - off, MSG_NOSIGNAL);

		if (w < 0 && errno != EAGAIN)
			break;
		if (w > 0)
			off += (size_t)w;
	}
}

static void finish(struct aconn *c)
{
	mg_loop_del_fd(c->a->loop, c->fd);
	close(c->fd);
	free(c);
}

static void on_conn(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct aconn *c = data;
	struct mg_admin_resp r = { 404, "text/plain; charset=utf-8", NULL };
	char method[8], path[1024];
	ssize_t n;

	(void)loop;
	(void)events;
	n = recv(fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
	if (n <= 0) {
		if (n < 0 && errno == EAGAIN)
			return;
		finish(c);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	if (!strstr(c->buf, "\r\n\r\n")) {
		if (c->len >= sizeof(c->buf) - 1) {
			respond(fd, 400, "text/plain", "request too large\n");
			finish(c);
		}
		return;
	}
	if (sscanf(c->buf, "%7s %1023s HTTP/1.", method, path) != 2) {
		respond(fd, 400, "text/plain", "bad request\n");
	} else if (strcmp(method, "GET")) {
		respond(fd, 405, "text/plain", "GET only\n");
	} else {
		c->a->h(c->a->data, path, &r);
		respond(fd, r.status, r.content_type, r.body ? r.body : "not found\n");
		free(r.body);
	}
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
		c = malloc(sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->a = a;
		c->fd = fd;
		c->len = 0;
		if (mg_loop_add_fd(loop, fd, EPOLLIN, on_conn, c)) {
			close(fd);
			free(c);
		}
	}
}

int mg_admin_new(struct mg_admin **out, struct mg_loop *loop, const struct mg_abi_addr *addr,
		 mg_admin_handler *h, void *data)
{
	struct sockaddr_storage ss;
	struct mg_admin *a;
	socklen_t sl;
	int rc;

	sl = (socklen_t)mg_config_sockaddr(addr, &ss);
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->loop = loop;
	a->h = h;
	a->data = data;
	a->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (a->lfd < 0) {
		rc = -errno;
		free(a);
		return rc;
	}
	setsockopt(a->lfd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int));
	if (bind(a->lfd, (struct sockaddr *)&ss, sl) || listen(a->lfd, 64) ||
	    (rc = mg_loop_add_fd(loop, a->lfd, EPOLLIN, on_accept, a), rc)) {
		rc = -errno;
		close(a->lfd);
		free(a);
		return rc ? rc : -EIO;
	}
	*out = a;
	return 0;
}

void mg_admin_free(struct mg_admin *a)
{
	if (!a)
		return;
	mg_loop_del_fd(a->loop, a->lfd);
	close(a->lfd);
	free(a);
}
