/*
 * The eBPF programs' decision helpers (bpf/lib/decide.bpf.h), compiled for
 * userspace: address normalization and which proxy a destination gets.
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v4_is_mapped),
		cmocka_unit_test(test_v6),
		cmocka_unit_test(test_pick_proxy),
	};

	return cmocka_run_group_tests_name("decide", tests, NULL, NULL);
}
