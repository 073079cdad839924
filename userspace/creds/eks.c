/*
 * creds/eks: the EKS provider. An EKS token (a presigned STS
 * GetCallerIdentity) signed with the daemon's own AWS credentials, or with
 * a role session AssumeRole'd per pod (source identity and session tags
 * naming the pod); cached per role and pod. Also the ExecCredential that
 * `mcpgatectl eks-token` prints.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcpgate/creds.h"
#include "mcpgate/sigv4.h"

#include "provider.h"

static int setup_sts(struct mg_creds *c, char *errbuf, size_t errlen)
{
	const char *ep = c->cfg.sts_endpoint, *region = c->cfg.region, *host;
	size_t hlen;
	char url[URL_MAX];

	if (ep && !strcmp(ep, "global")) {
		/* The legacy global endpoint signs for us-east-1 (awscli's
		 * --region aws-global resolves to exactly this). */
		snprintf(url, sizeof(url), "https://sts.amazonaws.com/");
		snprintf(c->sign_region, sizeof(c->sign_region), "us-east-1");
	} else {
		if (!mg_creds_all_chars(region, "-", 1, 32)) {
			snprintf(errbuf, errlen, "eks: region missing or invalid");
			return -EINVAL;
		}
		snprintf(c->sign_region, sizeof(c->sign_region), "%s", region);
		if (!ep || !strcmp(ep, "regional"))
			snprintf(url, sizeof(url), "https://sts.%s.amazonaws.com%s/", region,
				 strncmp(region, "cn-", 3) ? "" : ".cn");
		else if (snprintf(url, sizeof(url), "%s", ep) >= (int)sizeof(url))
			goto bad;
	}
	if (mg_creds_split_url(url, c->sts_scheme, sizeof(c->sts_scheme), c->sts_host,
			       sizeof(c->sts_host), c->sts_path, sizeof(c->sts_path), &host,
			       &hlen) < 0)
		goto bad;
	c->sts_no_proxy = mg_creds_is_loopback_host(host, hlen);
	snprintf(c->sts_url, sizeof(c->sts_url), "%s://%s%s", c->sts_scheme, c->sts_host,
		 c->sts_path);
	return 0;
bad:
	snprintf(errbuf, errlen,
		 "eks: sts endpoint must be regional, global or http(s)://host[:port][/path]");
	return -EINVAL;
}

/* ---- AWS: AssumeRole per subject ---- */

/* "mcpgate-<ns>-<pod>" in RoleSessionName's alphabet [\w+=,.@-], cut to
 * its 64-byte limit. */
static void session_name_for(const struct mg_creds_subject *who, char *out, size_t n)
{
	size_t len;

	snprintf(out, n < 65 ? n : 65, "mcpgate-%s-%s", who && who->ns ? who->ns : "",
		 who && who->pod ? who->pod : "");
	len = strlen(out);
	for (size_t i = 0; i < len; i++) {
		char ch = out[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || strchr("_+=,.@-", ch)))
			out[i] = '-';
	}
}

/* Tag values: letters, digits, spaces and _.:/=+-@ (STS session tags). */
static bool tag_value_ok(const char *s)
{
	return mg_creds_all_chars(s, "_.:/=+-@ ", 1, 256);
}

static int assume_role(struct mg_creds *c, const struct aws_creds *base,
		       const struct mg_creds_subject *who, time_t now, struct aws_creds *cr,
		       struct mg_creds_result *out)
{
	const unsigned idm = c->no_identity ? 0 : c->cfg.session_identity;
	const char *uid = who ? who->uid : NULL, *appr = who ? who->approval_id : NULL;
	const struct mg_sigv4_kv sh[] = {{"Content-Type", FORM_TYPE}};
	const struct mg_sigv4_creds sc = {base->akid, base->secret, base->token};
	char sess[65], dur[16], *body = NULL, *h_date = NULL, *h_tok = NULL, *h_auth = NULL;
	char *h_host = NULL;
	struct mg_sigv4_signed sig = {0};
	struct mg_sigv4_req rq;
	const char *hdrs[5];
	size_t blen = 0, nh = 0;
	int ret;

