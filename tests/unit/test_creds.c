/*
 * creds: the eks provider against tokens produced by awscli, its cache and
 * refresh across 15-minute boundaries on an injected clock, the credential
 * chain (environment, IRSA, Pod Identity) on an injected environment, STS
 * AssumeRole / AssumeRoleWithWebIdentity / errors and the Pod Identity agent
 * through the real libcurl code against tests/e2e/fakests.py on loopback,
 * the serviceaccount (TokenRequest) and impersonate providers, and that no
 * secret ends up in an error message.
 *
 * The network tests start two fakests.py on 127.0.0.1 (one plain http, one
 * https with a throw-away self-signed certificate made with the openssl
 * CLI; the https tests are skipped if that fails) and check both what the
 * provider returned and what the fake received. Tokens are verified twice,
 * independently of the C code: by the fake STS answering GetCallerIdentity
 * on the presigned URL (what aws-iam-authenticator does), and, over https,
 * by tests/e2e/eks_token_check.py. Set MG_SRCDIR if the test does not run
 * from the repository root.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>
#include <jansson.h>

#include "../../userspace/creds/creds.c"

/* ---- expected tokens, produced by awscli ----
 *
 * Each constant below is the exact stdout of
 *
 *   env -i PATH=/usr/bin:/bin HOME=/tmp/h AWS_ACCESS_KEY_ID=<akid> \
 *       AWS_SECRET_ACCESS_KEY=<secret> [AWS_SESSION_TOKEN=<token>] \
 *       AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null \
 *       AWS_SHARED_CREDENTIALS_FILE=/dev/null \
 *       faketime -f '@<time>' /usr/bin/aws eks get-token --cluster-name <cluster> \
 *       --region <region>
 *
 * with Debian 12's awscli 2.9.19-1 (aws-cli/2.9.19 Python/3.11.2) and
 * faketime 0.9.10. No network is involved: get-token only signs. The global
 * endpoint case used --region aws-global, which awscli resolves to
 * https://sts.amazonaws.com signed for us-east-1.
 */
#define EXEC_JSON(exp, token)                                                                      \
	"{\"kind\": \"ExecCredential\", \"apiVersion\": "                                          \
	"\"client.authentication.k8s.io/v1beta1\", "                                               \
	"\"spec\": {}, \"status\": {\"expirationTimestamp\": \"" exp "\", \"token\": \"" token     \
	"\"}}\n"

