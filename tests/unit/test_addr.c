/*
 * addr: one address form for the kernel and the daemon; IPv4 is stored
 * IPv4-mapped whichever way it arrives (text, sockaddr_in, a v4-mapped
 * sockaddr_in6, inet_diag bytes), and prints back as IPv4.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../userspace/core/addr.c"

static void test_parse_ip_stores_v4_mapped(void **state)
{
	struct mg_abi_addr a, m;
	char buf[MG_ADDR_STRLEN];

	(void)state;
	assert_int_equal(mg_addr_parse_ip("10.96.0.1", 443, &a), 0);
	assert_true(mg_addr_is_v4(&a));
	assert_int_equal(ntohs(a.port), 443);
	/* the same address written v4-mapped is the same key */
	assert_int_equal(mg_addr_parse_ip("::ffff:10.96.0.1", 443, &m), 0);
	assert_memory_equal(&a, &m, sizeof(a));
	assert_string_equal(mg_addr_fmt(&m, buf, sizeof(buf)), "10.96.0.1:443");
	assert_string_equal(mg_addr_fmt_ip(&m, buf, sizeof(buf)), "10.96.0.1");

	assert_int_equal(mg_addr_parse_ip("fd00::1", 6443, &a), 0);
	assert_false(mg_addr_is_v4(&a));
	assert_string_equal(mg_addr_fmt(&a, buf, sizeof(buf)), "[fd00::1]:6443");
	assert_string_equal(mg_addr_fmt_ip(&a, buf, sizeof(buf)), "fd00::1");
	/* ::ffff:0:0/96 only: ::1 and the IPv4-compatible ::a.b.c.d are v6 */
	assert_int_equal(mg_addr_parse_ip("::1", 1, &a), 0);
	assert_false(mg_addr_is_v4(&a));
	assert_int_equal(mg_addr_parse_ip("::10.0.0.1", 1, &a), 0);
	assert_false(mg_addr_is_v4(&a));
}

static void test_parse_ip_rejects(void **state)
{
	struct mg_abi_addr a;

	(void)state;
	assert_int_equal(mg_addr_parse_ip("10.0.0.1", 65536, &a), -EINVAL);
	assert_int_equal(mg_addr_parse_ip("10.0.0", 1, &a), -EINVAL);
	assert_int_equal(mg_addr_parse_ip("kubernetes", 1, &a), -EINVAL);
	assert_int_equal(mg_addr_parse_ip("", 1, &a), -EINVAL);
	assert_int_equal(mg_addr_parse_ip("[::1]", 1, &a), -EINVAL);
}

static void test_parse_hostport(void **state)
{
	struct mg_abi_addr a;
	char buf[MG_ADDR_STRLEN];

	(void)state;
	assert_int_equal(mg_addr_parse_hostport("1.2.3.4:5", &a), 0);
	assert_string_equal(mg_addr_fmt(&a, buf, sizeof(buf)), "1.2.3.4:5");
	assert_int_equal(mg_addr_parse_hostport("[::1]:443", &a), 0);
	assert_string_equal(mg_addr_fmt(&a, buf, sizeof(buf)), "[::1]:443");
	assert_int_equal(mg_addr_parse_hostport("[1.2.3.4]:443", &a), 0);
	assert_true(mg_addr_is_v4(&a));
	assert_int_equal(mg_addr_parse_hostport("1.2.3.4:65535", &a), 0);

	assert_int_equal(mg_addr_parse_hostport("::1:443", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("1.2.3.4:0", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("1.2.3.4:65536", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("1.2.3.4:44x", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("1.2.3.4:", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("1.2.3.4:+443", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("1.2.3.4: 443", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("1.2.3.4", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport(":443", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("[::1]443", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("[::1:443", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("host:443", &a), -EINVAL);
	assert_int_equal(
		mg_addr_parse_hostport("[0000:0000:0000:0000:0000:ffff:255.255.255.255:1]:443", &a),
		-EINVAL);
}

static void test_sockaddr_round_trip(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(8443)};
	struct sockaddr_un_like {
		sa_family_t family;
	} other = {AF_UNIX};
	struct mg_abi_addr a, b;

	(void)state;
	assert_int_equal(mg_addr_parse_ip("192.0.2.1", 443, &a), 0);
	/* v4-mapped becomes AF_INET: bind/connect use the real family */
	assert_int_equal(mg_addr_to_sockaddr(&a, &ss), sizeof(struct sockaddr_in));
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(((struct sockaddr_in *)&ss)->sin_port, htons(443));
	assert_int_equal(mg_addr_from_sockaddr((struct sockaddr *)&ss, &b), 0);
	assert_memory_equal(&a, &b, sizeof(a));

	/* a v4-mapped AF_INET6 peer (dual-stack socket) is the same key */
	inet_pton(AF_INET6, "::ffff:192.0.2.1", &s6.sin6_addr);
	s6.sin6_port = htons(443);
	assert_int_equal(mg_addr_from_sockaddr((struct sockaddr *)&s6, &b), 0);
	assert_memory_equal(&a, &b, sizeof(a));

	assert_int_equal(mg_addr_parse_ip("2001:db8::2", 8443, &a), 0);
	assert_int_equal(mg_addr_to_sockaddr(&a, &ss), sizeof(struct sockaddr_in6));
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(mg_addr_from_sockaddr((struct sockaddr *)&ss, &b), 0);
	assert_memory_equal(&a, &b, sizeof(a));

	assert_int_equal(mg_addr_from_sockaddr((struct sockaddr *)&other, &b), -EAFNOSUPPORT);
}

static void test_from_raw(void **state)
{
	const unsigned char v4[4] = {10, 0, 0, 7};
	unsigned char v6[16] = {0};
	struct mg_abi_addr a, b;

	(void)state;
	assert_int_equal(mg_addr_from_raw(AF_INET, v4, htons(443), &a), 0);
	assert_int_equal(mg_addr_parse_ip("10.0.0.7", 443, &b), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	v6[15] = 1;
	assert_int_equal(mg_addr_from_raw(AF_INET6, v6, htons(1), &a), 0);
	assert_int_equal(mg_addr_parse_ip("::1", 1, &b), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_equal(mg_addr_from_raw(AF_UNIX, v6, 0, &a), -EAFNOSUPPORT);
}

static void test_fmt_cut_is_terminated(void **state)
{
	struct mg_abi_addr a;
	char buf[6];

	(void)state;
	assert_int_equal(mg_addr_parse_ip("10.96.0.1", 443, &a), 0);
	assert_string_equal(mg_addr_fmt(&a, buf, sizeof(buf)), "10.96");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_ip_stores_v4_mapped),
		cmocka_unit_test(test_parse_ip_rejects),
		cmocka_unit_test(test_parse_hostport),
		cmocka_unit_test(test_sockaddr_round_trip),
		cmocka_unit_test(test_from_raw),
		cmocka_unit_test(test_fmt_cut_is_terminated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
