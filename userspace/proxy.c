/*
 * proxy: accept, identify, relay. See include/mcpgate/proxy.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mcpgate/config.h"
#include "mcpgate/loader.h"
#include "mcpgate/log.h"
#include "mcpgate/loop.h"
#include "mcpgate/pods.h"
#include "mcpgate/proxy.h"

#define RELAY_BUF 16384
#define MAX_LISTENERS 4

struct conn;

/* One direction of a relay: bytes read from <from> wait in <buf> for <to>. */
struct pipe {
	char buf[RELAY_BUF];
	size_t off, len;
	bool eof;	/* <from> sent FIN */
	bool shut;	/* FIN passed on to <to> */
};

/* A side is what the loop calls back with: the conn and which fd. */
struct side {
	struct conn *c;
	int fd;
	bool upstream;
};

struct conn {
	struct mg_proxy *p;
	struct side cli, up;
	struct pipe c2u, u2c;
	bool connecting;
	uint64_t id;
	uint64_t start_ms;
	uint64_t bytes_up, bytes_down;
	struct conn *next, *prev;
};

struct mg_proxy {
	struct mg_proxy_opts o;
	int lfd[MAX_LISTENERS];
	size_t nl;
	struct conn *conns;
	uint64_t next_id;
	int sweep_fd;
	struct mg_proxy_stats st;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- addresses ---- */

/* Normalizes a sockaddr to the ABI form (IPv4 as v4-mapped). */
static int to_abi(const struct sockaddr_storage *ss, struct mg_abi_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		a->addr[10] = 0xff;
		a->addr[11] = 0xff;
		memcpy(a->addr + 12, &s->sin_addr, 4);
		a->port = s->sin_port;
		return 0;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;

		memcpy(a->addr, &s->sin6_addr, 16);
		a->port = s->sin6_port;
		return 0;
	}
	return -EAFNOSUPPORT;
}

static socklen_t from_abi(const struct mg_abi_addr *a, struct sockaddr_storage *ss)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(ss, 0, sizeof(*ss));
	if (!memcmp(a->addr, mapped, 12)) {
		struct sockaddr_in *s = (void *)ss;

		s->sin_family = AF_INET;
		memcpy(&s->sin_addr, a->addr + 12, 4);
		s->sin_port = a->port;
		return sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (void *)ss;

		s->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, a->addr, 16);
		s->sin6_port = a->port;
		return sizeof(*s);
	}
}

/* ---- relay ---- */

