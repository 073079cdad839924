/*
 * scan: every detector's hits and non-hits over text, text streams split
 * anywhere, live output, bounded holds, exec channels, candidates cut short
 * at the end of a stream and at a flush.
 */
#include "../../userspace/mask/scan.c"
#include "mask_helpers.h"
#include "cut_cases.h"

static void test_detectors_text(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(det_cases) / sizeof(det_cases[0]); i++) {
		const struct det_case *c = &det_cases[i];
		struct mg_mask_stats st;
		char *out = text_all_ways(NULL, c->in, &st);

		if (!c->secret) {
			if (strcmp(out, c->in))
				fail_msg("case %zu masked: %s", i, out);
			for (unsigned d = 0; d < MG_MASK_DET_BUILTIN; d++)
				assert_int_equal(st.hits[d], 0);
		} else {
			assert_absent(out, c->secret);
			assert_present(out, "***MASKED:");
			if (!st.hits[c->det])
				fail_msg("case %zu: no %s hit: %s", i,
					 mg_mask_det_name(NULL, (unsigned)c->det), out);
		}
		free(out);
	}
}

/* ---- text streams ---- */

static void test_text_split_everywhere(void **state)
{
	const char *log = "2024-05-01T10:00:00Z starting\n"
			  "2024-05-01T10:00:01Z loaded key AKIAZ7VRSQ5TAVXHXYZQ secret "
			  "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\n"
			  "2024-05-01T10:00:02Z -----BEGIN PRIVATE KEY-----\n"
			  "2024-05-01T10:00:02Z MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
			  "2024-05-01T10:00:02Z -----END PRIVATE KEY-----\n"
			  "2024-05-01T10:00:03Z token=ghp_aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0dF3gH6 ok\n"
			  "2024-05-01T10:00:04Z done\n";
	struct mg_mask_stats st;
	char *out = text_all_ways(NULL, log, &st);

	(void)state;
	assert_absent(out, "Z7VRSQ5TAVXHXYZQ");
	assert_absent(out, "tFeBrqk8W6qSg1aK");
	assert_absent(out, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC");
	assert_absent(out, "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0dF3gH6");
	assert_present(out, "2024-05-01T10:00:00Z starting\n");
	assert_present(out, "2024-05-01T10:00:04Z done\n");
	assert_int_equal(st.hits[MG_MASK_DET_AWS_ACCESS_KEY], 1);
	assert_int_equal(st.hits[MG_MASK_DET_AWS_SECRET_KEY], 1);
	assert_int_equal(st.hits[MG_MASK_DET_PRIVATE_KEY], 1);
	free(out);
}

static void test_text_live(void **state)
{
	struct sbuf b = {0};
	struct mg_mask_sink s = {sbuf_write, &b};
	struct mg_mask_text *t = mg_mask_text_new(NULL);

	(void)state;
	/* a line is out before its newline */
	assert_int_equal(mg_mask_text_feed(t, "hello wor", 9, &s), 0);
	assert_string_equal(b.p, "hello wor");
	/* after a confirmed prefix the body is held until decided */
	assert_int_equal(mg_mask_text_feed(t, "ld ghp_aB3d", 11, &s), 0);
	assert_string_equal(b.p, "hello world ghp_");
	assert_int_equal(mg_mask_text_feed(t, "E6gH9jK2mN5pQ8sT1vW4yZ7bC0dF3gH6\n", 33, &s), 0);
	assert_string_equal(b.p, "hello world ghp_***MASKED:github-token***\n");
	/* an idle flush masks an undecided body, and swallows what continues it */
	assert_int_equal(mg_mask_text_feed(t, "ghp_abc", 7, &s), 0);
	assert_string_equal(b.p + strlen(b.p) - 4, "ghp_");
	assert_int_equal(mg_mask_text_flush(t, &s), 0);
	assert_string_equal(b.p + strlen(b.p) - 29, "ghp_***MASKED:github-token***");
	assert_int_equal(mg_mask_text_feed(t, "def more", 8, &s), 0);
	assert_string_equal(b.p + strlen(b.p) - 34, "ghp_***MASKED:github-token*** more");
	assert_int_equal(mg_mask_text_finish(t, &s), 0);
	mg_mask_text_free(t);
	sbuf_reset(&b);
}

static void test_text_long_lines(void **state)
{
	/* 1 MiB without a newline, hits planted at awkward offsets; fed in 4 KiB chunks */
	size_t len = 1 << 20;
	char *in = malloc(len + 1);
	struct sbuf b = {0};
	struct mg_mask_sink s = {sbuf_write, &b};
	struct mg_mask_text *t = mg_mask_text_new(NULL);
	static const size_t at[] = {4090, 65530, 131070, 500000, 1000000};

	(void)state;
	for (size_t i = 0; i < len; i++)
		in[i] = "abcdefgh ,;"[i % 11];
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
		memcpy(in + at[i], " ghp_aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0dF3gH6 ", 42);
	in[len] = 0;
	for (size_t off = 0; off < len; off += 4096)
		assert_int_equal(mg_mask_text_feed(t, in + off, 4096, &s), 0);
	assert_int_equal(mg_mask_text_finish(t, &s), 0);
	assert_absent(b.p, "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0dF3gH6");
	assert_int_equal(mg_mask_text_stats(t)->hits[MG_MASK_DET_GITHUB_TOKEN], 5);
	mg_mask_text_free(t);
	sbuf_reset(&b);
	free(in);
}

static void test_long_jwt_candidate_bounded(void **state)
{
	/* an eyJ run longer than the hold bound is masked, not buffered forever */
	size_t n = JWT_MAX_HOLD * 3;
	char *in = malloc(n + 16);
	struct sbuf b = {0};
	struct mg_mask_sink s = {sbuf_write, &b};
	struct mg_mask_text *t = mg_mask_text_new(NULL);

	(void)state;
	memcpy(in, "x eyJ", 5);
	for (size_t i = 5; i < n; i++)
		in[i] = 'A' + (char)(i % 26);
	memcpy(in + n, " tail", 6);
	for (size_t off = 0; off < n + 5; off += 1000)
		assert_int_equal(
			mg_mask_text_feed(t, in + off, off + 1000 > n + 5 ? n + 5 - off : 1000, &s),
			0);
	/* decided at the bound: nothing held any more */
	assert_int_equal(t->sc.hold_len, 0);
	assert_int_equal(t->sc.nc, 0);
	assert_int_equal(mg_mask_text_finish(t, &s), 0);
	assert_string_equal(b.p, "x eyJ***MASKED:jwt*** tail");
	mg_mask_text_free(t);
	sbuf_reset(&b);
	free(in);
}

static void test_exec_channels(void **state)
{
	struct sbuf o1 = {0}, o2 = {0};
	struct mg_mask_sink s1 = {sbuf_write, &o1}, s2 = {sbuf_write, &o2};
	struct mg_mask_exec *x = mg_mask_exec_new(NULL);
	struct mg_mask_stats st;

	(void)state;
	/* a key split across two stdout frames with stderr frames in between */
	assert_int_equal(mg_mask_exec_feed(x, 1, "key AKIAZ7VR", 12, &s1), 0);
	assert_int_equal(mg_mask_exec_feed(x, 2, "SQ5TAVXHXYZQ err\n", 17, &s2), 0);
	assert_int_equal(mg_mask_exec_feed(x, 1, "SQ5TAVXHXYZQ\n", 13, &s1), 0);
	assert_int_equal(mg_mask_exec_finish(x, 1, &s1), 0);
	assert_int_equal(mg_mask_exec_finish(x, 2, &s2), 0);
	assert_string_equal(o1.p, "key AKIA***MASKED:aws-access-key***\n");
	assert_string_equal(o2.p, "SQ5TAVXHXYZQ err\n");
	assert_int_equal(mg_mask_exec_feed(x, MG_MASK_EXEC_CHANNELS, "x", 1, &s1), -EINVAL);
	mg_mask_exec_stats(x, &st);
	assert_int_equal(st.hits[MG_MASK_DET_AWS_ACCESS_KEY], 1);
	mg_mask_exec_free(x);
	sbuf_reset(&o1);
	sbuf_reset(&o2);
}

/* Fuzz regression (tests/fuzz/corpus/mask/regress_akid_glued_run): a key
 * id glued to another id-like run used to be masked for 16 characters only,
 * and the tail of the second id survived. */
static void test_akid_glued_run(void **state)
{
	const char *in = "x AKIAZ7VRSQ5TAYQHAKIAZ7VRSQ5TAVXHXYZQVZXX y\n";
	struct mg_mask_text *t = mg_mask_text_new(NULL);
	struct sbuf o = {0};
	struct mg_mask_sink sink = {sbuf_write, &o};

	(void)state;
	assert_int_equal(mg_mask_text_feed(t, in, strlen(in), &sink), 0);
	assert_int_equal(mg_mask_text_finish(t, &sink), 0);
	assert_null(strstr(o.p, "Z7VRSQ5TAVXHXYZQ"));
	assert_null(strstr(o.p, "Z7VRSQ5TAYQH"));
	assert_non_null(strstr(o.p, "x AKIA***MASKED:aws-access-key***"));
	assert_non_null(strstr(o.p, " y\n"));
	mg_mask_text_free(t);
	free(o.p);
}

/* ---- a detector candidate cut short by the end of its stream ---- */

/* For every detector, a token cut 1..len-1 bytes into its body by the end of
 * a text stream (limitBytes, a closed connection) or of a JSON string (a
 * truncated message): the held body is masked, not written. Before, a
 * candidate pending at the end was written as it was. */
static void test_cut_candidate_masked_at_stream_end(void **state)
{
	struct mg_mask_cfg cfg;
	struct run r = {.cfg = &cfg};

	(void)state;
	cut_cfg(&cfg);
	for (size_t i = 0; i < N_CUT_CASES; i++) {
		const struct cut_case *c = &cut_cases[i];

		for (size_t cut = 1; cut < strlen(c->body); cut++) {
			char in[512], want[512];
			char *out, *jin;
			json_t *doc, *j;

			cut_input(in, sizeof(in), c, cut);
			if (cut >= c->min_end)
				cut_expect(want, sizeof(want), c);
			else /* a short run near a key id: no prefix, too short to matter */
				snprintf(want, sizeof(want), "x %s%.*s", c->out_pre, (int)cut,
					 c->body);
			out = text_all_ways(&cfg, in, NULL);
			if (strcmp(out, want))
				fail_msg(
					"text end, case %zu cut %zu:\nin:   %s\nout:  %s\nwant: %s",
					i, cut, in, out, want);
			free(out);
			/* the same cut at the end of a JSON string */
			doc = json_pack("{s:s,s:{s:s}}", "kind", "ConfigMap", "data", "v", in);
			jin = json_dumps(doc, JSON_COMPACT);
			out = mask_all_ways(&r, jin, NULL);
			j = parse(out);
			if (strcmp(jstr(j, "data.v"), want))
				fail_msg("JSON end, case %zu cut %zu:\nout:  %s\nwant: %s", i, cut,
					 out, want);
			json_decref(j);
			json_decref(doc);
			free(jin);
			free(out);
		}
	}
}

/* The same cuts at an idle flush (an interactive exec that went quiet), for
 * a text masker and an exec channel, then the rest of the token after it:
 * masked from its first body byte to its end, never written. Before, a
 * flush wrote the held body and the rest went out unmasked. */
static void test_cut_candidate_masked_at_flush(void **state)
{
	struct mg_mask_cfg cfg;

	(void)state;
	cut_cfg(&cfg);
	for (size_t i = 0; i < N_CUT_CASES; i++) {
		const struct cut_case *c = &cut_cases[i];

		for (size_t cut = 1; cut < strlen(c->body); cut++) {
			char in[512], rest[512], want[512], fwant[512];
			size_t n = cut_input(in, sizeof(in), c, cut);
			int rn = snprintf(rest, sizeof(rest), "%s%s tail\n", c->body + cut, c->end);

			/* at the flush: the marker, or (a short run near a key id) all held */
			cut_expect(fwant, sizeof(fwant), c);
			if (cut < c->min_end)
				snprintf(fwant, sizeof(fwant), "x %s", c->out_pre);
			cut_expect(want, sizeof(want), c);
			snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s tail\n",
				 c->end);
			for (int exec = 0; exec < 2; exec++) {
				struct sbuf o = {0};
				struct mg_mask_sink s = {sbuf_write, &o};
				struct mg_mask_text *t = exec ? NULL : mg_mask_text_new(&cfg);
				struct mg_mask_exec *x = exec ? mg_mask_exec_new(&cfg) : NULL;

				if (exec) {
					assert_int_equal(mg_mask_exec_feed(x, 1, in, n, &s), 0);
					assert_int_equal(mg_mask_exec_flush(x, 1, &s), 0);
					/* nothing of the body went out at the flush */
					assert_string_equal(o.p, fwant);
					assert_int_equal(
						mg_mask_exec_feed(x, 1, rest, (size_t)rn, &s), 0);
					assert_int_equal(mg_mask_exec_finish(x, 1, &s), 0);
				} else {
					assert_int_equal(mg_mask_text_feed(t, in, n, &s), 0);
					assert_int_equal(mg_mask_text_flush(t, &s), 0);
					assert_string_equal(o.p, fwant);
					assert_int_equal(mg_mask_text_feed(t, rest, (size_t)rn, &s),
							 0);
					assert_int_equal(mg_mask_text_finish(t, &s), 0);
				}
				if (strcmp(o.p, want))
					fail_msg("flush, case %zu cut %zu:\nout:  %s\nwant: %s", i,
						 cut, o.p, want);
				mg_mask_text_free(t);
				mg_mask_exec_free(x);
				sbuf_reset(&o);
			}
		}
	}
}