static const struct awscli_case {
	const char *akid, *secret, *session_token;
	const char *cluster, *region, *endpoint;
	time_t at;
	const char *json;
} awscli_cases[] = {
	/* eu-west-1, long-term keys, 2024-01-02T03:04:05Z */
	{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL, "my-cluster", "eu-west-1",
	 NULL, 1704164645,
	 EXEC_JSON("2024-01-02T03:18:05Z",
		   "k8s-aws-v1.aHR0cHM6Ly9zdHMuZXUtd2VzdC0xLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxs"
		   "ZXJJZGVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEE"
		   "yNTYmWC1BbXotQ3JlZGVudGlhbD1BS0lERVhBTVBMRSUyRjIwMjQwMTAyJTJGZXUtd2VzdC0xJTJGc3"
		   "RzJTJGYXdzNF9yZXF1ZXN0JlgtQW16LURhdGU9MjAyNDAxMDJUMDMwNDA1WiZYLUFtei1FeHBpcmVzP"
		   "TYwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCUzQngtazhzLWF3cy1pZCZYLUFtei1TaWduYXR1cmU9"
		   "ZGM3NTE4MmMzODU5MTliNzEzNTljNjI1NjEyYzFmOTE2ODhjZjkxNzljN2QyOTgzODk1YTFkMzZlNzh"
		   "mMDRkNQ")},
	/* us-east-1 regional, a session token with '/', '+' and '=', a second
	 * before the new year (the expiration is in the next year) */
	{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
	 "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+abc/def==", "prod-cluster_1",
	 "us-east-1", "regional", 1704067199,
	 EXEC_JSON("2024-01-01T00:13:59Z",
		   "k8s-aws-v1.aHR0cHM6Ly9zdHMudXMtZWFzdC0xLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxs"
		   "ZXJJZGVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEE"
		   "yNTYmWC1BbXotQ3JlZGVudGlhbD1BS0lERVhBTVBMRSUyRjIwMjMxMjMxJTJGdXMtZWFzdC0xJTJGc3"
		   "RzJTJGYXdzNF9yZXF1ZXN0JlgtQW16LURhdGU9MjAyMzEyMzFUMjM1OTU5WiZYLUFtei1FeHBpcmVzP"
		   "TYwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCUzQngtazhzLWF3cy1pZCZYLUFtei1TZWN1cml0eS1U"
		   "b2tlbj1JUW9KYjNKcFoybHVYMlZqRUpyJTJGJTJGJTJGJTJGJTJGJTJGJTJGJTJGJTJGJTJGd0VhQ1h"
		   "WekxXVmhjM1F0TVNKSE1FVUNJUUQlMkJhYmMlMkZkZWYlM0QlM0QmWC1BbXotU2lnbmF0dXJlPWJiNG"
		   "MzMWFiZTAxOTUzYzAwNTUxNWZkYjBiYWVkNjg1ZmU5ZTUxMDRmNDc0OTlmMzgzYWE0Njk0NzA3Y2Y4Z"
		   "mE")},
	/* the legacy global endpoint (--region aws-global), 2025-06-30T12:00:00Z */
	{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", NULL, "legacy", NULL,
	 "global", 1751284800,
	 EXEC_JSON("2025-06-30T12:14:00Z",
		   "k8s-aws-v1.aHR0cHM6Ly9zdHMuYW1hem9uYXdzLmNvbS8_QWN0aW9uPUdldENhbGxlcklkZW50aXR5"
		   "JlZlcnNpb249MjAxMS0wNi0xNSZYLUFtei1BbGdvcml0aG09QVdTNC1ITUFDLVNIQTI1NiZYLUFtei1"
		   "DcmVkZW50aWFsPUFLSUFJT1NGT0ROTjdFWEFNUExFJTJGMjAyNTA2MzAlMkZ1cy1lYXN0LTElMkZzdH"
		   "MlMkZhd3M0X3JlcXVlc3QmWC1BbXotRGF0ZT0yMDI1MDYzMFQxMjAwMDBaJlgtQW16LUV4cGlyZXM9N"
		   "jAmWC1BbXotU2lnbmVkSGVhZGVycz1ob3N0JTNCeC1rOHMtYXdzLWlkJlgtQW16LVNpZ25hdHVyZT1m"
		   "YWQyMmIyMGIyOTliYjZiNjUyYmRlZmVlYWNmMjQwYWNmMTY1ZWU3MzExMTUzZjQ4OTAzMzMxODcxMzc"
		   "1Njhi")},
	/* a China region (.amazonaws.com.cn), leap day, session token */
	{"ASIAQEXAMPLE4CNREGION", "cn+secret/with=chars0123456789abcdefghij",
	 "FwoGZXIvYXdzEBYaDH+cn/token==", "cn", "cn-north-1", NULL, 1709210096,
	 EXEC_JSON("2024-02-29T12:48:56Z",
		   "k8s-aws-v1.aHR0cHM6Ly9zdHMuY24tbm9ydGgtMS5hbWF6b25hd3MuY29tLmNuLz9BY3Rpb249R2V0"
		   "Q2FsbGVySWRlbnRpdHkmVmVyc2lvbj0yMDExLTA2LTE1JlgtQW16LUFsZ29yaXRobT1BV1M0LUhNQUM"
		   "tU0hBMjU2JlgtQW16LUNyZWRlbnRpYWw9QVNJQVFFWEFNUExFNENOUkVHSU9OJTJGMjAyNDAyMjklMk"
		   "Zjbi1ub3J0aC0xJTJGc3RzJTJGYXdzNF9yZXF1ZXN0JlgtQW16LURhdGU9MjAyNDAyMjlUMTIzNDU2W"
		   "iZYLUFtei1FeHBpcmVzPTYwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCUzQngtazhzLWF3cy1pZCZY"
		   "LUFtei1TZWN1cml0eS1Ub2tlbj1Gd29HWlhJdllYZHpFQllhREglMkJjbiUyRnRva2VuJTNEJTNEJlg"
		   "tQW16LVNpZ25hdHVyZT01ODY1ZjMxN2Y5NjEzNDI2NjA0NzU2YzgxYjVkM2FlNDc1NmViYTMwYjhkYj"
		   "MyYjZhN2FhNjQyNDNkMmU5ZTQ2")},
};

