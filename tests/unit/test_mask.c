/*
 * mask: Secrets in every response form (object, SecretList, List, watch,
 * Table, nested, last-applied), ConfigMaps and Pods left intact, every
 * detector's hits and non-hits, text streams split anywhere, malformed JSON,
 * gzip, config, CLI. Most checks run the input at every split point and
 * byte by byte, and require the same output as in one piece, and valid JSON
 * out (jansson) for valid JSON in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <sys/wait.h>

#include "../../userspace/mask/mask.c"
#include "cut_cases.h"

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

/* ---- Secrets in every form ---- */

static const char secret_doc[] =
	"{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"db\",\"namespace\":"
	"\"prod\",\"managedFields\":[{\"manager\":\"kubectl\",\"fieldsV1\":{\"f:data\":{"
	"\"f:password\":{}}}}]},\"data\":{\"password\":\"aHVudGVyMg==\",\"user\":\"YWRtaW4=\","
	"\"empty\":\"\"},\"stringData\":{\"token\":\"plain-s3cret\"},\"type\":\"Opaque\"}";

static void test_secret_object(void **state)
{
	struct mg_mask_stats st;
	char *out = mask_all_ways(&plain, secret_doc, &st);
	json_t *j = parse(out);
	unsigned char dec[64];
	int n;

	(void)state;
	assert_string_equal(jstr(j, "data.password"), MG_MASK_DATA_MARKER);
	assert_string_equal(jstr(j, "data.user"), MG_MASK_DATA_MARKER);
	assert_string_equal(jstr(j, "data.empty"), "");
	assert_string_equal(jstr(j, "stringData.token"), MG_MASK_STRING_MARKER);
	assert_string_equal(jstr(j, "metadata.name"), "db");
	assert_string_equal(jstr(j, "type"), "Opaque");
	/* managedFields keep their keys (no values there) */
	assert_present(out, "\"f:password\":{}");
	/* typed clients decode data as base64 */
	n = EVP_DecodeBlock(dec, (const unsigned char *)MG_MASK_DATA_MARKER,
			    (int)strlen(MG_MASK_DATA_MARKER));
	assert_int_equal(n, 12);
	assert_memory_equal(dec, MG_MASK_STRING_MARKER, 12);
	assert_absent(out, "aHVudGVyMg");
	assert_absent(out, "YWRtaW4");
	assert_absent(out, "plain-s3cret");
	assert_int_equal(st.secrets, 1);
	assert_int_equal(st.secret_fields, 3);
	json_decref(j);
	free(out);
}

static void test_secret_kind_after_data(void **state)
{
	/* unstructured and last-applied documents sort keys: data before kind */
	const char *doc =
		"{\"apiVersion\":\"v1\",\"data\":{\"k\":\"c2VjcmV0\"},\"kind\":\"Secret\","
		"\"metadata\":{\"name\":\"x\"},\"stringData\":{\"a\":\"b\"}}";
	char *out = mask_all_ways(&plain, doc, NULL);

	(void)state;
	assert_absent(out, "c2VjcmV0");
	assert_present(out, "\"k\":\"" MG_MASK_DATA_MARKER "\"");
	assert_present(out, "\"a\":\"" MG_MASK_STRING_MARKER "\"");
	free(out);
}

static void test_secret_data_odd_values(void **state)
{
	/* numbers, booleans, nested values in a Secret's data are masked too */
	const char *doc = "{\"kind\":\"Secret\",\"data\":{\"n\":12345,\"b\":true,\"z\":null,"
			  "\"o\":{\"deep\":[\"x1\",-2.5e3]}}}";
	char *out = mask_all_ways(&plain, doc, NULL);

	(void)state;
	assert_absent(out, "12345");
	assert_absent(out, "true");
	assert_absent(out, "x1");
	assert_absent(out, "2.5e3");
	assert_present(out, "\"z\":null");
	free(out);
}

static void test_secret_list(void **state)
{
	const char *doc =
		"{\"kind\":\"SecretList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":"
		"\"5\"},\"items\":[{\"metadata\":{\"name\":\"a\"},\"data\":{\"k\":\"c2VjcmV0QQ==\"}"
		"},"
		"{\"metadata\":{\"name\":\"b\"},\"data\":{\"k\":\"c2VjcmV0Qg==\"},\"stringData\":"
		"{\"s\":\"raw\"}}]}";
	struct mg_mask_stats st;
	char *out = mask_all_ways(&plain, doc, &st);
	json_t *j = parse(out);

	(void)state;
	assert_string_equal(jstr(j, "items.0.data.k"), MG_MASK_DATA_MARKER);
	assert_string_equal(jstr(j, "items.1.data.k"), MG_MASK_DATA_MARKER);
	assert_string_equal(jstr(j, "items.1.stringData.s"), MG_MASK_STRING_MARKER);
	assert_string_equal(jstr(j, "items.1.metadata.name"), "b");
	assert_int_equal(st.secrets, 2);
	assert_int_equal(st.secret_fields, 3);
	json_decref(j);
	free(out);
}

static void test_configmap_intact(void **state)
{
	const char *cm =
		"{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":"
		"\"app\"},\"data\":{\"app.conf\":\"listen 80;\\nroot /srv;\\n\","
		"\"html\":\"\\u003cb\\u003ehi \\u0026 bye\\u003c/b\\u003e\",\"num\":\"42\"}}";
	const char *list = "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"items\":[{"
			   "\"metadata\":{\"name\":\"a\"},\"data\":{\"x\":\"plain value\"}},{"
			   "\"metadata\":{\"name\":\"b\"},\"binaryData\":{\"y\":\"AAEC\"},"
			   "\"data\":{\"z\":\"zz\"}}]}";
	struct mg_mask_stats st;
	char *out;

	(void)state;
	/* byte for byte, Go-style escapes included */
	out = mask_all_ways(&plain, cm, &st);
	assert_string_equal(out, cm);
	assert_int_equal(st.secrets, 0);
	free(out);
	/* typed list items carry no kind: they are ConfigMaps by the list's kind */
	out = mask_all_ways(&plain, list, NULL);
	assert_string_equal(out, list);
	free(out);
}

static void test_unknown_kind_is_masked(void **state)
{
	/* kind after data and no hint: it may be a Secret, so data is masked */
	const char *doc =
		"{\"apiVersion\":\"v1\",\"data\":{\"x\":\"maybe\"},\"kind\":\"ConfigMap\"}";
	struct run hinted = {.resource = "configmaps"};
	char *out = mask_all_ways(&plain, doc, NULL);

	(void)state;
	assert_absent(out, "maybe");
	free(out);
	/* the request hint says configmaps: readable */
	out = mask_all_ways(&hinted, doc, NULL);
	assert_string_equal(out, doc);
	free(out);
}