static void conn_close(struct conn *c, const char *why)
{
	struct mg_proxy *p = c->p;
	json_t *ev;

	ev = json_pack("{s:s,s:I,s:s,s:I,s:I,s:I}", "event", "close", "conn", (json_int_t)c->id,
		       "reason", why, "bytes_up", (json_int_t)c->bytes_up,
		       "bytes_down", (json_int_t)c->bytes_down,
		       "duration_ms", (json_int_t)(now_ms() - c->start_ms));
	mg_log_json("info", ev);
	mg_loop_del_fd(p->o.loop, c->cli.fd);
	close(c->cli.fd);
	if (c->up.fd >= 0) {
		mg_loop_del_fd(p->o.loop, c->up.fd);
		close(c->up.fd);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		p->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	p->st.active--;
	p->st.bytes_up += c->bytes_up;
	p->st.bytes_down += c->bytes_down;
	free(c);
}

/* Moves bytes <from> -> <pi> -> <to> as far as the sockets allow; the
 * buffer is refilled only once drained, which keeps it trivially bounded.
 * Passes a FIN on once the buffer is empty. Returns 0, or -1 when either
 * socket failed. */
static int relay(struct pipe *pi, int from, int to, uint64_t *total)
{
	for (;;) {
		if (pi->len == 0 && !pi->eof) {
			ssize_t r = recv(from, pi->buf, RELAY_BUF, 0);

			if (r == 0)
				pi->eof = true;
			else if (r < 0)
				return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
			else {
				pi->len = (size_t)r;
				pi->off = 0;
			}
		}
		while (pi->off < pi->len) {
			ssize_t w = send(to, pi->buf + pi->off, pi->len - pi->off, MSG_NOSIGNAL);

			if (w < 0)
				return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
			pi->off += (size_t)w;
			*total += (uint64_t)w;
		}
		pi->len = pi->off = 0;
		if (pi->eof) {
			if (!pi->shut) {
				shutdown(to, SHUT_WR);
				pi->shut = true;
			}
			return 0;
		}
	}
}

/* Re-arms both fds for what each direction is waiting on. */
static void rearm(struct conn *c)
{
	struct mg_loop *l = c->p->o.loop;
	uint32_t ce = 0, ue = 0;

	if (c->connecting) {
		mg_loop_mod_fd(l, c->cli.fd, 0);
		mg_loop_mod_fd(l, c->up.fd, EPOLLOUT);
		return;
	}
	if (!c->c2u.eof && c->c2u.len == 0)
		ce |= EPOLLIN;
	if (c->c2u.len > c->c2u.off)
		ue |= EPOLLOUT;
	if (!c->u2c.eof && c->u2c.len == 0)
		ue |= EPOLLIN;
	if (c->u2c.len > c->u2c.off)
		ce |= EPOLLOUT;
	mg_loop_mod_fd(l, c->cli.fd, ce | EPOLLRDHUP);
	mg_loop_mod_fd(l, c->up.fd, ue | EPOLLRDHUP);
}

static void on_conn_event(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct side *s = data;
	struct conn *c = s->c;
	struct mg_proxy *p = c->p;

	(void)loop;
	(void)fd;
	if (c->connecting) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if (!s->upstream)
			return;
		getsockopt(c->up.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
		if (soerr || (events & EPOLLERR)) {
			p->st.upstream_failed++;
			conn_close(c, "upstream connect failed");
			return;
		}
		c->connecting = false;
	}
	if (relay(&c->c2u, c->cli.fd, c->up.fd, &c->bytes_up) ||
	    relay(&c->u2c, c->up.fd, c->cli.fd, &c->bytes_down)) {
		conn_close(c, "reset");
		return;
	}
	if (c->c2u.shut && c->u2c.shut) {
		conn_close(c, "done");
		return;
	}
	rearm(c);
}

/* ---- accept ---- */

static void log_connect(struct mg_proxy *p, struct conn *c, const struct mg_abi_origin *o,
			const struct mg_abi_addr *client, const struct mg_pod_ident *id, int found)
{
	char dst[64], cli[64];
	json_t *ev, *pod;

	pod = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:b}", "namespace", id->namespace, "name",
			id->name, "uid", id->uid, "serviceAccount", id->service_account, "node",
			id->node, "container", id->container_id, "known", id->known);
	ev = json_pack("{s:s,s:I,s:o,s:I,s:I,s:I,s:I,s:s,s:s,s:b}", "event", "connect", "conn",
		       (json_int_t)c->id, "pod", pod, "pid", (json_int_t)o->tgid, "uid",
		       (json_int_t)o->uid, "cgroup_id", (json_int_t)o->cgroup_id, "pod_cgroup_id",
		       (json_int_t)o->pod_cgroup_id, "orig_dst",
		       mg_config_fmt_addr(&o->orig_dst, dst, sizeof(dst)), "client",
		       mg_config_fmt_addr(client, cli, sizeof(cli)), "pod_cgroup_known", found == 0);
	mg_log_json("info", ev);
	(void)p;
}

static void reject(struct mg_proxy *p, int fd, const struct mg_abi_addr *client, const char *why)
{
	char cli[64];

	p->st.rejected_no_origin++;
	mg_log_json("warn", json_pack("{s:s,s:s,s:s}", "event", "reject", "client",
				      mg_config_fmt_addr(client, cli, sizeof(cli)), "reason", why));
	/* RST rather than FIN: the peer learns at once it was turned away. */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){ 1, 0 }, sizeof(struct linger));
	close(fd);
}

