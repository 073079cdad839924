/*
 * AWS Signature Version 4 and the STS XML responses (see sigv4.h).
 *
 * Reference for the canonical forms: the SigV4 documentation ("Create a
 * canonical request", "Create a string to sign", "Calculate the signature")
 * and the aws-sig-v4-test-suite, whose vectors tests/unit/test_sigv4.c
 * checks. Secrets only ever live in buffers this file wipes before freeing.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "mcpgate/sigv4.h"

/* ---- a growable string that wipes what it drops ---- */

struct sb {
	char *p;
	size_t len;
	size_t cap;
	bool oom;
};

/* Makes room for <need> more bytes plus a NUL. Grows by copying into a new
 * block and wiping the old one, so no secret is left behind in freed memory
 * (realloc may move without clearing).
 */
static bool sb_room(struct sb *b, size_t need)
{
	size_t cap;
	char *n;

	if (b->oom)
		return false;
	if (b->len + need + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 128;
	while (cap < b->len + need + 1) {
		if (cap > SIZE_MAX / 2) {
			b->oom = true;
			return false;
		}
		cap *= 2;
	}
	n = malloc(cap);
	if (!n) {
		b->oom = true;
		return false;
	}
	if (b->p) {
		memcpy(n, b->p, b->len);
		OPENSSL_cleanse(b->p, b->cap);
		free(b->p);
	}
	b->p = n;
	b->cap = cap;
	b->p[b->len] = '\0';
	return true;
}

static void sb_add(struct sb *b, const char *s, size_t n)
{
	if (!sb_room(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_adds(struct sb *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_addc(struct sb *b, char c)
{
	sb_add(b, &c, 1);
}

static bool is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

/* Appends <s>[0..<n>) escaped as SigV4 wants: RFC 3986 unreserved bytes as
 * they are, every other byte as %XX with upper-case hex ('/' kept when
 * <keep_slash>, for paths).
 */
static void sb_escape(struct sb *b, const char *s, size_t n, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";

	if (!sb_room(b, 3 * n))
		return;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (is_unreserved(c) || (keep_slash && c == '/')) {
			b->p[b->len++] = (char)c;
		} else {
			b->p[b->len++] = '%';
			b->p[b->len++] = hex[c >> 4];
			b->p[b->len++] = hex[c & 15];
		}
	}
	b->p[b->len] = '\0';
}

static void sb_wipe(struct sb *b)
{
	if (b->p) {
		OPENSSL_cleanse(b->p, b->cap);
		free(b->p);
	}
	b->p = NULL;
	b->len = b->cap = 0;
}

/* Hands the string over to the caller (NULL after an allocation failure,
 * in which case the buffer is wiped).
 */
static char *sb_take(struct sb *b)
{
	char *p;

	if (b->oom || !sb_room(b, 0)) {
		sb_wipe(b);
		return NULL;
	}
	p = b->p;
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}

static void free_wiped(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

int mg_sigv4_escape_append(char **buf, size_t *blen, const char *s, size_t len, bool keep_slash)
{
	struct sb b = {.p = *buf, .len = *blen, .cap = *buf ? *blen + 1 : 0};

	sb_escape(&b, s, len, keep_slash);
	if (b.oom) {
		/* The old block was not dropped: the caller still owns it. */
		return -ENOMEM;
	}
	*buf = b.p;
	*blen = b.len;
	return 0;
}

/* ---- hashing ---- */

static void to_hex(const unsigned char *d, size_t n, char *hex)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 15];
	}
	hex[2 * n] = '\0';
}

void mg_sigv4_sha256_hex(const void *data, size_t len, char hex[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	if (!EVP_Digest(data ? data : "", len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		abort(); /* SHA-256 cannot fail short of a broken libcrypto */
	to_hex(md, 32, hex);
}

static void hmac_sha256(const void *key, size_t klen, const char *msg, size_t mlen,
			unsigned char out[32])
{
	unsigned int olen = 0;

	if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, out, &olen) ||
	    olen != 32)
		abort();
}

/* ---- canonical request ---- */

static bool is_tchar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* One header to sign: lower-cased name, the caller's value, its position
 * (so that repeated headers keep their order after sorting).
 */
struct hdr {
	char name[128];
	const char *value;
	size_t order;
};

static int hdr_cmp(const void *a, const void *b)
{
	const struct hdr *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

static int hdr_set(struct hdr *h, const char *name, const char *value, size_t order)
{
	size_t n = strlen(name);

	if (n == 0 || n >= sizeof(h->name) || !value)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!is_tchar(c))
			return -EINVAL;
		h->name[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	h->name[n] = '\0';
	h->value = value;
	h->order = order;
	return 0;
}

/* Appends <v> trimmed, each inner run of whitespace (folded lines included)
 * collapsed into one space, as the canonical header value rule says.
 */
static void sb_header_value(struct sb *b, const char *v)
{
	bool pending = false, any = false;

	for (; *v; v++) {
		if (is_ws(*v)) {
			pending = any;
			continue;
		}
		if (pending)
			sb_addc(b, ' ');
		sb_addc(b, *v);
		pending = false;
		any = true;
	}
}

/* A path segment kept by sb_canonical_uri(). */
struct seg {
	const char *p;
	size_t n;
};

/* Canonical URI: <path> with, when <normalize>, empty, "." and ".." segments
 * resolved (RFC 3986 §5.2.4, plus merging "//"), then escaped once with '/'
 * kept. A trailing '/' (or a trailing "." / ".." segment) keeps the result's
 * trailing slash.
 */
static void sb_canonical_uri(struct sb *b, const char *path, bool normalize)
{
	struct seg *segs;
	size_t nseg = 0, plen = strlen(path);
	const char *s = path, *end = path + plen;
	bool last_dot = false;

	if (plen == 0) {
		sb_addc(b, '/');
		return;
	}
	if (!normalize) {
		sb_escape(b, path, plen, true);
		return;
	}
	segs = calloc(plen / 2 + 2, sizeof(*segs));
	if (!segs) {
		b->oom = true;
		return;
	}
	while (s < end) {
		const char *e;
		size_t n;

		while (s < end && *s == '/')
			s++;
		if (s == end)
			break;
		e = s;
		while (e < end && *e != '/')
			e++;
		n = (size_t)(e - s);
		last_dot = (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
		if (n == 2 && last_dot) {
			if (nseg)
				nseg--;
		} else if (!last_dot) {
			segs[nseg].p = s;
			segs[nseg].n = n;
			nseg++;
		}
		s = e;
	}
	for (size_t i = 0; i < nseg; i++) {
		sb_addc(b, '/');
		sb_escape(b, segs[i].p, segs[i].n, false);
	}
	if (nseg == 0 || last_dot || path[plen - 1] == '/')
		sb_addc(b, '/');
	free(segs);
}

/* An escaped query pair, for sorting. */
struct qpair {
	char *name;
	char *value;
};

static int qpair_cmp(const void *a, const void *b)
{
	const struct qpair *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

static char *escaped(const char *s, bool *oom)
{
	struct sb b = {0};
	char *r;

	sb_escape(&b, s, strlen(s), false);
	r = sb_take(&b);
	if (!r)
		*oom = true;
	return r;
}

/* Appends "name=value&..." for <n> pairs, escaped, in the given order. */
static void sb_query_in_order(struct sb *b, const struct mg_sigv4_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (b->len)
			sb_addc(b, '&');
		sb_escape(b, kv[i].name, strlen(kv[i].name), false);
		sb_addc(b, '=');
		sb_escape(b, kv[i].value, strlen(kv[i].value), false);
	}
}

static const char *const reserved_headers[] = {
	"host", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256", "authorization",
};

/* ---- signing, along SigV4's four tasks ---- */

/* What the four tasks share for one signature; wiped by signing_wipe(). */
struct signing {
	const struct mg_sigv4_req *r;
	const struct mg_sigv4_creds *c;
	bool presign;
	const char *token;    /* the session token, or NULL */
	char date8[9];	      /* YYYYMMDD of the signing time */
	char scope[256];      /* <date8>/<region>/<service>/aws4_request */
	char credential[512]; /* <access key id>/<scope> */
	char expires[16];
	struct hdr *hdrs; /* the signed headers, sorted */
	size_t nh;
	struct sb signed_hdrs;	  /* "host;x-amz-date" */
	struct mg_sigv4_kv xq[6]; /* X-Amz-* query parameters when presigning */
	size_t nx;
	struct qpair *pairs; /* every query pair, escaped and sorted */
	size_t np;
};

static void signing_wipe(struct signing *s)
{
	OPENSSL_cleanse(s->credential, sizeof(s->credential));
	for (size_t i = 0; i < s->np; i++) {
		free_wiped(s->pairs[i].name);
		free_wiped(s->pairs[i].value);
	}
	free(s->pairs);
	free(s->hdrs);
	sb_wipe(&s->signed_hdrs);
}

/* Checks that <r> and <c> hold every field a signature needs. */
static int sign_check(const struct mg_sigv4_req *r, const struct mg_sigv4_creds *c)
{
	if (!r->method || !*r->method || !r->host || !*r->host || !r->region || !*r->region ||
	    !r->service || !*r->service || !c->access_key_id || !*c->access_key_id ||
	    !c->secret_access_key || !*c->secret_access_key || (r->n_query && !r->query) ||
	    (r->n_headers && !r->headers) || (r->body_len && !r->body))
		return -EINVAL;
	return 0;
}

/* Fills the request date <out->amz_date>, the credential scope and the body
 * hash. Returns 0, or -EINVAL for a time outside years 1970..9999 or a
 * scope too long for its buffer. */
static int sign_scope(struct signing *s, struct mg_sigv4_signed *out)
{
	const struct mg_sigv4_req *r = s->r;
	struct tm tm;

	if (!gmtime_r(&r->when, &tm) || tm.tm_year + 1900 < 1970 || tm.tm_year + 1900 > 9999)
		return -EINVAL;
	strftime(out->amz_date, sizeof(out->amz_date), "%Y%m%dT%H%M%SZ", &tm);
	memcpy(s->date8, out->amz_date, 8);
	s->date8[8] = '\0';
	if (snprintf(s->scope, sizeof(s->scope), "%s/%s/%s/aws4_request", s->date8, r->region,
		     r->service) >= (int)sizeof(s->scope) ||
	    snprintf(s->credential, sizeof(s->credential), "%s/%s", s->c->access_key_id,
		     s->scope) >= (int)sizeof(s->credential))
		return -EINVAL;
	mg_sigv4_sha256_hex(r->body, r->body_len, out->content_sha256);
	return 0;
}

/* The headers to sign: Host, the caller's, then the ones header auth adds;
 * sorted, and their names joined into <s->signed_hdrs>. Returns 0, -EINVAL
 * for a header name that is not a token or one the signer adds itself,
 * -ENOMEM. */
static int canonical_headers(struct signing *s, const struct mg_sigv4_signed *out)
{
	const struct mg_sigv4_req *r = s->r;

	s->hdrs = calloc(r->n_headers + 4, sizeof(*s->hdrs));
	if (!s->hdrs)
		return -ENOMEM;
	if (hdr_set(&s->hdrs[s->nh], "host", r->host, s->nh) < 0)
		return -EINVAL;
	s->nh++;
	for (size_t i = 0; i < r->n_headers; i++) {
		struct hdr *h = &s->hdrs[s->nh];

		if (!r->headers[i].name ||
		    hdr_set(h, r->headers[i].name, r->headers[i].value, s->nh) < 0)
			return -EINVAL;
		for (size_t j = 0; j < sizeof(reserved_headers) / sizeof(*reserved_headers); j++)
			if (!strcmp(h->name, reserved_headers[j]))
				return -EINVAL;
		s->nh++;
	}
	if (!s->presign) {
		hdr_set(&s->hdrs[s->nh], "x-amz-date", out->amz_date, s->nh);
		s->nh++;
		if (s->token) {
			hdr_set(&s->hdrs[s->nh], "x-amz-security-token", s->token, s->nh);
			s->nh++;
		}
		if (r->sign_content_sha256) {
			hdr_set(&s->hdrs[s->nh], "x-amz-content-sha256", out->content_sha256,
				s->nh);
			s->nh++;
		}
	}
	qsort(s->hdrs, s->nh, sizeof(*s->hdrs), hdr_cmp);
	for (size_t i = 0; i < s->nh; i++) {
		if (i && !strcmp(s->hdrs[i].name, s->hdrs[i - 1].name))
			continue;
		if (s->signed_hdrs.len)
			sb_addc(&s->signed_hdrs, ';');
		sb_adds(&s->signed_hdrs, s->hdrs[i].name);
	}
	return s->signed_hdrs.oom ? -ENOMEM : 0;
}

/* The query to sign: the caller's parameters, plus X-Amz-* when presigning
 * (so after canonical_headers(): they name the signed headers); escaped and
 * sorted by name then value. Returns 0, -EINVAL for a pair with a NULL
 * name or value, -ENOMEM. */
static int canonical_query(struct signing *s, const struct mg_sigv4_signed *out)
{
	const struct mg_sigv4_req *r = s->r;
	bool oom = false;

	if (s->presign) {
		snprintf(s->expires, sizeof(s->expires), "%u", r->expires);
		s->xq[s->nx++] = (struct mg_sigv4_kv){"X-Amz-Algorithm", MG_SIGV4_ALGORITHM};
		s->xq[s->nx++] = (struct mg_sigv4_kv){"X-Amz-Credential", s->credential};
		s->xq[s->nx++] = (struct mg_sigv4_kv){"X-Amz-Date", out->amz_date};
		s->xq[s->nx++] = (struct mg_sigv4_kv){"X-Amz-Expires", s->expires};
		s->xq[s->nx++] = (struct mg_sigv4_kv){"X-Amz-SignedHeaders", s->signed_hdrs.p};
		if (s->token)
			s->xq[s->nx++] = (struct mg_sigv4_kv){"X-Amz-Security-Token", s->token};
	}
	s->pairs = calloc(r->n_query + s->nx + 1, sizeof(*s->pairs));
	if (!s->pairs)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_query + s->nx; i++) {
		const struct mg_sigv4_kv *kv =
			i < r->n_query ? &r->query[i] : &s->xq[i - r->n_query];

		if (!kv->name || !kv->value)
			return -EINVAL;
		s->pairs[s->np].name = escaped(kv->name, &oom);
		s->pairs[s->np].value = escaped(kv->value, &oom);
		s->np++;
		if (oom)
			return -ENOMEM;
	}
	qsort(s->pairs, s->np, sizeof(*s->pairs), qpair_cmp);
	return 0;
}

/* Task 1, the canonical request into <creq>: method, URI, query, headers,
 * signed headers, body hash, one per line. Returns 0 or -errno as
 * canonical_headers() and canonical_query(). */
static int canonical_request(struct signing *s, const struct mg_sigv4_signed *out, struct sb *creq)
{
	const struct mg_sigv4_req *r = s->r;
	int rc = canonical_headers(s, out);

	if (!rc)
		rc = canonical_query(s, out);
	if (rc)
		return rc;
	sb_adds(creq, r->method);
	sb_addc(creq, '\n');
	sb_canonical_uri(creq, r->path ? r->path : "/", r->normalize_path);
	sb_addc(creq, '\n');
	for (size_t i = 0; i < s->np; i++) {
		if (i)
			sb_addc(creq, '&');
		sb_adds(creq, s->pairs[i].name);
		sb_addc(creq, '=');
		sb_adds(creq, s->pairs[i].value);
	}
	sb_addc(creq, '\n');
	for (size_t i = 0; i < s->nh; i++) {
		if (i && !strcmp(s->hdrs[i].name, s->hdrs[i - 1].name)) {
			sb_addc(creq, ',');
		} else {
			if (i)
				sb_addc(creq, '\n');
			sb_adds(creq, s->hdrs[i].name);
			sb_addc(creq, ':');
		}
		sb_header_value(creq, s->hdrs[i].value);
	}
	sb_adds(creq, "\n\n");
	sb_adds(creq, s->signed_hdrs.p ? s->signed_hdrs.p : "");
	sb_addc(creq, '\n');
	sb_adds(creq, out->content_sha256);
	return creq->oom ? -ENOMEM : 0;
}

/* Task 2, the string to sign into <sts>: the algorithm, the request date,
 * the credential scope and the hash of the canonical request <creq>.
 * Returns 0 or -ENOMEM. */
static int string_to_sign(const struct signing *s, const char *amz_date, const struct sb *creq,
			  struct sb *sts)
{
	char hash[65];

	mg_sigv4_sha256_hex(creq->p, creq->len, hash);
	sb_adds(sts, MG_SIGV4_ALGORITHM "\n");
	sb_adds(sts, amz_date);
	sb_addc(sts, '\n');
	sb_adds(sts, s->scope);
	sb_addc(sts, '\n');
	sb_adds(sts, hash);
	return sts->oom ? -ENOMEM : 0;
}

/* Task 3, the signing key into <key>: HMAC chain of "AWS4" + secret over
 * the date, region, service and "aws4_request". Returns 0 or -ENOMEM. */
static int signing_key(const struct signing *s, unsigned char key[32])
{
	struct sb secret = {0};
	unsigned char k[32];

	sb_adds(&secret, "AWS4");
	sb_adds(&secret, s->c->secret_access_key);
	if (secret.oom) {
		sb_wipe(&secret);
		return -ENOMEM;
	}
	hmac_sha256(secret.p, secret.len, s->date8, 8, key);
	hmac_sha256(key, 32, s->r->region, strlen(s->r->region), k);
	hmac_sha256(k, 32, s->r->service, strlen(s->r->service), key);
	hmac_sha256(key, 32, "aws4_request", 12, k);
	memcpy(key, k, 32);
	OPENSSL_cleanse(k, sizeof(k));
	sb_wipe(&secret);
	return 0;
}

/* Task 4, the signature: HMAC of the string to sign <sts> under <key>, in
 * lower-case hex into <hex>. */
static void signature(const unsigned char key[32], const struct sb *sts, char hex[65])
{
	unsigned char sig[32];

	hmac_sha256(key, 32, sts->p, sts->len, sig);
	to_hex(sig, 32, hex);
}

/* What the caller sends: the Authorization header value and the caller's
 * query (header mode), or the whole presigned query. Returns 0 or -ENOMEM. */
static int sign_output(struct signing *s, struct mg_sigv4_signed *out)
{
	struct sb query = {0};
	int ret = 0;

	if (s->presign) {
		sb_query_in_order(&query, s->r->query, s->r->n_query);
		sb_query_in_order(&query, s->xq, s->nx);
		if (query.len)
			sb_addc(&query, '&');
		sb_adds(&query, "X-Amz-Signature=");
		sb_adds(&query, out->signature);
	} else {
		struct sb a = {0};

		sb_query_in_order(&query, s->r->query, s->r->n_query);
		sb_adds(&a, MG_SIGV4_ALGORITHM " Credential=");
		sb_adds(&a, s->credential);
		sb_adds(&a, ", SignedHeaders=");
		sb_adds(&a, s->signed_hdrs.p);
		sb_adds(&a, ", Signature=");
		sb_adds(&a, out->signature);
		out->authorization = sb_take(&a);
		if (!out->authorization)
			ret = -ENOMEM;
	}
	if (!ret) {
		if (!query.p)
			sb_room(&query, 0);
		out->query = sb_take(&query);
		out->signed_headers = sb_take(&s->signed_hdrs);
		if (!out->query || !out->signed_headers)
			ret = -ENOMEM;
	}
	sb_wipe(&query);
	return ret;
}

int mg_sigv4_sign(const struct mg_sigv4_req *r, const struct mg_sigv4_creds *c,
		  struct mg_sigv4_signed *out)
{
	struct signing s = {.r = r, .c = c, .presign = r->expires > 0};
	struct sb creq = {0}, sts = {0};
	unsigned char key[32];
	int ret;

	memset(out, 0, sizeof(*out));
	s.token = c->session_token && *c->session_token ? c->session_token : NULL;
	ret = sign_check(r, c);
	if (!ret)
		ret = sign_scope(&s, out);
	if (!ret)
		ret = canonical_request(&s, out, &creq);
	if (!ret)
		ret = string_to_sign(&s, out->amz_date, &creq, &sts);
	if (!ret)
		ret = signing_key(&s, key);
	if (!ret) {
		signature(key, &sts, out->signature);
		ret = sign_output(&s, out);
	}
	if (!ret) {
		out->canonical_request = sb_take(&creq);
		out->string_to_sign = sb_take(&sts);
		if (!out->canonical_request || !out->string_to_sign)
			ret = -ENOMEM;
	}
	OPENSSL_cleanse(key, sizeof(key));
	sb_wipe(&creq);
	sb_wipe(&sts);
	signing_wipe(&s);
	if (ret < 0)
		mg_sigv4_signed_free(out);
	return ret;
}

void mg_sigv4_signed_free(struct mg_sigv4_signed *s)
{
	free_wiped(s->authorization);
	free_wiped(s->query);
	free_wiped(s->signed_headers);
	free_wiped(s->canonical_request);
	free_wiped(s->string_to_sign);
	OPENSSL_cleanse(s, sizeof(*s));
}

/* ---- timestamps ---- */

static bool digits(const char *p, size_t n, int *v)
{
	int x = 0;

	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		x = x * 10 + (p[i] - '0');
	}
	*v = x;
	return true;
}

int mg_sigv4_parse_time(struct mg_str s, time_t *out)
{
	int Y, M, D, h, m, sec, oh = 0, om = 0;
	const char *p = s.ptr;
	size_t i = 19;
	struct tm tm = {0}, back;
	long off = 0;
	time_t t;

	if (!p || s.len < 20 || !digits(p, 4, &Y) || p[4] != '-' || !digits(p + 5, 2, &M) ||
	    p[7] != '-' || !digits(p + 8, 2, &D) || p[10] != 'T' || !digits(p + 11, 2, &h) ||
	    p[13] != ':' || !digits(p + 14, 2, &m) || p[16] != ':' || !digits(p + 17, 2, &sec))
		return -EINVAL;
	if (p[i] == '.') {
		size_t f = ++i;

		while (i < s.len && p[i] >= '0' && p[i] <= '9')
			i++;
		if (i == f || i - f > 9)
			return -EINVAL;
	}
	if (i < s.len && p[i] == 'Z') {
		i++;
	} else if (i + 6 == s.len && (p[i] == '+' || p[i] == '-') && digits(p + i + 1, 2, &oh) &&
		   p[i + 3] == ':' && digits(p + i + 4, 2, &om) && oh < 24 && om < 60) {
		off = (oh * 60L + om) * 60L * (p[i] == '-' ? -1 : 1);
		i += 6;
	} else {
		return -EINVAL;
	}
	if (i != s.len || Y < 1970 || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 ||
	    sec > 60)
		return -EINVAL;
	if (sec == 60) /* a leap second is the next second's first instant */
		sec = 59;
	tm.tm_year = Y - 1900;
	tm.tm_mon = M - 1;
	tm.tm_mday = D;
	tm.tm_hour = h;
	tm.tm_min = m;
	tm.tm_sec = sec;
	t = timegm(&tm);
	/* timegm() normalises February 30th into March: refuse what moved. */
	if (t == (time_t)-1 || !gmtime_r(&t, &back) || back.tm_mday != D || back.tm_mon != M - 1)
		return -EINVAL;
	*out = t - off;
	return 0;
}

/* ---- the STS XML reader ---- */

#define XML_MAX_DEPTH 16
#define XML_MAX_NAME  128
#define XML_MAX_ATTRS 16

/* Which response field the element being read fills. */
enum field {
	F_NONE = 0,
	F_ACCESS_KEY,
	F_SECRET,
	F_TOKEN,
	F_EXPIRATION,
	F_ARN,
	F_SOURCE_IDENTITY,
	F_REQUEST_ID,
	F_ERR_TYPE,
	F_ERR_CODE,
	F_ERR_MESSAGE,
	F_COUNT,
};

struct xml {
	const char *buf;
	size_t len;
	size_t pos;
	struct mg_sigv4_err *err;
	struct mg_sigv4_sts_resp *out;
	char root_ok[80]; /* <action>Response */
	char result[80];  /* <action>Result */
	struct mg_str stack[XML_MAX_DEPTH];
	bool has_child[XML_MAX_DEPTH];
	bool has_text[XML_MAX_DEPTH];
	size_t depth;
	bool root_done;
	bool seen[F_COUNT];
	enum field cur; /* field of the innermost open element */
	char *cap;	/* where its text goes */
	size_t cap_size;
	size_t cap_len;
	bool cap_truncates; /* a longer value is cut rather than refused */
	char expiration[64];
};

/* The parser's status while scanning: 1 go on, 0 truncated, -1 invalid. */
static int xml_fail(struct xml *x, const char *reason, size_t pos)
{
	x->err->reason = reason;
	x->err->pos = pos;
	return -1;
}

static bool name_is(struct mg_str n, const char *s)
{
	return mg_str_eq(n, mg_str_of(s));
}

/* Maps the open-element stack to the response field it fills. */
static enum field field_of(const struct xml *x)
{
	const struct mg_str *s = x->stack;
	size_t d = x->depth;

	if (x->out->kind == MG_SIGV4_STS_CREDENTIALS) {
		if (d == 4 && name_is(s[1], x->result) && name_is(s[2], "Credentials")) {
			if (name_is(s[3], "AccessKeyId"))
				return F_ACCESS_KEY;
			if (name_is(s[3], "SecretAccessKey"))
				return F_SECRET;
			if (name_is(s[3], "SessionToken"))
				return F_TOKEN;
			if (name_is(s[3], "Expiration"))
				return F_EXPIRATION;
		}
		if (d == 4 && name_is(s[1], x->result) && name_is(s[2], "AssumedRoleUser") &&
		    name_is(s[3], "Arn"))
			return F_ARN;
		if (d == 3 && name_is(s[1], x->result) && name_is(s[2], "SourceIdentity"))
			return F_SOURCE_IDENTITY;
		if (d == 3 && name_is(s[1], "ResponseMetadata") && name_is(s[2], "RequestId"))
			return F_REQUEST_ID;
		return F_NONE;
	}
	if (d == 3 && name_is(s[1], "Error")) {
		if (name_is(s[2], "Type"))
			return F_ERR_TYPE;
		if (name_is(s[2], "Code"))
			return F_ERR_CODE;
		if (name_is(s[2], "Message"))
			return F_ERR_MESSAGE;
	}
	if (d == 2 && name_is(s[1], "RequestId"))
		return F_REQUEST_ID;
	return F_NONE;
}

static void field_target(struct xml *x, enum field f)
{
	struct mg_sigv4_sts_resp *o = x->out;

	x->cap_truncates = false;
	x->cap_len = 0;
	switch (f) {
	case F_ACCESS_KEY:
		x->cap = o->access_key_id;
		x->cap_size = sizeof(o->access_key_id);
		break;
	case F_SECRET:
		x->cap = o->secret_access_key;
		x->cap_size = sizeof(o->secret_access_key);
		break;
	case F_TOKEN:
		x->cap = o->session_token;
		x->cap_size = sizeof(o->session_token);
		break;
	case F_EXPIRATION:
		x->cap = x->expiration;
		x->cap_size = sizeof(x->expiration);
		break;
	case F_ARN:
		x->cap = o->assumed_role_arn;
		x->cap_size = sizeof(o->assumed_role_arn);
		break;
	case F_SOURCE_IDENTITY:
		x->cap = o->source_identity;
		x->cap_size = sizeof(o->source_identity);
		break;
	case F_REQUEST_ID:
		x->cap = o->request_id;
		x->cap_size = sizeof(o->request_id);
		break;
	case F_ERR_TYPE:
		x->cap = o->error_type;
		x->cap_size = sizeof(o->error_type);
		break;
	case F_ERR_CODE:
		x->cap = o->error_code;
		x->cap_size = sizeof(o->error_code);
		break;
	case F_ERR_MESSAGE:
		/* A human sentence: cut it rather than lose the error. */
		x->cap = o->error_message;
		x->cap_size = sizeof(o->error_message);
		x->cap_truncates = true;
		break;
	default:
		x->cap = NULL;
		x->cap_size = 0;
		break;
	}
	if (x->cap)
		x->cap[0] = '\0';
}

/* Appends decoded bytes to the current field. */
static int cap_add(struct xml *x, const char *s, size_t n, size_t pos)
{
	if (!x->cap)
		return 1;
	if (x->cap_len + n >= x->cap_size) {
		if (!x->cap_truncates)
			return xml_fail(x, "value too long", pos);
		n = x->cap_size - 1 - x->cap_len;
	}
	memcpy(x->cap + x->cap_len, s, n);
	x->cap_len += n;
	x->cap[x->cap_len] = '\0';
	return 1;
}

/* Length of the UTF-8 sequence at <p> (<n> bytes available): > 0 valid,
 * 0 truncated, -1 invalid (overlong, surrogate, beyond U+10FFFF, stray
 * continuation byte).
 */
static int utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	int len;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return -1;
	}
	for (int i = 1; i < len; i++) {
		if ((size_t)i >= n)
			return 0;
		if (p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xbf))
			return -1;
	}
	return len;
}