static void test_generic_list_mixed(void **state)
{
	const char *doc =
		"{\"kind\":\"List\",\"apiVersion\":\"v1\",\"items\":["
		"{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"data\":{\"c\":\"visible\"}},"
		"{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"data\":{\"s\":\"aGlkZGVu\"}},"
		"{\"apiVersion\":\"v1\",\"data\":{\"u\":\"dW5rbm93bg==\"}},"
		"{\"kind\":\"Pod\",\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"nginx:1\"}"
		"]}}"
		"]}";
	char *out = mask_all_ways(&plain, doc, NULL);
	json_t *j = parse(out);

	(void)state;
	assert_string_equal(jstr(j, "items.0.data.c"), "visible");
	assert_string_equal(jstr(j, "items.1.data.s"), MG_MASK_DATA_MARKER);
	assert_string_equal(jstr(j, "items.2.data.u"), MG_MASK_DATA_MARKER);
	assert_string_equal(jstr(j, "items.3.spec.containers.0.image"), "nginx:1");
	json_decref(j);
	free(out);
}

static void test_watch_stream(void **state)
{
	const char *doc =
		"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Secret\",\"apiVersion\":\"v1\","
		"\"metadata\":{\"name\":\"a\"},\"data\":{\"k\":\"d2F0Y2g=\"}}}\n"
		"{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Secret\",\"apiVersion\":\"v1\","
		"\"metadata\":{\"resourceVersion\":\"12\",\"annotations\":{"
		"\"k8s.io/initial-events-end\":\"true\"}}}}\n"
		"{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"nokind\"},\"data\":{"
		"\"k\":\"bm9raW5k\"}}}\n"
		"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\","
		"\"status\":\"Failure\",\"message\":\"too old resource version\",\"code\":410}}\n";
	struct run r = {.stream = true, .resource = "secrets"};
	char *out = mask_all_ways(&r, doc, NULL);
	const char *bm = strstr(doc, "{\"type\":\"BOOKMARK\"");
	const char *er = strstr(doc, "{\"type\":\"ERROR\"");

	(void)state;
	assert_absent(out, "d2F0Y2g");
	assert_absent(out, "bm9raW5k");
	/* BOOKMARK and ERROR pass byte for byte */
	assert_non_null(strstr(out, "{\"type\":\"BOOKMARK\""));
	assert_memory_equal(strstr(out, "{\"type\":\"BOOKMARK\""), bm,
			    (size_t)(strchr(bm, '\n') - bm));
	assert_string_equal(strstr(out, "{\"type\":\"ERROR\""), er);
	free(out);
	/* a stream may be empty or only whitespace; a cut-off event is an error */
	{
		int rc;

		free(mask_once(&r, "", &rc, NULL));
		assert_int_equal(rc, 0);
		free(mask_once(&r, "\n\n", &rc, NULL));
		assert_int_equal(rc, 0);
		free(mask_once(&r, "{\"type\":\"ADDED\",\"object\":{\"kind\":", &rc, NULL));
		assert_int_equal(rc, -EINVAL);
	}
}

