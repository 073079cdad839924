/*
 * serviceaccount: TokenRequest through the fake API server, and tokens the
 * fake's checker rejects.
 * Fixtures (awscli tokens, injected clock and environment, the fakes) are in
 * creds_fakes.h.
 */
#include "../../userspace/creds/serviceaccount.c"
#include "creds_fakes.h"

/* ---- serviceaccount (TokenRequest) ---- */

static void test_serviceaccount(void **state)
{
	static const char *const aud[] = {"https://kubernetes.default.svc", "mcpgate"};
	char *tf = write_file("api-token", API_TOKEN "\n");
	struct mg_creds_config cfg = {
		.kind = MG_CREDS_SERVICEACCOUNT,
		.api_server = tls_fake.base,
		.api_ca_file = cert,
		.token_file = tf,
		.audiences = aud,
		.n_audiences = 2,
		.now = clock_fn,
	};
	const struct mg_creds_subject who = {
		.ns = "ai", .pod = "agent-0", .uid = POD_UID, .service_account = "agent"};
	struct mg_creds_subject deny = who;
	struct mg_creds_result r;
	struct mg_creds *c;
	json_t *reqs, *q;
	time_t t0;
	char *first;

	(void)state;
	if (!have_tls) {
		unlink(tf);
		free(tf);
		skip();
	}
	fake_now = t0 = time(NULL);
	fake_reset(&tls_fake);
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, &who, &r), 0);
	assert_true(!strncmp(bearer(&r), "sa-token.ai.agent.", 18));
	assert_int_equal(r.expiry, t0 + 3600);
	first = strdup(bearer(&r));
	mg_creds_result_free(&r);
	reqs = fake_requests(&tls_fake);
	q = last_action(reqs, "TokenRequest");
	assert_string_equal(jstr(q, "path", NULL),
			    "/api/v1/namespaces/ai/serviceaccounts/agent/token");
	assert_string_equal(jstr(q, "authorization", NULL), "match");
	assert_string_equal(jstr(q, "body", "apiVersion"), "authentication.k8s.io/v1");
	assert_string_equal(jstr(q, "body", "kind"), "TokenRequest");
	q = json_object_get(json_object_get(q, "body"), "spec");
	assert_int_equal(json_integer_value(json_object_get(q, "expirationSeconds")), 3600);
	assert_string_equal(json_string_value(json_array_get(json_object_get(q, "audiences"), 1)),
			    "mcpgate");
	json_decref(reqs);

	/* Refreshed at 80% of its lifetime (2880 s), not before. */
	fake_now = t0 + 2879;
	assert_int_equal(mg_creds_get(c, &who, &r), 0);
	assert_string_equal(bearer(&r), first);
	mg_creds_result_free(&r);
	fake_now = t0 + 2880;
	fake_sync(&tls_fake);
	assert_int_equal(mg_creds_get(c, &who, &r), 0);
	assert_string_not_equal(bearer(&r), first);
	assert_int_equal(r.expiry, t0 + 2880 + 3600);
	mg_creds_result_free(&r);
	reqs = fake_requests(&tls_fake);
	assert_int_equal(count_action(reqs, "TokenRequest"), 2);
	json_decref(reqs);

	/* Forbidden: 502 naming the API server's reason. */
	deny.service_account = "deny-me";
	assert_int_equal(mg_creds_get(c, &deny, &r), -EACCES);
	assert_int_equal(r.http_status, 502);
	assert_string_equal(r.reason, "TokenRequestFailed");
	assert_non_null(strstr(r.message, "Forbidden"));
	assert_null(r.authorization);
	mg_creds_result_free(&r);
	/* A path-injection attempt never leaves the process. */
	deny.service_account = "../../secrets";
	assert_int_equal(mg_creds_get(c, &deny, &r), -EINVAL);
	mg_creds_result_free(&r);
	mg_creds_free(c);

	/* A wrong daemon token. */
	free(write_file("api-token", "wrong"));
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, &who, &r), -EACCES);
	assert_non_null(strstr(r.message, "HTTP 401"));
	assert_null(strstr(r.message, "wrong"));
	mg_creds_result_free(&r);
	mg_creds_free(c);
	free(first);
	unlink(tf);
	free(tf);
}

