/*
 * exchange: the stage runner (CONTINUE runs the next stage, REPLY skips the
 * rest, WAIT hands the exchange to whoever resumes it, here the real worker
 * pool); the proxy's own stage lists; a test-only stage added by one list
 * entry in front of the real request stages; the upgrade policy; request
 * info kept whole however long its fields are.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <unistd.h>

#include "mcpgate/addr.h"
#include "mcpgate/loop.h"
#include "mcpgate/worker.h"

#include "../../userspace/proxy/exchange.c"

/* What ran, in order: "a b c" */
static char trace[256];

static void record(const char *what)
{
	size_t n = strlen(trace);

	snprintf(trace + n, sizeof(trace) - n, "%s%s", n ? " " : "", what);
}

static enum mg_stage_rc stage_a(struct mg_exchange *x)
{
	(void)x;
	record("a");
	return MG_STAGE_CONTINUE;
}

static enum mg_stage_rc stage_b(struct mg_exchange *x)
{
	(void)x;
	record("b");
	return MG_STAGE_CONTINUE;
}

static enum mg_stage_rc stage_c(struct mg_exchange *x)
{
	(void)x;
	record("c");
	return MG_STAGE_CONTINUE;
}

static enum mg_stage_rc stage_deny(struct mg_exchange *x)
{
	record("deny");
	return mg_exchange_reply(x, 403, "denied by %s", "test");
}

static void test_stages_run_in_list_order(void **state)
{
	const struct mg_stage list[] = {{"a", stage_a}, {"b", stage_b}, {"c", stage_c}};
	struct mg_exchange x = {0};

	(void)state;
	trace[0] = '\0';
	assert_int_equal(mg_exchange_run(&x, list, 3), MG_STAGE_CONTINUE);
	assert_string_equal(trace, "a b c");
	assert_false(mg_exchange_waiting(&x));
	assert_int_equal(x.run.next, 3);
}

static void test_a_reply_skips_the_rest_of_the_list(void **state)
{
	const struct mg_stage list[] = {{"a", stage_a}, {"deny", stage_deny}, {"c", stage_c}};
	struct mg_exchange x = {0};

	(void)state;
	trace[0] = '\0';
	assert_int_equal(mg_exchange_run(&x, list, 3), MG_STAGE_REPLY);
	assert_string_equal(trace, "a deny");
	assert_int_equal(x.reply.code, 403);
	assert_string_equal(x.reply.msg, "denied by test");
	assert_null(x.reply.limit);
	assert_false(mg_exchange_waiting(&x));
}

/* ---- a stage that waits for the real worker pool ---- */

static struct mg_loop *loop;
static struct mg_worker *worker;
static pthread_t loop_thread;

struct wjob {
	struct mg_exchange *x;
	enum mg_stage_rc outcome; /* what the stage resumes with */
	pthread_t ran_on;
};

static void wjob_run(void *arg)
{
	struct wjob *j = arg;

	j->ran_on = pthread_self();
}

static void wjob_done(void *arg, int status)
{
	struct wjob *j = arg;

	assert_int_equal(status, 0);
	assert_true(pthread_equal(pthread_self(), loop_thread));
	assert_false(pthread_equal(j->ran_on, loop_thread)); /* it ran off the loop */
	record("resumed");
	if (j->outcome == MG_STAGE_REPLY)
		mg_exchange_reply(j->x, 503, "worker said no");
	mg_exchange_resume(j->x, j->outcome);
	free(j);
}

static enum mg_stage_rc wait_outcome;

static enum mg_stage_rc stage_wait(struct mg_exchange *x)
{
	struct wjob *j = calloc(1, sizeof(*j));

	assert_non_null(j);
	record("wait");
	j->x = x;
	j->outcome = wait_outcome;
	assert_int_equal(mg_worker_submit(worker, 1, wjob_run, wjob_done, j), 0);
	return MG_STAGE_WAIT;
}

static void on_settled(struct mg_exchange *x, enum mg_stage_rc rc)
{
	(void)x;
	record(rc == MG_STAGE_CONTINUE ? "settled:continue" : "settled:reply");
	mg_loop_stop(loop);
}

static int setup_worker(void **state)
{
	struct mg_worker_opts wo = {0};

	(void)state;
	assert_int_equal(mg_loop_new(&loop), 0);
	wo.loop = loop;
	wo.threads = 2;
	assert_int_equal(mg_worker_new(&worker, &wo), 0);
	loop_thread = pthread_self();
	return 0;
}

static int teardown_worker(void **state)
{
	(void)state;
	mg_worker_free(worker);
	mg_loop_free(loop);
	return 0;
}

