/*
 * creds: upstream credentials (see creds.h). This file holds what every
 * provider shares: the provider registry (one struct mg_creds_ops per
 * provider file: eks.c, serviceaccount.c, impersonate.c), the configuration
 * copy and its checks, the cache and its locking, error results, secret
 * files, and the blocking HTTP client the providers call.
 *
 * Blocking by design: STS, the Pod Identity agent and TokenRequest are
 * reached with the one libcurl client (httpc), one call each, from the daemon's worker
 * threads. The cache mutex is never held across a network call; two
 * threads missing the same entry at once both fetch, and the later result
 * wins, which is harmless.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "mcpgate/creds.h"
#include "mcpgate/httpc.h"
#include "mcpgate/secretfile.h"

#include "provider.h"

/* ---- small helpers shared by the providers ---- */

void mg_creds_wipe_free(void *p, size_t n)
{
	if (p) {
		OPENSSL_cleanse(p, n);
		free(p);
	}
}

void mg_creds_wipe_str(char *s)
{
	if (s)
		mg_creds_wipe_free(s, strlen(s));
}

time_t mg_creds_now(const struct mg_creds *c)
{
	return c->cfg.now ? c->cfg.now(c->cfg.now_data) : time(NULL);
}

const char *mg_creds_env(const struct mg_creds *c, const char *name)
{
	const char *v = c->cfg.getenv ? c->cfg.getenv(c->cfg.getenv_data, name) : getenv(name);

	return v && *v ? v : NULL;
}

/* Sets the error fields of <out>: a one-line <message> with control bytes
 * turned into spaces. Callers never pass a secret in. Returns <err>.
 */
