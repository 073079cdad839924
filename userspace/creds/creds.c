/*
 * creds: upstream credential providers (see creds.h).
 *
 * Blocking by design: STS, the Pod Identity agent and TokenRequest are
 * reached with libcurl easy handles, one per call, from the daemon's worker
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

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "mcpgate/creds.h"
#include "mcpgate/sigv4.h"

/* A cached credential is refreshed once less than this is left. */
#define REFRESH_MARGIN 300
/* Nothing is handed out with less than this to live. */
#define MIN_VALIDITY 60
/* STS accepts a presigned GetCallerIdentity for 15 minutes after its
 * X-Amz-Date whatever X-Amz-Expires says (aws-iam-authenticator's
 * presignedURLExpiration); 60 is what every client sends. */
#define EKS_TOKEN_TTL	    900
#define EKS_PRESIGN_EXPIRES 60
/* awscli's TOKEN_EXPIRATION_MINS: the ExecCredential says 14 minutes. */
#define EKS_EXEC_TTL	 (14 * 60)
#define EKS_TOKEN_PREFIX "k8s-aws-v1."
#define STS_VERSION	 "2011-06-15"
#define FORM_TYPE	 "application/x-www-form-urlencoded; charset=utf-8"
#define MAX_BODY	 (1 << 20)
#define MAX_FILE	 (64 * 1024)
#define CACHE_SLOTS	 256
#define KEY_MAX		 512

/* ---- small helpers ---- */

struct aws_creds {
	char akid[MG_SIGV4_MAX_KEY_ID + 1];
	char secret[MG_SIGV4_MAX_SECRET + 1];
	char token[MG_SIGV4_MAX_SESSION_TOKEN + 1];
	time_t expiration; /* 0: does not expire (environment keys) */
};

/* One cached credential: the EKS token or ServiceAccount token for <key>,
 * and for AssumeRole the role session credentials it was signed with. */
struct entry {
	char key[KEY_MAX];
	char *value;
	time_t expiry;
	time_t refresh_at;
	time_t last_used;
	bool has_creds;
	struct aws_creds creds;
};

enum base_source { BASE_NONE = 0, BASE_WEB_IDENTITY, BASE_CONTAINER };

struct mg_creds {
	struct mg_creds_config cfg; /* strings point into owned copies */
	char *strings[32];
	size_t n_strings;
	char **audiences;
	char **groups;
	bool no_identity; /* eks-token CLI: no SourceIdentity, no tags */
	/* the STS endpoint, resolved */
	char sts_url[600]; /* scheme://authority/path, no query */
	char sts_scheme[8];
	char sts_host[300]; /* authority, the signed Host */
	char sts_path[256];
	char sign_region[64];
	bool sts_no_proxy;
	bool lock_ok;
	pthread_mutex_t lock;
	/* the daemon's own AWS credentials from IRSA / Pod Identity */
	enum base_source base_src;
	struct aws_creds base;
	struct entry *slots[CACHE_SLOTS];
};

static void wipe_free(void *p, size_t n)
{
	if (p) {
		OPENSSL_cleanse(p, n);
		free(p);
	}
}

static void wipe_str(char *s)
{
	if (s)
		wipe_free(s, strlen(s));
}

static time_t now_of(const struct mg_creds *c)
{
	return c->cfg.now ? c->cfg.now(c->cfg.now_data) : time(NULL);
}

static const char *env_of(const struct mg_creds *c, const char *name)
{
	const char *v = c->cfg.getenv ? c->cfg.getenv(c->cfg.getenv_data, name) : getenv(name);

	return v && *v ? v : NULL;
}

/* Sets the error fields of <out>: a one-line <message> with control bytes
 * turned into spaces. Callers never pass a secret in. Returns <err>.
 */
