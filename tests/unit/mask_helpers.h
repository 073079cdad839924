/*
 * Helpers shared by the mask module tests (test_rules.c, test_scan.c,
 * test_json.c, test_body.c, test_mcpgatectl_mask.c): a growing sink, exact
 * heap copies, masking a document at every split point and byte by byte,
 * the detector examples. Included after the module under test; each test
 * uses some of them, hence no unused-function warnings here.
 */
#ifndef MCPGATE_TEST_MASK_HELPERS_H
#define MCPGATE_TEST_MASK_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <sys/wait.h>

#include "mcpgate/mask.h"

#pragma GCC diagnostic ignored "-Wunused-function"

/* ---- helpers ---- */

struct sbuf {
	char *p;
	size_t len, cap;
	int fail_after; /* > 0: the sink fails once this many writes happened */
	int writes;
};

static int sbuf_write(void *ctx, const char *p, size_t n)
{
	struct sbuf *b = ctx;

	if (b->fail_after && ++b->writes > b->fail_after)
		return -EPIPE;
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
	return 0;
}

static void sbuf_reset(struct sbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Exact-size heap copy so ASan sees reads past what the masker was given. */
static char *dup_exact(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);

	assert_non_null(p);
	memcpy(p, s, n);
	return p;
}

struct run {
	const struct mg_mask_cfg *cfg;
	const char *resource;
	bool stream;
};

/* Masks <doc> fed in pieces cut at <cuts> (sorted, ncut of them). Returns
 * the feed/finish result; output in <out>, stats copied to <st>. */
static int mask_cuts(const struct run *r, const char *doc, size_t len, const size_t *cuts,
		     size_t ncut, struct sbuf *out, struct mg_mask_stats *st)
{
	struct mg_mask_json_opts o = {.stream = r->stream,
				      .resource = mg_str_of(r->resource ? r->resource : "")};
	struct mg_mask_json *m = mg_mask_json_new(r->cfg, &o);
	struct mg_mask_sink s = {sbuf_write, out};
	size_t at = 0;
	int rc = 0;

	assert_non_null(m);
	for (size_t i = 0; i <= ncut && !rc; i++) {
		size_t to = i < ncut ? cuts[i] : len;
		char *piece = dup_exact(doc + at, to - at);

		rc = mg_mask_json_feed(m, piece, to - at, &s);
		free(piece);
		at = to;
	}
	if (!rc)
		rc = mg_mask_json_finish(m, &s);
	if (st)
		*st = *mg_mask_json_stats(m);
	mg_mask_json_free(m);
	return rc;
}

static bool valid_json(const char *s, size_t n, bool stream)
{
	json_error_t e;

	if (!stream) {
		json_t *j = json_loadb(s, n, JSON_DECODE_ANY, &e);

		json_decref(j);
		return j != NULL;
	}
	for (const char *p = s, *end = s + n; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		json_t *j;

		if (l) {
			j = json_loadb(p, l, 0, &e);
			if (!j)
				return false;
			json_decref(j);
		}
		p += l + 1;
	}
	return true;
}

/*
 * Masks <doc> whole, then at every single split point and byte by byte:
 * all must agree, succeed and give valid JSON. Returns the output (caller
 * frees) and the stats.
 */
static char *mask_all_ways(const struct run *r, const char *doc, struct mg_mask_stats *st)
{
	size_t len = strlen(doc);
	struct sbuf whole = {0};
	size_t *cuts;

	assert_int_equal(mask_cuts(r, doc, len, NULL, 0, &whole, st), 0);
	if (!whole.p)
		whole.p = calloc(1, 1);
	if (!valid_json(whole.p, whole.len, r->stream))
		fail_msg("invalid JSON out: %s", whole.p);
	for (size_t k = 1; k < len; k++) {
		struct sbuf b = {0};

		assert_int_equal(mask_cuts(r, doc, len, &k, 1, &b, NULL), 0);
		if (b.len != whole.len || memcmp(b.p, whole.p, b.len))
			fail_msg("split at %zu differs:\n%s\nvs\n%s", k, b.p, whole.p);
		sbuf_reset(&b);
	}
	cuts = malloc(len * sizeof(*cuts));
	for (size_t k = 0; k < len; k++)
		cuts[k] = k + 1;
	{
		struct sbuf b = {0};

		assert_int_equal(mask_cuts(r, doc, len, cuts, len ? len - 1 : 0, &b, NULL), 0);
		assert_int_equal(b.len, whole.len);
		assert_memory_equal(b.p, whole.p, b.len);
		sbuf_reset(&b);
	}
	free(cuts);
	return whole.p;
}

static char *mask_once(const struct run *r, const char *doc, int *rc, struct mg_mask_stats *st)
{
	struct sbuf b = {0};

	*rc = mask_cuts(r, doc, strlen(doc), NULL, 0, &b, st);
	if (!b.p)
		b.p = calloc(1, 1);
	return b.p;
}

