/*
 * The eBPF programs' decision helpers (bpf/lib/decide.bpf.h), compiled for
 * userspace: address normalization, which proxy a destination gets, what
 * a connect or an egress packet of each pod state becomes, and the event
 * rate limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <string.h>

#include "../../bpf/lib/decide.bpf.h"

static void test_v4_is_mapped(void **state)
{
	struct mg_abi_addr a;
	uint32_t ip;

	(void)state;
	inet_pton(AF_INET, "10.96.0.1", &ip);
	mg_addr_set_v4(&a, ip, htons(443));
	assert_true(mg_addr_is_v4mapped(&a));
	assert_int_equal(a.addr[10], 0xff);
	assert_int_equal(a.addr[11], 0xff);
	assert_memory_equal(a.addr + 12, &ip, 4);
	assert_int_equal(ntohs(a.port), 443);
	assert_int_equal(a.pad, 0);
}

static void test_v6(void **state)
{
	struct mg_abi_addr a, m;
	uint32_t w[4], mw[4];

	(void)state;
	inet_pton(AF_INET6, "fd00:96::1", w);
	mg_addr_set_v6(&a, w, htons(443));
	assert_false(mg_addr_is_v4mapped(&a));
	inet_pton(AF_INET6, "::ffff:10.96.0.1", mw);
	mg_addr_set_v6(&m, mw, htons(443));
	assert_true(mg_addr_is_v4mapped(&m));
	/* ::ffff:10.96.0.1 via connect6 and 10.96.0.1 via connect4: one key. */
	{
		struct mg_abi_addr v4;
		uint32_t ip;

		inet_pton(AF_INET, "10.96.0.1", &ip);
		mg_addr_set_v4(&v4, ip, htons(443));
		assert_memory_equal(&v4, &m, sizeof(v4));
	}
	/* ::1 and ::ffff:0:0/96 neighbours are not v4-mapped. */
	inet_pton(AF_INET6, "::1", w);
	assert_false(mg_ip6_is_v4mapped(w));
	inet_pton(AF_INET6, "::fffe:10.96.0.1", w);
	assert_false(mg_ip6_is_v4mapped(w));
	inet_pton(AF_INET6, "64:ff9b::10.96.0.1", w);
	assert_false(mg_ip6_is_v4mapped(w));
}

static void test_pick_proxy(void **state)
{
	struct mg_abi_settings s;
	struct mg_abi_addr d4, d6;
	uint32_t ip, w[4];

	(void)state;
	memset(&s, 0, sizeof(s));
	inet_pton(AF_INET, "169.254.77.1", &ip);
	mg_addr_set_v4(&s.proxy4, ip, htons(6443));
	inet_pton(AF_INET, "10.96.0.1", &ip);
	mg_addr_set_v4(&d4, ip, htons(443));
	inet_pton(AF_INET6, "fd00:96::1", w);
	mg_addr_set_v6(&d6, w, htons(443));

	assert_ptr_equal(mg_pick_proxy(&s, &d4), &s.proxy4);
	/* No IPv6 proxy configured: an IPv6 API connect must be refused. */
	assert_null(mg_pick_proxy(&s, &d6));
	inet_pton(AF_INET6, "fd00:6d67::1", w);
	mg_addr_set_v6(&s.proxy6, w, htons(6443));
	assert_ptr_equal(mg_pick_proxy(&s, &d6), &s.proxy6);
	memset(&s.proxy4, 0, sizeof(s.proxy4));
	assert_null(mg_pick_proxy(&s, &d4));
}