/* Each rule aws-iam-authenticator applies, one broken at a time. */
static void test_token_check_rejects(void **state)
{
	static const struct {
		const char *from, *to, *error;
	} cases[] = {
		{"https://", "http://", "unexpected scheme"},
		{"/?Action", "/x?Action", "unexpected path"},
		{"Action=GetCallerIdentity", "Action=GetSessionToken", "unexpected action"},
		{"&Version=", "&Foo=1&Version=", "non-whitelisted query parameter"},
		{"&Version=", "&Action=GetCallerIdentity&Version=", "multiple values"},
		{"X-Amz-Expires=60", "X-Amz-Expires=901", "invalid X-Amz-Expires"},
		{"X-Amz-Expires=60", "X-Amz-Expires=-1", "invalid X-Amz-Expires"},
		{"host%3Bx-k8s-aws-id", "host", "did not sign the x-k8s-aws-id"},
		{"X-Amz-Date=", "X-Amz-Datum=", "non-whitelisted query parameter"},
		{"X-Amz-Credential=AKIDEXAMPLE", "X-Amz-Credential=AKIDUNKNOWN",
		 "security token included in the request is invalid"},
	};
	struct envtab env = {.n = 0};
	struct mg_creds_config cfg;
	struct mg_creds_result r;
	struct mg_creds *c;
	char *url, *bad, *tok;
	time_t t0;
	json_t *j;

	(void)state;
	if (!have_tls)
		skip();
	cfg = eks_config(&env, "prod", "eu-west-1", tls_fake.base);
	env_set(&env, "AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
	env_set(&env, "AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
	fake_now = t0 = time(NULL);
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, NULL, &r), 0);
	url = token_url(bearer(&r));

	j = python_check(bearer(&r), "prod", tls_fake.host);
	assert_string_equal(jstr(j, "arn", NULL), "arn:aws:iam::123456789012:user/mcpgate-test");
	json_decref(j);
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		bad = replace(url, cases[i].from, cases[i].to);
		tok = make_token(bad);
		j = python_check(tok, "prod", tls_fake.host);
		if (!jstr(j, "error", NULL) || !strstr(jstr(j, "error", NULL), cases[i].error))
			fail_msg("case %zu: %s", i, json_dumps(j, 0));
		json_decref(j);
		free(tok);
		free(bad);
	}
	/* Not an allowed host; padded base64; no prefix; too old; too new. */
	j = python_check(bearer(&r), "prod", "sts.example.com");
	assert_non_null(strstr(jstr(j, "error", NULL), "unexpected hostname"));
	json_decref(j);
	assert_true(asprintf(&tok, "%s=", bearer(&r)) > 0);
	j = python_check(tok, "prod", tls_fake.host);
	assert_non_null(strstr(jstr(j, "error", NULL), "base64url"));
	json_decref(j);
	free(tok);
	j = python_check(bearer(&r) + 3, "prod", tls_fake.host);
	assert_non_null(strstr(jstr(j, "error", NULL), "prefix"));
	json_decref(j);
	fake_now = t0 + 901;
	j = python_check(bearer(&r), "prod", tls_fake.host);
	assert_non_null(strstr(jstr(j, "error", NULL), "expired"));
	json_decref(j);
	fake_now = t0 + 900;
	j = python_check(bearer(&r), "prod", tls_fake.host);
	assert_non_null(jstr(j, "arn", NULL));
	json_decref(j);
	fake_now = t0 - 901;
	j = python_check(bearer(&r), "prod", tls_fake.host);
	assert_string_equal(jstr(j, "code", NULL), "SignatureDoesNotMatch");
	json_decref(j);
	free(url);
	mg_creds_result_free(&r);
	mg_creds_free(c);
}

int main(void)
{
	const struct CMUnitTest network[] = {
		cmocka_unit_test(test_serviceaccount),
		cmocka_unit_test(test_token_check_rejects),
	};
	int fails = 0;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mg-test-serviceaccount-XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fails += cmocka_run_group_tests_name("serviceaccount-fakests", network, setup_fakes,
					     teardown_fakes);
	rmdir(tmpdir);
	curl_global_cleanup();
	return fails;
}