static json_t *parse(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);

	if (!j)
		fail_msg("not JSON (%s): %s", e.text, s);
	return j;
}

/* The string at dotted <path> ("a.b.0.c": numbers index arrays). */
static const char *jstr(json_t *root, const char *path)
{
	char buf[256], *save = NULL, *tok;
	json_t *j = root;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && j; tok = strtok_r(NULL, ".", &save)) {
		if (json_is_array(j))
			j = json_array_get(j, strtoul(tok, NULL, 10));
		else
			j = json_object_get(j, tok);
	}
	if (!json_is_string(j))
		fail_msg("no string at %s", path);
	return json_string_value(j);
}

static void assert_absent(const char *out, const char *secret)
{
	if (strstr(out, secret))
		fail_msg("secret %s survived in: %s", secret, out);
}

static void assert_present(const char *out, const char *s)
{
	if (!strstr(out, s))
		fail_msg("%s missing in: %s", s, out);
}

/* Text masking at every split point and byte by byte; returns the output. */
static char *text_all_ways(const struct mg_mask_cfg *cfg, const char *in, struct mg_mask_stats *st)
{
	size_t len = strlen(in);
	struct sbuf whole = {0};
	struct mg_mask_sink s = {sbuf_write, &whole};
	struct mg_mask_text *t = mg_mask_text_new(cfg);
	char *copy = dup_exact(in, len);

	assert_int_equal(mg_mask_text_feed(t, copy, len, &s), 0);
	assert_int_equal(mg_mask_text_finish(t, &s), 0);
	if (st)
		*st = *mg_mask_text_stats(t);
	mg_mask_text_free(t);
	free(copy);
	if (!whole.p)
		whole.p = calloc(1, 1);
	for (size_t k = 0; k <= len; k++) {
		struct sbuf b = {0};
		struct mg_mask_sink bs = {sbuf_write, &b};
		char *a = dup_exact(in, k), *c = dup_exact(in + k, len - k);

		t = mg_mask_text_new(cfg);
		assert_int_equal(mg_mask_text_feed(t, a, k, &bs), 0);
		assert_int_equal(mg_mask_text_feed(t, c, len - k, &bs), 0);
		assert_int_equal(mg_mask_text_finish(t, &bs), 0);
		mg_mask_text_free(t);
		free(a);
		free(c);
		if (b.len != whole.len || (b.len && memcmp(b.p, whole.p, b.len)))
			fail_msg("text split at %zu differs:\n%s\nvs\n%s", k, b.p, whole.p);
		sbuf_reset(&b);
	}
	{
		struct sbuf b = {0};
		struct mg_mask_sink bs = {sbuf_write, &b};

		t = mg_mask_text_new(cfg);
		for (size_t k = 0; k < len; k++) {
			char *a = dup_exact(in + k, 1);

			assert_int_equal(mg_mask_text_feed(t, a, 1, &bs), 0);
			free(a);
		}
		assert_int_equal(mg_mask_text_finish(t, &bs), 0);
		mg_mask_text_free(t);
		assert_int_equal(b.len, whole.len);
		if (b.len)
			assert_memory_equal(b.p, whole.p, b.len);
		sbuf_reset(&b);
	}
	return whole.p;
}

static const struct run plain = {0};

static const char secret_doc[] =
	"{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"db\",\"namespace\":"
	"\"prod\",\"managedFields\":[{\"manager\":\"kubectl\",\"fieldsV1\":{\"f:data\":{"
	"\"f:password\":{}}}}]},\"data\":{\"password\":\"aHVudGVyMg==\",\"user\":\"YWRtaW4=\","
	"\"empty\":\"\"},\"stringData\":{\"token\":\"plain-s3cret\"},\"type\":\"Opaque\"}";

/* ---- detectors ---- */

struct det_case {
	const char *in;
	const char *secret; /* must not survive; NULL: output must equal input */
	int det;	    /* detector expected to hit (-1: none) */
};