static void test_table(void **state)
{
	/* what kubectl get secrets asks for: cells hold name, type, data count, age */
	const char *doc =
		"{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":{},"
		"\"columnDefinitions\":[{\"name\":\"Name\",\"type\":\"string\"},{\"name\":\"Type\","
		"\"type\":\"string\"},{\"name\":\"Data\",\"type\":\"string\"},{\"name\":\"Age\","
		"\"type\":\"string\"}],\"rows\":[{\"cells\":[\"db\",\"Opaque\",2,\"5d\"],"
		"\"object\":{"
		"\"metadata\":{\"name\":\"db\"},\"data\":{\"p\":\"dGFibGU=\"},\"type\":\"Opaque\"}}"
		","
		"{\"cells\":[\"m\",\"Opaque\",1,\"1d\"],\"object\":{\"kind\":"
		"\"PartialObjectMetadata\","
		"\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":{\"name\":\"m\"}}}]}";
	const char *cm_table =
		"{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/"
		"v1\",\"rows\":[{\"cells\":[\"c\"],"
		"\"object\":{\"metadata\":{\"name\":\"c\"},\"data\":{\"x\":\"readable\"}}}]}";
	struct run secrets = {.resource = "secrets"}, cms = {.resource = "configmaps"};
	char *out = mask_all_ways(&secrets, doc, NULL);
	json_t *j = parse(out);

	(void)state;
	assert_string_equal(jstr(j, "rows.0.object.data.p"), MG_MASK_DATA_MARKER);
	assert_string_equal(jstr(j, "rows.0.cells.0"), "db");
	assert_string_equal(jstr(j, "rows.1.object.metadata.name"), "m");
	json_decref(j);
	free(out);
	/* without a hint a kind-less row object is not known to be safe */
	out = mask_all_ways(&plain, doc, NULL);
	assert_absent(out, "dGFibGU");
	free(out);
	out = mask_all_ways(&cms, cm_table, NULL);
	assert_string_equal(out, cm_table);
	free(out);
}

static void test_last_applied(void **state)
{
	/* mcp-server-kubernetes 4.1.7 masked data but returned this annotation */
	const char *doc =
		"{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"x\","
		"\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":"
		"\"{\\\"apiVersion\\\":\\\"v1\\\",\\\"data\\\":{\\\"password\\\":"
		"\\\"bGFzdGFwcGxpZWQ=\\\"},\\\"kind\\\":\\\"Secret\\\",\\\"metadata\\\":{"
		"\\\"annotations\\\":{},\\\"name\\\":\\\"x\\\"},\\\"stringData\\\":{\\\"s\\\":"
		"\\\"la-raw\\\"},\\\"type\\\":\\\"Opaque\\\"}\\n\"}},\"data\":{\"password\":"
		"\"bGFzdGFwcGxpZWQ=\"}}";
	struct mg_mask_stats st;
	char *out = mask_all_ways(&plain, doc, &st);
	json_t *j = parse(out), *inner;
	json_error_t e;

	(void)state;
	assert_absent(out, "bGFzdGFwcGxpZWQ");
	assert_absent(out, "la-raw");
	/* jstr() splits at dots: fetch the annotation directly */
	inner = json_loads(json_string_value(json_object_get(
				   json_object_get(json_object_get(j, "metadata"), "annotations"),
				   "kubectl.kubernetes.io/last-applied-configuration")),
			   0, &e);
	assert_non_null(inner);
	assert_string_equal(jstr(inner, "data.password"), MG_MASK_DATA_MARKER);
	assert_string_equal(jstr(inner, "stringData.s"), MG_MASK_STRING_MARKER);
	assert_string_equal(jstr(inner, "metadata.name"), "x");
	assert_int_equal(st.last_applied, 1);
	json_decref(inner);
	json_decref(j);
	free(out);
}

static void test_last_applied_configmap_and_broken(void **state)
{
	/* a ConfigMap's own last-applied as kubectl writes it (sorted keys):
	 * its data comes before its kind, so it is masked (the live data is not) */
	const char *cm =
		"{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"c\","
		"\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":"
		"\"{\\\"apiVersion\\\":\\\"v1\\\",\\\"data\\\":{\\\"k\\\":\\\"v \\\\u003c\\\"},"
		"\\\"kind\\\":\\\"ConfigMap\\\",\\\"metadata\\\":{\\\"annotations\\\":{},"
		"\\\"name\\\":"
		"\\\"c\\\"}}\\n\"}},\"data\":{\"k\":\"v \\u003c\"}}";
	const char *cm_masked =
		"{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"c\","
		"\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":"
		"\"{\\\"apiVersion\\\":\\\"v1\\\",\\\"data\\\":{\\\"k\\\":\\\"" MG_MASK_DATA_MARKER
		"\\\"},"
		"\\\"kind\\\":\\\"ConfigMap\\\",\\\"metadata\\\":{\\\"annotations\\\":{},"
		"\\\"name\\\":"
		"\\\"c\\\"}}\\n\"}},\"data\":{\"k\":\"v \\u003c\"}}";
	/* kind first: readable, byte for byte */
	const char *cm_kind_first =
		"{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"c\","
		"\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":"
		"\"{\\\"kind\\\":\\\"ConfigMap\\\",\\\"apiVersion\\\":\\\"v1\\\",\\\"data\\\":"
		"{\\\"k\\\":\\\"v \\\\u003c\\\"}}\\n\"}},\"data\":{\"k\":\"v \\u003c\"}}";
	/* not JSON inside: the rest of the annotation goes */
	const char *broken =
		"{\"kind\":\"Secret\",\"metadata\":{\"annotations\":{"
		"\"kubectl.kubernetes.io/last-applied-configuration\":\"{\\\"data\\\":{\\\"p\\\":"
		"\\\"c2VjcmV0\\\"}} trailing c2VjcmV0\"}}}";
	char *out;

	(void)state;
	out = mask_all_ways(&plain, cm, NULL);
	assert_string_equal(out, cm_masked);
	free(out);
	out = mask_all_ways(&plain, cm_kind_first, NULL);
	assert_string_equal(out, cm_kind_first);
	free(out);
	out = mask_all_ways(&plain, broken, NULL);
	assert_absent(out, "c2VjcmV0");
	assert_present(out, MG_MASK_STRING_MARKER);
	free(out);
}

static void test_nested_secret_in_custom_resource(void **state)
{
	/* an embedded manifest (own apiVersion) in a CR, keys sorted: masked */
	const char *cr = "{\"apiVersion\":\"x.io/v1\",\"kind\":\"Bundle\",\"spec\":{\"items\":[{"
			 "\"apiVersion\":\"v1\",\"data\":{\"k\":\"ZW1iZWRkZWQ=\"},\"kind\":"
			 "\"Secret\"}],\"data\":{\"plain\":\"cr field\"}}}";
	/* a CR schema with a "data" property stays readable */
	const char *crd = "{\"kind\":\"CustomResourceDefinition\",\"spec\":{\"versions\":[{"
			  "\"schema\":{\"openAPIV3Schema\":{\"properties\":{\"data\":{\"type\":"
			  "\"object\"}}}}}]}}";
	char *out;

	(void)state;
	out = mask_all_ways(&plain, cr, NULL);
	assert_absent(out, "ZW1iZWRkZWQ");
	assert_present(out, "cr field");
	free(out);
	out = mask_all_ways(&plain, crd, NULL);
	assert_string_equal(out, crd);
	free(out);
}

static void test_kind_secret_after_unmasked_data_fails(void **state)
{
	static const char *const docs[] = {
		/* a second kind turning a ConfigMap into a Secret after its data */
		"{\"kind\":\"ConfigMap\",\"data\":{\"a\":\"c2VjcmV0\"},\"kind\":\"Secret\"}",
		/* a kind-less nested object in a known non-Secret, kind last */
		"{\"kind\":\"Foo\",\"spec\":{\"data\":{\"a\":\"c2VjcmV0\"},\"kind\":\"Secret\"}}",
		/* items read as ConfigMaps, then the list says SecretList */
		"{\"items\":[{\"data\":{\"a\":\"c2VjcmV0\"}}],\"kind\":\"SecretList\"}",
	};
	struct run hinted = {.resource = "configmaps"};

	(void)state;
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		struct sbuf b = {0};
		struct mg_mask_json_opts o = {.resource = mg_str_of("configmaps")};
		struct mg_mask_json *m = mg_mask_json_new(NULL, &o);
		struct mg_mask_sink s = {sbuf_write, &b};

		(void)hinted;
		assert_int_equal(mg_mask_json_feed(m, docs[i], strlen(docs[i]), &s), -EINVAL);
		assert_non_null(strstr(mg_mask_json_error(m)->reason, "Secret"));
		assert_int_equal(mg_mask_json_finish(m, &s), -EINVAL);
		mg_mask_json_free(m);
		sbuf_reset(&b);
	}
	/* Secret first, then another kind: stays a Secret */
	{
		char *out = mask_all_ways(&plain,
					  "{\"kind\":\"Secret\",\"kind\":\"ConfigMap\",\"data\":{"
					  "\"a\":\"c2VjcmV0\"}}",
					  NULL);

		assert_absent(out, "c2VjcmV0");
		free(out);
	}
}

static void test_pod_env_and_sensitive_keys(void **state)
{
	const char *pod =
		"{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"p\"},\"spec\":{"
		"\"containers\":[{\"name\":\"app\",\"image\":\"app:1\",\"args\":[\"--token="
		"argtok\","
		"\"--verbose\"],\"env\":[{\"name\":\"DB_PASSWORD\",\"value\":\"envpw\"},{\"name\":"
		"\"LOG_LEVEL\",\"value\":\"debug\"},{\"name\":\"AWS_ACCESS_KEY_ID\",\"value\":"
		"\"AKIAQWERTYUIOPASDFGH\"},{\"name\":\"API_TOKEN\",\"valueFrom\":{\"secretKeyRef\":"
		"{"
		"\"name\":\"s\",\"key\":\"token\"}}}],\"volumeMounts\":[{\"name\":\"secret-vol\","
		"\"mountPath\":\"/s\"}]}],\"volumes\":[{\"name\":\"secret-vol\",\"secret\":{"
		"\"secretName\":\"db\"}}]}}";
	const char *cm =
		"{\"kind\":\"ConfigMap\",\"data\":{\"password\":\"cmpw\",\"client_secret\":"
		"\"cs\",\"secretName\":\"keepme\",\"tokenTTL\":\"1h\"}}";
	char *out;
	json_t *j;

	(void)state;
	out = mask_all_ways(&plain, pod, NULL);
	j = parse(out);
	assert_absent(out, "envpw");
	assert_absent(out, "argtok");
	assert_absent(out, "QWERTYUIOPASDFGH");
	assert_string_equal(jstr(j, "spec.containers.0.env.1.value"), "debug");
	assert_string_equal(jstr(j, "spec.containers.0.env.3.valueFrom.secretKeyRef.key"), "token");
	assert_string_equal(jstr(j, "spec.volumes.0.secret.secretName"), "db");
	assert_string_equal(jstr(j, "spec.containers.0.image"), "app:1");
	json_decref(j);
	free(out);
	out = mask_all_ways(&plain, cm, NULL);
	j = parse(out);
	assert_string_equal(jstr(j, "data.password"), "***MASKED:generic-password***");
	assert_string_equal(jstr(j, "data.client_secret"), "***MASKED:generic-password***");
	assert_string_equal(jstr(j, "data.secretName"), "keepme");
	assert_string_equal(jstr(j, "data.tokenTTL"), "1h");
	json_decref(j);
	free(out);
}