static void test_a_stage_resumed_from_the_worker_runs_the_rest(void **state)
{
	const struct mg_stage list[] = {{"a", stage_a}, {"wait", stage_wait}, {"c", stage_c}};
	struct mg_exchange x = {.settled = on_settled};

	(void)state;
	trace[0] = '\0';
	wait_outcome = MG_STAGE_CONTINUE;
	assert_int_equal(mg_exchange_run(&x, list, 3), MG_STAGE_WAIT);
	assert_string_equal(trace, "a wait");
	assert_true(mg_exchange_waiting(&x));
	assert_int_equal(x.run.next, 1); /* c has not run */
	assert_int_equal(mg_loop_run(loop), 0);
	assert_string_equal(trace, "a wait resumed c settled:continue");
	assert_false(mg_exchange_waiting(&x));
}

static void test_a_stage_resumed_with_a_reply_skips_the_rest(void **state)
{
	const struct mg_stage list[] = {{"wait", stage_wait}, {"c", stage_c}};
	struct mg_exchange x = {.settled = on_settled};

	(void)state;
	trace[0] = '\0';
	wait_outcome = MG_STAGE_REPLY;
	assert_int_equal(mg_exchange_run(&x, list, 2), MG_STAGE_WAIT);
	assert_int_equal(mg_loop_run(loop), 0);
	assert_string_equal(trace, "wait resumed settled:reply");
	assert_int_equal(x.reply.code, 503);
}

/* Two waits in one list: the first resume runs on to the second wait and
 * settles nothing yet. */
static void test_two_waits_settle_once_at_the_end(void **state)
{
	const struct mg_stage list[] = {
		{"wait", stage_wait}, {"b", stage_b}, {"wait", stage_wait}, {"c", stage_c}};
	struct mg_exchange x = {.settled = on_settled};

	(void)state;
	trace[0] = '\0';
	wait_outcome = MG_STAGE_CONTINUE;
	assert_int_equal(mg_exchange_run(&x, list, 4), MG_STAGE_WAIT);
	assert_int_equal(mg_loop_run(loop), 0);
	assert_string_equal(trace, "wait resumed b wait resumed c settled:continue");
}

/* ---- the proxy's lists ---- */

static void assert_names(const struct mg_stage *list, size_t n, const char *want)
{
	char got[256] = "";

	for (size_t i = 0; i < n; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? " " : "",
			 list[i].name);
	assert_string_equal(got, want);
}

static void test_the_proxy_runs_its_stages_in_this_order(void **state)
{
	(void)state;
	assert_names(mg_exchange_request_stages, mg_exchange_n_request_stages,
		     "identify rewrite authn creds upstream");
	assert_names(mg_exchange_response_stages, mg_exchange_n_response_stages, "upgrade mask");
}

/* Response stages run in their order too, a REPLY ending them (the proxy
 * then closes the upstream and answers; mg_exchange_take_response_head). */
static void test_response_stages_in_order(void **state)
{
	const struct mg_stage list[] = {{"upgrade", stage_a},
					{"mask", stage_b},
					{"filter", stage_deny},
					{"audit", stage_c}};
	struct mg_exchange x = {0};

	(void)state;
	trace[0] = '\0';
	assert_int_equal(mg_exchange_run(&x, list, 2), MG_STAGE_CONTINUE);
	assert_string_equal(trace, "a b");
	trace[0] = '\0';
	assert_int_equal(mg_exchange_run(&x, list, 4), MG_STAGE_REPLY);
	assert_string_equal(trace, "a b deny");
}

/* ---- a new stage is one function and one list entry ---- */

/* A toy policy: pods may not delete. This function and its entry in the
 * list below are all it takes; the real stages around it are untouched. */
static enum mg_stage_rc stage_toy_policy(struct mg_exchange *x)
{
	if (mg_str_eq(x->info.verb, MG_STR("delete")))
		return mg_exchange_reply(x, 403, "mcpgate: pods may not delete %.*s",
					 (int)x->info.resource.len, x->info.resource.ptr);
	return MG_STAGE_CONTINUE;
}

static const struct mg_stage with_policy[] = {
	{"identify", stage_identify}, {"rewrite", stage_rewrite}, {"authn", stage_authn},
	{"policy", stage_toy_policy}, {"creds", stage_creds},	  {"upstream", stage_upstream},
};

struct rig {
	struct mg_proxy p;
	struct mg_conn c;
	int lfd;
};

/* A connection of a known pod whose API server is a listening socket on
 * 127.0.0.1 (the upstream stage connects to it; no TLS gets that far). */