static int set_error(struct mg_creds_result *out, int err, int status, const char *reason,
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
static void safe_message(char *dst, size_t n, const char *msg, const char *secret)
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

/* Reads the small file <path> (a token) into a new NUL-terminated buffer,
 * trailing whitespace dropped. Returns 0 or -errno.
 */
static int read_secret_file(const char *path, char **out)
{
	char *buf = malloc(MAX_FILE + 1);
	size_t len = 0;
	int fd, ret = 0;

	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		free(buf);
		return ret;
	}
	for (;;) {
		ssize_t r = read(fd, buf + len, MAX_FILE + 1 - len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			break;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > MAX_FILE) {
			ret = -EFBIG;
			break;
		}
	}
	close(fd);
	if (ret < 0) {
		wipe_free(buf, MAX_FILE + 1);
		return ret;
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
		       buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	*out = buf;
	return 0;
}

/* RFC 9110 §5.6.2 tchar: what a header name is made of. */
static bool is_tchar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A header value must not be able to end the header early. */
static bool header_safe(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return false;
	return true;
}

static char *base64url_nopad(const char *s, size_t n)
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

/* ---- HTTP (libcurl, blocking) ---- */

/* A request: POST when <body> is set, GET otherwise. */
struct http_req {
	const char *url;
	const char *const *headers; /* "Name: value" */
	size_t n_headers;
	const char *body;
	size_t body_len;
	const char *ca_file;
	long timeout_ms;
	bool no_proxy;
};

struct http_resp {
	long status;
	char *body;
	size_t len;
	size_t cap;
	bool too_big;
	char err[CURL_ERROR_SIZE];
};

static size_t on_body(char *p, size_t sz, size_t nm, void *data)
{
	struct http_resp *r = data;
	size_t n = sz * nm;

	if (r->len + n > MAX_BODY) {
		r->too_big = true;
		return 0;
	}
	if (r->len + n + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		char *b;

		while (cap < r->len + n + 1)
			cap *= 2;
		/* Copy and wipe rather than realloc: the body holds secrets. */
		b = malloc(cap);
		if (!b)
			return 0;
		if (r->body) {
			memcpy(b, r->body, r->len);
			wipe_free(r->body, r->cap);
		}
		r->body = b;
		r->cap = cap;
	}
	memcpy(r->body + r->len, p, n);
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

static void http_resp_free(struct http_resp *r)
{
	wipe_free(r->body, r->cap);
	r->body = NULL;
	r->len = r->cap = 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Performs <q>. Returns 0 once any HTTP answer came back (<r->status> set,
 * body in <r>), -EIO with <r->err> on a transport failure, -ENOMEM.
 * Redirects are not followed and only http/https are spoken.
 */
static int http_do(const struct http_req *q, struct http_resp *r)
{
	struct curl_slist *hl = NULL, *n;
	CURLcode rc;
	CURL *h;
	int ret = 0;

	memset(r, 0, sizeof(*r));
	pthread_once(&curl_once, curl_init_once);
	h = curl_easy_init();
	if (!h)
		return -ENOMEM;
	for (size_t i = 0; i < q->n_headers; i++) {
		n = curl_slist_append(hl, q->headers[i]);
		if (!n) {
			ret = -ENOMEM;
			goto out;
		}
		hl = n;
	}
	/* Drop the headers curl would add on its own for a POST. */
	if (q->body) {
		n = curl_slist_append(hl, "Expect:");
		if (!n) {
			ret = -ENOMEM;
			goto out;
		}
		hl = n;
	}
	curl_easy_setopt(h, CURLOPT_URL, q->url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, q->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, q->timeout_ms);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "mcpgate");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->err);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	if (q->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, q->ca_file);
	if (q->no_proxy)
		curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	if (q->body) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
	} else {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	}
	rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		if (!r->err[0] || r->too_big)
			snprintf(r->err, sizeof(r->err), "%s",
				 r->too_big ? "response body over 1 MiB" : curl_easy_strerror(rc));
		http_resp_free(r);
		ret = -EIO;
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	if (!r->body) {
		/* An empty body still gets a NUL-terminated buffer. */
		r->body = calloc(1, 1);
		r->cap = 1;
		if (!r->body)
			ret = -ENOMEM;
	}
out:
	/* The header lines hold bearer tokens and session tokens. */
	for (n = hl; n; n = n->next)
		OPENSSL_cleanse(n->data, strlen(n->data));
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
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

static bool all_chars(const char *s, const char *extra, size_t min, size_t max)
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
static bool k8s_name_ok(const char *s)
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

static bool is_loopback_host(const char *h, size_t n)
{
	return (n == 9 && !strncmp(h, "localhost", 9)) || (n >= 4 && !strncmp(h, "127.", 4)) ||
	       (n == 5 && !strncmp(h, "[::1]", 5));
}

/* Splits "http[s]://authority[/path]" into <scheme>, <authority> (the Host
 * header value), <path> ("/" if none) and the host part of the authority.
 * No userinfo, query or fragment. Returns 0 or -EINVAL.
 */
static int split_url(const char *url, char *scheme, size_t sl, char *auth, size_t al, char *path,
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
	if (snprintf(path, pl, "%s", *e ? e : "/") >= (int)pl || !header_safe(path) ||
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

static int setup_sts(struct mg_creds *c, char *errbuf, size_t errlen)
{
	const char *ep = c->cfg.sts_endpoint, *region = c->cfg.region, *host;
	size_t hlen;
	char url[600];

	if (ep && !strcmp(ep, "global")) {
		/* The legacy global endpoint signs for us-east-1 (awscli's
		 * --region aws-global resolves to exactly this). */
		snprintf(url, sizeof(url), "https://sts.amazonaws.com/");
		snprintf(c->sign_region, sizeof(c->sign_region), "us-east-1");
	} else {
		if (!all_chars(region, "-", 1, 32)) {
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
	if (split_url(url, c->sts_scheme, sizeof(c->sts_scheme), c->sts_host, sizeof(c->sts_host),
		      c->sts_path, sizeof(c->sts_path), &host, &hlen) < 0)
		goto bad;
	c->sts_no_proxy = is_loopback_host(host, hlen);
	snprintf(c->sts_url, sizeof(c->sts_url), "%s://%s%s", c->sts_scheme, c->sts_host,
		 c->sts_path);
	return 0;
bad:
	snprintf(errbuf, errlen,
		 "eks: sts endpoint must be regional, global or http(s)://host[:port][/path]");
	return -EINVAL;
}

/* ARNs go into form bodies and error lines: visible ASCII only. */
static bool arn_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 20 || n > 2048 || strncmp(s, "arn:", 4))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

static int check_config(struct mg_creds *c, char *errbuf, size_t errlen)
{
	const struct mg_creds_config *g = &c->cfg;

	switch (g->kind) {
	case MG_CREDS_EKS:
		for (const char *p = g->cluster_name; p && *p; p++)
			if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
				goto bad_cluster;
		if (!g->cluster_name || !*g->cluster_name || strlen(g->cluster_name) > 256)
			goto bad_cluster;
		if (g->role_arn && !arn_ok(g->role_arn)) {
			snprintf(errbuf, errlen, "eks: role ARN is not an ARN");
			return -EINVAL;
		}
		if (g->duration_seconds &&
		    (g->duration_seconds < 900 || g->duration_seconds > 43200)) {
			snprintf(errbuf, errlen, "eks: duration must be 900..43200 seconds");
			return -EINVAL;
		}
		if (g->session_name && !all_chars(g->session_name, "_+=,.@-", 2, 64)) {
			snprintf(errbuf, errlen, "eks: session name must be 2-64 of [\\w+=,.@-]");
			return -EINVAL;
		}
		if (g->session_identity &
		    ~(unsigned)(MG_CREDS_SOURCE_IDENTITY | MG_CREDS_SESSION_TAGS)) {
			snprintf(errbuf, errlen, "eks: unknown session identity bits");
			return -EINVAL;
		}
		return setup_sts(c, errbuf, errlen);
	case MG_CREDS_SERVICEACCOUNT:
		if (!g->api_server || strncmp(g->api_server, "https://", 8)) {
			snprintf(errbuf, errlen,
				 "serviceaccount: api server must be an https:// URL");
			return -EINVAL;
		}
		if (g->expiration_seconds && g->expiration_seconds < 600) {
			snprintf(errbuf, errlen,
				 "serviceaccount: expiration must be >= 600 seconds");
			return -EINVAL;
		}
		if ((g->namespace_name && !k8s_name_ok(g->namespace_name)) ||
		    (g->service_account && !k8s_name_ok(g->service_account))) {
			snprintf(errbuf, errlen,
				 "serviceaccount: bad namespace or service account");
			return -EINVAL;
		}
		for (size_t i = 0; i < g->n_audiences; i++)
			if (!g->audiences[i] || !*g->audiences[i]) {
				snprintf(errbuf, errlen, "serviceaccount: empty audience");
				return -EINVAL;
			}
		/* fall through: both need the daemon's own token */
		__attribute__((fallthrough));
	case MG_CREDS_IMPERSONATE:
		if (!g->token_file || !*g->token_file) {
			snprintf(errbuf, errlen, "%s: token file required",
				 g->kind == MG_CREDS_IMPERSONATE ? "impersonate"
								 : "serviceaccount");
			return -EINVAL;
		}
		if (g->user && (!*g->user || !header_safe(g->user))) {
			snprintf(errbuf, errlen, "impersonate: bad user");
			return -EINVAL;
		}
		for (size_t i = 0; i < g->n_groups; i++)
			if (!g->groups[i] || !*g->groups[i] || !header_safe(g->groups[i])) {
				snprintf(errbuf, errlen, "impersonate: bad group");
				return -EINVAL;
			}
		return 0;
	}
	snprintf(errbuf, errlen, "unknown credentials provider kind %d", (int)g->kind);
	return -EINVAL;
bad_cluster:
	snprintf(errbuf, errlen, "eks: cluster name missing or not printable ASCII");
	return -EINVAL;
}

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
		c->cfg.duration_seconds = 900;
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
	/* Lists with a NULL element came through keep_list() as oom. */
	if (check_config(c, errbuf, errlen) < 0)
		goto fail;
	if (pthread_mutex_init(&c->lock, NULL)) {
		snprintf(errbuf, errlen, "pthread_mutex_init failed");
		goto fail;
	}
	c->lock_ok = true;
	pthread_once(&curl_once, curl_init_once);
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
			wipe_str(c->slots[i]->value);
			wipe_free(c->slots[i], sizeof(*c->slots[i]));
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
	wipe_free(c, sizeof(*c));
}

void mg_creds_result_free(struct mg_creds_result *r)
{
	wipe_str(r->authorization);
	for (size_t i = 0; i < r->n_headers; i++) {
		free(r->headers[i].name);
		wipe_str(r->headers[i].value);
	}
	free(r->headers);
	memset(r, 0, sizeof(*r));
}

/* ---- the cache (callers hold c->lock) ---- */

static struct entry *cache_find(struct mg_creds *c, const char *key)
{
	for (size_t i = 0; i < CACHE_SLOTS; i++)
		if (c->slots[i] && !strcmp(c->slots[i]->key, key))
			return c->slots[i];
	return NULL;
}

/* The entry for <key>, created if need be in a free slot or in place of
 * the least recently used one. NULL on ENOMEM.
 */
static struct entry *cache_get(struct mg_creds *c, const char *key)
{
	struct entry *e = cache_find(c, key);
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
		wipe_str(c->slots[victim]->value);
		wipe_free(c->slots[victim], sizeof(*c->slots[victim]));
		c->slots[victim] = NULL;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	snprintf(e->key, sizeof(e->key), "%s", key);
	c->slots[victim] = e;
	return e;
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
static int sts_call(struct mg_creds *c, const char *action, const char *role, const char *body,
		    const char *const *headers, size_t nh, const char *secret, struct aws_creds *cr,
		    struct mg_creds_result *out)
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

	ret = http_do(&q, &r);
	if (ret == -ENOMEM)
		return set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
	if (ret < 0)
		return set_error(out, -EAGAIN, 502, "STSUnavailable", "sts:%s %s at %s: %s", action,
				 role, c->sts_host, r.err);
	sr = malloc(sizeof(*sr));
	if (!sr) {
		http_resp_free(&r);
		return set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
	}
	pr = mg_sigv4_sts_parse(r.body, r.len, action, sr, &perr);
	if (pr <= 0) {
		ret = set_error(out, r.status >= 500 ? -EAGAIN : -EPROTO, 502,
				r.status >= 500 ? "STSUnavailable" : "STSBadResponse",
				"sts:%s %s at %s: HTTP %ld, unreadable answer (%s at byte %zu)",
				action, role, c->sts_host, r.status,
				pr == 0 ? "truncated" : perr.reason, perr.pos);
	} else if (sr->kind == MG_SIGV4_STS_ERROR) {
		safe_message(msg, sizeof(msg), sr->error_message, secret);
		set_error(out, 0, 502, "", "sts:%s %s: %s: %s", action, role, sr->error_code, msg);
		/* The code names the failure in the client's Status: keep it
		 * to a token's alphabet. */
		safe_message(out->reason, sizeof(out->reason), sr->error_code, NULL);
		for (char *p = out->reason; *p; p++)
			if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
				*p = '_';
		ret = r.status >= 500 || transient_code(out->reason) ? -EAGAIN : -EACCES;
	} else if (r.status != 200) {
		ret = set_error(out, -EPROTO, 502, "STSBadResponse",
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
	wipe_free(sr, sizeof(*sr));
	http_resp_free(&r);
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
		wipe_free(*b, *len + 1);
	}
	n[(*len)++] = ch;
	n[*len] = '\0';
	*b = n;
	return 0;
}

/* Appends "[&]<name>=<value>" to the form body <*b>, both escaped the way
 * the AWS query protocol (and SigV4) escape. */
static int form_add(char **b, size_t *len, const char *name, const char *value)
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
	const char *sess = env_of(c, "AWS_ROLE_SESSION_NAME");
	char *jwt = NULL, *body = NULL, gen[40];
	size_t blen = 0;
	int ret;

	if (!arn_ok(role))
		return set_error(out, -EINVAL, 502, "NoCredentials", "AWS_ROLE_ARN is not an ARN");
	if (sess && !all_chars(sess, "_+=,.@-", 2, 64))
		return set_error(out, -EINVAL, 502, "NoCredentials",
				 "AWS_ROLE_SESSION_NAME is not 2-64 of [\\w+=,.@-]");
	if (!sess) {
		snprintf(gen, sizeof(gen), "mcpgate-%lld", (long long)now);
		sess = gen;
	}
	ret = read_secret_file(token_file, &jwt);
	if (ret < 0)
		return set_error(out, ret, 502, "NoCredentials", "web identity token file %s: %s",
				 token_file, strerror(-ret));
	if (!*jwt) {
		wipe_free(jwt, MAX_FILE + 1);
		return set_error(out, -EINVAL, 502, "NoCredentials",
				 "web identity token file %s is empty", token_file);
	}
	ret = form_add(&body, &blen, "Action", "AssumeRoleWithWebIdentity");
	ret = ret ?: form_add(&body, &blen, "Version", STS_VERSION);
	ret = ret ?: form_add(&body, &blen, "RoleArn", role);
	ret = ret ?: form_add(&body, &blen, "RoleSessionName", sess);
	ret = ret ?: form_add(&body, &blen, "WebIdentityToken", jwt);
	if (ret < 0)
		ret = set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
	else
		ret = sts_call(c, "AssumeRoleWithWebIdentity", role, body, hdrs, 1, jwt, cr, out);
	wipe_free(jwt, MAX_FILE + 1);
	wipe_str(body);
	return ret;
}

/* Hosts the container provider may reach over plain http: loopback, the
 * ECS agent and the EKS Pod Identity agent (as the SDKs allow). */
static bool container_host_ok(const char *host, size_t n)
{
	static const char *const ok[] = {"169.254.170.2", "169.254.170.23", "[fd00:ec2::23]"};

	if (is_loopback_host(host, n))
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
	char scheme[8], auth[300], path[256], *tok = NULL, *hdr = NULL;
	const char *file = env_of(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	const char *host, *hdrs[2];
	struct http_req q = {.url = url, .timeout_ms = c->cfg.timeout_ms};
	struct http_resp r;
	json_error_t jerr;
	json_t *j = NULL;
	size_t hlen;
	char exp[64];
	int ret;

	if (split_url(url, scheme, sizeof(scheme), auth, sizeof(auth), path, sizeof(path), &host,
		      &hlen) < 0)
		return set_error(out, -EINVAL, 502, "NoCredentials",
				 "container credentials URL is invalid");
	if (!strcmp(scheme, "http") && !container_host_ok(host, hlen))
		return set_error(
			out, -EINVAL, 502, "NoCredentials",
			"container credentials over http only to loopback or the agent address");
	q.no_proxy = !strcmp(scheme, "http");
	if (file) {
		ret = read_secret_file(file, &tok);
		if (ret < 0)
			return set_error(out, ret, 502, "NoCredentials",
					 "container authorization token file %s: %s", file,
					 strerror(-ret));
	} else if (env_of(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN")) {
		tok = strdup(env_of(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN"));
		if (!tok)
			return set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
	}
	if (tok && !header_safe(tok)) {
		ret = set_error(out, -EINVAL, 502, "NoCredentials",
				"container authorization token has control characters");
		goto done;
	}
	if (tok && asprintf(&hdr, "Authorization: %s", tok) < 0) {
		hdr = NULL;
		ret = set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
		goto done;
	}
	hdrs[0] = "Accept: application/json";
	hdrs[1] = hdr;
	q.headers = hdrs;
	q.n_headers = hdr ? 2 : 1;
	ret = http_do(&q, &r);
	if (ret == -ENOMEM) {
		ret = set_error(out, ret, 500, "InternalError", "out of memory");
		goto done;
	}
	if (ret < 0) {
		ret = set_error(out, -EAGAIN, 502, "PodIdentityUnavailable",
				"credentials agent %s: %s", auth, r.err);
		goto done;
	}
	j = json_loadb(r.body, r.len, JSON_REJECT_DUPLICATES, &jerr);
	if (r.status != 200) {
		const char *code = json_string_value(json_object_get(j, "code"));
		const char *msg = json_string_value(json_object_get(j, "message"));
		char m[200] = "";

		if (msg)
			safe_message(m, sizeof(m), msg, tok);
		ret = set_error(out, r.status >= 500 ? -EAGAIN : -EACCES, 502, "PodIdentityError",
				"credentials agent %s: HTTP %ld %s%s%s", auth, r.status,
				code && header_safe(code) && strlen(code) < 64 ? code : "",
				m[0] ? ": " : "", m);
	} else if (!json_is_object(j) || json_str(j, "AccessKeyId", cr->akid, sizeof(cr->akid)) ||
		   json_str(j, "SecretAccessKey", cr->secret, sizeof(cr->secret)) ||
		   json_str(j, "Token", cr->token, sizeof(cr->token)) ||
		   json_str(j, "Expiration", exp, sizeof(exp)) ||
		   mg_sigv4_parse_time(mg_str_of(exp), &cr->expiration)) {
		ret = set_error(
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
	http_resp_free(&r);
done:
	if (tok)
		wipe_str(tok);
	wipe_str(hdr);
	return ret;
}

/* The daemon's AWS credentials, in the SDK default-chain order restricted
 * to the sources a pod can have: environment, IRSA, container (Pod
 * Identity). The fetched ones are cached until REFRESH_MARGIN before they
 * expire; environment keys are read afresh.
 */
static int base_creds(struct mg_creds *c, time_t now, struct aws_creds *cr,
		      struct mg_creds_result *out)
{
	enum mg_creds_aws_source src = c->cfg.aws_source;
	const char *ak = env_of(c, "AWS_ACCESS_KEY_ID"), *sk = env_of(c, "AWS_SECRET_ACCESS_KEY");
	const char *role = env_of(c, "AWS_ROLE_ARN"),
		   *wif = env_of(c, "AWS_WEB_IDENTITY_TOKEN_FILE");
	const char *full = env_of(c, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
	const char *rel = env_of(c, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	enum base_source want = BASE_NONE;
	char url[600];
	int ret;

	if ((src == MG_CREDS_AWS_CHAIN || src == MG_CREDS_AWS_ENV) && (ak || sk)) {
		const char *st = env_of(c, "AWS_SESSION_TOKEN");

		if (!ak || !sk)
			return set_error(
				out, -EINVAL, 502, "NoCredentials",
				"only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set");
		if (strlen(ak) >= sizeof(cr->akid) || strlen(sk) >= sizeof(cr->secret) ||
		    (st && strlen(st) >= sizeof(cr->token)))
			return set_error(out, -EINVAL, 502, "NoCredentials",
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
		return set_error(
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
	return all_chars(s, "_.:/=+-@ ", 1, 256);
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
	if ((idm & MG_CREDS_SOURCE_IDENTITY) && !all_chars(uid, "_+=,.@-", 2, 64))
		return set_error(out, -EINVAL, 500, "InvalidSubject",
				 "pod uid is not a valid SourceIdentity (2-64 of [\\w+=,.@-])");
	if ((idm & MG_CREDS_SESSION_TAGS) && (!tag_value_ok(uid) || (appr && !tag_value_ok(appr))))
		return set_error(out, -EINVAL, 500, "InvalidSubject",
				 "pod uid or approval id is not a valid session tag value");
	snprintf(dur, sizeof(dur), "%u", c->cfg.duration_seconds);
	ret = form_add(&body, &blen, "Action", "AssumeRole");
	ret = ret ?: form_add(&body, &blen, "Version", STS_VERSION);
	ret = ret ?: form_add(&body, &blen, "RoleArn", c->cfg.role_arn);
	ret = ret ?: form_add(&body, &blen, "RoleSessionName", sess);
	ret = ret ?: form_add(&body, &blen, "DurationSeconds", dur);
	if (idm & MG_CREDS_SESSION_TAGS) {
		ret = ret ?: form_add(&body, &blen, "Tags.member.1.Key", "mcpgate.io/pod-uid");
		ret = ret ?: form_add(&body, &blen, "Tags.member.1.Value", uid);
		if (appr) {
			ret = ret
				      ?: form_add(&body, &blen, "Tags.member.2.Key",
						  "mcpgate.io/approval-id");
			ret = ret ?: form_add(&body, &blen, "Tags.member.2.Value", appr);
		}
	}
	if (idm & MG_CREDS_SOURCE_IDENTITY)
		ret = ret ?: form_add(&body, &blen, "SourceIdentity", uid);
	if (ret < 0) {
		ret = set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
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
		ret = set_error(out, ret, 500, "InternalError", "signing AssumeRole failed");
		goto out;
	}
	if (asprintf(&h_host, "Host: %s", c->sts_host) < 0 ||
	    asprintf(&h_date, "X-Amz-Date: %s", sig.amz_date) < 0 ||
	    asprintf(&h_auth, "Authorization: %s", sig.authorization) < 0 ||
	    (base->token[0] && asprintf(&h_tok, "X-Amz-Security-Token: %s", base->token) < 0)) {
		ret = set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
		goto out;
	}
	hdrs[nh++] = h_host;
	hdrs[nh++] = "Content-Type: " FORM_TYPE;
	hdrs[nh++] = h_date;
	if (h_tok)
		hdrs[nh++] = h_tok;
	hdrs[nh++] = h_auth;
	ret = sts_call(c, "AssumeRole", c->cfg.role_arn, body, hdrs, nh, base->token, cr, out);
out:
	mg_sigv4_signed_free(&sig);
	wipe_str(body);
	free(h_host);
	free(h_date);
	wipe_str(h_tok);
	wipe_str(h_auth);
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
	b64 = base64url_nopad(url, strlen(url));
	wipe_str(url);
	if (!b64)
		return -ENOMEM;
	ret = asprintf(token, EKS_TOKEN_PREFIX "%s", b64) < 0 ? -ENOMEM : 0;
	wipe_str(b64);
	return ret;
}

static int set_bearer(struct mg_creds_result *out, const char *token)
{
	if (asprintf(&out->authorization, "Bearer %s", token) < 0) {
		out->authorization = NULL;
		return set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
	}
	return 0;
}

static int eks_get(struct mg_creds *c, const struct mg_creds_subject *who,
		   struct mg_creds_result *out)
{
	const time_t now = now_of(c);
	struct aws_creds *cr = calloc(1, sizeof(*cr)), *base = NULL;
	char key[KEY_MAX] = "", *stale = NULL, *token = NULL;
	time_t stale_exp = 0, valid;
	bool have = false;
	struct entry *e;
	int ret;

	if (!cr)
		return set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
	/* Assumed-role sessions are per pod and grant; the daemon's own
	 * credentials give one token for everybody. */
	if (c->cfg.role_arn && !c->no_identity)
		snprintf(key, sizeof(key), "%s\n%s", who && who->uid ? who->uid : "",
			 who && who->approval_id ? who->approval_id : "");

	pthread_mutex_lock(&c->lock);
	e = cache_find(c, key);
	if (e && e->value && e->expiry - now >= REFRESH_MARGIN) {
		e->last_used = now;
		ret = set_bearer(out, e->value);
		out->expiry = e->expiry;
		pthread_mutex_unlock(&c->lock);
		wipe_free(cr, sizeof(*cr));
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
			ret = base ? base_creds(c, now, base, out)
				   : set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
			if (ret == 0)
				ret = assume_role(c, base, who, now, cr, out);
			wipe_free(base, sizeof(*base));
		} else {
			ret = base_creds(c, now, cr, out);
		}
		if (ret < 0) {
			/* A passing STS hiccup need not fail a request while the
			 * token we have is still good for a while. */
			if (ret == -EAGAIN && stale) {
				int r2;

				memset(out, 0, sizeof(*out));
				r2 = set_bearer(out, stale);
				out->expiry = stale_exp;
				ret = r2;
			}
			goto out;
		}
	}
	if (cr->expiration && cr->expiration - now < MIN_VALIDITY) {
		ret = set_error(out, -ESTALE, 502, "CredentialsExpiring",
				"AWS credentials expire in %lld s",
				(long long)(cr->expiration - now));
		goto out;
	}
	ret = eks_token(c, cr, now, &token);
	if (ret < 0) {
		ret = set_error(out, ret, 500, "InternalError", "signing the EKS token failed");
		goto out;
	}
	valid = now + EKS_TOKEN_TTL;
	if (cr->expiration && cr->expiration < valid)
		valid = cr->expiration;
	ret = set_bearer(out, token);
	if (ret < 0)
		goto out;
	out->expiry = valid;

	pthread_mutex_lock(&c->lock);
	e = cache_get(c, key);
	if (e) {
		char *v = strdup(token);

		if (v) {
			wipe_str(e->value);
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
	wipe_str(token);
	wipe_str(stale);
	wipe_free(cr, sizeof(*cr));
	return ret;
}

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

	ret = read_secret_file(c->cfg.token_file, &bearer);
	if (ret < 0)
		return set_error(out, ret, 500, "NoCredentials", "token file %s: %s",
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
	if (!*bearer || !header_safe(bearer)) {
		ret = set_error(out, -EINVAL, 500, "NoCredentials",
				"token file %s is empty or not one line", c->cfg.token_file);
		goto out;
	}
	if (!body || asprintf(&hauth, "Authorization: Bearer %s", bearer) < 0)
		hauth = NULL;
	if (!hauth || asprintf(&url, "%s/api/v1/namespaces/%s/serviceaccounts/%s/token",
			       c->cfg.api_server, ns, sa) < 0) {
		url = NULL;
		ret = set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
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
	ret = http_do(&q, &r);
	if (ret < 0) {
		ret = set_error(out, ret == -ENOMEM ? ret : -EAGAIN, ret == -ENOMEM ? 500 : 502,
				"TokenRequestUnavailable", "TokenRequest for %s/%s: %s", ns, sa,
				r.err);
		goto out;
	}
	j = json_loadb(r.body, r.len, JSON_REJECT_DUPLICATES, &jerr);
	if (r.status != 201 && r.status != 200) {
		const char *reason = json_string_value(json_object_get(j, "reason"));
		const char *msg = json_string_value(json_object_get(j, "message"));
		char m[200] = "";

		if (msg)
			safe_message(m, sizeof(m), msg, bearer);
		ret = set_error(out, r.status >= 500 ? -EAGAIN : -EACCES, 502, "TokenRequestFailed",
				"TokenRequest for %s/%s: HTTP %ld %s%s%s", ns, sa, r.status,
				reason && all_chars(reason, "", 1, 63) ? reason : "",
				m[0] ? ": " : "", m);
		goto out;
	}
	tok = json_string_value(json_object_get(json_object_get(j, "status"), "token"));
	ts = json_string_value(
		json_object_get(json_object_get(j, "status"), "expirationTimestamp"));
	if (!tok || !*tok || !header_safe(tok) || !ts ||
	    mg_sigv4_parse_time(mg_str_of(ts), exp) < 0 || *exp - now < MIN_VALIDITY) {
		ret = set_error(
			out, -EPROTO, 502, "TokenRequestBadResponse",
			"TokenRequest for %s/%s: no usable status.token/expirationTimestamp", ns,
			sa);
		goto out;
	}
	*token = strdup(tok);
	ret = *token ? 0 : set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
out:
	if (j) {
		tok = json_string_value(json_object_get(json_object_get(j, "status"), "token"));
		if (tok)
			OPENSSL_cleanse((char *)tok, strlen(tok));
		json_decref(j);
	}
	http_resp_free(&r);
	wipe_free(bearer, MAX_FILE + 1);
	wipe_str(hauth);
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
	const time_t now = now_of(c);
	char key[KEY_MAX], *stale = NULL, *token = NULL;
	time_t stale_exp = 0, exp = 0;
	struct entry *e;
	int ret;

	if (!k8s_name_ok(ns) || !k8s_name_ok(sa))
		return set_error(out, -EINVAL, 500, "InvalidSubject",
				 "no valid namespace/serviceaccount for TokenRequest");
	snprintf(key, sizeof(key), "%s/%s", ns, sa);
	pthread_mutex_lock(&c->lock);
	e = cache_find(c, key);
	if (e && e->value && now < e->refresh_at && e->expiry - now >= MIN_VALIDITY) {
		e->last_used = now;
		ret = set_bearer(out, e->value);
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
			ret = set_bearer(out, stale);
			out->expiry = stale_exp;
		}
		goto out;
	}
	ret = set_bearer(out, token);
	if (ret < 0)
		goto out;
	out->expiry = exp;
	pthread_mutex_lock(&c->lock);
	e = cache_get(c, key);
	if (e) {
		wipe_str(e->value);
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
	wipe_str(token);
	wipe_str(stale);
	return ret;
}

/* ---- impersonate ---- */

/* Expands {namespace} {pod} {uid} {serviceaccount} in <tpl> from <who>.
 * Returns a malloc'd string, NULL if a placeholder has no value (or
 * ENOMEM, or an unknown placeholder). */
static char *expand(const char *tpl, const struct mg_creds_subject *who)
{
	static const char *const names[] = {"namespace", "pod", "uid", "serviceaccount"};
	char *o = NULL;
	size_t olen = 0;
	FILE *f = open_memstream(&o, &olen);

	if (!f)
		return NULL;
	for (const char *p = tpl; *p;) {
		const char *val = NULL;
		size_t i, n;

		if (*p != '{') {
			fputc(*p++, f);
			continue;
		}
		for (i = 0; i < 4; i++) {
			n = strlen(names[i]);
			if (!strncmp(p + 1, names[i], n) && p[1 + n] == '}')
				break;
		}
		if (i == 4)
			goto bad;
		if (who)
			val = i == 0   ? who->ns
			      : i == 1 ? who->pod
			      : i == 2 ? who->uid
				       : who->service_account;
		if (!val || !*val)
			goto bad;
		fputs(val, f);
		p += n + 2;
	}
	if (fclose(f)) {
		free(o);
		return NULL;
	}
	return o;
bad:
	fclose(f);
	free(o);
	return NULL;
}

/* Impersonate-Extra-<key>: the key lower-cased, and every byte that may
 * not appear in a header name (RFC 9110 §5.6.2 tchar), or '%' itself,
 * percent-encoded; the API server lower-cases the header name and
 * path-unescapes it back into the key. */
static char *extra_header_name(const char *key)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = strlen(key);
	char *o = malloc(sizeof("Impersonate-Extra-") + 3 * n), *p;

	if (!o)
		return NULL;
	p = o + sprintf(o, "Impersonate-Extra-");
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)key[i];

		if (ch >= 'A' && ch <= 'Z')
			ch = (unsigned char)(ch + 32);
		if (is_tchar(ch) && ch != '%') {
			*p++ = (char)ch;
		} else {
			*p++ = '%';
			*p++ = hex[ch >> 4];
			*p++ = hex[ch & 15];
		}
	}
	*p = '\0';
	return o;
}

static int add_header(struct mg_creds_result *out, char *name, char *value)
{
	struct mg_creds_header *h;

	if (!name || !value)
		goto nomem;
	h = realloc(out->headers, (out->n_headers + 1) * sizeof(*h));
	if (!h)
		goto nomem;
	out->headers = h;
	h[out->n_headers].name = name;
	h[out->n_headers].value = value;
	out->n_headers++;
	return 0;
nomem:
	free(name);
	free(value);
	return set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
}

static int impersonate_get(struct mg_creds *c, const struct mg_creds_subject *who,
			   struct mg_creds_result *out)
{
	const char *tpl =
		c->cfg.user ? c->cfg.user : "system:serviceaccount:{namespace}:{serviceaccount}";
	char *bearer = NULL, *v;
	int ret;

	ret = read_secret_file(c->cfg.token_file, &bearer);
	if (ret < 0)
		return set_error(out, ret, 500, "NoCredentials", "token file %s: %s",
				 c->cfg.token_file, strerror(-ret));
	if (!*bearer || !header_safe(bearer)) {
		ret = set_error(out, -EINVAL, 500, "NoCredentials",
				"token file %s is empty or not one line", c->cfg.token_file);
		goto out;
	}
	ret = set_bearer(out, bearer);
	if (ret < 0)
		goto out;
	v = expand(tpl, who);
	if (!v || !*v || !header_safe(v)) {
		free(v);
		ret = set_error(out, -EINVAL, 500, "InvalidSubject",
				"impersonated user template has no value for this pod");
		goto out;
	}
	ret = add_header(out, strdup("Impersonate-User"), v);
	for (size_t i = 0; !ret && i < c->cfg.n_groups; i++) {
		v = expand(c->cfg.groups[i], who);
		if (!v || !header_safe(v)) {
			free(v);
			ret = set_error(out, -EINVAL, 500, "InvalidSubject",
					"impersonated group template has no value for this pod");
			break;
		}
		ret = add_header(out, strdup("Impersonate-Group"), v);
	}
	if (!ret && who && who->uid) {
		if (!header_safe(who->uid))
			ret = set_error(out, -EINVAL, 500, "InvalidSubject",
					"pod uid has control bytes");
		else
			ret = add_header(out, extra_header_name("mcpgate.io/pod-uid"),
					 strdup(who->uid));
	}
	if (!ret && who && who->approval_id) {
		if (!header_safe(who->approval_id))
			ret = set_error(out, -EINVAL, 500, "InvalidSubject",
					"approval id has control bytes");
		else
			ret = add_header(out, extra_header_name("mcpgate.io/approval-id"),
					 strdup(who->approval_id));
	}
out:
	wipe_free(bearer, MAX_FILE + 1);
	return ret;
}

/* ---- entry points ---- */

int mg_creds_get(struct mg_creds *c, const struct mg_creds_subject *who,
		 struct mg_creds_result *out)
{
	int ret;

	memset(out, 0, sizeof(*out));
	switch (c->cfg.kind) {
	case MG_CREDS_EKS:
		ret = eks_get(c, who, out);
		break;
	case MG_CREDS_SERVICEACCOUNT:
		ret = sa_get(c, who, out);
		break;
	case MG_CREDS_IMPERSONATE:
		ret = impersonate_get(c, who, out);
		break;
	default:
		ret = set_error(out, -EINVAL, 500, "InternalError", "unknown provider");
		break;
	}
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
			set_error(out, ret, 500, "InternalError", "credentials failed");
	}
	return ret;
}

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
		return set_error(err, -EINVAL, 500, "InvalidConfig", "%s", errbuf);
	c->no_identity = true;
	ret = mg_creds_get(c, NULL, &r);
	mg_creds_free(c);
	if (ret < 0) {
		*err = r;
		return ret;
	}
	if (!gmtime_r(&until, &tm) || !strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm)) {
		mg_creds_result_free(&r);
		return set_error(err, -EINVAL, 500, "InvalidConfig", "time out of range");
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
		return set_error(err, -ENOMEM, 500, "InternalError", "out of memory");
	}
	mg_creds_result_free(&r);
	return 0;
}