/* XML 1.0 Char production (§2.2). */
static bool xml_char_ok(uint32_t cp)
{
	return cp == 0x9 || cp == 0xa || cp == 0xd || (cp >= 0x20 && cp <= 0xd7ff) ||
	       (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

static size_t utf8_put(uint32_t cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Decodes the reference at x->pos ('&'): the five predefined entities and
 * character references (§4.1, §4.6). Any other name is an error: there is
 * no DTD that could define one. Writes the bytes to <o> (4 bytes room).
 */
static int xml_entity(struct xml *x, char *o, size_t *olen)
{
	static const struct {
		const char *name;
		char c;
	} ents[] = {{"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
	const char *p = x->buf + x->pos + 1, *end = x->buf + x->len;
	const char *semi = memchr(p, ';', (size_t)(end - p) < 12 ? (size_t)(end - p) : 12);
	size_t n;

	if (!semi)
		return (size_t)(end - p) < 12 ? 0 : xml_fail(x, "bad entity reference", x->pos);
	n = (size_t)(semi - p);
	if (n >= 2 && p[0] == '#') {
		bool hex = p[1] == 'x';
		uint32_t cp = 0;
		size_t i = hex ? 2 : 1;

		if (i == n || n - i > 7)
			return xml_fail(x, "bad character reference", x->pos);
		for (; i < n; i++) {
			char c = p[i];
			unsigned d;

			if (c >= '0' && c <= '9')
				d = (unsigned)(c - '0');
			else if (hex && c >= 'a' && c <= 'f')
				d = (unsigned)(c - 'a' + 10);
			else if (hex && c >= 'A' && c <= 'F')
				d = (unsigned)(c - 'A' + 10);
			else
				return xml_fail(x, "bad character reference", x->pos);
			cp = cp * (hex ? 16 : 10) + d;
		}
		if (!xml_char_ok(cp))
			return xml_fail(x, "character reference to a forbidden character", x->pos);
		*olen = utf8_put(cp, o);
		x->pos += n + 2;
		return 1;
	}
	for (size_t i = 0; i < sizeof(ents) / sizeof(*ents); i++) {
		if (strlen(ents[i].name) == n && !memcmp(p, ents[i].name, n)) {
			o[0] = ents[i].c;
			*olen = 1;
			x->pos += n + 2;
			return 1;
		}
	}
	return xml_fail(x, "unknown entity", x->pos);
}

/* Reads character data up to the next '<' (or, for an attribute value, the
 * closing <quote>), checking every character; decoded bytes go to the
 * current field when <capture>. Sets <*nonws> if anything but whitespace was
 * seen. Returns 1, 0 (truncated), -1.
 */
static int xml_chars(struct xml *x, char quote, bool capture, bool *nonws)
{
	while (x->pos < x->len) {
		unsigned char c = (unsigned char)x->buf[x->pos];
		size_t start = x->pos;
		char dec[4];
		size_t dlen;
		int r;

		if (c == '<') {
			if (quote)
				return xml_fail(x, "'<' in an attribute value", x->pos);
			return 1;
		}
		if (quote && c == (unsigned char)quote)
			return 1;
		if (c == '&') {
			r = xml_entity(x, dec, &dlen);
			if (r <= 0)
				return r;
			*nonws = true;
			if (capture && cap_add(x, dec, dlen, start) < 0)
				return -1;
			continue;
		}
		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
			return xml_fail(x, "control character", x->pos);
		r = utf8_seq((const unsigned char *)x->buf + x->pos, x->len - x->pos);
		if (r == 0)
			return 0;
		if (r < 0)
			return xml_fail(x, "invalid UTF-8", x->pos);
		if (r == 3 && (unsigned char)x->buf[x->pos] == 0xef &&
		    (unsigned char)x->buf[x->pos + 1] == 0xbf &&
		    (unsigned char)x->buf[x->pos + 2] >= 0xbe)
			return xml_fail(x, "non-character U+FFFE/U+FFFF", x->pos);
		if (!is_ws((char)c))
			*nonws = true;
		if (capture && cap_add(x, x->buf + x->pos, (size_t)r, start) < 0)
			return -1;
		x->pos += (size_t)r;
	}
	return 0;
}

static bool name_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':';
}

static bool name_char(char c)
{
	return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* Reads a Name (ASCII subset of §2.3) at x->pos into <n>. */
static int xml_name(struct xml *x, struct mg_str *n)
{
	size_t s = x->pos;

	if (x->pos >= x->len)
		return 0;
	if (!name_start(x->buf[x->pos]))
		return xml_fail(x, "bad name", x->pos);
	while (x->pos < x->len && name_char(x->buf[x->pos]))
		x->pos++;
	if (x->pos == x->len)
		return 0;
	if (x->pos - s > XML_MAX_NAME)
		return xml_fail(x, "name too long", s);
	*n = (struct mg_str){x->buf + s, x->pos - s};
	return 1;
}

static void skip_ws(struct xml *x)
{
	while (x->pos < x->len && is_ws(x->buf[x->pos]))
		x->pos++;
}

/* The leading <?xml ...?> declaration: version, encoding and standalone
 * pseudo-attributes are not interpreted beyond "UTF-8 or nothing".
 */
static int xml_decl(struct xml *x)
{
	const char *p = x->buf, *q, *enc;

	if (x->len < 6)
		return memcmp(p, "<?xml ", x->len) ? 1 : 0;
	if (memcmp(p, "<?xml", 5) || !is_ws(p[5]))
		return 1; /* no declaration */
	q = memmem(p, x->len, "?>", 2);
	if (!q)
		return 0;
	for (const char *c = p + 6; c < q; c++)
		if (*c == '<' || *c == '>' || ((unsigned char)*c < 0x20 && !is_ws(*c)))
			return xml_fail(x, "bad XML declaration", (size_t)(c - p));
	enc = memmem(p, (size_t)(q - p), "encoding", 8);
	if (enc && !memmem(enc, (size_t)(q - enc), "UTF-8", 5) &&
	    !memmem(enc, (size_t)(q - enc), "utf-8", 5))
		return xml_fail(x, "encoding other than UTF-8", (size_t)(enc - p));
	x->pos = (size_t)(q + 2 - p);
	return 1;
}

static int xml_open(struct xml *x, struct mg_str name, size_t at)
{
	if (x->root_done)
		return xml_fail(x, "content after the root element", at);
	if (x->depth == XML_MAX_DEPTH)
		return xml_fail(x, "nesting too deep", at);
	if (x->depth == 0) {
		if (name_is(name, x->root_ok))
			x->out->kind = MG_SIGV4_STS_CREDENTIALS;
		else if (name_is(name, "ErrorResponse"))
			x->out->kind = MG_SIGV4_STS_ERROR;
		else
			return xml_fail(x, "unexpected root element", at);
	} else {
		if (x->has_text[x->depth - 1])
			return xml_fail(x, "mixed content", at);
		if (x->cur != F_NONE)
			return xml_fail(x, "element inside a value", at);
		x->has_child[x->depth - 1] = true;
	}
	x->stack[x->depth] = name;
	x->has_child[x->depth] = false;
	x->has_text[x->depth] = false;
	x->depth++;
	x->cur = field_of(x);
	if (x->cur != F_NONE) {
		if (x->seen[x->cur])
			return xml_fail(x, "duplicate element", at);
		x->seen[x->cur] = true;
	}
	field_target(x, x->cur);
	return 1;
}

static void xml_close(struct xml *x)
{
	x->depth--;
	x->cur = F_NONE;
	x->cap = NULL;
	if (x->depth == 0)
		x->root_done = true;
}

/* A start tag after '<': name, attributes, '>' or '/>'. */
static int xml_start_tag(struct xml *x)
{
	struct mg_str name, attrs[XML_MAX_ATTRS];
	size_t at = x->pos - 1, na = 0;
	int r;

	r = xml_name(x, &name);
	if (r <= 0)
		return r;
	for (;;) {
		bool had_ws = x->pos < x->len && is_ws(x->buf[x->pos]);
		struct mg_str an;
		bool dummy = false;
		char q;

		skip_ws(x);
		if (x->pos >= x->len)
			return 0;
		if (x->buf[x->pos] == '>') {
			x->pos++;
			return xml_open(x, name, at);
		}
		if (x->buf[x->pos] == '/') {
			if (x->pos + 1 >= x->len)
				return 0;
			if (x->buf[x->pos + 1] != '>')
				return xml_fail(x, "bad empty-element tag", x->pos);
			x->pos += 2;
			r = xml_open(x, name, at);
			if (r > 0)
				xml_close(x);
			return r;
		}
		if (!had_ws)
			return xml_fail(x, "attribute without preceding space", x->pos);
		r = xml_name(x, &an);
		if (r <= 0)
			return r;
		for (size_t i = 0; i < na; i++)
			if (mg_str_eq(attrs[i], an))
				return xml_fail(x, "duplicate attribute", x->pos);
		if (na == XML_MAX_ATTRS)
			return xml_fail(x, "too many attributes", x->pos);
		attrs[na++] = an;
		skip_ws(x);
		if (x->pos >= x->len)
			return 0;
		if (x->buf[x->pos] != '=')
			return xml_fail(x, "attribute without value", x->pos);
		x->pos++;
		skip_ws(x);
		if (x->pos >= x->len)
			return 0;
		q = x->buf[x->pos];
		if (q != '"' && q != '\'')
			return xml_fail(x, "unquoted attribute value", x->pos);
		x->pos++;
		r = xml_chars(x, q, false, &dummy);
		if (r <= 0)
			return r;
		x->pos++; /* the closing quote */
	}
}

/* An end tag after "</": must close the innermost open element. */
static int xml_end_tag(struct xml *x)
{
	struct mg_str name;
	size_t at = x->pos - 2;
	int r;

	r = xml_name(x, &name);
	if (r <= 0)
		return r;
	skip_ws(x);
	if (x->pos >= x->len)
		return 0;
	if (x->buf[x->pos] != '>')
		return xml_fail(x, "bad end tag", x->pos);
	if (x->depth == 0 || !mg_str_eq(x->stack[x->depth - 1], name))
		return xml_fail(x, "mismatched end tag", at);
	x->pos++;
	xml_close(x);
	return 1;
}

static int xml_run(struct xml *x)
{
	int r = xml_decl(x);

	if (r <= 0)
		return r;
	for (;;) {
		if (x->pos >= x->len)
			return x->root_done ? 1 : 0;
		if (x->buf[x->pos] == '<') {
			if (x->pos + 1 >= x->len)
				return 0;
			switch (x->buf[x->pos + 1]) {
			case '/':
				x->pos += 2;
				r = xml_end_tag(x);
				break;
			case '!':
				return xml_fail(x, "comment, DOCTYPE or CDATA not allowed", x->pos);
			case '?':
				return xml_fail(x, "processing instruction not allowed", x->pos);
			default:
				x->pos++;
				r = xml_start_tag(x);
				break;
			}
		} else {
			bool nonws = false;
			size_t s = x->pos;

			r = xml_chars(x, 0, x->depth > 0, &nonws);
			if (r < 0)
				return r;
			if (nonws && x->depth == 0)
				return xml_fail(x, "text outside the root element", s);
			if (nonws) {
				if (x->has_child[x->depth - 1])
					return xml_fail(x, "mixed content", s);
				x->has_text[x->depth - 1] = true;
			}
			if (r == 0 && x->depth == 0 && x->root_done)
				return x->pos == x->len
					       ? 1
					       : xml_fail(x, "text outside the root element",
							  x->pos);
			if (r == 0)
				return 0;
			continue;
		}
		if (r <= 0)
			return r;
	}
}

/* Drops leading and trailing XML whitespace of <s> in place (pretty-printed
 * documents, like the samples in the STS reference, wrap values in it).
 */
static void trim(char *s)
{
	size_t n = strlen(s), i = 0;

	while (n && is_ws(s[n - 1]))
		s[--n] = '\0';
	while (i < n && is_ws(s[i]))
		i++;
	memmove(s, s + i, n - i + 1);
}

static bool has_ws(const char *s)
{
	for (; *s; s++)
		if (is_ws(*s))
			return true;
	return false;
}

ssize_t mg_sigv4_sts_parse(const char *buf, size_t len, const char *action,
			   struct mg_sigv4_sts_resp *out, struct mg_sigv4_err *err)
{
	struct xml *x;
	int r;

	err->reason = NULL;
	err->pos = 0;
	memset(out, 0, sizeof(*out));
	if (!action || strlen(action) > 64 || (ssize_t)len < 0) {
		err->reason = "bad arguments";
		return -1;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		err->reason = "out of memory";
		return -1;
	}
	x->buf = buf;
	x->len = len;
	x->err = err;
	x->out = out;
	snprintf(x->root_ok, sizeof(x->root_ok), "%sResponse", action);
	snprintf(x->result, sizeof(x->result), "%sResult", action);
	r = len ? xml_run(x) : 0;
	if (r > 0) {
		char *fields[] = {
			out->access_key_id, out->secret_access_key, out->session_token,
			x->expiration,	    out->assumed_role_arn,  out->source_identity,
			out->error_type,    out->error_code,	    out->error_message,
			out->request_id,
		};

		for (size_t i = 0; i < sizeof(fields) / sizeof(*fields); i++)
			trim(fields[i]);
	}
	if (r > 0 && out->kind == MG_SIGV4_STS_CREDENTIALS) {
		if (has_ws(out->access_key_id) || has_ws(out->secret_access_key) ||
		    has_ws(out->session_token) || has_ws(out->assumed_role_arn))
			r = xml_fail(x, "whitespace inside a credential", len);
		else if (!x->seen[F_ACCESS_KEY] || !x->seen[F_SECRET] || !x->seen[F_TOKEN] ||
			 !x->seen[F_EXPIRATION] || !out->access_key_id[0] ||
			 !out->secret_access_key[0] || !out->session_token[0])
			r = xml_fail(x, "missing credentials field", len);
		else if (mg_sigv4_parse_time(mg_str_of(x->expiration), &out->expiration) < 0)
			r = xml_fail(x, "bad Expiration", len);
	} else if (r > 0 && !out->error_code[0]) {
		r = xml_fail(x, "missing Error/Code", len);
	}
	OPENSSL_cleanse(x, sizeof(*x));
	free(x);
	if (r <= 0) {
		mg_sigv4_sts_resp_wipe(out);
		if (r == 0) {
			err->reason = "truncated document";
			err->pos = len;
		}
		return r < 0 ? -1 : 0;
	}
	return (ssize_t)len;
}

void mg_sigv4_sts_resp_wipe(struct mg_sigv4_sts_resp *r)
{
	OPENSSL_cleanse(r->secret_access_key, sizeof(r->secret_access_key));
	OPENSSL_cleanse(r->session_token, sizeof(r->session_token));
	OPENSSL_cleanse(r->access_key_id, sizeof(r->access_key_id));
}