static void accept_one(struct mg_proxy *p, int fd)
{
	struct sockaddr_storage peer, local, dst;
	socklen_t pl = sizeof(peer), ll = sizeof(local), dl;
	struct mg_abi_tuple t = { 0 };
	struct mg_abi_origin o;
	struct mg_pod_ident id;
	struct conn *c;
	int up, found;

	if (getpeername(fd, (struct sockaddr *)&peer, &pl) ||
	    getsockname(fd, (struct sockaddr *)&local, &ll) || to_abi(&peer, &t.client) ||
	    to_abi(&local, &t.proxy)) {
		close(fd);
		return;
	}
	if (mg_loader_take_origin(p->o.loader, &t, &o)) {
		reject(p, fd, &t.client, "no origin recorded by the kernel");
		return;
	}

	found = mg_pods_lookup(p->o.pods, o.pod_cgroup_id, o.cgroup_id, &id);
	c = calloc(1, sizeof(*c));
	if (!c) {
		mg_pod_ident_release(&id);
		close(fd);
		return;
	}
	c->p = p;
	c->id = ++p->next_id;
	c->start_ms = now_ms();
	c->cli = (struct side){ c, fd, false };
	c->up = (struct side){ c, -1, true };
	log_connect(p, c, &o, &t.client, &id, found);
	mg_pod_ident_release(&id);

	dl = from_abi(&o.orig_dst, &dst);
	up = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (up < 0 || (connect(up, (struct sockaddr *)&dst, dl) && errno != EINPROGRESS)) {
		p->st.upstream_failed++;
		if (up >= 0)
			close(up);
		close(fd);
		free(c);
		return;
	}
	setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	c->up.fd = up;
	c->connecting = true;
	c->next = p->conns;
	if (p->conns)
		p->conns->prev = c;
	p->conns = c;
	p->st.accepted++;
	p->st.active++;
	mg_loop_add_fd(p->o.loop, fd, 0, on_conn_event, &c->cli);
	mg_loop_add_fd(p->o.loop, up, EPOLLOUT, on_conn_event, &c->up);
}

static void on_listen(struct mg_loop *loop, int lfd, uint32_t events, void *data)
{
	struct mg_proxy *p = data;

	(void)loop;
	(void)events;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		accept_one(p, fd);
	}
}

/* Once a second: upstream connects that took too long are given up. */
static void on_sweep(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	struct mg_proxy *p = data;
	uint64_t now = now_ms();
	struct conn *c, *next;

	(void)loop;
	(void)fd;
	(void)events;
	for (c = p->conns; c; c = next) {
		next = c->next;
		if (c->connecting && now - c->start_ms > p->o.connect_timeout_ms) {
			p->st.upstream_failed++;
			conn_close(c, "upstream connect timeout");
		}
	}
}

int mg_proxy_new(struct mg_proxy **out, const struct mg_proxy_opts *o)
{
	struct mg_proxy *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->o = *o;
	if (!p->o.connect_timeout_ms)
		p->o.connect_timeout_ms = 5000;
	p->sweep_fd = mg_loop_add_timer(o->loop, 1000, on_sweep, p);
	if (p->sweep_fd < 0) {
		int rc = p->sweep_fd;

		free(p);
		return rc;
	}
	*out = p;
	return 0;
}

void mg_proxy_free(struct mg_proxy *p)
{
	if (!p)
		return;
	while (p->conns)
		conn_close(p->conns, "shutdown");
	for (size_t i = 0; i < p->nl; i++) {
		mg_loop_del_fd(p->o.loop, p->lfd[i]);
		close(p->lfd[i]);
	}
	mg_loop_del_fd(p->o.loop, p->sweep_fd);
	close(p->sweep_fd);
	free(p);
}

int mg_proxy_listen(struct mg_proxy *p, const struct mg_abi_addr *addr)
{
	struct sockaddr_storage ss;
	socklen_t sl = from_abi(addr, &ss);
	int fd, rc;

	if (p->nl == MAX_LISTENERS)
		return -ENOSPC;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &(int){ 1 }, sizeof(int));
	/* The address may still be settling (IPv6 DAD is off, but be lenient). */
	setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &(int){ 1 }, sizeof(int));
	if (bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 1024)) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = mg_loop_add_fd(p->o.loop, fd, EPOLLIN, on_listen, p);
	if (rc) {
		close(fd);
		return rc;
	}
	p->lfd[p->nl++] = fd;
	return 0;
}

void mg_proxy_get_stats(const struct mg_proxy *p, struct mg_proxy_stats *s)
{
	*s = p->st;
}