/* ---- injected clock and environment ---- */

static time_t fake_now;

static time_t clock_fn(void *data)
{
	(void)data;
	return fake_now;
}

struct envtab {
	const char *k[16];
	const char *v[16];
	size_t n;
};

static const char *env_fn(void *data, const char *name)
{
	const struct envtab *e = data;

	for (size_t i = 0; i < e->n; i++)
		if (!strcmp(e->k[i], name))
			return e->v[i];
	return NULL;
}

static void env_set(struct envtab *e, const char *k, const char *v)
{
	for (size_t i = 0; i < e->n; i++) {
		if (!strcmp(e->k[i], k)) {
			e->v[i] = v;
			return;
		}
	}
	assert_true(e->n < 16);
	e->k[e->n] = k;
	e->v[e->n++] = v;
}

static struct mg_creds_config eks_config(struct envtab *env, const char *cluster,
					 const char *region, const char *endpoint)
{
	return (struct mg_creds_config){
		.kind = MG_CREDS_EKS,
		.cluster_name = cluster,
		.region = region,
		.sts_endpoint = endpoint,
		.getenv = env_fn,
		.getenv_data = env,
		.now = clock_fn,
		.timeout_ms = 5000,
	};
}

static struct mg_creds *new_or_fail(const struct mg_creds_config *cfg)
{
	char err[256] = "";
	struct mg_creds *c = mg_creds_new(cfg, err, sizeof(err));

	if (!c)
		fail_msg("mg_creds_new: %s", err);
	return c;
}

/* The token inside "Bearer <token>". */
static const char *bearer(const struct mg_creds_result *r)
{
	assert_non_null(r->authorization);
	assert_true(!strncmp(r->authorization, "Bearer ", 7));
	return r->authorization + 7;
}

/* The presigned URL inside an EKS token (malloc'd). */
static char *token_url(const char *token)
{
	const char *b = token + strlen(EKS_TOKEN_PREFIX);
	size_t n = strlen(b), pad = (4 - n % 4) % 4;
	char *s = malloc(n + pad + 1), *out = malloc(n + 4);
	int len;

	assert_true(!strncmp(token, EKS_TOKEN_PREFIX, strlen(EKS_TOKEN_PREFIX)));
	for (size_t i = 0; i < n; i++)
		s[i] = b[i] == '-' ? '+' : b[i] == '_' ? '/' : b[i];
	memset(s + n, '=', pad);
	s[n + pad] = '\0';
	len = EVP_DecodeBlock((unsigned char *)out, (unsigned char *)s, (int)(n + pad));
	assert_true(len >= 0);
	out[len - (int)pad] = '\0';
	free(s);
	return out;
}

/* X-Amz-Date=... in the token's URL, as a time. */
static time_t token_date(const char *token)
{
	char *url = token_url(token), *d = strstr(url, "X-Amz-Date=");
	struct tm tm = {0};

	assert_non_null(d);
	assert_non_null(strptime(d + 11, "%Y%m%dT%H%M%SZ", &tm));
	free(url);
	return timegm(&tm);
}

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
	mg_creds_eks_session_name(&a, s, sizeof(s));
	assert_string_equal(s, "mcpgate-ai-agent-0");
	mg_creds_eks_session_name(&b, s, sizeof(s));
	assert_int_equal(strlen(s), 64);
	assert_string_equal(s, "mcpgate-a-very-long-namespace-name-for-testing-and-an-even-longe");
	mg_creds_eks_session_name(&c, s, sizeof(s));
	assert_string_equal(s, "mcpgate-ns-p--d-x-y");
	assert_true(mg_creds_all_chars(s, "_+=,.@-", 2, 64));
}

