/*
 * libFuzzer target for the sigv4 module. First byte picks the mode:
 *   0/1  the STS XML reader, as an AssumeRole / AssumeRoleWithWebIdentity
 *        answer; a valid verdict must consume everything, fill the fields
 *        its kind requires, and be reached again on a second run;
 *   2    the timestamp parser (a success must format back to a time that
 *        parses to the same value);
 *   3    the signer, fed NUL-separated path, query name/value, header
 *        name/value: it must either refuse or produce a 64-hex signature
 *        that is the same on a second run.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../userspace/net/sigv4.c"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

static char *copy(const uint8_t *d, size_t n)
{
	char *p = malloc(n ? n : 1);

	CHECK(p);
	if (n)
		memcpy(p, d, n);
	return p;
}

static void fuzz_sts(const uint8_t *d, size_t n, const char *action)
{
	static struct mg_sigv4_sts_resp r, r2;
	struct mg_sigv4_err e;
	char *b = copy(d, n);
	ssize_t ret = mg_sigv4_sts_parse(b, n, action, &r, &e);

	CHECK(ret == -1 || ret == 0 || ret == (ssize_t)n);
	if (ret < 0)
		CHECK(e.reason && e.pos <= n);
	if (ret > 0) {
		CHECK(strlen(r.error_message) < sizeof(r.error_message));
		CHECK(strlen(r.session_token) <= MG_SIGV4_MAX_SESSION_TOKEN);
		if (r.kind == MG_SIGV4_STS_CREDENTIALS)
			CHECK(r.access_key_id[0] && r.secret_access_key[0] && r.session_token[0]);
		else
			CHECK(r.kind == MG_SIGV4_STS_ERROR && r.error_code[0]);
		CHECK(mg_sigv4_sts_parse(b, n, action, &r2, &e) == ret);
		CHECK(r2.kind == r.kind && !strcmp(r2.session_token, r.session_token) &&
		      !strcmp(r2.error_message, r.error_message));
	}
	free(b);
}

static void fuzz_time(const uint8_t *d, size_t n)
{
	char *b = copy(d, n);
	time_t t, t2;

	if (mg_sigv4_parse_time((struct mg_str){b, n}, &t) == 0) {
		char s[32];
		struct tm tm;

		CHECK(gmtime_r(&t, &tm));
		strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
		CHECK(mg_sigv4_parse_time(mg_str_of(s), &t2) == 0 && t2 == t);
	}
	free(b);
}

static void fuzz_sign(const uint8_t *d, size_t n)
{
	char *b = malloc(n + 5), *f[5];
	struct mg_sigv4_kv q, h;
	struct mg_sigv4_signed s1, s2;
	struct mg_sigv4_req r = {
		.method = "GET",
		.host = "sts.amazonaws.com",
		.region = "us-east-1",
		.service = "sts",
		.when = 1440938160,
	};
	const struct mg_sigv4_creds c = {"AKIDEXAMPLE", "secret", "tok/+="};
	size_t k = 0;

	CHECK(b);
	memcpy(b, d, n);
	memset(b + n, 0, 5);
	f[0] = b;
	for (size_t i = 0; i < n && k < 4; i++)
		if (!b[i])
			f[++k] = b + i + 1;
	while (k < 4)
		f[++k] = b + n;
	q = (struct mg_sigv4_kv){f[1], f[2]};
	h = (struct mg_sigv4_kv){f[3], f[4]};
	r.path = f[0];
	r.normalize_path = n & 1;
	r.expires = n & 2 ? 60 : 0;
	r.query = &q;
	r.n_query = 1;
	r.headers = &h;
	r.n_headers = *f[3] ? 1 : 0;
	if (mg_sigv4_sign(&r, &c, &s1) == 0) {
		CHECK(strlen(s1.signature) == 64);
		CHECK(strstr(s1.canonical_request, s1.signed_headers));
		CHECK(mg_sigv4_sign(&r, &c, &s2) == 0 && !strcmp(s1.signature, s2.signature));
		mg_sigv4_signed_free(&s2);
		mg_sigv4_signed_free(&s1);
	}
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] & 3) {
	case 0:
		fuzz_sts(data + 1, size - 1, "AssumeRole");
		break;
	case 1:
		fuzz_sts(data + 1, size - 1, "AssumeRoleWithWebIdentity");
		break;
	case 2:
		fuzz_time(data + 1, size - 1);
		break;
	default:
		fuzz_sign(data + 1, size - 1);
		break;
	}
	return 0;
}
