/*
 * aws: the credential chain (environment, IRSA, Pod Identity) on an injected
 * environment, AssumeRoleWithWebIdentity, the Pod Identity agent and STS
 * errors through the real libcurl code against tests/e2e/fakests.py.
 * Fixtures (awscli tokens, injected clock and environment, the fakes) are in
 * creds_fakes.h.
 */
#include "../../userspace/creds/aws.c"
#include "creds_fakes.h"

/* IRSA: AssumeRoleWithWebIdentity (unsigned), then the token is signed
 * with the web identity session. */
static void test_irsa(void **state)
{
	char *jwt = write_file("irsa.jwt", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtY3BnYXRlIn0.c2ln\n");
	struct envtab env = {.n = 0};
	struct mg_creds_config cfg = eks_config(&env, "kind-mcp", "eu-west-1", plain.base);
	struct mg_creds_result r;
	struct mg_creds *c;
	json_t *reqs, *q;
	char *arn;

	(void)state;
	fake_now = time(NULL);
	fake_reset(&plain);
	irsa_env(&env, jwt);
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, NULL, &r), 0);
	arn = caller_arn(&plain, bearer(&r), "kind-mcp");
	assert_string_equal(arn,
			    "arn:aws:sts::123456789012:assumed-role/mcpgate-node/mcpgate-node");
	free(arn);
	/* Signed for another cluster, it is not valid for this one. */
	arn = caller_arn(&plain, bearer(&r), "other-cluster");
	assert_string_equal(arn, "SignatureDoesNotMatch");
	free(arn);
	mg_creds_result_free(&r);

	/* Cached: a second call makes no STS call. */
	assert_int_equal(mg_creds_get(c, NULL, &r), 0);
	mg_creds_result_free(&r);
	reqs = fake_requests(&plain);
	assert_int_equal(count_action(reqs, "AssumeRoleWithWebIdentity"), 1);
	q = last_action(reqs, "AssumeRoleWithWebIdentity");
	assert_string_equal(jstr(q, "authorization", NULL), "missing");
	assert_string_equal(jstr(q, "web_identity_token", NULL), "present");
	assert_string_equal(jstr(q, "params", "RoleArn"), NODE_ROLE);
	assert_string_equal(jstr(q, "params", "RoleSessionName"), "mcpgate-node");
	assert_string_equal(jstr(q, "params", "Version"), "2011-06-15");
	assert_true(
		!strncmp(jstr(q, "content_type", NULL), "application/x-www-form-urlencoded", 33));
	json_decref(reqs);
	mg_creds_free(c);

	/* A token the identity provider rejects. */
	free(write_file("irsa.jwt", "an-invalid-token\n"));
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, NULL, &r), -EACCES);
	assert_int_equal(r.http_status, 502);
	assert_string_equal(r.reason, "InvalidIdentityToken");
	assert_null(strstr(r.message, "an-invalid-token"));
	assert_null(r.authorization);
	mg_creds_result_free(&r);
	mg_creds_free(c);
	unlink(jwt);
	free(jwt);
}

/* STS refusals become 502 results naming the STS code, never a token and
 * never a secret. */