static void test_extra_header_name(void **state)
{
	char *n;

	(void)state;
	n = mg_creds_impersonate_extra_header("mcpgate.io/pod-uid");
	assert_string_equal(n, "Impersonate-Extra-mcpgate.io%2fpod-uid");
	free(n);
	n = mg_creds_impersonate_extra_header("mcpgate.io/approval-id");
	assert_string_equal(n, "Impersonate-Extra-mcpgate.io%2fapproval-id");
	free(n);
	n = mg_creds_impersonate_extra_header("Scopes%Of Them:\xc3\xa9");
	assert_string_equal(n, "Impersonate-Extra-scopes%25of%20them%3a%c3%a9");
	free(n);
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
	mg_creds_safe_message(m, sizeof(m), "first line\nsecond line with SECRETTOKEN", "SECRETTOKEN");
	assert_string_equal(m, "first line");
	mg_creds_safe_message(m, sizeof(m), "token SECRETTOKEN inline", "SECRETTOKEN");
	assert_string_equal(m, "token *********** inline");
}

/* ---- impersonate ---- */

static char tmpdir[64];

static char *write_file(const char *name, const char *content)
{
	char *p;
	FILE *f;

	assert_true(asprintf(&p, "%s/%s", tmpdir, name) > 0);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
	return p;
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

/* ---- the fakes ---- */

struct fake {
	pid_t pid;
	int port;
	bool tls;
	char base[64]; /* http[s]://127.0.0.1:port */
	char host[32]; /* 127.0.0.1:port */
};

static struct fake plain, tls_fake;
static char cert[128], key[128], srcdir[512];
static bool have_tls;

#define PI_TOKEN  "pod-identity-token/+=value"
#define API_TOKEN "daemon-api-token"

static void src_path(char *out, size_t n, const char *rel)
{
	snprintf(out, n, "%s/%s", srcdir, rel);
}

static int start_fake(struct fake *f, bool tls)
{
	char script[600], portfile[128], buf[32];
	struct timespec ts = {0, 50 * 1000 * 1000};
	FILE *pf;

	src_path(script, sizeof(script), "tests/e2e/fakests.py");
	snprintf(portfile, sizeof(portfile), "%s/port-%d", tmpdir, tls);
	f->tls = tls;
	f->pid = fork();
	if (f->pid < 0)
		return -1;
	if (f->pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		/* Never outlive the test, even if it crashes. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(fd, 1);
		if (tls)
			execl("/usr/bin/python3", "python3", script, "--port-file", portfile,
			      "--pod-identity-token", PI_TOKEN, "--api-token", API_TOKEN,
			      "--tls-cert", cert, "--tls-key", key, (char *)NULL);
		else
			execl("/usr/bin/python3", "python3", script, "--port-file", portfile,
			      "--pod-identity-token", PI_TOKEN, "--api-token", API_TOKEN,
			      (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		pf = fopen(portfile, "r");
		if (pf) {
			bool ok = fgets(buf, sizeof(buf), pf) != NULL;

			fclose(pf);
			if (ok) {
				f->port = atoi(buf);
				snprintf(f->host, sizeof(f->host), "127.0.0.1:%d", f->port);
				snprintf(f->base, sizeof(f->base), "%s://%s",
					 tls ? "https" : "http", f->host);
				unlink(portfile);
				return 0;
			}
		}
		nanosleep(&ts, NULL);
	}
	return -1;
}

static void stop_fake(struct fake *f)
{
	if (f->pid > 0) {
		kill(f->pid, SIGTERM);
		waitpid(f->pid, NULL, 0);
		f->pid = 0;
	}
}

static int setup_fakes(void **state)
{
	const char *sd = getenv("MG_SRCDIR");
	char cmd[512];

	(void)state;
	if (sd) {
		snprintf(srcdir, sizeof(srcdir), "%s", sd);
	} else {
		/* __FILE__ is tests/unit/test_creds.c relative to where the
		 * compiler ran, which is the repository root. */
		char *at;

		snprintf(srcdir, sizeof(srcdir), "%s", __FILE__);
		at = strstr(srcdir, "tests/unit/test_creds.c");
		if (at)
			*at = '\0';
		if (!at || !srcdir[0])
			snprintf(srcdir, sizeof(srcdir), ".");
	}
	snprintf(cert, sizeof(cert), "%s/fake.crt", tmpdir);
	snprintf(key, sizeof(key), "%s/fake.key", tmpdir);
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
		 "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
		 "-addext basicConstraints=critical,CA:TRUE -keyout %s -out %s >/dev/null 2>&1",
		 key, cert);
	if (start_fake(&plain, false) < 0)
		return -1;
	have_tls = system(cmd) == 0 && start_fake(&tls_fake, true) == 0;
	if (!have_tls)
		fprintf(stderr, "test_creds: no https fake (openssl CLI?), https tests skipped\n");
	return 0;
}