static void test_secrets_switch_off(void **state)
{
	struct mg_mask_cfg cfg;
	struct run r = {.cfg = &cfg};
	char *out;

	(void)state;
	mg_mask_cfg_default(&cfg);
	cfg.secrets = false;
	out = mask_all_ways(&r, "{\"kind\":\"Secret\",\"data\":{\"a\":\"c2VjcmV0\"}}", NULL);
	assert_present(out, "c2VjcmV0");
	free(out);
}

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
				fail_msg("case %zu: no %s hit: %s", i, det_names[c->det], out);
		}
		free(out);
	}
}

/* The same cases as JSON string values of a ConfigMap (escaped), split anywhere. */
static void test_detectors_json(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(det_cases) / sizeof(det_cases[0]); i++) {
		const struct det_case *c = &det_cases[i];
		json_t *doc = json_pack("{s:s,s:{s:s}}", "kind", "ConfigMap", "data", "v", c->in);
		char *in = json_dumps(doc, JSON_COMPACT);
		char *out = mask_all_ways(&plain, in, NULL);
		json_t *j = parse(out);
		const char *v = jstr(j, "data.v");

		if (!c->secret) {
			if (strcmp(v, c->in))
				fail_msg("json case %zu masked: %s", i, v);
		} else {
			assert_absent(v, c->secret);
			assert_absent(out, c->secret);
		}
		json_decref(j);
		json_decref(doc);
		free(in);
		free(out);
	}
}

static void test_pem_with_escaped_newlines(void **state)
{
	/* what a ConfigMap holding a key looks like on the wire */
	const char *doc =
		"{\"kind\":\"ConfigMap\",\"data\":{\"tls.key\":\"-----BEGIN EC PRIVATE KEY-----\\n"
		"MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oEMBZXsJpP0ToAoGCCqGSM49\\n"
		"AwEHoUQDQgAE\\n-----END EC PRIVATE KEY-----\\n\",\"other\":\"ok\"}}";
	struct mg_mask_stats st;
	char *out = mask_all_ways(&plain, doc, &st);
	json_t *j = parse(out);

	(void)state;
	assert_absent(out, "MHcCAQEEIBkg4LVWM9nuwNSk");
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(j, "data"), "tls.key")),
		"-----BEGIN EC PRIVATE KEY-----***MASKED:private-key***"
		"-----END EC PRIVATE KEY-----\n");
	assert_string_equal(jstr(j, "data.other"), "ok");
	assert_int_equal(st.hits[MG_MASK_DET_PRIVATE_KEY], 1);
	json_decref(j);
	free(out);
}

static void test_detector_switches_and_custom(void **state)
{
	struct mg_mask_cfg cfg;
	struct mg_mask_err err;
	const char *conf = "{\"detectors\":{\"jwt\":false,\"generic-password\":false},"
			   "\"custom\":[{\"name\":\"acme-key\",\"prefix\":\"acme_\",\"charset\":"
			   "\"A-Za-z0-9\",\"min\":8,\"max\":12}]}";
	const char *in = "t eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2ln password=visible "
			 "acme_ABCDEFGHIJKLMNOP acme_short end";
	struct mg_mask_stats st;
	char *out;

	(void)state;
	assert_int_equal(mg_mask_cfg_parse(&cfg, conf, strlen(conf), &err), 0);
	assert_false(cfg.detectors[MG_MASK_DET_JWT]);
	assert_true(cfg.detectors[MG_MASK_DET_GITHUB_TOKEN]);
	assert_int_equal(cfg.n_custom, 1);
	out = text_all_ways(&cfg, in, &st);
	assert_present(out, "eyJzdWIiOiIxMjM0In0");
	assert_present(out, "password=visible");
	/* masked up to max (12) body bytes, the rest of the run stays */
	assert_present(out, "acme_***MASKED:acme-key***MNOP");
	assert_present(out, "acme_short");
	assert_int_equal(st.hits[MG_MASK_DET_BUILTIN], 1);
	assert_string_equal(mg_mask_det_name(&cfg, MG_MASK_DET_BUILTIN), "acme-key");
	free(out);
}

static void test_config_errors(void **state)
{
	static const char *const bad[] = {
		"[]",
		"{\"detector\":{}}",
		"{\"detectors\":{\"nope\":true}}",
		"{\"detectors\":{\"jwt\":1}}",
		"{\"secrets\":\"yes\"}",
		"{\"custom\":[{\"name\":\"Bad "
		"Name\",\"prefix\":\"x\",\"charset\":\"a\",\"min\":1}]}",
		"{\"custom\":[{\"name\":\"k\",\"prefix\":\"\",\"charset\":\"a\",\"min\":1}]}",
		"{\"custom\":[{\"name\":\"k\",\"prefix\":\"x\",\"charset\":\"z-a\",\"min\":1}]}",
		"{\"custom\":[{\"name\":\"k\",\"prefix\":\"x\",\"charset\":\"a\",\"min\":0}]}",
		"{\"custom\":[{\"name\":\"k\",\"prefix\":\"x\",\"charset\":\"a\",\"min\":5,\"max\":"
		"2}]}",
		"{\"custom\":[{\"name\":\"jwt\",\"prefix\":\"x\",\"charset\":\"a\",\"min\":1}]}",
		"{\"custom\":[{\"name\":\"k\",\"prefix\":\"x\",\"charset\":\"a\",\"min\":1,\"x\":1}"
		"]}",
	};
	struct mg_mask_cfg cfg;
	struct mg_mask_err err;
	char path[] = "/tmp/mask_cfg_XXXXXX";
	int fd;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err.reason = NULL;
		if (mg_mask_cfg_parse(&cfg, bad[i], strlen(bad[i]), &err) != -EINVAL)
			fail_msg("config accepted: %s", bad[i]);
		assert_non_null(err.reason);
	}
	/* load from a file */
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"secrets\":false}", 17), 17);
	close(fd);
	assert_int_equal(mg_mask_cfg_load(&cfg, path, &err), 0);
	assert_false(cfg.secrets);
	unlink(path);
	assert_true(mg_mask_cfg_load(&cfg, path, &err) < 0);
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

/* ---- JSON validity ---- */

