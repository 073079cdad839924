/*
 * loop: epoll + timerfd. See include/mcpgate/loop.h.
 *
 * Registrations live in a table indexed by fd, so a callback that deletes
 * another fd (closing the peer of a spliced pair) cannot leave a dangling
 * pointer in the batch epoll_wait returned: each event is re-checked
 * against the table before its callback runs.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "mcpgate/loop.h"

struct reg {
	mg_loop_fd_cb *cb;
	void *data;
	uint32_t gen; /* bumped on every add/del: stale events are dropped */
	bool timer;
};

struct mg_loop {
	int epfd;
	bool stop;
	struct reg *regs;
	size_t nregs;
};

int mg_loop_new(struct mg_loop **out)
{
	struct mg_loop *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		int rc = -errno;

		free(l);
		return rc;
	}
	*out = l;
	return 0;
}

void mg_loop_free(struct mg_loop *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->nregs; i++)
		if (l->regs[i].timer && l->regs[i].cb)
			close((int)i);
	close(l->epfd);
	free(l->regs);
	free(l);
}

static int ensure(struct mg_loop *l, int fd)
{
	size_t n = l->nregs ? l->nregs : 64;
	struct reg *r;

	if ((size_t)fd < l->nregs)
		return 0;
	while (n <= (size_t)fd)
		n *= 2;
	r = realloc(l->regs, n * sizeof(*r));
	if (!r)
		return -ENOMEM;
	memset(r + l->nregs, 0, (n - l->nregs) * sizeof(*r));
	l->regs = r;
	l->nregs = n;
	return 0;
}

/* The epoll cookie carries fd and generation, so an event for an fd that
 * was closed and reused within one batch is recognised as stale. */
static uint64_t cookie(int fd, uint32_t gen)
{
	return ((uint64_t)gen << 32) | (uint32_t)fd;
}

int mg_loop_add_fd(struct mg_loop *l, int fd, uint32_t events, mg_loop_fd_cb *cb, void *data)
{
	struct epoll_event ev = {.events = events};
	int rc;

	if (fd < 0)
		return -EBADF;
	rc = ensure(l, fd);
	if (rc)
		return rc;
	l->regs[fd].gen++;
	ev.data.u64 = cookie(fd, l->regs[fd].gen);
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev))
		return -errno;
	l->regs[fd].cb = cb;
	l->regs[fd].data = data;
	l->regs[fd].timer = false;
	return 0;
}

int mg_loop_mod_fd(struct mg_loop *l, int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events};

	if (fd < 0 || (size_t)fd >= l->nregs || !l->regs[fd].cb)
		return -EBADF;
	ev.data.u64 = cookie(fd, l->regs[fd].gen);
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) ? -errno : 0;
}

void mg_loop_del_fd(struct mg_loop *l, int fd)
{
	if (fd < 0 || (size_t)fd >= l->nregs || !l->regs[fd].cb)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	l->regs[fd].cb = NULL;
	l->regs[fd].data = NULL;
	l->regs[fd].gen++;
}

int mg_loop_add_timer(struct mg_loop *l, unsigned interval_ms, mg_loop_fd_cb *cb, void *data)
{
	struct itimerspec its = {0};
	int fd, rc;

	fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	its.it_interval.tv_sec = interval_ms / 1000;
	its.it_interval.tv_nsec = (long)(interval_ms % 1000) * 1000000L;
	its.it_value = its.it_interval;
	if (timerfd_settime(fd, 0, &its, NULL)) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = mg_loop_add_fd(l, fd, EPOLLIN, cb, data);
	if (rc) {
		close(fd);
		return rc;
	}
	l->regs[fd].timer = true;
	return fd;
}

int mg_loop_run(struct mg_loop *l)
{
	struct epoll_event evs[64];

	l->stop = false;
	while (!l->stop) {
		int n = epoll_wait(l->epfd, evs, 64, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n && !l->stop; i++) {
			int fd = (int)(uint32_t)evs[i].data.u64;
			uint32_t gen = evs[i].data.u64 >> 32;
			struct reg *r;

			if ((size_t)fd >= l->nregs)
				continue;
			r = &l->regs[fd];
			if (!r->cb || r->gen != gen)
				continue;
			if (r->timer) {
				uint64_t exp;

				if (read(fd, &exp, sizeof(exp)) < 0 && errno != EAGAIN)
					continue;
			}
			r->cb(l, fd, evs[i].events, r->data);
		}
	}
	return 0;
}

void mg_loop_stop(struct mg_loop *l)
{
	l->stop = true;
}