static int teardown_fakes(void **state)
{
	(void)state;
	stop_fake(&plain);
	stop_fake(&tls_fake);
	unlink(cert);
	unlink(key);
	return 0;
}

struct body {
	char *p;
	size_t n;
};

static size_t collect(char *p, size_t sz, size_t nm, void *data)
{
	struct body *b = data;

	b->p = realloc(b->p, b->n + sz * nm + 1);
	memcpy(b->p + b->n, p, sz * nm);
	b->n += sz * nm;
	b->p[b->n] = '\0';
	return sz * nm;
}

/* A plain request to a fake; returns the body (malloc'd), <*status>. */
static char *fake_http(const struct fake *f, const char *path, const char *post,
		       const char *extra_header, long *status)
{
	struct body b = {NULL, 0};
	struct curl_slist *h = NULL;
	CURL *c = curl_easy_init();
	char *url;

	assert_true(asprintf(&url, "%s%s", f->base, path) > 0);
	if (extra_header)
		h = curl_slist_append(h, extra_header);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (f->tls)
		curl_easy_setopt(c, CURLOPT_CAINFO, cert);
	if (post)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	free(url);
	return b.p ? b.p : strdup("");
}

static void fake_control(const struct fake *f, const char *json)
{
	long st;

	free(fake_http(f, "/_control", json, "Content-Type: application/json", &st));
	assert_int_equal(st, 200);
}

/* Sets the fake's clock to ours: it checks X-Amz-Date skew and issues
 * expirations with it. */
static void fake_sync(const struct fake *f)
{
	char j[64];

	snprintf(j, sizeof(j), "{\"now\": %lld}", (long long)fake_now);
	fake_control(f, j);
}

static void fake_reset(const struct fake *f)
{
	long st;

	free(fake_http(f, "/_reset", "", NULL, &st));
	fake_control(f, "{\"mode\": \"up\", \"pod_identity_duration\": 21600}");
	fake_sync(f);
}

static json_t *fake_requests(const struct fake *f)
{
	long st;
	char *b = fake_http(f, "/_requests", NULL, NULL, &st);
	json_t *j = json_loads(b, 0, NULL);

	free(b);
	assert_true(json_is_array(j));
	return j;
}

static size_t count_action(json_t *reqs, const char *action)
{
	size_t i, n = 0;
	json_t *v;

	json_array_foreach(reqs, i, v) if (!strcmp(json_string_value(json_object_get(v, "action")),
						   action)) n++;
	return n;
}

/* The last request with <action>. */
static json_t *last_action(json_t *reqs, const char *action)
{
	json_t *v, *last = NULL;
	size_t i;

	json_array_foreach(reqs, i, v) if (!strcmp(json_string_value(json_object_get(v, "action")),
						   action)) last = v;
	assert_non_null(last);
	return last;
}

static const char *jstr(json_t *o, const char *a, const char *b)
{
	json_t *v = json_object_get(o, a);

	if (b)
		v = json_object_get(v, b);
	return json_string_value(v);
}

/* Asks the fake STS, as aws-iam-authenticator asks STS, who signed
 * <token>: GET of the presigned URL with x-k8s-aws-id: <cluster>. Returns
 * the ARN (malloc'd) or the error code. */
static char *caller_arn(const struct fake *f, const char *token, const char *cluster)
{
	char *url = token_url(token), *q = strchr(url, '?'), path[8192], hdr[300], *b, *s, *e;
	long st;

	assert_non_null(q);
	assert_true(!strncmp(url, f->base, strlen(f->base)));
	snprintf(path, sizeof(path), "/%s", q);
	snprintf(hdr, sizeof(hdr), "x-k8s-aws-id: %s", cluster);
	b = fake_http(f, path, NULL, hdr, &st);
	if (getenv("DEBUG_CREDS"))
		fprintf(stderr, "caller_arn %s -> %ld %s\n", path, st, b);
	free(url);
	s = strstr(b, st == 200 ? "<Arn>" : "<Code>");
	assert_non_null(s);
	s += st == 200 ? 5 : 6;
	e = strchr(s, '<');
	s = strndup(s, (size_t)(e - s));
	free(b);
	return s;
}