	if (c->cfg.session_name)
		snprintf(sess, sizeof(sess), "%s", c->cfg.session_name);
	else
		session_name_for(who, sess, sizeof(sess));
	if ((idm & MG_CREDS_SOURCE_IDENTITY) && !mg_creds_all_chars(uid, "_+=,.@-", 2, 64))
		return mg_creds_set_error(
			out, -EINVAL, 500, "InvalidSubject",
			"pod uid is not a valid SourceIdentity (2-64 of [\\w+=,.@-])");
	if ((idm & MG_CREDS_SESSION_TAGS) && (!tag_value_ok(uid) || (appr && !tag_value_ok(appr))))
		return mg_creds_set_error(
			out, -EINVAL, 500, "InvalidSubject",
			"pod uid or approval id is not a valid session tag value");
	snprintf(dur, sizeof(dur), "%u", c->cfg.duration_seconds);
	ret = mg_creds_form_add(&body, &blen, "Action", "AssumeRole");
	ret = ret ?: mg_creds_form_add(&body, &blen, "Version", STS_VERSION);
	ret = ret ?: mg_creds_form_add(&body, &blen, "RoleArn", c->cfg.role_arn);
	ret = ret ?: mg_creds_form_add(&body, &blen, "RoleSessionName", sess);
	ret = ret ?: mg_creds_form_add(&body, &blen, "DurationSeconds", dur);
	if (idm & MG_CREDS_SESSION_TAGS) {
		ret = ret
			      ?: mg_creds_form_add(&body, &blen, "Tags.member.1.Key",
						   "mcpgate.io/pod-uid");
		ret = ret ?: mg_creds_form_add(&body, &blen, "Tags.member.1.Value", uid);
		if (appr) {
			ret = ret
				      ?: mg_creds_form_add(&body, &blen, "Tags.member.2.Key",
							   "mcpgate.io/approval-id");
			ret = ret ?: mg_creds_form_add(&body, &blen, "Tags.member.2.Value", appr);
		}
	}
	if (idm & MG_CREDS_SOURCE_IDENTITY)
		ret = ret ?: mg_creds_form_add(&body, &blen, "SourceIdentity", uid);
	if (ret < 0) {
		ret = mg_creds_set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
		goto out;
	}
	rq = (struct mg_sigv4_req){
		.method = "POST",
		.host = c->sts_host,
		.path = c->sts_path,
		.headers = sh,
		.n_headers = 1,
		.body = body,
		.body_len = blen,
		.region = c->sign_region,
		.service = "sts",
		.when = now,
	};
	ret = mg_sigv4_sign(&rq, &sc, &sig);
	if (ret < 0) {
		ret = mg_creds_set_error(out, ret, 500, "InternalError",
					 "signing AssumeRole failed");
		goto out;
	}
	if (asprintf(&h_host, "Host: %s", c->sts_host) < 0 ||
	    asprintf(&h_date, "X-Amz-Date: %s", sig.amz_date) < 0 ||
	    asprintf(&h_auth, "Authorization: %s", sig.authorization) < 0 ||
	    (base->token[0] && asprintf(&h_tok, "X-Amz-Security-Token: %s", base->token) < 0)) {
		ret = mg_creds_set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
		goto out;
	}
	hdrs[nh++] = h_host;
	hdrs[nh++] = "Content-Type: " FORM_TYPE;
	hdrs[nh++] = h_date;
	if (h_tok)
		hdrs[nh++] = h_tok;
	hdrs[nh++] = h_auth;
	ret = mg_creds_sts_call(c, "AssumeRole", c->cfg.role_arn, body, hdrs, nh, base->token, cr,
				out);
out:
	mg_sigv4_signed_free(&sig);
	mg_creds_wipe_str(body);
	free(h_host);
	free(h_date);
	mg_creds_wipe_str(h_tok);
	mg_creds_wipe_str(h_auth);
	return ret;
}

/* ---- eks ---- */

/* The EKS token for <cr> at <now>: a presigned GET of
 * <sts>/?Action=GetCallerIdentity&Version=2011-06-15 with the signed header
 * x-k8s-aws-id: <cluster>, base64url without padding, prefixed. */
