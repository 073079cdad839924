/*
 * json: Secrets in every response form (object, SecretList, List, watch,
 * Table, nested, last-applied), ConfigMaps and Pods left intact, detectors
 * in JSON strings, malformed JSON, depth, round trips. Most checks run the
 * input at every split point and byte by byte, and require the same output
 * as in one piece, and valid JSON out (jansson) for valid JSON in.
 */
#include "../../userspace/mask/json.c"
#include "mask_helpers.h"

/* ---- Secrets in every form ---- */

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
		cmocka_unit_test(test_detectors_json),
		cmocka_unit_test(test_pem_with_escaped_newlines),
		cmocka_unit_test(test_malformed_json),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_valid_json_roundtrip),
		cmocka_unit_test(test_planted_secret_values),
		cmocka_unit_test(test_sink_error_propagates),
		cmocka_unit_test(test_last_applied_masked_whatever_encloses_it),
		cmocka_unit_test(test_secret_data_masked_in_every_shape_and_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