/* eks_token_check.py on <token>: the identity JSON (caller json_decref()s). */
static json_t *python_check(const char *token, const char *cluster, const char *host)
{
	char script[600], *cmd;
	json_t *j;
	FILE *p;

	src_path(script, sizeof(script), "tests/e2e/eks_token_check.py");
	assert_true(asprintf(&cmd, "/usr/bin/python3 %s --cluster %s --host %s --now %lld -- %s",
			     script, cluster, host, (long long)fake_now, token) > 0);
	p = popen(cmd, "r");
	assert_non_null(p);
	j = json_loadf(p, 0, NULL);
	pclose(p);
	free(cmd);
	assert_non_null(j);
	return j;
}

/* ---- STS through the fake ---- */

#define NODE_ROLE "arn:aws:iam::123456789012:role/mcpgate-node"
#define EXEC_ROLE "arn:aws:iam::123456789012:role/mcp-exec"
#define POD_UID	  "0f3c9d62-1a2b-4c5d-8e9f-0123456789ab"

static void irsa_env(struct envtab *env, const char *jwt_file)
{
	env_set(env, "AWS_ROLE_ARN", NODE_ROLE);
	env_set(env, "AWS_WEB_IDENTITY_TOKEN_FILE", jwt_file);
	env_set(env, "AWS_ROLE_SESSION_NAME", "mcpgate-node");
}

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

/* ---- eks_token_check.py, the fake API server's token check ---- */

static char *replace(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);
	char *o;

	assert_non_null(at);
	assert_true(asprintf(&o, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from)) > 0);
	return o;
}

static char *make_token(const char *url)
{
	char *b = mg_creds_base64url(url, strlen(url)), *t;

	assert_true(asprintf(&t, EKS_TOKEN_PREFIX "%s", b) > 0);
	free(b);
	return t;
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

/* ---- threads ---- */

struct worker {
	struct mg_creds *c;
	int fails;
};

static void *hammer(void *data)
{
	struct worker *w = data;

	for (int i = 0; i < 50; i++) {
		const struct mg_creds_subject who = {.ns = "ai",
						     .pod = "agent-0",
						     .uid = i % 2 ? POD_UID : "11111111-2222-3333",
						     .approval_id = "a"};
		struct mg_creds_result r;

		if (mg_creds_get(w->c, &who, &r) < 0)
			w->fails++;
		mg_creds_result_free(&r);
	}
	return NULL;
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
		cmocka_unit_test(test_awscli_exec_credential),
		cmocka_unit_test(test_awscli_provider_token),
		cmocka_unit_test(test_eks_cache_refresh),
		cmocka_unit_test(test_eks_env_errors),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_session_name),
		cmocka_unit_test(test_extra_header_name),
		cmocka_unit_test(test_base64url),
		cmocka_unit_test(test_safe_message),
		cmocka_unit_test(test_impersonate),
		cmocka_unit_test(test_provider_by_name),
	};
	const struct CMUnitTest network[] = {
		cmocka_unit_test(test_irsa),
		cmocka_unit_test(test_assume_role),
		cmocka_unit_test(test_assume_role_chained),
		cmocka_unit_test(test_sts_errors),
		cmocka_unit_test(test_stale_while_down),
		cmocka_unit_test(test_pod_identity),
		cmocka_unit_test(test_chain_order),
		cmocka_unit_test(test_exec_credential_role),
		cmocka_unit_test(test_serviceaccount),
		cmocka_unit_test(test_token_check_rejects),
		cmocka_unit_test(test_threads),
	};
	int fails;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mg-test-creds-XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fails = cmocka_run_group_tests_name("creds", offline, NULL, NULL);
	fails += cmocka_run_group_tests_name("creds-fakests", network, setup_fakes, teardown_fakes);
	rmdir(tmpdir);
	curl_global_cleanup();
	return fails;
}
