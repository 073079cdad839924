/*
 * worker: jobs run off the loop and come back on it; per-key quotas and
 * the queue bound refuse at once; a key that floods the pool does not make
 * another key's job wait behind all of its own; freeing hands every job
 * back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>

#include "../../userspace/core/worker.c"

/* A gate the test holds closed so jobs block on their thread. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static unsigned started;

static void gate_set(bool open)
{
	pthread_mutex_lock(&gate_mu);
	gate_open = open;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_mu);
}

/* Waits until <n> jobs have started running. */
static void wait_started(unsigned n)
{
	for (int i = 0; i < 5000; i++) {
		unsigned s;

		pthread_mutex_lock(&gate_mu);
		s = started;
		pthread_mutex_unlock(&gate_mu);
		if (s >= n)
			return;
		usleep(1000);
	}
	fail_msg("jobs did not start");
}

struct job {
	struct mg_loop *loop;
	int id;
	pthread_t ran_on;
	int status;
	bool done;
	int *order; /* where the id is recorded when it runs */
	unsigned *norder;
	unsigned *ndone, stop_at;
};

static void run_job(void *arg)
{
	struct job *j = arg;

	pthread_mutex_lock(&gate_mu);
	started++;
	while (!gate_open)
		pthread_cond_wait(&gate_cond, &gate_mu);
	if (j->order)
		j->order[(*j->norder)++] = j->id;
	pthread_mutex_unlock(&gate_mu);
	j->ran_on = pthread_self();
}

static void done_job(void *arg, int status)
{
	struct job *j = arg;

	j->status = status;
	j->done = true;
	if (j->ndone && ++*j->ndone == j->stop_at)
		mg_loop_stop(j->loop);
}

static void on_deadline(struct mg_loop *loop, int fd, uint32_t events, void *data)
{
	(void)fd;
	(void)events;
	(void)data;
	mg_loop_stop(loop);
}

static void setup_loop(struct mg_loop **l)
{
	assert_int_equal(mg_loop_new(l), 0);
	assert_true(mg_loop_add_timer(*l, 5000, on_deadline, NULL) >= 0);
	started = 0;
	gate_set(true);
}

static void test_jobs_run_off_the_loop_and_finish_on_it(void **state)
{
	struct mg_worker_opts o = {.threads = 2};
	struct mg_worker *w;
	struct mg_loop *l;
	struct job jobs[8] = {0};
	unsigned ndone = 0;

	(void)state;
	setup_loop(&l);
	o.loop = l;
	assert_int_equal(mg_worker_new(&w, &o), 0);
	for (int i = 0; i < 8; i++) {
		jobs[i] = (struct job){.loop = l, .id = i, .ndone = &ndone, .stop_at = 8};
		assert_int_equal(mg_worker_submit(w, (uint64_t)i, run_job, done_job, &jobs[i]), 0);
	}
	mg_loop_run(l);
	assert_int_equal(ndone, 8);
	for (int i = 0; i < 8; i++) {
		assert_true(jobs[i].done);
		assert_int_equal(jobs[i].status, 0);
		assert_false(pthread_equal(jobs[i].ran_on, pthread_self()));
	}
	{
		struct mg_worker_stats st;

		mg_worker_get_stats(w, &st);
		assert_int_equal(st.submitted, 8);
		assert_int_equal(st.completed, 8);
		assert_int_equal(st.queued + st.running, 0);
	}
	mg_worker_free(w);
	mg_loop_free(l);
}

static void test_a_key_over_its_quota_is_refused_others_are_not(void **state)
{
	struct mg_worker_opts o = {.threads = 1, .queue_max = 100, .per_key_max = 3};
	struct mg_worker *w;
	struct mg_loop *l;
	struct job jobs[6] = {0};
	unsigned ndone = 0;

	(void)state;
	setup_loop(&l);
	gate_set(false);
	o.loop = l;
	assert_int_equal(mg_worker_new(&w, &o), 0);
	for (int i = 0; i < 6; i++)
		jobs[i] = (struct job){.loop = l, .id = i, .ndone = &ndone, .stop_at = 4};
	for (int i = 0; i < 3; i++)
		assert_int_equal(mg_worker_submit(w, 7, run_job, done_job, &jobs[i]), 0);
	/* running or queued, they all count */
	wait_started(1);
	assert_int_equal(mg_worker_submit(w, 7, run_job, done_job, &jobs[3]), -EDQUOT);
	assert_int_equal(mg_worker_submit(w, 8, run_job, done_job, &jobs[4]), 0);
	{
		struct mg_worker_stats st;

		mg_worker_get_stats(w, &st);
		assert_int_equal(st.refused_key, 1);
	}
	gate_set(true);
	mg_loop_run(l);
	assert_int_equal(ndone, 4);
	/* the quota is given back once the jobs are delivered */
	assert_int_equal(mg_worker_submit(w, 7, run_job, done_job, &jobs[5]), 0);
	jobs[5].stop_at = 5;
	mg_loop_run(l);
	assert_true(jobs[5].done);
	assert_false(jobs[3].done);
	mg_worker_free(w);
	mg_loop_free(l);
}