static const struct det_case det_cases[] = {
	{"id AKIAZ7VRSQ5TAVXHXYZQ end", "Z7VRSQ5TAVXHXYZQ", MG_MASK_DET_AWS_ACCESS_KEY},
	{"sts ASIAY34FZKBOKMUTVV7A.", "Y34FZKBOKMUTVV7A", MG_MASK_DET_AWS_ACCESS_KEY},
	{"doc AKIAIOSFODNN7EXAMPLE here", NULL, -1},
	{"short AKIAABCDEF end", NULL, -1},
	{"lower akiaz7vrsq5tavxhxyzq end", NULL, -1},
	{"aws_secret_access_key = tFeBrqk8W6qSg1aK/7mF0bu9AqGzR3xUv+CzWLnQ\n",
	 "tFeBrqk8W6qSg1aK/7mF0bu9AqGzR3xUv+CzWLnQ", MG_MASK_DET_AWS_SECRET_KEY},
	{"\"SecretAccessKey\": \"tFeBrqk8W6qSg1aK/7mF0bu9AqGzR3xUv+CzWLnQ\"",
	 "tFeBrqk8W6qSg1aK/7mF0bu9AqGzR3xUv+CzWLnQ", MG_MASK_DET_AWS_SECRET_KEY},
	{"AKIAZ7VRSQ5TAVXHXYZQ tFeBrqk8W6qSg1aK/7mF0bu9AqGzR3xUv+CzWLnQ",
	 "tFeBrqk8W6qSg1aK/7mF0bu9AqGzR3xUv", MG_MASK_DET_AWS_SECRET_KEY},
	{"aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", NULL, -1},
	{"sha tFeBrqk8W6qSg1aK/7mF0bu9AqGzR3xUv+CzWLnQ far from any key id", NULL, -1},
	{"-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
	 "4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0\n-----END RSA PRIVATE KEY-----\nafter\n",
	 "MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo", MG_MASK_DET_PRIVATE_KEY},
	{"k: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n"
	 "-----END OPENSSH PRIVATE KEY-----",
	 "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU", MG_MASK_DET_PRIVATE_KEY},
	{"-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF0pgpSECRET\n-----END PGP PRIVATE KEY "
	 "BLOCK-----",
	 "lQOYBF0pgpSECRET", MG_MASK_DET_PRIVATE_KEY},
	{"-----BEGIN CERTIFICATE-----\nMIIBpublic\n-----END CERTIFICATE-----\n", NULL, -1},
	{"-----BEGIN PUBLIC KEY-----\nMIIBpublic\n-----END PUBLIC KEY-----\n", NULL, -1},
	{"Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJpc3MiOiJrdWJlcm5ldGVzL3"
	 "NlcnZpY2VhY2NvdW50Iiwic3ViIjoic3lzdGVtOnNhIn0.SIGNATUREsig_-abc\n",
	 "eyJpc3MiOiJrdWJlcm5ldGVzL3", MG_MASK_DET_GENERIC_PASSWORD},
	{"tok eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50"
	 "Iiwic3ViIjoic3lzdGVtOnNhIn0.SIGNATUREsig_-abc done",
	 "SIGNATUREsig_-abc", MG_MASK_DET_JWT},
	{"not a jwt eyJhbGciOiJSUzI1NiJ9 alone", NULL, -1},
	{"not a jwt eyJhbGciOiJSUzI1NiJ9.notey.x", NULL, -1},
	{"gh ghp_aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0dF3gH6 x", "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0dF3gH6",
	 MG_MASK_DET_GITHUB_TOKEN},
	{"gh ghs_aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0dF3gH6", "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0dF3gH6",
	 MG_MASK_DET_GITHUB_TOKEN},
	{"pat github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
	 "11ABCDEFG0123456789_abcdefghijklmnop", MG_MASK_DET_GITHUB_TOKEN},
	{"gh ghp_short x", NULL, -1},
	{"gl glpat-xY9z_Kq2-Lm4Np6Rs8Tu.", "xY9z_Kq2-Lm4Np6Rs8Tu", MG_MASK_DET_GITLAB_TOKEN},
	{"sl xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx ok",
	 "123456789012-1234567890123", MG_MASK_DET_SLACK_TOKEN},
	{"sl xoxp-1234567890 ok", "1234567890", MG_MASK_DET_SLACK_TOKEN},
	{"eks k8s-aws-v1.aHR0cHM6Ly9zdHMuYW1hem9uYXdzLmNvbS8_QWN0aW9uPUdldENhbGxlcklkZW50aXR5 x",
	 "aHR0cHM6Ly9zdHMuYW1hem9uYXdz", MG_MASK_DET_EKS_TOKEN},
	{"db password=hunter2 x", "hunter2", MG_MASK_DET_GENERIC_PASSWORD},
	{"DB_PASSWORD: 'hunter2'", "hunter2", MG_MASK_DET_GENERIC_PASSWORD},
	{"client-secret:hunter2", "hunter2", MG_MASK_DET_GENERIC_PASSWORD},
	{"url?token=abc123&x=1", "abc123", MG_MASK_DET_GENERIC_PASSWORD},
	{"{\"password\": \"hunter2\"}", "hunter2", MG_MASK_DET_GENERIC_PASSWORD},
	{"passwordFile: /etc/pw", NULL, -1},
	{"password: \nnext", NULL, -1},
	{"at 12:30:45 tokens: many", NULL, -1},
};

#endif /* MCPGATE_TEST_MASK_HELPERS_H */