int mg_creds_set_error(struct mg_creds_result *out, int err, int status, const char *reason,
		       const char *fmt, ...)
{
	va_list ap;

	out->http_status = status;
	snprintf(out->reason, sizeof(out->reason), "%s", reason);
	va_start(ap, fmt);
	vsnprintf(out->message, sizeof(out->message), fmt, ap);
	va_end(ap);
	for (char *p = out->message; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return err;
}

/* Copies an upstream's message for an error line: only up to its first
 * line break (STS's SignatureDoesNotMatch goes on with the canonical
 * request, session token included, on the following lines), with any
 * occurrence of <secret> blanked out for good measure.
 */
void mg_creds_safe_message(char *dst, size_t n, const char *msg, const char *secret)
{
	size_t len = strcspn(msg, "\r\n");
	char *hit;

	if (len >= n)
		len = n - 1;
	memcpy(dst, msg, len);
	dst[len] = '\0';
	if (secret && strlen(secret) >= 8)
		while ((hit = strstr(dst, secret)))
			memset(hit, '*', strlen(secret));
}

/* Reads the token file <path> with the one secret-file reader (same trim,
 * same bound) into a new NUL-terminated buffer of MAX_FILE + 1 bytes, which
 * callers wipe with mg_creds_wipe_free(buf, MAX_FILE + 1). 0 or -errno.
 */
int mg_creds_read_secret_file(const char *path, char **out)
{
	_Static_assert(MG_SECRETFILE_MAX <= MAX_FILE, "a secret file fits the buffer");
	struct mg_secret sec = {0};
	char *buf;
	int ret = mg_secretfile_read(path, &sec);

	if (ret)
		return ret;
	buf = calloc(1, MAX_FILE + 1);
	if (!buf) {
		mg_secret_wipe(&sec);
		return -ENOMEM;
	}
	memcpy(buf, sec.ptr, sec.len);
	mg_secret_wipe(&sec);
	*out = buf;
	return 0;
}

/* RFC 9110 §5.6.2 tchar: what a header name is made of. */
bool mg_creds_is_tchar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A header value must not be able to end the header early. */
bool mg_creds_header_safe(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return false;
	return true;
}

char *mg_creds_base64url(const char *s, size_t n)
{
	size_t cap = 4 * ((n + 2) / 3) + 1;
	char *o = malloc(cap);
	int len;

	if (!o)
		return NULL;
	len = EVP_EncodeBlock((unsigned char *)o, (const unsigned char *)s, (int)n);
	while (len > 0 && o[len - 1] == '=')
		len--;
	o[len] = '\0';
	for (char *p = o; *p; p++) {
		if (*p == '+')
			*p = '-';
		else if (*p == '/')
			*p = '_';
	}
	return o;
}

int mg_creds_set_bearer(struct mg_creds_result *out, const char *token)
{
	if (asprintf(&out->authorization, "Bearer %s", token) < 0) {
		out->authorization = NULL;
		return mg_creds_set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
	}
	return 0;
}

/* ---- HTTP (the one libcurl client, blocking) ---- */

void mg_creds_http_resp_free(struct http_resp *r)
{
	mg_creds_wipe_free(r->body, r->cap);
	r->body = NULL;
	r->len = r->cap = 0;
}

/* Performs <q> with httpc (bodies wiped: they hold credentials). Returns 0
 * once any HTTP answer came back (<r->status> set, body in <r>), -EIO with
 * <r->err> on a transport failure or an answer over MAX_BODY, -ENOMEM.
 * Redirects are not followed and only http/https are spoken (httpc's rules).
 */
int mg_creds_http_do(const struct http_req *q, struct http_resp *r)
{
	const struct mg_httpc_req hq = {
		.url = q->url,
		.body = q->body,
		.body_len = q->body_len,
		.ca_file = q->ca_file,
		.headers = q->headers,
		.n_headers = q->n_headers,
		.connect_timeout_ms = q->timeout_ms,
		.timeout_ms = q->timeout_ms,
		.max_body = MAX_BODY,
		.wipe = true,
		.no_proxy = q->no_proxy,
	};
	struct mg_httpc_resp hr;
	int ret;

	memset(r, 0, sizeof(*r));
	ret = mg_httpc_do(&hq, &hr);
	if (ret == -E2BIG || ret == -EIO) {
		snprintf(r->err, sizeof(r->err), "%s",
			 ret == -E2BIG ? "response body over 1 MiB" : hr.err);
		ret = -EIO;
	} else if (ret == 0) {
		/* Our own copy, so mg_creds_http_resp_free() owns what it wipes. */
		r->body = malloc(hr.len + 1);
		if (r->body) {
			memcpy(r->body, hr.body, hr.len + 1);
			r->len = hr.len;
			r->cap = hr.len + 1;
			r->status = hr.status;
		} else {
			ret = -ENOMEM;
		}
	}
	mg_httpc_resp_free(&hr);
	return ret;
}

/* ---- configuration ---- */

static const char *keep(struct mg_creds *c, const char *s, bool *oom)
{
	char *d;

	if (!s)
		return NULL;
	if (c->n_strings == sizeof(c->strings) / sizeof(*c->strings)) {
		*oom = true;
		return NULL;
	}
	d = strdup(s);
	if (!d)
		*oom = true;
	else
		c->strings[c->n_strings++] = d;
	return d;
}

static char **keep_list(const char *const *v, size_t n, bool *oom)
{
	char **d;

	if (!n)
		return NULL;
	d = calloc(n, sizeof(*d));
	if (!d) {
		*oom = true;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		d[i] = v[i] ? strdup(v[i]) : NULL;
		if (!d[i])
			*oom = true;
	}
	return d;
}

bool mg_creds_all_chars(const char *s, const char *extra, size_t min, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (n < min || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || strchr(extra, ch)))
			return false;
	}
	return true;
}

/* DNS-1123 subdomain, what namespaces and ServiceAccount names are. */
bool mg_creds_k8s_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 253 || s[0] == '-' || s[0] == '.' || s[n - 1] == '-' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '.'))
			return false;
	return true;
}

bool mg_creds_is_loopback_host(const char *h, size_t n)
{
	return (n == 9 && !strncmp(h, "localhost", 9)) || (n >= 4 && !strncmp(h, "127.", 4)) ||
	       (n == 5 && !strncmp(h, "[::1]", 5));
}

/* Splits "http[s]://authority[/path]" into <scheme>, <authority> (the Host
 * header value), <path> ("/" if none) and the host part of the authority.
 * No userinfo, query or fragment. Returns 0 or -EINVAL.
 */
