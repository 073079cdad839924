/*
 * creds/serviceaccount: a short-lived token of the pod's ServiceAccount (or
 * a configured one) from the TokenRequest API, with the daemon's own
 * token; cached per namespace/account and refreshed at 80% of its life.
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

#include "provider.h"

/* ---- serviceaccount ---- */

static int tokenrequest(struct mg_creds *c, const char *ns, const char *sa, time_t now,
			char **token, time_t *exp, struct mg_creds_result *out)
{
	char *bearer = NULL, *hauth = NULL, *body = NULL, *url = NULL;
	const char *hdrs[3];
	struct http_req q = {.ca_file = c->cfg.api_ca_file, .timeout_ms = c->cfg.timeout_ms};
	struct http_resp r = {0};
	json_t *req = NULL, *aud, *j = NULL;
	json_error_t jerr;
	const char *tok, *ts;
	int ret;

	ret = mg_creds_read_secret_file(c->cfg.token_file, &bearer);
	if (ret < 0)
		return mg_creds_set_error(out, ret, 500, "NoCredentials", "token file %s: %s",
					  c->cfg.token_file, strerror(-ret));
	req = json_pack("{s:s, s:s, s:{s:I}}", "apiVersion", "authentication.k8s.io/v1", "kind",
			"TokenRequest", "spec", "expirationSeconds",
			(json_int_t)c->cfg.expiration_seconds);
	if (req && c->cfg.n_audiences) {
		aud = json_array();
		for (size_t i = 0; aud && i < c->cfg.n_audiences; i++)
			if (json_array_append_new(aud, json_string(c->cfg.audiences[i])))
				break;
		if (!aud || json_array_size(aud) != c->cfg.n_audiences ||
		    json_object_set_new(json_object_get(req, "spec"), "audiences", aud)) {
			json_decref(req);
			req = NULL;
		}
	}
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!*bearer || !mg_creds_header_safe(bearer)) {
		ret = mg_creds_set_error(out, -EINVAL, 500, "NoCredentials",
					 "token file %s is empty or not one line",
					 c->cfg.token_file);
		goto out;
	}
	if (!body || asprintf(&hauth, "Authorization: Bearer %s", bearer) < 0)
		hauth = NULL;
	if (!hauth || asprintf(&url, "%s/api/v1/namespaces/%s/serviceaccounts/%s/token",
			       c->cfg.api_server, ns, sa) < 0) {
		url = NULL;
		ret = mg_creds_set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
		goto out;
	}
	hdrs[0] = hauth;
	hdrs[1] = "Content-Type: application/json";
	hdrs[2] = "Accept: application/json";
	q.url = url;
	q.headers = hdrs;
	q.n_headers = 3;
	q.body = body;
	q.body_len = strlen(body);
	ret = mg_creds_http_do(&q, &r);
	if (ret < 0) {
		ret = mg_creds_set_error(out, ret == -ENOMEM ? ret : -EAGAIN,
					 ret == -ENOMEM ? 500 : 502, "TokenRequestUnavailable",
					 "TokenRequest for %s/%s: %s", ns, sa, r.err);
		goto out;
	}
	j = json_loadb(r.body, r.len, JSON_REJECT_DUPLICATES, &jerr);
	if (r.status != 201 && r.status != 200) {
		const char *reason = json_string_value(json_object_get(j, "reason"));
		const char *msg = json_string_value(json_object_get(j, "message"));
		char m[200] = "";

		if (msg)
			mg_creds_safe_message(m, sizeof(m), msg, bearer);
		ret = mg_creds_set_error(
			out, r.status >= 500 ? -EAGAIN : -EACCES, 502, "TokenRequestFailed",
			"TokenRequest for %s/%s: HTTP %ld %s%s%s", ns, sa, r.status,
			reason && mg_creds_all_chars(reason, "", 1, 63) ? reason : "",
			m[0] ? ": " : "", m);
		goto out;
	}
	tok = json_string_value(json_object_get(json_object_get(j, "status"), "token"));
	ts = json_string_value(
		json_object_get(json_object_get(j, "status"), "expirationTimestamp"));
	if (!tok || !*tok || !mg_creds_header_safe(tok) || !ts ||
	    mg_sigv4_parse_time(mg_str_of(ts), exp) < 0 || *exp - now < MIN_VALIDITY) {
		ret = mg_creds_set_error(
			out, -EPROTO, 502, "TokenRequestBadResponse",
			"TokenRequest for %s/%s: no usable status.token/expirationTimestamp", ns,
			sa);
		goto out;
	}
	*token = strdup(tok);
	ret = *token ? 0 : mg_creds_set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