static void test_sts_errors(void **state)
{
	static const char secret[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEz";
	struct envtab env = {.n = 0};
	struct mg_creds_config cfg = eks_config(&env, "prod", "eu-west-1", plain.base);
	const struct mg_creds_subject who = {.ns = "ai", .pod = "agent-0", .uid = POD_UID};
	struct mg_creds_result r;
	struct mg_creds *c;
	json_t *reqs;

	(void)state;
	fake_now = time(NULL);
	fake_reset(&plain);
	env_set(&env, "AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
	env_set(&env, "AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");

	/* AccessDenied: no token, in particular not one signed with the
	 * daemon's own (broader) credentials. */
	cfg.role_arn = "arn:aws:iam::123456789012:role/deny-me";
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, &who, &r), -EACCES);
	assert_int_equal(r.http_status, 502);
	assert_string_equal(r.reason, "AccessDenied");
	assert_non_null(strstr(r.message, "role/deny-me"));
	assert_non_null(strstr(r.message, "sts:AssumeRole"));
	assert_null(r.authorization);
	mg_creds_result_free(&r);
	mg_creds_free(c);

	/* A wrong secret: SignatureDoesNotMatch. The fake, like STS, goes on
	 * with the canonical request on later lines: none of that is kept. */
	cfg.role_arn = EXEC_ROLE;
	env_set(&env, "AWS_SECRET_ACCESS_KEY", secret);
	env_set(&env, "AWS_SESSION_TOKEN", NULL);
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, &who, &r), -EACCES);
	assert_string_equal(r.reason, "SignatureDoesNotMatch");
	assert_null(strstr(r.message, "Canonical"));
	assert_null(strstr(r.message, secret));
	assert_null(r.authorization);
	mg_creds_result_free(&r);
	mg_creds_free(c);
	reqs = fake_requests(&plain);
	assert_string_equal(jstr(last_action(reqs, "AssumeRole"), "signature", NULL), "invalid");
	json_decref(reqs);

	/* Clock skew beyond 15 minutes is refused by STS. */
	env_set(&env, "AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
	c = new_or_fail(&cfg);
	fake_now += 16 * 60;
	assert_int_equal(mg_creds_get(c, &who, &r), -EACCES);
	assert_string_equal(r.reason, "SignatureDoesNotMatch");
	mg_creds_result_free(&r);
	fake_now -= 16 * 60;

	/* STS down, then throttling: transient, 502. */
	fake_control(&plain, "{\"mode\": \"down\"}");
	assert_int_equal(mg_creds_get(c, &who, &r), -EAGAIN);
	assert_int_equal(r.http_status, 502);
	assert_string_equal(r.reason, "STSUnavailable");
	assert_null(r.authorization);
	mg_creds_result_free(&r);
	fake_control(&plain, "{\"mode\": \"throttle\"}");
	assert_int_equal(mg_creds_get(c, &who, &r), -EAGAIN);
	assert_string_equal(r.reason, "Throttling");
	mg_creds_result_free(&r);
	fake_control(&plain, "{\"mode\": \"error500\"}");
	assert_int_equal(mg_creds_get(c, &who, &r), -EAGAIN);
	assert_string_equal(r.reason, "InternalFailure");
	mg_creds_result_free(&r);
	mg_creds_free(c);
	fake_control(&plain, "{\"mode\": \"up\"}");
}

/* EKS Pod Identity: the agent's JSON, the token file re-read each fetch. */
static void test_pod_identity(void **state)
{
	char *tf = write_file("pi-token", PI_TOKEN "\n"), url[128];
	struct envtab env = {.n = 0};
	struct mg_creds_config cfg = eks_config(&env, "prod", "eu-west-1", plain.base);
	struct mg_creds_result r;
	struct mg_creds *c;
	json_t *reqs;
	time_t t0;
	char *arn;

	(void)state;
	fake_now = t0 = time(NULL);
	fake_reset(&plain);
	fake_control(&plain, "{\"pod_identity_duration\": 900}");
	snprintf(url, sizeof(url), "%s/v1/credentials", plain.base);
	env_set(&env, "AWS_CONTAINER_CREDENTIALS_FULL_URI", url);
	env_set(&env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tf);
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, NULL, &r), 0);
	assert_int_equal(r.expiry, t0 + 900);
	arn = caller_arn(&plain, bearer(&r), "prod");
	assert_string_equal(arn, "arn:aws:sts::123456789012:assumed-role/mcpgate-pod-identity/"
				 "eks-pod-identity");
	free(arn);
	mg_creds_result_free(&r);
	reqs = fake_requests(&plain);
	assert_int_equal(count_action(reqs, "PodIdentity"), 1);
	assert_string_equal(jstr(last_action(reqs, "PodIdentity"), "authorization", NULL), "match");
	json_decref(reqs);

	/* The credentials near their end: fetched again, with the file read
	 * again, which now holds a token the agent refuses. */
	free(write_file("pi-token", "rotated-but-wrong\n"));
	fake_now = t0 + 601;
	fake_sync(&plain);
	assert_int_equal(mg_creds_get(c, NULL, &r), -EACCES);
	assert_int_equal(r.http_status, 502);
	assert_string_equal(r.reason, "PodIdentityError");
	assert_non_null(strstr(r.message, "HTTP 401"));
	assert_null(strstr(r.message, "rotated-but-wrong"));
	assert_null(r.authorization);
	mg_creds_result_free(&r);
	reqs = fake_requests(&plain);
	assert_int_equal(count_action(reqs, "PodIdentity"), 2);
	assert_string_equal(jstr(last_action(reqs, "PodIdentity"), "authorization", NULL),
			    "mismatch");
	json_decref(reqs);
	mg_creds_free(c);

	/* Plain http is only for loopback and the agent addresses. */
	env_set(&env, "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://10.1.2.3/v1/credentials");
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, NULL, &r), -EINVAL);
	assert_string_equal(r.reason, "NoCredentials");
	mg_creds_result_free(&r);
	mg_creds_free(c);
	unlink(tf);
	free(tf);
}