/* Every pod state x API or not x refuse-unknown on or off. */
static void test_decide_states(void **state)
{
	const struct mg_abi_pod pass = {.state = MG_POD_PASS},
				sel = {.state = MG_POD_SELECTED, .sel_gen = 3},
				pend = {.state = MG_POD_PENDING};
	const __u32 flag_sets[2] = {0, MG_SET_REFUSE_UNKNOWN};

	(void)state;
	for (int f = 0; f < 2; f++) {
		__u32 fl = flag_sets[f];

		/* Not an API endpoint: nobody is touched, whatever the state. */
		assert_int_equal(mg_decide(NULL, fl, 0), MG_VERDICT_PASS);
		assert_int_equal(mg_decide(&pass, fl, 0), MG_VERDICT_PASS);
		assert_int_equal(mg_decide(&sel, fl, 0), MG_VERDICT_PASS);
		assert_int_equal(mg_decide(&pend, fl, 0), MG_VERDICT_PASS);
		/* An API endpoint: the state decides, the flag does not. */
		assert_int_equal(mg_decide(&pass, fl, 1), MG_VERDICT_PASS);
		assert_int_equal(mg_decide(&sel, fl, 1), MG_VERDICT_REDIRECT);
		assert_int_equal(mg_decide(&pend, fl, 1), MG_VERDICT_REFUSE_UNKNOWN);
	}
	/* No entry on the ancestor path: only the flag decides. */
	assert_int_equal(mg_decide(NULL, 0, 1), MG_VERDICT_PASS);
	assert_int_equal(mg_decide(NULL, MG_SET_REFUSE_UNKNOWN, 1), MG_VERDICT_REFUSE_UNKNOWN);
	/* Unknown flag bits do not change the no-entry answer. */
	assert_int_equal(mg_decide(NULL, 0x80000000u, 1), MG_VERDICT_PASS);
}

/* A state value this build does not know is read as pending: refused. */
static void test_decide_unknown_state_fails_closed(void **state)
{
	struct mg_abi_pod odd = {.state = 3};

	(void)state;
	assert_int_equal(mg_decide(&odd, 0, 1), MG_VERDICT_REFUSE_UNKNOWN);
	odd.state = 0xffffffffu;
	assert_int_equal(mg_decide(&odd, 0, 1), MG_VERDICT_REFUSE_UNKNOWN);
	assert_int_equal(mg_decide(&odd, 0, 0), MG_VERDICT_PASS);
}

static void test_egress_drop(void **state)
{
	const struct mg_abi_pod pass = {.state = MG_POD_PASS}, sel = {.state = MG_POD_SELECTED},
				pend = {.state = MG_POD_PENDING};

	(void)state;
	assert_true(mg_egress_drop(&sel, 0, 1));
	assert_true(mg_egress_drop(&pend, 0, 1));
	assert_false(mg_egress_drop(&pass, 0, 1));
	assert_false(mg_egress_drop(NULL, 0, 1));
	assert_true(mg_egress_drop(NULL, MG_SET_REFUSE_UNKNOWN, 1));
	assert_false(mg_egress_drop(&pass, MG_SET_REFUSE_UNKNOWN, 1));
	/* Not to an API endpoint (the proxy address of a redirected
	 * connection, anything else): never dropped. */
	assert_false(mg_egress_drop(&sel, MG_SET_REFUSE_UNKNOWN, 0));
	assert_false(mg_egress_drop(&pend, MG_SET_REFUSE_UNKNOWN, 0));
	assert_false(mg_egress_drop(NULL, MG_SET_REFUSE_UNKNOWN, 0));
}

static void test_event_rate_limit(void **state)
{
	struct mg_event_budget b = {0};
	__u64 t0 = 5 * MG_EVENTS_WINDOW_NS;
	int n = 0;

	(void)state;
	for (int i = 0; i < 3 * MG_EVENTS_PER_WINDOW; i++)
		n += mg_event_allow(&b, t0 + (__u64)i);
	assert_int_equal(n, MG_EVENTS_PER_WINDOW);
	/* Still the same window one nanosecond before its end. */
	assert_false(mg_event_allow(&b, t0 + MG_EVENTS_WINDOW_NS - 1));
	/* A new window starts a new budget. */
	assert_true(mg_event_allow(&b, t0 + MG_EVENTS_WINDOW_NS));
	/* The first call at boot-time 0 (window_start 0) is allowed too. */
	memset(&b, 0, sizeof(b));
	assert_true(mg_event_allow(&b, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v4_is_mapped),
		cmocka_unit_test(test_v6),
		cmocka_unit_test(test_pick_proxy),
		cmocka_unit_test(test_decide_states),
		cmocka_unit_test(test_decide_unknown_state_fails_closed),
		cmocka_unit_test(test_egress_drop),
		cmocka_unit_test(test_event_rate_limit),
	};

	return cmocka_run_group_tests_name("decide", tests, NULL, NULL);
}