static void test_a_full_queue_refuses_at_once(void **state)
{
	struct mg_worker_opts o = {.threads = 1, .queue_max = 2, .per_key_max = 100};
	struct mg_worker *w;
	struct mg_loop *l;
	struct job jobs[5] = {0};
	unsigned ndone = 0;

	(void)state;
	setup_loop(&l);
	gate_set(false);
	o.loop = l;
	assert_int_equal(mg_worker_new(&w, &o), 0);
	for (int i = 0; i < 5; i++)
		jobs[i] = (struct job){.loop = l, .id = i, .ndone = &ndone, .stop_at = 3};
	assert_int_equal(mg_worker_submit(w, 1, run_job, done_job, &jobs[0]), 0);
	wait_started(1); /* on the thread: no longer queued */
	assert_int_equal(mg_worker_submit(w, 2, run_job, done_job, &jobs[1]), 0);
	assert_int_equal(mg_worker_submit(w, 3, run_job, done_job, &jobs[2]), 0);
	assert_int_equal(mg_worker_submit(w, 4, run_job, done_job, &jobs[3]), -EAGAIN);
	{
		struct mg_worker_stats st;

		mg_worker_get_stats(w, &st);
		assert_int_equal(st.refused_queue, 1);
		assert_int_equal(st.queued, 2);
		assert_int_equal(st.running, 1);
	}
	gate_set(true);
	mg_loop_run(l);
	assert_int_equal(ndone, 3);
	mg_worker_free(w);
	mg_loop_free(l);
}

/* One thread, busy with key A's job; A queues more, then B queues one: B's
 * runs next, before A's backlog. */
static void test_a_flooding_key_waits_behind_itself(void **state)
{
	struct mg_worker_opts o = {.threads = 1, .queue_max = 100, .per_key_max = 100};
	struct mg_worker *w;
	struct mg_loop *l;
	struct job jobs[6] = {0};
	int order[6];
	unsigned norder = 0, ndone = 0;

	(void)state;
	setup_loop(&l);
	gate_set(false);
	o.loop = l;
	assert_int_equal(mg_worker_new(&w, &o), 0);
	for (int i = 0; i < 6; i++)
		jobs[i] = (struct job){.loop = l,
				       .id = i,
				       .order = order,
				       .norder = &norder,
				       .ndone = &ndone,
				       .stop_at = 6};
	assert_int_equal(mg_worker_submit(w, 0xA, run_job, done_job, &jobs[0]), 0);
	wait_started(1);
	for (int i = 1; i < 5; i++)
		assert_int_equal(mg_worker_submit(w, 0xA, run_job, done_job, &jobs[i]), 0);
	assert_int_equal(mg_worker_submit(w, 0xB, run_job, done_job, &jobs[5]), 0);
	gate_set(true);
	mg_loop_run(l);
	assert_int_equal(ndone, 6);
	assert_int_equal(order[0], 0);
	assert_int_equal(order[1], 5);
	for (int i = 2; i < 6; i++)
		assert_int_equal(order[i], i - 1); /* A's own stay in order */
	mg_worker_free(w);
	mg_loop_free(l);
}

static void test_free_hands_back_jobs_that_never_ran(void **state)
{
	struct mg_worker_opts o = {.threads = 1, .queue_max = 10, .per_key_max = 10};
	struct mg_worker *w;
	struct mg_loop *l;
	struct job jobs[3] = {0};

	(void)state;
	setup_loop(&l);
	gate_set(false);
	o.loop = l;
	assert_int_equal(mg_worker_new(&w, &o), 0);
	for (int i = 0; i < 3; i++) {
		jobs[i] = (struct job){.loop = l, .id = i};
		assert_int_equal(mg_worker_submit(w, 1, run_job, done_job, &jobs[i]), 0);
	}
	wait_started(1);
	/* (test only) the thread takes nothing more once its job ends; that
	 * job must end for free() to join it */
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_mutex_unlock(&w->mu);
	gate_set(true);
	mg_worker_free(w);
	assert_true(jobs[0].done);
	assert_int_equal(jobs[0].status, 0);
	for (int i = 1; i < 3; i++) {
		assert_true(jobs[i].done);
		assert_int_equal(jobs[i].status, -ECANCELED);
	}
	mg_loop_free(l);
}

/* authn -> creds: a <done> that submits the same pod's next job, at a quota
 * of one, must not find the finished job still counted (it was: 429). */
static struct mg_worker *chain_w;
static struct job chain_second;
static int chain_rc = 1;

static void done_then_submit(void *arg, int status)
{
	struct job *j = arg;

	j->status = status;
	j->done = true;
	chain_rc = mg_worker_submit(chain_w, 9, run_job, done_job, &chain_second);
}

static void test_a_done_callback_may_submit_the_same_keys_next_job(void **state)
{
	struct mg_worker_opts o = {.threads = 1, .queue_max = 10, .per_key_max = 1};
	struct mg_loop *l;
	struct job first = {0};
	unsigned ndone = 0;

	(void)state;
	setup_loop(&l);
	o.loop = l;
	assert_int_equal(mg_worker_new(&chain_w, &o), 0);
	first = (struct job){.loop = l, .id = 1};
	chain_second = (struct job){.loop = l, .id = 2, .ndone = &ndone, .stop_at = 1};
	assert_int_equal(mg_worker_submit(chain_w, 9, run_job, done_then_submit, &first), 0);
	mg_loop_run(l);
	assert_true(first.done);
	assert_int_equal(chain_rc, 0);
	assert_true(chain_second.done);
	mg_worker_free(chain_w);
	mg_loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jobs_run_off_the_loop_and_finish_on_it),
		cmocka_unit_test(test_a_key_over_its_quota_is_refused_others_are_not),
		cmocka_unit_test(test_a_full_queue_refuses_at_once),
		cmocka_unit_test(test_a_flooding_key_waits_behind_itself),
		cmocka_unit_test(test_free_hands_back_jobs_that_never_ran),
		cmocka_unit_test(test_a_done_callback_may_submit_the_same_keys_next_job),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