static int eks_token(struct mg_creds *c, const struct aws_creds *cr, time_t now, char **token)
{
	const struct mg_sigv4_kv q[] = {{"Action", "GetCallerIdentity"}, {"Version", STS_VERSION}};
	const struct mg_sigv4_kv h[] = {{"x-k8s-aws-id", c->cfg.cluster_name}};
	const struct mg_sigv4_creds sc = {cr->akid, cr->secret, cr->token};
	const struct mg_sigv4_req rq = {
		.method = "GET",
		.host = c->sts_host,
		.path = c->sts_path,
		.query = q,
		.n_query = 2,
		.headers = h,
		.n_headers = 1,
		.region = c->sign_region,
		.service = "sts",
		.when = now,
		.expires = EKS_PRESIGN_EXPIRES,
	};
	struct mg_sigv4_signed sig;
	char *url = NULL, *b64;
	int ret;

	ret = mg_sigv4_sign(&rq, &sc, &sig);
	if (ret < 0)
		return ret;
	if (asprintf(&url, "%s://%s%s?%s", c->sts_scheme, c->sts_host, c->sts_path, sig.query) <
	    0) {
		mg_sigv4_signed_free(&sig);
		return -ENOMEM;
	}
	mg_sigv4_signed_free(&sig);
	b64 = mg_creds_base64url(url, strlen(url));
	mg_creds_wipe_str(url);
	if (!b64)
		return -ENOMEM;
	ret = asprintf(token, EKS_TOKEN_PREFIX "%s", b64) < 0 ? -ENOMEM : 0;
	mg_creds_wipe_str(b64);
	return ret;
}

/* The eks part of the configuration: cluster name, role, duration, session
 * name and identity bits, then the STS endpoint. */