int mg_creds_split_url(const char *url, char *scheme, size_t sl, char *auth, size_t al, char *path,
		       size_t pl, const char **host, size_t *hlen)
{
	const char *p, *a, *e;
	size_t n;

	if (!strncmp(url, "https://", 8))
		p = url + 8;
	else if (!strncmp(url, "http://", 7))
		p = url + 7;
	else
		return -EINVAL;
	snprintf(scheme, sl, "%.*s", (int)(p - 3 - url), url);
	a = p;
	e = a + strcspn(a, "/?#");
	n = (size_t)(e - a);
	if (n == 0 || n >= al || memchr(a, '@', n) || strpbrk(e, "?#"))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)a[i] <= 0x20 || a[i] == 0x7f)
			return -EINVAL;
	memcpy(auth, a, n);
	auth[n] = '\0';
	if (snprintf(path, pl, "%s", *e ? e : "/") >= (int)pl || !mg_creds_header_safe(path) ||
	    strchr(path, ' '))
		return -EINVAL;
	*host = auth;
	if (auth[0] == '[') {
		const char *rb = strchr(auth, ']');

		if (!rb)
			return -EINVAL;
		*hlen = (size_t)(rb - auth + 1);
	} else {
		*hlen = strcspn(auth, ":");
	}
	return 0;
}

/* ---- a provider: new, free, results ---- */

struct mg_creds *mg_creds_new(const struct mg_creds_config *cfg, char *errbuf, size_t errlen)
{
	struct mg_creds *c = calloc(1, sizeof(*c));
	bool oom = false;

	if (!c) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	c->cfg = *cfg;
	c->cfg.cluster_name = keep(c, cfg->cluster_name, &oom);
	c->cfg.region = keep(c, cfg->region, &oom);
	c->cfg.sts_endpoint = keep(c, cfg->sts_endpoint, &oom);
	c->cfg.sts_ca_file = keep(c, cfg->sts_ca_file, &oom);
	c->cfg.role_arn = keep(c, cfg->role_arn, &oom);
	c->cfg.session_name = keep(c, cfg->session_name, &oom);
	c->cfg.api_server = keep(c, cfg->api_server, &oom);
	c->cfg.api_ca_file = keep(c, cfg->api_ca_file, &oom);
	c->cfg.token_file = keep(c, cfg->token_file, &oom);
	c->cfg.namespace_name = keep(c, cfg->namespace_name, &oom);
	c->cfg.service_account = keep(c, cfg->service_account, &oom);
	c->cfg.user = keep(c, cfg->user, &oom);
	c->audiences = keep_list(cfg->audiences, cfg->n_audiences, &oom);
	c->cfg.audiences = (const char *const *)c->audiences;
	c->groups = keep_list(cfg->groups, cfg->n_groups, &oom);
	c->cfg.groups = (const char *const *)c->groups;
	if (!c->cfg.duration_seconds)
		c->cfg.duration_seconds = ROLE_DURATION_MIN;
	if (!c->cfg.session_identity)
		c->cfg.session_identity = MG_CREDS_SOURCE_IDENTITY;
	if (!c->cfg.expiration_seconds)
		c->cfg.expiration_seconds = 3600;
	if (c->cfg.timeout_ms <= 0)
		c->cfg.timeout_ms = 5000;
	if (oom) {
		snprintf(errbuf, errlen, "out of memory");
		goto fail;
	}
	c->ops = mg_creds_ops_of(c->cfg.kind);
	if (!c->ops) {
		snprintf(errbuf, errlen, "unknown credentials provider kind %d", (int)c->cfg.kind);
		goto fail;
	}
	/* Lists with a NULL element came through keep_list() as oom. */
	if (c->ops->check(c, errbuf, errlen) < 0)
		goto fail;
	if (pthread_mutex_init(&c->lock, NULL)) {
		snprintf(errbuf, errlen, "pthread_mutex_init failed");
		goto fail;
	}
	c->lock_ok = true;
	return c;
fail:
	mg_creds_free(c);
	return NULL;
}

