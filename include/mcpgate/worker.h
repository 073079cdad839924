/*
 * worker: a bounded pool of threads for blocking work (credential fetches,
 * TokenReviews: network calls that must never run on the event loop).
 *
 * Each job carries a key (the pod it is for). A key may have at most
 * <per_key_max> jobs in flight (queued, running, or finished but not yet
 * delivered), and at most <queue_max> jobs wait for a thread in all. A free
 * thread takes the oldest queued job of the key with the fewest running jobs,
 * and among those of the key served longest ago, so a pod that floods the
 * pool waits behind itself, not the others.
 * mg_worker_submit() never blocks the loop: over a limit it refuses at once
 * and the caller answers for it (the proxy sends a 429).
 *
 * Results come back on the loop thread: <done> runs there, woken by an
 * eventfd the pool registers in the loop.
 */
#ifndef MCPGATE_WORKER_H
#define MCPGATE_WORKER_H

#include <stdint.h>

struct mg_loop;
struct mg_worker;

#define MG_WORKER_THREADS_DEFAULT 4
#define MG_WORKER_QUEUE_DEFAULT	  512
#define MG_WORKER_PER_KEY_DEFAULT 32
#define MG_WORKER_THREADS_MAX	  64

/** Runs on a pool thread; may block. */
typedef void mg_worker_run_fn(void *arg);
/**
 * Runs on the loop thread once per accepted job: <status> 0 after <run>
 * ran, -ECANCELED when the pool was freed before it did. Owns <arg> then.
 */
typedef void mg_worker_done_fn(void *arg, int status);

struct mg_worker_opts {
	struct mg_loop *loop; /* where <done> runs */
	unsigned threads;     /* 0: MG_WORKER_THREADS_DEFAULT; at most MG_WORKER_THREADS_MAX */
	unsigned queue_max;   /* jobs waiting for a thread; 0: MG_WORKER_QUEUE_DEFAULT */
	unsigned per_key_max; /* jobs in flight per key; 0: MG_WORKER_PER_KEY_DEFAULT */
};

struct mg_worker_stats {
	uint64_t submitted;	  /* accepted by mg_worker_submit() */
	uint64_t completed;	  /* <done> called with 0 */
	uint64_t refused_queue;	  /* -EAGAIN: the queue was full */
	uint64_t refused_key;	  /* -EDQUOT: the key had per_key_max in flight */
	unsigned queued, running; /* now */
};

/** Starts the threads and registers the wake-up eventfd. 0 / -errno. */
int mg_worker_new(struct mg_worker **out, const struct mg_worker_opts *o);

/**
 * Waits for running jobs to end, then calls <done> of every job not yet
 * delivered (-ECANCELED for those that never ran). Accepts NULL.
 */
void mg_worker_free(struct mg_worker *w);

/**
 * Queues <run>(<arg>) for a pool thread, then <done>(<arg>, 0) on the loop.
 * Returns 0 (the pool owns <arg> until <done>), -EDQUOT when <key> already
 * has per_key_max jobs in flight, -EAGAIN when queue_max jobs are waiting,
 * -ENOMEM. On an error nothing was queued and <arg> stays the caller's.
 */
int mg_worker_submit(struct mg_worker *w, uint64_t key, mg_worker_run_fn *run,
		     mg_worker_done_fn *done, void *arg);

void mg_worker_get_stats(struct mg_worker *w, struct mg_worker_stats *s);

#endif /* MCPGATE_WORKER_H */
