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

/* ---- the registry ---- */

static char *render(struct mg_metrics *m)
{
	char *s = mg_metrics_render_text(m);

	assert_non_null(s);
	return s;
}

static void test_registry_renders_in_registration_order(void **state)
{
	struct mg_metrics *m = mg_metrics_new();
	const char *const lab[] = {"reason"};
	struct mg_metrics_family *c, *g;
	char *s;

	(void)state;
	c = mg_metrics_add(m, MG_METRICS_COUNTER, "mg_b_total", "B things.", lab, 1, NULL, 0);
	g = mg_metrics_add(m, MG_METRICS_GAUGE, "mg_a", "A now.", NULL, 0, NULL, 0);
	assert_non_null(c);
	assert_non_null(g);
	/* series in first-use order, not sorted */
	mg_metrics_inc(mg_metrics_with(c, (const char *const[]){"zeta"}), 2);
	mg_metrics_inc(mg_metrics_with(c, (const char *const[]){"alpha"}), 1);
	mg_metrics_inc(mg_metrics_with(c, (const char *const[]){"zeta"}), 3);
	mg_metrics_set(mg_metrics_with(g, NULL), -4);
	s = render(m);
	assert_string_equal(s, "# HELP mg_b_total B things.\n"
			       "# TYPE mg_b_total counter\n"
			       "mg_b_total{reason=\"zeta\"} 5\n"
			       "mg_b_total{reason=\"alpha\"} 1\n"
			       "# HELP mg_a A now.\n"
			       "# TYPE mg_a gauge\n"
			       "mg_a -4\n");
	free(s);
	mg_metrics_free(m);
	mg_metrics_free(NULL);
}

static void test_registry_escapes_label_values(void **state)
{
	struct mg_metrics *m = mg_metrics_new();
	const char *const lab[] = {"verb", "resource"};
	struct mg_metrics_family *c;
	char *s;

	(void)state;
	c = mg_metrics_add(m, MG_METRICS_COUNTER, "mg_requests_total", "Requests.", lab, 2, NULL,
			   0);
	mg_metrics_inc(mg_metrics_with(c, (const char *const[]){"get", "po\"d}s\n\\x\xff"}), 1);
	mg_metrics_inc(mg_metrics_with(c, (const char *const[]){"list", NULL}), 1);
	s = render(m);
	assert_non_null(strstr(s, "mg_requests_total{verb=\"get\",resource=\"po\\\"d}s\\n"
				  "\\\\x\xef\xbf\xbd\"} 1\n"));
	assert_non_null(strstr(s, "mg_requests_total{verb=\"list\",resource=\"\"} 1\n"));
	free(s);
	mg_metrics_free(m);
}

static void test_registry_histogram_buckets(void **state)
{
	static const double b[] = {0.01, 0.1, 1};
	struct mg_metrics *m = mg_metrics_new();
	const char *const lab[] = {"stage"};
	struct mg_metrics_family *h;
	struct mg_metrics_series *s1;
	char *s;

	(void)state;
	h = mg_metrics_add(m, MG_METRICS_HISTOGRAM, "mg_seconds", "Time.", lab, 1, b, 3);
	assert_non_null(h);
	s1 = mg_metrics_with(h, (const char *const[]){"x"});
	mg_metrics_observe(s1, 0.005);
	mg_metrics_observe(s1, 0.1); /* on a bound: counted in it (le) */
	mg_metrics_observe(s1, 0.5);
	mg_metrics_observe(s1, 7);
	s = render(m);
	assert_string_equal(s, "# HELP mg_seconds Time.\n"
			       "# TYPE mg_seconds histogram\n"
			       "mg_seconds_bucket{stage=\"x\",le=\"0.01\"} 1\n"
			       "mg_seconds_bucket{stage=\"x\",le=\"0.1\"} 2\n"
			       "mg_seconds_bucket{stage=\"x\",le=\"1\"} 3\n"
			       "mg_seconds_bucket{stage=\"x\",le=\"+Inf\"} 4\n"
			       "mg_seconds_sum{stage=\"x\"} 7.605000\n"
			       "mg_seconds_count{stage=\"x\"} 4\n");
	free(s);
	mg_metrics_free(m);
}