static void test_malformed_json(void **state)
{
	static const char *const bad[] = {
		"{\"a\":}",
		"{\"a\" \"b\"}",
		"[1,]",
		"{\"a\":1,}",
		"{,}",
		"{\"a\":\"x\x01y\"}",
		"{\"a\":\"\\x\"}",
		"{\"a\":\"\\u12G4\"}",
		"{\"a\":\"\\ud800\"}",
		"{\"a\":\"\\ud800\\u0041\"}",
		"{\"a\":\"\\udc00\"}",
		"{\"a\":\"\xc3\x28\"}",
		"{\"a\":\"\xed\xa0\x80\"}",
		"{\"a\":\"\xc0\xaf\"}",
		"{\"a\":01}",
		"{\"a\":-}",
		"{\"a\":1.}",
		"{\"a\":1e}",
		"{\"a\":tru}",
		"{\"a\":nulL}",
		"{} {}",
		"{}x",
		"{\"a\":[1 2]}",
		"[}",
		"{\"a\":1",
		"\"open",
		"",
		"  ",
		"{'a':1}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc;
		char *out = mask_once(&plain, bad[i], &rc, NULL);

		if (rc != -EINVAL)
			fail_msg("accepted malformed JSON #%zu: %s", i, bad[i]);
		free(out);
	}
}

static void test_depth_limit(void **state)
{
	size_t n = MAX_DEPTH + 1;
	char *doc = malloc(2 * n + 1);
	int rc;
	char *out;

	(void)state;
	memset(doc, '[', n);
	memset(doc + n, ']', n);
	doc[2 * n] = 0;
	out = mask_once(&plain, doc, &rc, NULL);
	assert_int_equal(rc, -EINVAL);
	free(out);
	doc[MAX_DEPTH - 1] = 0; /* MAX_DEPTH - 1 levels: fine once closed */
	memset(doc + MAX_DEPTH - 1, ']', MAX_DEPTH - 1);
	doc[2 * (MAX_DEPTH - 1)] = 0;
	out = mask_once(&plain, doc, &rc, NULL);
	assert_int_equal(rc, 0);
	free(out);
	free(doc);
}

static void test_valid_json_roundtrip(void **state)
{
	static const char *const docs[] = {
		"0",
		"-0.5e+10",
		"\"just a string\"",
		"[true,false,null,1,2.5,-3E-2,\"\"]",
		" { \"a\" : [ 1 , { } , [ ] ] } \n",
		"{\"esc\":\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u0001 \\u00e9 \\ud83d\\ude00 "
		"\\u2028\"}",
		"{\"utf8\":\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8\"}",
		"{\"k\xc3\xa9y\\n\":\"v\"}",
		/* found by the fuzzer: an escape first, then a plain run, in one chunk */
		"[\"\\\\ \xe2\x82\xa8\",\"\\n tail\",\"\\u00e9t\\u00e9\"]",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		char *out = mask_all_ways(&plain, docs[i], NULL);
		json_error_t e;
		json_t *a = json_loads(docs[i], JSON_DECODE_ANY, &e);
		json_t *b = json_loads(out, JSON_DECODE_ANY, &e);

		assert_non_null(a);
		assert_non_null(b);
		if (!json_equal(a, b))
			fail_msg("changed: %s -> %s", docs[i], out);
		json_decref(a);
		json_decref(b);
		free(out);
	}
}

static void test_planted_secret_values(void **state)
{
	/* random data values (any bytes, as JSON escapes them) never survive */
	unsigned seed = 12345;

	(void)state;
	for (int round = 0; round < 200; round++) {
		json_t *data = json_object(), *doc;
		char vals[4][40];
		char *in, *out;
		int rc;

		for (int k = 0; k < 4; k++) {
			char key[16];

			for (int c = 0; c < 39; c++) {
				seed = seed * 1103515245 + 12345;
				vals[k][c] = (char)(0x21 + (seed >> 16) % 94);
			}
			vals[k][39] = 0;
			snprintf(key, sizeof(key), "k%d", k);
			json_object_set_new(data, key, json_string(vals[k]));
		}
		doc = json_pack("{s:s,s:s,s:{s:s},s:o}", "apiVersion", "v1", "kind", "Secret",
				"metadata", "name", "r", round % 2 ? "stringData" : "data", data);
		in = json_dumps(doc, JSON_COMPACT | (round % 3 ? JSON_SORT_KEYS : 0));
		out = mask_once(&plain, in, &rc, NULL);
		assert_int_equal(rc, 0);
		{
			json_t *j = parse(out);
			json_t *d = json_object_get(j, round % 2 ? "stringData" : "data");
			const char *key;
			json_t *v;

			assert_int_equal(json_object_size(d), 4);
			json_object_foreach(d, key, v) assert_string_equal(
				json_string_value(v),
				round % 2 ? MG_MASK_STRING_MARKER : MG_MASK_DATA_MARKER);
			json_decref(j);
		}
		for (int k = 0; k < 4; k++) {
			json_t *v = json_string(vals[k]);
			char *enc = json_dumps(v, JSON_ENCODE_ANY);

			/* the value as encoded, minus its quotes */
			enc[strlen(enc) - 1] = 0;
			assert_absent(out, enc + 1);
			free(enc);
			json_decref(v);
		}
		free(in);
		free(out);
		json_decref(doc);
	}
}

static void test_sink_error_propagates(void **state)
{
	struct sbuf b = {.fail_after = 1};
	struct mg_mask_sink s = {sbuf_write, &b};
	struct mg_mask_json *m = mg_mask_json_new(NULL, NULL);
	size_t n = 200000;
	char *doc = malloc(n + 16);

	(void)state;
	memcpy(doc, "[\"", 2);
	memset(doc + 2, 'x', n);
	memcpy(doc + 2 + n, "\",\"y\"]", 7);
	assert_int_equal(mg_mask_json_feed(m, doc, 2 + n / 2, &s), -EPIPE);
	assert_int_equal(mg_mask_json_feed(m, doc + 2 + n / 2, n / 2 + 6, &s), -EPIPE);
	mg_mask_json_free(m);
	sbuf_reset(&b);
	free(doc);
}

/* ---- gzip bodies ---- */

static size_t gz(const char *in, size_t n, unsigned char *out, size_t cap)
{
	z_stream z = {0};

	assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	n = z.total_out;
	deflateEnd(&z);
	return n;
}

static char *gunzip(const unsigned char *in, size_t n, size_t *outlen)
{
	z_stream z = {0};
	size_t cap = 1 << 20;
	char *out = malloc(cap);

	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = (Bytef *)out;
	z.avail_out = (uInt)cap - 1;
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	*outlen = z.total_out;
	out[*outlen] = 0;
	inflateEnd(&z);
	return out;
}

