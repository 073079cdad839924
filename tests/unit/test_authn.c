/*
 * authn: the TokenReview cache answers by the token's hash until the
 * answer expires, tells tokens apart, replaces its oldest answers first,
 * and never holds the token itself; the ServiceAccount check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>

#include "../../userspace/authn/authn.c"

#define TOKEN_A "eyJhbGciOiJSUzI1NiJ9.pod-a-token-value.signature"
#define TOKEN_B "eyJhbGciOiJSUzI1NiJ9.pod-b-token-value.signature"

static void put_answer(struct mg_authn *a, const char *token, bool ok, const char *user,
		       uint64_t now)
{
	unsigned char h[MG_AUTHN_HASH_LEN];
	struct mg_authn_answer ans = {.authenticated = ok};

	snprintf(ans.username, sizeof(ans.username), "%s", user);
	mg_authn_hash(mg_str_of(token), h);
	mg_authn_put(a, h, &ans, now);
}

static const struct mg_authn_answer *find(struct mg_authn *a, const char *token, uint64_t now)
{
	unsigned char h[MG_AUTHN_HASH_LEN];

	mg_authn_hash(mg_str_of(token), h);
	return mg_authn_find(a, h, now);
}

static void test_cache_hit_miss_and_expiry(void **state)
{
	struct mg_authn *a;
	const struct mg_authn_answer *ans;

	(void)state;
	assert_int_equal(mg_authn_new(&a, NULL), 0);
	assert_null(find(a, TOKEN_A, 1000)); /* empty: miss */
	put_answer(a, TOKEN_A, true, "system:serviceaccount:default:a", 1000);
	ans = find(a, TOKEN_A, 1000);
	assert_non_null(ans);
	assert_true(ans->authenticated);
	assert_string_equal(ans->username, "system:serviceaccount:default:a");
	assert_null(find(a, TOKEN_B, 1000)); /* another token: miss */
	assert_non_null(find(a, TOKEN_A, 1000 + MG_AUTHN_TTL_MS - 1));
	assert_null(find(a, TOKEN_A, 1000 + MG_AUTHN_TTL_MS)); /* expired */
	/* a negative answer is cached too */
	put_answer(a, TOKEN_B, false, "", 5000);
	ans = find(a, TOKEN_B, 5000);
	assert_non_null(ans);
	assert_false(ans->authenticated);
	mg_authn_free(a);
}

/* Tokens differing in one byte, or one a prefix of the other, are
 * different keys. */
static void test_near_tokens_are_different_keys(void **state)
{
	struct mg_authn *a;

	(void)state;
	assert_int_equal(mg_authn_new(&a, NULL), 0);
	put_answer(a, TOKEN_A, true, "u", 0);
	assert_null(find(a, TOKEN_A "x", 0));
	assert_null(find(a, "eyJhbGciOiJSUzI1NiJ9.pod-a-token-value.signaturE", 0));
	assert_null(find(a, "eyJhbGciOiJSUzI1NiJ9", 0));
	assert_non_null(find(a, TOKEN_A, 0));
	mg_authn_free(a);
}

/* A full cache replaces its oldest answer first. */
static void test_full_cache_replaces_the_oldest(void **state)
{
	struct mg_authn *a;
	char tok[32];

	(void)state;
	assert_int_equal(mg_authn_new(&a, NULL), 0);
	for (int i = 0; i <= MG_AUTHN_CACHE; i++) {
		snprintf(tok, sizeof(tok), "token-%d", i);
		put_answer(a, tok, true, "u", 0);
	}
	assert_null(find(a, "token-0", 0)); /* replaced by token-<CACHE> */
	for (int i = 1; i <= MG_AUTHN_CACHE; i++) {
		snprintf(tok, sizeof(tok), "token-%d", i);
		assert_non_null(find(a, tok, 0));
	}
	mg_authn_free(a);
}

/* What the cache holds is the hash: no byte run of the token (not even a
 * quarter of it) is anywhere in the module's memory. */
static void test_the_token_itself_is_never_stored(void **state)
{
	struct mg_authn *a;
	size_t quarter = strlen(TOKEN_A) / 4;

	(void)state;
	assert_int_equal(mg_authn_new(&a, NULL), 0);
	put_answer(a, TOKEN_A, true, "system:serviceaccount:default:a", 0);
	for (size_t off = 0; off + quarter <= strlen(TOKEN_A); off++)
		assert_null(memmem(a, sizeof(*a), TOKEN_A + off, quarter));
	mg_authn_free(a);
}

static void test_service_account_match(void **state)
{
	struct mg_authn_answer ans = {.authenticated = true};
	char want[400];

	(void)state;
	snprintf(ans.username, sizeof(ans.username), "system:serviceaccount:team:builder");
	assert_true(mg_authn_is_service_account(&ans, "team", "builder", want, sizeof(want)));
	assert_string_equal(want, "system:serviceaccount:team:builder");
	assert_false(mg_authn_is_service_account(&ans, "team", "build", want, sizeof(want)));
	assert_false(mg_authn_is_service_account(&ans, "other", "builder", want, sizeof(want)));
	ans.authenticated = false; /* the right name, but the API server said no */
	assert_false(mg_authn_is_service_account(&ans, "team", "builder", want, sizeof(want)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_hit_miss_and_expiry),
		cmocka_unit_test(test_near_tokens_are_different_keys),
		cmocka_unit_test(test_full_cache_replaces_the_oldest),
		cmocka_unit_test(test_the_token_itself_is_never_stored),
		cmocka_unit_test(test_service_account_match),
	};

	return cmocka_run_group_tests_name("authn", tests, NULL, NULL);
}
