/*
 * creds/aws: the daemon's own AWS credentials, the chain awscli and the
 * SDKs follow (environment keys, IRSA web identity, EKS Pod Identity /
 * container credentials), and the STS calls (form bodies, SigV4, answers)
 * that the eks provider's AssumeRole shares.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "mcpgate/creds.h"
#include "mcpgate/sigv4.h"

#include "provider.h"

/* ARNs go into form bodies and error lines: visible ASCII only. */
bool mg_creds_arn_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 20 || n > MG_SIGV4_MAX_ARN || strncmp(s, "arn:", 4))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/* ---- AWS: the daemon's own credentials ---- */

/* Whether an STS failure may pass (and a still-valid cached token be used
 * meanwhile): transport errors, 5xx, throttling. An explicit refusal
 * (AccessDenied, ExpiredToken, ...) never is. */
static bool transient_code(const char *code)
{
	return !strcmp(code, "Throttling") || !strcmp(code, "ServiceUnavailable") ||
	       !strcmp(code, "InternalFailure") || !strcmp(code, "RequestTimeout") ||
	       !strcmp(code, "IDPCommunicationError") || !strcmp(code, "STSUnavailable");
}

/* Sends the form <body> (<action> into <role>) to STS with the extra
 * <headers>, parses the answer into <cr>. Error lines name the action and
 * the role, since that is the trust a reviewer has to fix; <secret> is
 * blanked out of any message STS sends back.
 */
int mg_creds_sts_call(struct mg_creds *c, const char *action, const char *role, const char *body,
		      const char *const *headers, size_t nh, const char *secret,
		      struct aws_creds *cr, struct mg_creds_result *out)
{
	struct http_req q = {
		.url = c->sts_url,
		.headers = headers,
		.n_headers = nh,
		.body = body,
		.body_len = strlen(body),
		.ca_file = c->cfg.sts_ca_file,
		.timeout_ms = c->cfg.timeout_ms,
		.no_proxy = c->sts_no_proxy,
	};
	struct mg_sigv4_sts_resp *sr;
	struct mg_sigv4_err perr;
	struct http_resp r;
	char msg[sizeof(out->message)];
	ssize_t pr;
	int ret;

	ret = mg_creds_http_do(&q, &r);
	if (ret == -ENOMEM)
		return mg_creds_set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
	if (ret < 0)
		return mg_creds_set_error(out, -EAGAIN, 502, "STSUnavailable",
					  "sts:%s %s at %s: %s", action, role, c->sts_host, r.err);
	sr = malloc(sizeof(*sr));
	if (!sr) {
		mg_creds_http_resp_free(&r);
		return mg_creds_set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
	}
	pr = mg_sigv4_sts_parse(r.body, r.len, action, sr, &perr);
	if (pr <= 0) {
		ret = mg_creds_set_error(
			out, r.status >= 500 ? -EAGAIN : -EPROTO, 502,
			r.status >= 500 ? "STSUnavailable" : "STSBadResponse",
			"sts:%s %s at %s: HTTP %ld, unreadable answer (%s at byte %zu)", action,
			role, c->sts_host, r.status, pr == 0 ? "truncated" : perr.reason, perr.pos);
	} else if (sr->kind == MG_SIGV4_STS_ERROR) {
		mg_creds_safe_message(msg, sizeof(msg), sr->error_message, secret);
		mg_creds_set_error(out, 0, 502, "", "sts:%s %s: %s: %s", action, role,
				   sr->error_code, msg);
		/* The code names the failure in the client's Status: keep it
		 * to a token's alphabet. */
		mg_creds_safe_message(out->reason, sizeof(out->reason), sr->error_code, NULL);
		for (char *p = out->reason; *p; p++)
			if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
				*p = '_';
		ret = r.status >= 500 || transient_code(out->reason) ? -EAGAIN : -EACCES;
	} else if (r.status != 200) {
		ret = mg_creds_set_error(out, -EPROTO, 502, "STSBadResponse",
					 "sts:%s %s at %s: credentials with HTTP %ld", action, role,
					 c->sts_host, r.status);
	} else {
		snprintf(cr->akid, sizeof(cr->akid), "%s", sr->access_key_id);
		snprintf(cr->secret, sizeof(cr->secret), "%s", sr->secret_access_key);
		snprintf(cr->token, sizeof(cr->token), "%s", sr->session_token);
		cr->expiration = sr->expiration;
		ret = 0;
	}
	mg_sigv4_sts_resp_wipe(sr);
	mg_creds_wipe_free(sr, sizeof(*sr));
	mg_creds_http_resp_free(&r);
	return ret;
}