static void test_gzip_roundtrip(void **state)
{
	unsigned char z[8192];
	size_t zn = gz(secret_doc, strlen(secret_doc), z, sizeof(z)), plainlen;
	struct mg_mask_body_opts o = {.kind = MG_MASK_KIND_JSON, .gzip = true};

	(void)state;
	/* every chunk size from 1 byte to the whole body */
	for (size_t step = 1; step <= zn; step = step < 16 ? step + 1 : step * 2) {
		struct sbuf b = {0};
		struct mg_mask_sink s = {sbuf_write, &b};
		struct mg_mask_body *body = mg_mask_body_new(NULL, &o);
		char *plainout;

		for (size_t off = 0; off < zn; off += step)
			assert_int_equal(mg_mask_body_feed(body, (const char *)z + off,
							   off + step > zn ? zn - off : step, &s),
					 0);
		assert_int_equal(mg_mask_body_finish(body, &s), 0);
		plainout = gunzip((const unsigned char *)b.p, b.len, &plainlen);
		assert_absent(plainout, "aHVudGVyMg");
		assert_present(plainout, "\"password\":\"" MG_MASK_DATA_MARKER "\"");
		assert_true(valid_json(plainout, plainlen, false));
		assert_int_equal(mg_mask_body_stats(body)->secret_fields, 3);
		assert_int_equal(mg_mask_body_stats(body)->bytes_in, zn);
		free(plainout);
		mg_mask_body_free(body);
		sbuf_reset(&b);
	}
}

static void test_gzip_bad(void **state)
{
	unsigned char z[8192];
	size_t zn = gz(secret_doc, strlen(secret_doc), z, sizeof(z));
	struct mg_mask_body_opts o = {.kind = MG_MASK_KIND_JSON, .gzip = true};
	struct sbuf b = {0};
	struct mg_mask_sink s = {sbuf_write, &b};
	struct mg_mask_body *body;

	(void)state;
	/* truncated */
	body = mg_mask_body_new(NULL, &o);
	assert_int_equal(mg_mask_body_feed(body, (const char *)z, zn - 4, &s), 0);
	assert_int_equal(mg_mask_body_finish(body, &s), -EINVAL);
	assert_non_null(mg_mask_body_error(body)->reason);
	mg_mask_body_free(body);
	sbuf_reset(&b);
	/* not gzip */
	body = mg_mask_body_new(NULL, &o);
	assert_int_equal(mg_mask_body_feed(body, secret_doc, 30, &s), -EINVAL);
	mg_mask_body_free(body);
	sbuf_reset(&b);
	/* gzip of malformed JSON */
	zn = gz("{\"kind\":\"Secret\",", 17, z, sizeof(z));
	body = mg_mask_body_new(NULL, &o);
	assert_int_equal(mg_mask_body_feed(body, (const char *)z, zn, &s), 0);
	assert_int_equal(mg_mask_body_finish(body, &s), -EINVAL);
	mg_mask_body_free(body);
	sbuf_reset(&b);
}

static void test_body_text_and_watch(void **state)
{
	struct mg_mask_body_opts ot = {.kind = MG_MASK_KIND_TEXT};
	struct mg_mask_body_opts ow = {.kind = MG_MASK_KIND_JSON_STREAM,
				       .resource = MG_STR("secrets")};
	struct sbuf b = {0};
	struct mg_mask_sink s = {sbuf_write, &b};
	struct mg_mask_body *body = mg_mask_body_new(NULL, &ot);
	const char *w = "{\"type\":\"ADDED\",\"object\":{\"data\":{\"a\":\"c2VjcmV0\"}}}\n";

	(void)state;
	assert_int_equal(mg_mask_body_feed(body, "password=x\n", 11, &s), 0);
	assert_int_equal(mg_mask_body_finish(body, &s), 0);
	assert_string_equal(b.p, "password=***MASKED:generic-password***\n");
	mg_mask_body_free(body);
	sbuf_reset(&b);
	body = mg_mask_body_new(NULL, &ow);
	assert_int_equal(mg_mask_body_feed(body, w, strlen(w), &s), 0);
	assert_int_equal(mg_mask_body_feed(body, w, strlen(w), &s), 0);
	assert_int_equal(mg_mask_body_finish(body, &s), 0);
	assert_absent(b.p, "c2VjcmV0");
	assert_int_equal(mg_mask_body_stats(body)->secret_fields, 2);
	mg_mask_body_free(body);
	sbuf_reset(&b);
}

/* ---- helpers for the proxy ---- */

static void test_content_type_and_protobuf(void **state)
{
	(void)state;
	assert_int_equal(mg_mask_content_type(MG_STR("application/json")), MG_MASK_CT_JSON);
	assert_int_equal(mg_mask_content_type(MG_STR("Application/JSON; charset=utf-8")),
			 MG_MASK_CT_JSON);
	assert_int_equal(
		mg_mask_content_type(MG_STR("application/json;as=Table;v=v1;g=meta.k8s.io")),
		MG_MASK_CT_JSON);
	assert_int_equal(mg_mask_content_type(MG_STR("application/jwk-set+json")), MG_MASK_CT_JSON);
	assert_int_equal(mg_mask_content_type(MG_STR("text/plain")), MG_MASK_CT_TEXT);
	assert_int_equal(mg_mask_content_type(MG_STR("application/vnd.kubernetes.protobuf;"
						     "stream=watch")),
			 MG_MASK_CT_PROTOBUF);
	assert_int_equal(mg_mask_content_type(MG_STR("application/yaml")), MG_MASK_CT_REFUSE);
	assert_int_equal(mg_mask_content_type(MG_STR("application/cbor")), MG_MASK_CT_REFUSE);
	assert_int_equal(mg_mask_content_type(MG_STR("")), MG_MASK_CT_REFUSE);
	assert_true(mg_mask_is_protobuf("k8s\0\x0a\x02v1", 8));
	assert_false(mg_mask_is_protobuf("k8s", 3));
	assert_false(mg_mask_is_protobuf("{\"kind\"", 7));
}

/* ---- CLI ---- */

/* Runs mg_mask_cli in a child with <in> on stdin; output and status back. */
static int run_cli(const char *const *args, const char *in, size_t inlen, struct sbuf *out,
		   struct sbuf *errout)
{
	int pin[2], pout[2], perr[2], status;
	pid_t pid;
	char buf[4096];
	ssize_t n;