void mg_creds_free(struct mg_creds *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		if (c->slots[i]) {
			mg_creds_wipe_str(c->slots[i]->value);
			mg_creds_wipe_free(c->slots[i], sizeof(*c->slots[i]));
		}
	}
	for (size_t i = 0; i < c->cfg.n_audiences && c->audiences; i++)
		free(c->audiences[i]);
	for (size_t i = 0; i < c->cfg.n_groups && c->groups; i++)
		free(c->groups[i]);
	free(c->audiences);
	free(c->groups);
	for (size_t i = 0; i < c->n_strings; i++)
		free(c->strings[i]);
	if (c->lock_ok)
		pthread_mutex_destroy(&c->lock);
	mg_creds_wipe_free(c, sizeof(*c));
}

void mg_creds_result_free(struct mg_creds_result *r)
{
	mg_creds_wipe_str(r->authorization);
	for (size_t i = 0; i < r->n_headers; i++) {
		free(r->headers[i].name);
		mg_creds_wipe_str(r->headers[i].value);
	}
	free(r->headers);
	memset(r, 0, sizeof(*r));
}

/* ---- the cache (callers hold c->lock) ---- */

struct entry *mg_creds_cache_find(struct mg_creds *c, const char *key)
{
	for (size_t i = 0; i < CACHE_SLOTS; i++)
		if (c->slots[i] && !strcmp(c->slots[i]->key, key))
			return c->slots[i];
	return NULL;
}

/* The entry for <key>, created if need be in a free slot or in place of
 * the least recently used one. NULL on ENOMEM.
 */
struct entry *mg_creds_cache_get(struct mg_creds *c, const char *key)
{
	struct entry *e = mg_creds_cache_find(c, key);
	size_t victim = 0;

	if (e)
		return e;
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		if (!c->slots[i]) {
			victim = i;
			break;
		}
		if (c->slots[i]->last_used < c->slots[victim]->last_used)
			victim = i;
	}
	if (c->slots[victim]) {
		mg_creds_wipe_str(c->slots[victim]->value);
		mg_creds_wipe_free(c->slots[victim], sizeof(*c->slots[victim]));
		c->slots[victim] = NULL;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	snprintf(e->key, sizeof(e->key), "%s", key);
	c->slots[victim] = e;
	return e;
}
/* ---- the providers ---- */

static const struct mg_creds_ops *const providers[] = {
	&mg_creds_eks_ops,
	&mg_creds_serviceaccount_ops,
	&mg_creds_impersonate_ops,
};

const struct mg_creds_ops *mg_creds_ops_of(enum mg_creds_kind kind)
{
	for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); i++)
		if (providers[i]->kind == kind)
			return providers[i];
	return NULL;
}

int mg_creds_kind_lookup(const char *name, enum mg_creds_kind *kind)
{
	for (size_t i = 0; name && i < sizeof(providers) / sizeof(providers[0]); i++) {
		if (!strcmp(providers[i]->name, name)) {
			*kind = providers[i]->kind;
			return 0;
		}
	}
	return -ENOENT;
}

const char *mg_creds_kind_name(enum mg_creds_kind kind)
{
	const struct mg_creds_ops *ops = mg_creds_ops_of(kind);

	return ops ? ops->name : NULL;
}

/* ---- entry points ---- */

int mg_creds_get(struct mg_creds *c, const struct mg_creds_subject *who,
		 struct mg_creds_result *out)
{
	int ret;

	memset(out, 0, sizeof(*out));
	if (c->ops)
		ret = c->ops->get(c, who, out);
	else
		ret = mg_creds_set_error(out, -EINVAL, 500, "InternalError", "unknown provider");
	if (ret < 0) {
		/* Keep the error fields, drop anything half-built. */
		struct mg_creds_result keep_err = *out;

		keep_err.authorization = NULL;
		keep_err.headers = NULL;
		keep_err.n_headers = 0;
		keep_err.expiry = 0;
		mg_creds_result_free(out);
		*out = keep_err;
		if (!out->http_status)
			mg_creds_set_error(out, ret, 500, "InternalError", "credentials failed");
	}
	return ret;
}
