/*
 * metrics: label values escaped per the Prometheus text format, whatever
 * bytes a pod put in its request path; cuts never split an escape.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>

#include "../../userspace/core/metrics.c"

static void expect_escape(const char *in, const char *want)
{
	char out[256];
	size_t n = mg_metrics_escape_label(in, out, sizeof(out));

	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
}

static void test_escapes_the_three_specials(void **state)
{
	(void)state;
	expect_escape("", "");
	expect_escape("pods", "pods");
	expect_escape("a\"b", "a\\\"b");
	expect_escape("a\\b", "a\\\\b");
	expect_escape("a\nb", "a\\nb");
	expect_escape("\"\\\n", "\\\"\\\\\\n");
	/* braces, spaces, commas, '=' and '|' are fine inside the quotes */
	expect_escape("pods\"{} x,y=z|w", "pods\\\"{} x,y=z|w");
	/* other controls are legal label text: passed as they are */
	expect_escape("a\tb\rc", "a\tb\rc");
}

static void test_invalid_utf8_becomes_replacement(void **state)
{
	(void)state;
	expect_escape("caf\xc3\xa9", "caf\xc3\xa9");	       /* valid 2-byte */
	expect_escape("\xe2\x82\xac", "\xe2\x82\xac");	       /* valid 3-byte */
	expect_escape("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"); /* valid 4-byte */
	expect_escape("a\xffz", "a\xef\xbf\xbdz");	       /* never valid */
	expect_escape("\xc3", "\xef\xbf\xbd");		       /* truncated at the end */
	expect_escape("\xc3(", "\xef\xbf\xbd(");	       /* bad continuation */
	expect_escape("\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"); /* overlong '/' */
	expect_escape("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* surrogate */
	expect_escape("\xf4\x90\x80\x80",
		      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* > U+10FFFF */
}

/* Every output size: the result is NUL-terminated, a prefix of the full
 * escape made of whole pieces (no dangling backslash), and the returned
 * length is always the full one. */
static void test_cut_never_splits_an_escape(void **state)
{
	const char *in = "a\"b\\c\nd\xff"
			 "e";
	char full[64], out[64];
	size_t need = mg_metrics_escape_label(in, full, sizeof(full));

	(void)state;
	for (size_t cap = 0; cap <= need + 1; cap++) {
		size_t len, bs = 0;

		memset(out, 'X', sizeof(out));
		assert_int_equal(mg_metrics_escape_label(in, out, cap), need);
		if (!cap) {
			assert_int_equal(out[0], 'X');
			continue;
		}
		len = strlen(out);
		assert_true(len < cap);
		assert_memory_equal(out, full, len);
		for (size_t i = len; i > 0 && out[i - 1] == '\\'; i--)
			bs++;
		assert_int_equal(bs % 2, 0);
		assert_true(len == 0 || (unsigned char)out[len - 1] != 0xef);
		assert_true(len == 0 || (unsigned char)out[len - 1] != 0xbf ||
			    (len >= 3 && (unsigned char)out[len - 3] == 0xef));
	}
}

static char *sample(const struct mg_metrics_label *l, size_t n, uint64_t v)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	assert_int_equal(mg_metrics_put_u64(f, "mcpgate_x_total", l, n, v), 0);
	fclose(f);
	return buf;
}

static void test_sample_lines(void **state)
{
	struct mg_metrics_label l[] = {
		{"verb", "get"}, {"resource", "pods\"} 1\nmcpgate_forged 9"}, {"code", NULL}};
	char *s;

	(void)state;
	s = sample(NULL, 0, 7);
	assert_string_equal(s, "mcpgate_x_total 7\n");
	free(s);
	s = sample(l, 3, 18446744073709551615ull);
	assert_string_equal(s,
			    "mcpgate_x_total{verb=\"get\",resource=\"pods\\\"} 1\\nmcpgate_forged "
			    "9\",code=\"\"} 18446744073709551615\n");
	free(s);
}

/* A value longer than the stack buffer is written whole, not cut. */
static void test_long_value_whole(void **state)
{
	char *big = malloc(5001), *s, *want, *p;
	struct mg_metrics_label l = {"resource", big};

	(void)state;
	memset(big, '"', 5000);
	big[5000] = '\0';
	s = sample(&l, 1, 1);
	want = malloc(10000 + 64);
	p = want + sprintf(want, "mcpgate_x_total{resource=\"");
	for (int i = 0; i < 5000; i++, p += 2)
		memcpy(p, "\\\"", 2);
	strcpy(p, "\"} 1\n");
	assert_string_equal(s, want);
	free(s);
	free(want);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes_the_three_specials),
		cmocka_unit_test(test_invalid_utf8_becomes_replacement),
		cmocka_unit_test(test_cut_never_splits_an_escape),
		cmocka_unit_test(test_sample_lines),
		cmocka_unit_test(test_long_value_whole),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