	assert_int_equal(pipe(pin), 0);
	assert_int_equal(pipe(pout), 0);
	assert_int_equal(pipe(perr), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		int argc = 0;
		char *argv[16];

		dup2(pin[0], 0);
		dup2(pout[1], 1);
		dup2(perr[1], 2);
		close(pin[1]);
		close(pout[0]);
		close(perr[0]);
		while (args[argc]) {
			argv[argc] = (char *)args[argc];
			argc++;
		}
		argv[argc] = NULL;
		_exit(mg_mask_cli(argc, argv));
	}
	close(pin[0]);
	close(pout[1]);
	close(perr[1]);
	assert_int_equal(write(pin[1], in, inlen), (ssize_t)inlen);
	close(pin[1]);
	while ((n = read(pout[0], buf, sizeof(buf))) > 0)
		sbuf_write(out, buf, (size_t)n);
	while ((n = read(perr[0], buf, sizeof(buf))) > 0)
		sbuf_write(errout, buf, (size_t)n);
	close(pout[0]);
	close(perr[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!out->p)
		sbuf_write(out, "", 0);
	if (!errout->p)
		sbuf_write(errout, "", 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_cli(void **state)
{
	static const char *const get_secret[] = {
		"mask", "--path", "/api/v1/namespaces/a/secrets/db", "--stats", NULL};
	static const char *const watch[] = {"mask", "--path",
					    "/api/v1/namespaces/a/secrets?watch=true", NULL};
	static const char *const logs[] = {"mask", "--path", "/api/v1/namespaces/a/pods/p/log",
					   NULL};
	static const char *const proto[] = {"mask", "--content-type",
					    "application/vnd.kubernetes.protobuf", NULL};
	static const char *const bad[] = {"mask", "--bogus", NULL};
	static const char *const json[] = {"mask", NULL};
	const char *ev = "{\"type\":\"ADDED\",\"object\":{\"data\":{\"a\":\"c2VjcmV0\"}}}\n"
			 "{\"type\":\"ADDED\",\"object\":{\"data\":{\"a\":\"c2VjcmV0\"}}}\n";
	struct sbuf o = {0}, e = {0};

	(void)state;
	assert_int_equal(run_cli(get_secret, secret_doc, strlen(secret_doc), &o, &e), 0);
	assert_absent(o.p, "aHVudGVyMg");
	assert_present(e.p, "\"secretFields\":3");
	sbuf_reset(&o);
	sbuf_reset(&e);
	assert_int_equal(run_cli(watch, ev, strlen(ev), &o, &e), 0);
	assert_absent(o.p, "c2VjcmV0");
	sbuf_reset(&o);
	sbuf_reset(&e);
	assert_int_equal(run_cli(logs, "a password=x\n", 13, &o, &e), 0);
	assert_string_equal(o.p, "a password=***MASKED:generic-password***\n");
	sbuf_reset(&o);
	sbuf_reset(&e);
	assert_int_equal(run_cli(proto, "k8s\0xx", 6, &o, &e), 1);
	assert_present(e.p, "protobuf");
	sbuf_reset(&o);
	sbuf_reset(&e);
	assert_int_equal(run_cli(json, "k8s\0xx", 6, &o, &e), 1);
	sbuf_reset(&o);
	sbuf_reset(&e);
	assert_int_equal(run_cli(json, "{\"kind\":\"Secret\",\"data\":{\"a\":",
				 strlen("{\"kind\":\"Secret\",\"data\":{\"a\":"), &o, &e),
			 1);
	assert_present(e.p, "cannot be masked safely");
	sbuf_reset(&o);
	sbuf_reset(&e);
	assert_int_equal(run_cli(bad, "", 0, &o, &e), 2);
	sbuf_reset(&o);
	sbuf_reset(&e);
}

static void test_cli_path(void **state)
{
	char res[64], sub[64];
	bool w = false;

	(void)state;
	cli_path("/api/v1/namespaces/ns/pods/p/log?follow=true", res, 64, sub, 64, &w);
	assert_string_equal(res, "pods");
	assert_string_equal(sub, "log");
	assert_false(w);
	cli_path("https://k:6443/apis/apps/v1/watch/namespaces/x/deployments", res, 64, sub, 64,
		 &w);
	assert_string_equal(res, "deployments");
	assert_true(w);
	w = false;
	cli_path("/api/v1/secrets?limit=5&watch=1", res, 64, sub, 64, &w);
	assert_string_equal(res, "secrets");
	assert_true(w);
	w = false;
	cli_path("/api/v1/namespaces/kube-system", res, 64, sub, 64, &w);
	assert_string_equal(res, "namespaces");
	cli_path("/healthz", res, 64, sub, 64, &w);
	assert_string_equal(res, "");
	assert_false(w);
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

/* ---- every response shape x key order x data/stringData ---- */

#define LA_DATA	    "bGFzdC1hcHBsaWVkLWRhdGE=" /* base64("last-applied-data") */
#define LA_PLAIN    "la-plain-s3cret-value"
#define OUTER_DATA  "b3V0ZXItc2VjcmV0LWRhdGE=" /* base64("outer-secret-data") */
#define OUTER_PLAIN "outer-plain-s3cret"

/* Response shape <shape> around object <obj> (stolen): a single object, a
 * typed or generic list, a Table row (includeObject=Object/Metadata), a
 * watch event. <obj> is what the server puts there (a Secret, or the
 * PartialObjectMetadata the Metadata forms carry). Returns NULL past the
 * last shape; sets <*stream> for watch events. */
static json_t *shape_around(int shape, json_t *obj, bool *stream)
{
	json_t *cols = json_pack("[{s:s,s:s},{s:s,s:s}]", "name", "Name", "type", "string", "name",
				 "Type", "type", "string");

	*stream = false;
	switch (shape) {
	case 0: /* the object itself */
		json_decref(cols);
		return obj;
	case 1: /* a typed list: items carry no kind */
		json_object_del(obj, "kind");
		json_object_del(obj, "apiVersion");
		json_decref(cols);
		return json_pack("{s:s,s:s,s:{},s:[o]}", "kind", "SecretList", "apiVersion", "v1",
				 "metadata", "items", obj);
	case 2: /* a generic List */
		json_decref(cols);
		return json_pack("{s:s,s:s,s:{},s:[o]}", "kind", "List", "apiVersion", "v1",
				 "metadata", "items", obj);
	case 3: /* a generic List whose item lost its kind */
		json_object_del(obj, "kind");
		json_decref(cols);
		return json_pack("{s:s,s:s,s:[o]}", "kind", "List", "apiVersion", "v1", "items",
				 obj);
	case 4: /* Table rows, as kubectl get asks for them */
		return json_pack("{s:s,s:s,s:{},s:o,s:[{s:[s,s],s:o}]}", "kind", "Table",
				 "apiVersion", "meta.k8s.io/v1", "metadata", "columnDefinitions",
				 cols, "rows", "cells", "s1", "Opaque", "object", obj);
	case 5: /* a watch event */
		*stream = true;
		json_decref(cols);
		return json_pack("{s:s,s:o}", "type", "ADDED", "object", obj);
	case 6: /* a Table watch event (kubectl get -w) */
		*stream = true;
		return json_pack("{s:s,s:{s:s,s:s,s:{},s:o,s:[{s:[s,s],s:o}]}}", "type", "ADDED",
				 "object", "kind", "Table", "apiVersion", "meta.k8s.io/v1",
				 "metadata", "columnDefinitions", cols, "rows", "cells", "s1",
				 "Opaque", "object", obj);
	default:
		json_decref(cols);
		json_decref(obj);
		return NULL;
	}
}

/* Masks <doc> every way for each resource hint in <hints> and checks that
 * none of <gone> survives. */
static void assert_masked_all_hints(json_t *doc, bool stream, size_t flags,
				    const char *const *hints, const char *const *gone)
{
	char *text = json_dumps(doc, JSON_COMPACT | flags);
	size_t n = strlen(text);

	if (stream) { /* two events, each on its line */
		text = realloc(text, 2 * n + 3);
		text[n] = '\n';
		memcpy(text + n + 1, text, n);
		text[2 * n + 1] = '\n';
		text[2 * n + 2] = 0;
	}
	for (const char *const *h = hints; *h; h++) {
		struct run r = {.resource = *h, .stream = stream};
		char *out = mask_all_ways(&r, text, NULL);

		for (const char *const *g = gone; *g; g++)
			if (strstr(out, *g))
				fail_msg("%s survived (hint '%s'):\nin:  %s\nout: %s", *g, *h, text,
					 out);
		free(out);
	}
	free(text);
}

/* A last-applied document on any object (a PartialObjectMetadata in a Table
 * row or a metadata list or watch, a Secret, a ConfigMap, a Pod), in
 * kubectl's sorted key order (data before kind) or kind first, holding data
 * or stringData: its values never get out. Before, the enclosing object's
 * kind set the nested document's position, so under a PartialObjectMetadata
 * its data went out and the late "kind":"Secret" only appended a marker. */
static void test_last_applied_masked_whatever_encloses_it(void **state)
{
	static const char *const hints_sec[] = {"secrets", "", NULL};
	static const char *const gone[] = {LA_DATA, LA_PLAIN, "bGFzdC1hcHBsaWVk", NULL};
	static const char *const enclosing[] = {"PartialObjectMetadata", "Secret", "ConfigMap",
						"Pod"};
	static const char *const enc_hint[][3] = {{"secrets", "", NULL},
						  {"secrets", "", NULL},
						  {"configmaps", "", NULL},
						  {"pods", "", NULL}};

	(void)state;
	for (int field = 0; field < 2; field++) {
		for (int la_sorted = 0; la_sorted < 2; la_sorted++) {
			json_t *la =
				json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s},s:s}", "apiVersion", "v1",
					  "kind", "Secret", "metadata", "name", "s1", "namespace",
					  "default", field ? "stringData" : "data", "conf",
					  field ? LA_PLAIN : LA_DATA, "type", "Opaque");
			char *las =
				json_dumps(la, JSON_COMPACT | (la_sorted ? JSON_SORT_KEYS
									 : JSON_PRESERVE_ORDER));

			for (size_t e = 0; e < sizeof(enclosing) / sizeof(enclosing[0]); e++) {
				for (int shape = 0;; shape++) {
					json_t *obj = json_pack(
						"{s:s,s:s,s:{s:s,s:{s:s}}}", "kind", enclosing[e],
						"apiVersion", e ? "v1" : "meta.k8s.io/v1",
						"metadata", "name", "s1", "annotations",
						"kubectl.kubernetes.io/last-applied-configuration",
						las);
					bool stream;
					json_t *doc = shape_around(shape, obj, &stream);

					if (!doc)
						break;
					for (int sorted = 0; sorted < 2; sorted++)
						assert_masked_all_hints(
							doc, stream,
							sorted ? JSON_SORT_KEYS
							       : JSON_PRESERVE_ORDER,
							e < 2 && shape < 3 ? hints_sec
									   : enc_hint[e],
							gone);
					json_decref(doc);
				}
			}
			free(las);
			json_decref(la);
		}
	}
}

/* A Secret's own data and stringData in every response shape, with kind
 * first (typed) or after data (sorted keys, as unstructured objects come),
 * items without kind, watch events, Table rows with includeObject=Object,
 * with a secrets hint or none: never out. Table rows with
 * includeObject=None carry cells only and pass byte for byte. */
static void test_secret_data_masked_in_every_shape_and_order(void **state)
{
	static const char *const hints[] = {"secrets", "", NULL};
	static const char *const gone[] = {OUTER_DATA, OUTER_PLAIN, "b3V0ZXItc2Vj", NULL};
	const char *none = "{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":{},"
			   "\"columnDefinitions\":[{\"name\":\"Name\",\"type\":\"string\"}],"
			   "\"rows\":[{\"cells\":[\"s1\",\"Opaque\",1,\"5d\"]}]}";
	struct run r = {.resource = "secrets"};
	char *out;

	(void)state;
	for (int field = 0; field < 2; field++) {
		for (int shape = 0;; shape++) {
			json_t *obj = json_pack("{s:s,s:s,s:{s:s},s:{s:s},s:s}", "kind", "Secret",
						"apiVersion", "v1", "metadata", "name", "s1",
						field ? "stringData" : "data", "k",
						field ? OUTER_PLAIN : OUTER_DATA, "type", "Opaque");
			bool stream;
			json_t *doc = shape_around(shape, obj, &stream);

			if (!doc)
				break;
			for (int sorted = 0; sorted < 2; sorted++)
				assert_masked_all_hints(
					doc, stream, sorted ? JSON_SORT_KEYS : JSON_PRESERVE_ORDER,
					hints, gone);
			json_decref(doc);
		}
	}
	out = mask_all_ways(&r, none, NULL);
	assert_string_equal(out, none);
	free(out);
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
		cmocka_unit_test(test_secret_object),
		cmocka_unit_test(test_secret_kind_after_data),
		cmocka_unit_test(test_secret_data_odd_values),
		cmocka_unit_test(test_secret_list),
		cmocka_unit_test(test_configmap_intact),
		cmocka_unit_test(test_unknown_kind_is_masked),
		cmocka_unit_test(test_generic_list_mixed),
		cmocka_unit_test(test_watch_stream),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_last_applied),
		cmocka_unit_test(test_last_applied_configmap_and_broken),
		cmocka_unit_test(test_nested_secret_in_custom_resource),
		cmocka_unit_test(test_kind_secret_after_unmasked_data_fails),
		cmocka_unit_test(test_pod_env_and_sensitive_keys),
		cmocka_unit_test(test_secrets_switch_off),
		cmocka_unit_test(test_detectors_text),
		cmocka_unit_test(test_detectors_json),
		cmocka_unit_test(test_pem_with_escaped_newlines),
		cmocka_unit_test(test_detector_switches_and_custom),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_text_split_everywhere),
		cmocka_unit_test(test_text_live),
		cmocka_unit_test(test_text_long_lines),
		cmocka_unit_test(test_long_jwt_candidate_bounded),
		cmocka_unit_test(test_exec_channels),
		cmocka_unit_test(test_malformed_json),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_valid_json_roundtrip),
		cmocka_unit_test(test_planted_secret_values),
		cmocka_unit_test(test_sink_error_propagates),
		cmocka_unit_test(test_gzip_roundtrip),
		cmocka_unit_test(test_gzip_bad),
		cmocka_unit_test(test_body_text_and_watch),
		cmocka_unit_test(test_content_type_and_protobuf),
		cmocka_unit_test(test_cli),
		cmocka_unit_test(test_cli_path),
		cmocka_unit_test(test_akid_glued_run),
		cmocka_unit_test(test_last_applied_masked_whatever_encloses_it),
		cmocka_unit_test(test_secret_data_masked_in_every_shape_and_order),
		cmocka_unit_test(test_cut_candidate_masked_at_stream_end),
		cmocka_unit_test(test_cut_candidate_masked_at_flush),
		cmocka_unit_test(test_bare_prefix_at_end_and_flush),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