static void rig_init(struct rig *r)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);

	memset(r, 0, sizeof(*r));
	r->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(r->lfd >= 0);
	assert_int_equal(bind(r->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(r->lfd, 4), 0);
	assert_int_equal(getsockname(r->lfd, (struct sockaddr *)&sin, &sl), 0);
	{
		struct sockaddr_storage ss = {0};

		memcpy(&ss, &sin, sizeof(sin));
		assert_int_equal(mg_addr_from_sockaddr((struct sockaddr *)&ss, &r->c.o.orig_dst),
				 0);
	}
	r->p.o.loop = loop;
	r->p.o.client_ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(r->p.o.client_ctx);
	mg_mask_cfg_default(&r->p.mcfg);
	r->p.o.mask_cfg = &r->p.mcfg;
	r->p.pool = (struct mg_upstream_pool){loop, NULL, 0, 4, 1000};
	r->c.p = &r->p;
	r->c.fd = -1;
	r->c.ident.known = true;
	snprintf(r->c.ident.namespace, sizeof(r->c.ident.namespace), "default");
	snprintf(r->c.ident.name, sizeof(r->c.ident.name), "pod-1");
	mg_buf_init(&r->c.uout, MG_CONN_OUT_MAX);
}

static void rig_free(struct rig *r)
{
	mg_conn_close_upstream(&r->c);
	mg_exchange_clear(&r->c.x);
	mg_buf_free(&r->c.uout);
	SSL_CTX_free(r->p.o.client_ctx);
	close(r->lfd);
}

/* Runs <list> over the request <head>, the way mg_exchange_take_request()
 * runs the proxy's list. */
static enum mg_stage_rc run_request(struct rig *r, const char *head, const struct mg_stage *list,
				    size_t n)
{
	struct mg_http_req req;
	struct mg_http_err err;
	enum mg_stage_rc rc;

	assert_true(mg_http_parse_req(&req, head, strlen(head), NULL, &err) > 0);
	begin(&r->c);
	assert_int_equal(take_request_info(&r->c.x, &req), 0);
	take_request_framing(&r->c.x, &req);
	r->c.x.req = &req;
	rc = mg_exchange_run(&r->c.x, list, n);
	r->c.x.req = NULL;
	return rc;
}

static void test_a_policy_stage_is_one_list_entry(void **state)
{
	struct rig r;
	enum mg_stage_rc rc;

	(void)state;
	rig_init(&r);
	rc = run_request(&r,
			 "DELETE /api/v1/namespaces/default/pods/web HTTP/1.1\r\nHost: k\r\n"
			 "Authorization: Bearer pod-token\r\n\r\n",
			 with_policy, sizeof(with_policy) / sizeof(with_policy[0]));
	assert_int_equal(rc, MG_STAGE_REPLY);
	assert_int_equal(r.c.x.reply.code, 403);
	assert_string_equal(r.c.x.reply.msg, "mcpgate: pods may not delete pods");
	assert_string_equal(r.c.x.run.list[r.c.x.run.next].name, "policy");
	assert_null(r.c.up); /* nothing went upstream */
	assert_int_equal(r.p.st.requests, 0);
	mg_exchange_clear(&r.c.x);
	mg_buf_free(&r.c.uout);

	mg_buf_init(&r.c.uout, MG_CONN_OUT_MAX);
	rc = run_request(&r,
			 "GET /api/v1/namespaces/default/pods/web HTTP/1.1\r\nHost: k\r\n"
			 "Authorization: Bearer pod-token\r\n\r\n",
			 with_policy, sizeof(with_policy) / sizeof(with_policy[0]));
	assert_int_equal(rc, MG_STAGE_CONTINUE);
	assert_non_null(r.c.up); /* attached: connecting to the rig's listener */
	assert_int_equal(r.p.st.requests, 1);
	/* rewrite ran: the head going upstream, without the pod's token */
	assert_non_null(memmem(mg_buf_head(&r.c.uout), mg_buf_size(&r.c.uout),
			       "GET /api/v1/namespaces/default/pods/web HTTP/1.1\r\n", 48));
	assert_null(memmem(mg_buf_head(&r.c.uout), mg_buf_size(&r.c.uout), "pod-token", 9));
	rig_free(&r);
}

/* A connection kept only to answer 429 is refused by identify, before
 * anything else ran. */
static void test_identify_refuses_a_connection_over_its_cap(void **state)
{
	struct rig r;

	(void)state;
	rig_init(&r);
	r.c.limited = "max_connections_per_pod";
	r.p.o.max_conns_per_pod = 3;
	assert_int_equal(run_request(&r, "GET /api HTTP/1.1\r\nHost: k\r\n\r\n",
				     mg_exchange_request_stages, mg_exchange_n_request_stages),
			 MG_STAGE_REPLY);
	assert_int_equal(r.c.x.reply.code, 429);
	assert_string_equal(r.c.x.reply.limit, "max_connections_per_pod");
	assert_string_equal(r.c.x.reply.msg,
			    "mcpgate: too many connections from this pod (at most 3); retry later");
	assert_int_equal(mg_buf_size(&r.c.uout), 0);
	rig_free(&r);
}

/* ---- request info and the upgrade policy ---- */

