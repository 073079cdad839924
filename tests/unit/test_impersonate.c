/*
 * impersonate: the daemon's token with Impersonate-* headers from the pod,
 * and the Impersonate-Extra header names.
 * Fixtures (awscli tokens, injected clock and environment, the fakes) are in
 * creds_fakes.h.
 */
#include "../../userspace/creds/impersonate.c"
#include "creds_fakes.h"

static void test_extra_header_name(void **state)
{
	char *n;

	(void)state;
	n = extra_header_name("mcpgate.io/pod-uid");
	assert_string_equal(n, "Impersonate-Extra-mcpgate.io%2fpod-uid");
	free(n);
	n = extra_header_name("mcpgate.io/approval-id");
	assert_string_equal(n, "Impersonate-Extra-mcpgate.io%2fapproval-id");
	free(n);
	n = extra_header_name("Scopes%Of Them:\xc3\xa9");
	assert_string_equal(n, "Impersonate-Extra-scopes%25of%20them%3a%c3%a9");
	free(n);
}

static void test_impersonate(void **state)
{
	static const char *const groups[] = {"mcpgate:agents", "mcpgate:ns:{namespace}"};
	char *tf = write_file("daemon-token", "daemon.jwt.value\n");
	struct mg_creds_config cfg = {
		.kind = MG_CREDS_IMPERSONATE,
		.token_file = tf,
		.user = "mcpgate:pod:{namespace}:{pod}",
		.groups = groups,
		.n_groups = 2,
	};
	const struct mg_creds_subject who = {.ns = "ai",
					     .pod = "agent-0",
					     .uid = "1234-abcd",
					     .service_account = "agent",
					     .approval_id = "apr-7"};
	struct mg_creds_subject bad = who;
	struct mg_creds_result r;
	struct mg_creds *c = new_or_fail(&cfg);

	(void)state;
	assert_int_equal(mg_creds_get(c, &who, &r), 0);
	assert_string_equal(r.authorization, "Bearer daemon.jwt.value");
	assert_int_equal(r.n_headers, 5);
	assert_string_equal(r.headers[0].name, "Impersonate-User");
	assert_string_equal(r.headers[0].value, "mcpgate:pod:ai:agent-0");
	assert_string_equal(r.headers[1].name, "Impersonate-Group");
	assert_string_equal(r.headers[1].value, "mcpgate:agents");
	assert_string_equal(r.headers[2].name, "Impersonate-Group");
	assert_string_equal(r.headers[2].value, "mcpgate:ns:ai");
	assert_string_equal(r.headers[3].name, "Impersonate-Extra-mcpgate.io%2fpod-uid");
	assert_string_equal(r.headers[3].value, "1234-abcd");
	assert_string_equal(r.headers[4].name, "Impersonate-Extra-mcpgate.io%2fapproval-id");
	assert_string_equal(r.headers[4].value, "apr-7");
	mg_creds_result_free(&r);

	/* The token file is read on every call (projected tokens rotate). */
	free(write_file("daemon-token", "rotated.jwt\n"));
	bad.approval_id = NULL;
	assert_int_equal(mg_creds_get(c, &bad, &r), 0);
	assert_string_equal(r.authorization, "Bearer rotated.jwt");
	assert_int_equal(r.n_headers, 4);
	mg_creds_result_free(&r);

	/* No header injection through the subject. */
	bad.approval_id = "apr\r\nAuthorization: Bearer x";
	assert_int_equal(mg_creds_get(c, &bad, &r), -EINVAL);
	assert_int_equal(r.http_status, 500);
	assert_null(r.authorization);
	assert_int_equal(r.n_headers, 0);
	mg_creds_result_free(&r);
	bad = who;
	bad.pod = NULL;
	assert_int_equal(mg_creds_get(c, &bad, &r), -EINVAL);
	assert_string_equal(r.reason, "InvalidSubject");
	mg_creds_result_free(&r);
	mg_creds_free(c);

	/* Default user: the pod's own service account. */
	cfg.user = NULL;
	cfg.n_groups = 0;
	c = new_or_fail(&cfg);
	assert_int_equal(mg_creds_get(c, &who, &r), 0);
	assert_string_equal(r.headers[0].value, "system:serviceaccount:ai:agent");
	mg_creds_result_free(&r);
	mg_creds_free(c);
	unlink(tf);
	free(tf);
}

int main(void)
{
	const struct CMUnitTest offline[] = {
		cmocka_unit_test(test_extra_header_name),
		cmocka_unit_test(test_impersonate),
	};
	int fails = 0;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mg-test-impersonate-XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fails += cmocka_run_group_tests_name("impersonate", offline, NULL, NULL);
	rmdir(tmpdir);
	curl_global_cleanup();
	return fails;
}
