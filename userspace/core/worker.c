/*
 * worker: bounded thread pool with per-key quotas. See include/mcpgate/worker.h.
 *
 * One mutex guards everything shared with the threads: the FIFO of queued
 * jobs, the list of finished ones and the per-key counters. Each key's
 * counter is its own small node, referenced by its jobs and freed when the
 * last one is delivered, so a thread picking the next job reads its key's
 * running count without a lookup.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mcpgate/loop.h"
#include "mcpgate/worker.h"

struct wkey {
	uint64_t key;
	unsigned inflight; /* submitted, <done> not yet called */
	unsigned running;
	uint64_t served; /* w->served when a thread last took one of its jobs */
	struct wkey *next;
};

struct wjob {
	struct wkey *k;
	mg_worker_run_fn *run;
	mg_worker_done_fn *done;
	void *arg;
	struct wjob *next;
};

struct mg_worker {
	struct mg_worker_opts o;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	pthread_t threads[MG_WORKER_THREADS_MAX];
	unsigned nthreads;
	bool stop;
	struct wjob *queue, **queue_tail; /* FIFO of jobs waiting for a thread */
	struct wjob *done, **done_tail;	  /* ran, waiting for the loop */
	struct wkey *keys;
	uint64_t served; /* jobs handed to threads so far */
	int efd;
	struct mg_worker_stats st;
};

/* Whether key <a> goes before key <b>: fewer jobs running, then served
 * longer ago. */
static bool key_before(const struct wkey *a, const struct wkey *b)
{
	return a->running != b->running ? a->running < b->running : a->served < b->served;
}

/* Takes the oldest queued job of the key that goes first (key_before), so
 * a key with a backlog alternates with the others instead of draining its
 * backlog first. Called with the mutex held and the queue not empty;
 * O(queue), bounded by queue_max. */
static struct wjob *take_fair(struct mg_worker *w)
{
	struct wjob **pp, **best = NULL, *j;

	for (pp = &w->queue; *pp; pp = &(*pp)->next)
		if (!best || key_before((*pp)->k, (*best)->k))
			best = pp;
	j = *best;
	*best = j->next;
	if (!*best && w->queue_tail == &j->next)
		w->queue_tail = best;
	j->next = NULL;
	j->k->served = ++w->served;
	return j;
}

static void *thread_main(void *arg)
{
	struct mg_worker *w = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		struct wjob *j;

		while (!w->stop && !w->queue)
			pthread_cond_wait(&w->cond, &w->mu);
		if (w->stop)
			break;
		j = take_fair(w);
		w->st.queued--;
		w->st.running++;
		j->k->running++;
		pthread_mutex_unlock(&w->mu);
		j->run(j->arg);
		pthread_mutex_lock(&w->mu);
		j->k->running--;
		w->st.running--;
		*w->done_tail = j;
		w->done_tail = &j->next;
		if (write(w->efd, &one, sizeof(one)) < 0) {
			/* only on counter overflow: a wake-up is pending anyway */
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* The key node for <key>, created with <add>. Called with the mutex held. */
static struct wkey *key_get(struct mg_worker *w, uint64_t key, bool add)
{
	struct wkey *k;

	for (k = w->keys; k; k = k->next)
		if (k->key == key)
			return k;
	if (!add || !(k = calloc(1, sizeof(*k))))
		return NULL;
	k->key = key;
	k->next = w->keys;
	w->keys = k;
	return k;
}

/* One job delivered: its key loses an in-flight job, and goes with the last. */
static void key_release(struct mg_worker *w, struct wkey *k)
{
	struct wkey **pp;

	if (--k->inflight)
		return;
	for (pp = &w->keys; *pp != k; pp = &(*pp)->next)
		;
	*pp = k->next;
	free(k);
}

/* Takes the finished jobs and calls their <done> outside the mutex (a
 * <done> may submit the next job). */
static void deliver(struct mg_worker *w, int status)
{
	struct wjob *list, *j;

	pthread_mutex_lock(&w->mu);
	list = w->done;
	w->done = NULL;
	w->done_tail = &w->done;
	pthread_mutex_unlock(&w->mu);
	while ((j = list)) {
		list = j->next;
		/* Released before <done>: a <done> that submits the same pod's
		 * next job (authn -> creds) must not find this one still counted. */
		pthread_mutex_lock(&w->mu);
		key_release(w, j->k);
		if (!status)
			w->st.completed++;
		pthread_mutex_unlock(&w->mu);
		j->done(j->arg, status);
		free(j);
	}
}

static void on_wake(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	uint64_t n;

	(void)loop;
	(void)events;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	deliver(data, 0);
}

int mg_worker_new(struct mg_worker **out, const struct mg_worker_opts *o)
{
	struct mg_worker *w = calloc(1, sizeof(*w));
	int rc;

	if (!w)
		return -ENOMEM;
	w->o = *o;
	if (!w->o.threads)
		w->o.threads = MG_WORKER_THREADS_DEFAULT;
	if (w->o.threads > MG_WORKER_THREADS_MAX)
		w->o.threads = MG_WORKER_THREADS_MAX;
	if (!w->o.queue_max)
		w->o.queue_max = MG_WORKER_QUEUE_DEFAULT;
	if (!w->o.per_key_max)
		w->o.per_key_max = MG_WORKER_PER_KEY_DEFAULT;
	w->queue_tail = &w->queue;
	w->done_tail = &w->done;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		rc = -errno;
		goto err;
	}
	rc = mg_loop_add_fd(w->o.loop, w->efd, EPOLLIN, on_wake, w);
	if (rc)
		goto err;
	for (; w->nthreads < w->o.threads; w->nthreads++) {
		rc = -pthread_create(&w->threads[w->nthreads], NULL, thread_main, w);
		if (rc)
			goto err;
	}
	*out = w;
	return 0;
err:
	mg_worker_free(w);
	return rc;
}

void mg_worker_free(struct mg_worker *w)
{
	struct wjob *j;

	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->mu);
	for (unsigned i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	deliver(w, 0);
	/* Never ran: their owners still get them back, to free. */
	while ((j = w->queue)) {
		w->queue = j->next;
		j->done(j->arg, -ECANCELED);
		key_release(w, j->k);
		free(j);
	}
	if (w->efd >= 0) {
		mg_loop_del_fd(w->o.loop, w->efd);
		close(w->efd);
	}
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cond);
	free(w);
}

int mg_worker_submit(struct mg_worker *w, uint64_t key, mg_worker_run_fn *run,
		     mg_worker_done_fn *done, void *arg)
{
	struct wjob *j = calloc(1, sizeof(*j));
	struct wkey *k;
	int rc = 0;

	if (!j)
		return -ENOMEM;
	pthread_mutex_lock(&w->mu);
	k = key_get(w, key, false);
	if (k && k->inflight >= w->o.per_key_max) {
		w->st.refused_key++;
		rc = -EDQUOT;
	} else if (w->st.queued >= w->o.queue_max) {
		w->st.refused_queue++;
		rc = -EAGAIN;
	} else if (!k && !(k = key_get(w, key, true))) {
		rc = -ENOMEM;
	}
	if (rc) {
		pthread_mutex_unlock(&w->mu);
		free(j);
		return rc;
	}
	k->inflight++;
	*j = (struct wjob){k, run, done, arg, NULL};
	*w->queue_tail = j;
	w->queue_tail = &j->next;
	w->st.queued++;
	w->st.submitted++;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

void mg_worker_get_stats(struct mg_worker *w, struct mg_worker_stats *s)
{
	pthread_mutex_lock(&w->mu);
	*s = w->st;
	pthread_mutex_unlock(&w->mu);
}