static int eks_check(struct mg_creds *c, char *errbuf, size_t errlen)
{
	const struct mg_creds_config *g = &c->cfg;

	for (const char *p = g->cluster_name; p && *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			goto bad_cluster;
	if (!g->cluster_name || !*g->cluster_name || strlen(g->cluster_name) > 256)
		goto bad_cluster;
	if (g->role_arn && !mg_creds_arn_ok(g->role_arn)) {
		snprintf(errbuf, errlen, "eks: role ARN is not an ARN");
		return -EINVAL;
	}
	if (g->duration_seconds &&
	    (g->duration_seconds < ROLE_DURATION_MIN || g->duration_seconds > ROLE_DURATION_MAX)) {
		snprintf(errbuf, errlen, "eks: duration must be 900..43200 seconds");
		return -EINVAL;
	}
	if (g->session_name && !mg_creds_all_chars(g->session_name, "_+=,.@-", 2, 64)) {
		snprintf(errbuf, errlen, "eks: session name must be 2-64 of [\\w+=,.@-]");
		return -EINVAL;
	}
	if (g->session_identity & ~(unsigned)(MG_CREDS_SOURCE_IDENTITY | MG_CREDS_SESSION_TAGS)) {
		snprintf(errbuf, errlen, "eks: unknown session identity bits");
		return -EINVAL;
	}
	return setup_sts(c, errbuf, errlen);
bad_cluster:
	snprintf(errbuf, errlen, "eks: cluster name missing or not printable ASCII");
	return -EINVAL;
}

static int eks_get(struct mg_creds *c, const struct mg_creds_subject *who,
		   struct mg_creds_result *out)
{
	const time_t now = mg_creds_now(c);
	struct aws_creds *cr = calloc(1, sizeof(*cr)), *base = NULL;
	char key[KEY_MAX] = "", *stale = NULL, *token = NULL;
	time_t stale_exp = 0, valid;
	bool have = false;
	struct entry *e;
	int ret;

	if (!cr)
		return mg_creds_set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
	/* Assumed-role sessions are per pod and grant; the daemon's own
	 * credentials give one token for everybody. */
	if (c->cfg.role_arn && !c->no_identity)
		snprintf(key, sizeof(key), "%s\n%s", who && who->uid ? who->uid : "",
			 who && who->approval_id ? who->approval_id : "");

	pthread_mutex_lock(&c->lock);
	e = mg_creds_cache_find(c, key);
	if (e && e->value && e->expiry - now >= REFRESH_MARGIN) {
		e->last_used = now;
		ret = mg_creds_set_bearer(out, e->value);
		out->expiry = e->expiry;
		pthread_mutex_unlock(&c->lock);
		mg_creds_wipe_free(cr, sizeof(*cr));
		return ret;
	}
	if (e && e->value && e->expiry - now >= MIN_VALIDITY) {
		stale = strdup(e->value);
		stale_exp = e->expiry;
	}
	if (c->cfg.role_arn && e && e->has_creds && e->creds.expiration - now >= REFRESH_MARGIN) {
		*cr = e->creds;
		have = true;
	}
	pthread_mutex_unlock(&c->lock);

	if (!have) {
		if (c->cfg.role_arn) {
			base = calloc(1, sizeof(*base));
			ret = base ? mg_creds_aws_base(c, now, base, out)
				   : mg_creds_set_error(out, -ENOMEM, 500, "InternalError",
							"out of memory");
			if (ret == 0)
				ret = assume_role(c, base, who, now, cr, out);
			mg_creds_wipe_free(base, sizeof(*base));
		} else {
			ret = mg_creds_aws_base(c, now, cr, out);
		}
		if (ret < 0) {
			/* A passing STS hiccup need not fail a request while the
			 * token we have is still good for a while. */
			if (ret == -EAGAIN && stale) {
				int r2;

				memset(out, 0, sizeof(*out));
				r2 = mg_creds_set_bearer(out, stale);
				out->expiry = stale_exp;
				ret = r2;
			}
			goto out;
		}
	}
	if (cr->expiration && cr->expiration - now < MIN_VALIDITY) {
		ret = mg_creds_set_error(out, -ESTALE, 502, "CredentialsExpiring",
					 "AWS credentials expire in %lld s",
					 (long long)(cr->expiration - now));
		goto out;
	}
	ret = eks_token(c, cr, now, &token);
	if (ret < 0) {
		ret = mg_creds_set_error(out, ret, 500, "InternalError",
					 "signing the EKS token failed");
		goto out;
	}
	valid = now + EKS_TOKEN_TTL;
	if (cr->expiration && cr->expiration < valid)
		valid = cr->expiration;
	ret = mg_creds_set_bearer(out, token);
	if (ret < 0)
		goto out;
	out->expiry = valid;

	pthread_mutex_lock(&c->lock);
	e = mg_creds_cache_get(c, key);
	if (e) {
		char *v = strdup(token);

		if (v) {
			mg_creds_wipe_str(e->value);
			e->value = v;
			e->expiry = valid;
			e->refresh_at = valid - REFRESH_MARGIN;
			e->last_used = now;
			if (c->cfg.role_arn) {
				e->creds = *cr;
				e->has_creds = true;
			}
		}
	}
	pthread_mutex_unlock(&c->lock);
out:
	mg_creds_wipe_str(token);
	mg_creds_wipe_str(stale);
	mg_creds_wipe_free(cr, sizeof(*cr));
	return ret;
}

const struct mg_creds_ops mg_creds_eks_ops = {
	.name = "eks",
	.kind = MG_CREDS_EKS,
	.check = eks_check,
	.get = eks_get,
};

/* ---- mcpgatectl eks-token ---- */

static time_t fixed_clock(void *data)
{
	return *(const time_t *)data;
}

int mg_creds_eks_exec_credential(const struct mg_creds_config *cfg, time_t at, char **json,
				 struct mg_creds_result *err)
{
	struct mg_creds_config k = *cfg;
	struct mg_creds_result r;
	struct mg_creds *c;
	char errbuf[256], exp[32];
	struct tm tm;
	time_t when = at ? at : cfg->now ? cfg->now(cfg->now_data) : time(NULL);
	time_t until = when + EKS_EXEC_TTL;
	int ret;

	memset(err, 0, sizeof(*err));
	*json = NULL;
	k.kind = MG_CREDS_EKS;
	k.now = fixed_clock;
	k.now_data = &when;
	if (!k.session_name)
		k.session_name = "EKSGetTokenAuth"; /* what awscli's --role-arn uses */
	c = mg_creds_new(&k, errbuf, sizeof(errbuf));
	if (!c)
		return mg_creds_set_error(err, -EINVAL, 500, "InvalidConfig", "%s", errbuf);
	c->no_identity = true;
	ret = mg_creds_get(c, NULL, &r);
	mg_creds_free(c);
	if (ret < 0) {
		*err = r;
		return ret;
	}
	if (!gmtime_r(&until, &tm) || !strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm)) {
		mg_creds_result_free(&r);
		return mg_creds_set_error(err, -EINVAL, 500, "InvalidConfig", "time out of range");
	}
	/* json.dumps() separators, key order and the trailing newline of
	 * awscli's `eks get-token`. */
	if (asprintf(json,
		     "{\"kind\": \"ExecCredential\", \"apiVersion\": "
		     "\"client.authentication.k8s.io/v1beta1\", \"spec\": {}, \"status\": "
		     "{\"expirationTimestamp\": \"%s\", \"token\": \"%s\"}}\n",
		     exp, r.authorization + strlen("Bearer ")) < 0) {
		*json = NULL;
		mg_creds_result_free(&r);
		return mg_creds_set_error(err, -ENOMEM, 500, "InternalError", "out of memory");
	}
	mg_creds_result_free(&r);
	return 0;
}