/* The SDK chain order: environment, then IRSA, then Pod Identity. */
static void test_chain_order(void **state)
{
	char *jwt = write_file("chain.jwt", "eyJ.e30.sig"), *tf = write_file("chain-pi", PI_TOKEN);
	struct envtab env = {.n = 0};
	struct mg_creds_config cfg = eks_config(&env, "prod", "eu-west-1", plain.base);
	struct mg_creds_result r;
	struct mg_creds *c;
	json_t *reqs;
	char url[128], *arn;

	(void)state;
	fake_now = time(NULL);
	fake_reset(&plain);
	snprintf(url, sizeof(url), "%s/v1/credentials", plain.base);
	env_set(&env, "AWS_CONTAINER_CREDENTIALS_FULL_URI", url);
	env_set(&env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tf);
	irsa_env(&env, jwt);
	env_set(&env, "AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
	env_set(&env, "AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");

	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, NULL, &r), 0);
	arn = caller_arn(&plain, bearer(&r), "prod");
	assert_string_equal(arn, "arn:aws:iam::123456789012:user/mcpgate-test");
	free(arn);
	mg_creds_result_free(&r);
	mg_creds_free(c);

	env_set(&env, "AWS_ACCESS_KEY_ID", NULL);
	env_set(&env, "AWS_SECRET_ACCESS_KEY", NULL);
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, NULL, &r), 0);
	arn = caller_arn(&plain, bearer(&r), "prod");
	assert_string_equal(arn,
			    "arn:aws:sts::123456789012:assumed-role/mcpgate-node/mcpgate-node");
	free(arn);
	mg_creds_result_free(&r);
	mg_creds_free(c);

	/* Forcing the Pod Identity source skips IRSA. */
	cfg.aws_source = MG_CREDS_AWS_POD_IDENTITY;
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, NULL, &r), 0);
	arn = caller_arn(&plain, bearer(&r), "prod");
	assert_string_equal(arn, "arn:aws:sts::123456789012:assumed-role/mcpgate-pod-identity/"
				 "eks-pod-identity");
	free(arn);
	mg_creds_result_free(&r);
	mg_creds_free(c);

	reqs = fake_requests(&plain);
	assert_int_equal(count_action(reqs, "AssumeRoleWithWebIdentity"), 1);
	assert_int_equal(count_action(reqs, "PodIdentity"), 1);
	json_decref(reqs);
	unlink(jwt);
	unlink(tf);
	free(jwt);
	free(tf);
}

int main(void)
{
	const struct CMUnitTest network[] = {
		cmocka_unit_test(test_irsa),
		cmocka_unit_test(test_sts_errors),
		cmocka_unit_test(test_pod_identity),
		cmocka_unit_test(test_chain_order),
	};
	int fails = 0;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mg-test-aws-XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fails += cmocka_run_group_tests_name("aws-fakests", network, setup_fakes, teardown_fakes);
	rmdir(tmpdir);
	curl_global_cleanup();
	return fails;
}
