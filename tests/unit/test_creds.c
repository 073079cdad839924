/*
 * creds: what the providers share: configuration errors, the provider registry,
 * base64url, error messages without secrets, the cache under threads.
 * Fixtures (awscli tokens, injected clock and environment, the fakes) are in
 * creds_fakes.h.
 */
#include "../../userspace/creds/creds.c"
#include "creds_fakes.h"

static void test_config_errors(void **state)
{
	static const char *const groups_bad[] = {"ok", "bad\r\nX-Evil: 1"};
	struct envtab env = {.n = 0};
	struct mg_creds_config cfg;
	char err[256];

	(void)state;
#define BAD(...)                                                                                   \
	do {                                                                                       \
		err[0] = '\0';                                                                     \
		assert_null(mg_creds_new(&cfg, err, sizeof(err)));                                 \
		assert_true(err[0] != '\0');                                                       \
	} while (0)
	cfg = eks_config(&env, NULL, "eu-west-1", NULL);
	BAD();
	cfg = eks_config(&env, "my cluster", "eu-west-1", NULL);
	BAD();
	cfg = eks_config(&env, "c", NULL, NULL);
	BAD();
	cfg = eks_config(&env, "c", "eu west", NULL);
	BAD();
	cfg = eks_config(&env, "c", "eu-west-1", "ftp://x");
	BAD();
	cfg = eks_config(&env, "c", "eu-west-1", "https://user@host/");
	BAD();
	cfg = eks_config(&env, "c", "eu-west-1", "https://host/?q=1");
	BAD();
	cfg = eks_config(&env, "c", "eu-west-1", NULL);
	cfg.role_arn = "not-an-arn";
	BAD();
	cfg.role_arn = "arn:aws:iam::123456789012:role/x";
	cfg.duration_seconds = 899;
	BAD();
	cfg.duration_seconds = 0;
	cfg.session_name = "bad name";
	BAD();
	cfg = (struct mg_creds_config){.kind = MG_CREDS_SERVICEACCOUNT,
				       .api_server = "http://insecure",
				       .token_file = "/x"};
	BAD();
	cfg.api_server = "https://api";
	cfg.expiration_seconds = 599;
	BAD();
	cfg.expiration_seconds = 600;
	cfg.token_file = NULL;
	BAD();
	cfg = (struct mg_creds_config){.kind = MG_CREDS_IMPERSONATE, .token_file = "/x"};
	cfg.groups = groups_bad;
	cfg.n_groups = 2;
	BAD();
	cfg = (struct mg_creds_config){.kind = 42};
	BAD();
#undef BAD
	/* The global endpoint needs no region. */
	cfg = eks_config(&env, "c", NULL, "global");
	mg_creds_free(new_or_fail(&cfg));
}

static void test_base64url(void **state)
{
	char *s;

	(void)state;
	/* RFC 4648 §10 vectors, with '+' and '/' positions exercised */
	s = mg_creds_base64url("foob", 4);
	assert_string_equal(s, "Zm9vYg");
	free(s);
	s = mg_creds_base64url("fooba", 5);
	assert_string_equal(s, "Zm9vYmE");
	free(s);
	s = mg_creds_base64url("\xfb\xff\xbf", 3);
	assert_string_equal(s, "-_-_");
	free(s);
}

static void test_safe_message(void **state)
{
	char m[64];

	(void)state;
	mg_creds_safe_message(m, sizeof(m), "first line\nsecond line with SECRETTOKEN",
			      "SECRETTOKEN");
	assert_string_equal(m, "first line");
	mg_creds_safe_message(m, sizeof(m), "token SECRETTOKEN inline", "SECRETTOKEN");
	assert_string_equal(m, "token *********** inline");
}

static void test_threads(void **state)
{
	struct envtab env = {.n = 0};
	struct mg_creds_config cfg = eks_config(&env, "prod", "eu-west-1", plain.base);
	struct worker w[4];
	pthread_t t[4];
	struct mg_creds *c;

	(void)state;
	fake_now = time(NULL);
	fake_reset(&plain);
	env_set(&env, "AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
	env_set(&env, "AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
	cfg.role_arn = EXEC_ROLE;
	c = new_or_fail(&cfg);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){c, 0};
		assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].fails, 0);
	}
	mg_creds_free(c);
}

/* The provider registry: each provider file registers under the name the
 * configuration (and, next, a policy rule) uses, and mg_creds_new() picks
 * it by kind; an unknown name or kind is refused. */
static void test_provider_by_name(void **state)
{
	static const char *const names[] = {"eks", "serviceaccount", "impersonate"};
	struct mg_creds_config cc = {.kind = 0};
	enum mg_creds_kind k = 0;
	char err[256];

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(mg_creds_kind_lookup(names[i], &k), 0);
		assert_string_equal(mg_creds_kind_name(k), names[i]);
		assert_int_equal(mg_creds_ops_of(k)->kind, k);
	}
	assert_int_equal(mg_creds_kind_lookup("none", &k), -ENOENT);
	assert_int_equal(mg_creds_kind_lookup(NULL, &k), -ENOENT);
	assert_null(mg_creds_kind_name((enum mg_creds_kind)99));
	cc.kind = (enum mg_creds_kind)99;
	assert_null(mg_creds_new(&cc, err, sizeof(err)));
	assert_non_null(strstr(err, "unknown credentials provider kind 99"));
}

int main(void)
{
	const struct CMUnitTest offline[] = {
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_base64url),
		cmocka_unit_test(test_safe_message),
		cmocka_unit_test(test_provider_by_name),
	};
	const struct CMUnitTest network[] = {
		cmocka_unit_test(test_threads),
	};
	int fails = 0;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mg-test-creds-XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fails += cmocka_run_group_tests_name("creds", offline, NULL, NULL);
	fails += cmocka_run_group_tests_name("creds-fakests", network, setup_fakes, teardown_fakes);
	rmdir(tmpdir);
	curl_global_cleanup();
	return fails;
}