/* Appends the byte <ch> to the malloc'd form body <*b> (copying, then
 * wiping the old block: bodies carry web identity tokens). */
static int form_addc(char **b, size_t *len, char ch)
{
	char *n = malloc(*len + 2);

	if (!n)
		return -ENOMEM;
	if (*b) {
		memcpy(n, *b, *len);
		mg_creds_wipe_free(*b, *len + 1);
	}
	n[(*len)++] = ch;
	n[*len] = '\0';
	*b = n;
	return 0;
}

/* Appends "[&]<name>=<value>" to the form body <*b>, both escaped the way
 * the AWS query protocol (and SigV4) escape. */
int mg_creds_form_add(char **b, size_t *len, const char *name, const char *value)
{
	int ret = *len ? form_addc(b, len, '&') : 0;

	ret = ret ?: mg_sigv4_escape_append(b, len, name, strlen(name), false);
	ret = ret ?: form_addc(b, len, '=');
	return ret ?: mg_sigv4_escape_append(b, len, value, strlen(value), false);
}

/* IRSA: AssumeRoleWithWebIdentity, an unsigned call (the web identity
 * token is the credential). */
static int fetch_web_identity(struct mg_creds *c, const char *role, const char *token_file,
			      time_t now, struct aws_creds *cr, struct mg_creds_result *out)
{
	const char *hdrs[] = {"Content-Type: " FORM_TYPE};
	const char *sess = mg_creds_env(c, "AWS_ROLE_SESSION_NAME");
	char *jwt = NULL, *body = NULL, gen[40];
	size_t blen = 0;
	int ret;

	if (!mg_creds_arn_ok(role))
		return mg_creds_set_error(out, -EINVAL, 502, "NoCredentials",
					  "AWS_ROLE_ARN is not an ARN");
	if (sess && !mg_creds_all_chars(sess, "_+=,.@-", 2, 64))
		return mg_creds_set_error(out, -EINVAL, 502, "NoCredentials",
					  "AWS_ROLE_SESSION_NAME is not 2-64 of [\\w+=,.@-]");
	if (!sess) {
		snprintf(gen, sizeof(gen), "mcpgate-%lld", (long long)now);
		sess = gen;
	}
	ret = mg_creds_read_secret_file(token_file, &jwt);
	if (ret < 0)
		return mg_creds_set_error(out, ret, 502, "NoCredentials",
					  "web identity token file %s: %s", token_file,
					  strerror(-ret));
	if (!*jwt) {
		mg_creds_wipe_free(jwt, MAX_FILE + 1);
		return mg_creds_set_error(out, -EINVAL, 502, "NoCredentials",
					  "web identity token file %s is empty", token_file);
	}
	ret = mg_creds_form_add(&body, &blen, "Action", "AssumeRoleWithWebIdentity");
	ret = ret ?: mg_creds_form_add(&body, &blen, "Version", STS_VERSION);
	ret = ret ?: mg_creds_form_add(&body, &blen, "RoleArn", role);
	ret = ret ?: mg_creds_form_add(&body, &blen, "RoleSessionName", sess);
	ret = ret ?: mg_creds_form_add(&body, &blen, "WebIdentityToken", jwt);
	if (ret < 0)
		ret = mg_creds_set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
	else
		ret = mg_creds_sts_call(c, "AssumeRoleWithWebIdentity", role, body, hdrs, 1, jwt,
					cr, out);
	mg_creds_wipe_free(jwt, MAX_FILE + 1);
	mg_creds_wipe_str(body);
	return ret;
}

/* Hosts the container provider may reach over plain http: loopback, the
 * ECS agent and the EKS Pod Identity agent (as the SDKs allow). */
static bool container_host_ok(const char *host, size_t n)
{
	static const char *const ok[] = {"169.254.170.2", "169.254.170.23", "[fd00:ec2::23]"};

	if (mg_creds_is_loopback_host(host, n))
		return true;
	for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
		if (strlen(ok[i]) == n && !strncmp(host, ok[i], n))
			return true;
	return false;
}