/* A matched prefix with nothing after it hides nothing: at an end it stays
 * as it is (no marker), and at a flush it stays pending, so a body that
 * arrives after the flush is still caught. */
static void test_bare_prefix_at_end_and_flush(void **state)
{
	struct sbuf o = {0};
	struct mg_mask_sink s = {sbuf_write, &o};
	struct mg_mask_text *t = mg_mask_text_new(NULL);
	char *out;

	(void)state;
	out = text_all_ways(NULL, "EURASIA", NULL);
	assert_string_equal(out, "EURASIA");
	free(out);
	assert_int_equal(mg_mask_text_feed(t, "tok ghp_", 8, &s), 0);
	assert_int_equal(mg_mask_text_flush(t, &s), 0);
	assert_string_equal(o.p, "tok ghp_");
	assert_int_equal(mg_mask_text_feed(t, "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0dF3gH6 x", 38, &s), 0);
	assert_int_equal(mg_mask_text_finish(t, &s), 0);
	assert_string_equal(o.p, "tok ghp_***MASKED:github-token*** x");
	mg_mask_text_free(t);
	sbuf_reset(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_detectors_text),
		cmocka_unit_test(test_text_split_everywhere),
		cmocka_unit_test(test_text_live),
		cmocka_unit_test(test_text_long_lines),
		cmocka_unit_test(test_long_jwt_candidate_bounded),
		cmocka_unit_test(test_exec_channels),
		cmocka_unit_test(test_akid_glued_run),
		cmocka_unit_test(test_cut_candidate_masked_at_stream_end),
		cmocka_unit_test(test_cut_candidate_masked_at_flush),
		cmocka_unit_test(test_bare_prefix_at_end_and_flush),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
