/*
 * eks: the provider against tokens produced by awscli, its cache and refresh
 * across 15-minute boundaries on an injected clock, AssumeRole per pod
 * (and chained), stale tokens while STS is down, the ExecCredential.
 * Fixtures (awscli tokens, injected clock and environment, the fakes) are in
 * creds_fakes.h.
 */
#include "../../userspace/creds/eks.c"
#include "creds_fakes.h"

/* ---- awscli equality ---- */

static void test_awscli_exec_credential(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(awscli_cases) / sizeof(*awscli_cases); i++) {
		const struct awscli_case *k = &awscli_cases[i];
		struct envtab env = {.n = 0};
		struct mg_creds_config cfg;
		struct mg_creds_result err;
		char *json = NULL;

		env_set(&env, "AWS_ACCESS_KEY_ID", k->akid);
		env_set(&env, "AWS_SECRET_ACCESS_KEY", k->secret);
		if (k->session_token)
			env_set(&env, "AWS_SESSION_TOKEN", k->session_token);
		cfg = eks_config(&env, k->cluster, k->region, k->endpoint);
		cfg.now = NULL; /* the exec credential takes its time as an argument */
		assert_int_equal(mg_creds_eks_exec_credential(&cfg, k->at, &json, &err), 0);
		assert_string_equal(json, k->json);
		free(json);
	}
}

/* mg_creds_get() hands out the same token, as a bearer credential. */
static void test_awscli_provider_token(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(awscli_cases) / sizeof(*awscli_cases); i++) {
		const struct awscli_case *k = &awscli_cases[i];
		struct envtab env = {.n = 0};
		struct mg_creds_config cfg = eks_config(&env, k->cluster, k->region, k->endpoint);
		struct mg_creds_result r;
		struct mg_creds *c;
		json_t *j = json_loads(k->json, 0, NULL);
		const char *want =
			json_string_value(json_object_get(json_object_get(j, "status"), "token"));

		env_set(&env, "AWS_ACCESS_KEY_ID", k->akid);
		env_set(&env, "AWS_SECRET_ACCESS_KEY", k->secret);
		if (k->session_token)
			env_set(&env, "AWS_SESSION_TOKEN", k->session_token);
		fake_now = k->at;
		c = new_or_fail(&cfg);
		assert_int_equal(mg_creds_get(c, NULL, &r), 0);
		assert_string_equal(bearer(&r), want);
		assert_int_equal(r.expiry, k->at + 900);
		assert_int_equal(r.n_headers, 0);
		mg_creds_result_free(&r);
		mg_creds_free(c);
		json_decref(j);
	}
}

/* ---- cache and refresh on the injected clock ---- */