static int json_str(json_t *o, const char *k, char *dst, size_t n)
{
	const char *v = json_string_value(json_object_get(o, k));

	if (!v || !*v || strlen(v) >= n)
		return -EINVAL;
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

/* EKS Pod Identity (the container credential provider): GET the agent's
 * URL with the Authorization header from the token file, read afresh each
 * time because the projected token rotates. */
static int fetch_container(struct mg_creds *c, const char *url, struct aws_creds *cr,
			   struct mg_creds_result *out)
{
	char scheme[8], auth[AUTHORITY_MAX], path[URL_PATH_MAX], *tok = NULL, *hdr = NULL;
	const char *file = mg_creds_env(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	const char *host, *hdrs[2];
	struct http_req q = {.url = url, .timeout_ms = c->cfg.timeout_ms};
	struct http_resp r;
	json_error_t jerr;
	json_t *j = NULL;
	size_t hlen;
	char exp[64];
	int ret;

	if (mg_creds_split_url(url, scheme, sizeof(scheme), auth, sizeof(auth), path, sizeof(path),
			       &host, &hlen) < 0)
		return mg_creds_set_error(out, -EINVAL, 502, "NoCredentials",
					  "container credentials URL is invalid");
	if (!strcmp(scheme, "http") && !container_host_ok(host, hlen))
		return mg_creds_set_error(
			out, -EINVAL, 502, "NoCredentials",
			"container credentials over http only to loopback or the agent address");
	q.no_proxy = !strcmp(scheme, "http");
	if (file) {
		ret = mg_creds_read_secret_file(file, &tok);
		if (ret < 0)
			return mg_creds_set_error(out, ret, 502, "NoCredentials",
						  "container authorization token file %s: %s", file,
						  strerror(-ret));
	} else if (mg_creds_env(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN")) {
		tok = strdup(mg_creds_env(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN"));
		if (!tok)
			return mg_creds_set_error(out, -ENOMEM, 500, "InternalError",
						  "out of memory");
	}
	if (tok && !mg_creds_header_safe(tok)) {
		ret = mg_creds_set_error(out, -EINVAL, 502, "NoCredentials",
					 "container authorization token has control characters");
		goto done;
	}
	if (tok && asprintf(&hdr, "Authorization: %s", tok) < 0) {
		hdr = NULL;
		ret = mg_creds_set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
		goto done;
	}
	hdrs[0] = "Accept: application/json";
	hdrs[1] = hdr;
	q.headers = hdrs;
	q.n_headers = hdr ? 2 : 1;
	ret = mg_creds_http_do(&q, &r);
	if (ret == -ENOMEM) {
		ret = mg_creds_set_error(out, ret, 500, "InternalError", "out of memory");
		goto done;
	}
	if (ret < 0) {
		ret = mg_creds_set_error(out, -EAGAIN, 502, "PodIdentityUnavailable",
					 "credentials agent %s: %s", auth, r.err);
		goto done;
	}
	j = json_loadb(r.body, r.len, JSON_REJECT_DUPLICATES, &jerr);
	if (r.status != 200) {
		const char *code = json_string_value(json_object_get(j, "code"));
		const char *msg = json_string_value(json_object_get(j, "message"));
		char m[200] = "";

		if (msg)
			mg_creds_safe_message(m, sizeof(m), msg, tok);
		ret = mg_creds_set_error(
			out, r.status >= 500 ? -EAGAIN : -EACCES, 502, "PodIdentityError",
			"credentials agent %s: HTTP %ld %s%s%s", auth, r.status,
			code && mg_creds_header_safe(code) && strlen(code) < 64 ? code : "",
			m[0] ? ": " : "", m);
	} else if (!json_is_object(j) || json_str(j, "AccessKeyId", cr->akid, sizeof(cr->akid)) ||
		   json_str(j, "SecretAccessKey", cr->secret, sizeof(cr->secret)) ||
		   json_str(j, "Token", cr->token, sizeof(cr->token)) ||
		   json_str(j, "Expiration", exp, sizeof(exp)) ||
		   mg_sigv4_parse_time(mg_str_of(exp), &cr->expiration)) {
		ret = mg_creds_set_error(
			out, -EPROTO, 502, "PodIdentityBadResponse",
			"credentials agent %s: answer lacks AccessKeyId, SecretAccessKey, Token "
			"or Expiration",
			auth);
	} else {
		ret = 0;
	}
	if (j) {
		/* jansson keeps its own copies of the strings: wipe them. */
		const char *keys[] = {"SecretAccessKey", "Token"};

		for (size_t i = 0; i < 2; i++) {
			const char *v = json_string_value(json_object_get(j, keys[i]));

			if (v)
				OPENSSL_cleanse((char *)v, strlen(v));
		}
		json_decref(j);
	}
	mg_creds_http_resp_free(&r);
done:
	if (tok)
		mg_creds_wipe_str(tok);
	mg_creds_wipe_str(hdr);
	return ret;
}

/* The daemon's AWS credentials, in the SDK default-chain order restricted
 * to the sources a pod can have: environment, IRSA, container (Pod
 * Identity). The fetched ones are cached until REFRESH_MARGIN before they
 * expire; environment keys are read afresh.
 */
int mg_creds_aws_base(struct mg_creds *c, time_t now, struct aws_creds *cr,
		      struct mg_creds_result *out)
{
	enum mg_creds_aws_source src = c->cfg.aws_source;
	const char *ak = mg_creds_env(c, "AWS_ACCESS_KEY_ID"),
		   *sk = mg_creds_env(c, "AWS_SECRET_ACCESS_KEY");
	const char *role = mg_creds_env(c, "AWS_ROLE_ARN"),
		   *wif = mg_creds_env(c, "AWS_WEB_IDENTITY_TOKEN_FILE");
	const char *full = mg_creds_env(c, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
	const char *rel = mg_creds_env(c, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	enum base_source want = BASE_NONE;
	char url[URL_MAX];
	int ret;

	if ((src == MG_CREDS_AWS_CHAIN || src == MG_CREDS_AWS_ENV) && (ak || sk)) {
		const char *st = mg_creds_env(c, "AWS_SESSION_TOKEN");

		if (!ak || !sk)
			return mg_creds_set_error(
				out, -EINVAL, 502, "NoCredentials",
				"only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set");
		if (strlen(ak) >= sizeof(cr->akid) || strlen(sk) >= sizeof(cr->secret) ||
		    (st && strlen(st) >= sizeof(cr->token)))
			return mg_creds_set_error(
				out, -EINVAL, 502, "NoCredentials",
				"AWS credentials in the environment are too long");
		memset(cr, 0, sizeof(*cr));
		memcpy(cr->akid, ak, strlen(ak) + 1);
		memcpy(cr->secret, sk, strlen(sk) + 1);
		if (st)
			memcpy(cr->token, st, strlen(st) + 1);
		return 0;
	}
	if ((src == MG_CREDS_AWS_CHAIN || src == MG_CREDS_AWS_WEB_IDENTITY) && role && wif)
		want = BASE_WEB_IDENTITY;
	else if ((src == MG_CREDS_AWS_CHAIN || src == MG_CREDS_AWS_POD_IDENTITY) && (full || rel))
		want = BASE_CONTAINER;
	if (want == BASE_NONE)
		return mg_creds_set_error(
			out, -ENOENT, 502, "NoCredentials",
			"no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, IRSA "
			"(AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE) or EKS Pod Identity");

	pthread_mutex_lock(&c->lock);
	if (c->base_src == want && c->base.expiration - now >= REFRESH_MARGIN) {
		*cr = c->base;
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	pthread_mutex_unlock(&c->lock);

	memset(cr, 0, sizeof(*cr));
	if (want == BASE_WEB_IDENTITY) {
		ret = fetch_web_identity(c, role, wif, now, cr, out);
	} else {
		if (full)
			snprintf(url, sizeof(url), "%s", full);
		else
			snprintf(url, sizeof(url), "http://169.254.170.2%s", rel);
		ret = fetch_container(c, url, cr, out);
	}
	if (ret < 0) {
		OPENSSL_cleanse(cr, sizeof(*cr));
		return ret;
	}
	pthread_mutex_lock(&c->lock);
	c->base = *cr;
	c->base_src = want;
	pthread_mutex_unlock(&c->lock);
	return 0;
}
