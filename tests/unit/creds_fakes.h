/*
 * Fixtures of the credential provider tests (test_creds.c, test_aws.c,
 * test_eks.c, test_serviceaccount.c, test_impersonate.c), which test
 * together: the eks provider against tokens produced by awscli, its cache and
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
#ifndef MCPGATE_TEST_CREDS_FAKES_H
#define MCPGATE_TEST_CREDS_FAKES_H

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
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "mcpgate/creds.h"

#include "../../userspace/creds/provider.h"

/* Each test uses some of these. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"

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
		/* __FILE__ is tests/unit/creds_fakes.h relative to where the
		 * compiler ran, which is the repository root. */
		char *at;

		snprintf(srcdir, sizeof(srcdir), "%s", __FILE__);
		at = strstr(srcdir, "tests/unit/creds_fakes.h");
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

#endif /* MCPGATE_TEST_CREDS_FAKES_H */