out:
	if (j) {
		tok = json_string_value(json_object_get(json_object_get(j, "status"), "token"));
		if (tok)
			OPENSSL_cleanse((char *)tok, strlen(tok));
		json_decref(j);
	}
	mg_creds_http_resp_free(&r);
	mg_creds_wipe_free(bearer, MAX_FILE + 1);
	mg_creds_wipe_str(hauth);
	free(body);
	free(url);
	return ret;
}

static int sa_get(struct mg_creds *c, const struct mg_creds_subject *who,
		  struct mg_creds_result *out)
{
	const char *ns = c->cfg.namespace_name ? c->cfg.namespace_name : who ? who->ns : NULL;
	const char *sa = c->cfg.service_account ? c->cfg.service_account
			 : who			? who->service_account
						: NULL;
	const time_t now = mg_creds_now(c);
	char key[KEY_MAX], *stale = NULL, *token = NULL;
	time_t stale_exp = 0, exp = 0;
	struct entry *e;
	int ret;

	if (!mg_creds_k8s_name_ok(ns) || !mg_creds_k8s_name_ok(sa))
		return mg_creds_set_error(out, -EINVAL, 500, "InvalidSubject",
					  "no valid namespace/serviceaccount for TokenRequest");
	snprintf(key, sizeof(key), "%s/%s", ns, sa);
	pthread_mutex_lock(&c->lock);
	e = mg_creds_cache_find(c, key);
	if (e && e->value && now < e->refresh_at && e->expiry - now >= MIN_VALIDITY) {
		e->last_used = now;
		ret = mg_creds_set_bearer(out, e->value);
		out->expiry = e->expiry;
		pthread_mutex_unlock(&c->lock);
		return ret;
	}
	if (e && e->value && e->expiry - now >= MIN_VALIDITY) {
		stale = strdup(e->value);
		stale_exp = e->expiry;
	}
	pthread_mutex_unlock(&c->lock);

	ret = tokenrequest(c, ns, sa, now, &token, &exp, out);
	if (ret < 0) {
		if (ret == -EAGAIN && stale) {
			memset(out, 0, sizeof(*out));
			ret = mg_creds_set_bearer(out, stale);
			out->expiry = stale_exp;
		}
		goto out;
	}
	ret = mg_creds_set_bearer(out, token);
	if (ret < 0)
		goto out;
	out->expiry = exp;
	pthread_mutex_lock(&c->lock);
	e = mg_creds_cache_get(c, key);
	if (e) {
		mg_creds_wipe_str(e->value);
		e->value = token;
		token = NULL;
		e->expiry = exp;
		/* Refresh at 80% of the lifetime, as kubelet does for projected
		 * tokens. */
		e->refresh_at = now + (exp - now) * 4 / 5;
		e->last_used = now;
	}
	pthread_mutex_unlock(&c->lock);
out:
	mg_creds_wipe_str(token);
	mg_creds_wipe_str(stale);
	return ret;
}

/* The serviceaccount part of the configuration; it also needs the
 * daemon's own token, as impersonate does. */
static int sa_check(struct mg_creds *c, char *errbuf, size_t errlen)
{
	const struct mg_creds_config *g = &c->cfg;

	if (!g->api_server || strncmp(g->api_server, "https://", 8)) {
		snprintf(errbuf, errlen, "serviceaccount: api server must be an https:// URL");
		return -EINVAL;
	}
	if (g->expiration_seconds && g->expiration_seconds < 600) {
		snprintf(errbuf, errlen, "serviceaccount: expiration must be >= 600 seconds");
		return -EINVAL;
	}
	if ((g->namespace_name && !mg_creds_k8s_name_ok(g->namespace_name)) ||
	    (g->service_account && !mg_creds_k8s_name_ok(g->service_account))) {
		snprintf(errbuf, errlen, "serviceaccount: bad namespace or service account");
		return -EINVAL;
	}
	for (size_t i = 0; i < g->n_audiences; i++)
		if (!g->audiences[i] || !*g->audiences[i]) {
			snprintf(errbuf, errlen, "serviceaccount: empty audience");
			return -EINVAL;
		}
	return mg_creds_impersonate_check(c, errbuf, errlen);
}

const struct mg_creds_ops mg_creds_serviceaccount_ops = {
	.name = "serviceaccount",
	.kind = MG_CREDS_SERVICEACCOUNT,
	.check = sa_check,
	.get = sa_get,
};