static void test_registry_refuses_bad_families(void **state)
{
	static const double up[] = {1, 2}, down[] = {2, 1};
	struct mg_metrics *m = mg_metrics_new();
	const char *const bad[] = {"a-b"}, *const le[] = {"le"};

	(void)state;
	assert_non_null(mg_metrics_add(m, MG_METRICS_COUNTER, "ok_total", "x", NULL, 0, NULL, 0));
	/* twice the same name */
	assert_null(mg_metrics_add(m, MG_METRICS_GAUGE, "ok_total", "x", NULL, 0, NULL, 0));
	assert_null(mg_metrics_add(m, MG_METRICS_GAUGE, "1abc", "x", NULL, 0, NULL, 0));
	assert_null(mg_metrics_add(m, MG_METRICS_GAUGE, "a b", "x", NULL, 0, NULL, 0));
	assert_null(mg_metrics_add(m, MG_METRICS_GAUGE, "", "x", NULL, 0, NULL, 0));
	assert_null(mg_metrics_add(m, MG_METRICS_GAUGE, "g", "two\nlines", NULL, 0, NULL, 0));
	assert_null(mg_metrics_add(m, MG_METRICS_GAUGE, "g", "x", bad, 1, NULL, 0));
	assert_null(mg_metrics_add(m, MG_METRICS_HISTOGRAM, "h", "x", NULL, 0, down, 2));
	assert_null(mg_metrics_add(m, MG_METRICS_HISTOGRAM, "h", "x", NULL, 0, NULL, 0));
	assert_null(mg_metrics_add(m, MG_METRICS_HISTOGRAM, "h", "x", le, 1, up, 2));
	assert_null(mg_metrics_add(m, MG_METRICS_GAUGE, "g", "x", NULL, 0, up, 2));
	assert_non_null(mg_metrics_add(m, MG_METRICS_HISTOGRAM, "h", "x", NULL, 0, up, 2));
	mg_metrics_free(m);
}

struct pods_state {
	struct mg_metrics_family *f;
	const char *names[3];
	size_t n;
	int runs;
};

static void collect_pods(void *data)
{
	struct pods_state *p = data;

	p->runs++;
	mg_metrics_clear(p->f);
	for (size_t i = 0; i < p->n; i++)
		mg_metrics_set(mg_metrics_with(p->f, &p->names[i]), 1);
}

static void test_registry_collect(void **state)
{
	struct mg_metrics *m = mg_metrics_new();
	struct pods_state p = {.names = {"a", "b"}, .n = 2};
	const char *const lab[] = {"pod"};
	char *s;

	(void)state;
	p.f = mg_metrics_add(m, MG_METRICS_GAUGE, "mg_pod", "Pods.", lab, 1, NULL, 0);
	assert_int_equal(mg_metrics_on_collect(m, collect_pods, &p), 0);
	s = render(m);
	assert_string_equal(s, "# HELP mg_pod Pods.\n# TYPE mg_pod gauge\n"
			       "mg_pod{pod=\"a\"} 1\nmg_pod{pod=\"b\"} 1\n");
	free(s);
	/* a series that went away is gone from the next render */
	p.n = 1;
	p.names[0] = "b";
	s = render(m);
	assert_string_equal(s, "# HELP mg_pod Pods.\n# TYPE mg_pod gauge\n"
			       "mg_pod{pod=\"b\"} 1\n");
	assert_int_equal(p.runs, 2);
	free(s);
	mg_metrics_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes_the_three_specials),
		cmocka_unit_test(test_invalid_utf8_becomes_replacement),
		cmocka_unit_test(test_cut_never_splits_an_escape),
		cmocka_unit_test(test_sample_lines),
		cmocka_unit_test(test_long_value_whole),
		cmocka_unit_test(test_registry_renders_in_registration_order),
		cmocka_unit_test(test_registry_escapes_label_values),
		cmocka_unit_test(test_registry_histogram_buckets),
		cmocka_unit_test(test_registry_refuses_bad_families),
		cmocka_unit_test(test_registry_collect),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