static void test_eks_cache_refresh(void **state)
{
	struct envtab env = {.n = 0};
	struct mg_creds_config cfg = eks_config(&env, "my-cluster", "eu-west-1", NULL);
	struct mg_creds_result r;
	const time_t t0 = 1704164645;
	char *first, *second;
	struct mg_creds *c;

	(void)state;
	env_set(&env, "AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
	env_set(&env, "AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
	c = new_or_fail(&cfg);

	fake_now = t0;
	assert_int_equal(mg_creds_get(c, NULL, &r), 0);
	first = strdup(bearer(&r));
	assert_int_equal(r.expiry, t0 + 900);
	mg_creds_result_free(&r);

	/* Within the refresh margin's bounds: the same token. */
	fake_now = t0 + 600;
	assert_int_equal(mg_creds_get(c, NULL, &r), 0);
	assert_string_equal(bearer(&r), first);
	assert_int_equal(r.expiry, t0 + 900);
	mg_creds_result_free(&r);

	/* Less than 300 s left: a new token, signed now. */
	fake_now = t0 + 601;
	assert_int_equal(mg_creds_get(c, NULL, &r), 0);
	assert_string_not_equal(bearer(&r), first);
	assert_int_equal(token_date(bearer(&r)), t0 + 601);
	assert_int_equal(r.expiry, t0 + 601 + 900);
	second = strdup(bearer(&r));
	mg_creds_result_free(&r);

	/* Across the first token's 15-minute boundary and the second's. */
	for (time_t t = t0 + 602; t < t0 + 4000; t += 37) {
		fake_now = t;
		assert_int_equal(mg_creds_get(c, NULL, &r), 0);
		assert_true(r.expiry - t >= REFRESH_MARGIN);
		assert_true(token_date(bearer(&r)) <= t &&
			    token_date(bearer(&r)) + 900 == r.expiry);
		if (t >= t0 + 900)
			assert_string_not_equal(bearer(&r), first);
		if (t >= t0 + 601 + 900)
			assert_string_not_equal(bearer(&r), second);
		mg_creds_result_free(&r);
	}
	free(first);
	free(second);
	mg_creds_free(c);
}

static void test_eks_env_errors(void **state)
{
	struct envtab env = {.n = 0};
	struct mg_creds_config cfg = eks_config(&env, "c", "eu-west-1", NULL);
	struct mg_creds_result r;
	struct mg_creds *c = new_or_fail(&cfg);

	(void)state;
	fake_now = 1704164645;
	assert_int_equal(mg_creds_get(c, NULL, &r), -ENOENT);
	assert_int_equal(r.http_status, 502);
	assert_string_equal(r.reason, "NoCredentials");
	assert_null(r.authorization);
	mg_creds_result_free(&r);

	env_set(&env, "AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
	assert_int_equal(mg_creds_get(c, NULL, &r), -EINVAL);
	assert_string_equal(r.reason, "NoCredentials");
	assert_null(r.authorization);
	mg_creds_result_free(&r);
	mg_creds_free(c);
}

/* ---- pure helpers ---- */

static void test_session_name(void **state)
{
	const struct mg_creds_subject a = {.ns = "ai", .pod = "agent-0"};
	const struct mg_creds_subject b = {
		.ns = "a-very-long-namespace-name-for-testing",
		.pod = "and-an-even-longer-pod-name-7d9f8c6b5-x2x4z",
	};
	const struct mg_creds_subject c = {.ns = "ns",
					   .pod = "p\xc3\xa9"
						  "d/x y"};
	char s[65];

	(void)state;
	session_name_for(&a, s, sizeof(s));
	assert_string_equal(s, "mcpgate-ai-agent-0");
	session_name_for(&b, s, sizeof(s));
	assert_int_equal(strlen(s), 64);
	assert_string_equal(s, "mcpgate-a-very-long-namespace-name-for-testing-and-an-even-longe");
	session_name_for(&c, s, sizeof(s));
	assert_string_equal(s, "mcpgate-ns-p--d-x-y");
	assert_true(mg_creds_all_chars(s, "_+=,.@-", 2, 64));
}

/* AssumeRole per subject, over https, verified by eks_token_check.py. */
static void test_assume_role(void **state)
{
	const struct fake *f = have_tls ? &tls_fake : &plain;
	struct envtab env = {.n = 0};
	struct mg_creds_config cfg = eks_config(&env, "prod", "eu-west-1", f->base);
	struct mg_creds_subject who = {.ns = "ai",
				       .pod = "agent-0",
				       .uid = POD_UID,
				       .service_account = "agent",
				       .approval_id = "apr-42"};
	struct mg_creds_result r;
	struct mg_creds *c;
	json_t *reqs, *q, *id;
	char *arn, *first;

	(void)state;
	fake_now = time(NULL);
	fake_reset(f);
	env_set(&env, "AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
	env_set(&env, "AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
	cfg.role_arn = EXEC_ROLE;
	cfg.sts_ca_file = have_tls ? cert : NULL;
	cfg.session_identity = MG_CREDS_SOURCE_IDENTITY | MG_CREDS_SESSION_TAGS;
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, &who, &r), 0);
	assert_true(r.expiry > fake_now + 600 && r.expiry <= fake_now + 900);
	arn = caller_arn(f, bearer(&r), "prod");
	assert_string_equal(arn,
			    "arn:aws:sts::123456789012:assumed-role/mcp-exec/mcpgate-ai-agent-0");
	free(arn);
	if (have_tls) {
		id = python_check(bearer(&r), "prod", f->host);
		assert_string_equal(
			jstr(id, "arn", NULL),
			"arn:aws:sts::123456789012:assumed-role/mcp-exec/mcpgate-ai-agent-0");
		assert_string_equal(jstr(id, "canonicalArn", NULL), EXEC_ROLE);
		assert_string_equal(jstr(id, "sourceIdentity", NULL), POD_UID);
		json_decref(id);
		id = python_check(bearer(&r), "another", f->host);
		assert_string_equal(jstr(id, "code", NULL), "SignatureDoesNotMatch");
		json_decref(id);
	}
	first = strdup(bearer(&r));
	mg_creds_result_free(&r);

	reqs = fake_requests(f);
	q = last_action(reqs, "AssumeRole");
	assert_string_equal(jstr(q, "signature", NULL), "valid");
	assert_string_equal(jstr(q, "region", NULL), "eu-west-1");
	assert_string_equal(jstr(q, "security_token", NULL), "missing");
	assert_string_equal(jstr(q, "params", "RoleArn"), EXEC_ROLE);
	assert_string_equal(jstr(q, "params", "RoleSessionName"), "mcpgate-ai-agent-0");
	assert_string_equal(jstr(q, "params", "DurationSeconds"), "900");
	assert_string_equal(jstr(q, "params", "SourceIdentity"), POD_UID);
	assert_string_equal(jstr(q, "tags", "mcpgate.io/pod-uid"), POD_UID);
	assert_string_equal(jstr(q, "tags", "mcpgate.io/approval-id"), "apr-42");
	json_decref(reqs);

	/* Same subject: cached. Another approval: its own session. */
	assert_int_equal(mg_creds_get(c, &who, &r), 0);
	assert_string_equal(bearer(&r), first);
	mg_creds_result_free(&r);
	who.approval_id = "apr-43";
	assert_int_equal(mg_creds_get(c, &who, &r), 0);
	assert_string_not_equal(bearer(&r), first);
	mg_creds_result_free(&r);
	reqs = fake_requests(f);
	assert_int_equal(count_action(reqs, "AssumeRole"), 2);
	json_decref(reqs);

	/* 15 minutes on, the 900 s session is gone: a new AssumeRole. */
	who.approval_id = "apr-42";
	for (int step = 1; step <= 4; step++) {
		fake_now += 301;
		fake_sync(f);
		assert_int_equal(mg_creds_get(c, &who, &r), 0);
		assert_true(r.expiry - fake_now >= REFRESH_MARGIN);
		arn = caller_arn(f, bearer(&r), "prod");
		assert_string_equal(arn, "arn:aws:sts::123456789012:assumed-role/mcp-exec/"
					 "mcpgate-ai-agent-0");
		free(arn);
		mg_creds_result_free(&r);
	}
	reqs = fake_requests(f);
	assert_int_equal(count_action(reqs, "AssumeRole"), 4);
	json_decref(reqs);

	/* A pod uid that cannot be a SourceIdentity is refused locally. */
	who.uid = "x";
	assert_int_equal(mg_creds_get(c, &who, &r), -EINVAL);
	assert_string_equal(r.reason, "InvalidSubject");
	mg_creds_result_free(&r);
	free(first);
	mg_creds_free(c);
}

/* AssumeRole signed with IRSA session credentials: X-Amz-Security-Token
 * sent and signed. */
static void test_assume_role_chained(void **state)
{
	char *jwt = write_file("irsa2.jwt", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln");
	struct envtab env = {.n = 0};
	struct mg_creds_config cfg = eks_config(&env, "prod", "us-west-2", plain.base);
	const struct mg_creds_subject who = {.ns = "ns", .pod = "p", .uid = POD_UID};
	struct mg_creds_result r;
	struct mg_creds *c;
	json_t *reqs, *q;
	char *arn;

	(void)state;
	fake_now = time(NULL);
	fake_reset(&plain);
	irsa_env(&env, jwt);
	cfg.role_arn = EXEC_ROLE;
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, &who, &r), 0);
	arn = caller_arn(&plain, bearer(&r), "prod");
	assert_string_equal(arn, "arn:aws:sts::123456789012:assumed-role/mcp-exec/mcpgate-ns-p");
	free(arn);
	mg_creds_result_free(&r);
	reqs = fake_requests(&plain);
	q = last_action(reqs, "AssumeRole");
	assert_string_equal(jstr(q, "signature", NULL), "valid");
	assert_string_equal(jstr(q, "security_token", NULL), "present");
	assert_string_equal(jstr(q, "region", NULL), "us-west-2");
	assert_int_equal(json_array_size(json_object_get(q, "signed_headers")), 4);
	assert_null(json_object_get(q, "tags") ? jstr(q, "tags", "mcpgate.io/pod-uid") : NULL);
	assert_int_equal(count_action(reqs, "AssumeRoleWithWebIdentity"), 1);
	json_decref(reqs);
	mg_creds_free(c);
	unlink(jwt);
	free(jwt);
}

/* While STS is down, a cached token keeps being served as long as it has
 * 60 s left, and not a second longer. */
static void test_stale_while_down(void **state)
{
	struct envtab env = {.n = 0};
	struct mg_creds_config cfg = eks_config(&env, "prod", "eu-west-1", plain.base);
	const struct mg_creds_subject who = {.ns = "ai", .pod = "agent-0", .uid = POD_UID};
	struct mg_creds_result r;
	struct mg_creds *c;
	time_t t0;
	char *tok;

	(void)state;
	fake_now = t0 = time(NULL);
	fake_reset(&plain);
	env_set(&env, "AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
	env_set(&env, "AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
	cfg.role_arn = EXEC_ROLE;
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, &who, &r), 0);
	tok = strdup(bearer(&r));
	assert_int_equal(r.expiry, t0 + 900);
	mg_creds_result_free(&r);

	fake_control(&plain, "{\"mode\": \"down\"}");
	fake_now = t0 + 700; /* due for refresh, 200 s left */
	assert_int_equal(mg_creds_get(c, &who, &r), 0);
	assert_string_equal(bearer(&r), tok);
	assert_int_equal(r.expiry, t0 + 900);
	mg_creds_result_free(&r);
	fake_now = t0 + 840; /* exactly 60 s left */
	assert_int_equal(mg_creds_get(c, &who, &r), 0);
	assert_string_equal(bearer(&r), tok);
	mg_creds_result_free(&r);
	fake_now = t0 + 841; /* 59 s left: never handed out */
	assert_int_equal(mg_creds_get(c, &who, &r), -EAGAIN);
	assert_null(r.authorization);
	mg_creds_result_free(&r);

	/* Back up: a fresh session and token. */
	fake_control(&plain, "{\"mode\": \"up\"}");
	fake_sync(&plain);
	assert_int_equal(mg_creds_get(c, &who, &r), 0);
	assert_string_not_equal(bearer(&r), tok);
	assert_int_equal(r.expiry, t0 + 841 + 900);
	mg_creds_result_free(&r);
	free(tok);
	mg_creds_free(c);
}

/* The CLI path with a role: AssumeRole as awscli's --role-arn does
 * (RoleSessionName EKSGetTokenAuth, no session identity). */
static void test_exec_credential_role(void **state)
{
	struct envtab env = {.n = 0};
	struct mg_creds_config cfg = eks_config(&env, "prod", "eu-west-1", plain.base);
	struct mg_creds_result err;
	json_t *j, *reqs, *q;
	char *out, *arn, exp[32];
	struct tm tm;

	(void)state;
	fake_now = time(NULL);
	fake_reset(&plain);
	env_set(&env, "AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
	env_set(&env, "AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
	cfg.role_arn = EXEC_ROLE;
	assert_int_equal(mg_creds_eks_exec_credential(&cfg, fake_now, &out, &err), 0);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_string_equal(jstr(j, "kind", NULL), "ExecCredential");
	assert_string_equal(jstr(j, "apiVersion", NULL), "client.authentication.k8s.io/v1beta1");
	assert_true(json_is_object(json_object_get(j, "spec")));
	assert_int_equal(json_object_size(json_object_get(j, "spec")), 0);
	time_t until = fake_now + 14 * 60;
	gmtime_r(&until, &tm);
	strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	assert_string_equal(jstr(j, "status", "expirationTimestamp"), exp);
	arn = caller_arn(&plain, jstr(j, "status", "token"), "prod");
	assert_string_equal(arn, "arn:aws:sts::123456789012:assumed-role/mcp-exec/EKSGetTokenAuth");
	free(arn);
	json_decref(j);
	free(out);
	reqs = fake_requests(&plain);
	q = last_action(reqs, "AssumeRole");
	assert_null(jstr(q, "params", "SourceIdentity"));
	json_decref(reqs);

	/* An error comes back in <err>, no JSON. */
	cfg.role_arn = "arn:aws:iam::123456789012:role/deny";
	assert_int_equal(mg_creds_eks_exec_credential(&cfg, fake_now, &out, &err), -EACCES);
	assert_null(out);
	assert_string_equal(err.reason, "AccessDenied");
	mg_creds_result_free(&err);
}

int main(void)
{
	const struct CMUnitTest offline[] = {
		cmocka_unit_test(test_awscli_exec_credential),
		cmocka_unit_test(test_awscli_provider_token),
		cmocka_unit_test(test_eks_cache_refresh),
		cmocka_unit_test(test_eks_env_errors),
		cmocka_unit_test(test_session_name),
	};
	const struct CMUnitTest network[] = {
		cmocka_unit_test(test_assume_role),
		cmocka_unit_test(test_assume_role_chained),
		cmocka_unit_test(test_stale_while_down),
		cmocka_unit_test(test_exec_credential_role),
	};
	int fails = 0;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mg-test-eks-XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fails += cmocka_run_group_tests_name("eks", offline, NULL, NULL);
	fails += cmocka_run_group_tests_name("eks-fakests", network, setup_fakes, teardown_fakes);
	rmdir(tmpdir);
	curl_global_cleanup();
	return fails;
}