/* An API group may have 253 characters, a name too: the exchange keeps
 * them whole (a fixed api_group[64] cut them). */
static void test_request_info_keeps_long_fields_whole(void **state)
{
	char group[254], name[254], head[1024];
	struct rig r;

	(void)state;
	memset(group, 'g', 253);
	group[253] = '\0';
	memcpy(group + 100, ".", 1);
	memset(name, 'n', 253);
	name[253] = '\0';
	snprintf(head, sizeof(head),
		 "GET /apis/%s/v1/namespaces/default/widgets/%s HTTP/1.1\r\nHost: k\r\n\r\n", group,
		 name);
	rig_init(&r);
	begin(&r.c);
	{
		struct mg_http_req req;
		struct mg_http_err err;

		assert_true(mg_http_parse_req(&req, head, strlen(head), NULL, &err) > 0);
		assert_int_equal(take_request_info(&r.c.x, &req), 0);
	}
	assert_int_equal(r.c.x.info.api_group.len, 253);
	assert_string_equal(r.c.x.info.api_group.ptr, group);
	assert_string_equal(r.c.x.info.name.ptr, name);
	assert_string_equal(r.c.x.info.resource.ptr, "widgets");
	assert_string_equal(r.c.x.info.verb.ptr, "get");
	assert_string_equal(r.c.x.info.ns.ptr, "default");
	assert_string_equal(r.c.x.info.method.ptr, "GET");
	rig_free(&r);
}

static void test_upgrade_policy(void **state)
{
	static const struct {
		const char *resource, *proto;
		enum upgrade_verdict want;
		enum mg_tunnel_proto tp;
	} cases[] = {
		{"pods/exec", "websocket", UPGRADE_MASKED, MG_TUNNEL_WEBSOCKET},
		{"pods/attach", "WebSocket", UPGRADE_MASKED, MG_TUNNEL_WEBSOCKET},
		{"pods/exec", "SPDY/3.1", UPGRADE_MASKED, MG_TUNNEL_SPDY},
		{"pods/exec", "h2c", UPGRADE_UNMASKABLE, 0},
		{"pods/attach", "", UPGRADE_UNMASKABLE, 0},
		{"pods/portforward", "websocket", UPGRADE_PASSED, 0},
		{"pods/portforward", "SPDY/3.1", UPGRADE_PASSED, 0},
		{"pods/proxy", "websocket", UPGRADE_REFUSED, 0},
		{"services/proxy", "websocket", UPGRADE_REFUSED, 0},
		{"nodes/proxy", "SPDY/3.1", UPGRADE_REFUSED, 0},
		{"pods", "websocket", UPGRADE_REFUSED, 0},
		{"", "websocket", UPGRADE_REFUSED, 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum mg_tunnel_proto tp = 0;

		assert_int_equal(upgrade_policy(mg_str_of(cases[i].resource),
						mg_str_of(cases[i].proto), &tp),
				 cases[i].want);
		if (cases[i].want == UPGRADE_MASKED)
			assert_int_equal(tp, cases[i].tp);
	}
}

static void test_decisions_have_names(void **state)
{
	(void)state;
	assert_string_equal(mg_exchange_decision_str(MG_EXCHANGE_ALLOW), "allow");
	assert_string_equal(mg_exchange_decision_str(MG_EXCHANGE_ERROR), "error");
	assert_string_equal(mg_exchange_decision_str(MG_EXCHANGE_LIMITED), "limited");
	assert_string_equal(mg_exchange_decision_str(MG_EXCHANGE_ABORTED), "aborted");
	assert_string_equal(mg_exchange_decision_str(MG_EXCHANGE_DENY), "deny");
	assert_string_equal(mg_exchange_decision_str(MG_EXCHANGE_HELD), "held");
	assert_string_equal(mg_exchange_decision_str(MG_EXCHANGE_DECISION_MAX), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stages_run_in_list_order),
		cmocka_unit_test(test_a_reply_skips_the_rest_of_the_list),
		cmocka_unit_test(test_a_stage_resumed_from_the_worker_runs_the_rest),
		cmocka_unit_test(test_a_stage_resumed_with_a_reply_skips_the_rest),
		cmocka_unit_test(test_two_waits_settle_once_at_the_end),
		cmocka_unit_test(test_the_proxy_runs_its_stages_in_this_order),
		cmocka_unit_test(test_response_stages_in_order),
		cmocka_unit_test(test_a_policy_stage_is_one_list_entry),
		cmocka_unit_test(test_identify_refuses_a_connection_over_its_cap),
		cmocka_unit_test(test_request_info_keeps_long_fields_whole),
		cmocka_unit_test(test_upgrade_policy),
		cmocka_unit_test(test_decisions_have_names),
	};

	return cmocka_run_group_tests_name("exchange", tests, setup_worker, teardown_worker);
}
