/*
 * http: strict HTTP/1.1 heads, chunked bodies and Status responses. See
 * http.h for the choices made where RFC 9112 leaves room.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mcpgate/http.h"

/* ---- character classes ---- */

#define C_TCHAR	 0x01 /* token (RFC 9110 §5.6.2) */
#define C_FVAL	 0x02 /* field-value byte: VCHAR, obs-text, SP, HTAB (§5.5) */
#define C_TARGET 0x04 /* request-target byte: VCHAR except '#' */
#define C_HEX	 0x08 /* HEXDIG */
#define C_HOST	 0x10 /* uri-host / port bytes (RFC 3986 reg-name, IP-literal) */
#define C_QDTEXT 0x20 /* qdtext of a quoted-string (§5.6.4) */

#define VC (C_FVAL | C_TARGET | C_QDTEXT)

/* One lookup per byte keeps the scanning loops branch-light. Ranges do not
 * overlap (so -Woverride-init stays quiet); bytes not listed are 0: CTLs,
 * DEL, and so never valid anywhere but where a parser tests them itself. */
static const unsigned char cls[256] = {
	['\t'] = C_FVAL | C_QDTEXT,
	[' '] = C_FVAL | C_QDTEXT,
	['!'] = VC | C_TCHAR | C_HOST,
	['"'] = C_FVAL | C_TARGET,
	['#'] = C_FVAL | C_QDTEXT | C_TCHAR,
	['$'] = VC | C_TCHAR | C_HOST,
	['%'] = VC | C_TCHAR | C_HOST,
	['&'] = VC | C_TCHAR | C_HOST,
	['\''] = VC | C_TCHAR | C_HOST,
	['('] = VC | C_HOST,
	[')'] = VC | C_HOST,
	['*'] = VC | C_TCHAR | C_HOST,
	['+'] = VC | C_TCHAR | C_HOST,
	[','] = VC | C_HOST,
	['-'] = VC | C_TCHAR | C_HOST,
	['.'] = VC | C_TCHAR | C_HOST,
	['/'] = VC,
	['0' ... '9'] = VC | C_TCHAR | C_HEX | C_HOST,
	[':'] = VC | C_HOST,
	[';'] = VC | C_HOST,
	['<'] = VC,
	['='] = VC | C_HOST,
	['>'] = VC,
	['?'] = VC,
	['@'] = VC,
	['A' ... 'F'] = VC | C_TCHAR | C_HEX | C_HOST,
	['G' ... 'Z'] = VC | C_TCHAR | C_HOST,
	['['] = VC | C_HOST,
	['\\'] = C_FVAL | C_TARGET,
	[']'] = VC | C_HOST,
	['^'] = VC | C_TCHAR,
	['_'] = VC | C_TCHAR | C_HOST,
	['`'] = VC | C_TCHAR,
	['a' ... 'f'] = VC | C_TCHAR | C_HEX | C_HOST,
	['g' ... 'z'] = VC | C_TCHAR | C_HOST,
	['{'] = VC,
	['|'] = VC | C_TCHAR,
	['}'] = VC,
	['~'] = VC | C_TCHAR | C_HOST,
	[0x80 ... 0xff] = C_FVAL | C_QDTEXT,
};

static inline bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static inline unsigned char to_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? c | 0x20 : c;
}

static inline unsigned int hex_val(unsigned char c)
{
	return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Whether <s> equals the lowercase literal <lit> of length <n>, ignoring
 * ASCII case in <s>; locale-independent, unlike strncasecmp. */
static bool caseeq_lit(struct mg_str s, const char *lit, size_t n)
{
	if (s.len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (to_lower((unsigned char)s.ptr[i]) != (unsigned char)lit[i])
			return false;
	return true;
}

#define CASEEQ(s, lit) caseeq_lit((s), (lit), sizeof(lit) - 1)

static struct mg_str trim_ows(const char *p, const char *end)
{
	while (p < end && is_ows(*p))
		p++;
	while (end > p && is_ows(end[-1]))
		end--;
	return (struct mg_str){p, (size_t)(end - p)};
}

/* Takes the next element of the comma-separated list <*list> into <*elem>,
 * OWS-trimmed and possibly empty ("a,,b" has an empty second element).
 * Returns false once the list is exhausted; a list whose ptr is NULL has no
 * elements, an empty one has one empty element. */
static bool next_elem(struct mg_str *list, struct mg_str *elem)
{
	const char *end, *comma;

	if (!list->ptr)
		return false;
	end = list->ptr + list->len;
	comma = list->len ? memchr(list->ptr, ',', list->len) : NULL;
	*elem = trim_ows(list->ptr, comma ? comma : end);
	if (comma)
		*list = (struct mg_str){comma + 1, (size_t)(end - comma - 1)};
	else
		*list = MG_STR_NULL;
	return true;
}

/* Fills <err> (if any) and returns -1, the error return of every parser. */
static ssize_t reject(struct mg_http_err *err, int status, const char *reason, size_t pos)
{
	if (err) {
		err->reason = reason;
		err->pos = pos;
		err->status = status;
	}
	return -1;
}

static struct mg_http_limits eff_limits(const struct mg_http_limits *lim)
{
	struct mg_http_limits l = mg_http_limits_default();

	if (lim) {
		if (lim->max_head_bytes)
			l.max_head_bytes = lim->max_head_bytes;
		if (lim->max_headers)
			l.max_headers = lim->max_headers;
		if (lim->max_target_len)
			l.max_target_len = lim->max_target_len;
	}
	if (l.max_headers > MG_HTTP_MAX_HEADERS)
		l.max_headers = MG_HTTP_MAX_HEADERS;
	return l;
}

struct mg_http_limits mg_http_limits_default(void)
{
	return (struct mg_http_limits){
		.max_head_bytes = MG_HTTP_HEAD_MAX,
		.max_headers = MG_HTTP_FIELDS_MAX,
		.max_target_len = MG_HTTP_TARGET_MAX,
	};
}

/* ---- Content-Length and list helpers ---- */

int mg_http_parse_content_length(struct mg_str value, bool seen, uint64_t *len)
{
	const char *end = value.ptr + value.len;
	const char *p = value.ptr;
	uint64_t n = 0;

	if (!p)
		return -EINVAL;
	while (p < end && is_ows(*p))
		p++;
	if (p == end || *p < '0' || *p > '9')
		return -EINVAL;

	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		unsigned int d = *p - '0';

		/* Bounded well below UINT64_MAX, so no overflow either. */
		if (n > (MG_HTTP_MAX_LENGTH - d) / 10)
			return -EINVAL;
		n = n * 10 + d;
	}
	while (p < end && is_ows(*p))
		p++;
	if (p != end || (seen && n != *len))
		return -EINVAL;

	*len = n;
	return 0;
}

bool mg_http_header_has_token(struct mg_str value, struct mg_str token)
{
	struct mg_str e;

	while (next_elem(&value, &e)) {
		if (e.len != token.len)
			continue;
		size_t i = 0;

		while (i < e.len &&
		       to_lower((unsigned char)e.ptr[i]) == to_lower((unsigned char)token.ptr[i]))
			i++;
		if (i == e.len)
			return true;
	}
	return false;
}

struct mg_str mg_http_header(const struct mg_http_hdr *hdrs, size_t n, struct mg_str name)
{
	for (size_t i = 0; i < n; i++) {
		const struct mg_http_hdr *h = &hdrs[i];
		size_t j = 0;

		if (h->name.len != name.len)
			continue;
		while (j < name.len && to_lower((unsigned char)h->name.ptr[j]) ==
					       to_lower((unsigned char)name.ptr[j]))
			j++;
		if (j == name.len)
			return h->value;
	}
	return MG_STR_NULL;
}

/* ---- field lines (shared by requests and responses) ---- */

/* What the field section says about framing and the connection, collected
 * while the lines go by so the head is read once. */
struct fields {
	const char *buf;
	struct mg_http_hdr *hdrs;
	size_t max; /* capacity after limits */
	size_t n;
	bool is_req; /* errors: 4xx/5xx for requests, all 502 for responses */
	int minor;

	bool has_cl, has_te, te_chunked;
	uint64_t cl;
	bool conn_close, conn_keep_alive, conn_upgrade;
	bool has_host, has_upgrade, has_ctype, has_cenc, expect_continue;
	struct mg_str host, upgrade, ctype, cenc;
};

/* A request error answers with <status>; any error in what the upstream
 * server sent makes the proxy answer its own client 502. */
static ssize_t ferr(const struct fields *f, struct mg_http_err *err, int status, const char *reason,
		    size_t pos)
{
	return reject(err, f->is_req ? status : 502, reason, pos);
}

static size_t off(const struct fields *f, const char *p)
{
	return (size_t)(p - f->buf);
}

/* Transfer-Encoding <v> at <pos>. We implement exactly one coding, chunked,
 * and accept it only alone, as the API server (Go net/http) does, so the two
 * of us cannot disagree about a body's end. */
static ssize_t on_transfer_encoding(struct fields *f, struct mg_str v, size_t pos,
				    struct mg_http_err *err)
{
	struct mg_str e;

	/* RFC 9112 §6.1: a Transfer-Encoding in an HTTP/1.0 message means the
	 * framing is faulty (1.0 recipients do not know the field). */
	if (f->minor == 0)
		return ferr(f, err, 400, "Transfer-Encoding in an HTTP/1.0 message", pos);
	/* RFC 9112 §6.1, §6.3: both is the classic CL.TE / TE.CL smuggling
	 * shape; a server MAY reject it, a proxy must not guess. */
	if (f->has_cl)
		return ferr(f, err, 400, "both Content-Length and Transfer-Encoding", pos);
	f->has_te = true;
	while (next_elem(&v, &e)) {
		if (!e.len)
			return ferr(f, err, 400, "empty transfer coding", off(f, e.ptr));
		/* RFC 9112 §7.1: chunked is applied once and is the final coding
		 * of a request (§6.3: otherwise 400). Several field lines are
		 * one list (RFC 9110 §5.3), so a second line counts too. */
		if (f->te_chunked)
			return ferr(f, err, 400, "chunked is not the final transfer coding",
				    off(f, e.ptr));
		if (CASEEQ(e, "chunked")) {
			f->te_chunked = true;
			continue;
		}
		if (!(cls[(unsigned char)e.ptr[0]] & C_TCHAR))
			return ferr(f, err, 400, "invalid transfer coding", off(f, e.ptr));
		/* RFC 9112 §6.1: a coding we do not understand is a 501. */
		return ferr(f, err, 501, "unsupported transfer coding", off(f, e.ptr));
	}
	return 0;
}

static ssize_t on_content_length(struct fields *f, struct mg_str v, size_t pos,
				 struct mg_http_err *err)
{
	/* RFC 9112 §6.3 lets a recipient merge identical duplicates; nobody
	 * legitimate sends two, and a proxy that merges while the next hop
	 * rejects (or the reverse) is how smuggling starts: reject them all. */
	if (f->has_cl)
		return ferr(f, err, 400, "duplicate Content-Length", pos);
	/* RFC 9112 §6.1, §6.3: see on_transfer_encoding(). */
	if (f->has_te)
		return ferr(f, err, 400, "both Content-Length and Transfer-Encoding", pos);
	/* RFC 9110 §8.6: 1*DIGIT; no sign, no list, no inner space. */
	if (mg_http_parse_content_length(v, false, &f->cl) < 0)
		return ferr(f, err, 400, "invalid Content-Length", off(f, v.ptr));
	f->has_cl = true;
	return 0;
}

static ssize_t on_host(struct fields *f, struct mg_str v, size_t pos, struct mg_http_err *err)
{
	/* RFC 9112 §3.2: more than one Host, or an invalid one, is a 400: two
	 * hops could pick different ones. */
	if (f->has_host)
		return ferr(f, err, 400, "more than one Host", pos);
	for (size_t i = 0; i < v.len; i++)
		if (!(cls[(unsigned char)v.ptr[i]] & C_HOST))
			return ferr(f, err, 400, "invalid Host", off(f, v.ptr + i));
	f->has_host = true;
	f->host = v;
	return 0;
}

/* Acts on the field <h> whose line starts at <pos>: framing, connection
 * management and the few fields callers read. Returns 0 or -1 with <err>. */
static ssize_t on_field(struct fields *f, const struct mg_http_hdr *h, size_t pos,
			struct mg_http_err *err)
{
	struct mg_str n = h->name, v = h->value, e;

	/* The length narrows the candidates to one before any comparison. */
	switch (n.len) {
	case 4:
		if (f->is_req && CASEEQ(n, "host"))
			return on_host(f, v, pos, err);
		break;
	case 6:
		if (f->is_req && CASEEQ(n, "expect") && CASEEQ(v, "100-continue"))
			f->expect_continue = true;
		break;
	case 7:
		if (CASEEQ(n, "upgrade")) {
			/* Two Upgrade lines would let hops pick different protocols. */
			if (f->has_upgrade)
				return ferr(f, err, 400, "more than one Upgrade", pos);
			f->has_upgrade = true;
			f->upgrade = v;
		}
		break;
	case 10:
		if (CASEEQ(n, "connection")) {
			while (next_elem(&v, &e)) {
				if (CASEEQ(e, "close"))
					f->conn_close = true;
				else if (CASEEQ(e, "keep-alive"))
					f->conn_keep_alive = true;
				else if (CASEEQ(e, "upgrade"))
					f->conn_upgrade = true;
			}
		}
		break;
	case 12:
		if (!f->is_req && CASEEQ(n, "content-type")) {
			/* Masking picks its parser by Content-Type: with two, the
			 * masker and the client could read the body differently. */
			if (f->has_ctype)
				return ferr(f, err, 502, "more than one Content-Type", pos);
			f->has_ctype = true;
			f->ctype = v;
		}
		break;
	case 14:
		if (CASEEQ(n, "content-length"))
			return on_content_length(f, v, pos, err);
		break;
	case 16:
		if (!f->is_req && CASEEQ(n, "content-encoding")) {
			/* Same reason as Content-Type: one decoding, one view. */
			if (f->has_cenc)
				return ferr(f, err, 502, "more than one Content-Encoding", pos);
			f->has_cenc = true;
			f->cenc = v;
		}
		break;
	case 17:
		if (CASEEQ(n, "transfer-encoding"))
			return on_transfer_encoding(f, v, pos, err);
		break;
	}
	return 0;
}

/* Parses field lines from <buf>[<p>..<len>) up to and including the empty
 * line (RFC 9112 §5). Returns the offset just past it, 0 if <len> comes
 * first, or -1 with <err>. */
static ssize_t parse_fields(struct fields *f, const char *buf, size_t len, size_t p,
			    struct mg_http_err *err)
{
	const unsigned char *s = (const unsigned char *)buf;

	for (;;) {
		struct mg_http_hdr *h;
		size_t name, colon, v, e;

		if (p >= len)
			return 0;
		if (s[p] == '\r') {
			if (p + 1 >= len)
				return 0;
			if (s[p + 1] != '\n')
				return ferr(f, err, 400, "CR not followed by LF", p + 1);
			return (ssize_t)(p + 2);
		}
		/* RFC 9112 §5.2: obs-fold is rejected rather than unfolded, and
		 * §2.2: whitespace before the first field line likewise. */
		if (is_ows(s[p]))
			return ferr(f, err, 400,
				    f->n ? "obsolete line folding"
					 : "whitespace before first field",
				    p);
		if (f->n >= f->max)
			return ferr(f, err, 431, "too many header fields", p);

		name = p;
		while (p < len && (cls[s[p]] & C_TCHAR))
			p++;
		if (p >= len)
			return 0;
		if (s[p] != ':') {
			/* RFC 9112 §5.1: no whitespace between name and colon. */
			if (is_ows(s[p]))
				return ferr(f, err, 400, "whitespace before colon", p);
			if (s[p] == '\n')
				return ferr(f, err, 400, "bare LF", p);
			if (s[p] == '\r')
				return ferr(f, err, 400, "field line without colon", p);
			return ferr(f, err, 400, "invalid character in field name", p);
		}
		if (p == name)
			return ferr(f, err, 400, "empty field name", p);
		colon = p++;

		while (p < len && is_ows(s[p]))
			p++;
		v = p;
		while (p < len && (cls[s[p]] & C_FVAL))
			p++;
		if (p >= len)
			return 0;
		if (s[p] != '\r') {
			/* RFC 9110 §5.5: NUL, CR, LF and other CTLs are invalid
			 * in values; we reject rather than replace them. */
			return ferr(f, err, 400,
				    s[p] == '\n' ? "bare LF" : "invalid character in field value",
				    p);
		}
		if (p + 1 >= len)
			return 0;
		/* RFC 9112 §2.2: a bare CR is an error (we do not replace it). */
		if (s[p + 1] != '\n')
			return ferr(f, err, 400, "CR not followed by LF", p + 1);
		e = p;
		while (e > v && is_ows(s[e - 1]))
			e--;

		h = &f->hdrs[f->n++];
		h->name = (struct mg_str){buf + name, colon - name};
		h->value = (struct mg_str){buf + v, e - v};
		if (on_field(f, h, name, err) < 0)
			return -1;
		p += 2;
	}
}

/* Matches "HTTP/" DIGIT "." DIGIT at <s>[<p>..<len>). Returns 1 with <*ver>
 * = major * 10 + minor, 0 if <len> comes first, or -1 with <*bad> = the
 * offset of the first byte that does not match. HTTP-name is case-sensitive
 * (RFC 9112 §2.3). */
static int match_version(const unsigned char *s, size_t len, size_t p, int *ver, size_t *bad)
{
	static const char pat[] = "HTTP/d.d";

	for (size_t i = 0; i < sizeof(pat) - 1; i++) {
		unsigned char c;
		bool ok;

		if (p + i >= len)
			return 0;
		c = s[p + i];
		ok = pat[i] == 'd' ? (c >= '0' && c <= '9') : c == (unsigned char)pat[i];
		if (!ok) {
			*bad = p + i;
			return -1;
		}
	}
	*ver = (s[p + 5] - '0') * 10 + (s[p + 7] - '0');
	return 1;
}

/* ---- requests ---- */

/* Scans the request-target starting at <s>[<p>], at most <max> bytes,
 * origin-form only: absolute-path ["?" query]. Bytes: VCHAR except '#'
 * (no fragment is ever sent, RFC 9112 §3.2), '%' followed by two HEXDIG.
 * Returns the offset of the SP ending it, 0 if <len> comes first, -1. */
static ssize_t scan_origin_form(const unsigned char *s, size_t len, size_t p, size_t max,
				struct mg_http_err *err)
{
	size_t start = p;
	int pct = 0;

	for (;; p++) {
		unsigned char c;

		if (p >= len)
			return 0;
		c = s[p];
		if (c == ' ')
			break;
		if (p - start >= max)
			return reject(err, 414, "request-target too long", p);
		if (pct) {
			if (!(cls[c] & C_HEX))
				return reject(err, 400, "invalid percent-encoding", p);
			pct--;
		} else if (c == '%') {
			pct = 2;
		} else if (!(cls[c] & C_TARGET)) {
			if (c == '#')
				return reject(err, 400, "fragment in request-target", p);
			if (c == '\r' || c == '\n')
				return reject(err, 400, "no HTTP-version in request-line", p);
			return reject(err, 400, "invalid character in request-target", p);
		}
	}
	if (pct)
		return reject(err, 400, "invalid percent-encoding", p);
	return (ssize_t)p;
}

/* The request-line and field section of <buf>[0..<len>); <len> is already
 * clamped to max_head_bytes. */
static ssize_t parse_req(struct mg_http_req *req, const char *buf, size_t len,
			 const struct mg_http_limits *l, struct mg_http_err *err)
{
	const unsigned char *s = (const unsigned char *)buf;
	struct fields f = {
		.buf = buf,
		.hdrs = req->headers,
		.max = l->max_headers,
		.is_req = true,
	};
	size_t p = 0, t, bad = 0;
	ssize_t r;
	int ver = 0;

	/* method = token (RFC 9110 §9.1) */
	while (p < len && (cls[s[p]] & C_TCHAR))
		p++;
	if (p >= len)
		return 0;
	if (p == 0) {
		/* RFC 9112 §2.2 lets a server skip empty lines before the
		 * request-line; no client of ours sends them, so we do not. */
		if (s[0] == '\r' || s[0] == '\n')
			return reject(err, 400, "empty line before request-line", 0);
		return reject(err, 400, "invalid method", 0);
	}
	/* RFC 9112 §3: exactly one SP between the three parts. */
	if (s[p] != ' ')
		return reject(err, 400, "invalid character in method", p);
	req->method = (struct mg_str){buf, p};
	/* Authority-form is CONNECT's only form: a tunnel past the policy. */
	if (mg_str_eq(req->method, MG_STR("CONNECT")))
		return reject(err, 400, "CONNECT is not accepted", 0);

	t = ++p;
	if (p >= len)
		return 0;
	if (s[p] == '/') {
		r = scan_origin_form(s, len, p, l->max_target_len, err);
		if (r <= 0)
			return r;
		p = (size_t)r;
	} else if (s[p] == '*') {
		/* RFC 9112 §3.2.4: asterisk-form is for server-wide OPTIONS. */
		if (!mg_str_eq(req->method, MG_STR("OPTIONS")))
			return reject(err, 400, "asterisk-form request-target not for OPTIONS", p);
		if (++p >= len)
			return 0;
		if (s[p] != ' ')
			return reject(err, 400, "invalid request-target", p);
	} else if (s[p] == ' ') {
		return reject(err, 400, "more than one SP in request-line", p);
	} else {
		/* RFC 9112 §3.2.2: absolute-form is meant for forward proxies;
		 * it would carry a second authority next to Host. */
		return reject(err, 400, "request-target is not in origin-form", p);
	}
	req->target = (struct mg_str){buf + t, p - t};
	p++;

	switch (match_version(s, len, p, &ver, &bad)) {
	case 0:
		return 0;
	case -1:
		return reject(err, 400,
			      s[bad] == ' ' ? "more than one SP in request-line"
					    : "invalid HTTP-version",
			      bad);
	}
	if (p + 8 >= len)
		return 0;
	if (s[p + 8] != '\r')
		return reject(err, 400, s[p + 8] == '\n' ? "bare LF" : "invalid HTTP-version",
			      p + 8);
	if (p + 9 >= len)
		return 0;
	if (s[p + 9] != '\n')
		return reject(err, 400, "CR not followed by LF", p + 9);
	/* RFC 9110 §15.6.6: a well-formed version we do not speak is a 505. */
	if (ver != 11 && ver != 10)
		return reject(err, 505, "HTTP version not supported", p);
	req->minor = ver - 10;
	f.minor = req->minor;

	r = parse_fields(&f, buf, len, p + 10, err);
	if (r <= 0)
		return r;

	/* RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400. */
	if (req->minor == 1 && !f.has_host)
		return reject(err, 400, "no Host in an HTTP/1.1 request", (size_t)r - 2);

	req->n_headers = f.n;
	req->has_host = f.has_host;
	req->host = f.has_host ? f.host : MG_STR_NULL;
	req->content_length = 0;
	if (f.te_chunked) {
		req->body = MG_HTTP_BODY_CHUNKED;
	} else if (f.has_cl) {
		req->body = MG_HTTP_BODY_LENGTH;
		req->content_length = f.cl;
	} else {
		/* RFC 9112 §6.3: a request with neither has no body. */
		req->body = MG_HTTP_BODY_NONE;
	}
	/* RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with keep-alive. */
	req->keep_alive = !f.conn_close && (req->minor == 1 || f.conn_keep_alive);
	/* RFC 9110 §7.8: Upgrade is a hop-by-hop request only when Connection
	 * names it, and is ignored in HTTP/1.0. */
	req->upgrade = req->minor == 1 && f.conn_upgrade && f.has_upgrade;
	req->upgrade_proto = req->upgrade ? f.upgrade : MG_STR_NULL;
	req->expect_continue = f.expect_continue;
	return r;
}

ssize_t mg_http_parse_req(struct mg_http_req *req, const char *buf, size_t len,
			  const struct mg_http_limits *lim, struct mg_http_err *err)
{
	struct mg_http_limits l = eff_limits(lim);
	size_t win = len < l.max_head_bytes ? len : l.max_head_bytes;
	ssize_t r = parse_req(req, buf, win, &l, err);

	/* Nothing past the limit is looked at; reaching it unfinished is a
	 * 431 now rather than waiting for bytes we would never accept. */
	if (r == 0 && len >= l.max_head_bytes)
		return reject(err, 431, "request head too large", win);
	return r;
}

/* ---- responses ---- */

static ssize_t parse_resp(struct mg_http_resp *resp, const char *buf, size_t len,
			  const struct mg_http_limits *l, struct mg_http_err *err)
{
	const unsigned char *s = (const unsigned char *)buf;
	struct fields f = {
		.buf = buf,
		.hdrs = resp->headers,
		.max = l->max_headers,
		.is_req = false,
	};
	size_t p, bad = 0, rs;
	ssize_t r;
	int ver = 0, code = 0;

	switch (match_version(s, len, 0, &ver, &bad)) {
	case 0:
		return 0;
	case -1:
		return reject(err, 502, "invalid HTTP-version", bad);
	}
	if (ver != 11 && ver != 10)
		return reject(err, 502, "HTTP version not supported", 0);
	resp->minor = ver - 10;
	f.minor = resp->minor;

	/* status-line = HTTP-version SP status-code SP [ reason-phrase ] */
	for (p = 8; p < 12; p++) {
		if (p >= len)
			return 0;
		if (p == 8 ? s[p] != ' ' : (s[p] < '0' || s[p] > '9'))
			return reject(err, 502, "invalid status-line", p);
		if (p > 8)
			code = code * 10 + (s[p] - '0');
	}
	if (code < 100 || code > 599)
		return reject(err, 502, "invalid status code", 9);
	resp->status = code;
	if (p >= len)
		return 0;
	/* The SP before an empty reason is required by the grammar, yet
	 * servers omit it; it does not affect framing, so we accept both. */
	if (s[p] == ' ')
		p++;
	else if (s[p] != '\r')
		return reject(err, 502, "invalid status-line", p);
	rs = p;
	while (p < len && (cls[s[p]] & C_FVAL))
		p++;
	if (p >= len)
		return 0;
	if (s[p] != '\r')
		return reject(err, 502, s[p] == '\n' ? "bare LF" : "invalid reason-phrase", p);
	if (p + 1 >= len)
		return 0;
	if (s[p + 1] != '\n')
		return reject(err, 502, "CR not followed by LF", p + 1);
	resp->reason = (struct mg_str){buf + rs, p - rs};

	r = parse_fields(&f, buf, len, p + 2, err);
	if (r <= 0)
		return r;

	resp->n_headers = f.n;
	resp->has_content_length = f.has_cl;
	resp->content_length = f.has_cl ? f.cl : 0;
	/* RFC 9112 §6.3, in its order: no body for 1xx, 204, 304 whatever
	 * the fields say; then chunked; then Content-Length; else the body
	 * runs until the server closes. */
	if (code < 200 || code == 204 || code == 304)
		resp->body = MG_HTTP_BODY_NONE;
	else if (f.te_chunked)
		resp->body = MG_HTTP_BODY_CHUNKED;
	else if (f.has_cl)
		resp->body = MG_HTTP_BODY_LENGTH;
	else
		resp->body = MG_HTTP_BODY_CLOSE;
	resp->upgrade = code == 101;
	resp->upgrade_proto = f.has_upgrade ? f.upgrade : MG_STR_NULL;
	resp->keep_alive = !f.conn_close && (resp->minor == 1 || f.conn_keep_alive) &&
			   resp->body != MG_HTTP_BODY_CLOSE && !resp->upgrade;
	resp->has_content_type = f.has_ctype;
	resp->content_type = f.has_ctype ? f.ctype : MG_STR_NULL;
	resp->has_content_encoding = f.has_cenc;
	resp->content_encoding = f.has_cenc ? f.cenc : MG_STR_NULL;
	return r;
}

ssize_t mg_http_parse_resp(struct mg_http_resp *resp, const char *buf, size_t len,
			   const struct mg_http_limits *lim, struct mg_http_err *err)
{
	struct mg_http_limits l = eff_limits(lim);
	size_t win = len < l.max_head_bytes ? len : l.max_head_bytes;
	ssize_t r = parse_resp(resp, buf, win, &l, err);

	if (r == 0 && len >= l.max_head_bytes)
		return reject(err, 502, "response head too large", win);
	return r;
}

enum mg_http_body mg_http_resp_body_kind(const struct mg_http_resp *resp, bool req_was_head)
{
	/* RFC 9112 §6.3 rule 1: a response to HEAD never has a body, even
	 * with Content-Length or Transfer-Encoding. */
	if (req_was_head)
		return MG_HTTP_BODY_NONE;
	return resp->body;
}

/* ---- chunked transfer coding (RFC 9112 §7.1) ---- */

enum {
	CH_SIZE0,     /* first byte of a chunk-size */
	CH_SIZE,      /* more HEXDIG, ';' or CR */
	CH_EXT_NAME0, /* after ';' */
	CH_EXT_NAME,
	CH_EXT_VAL0, /* after '=' */
	CH_EXT_TOKEN,
	CH_EXT_QUOTED,
	CH_EXT_QPAIR, /* after '\' in a quoted-string */
	CH_EXT_QEND,  /* after the closing DQUOTE */
	CH_SIZE_LF,
	CH_DATA,
	CH_DATA_CR,
	CH_DATA_LF,
	CH_TR_LINE0, /* start of a trailer line or of the final CRLF */
	CH_TR_NAME,
	CH_TR_VALUE,
	CH_TR_LF,
	CH_END_LF,
	CH_DONE,
	CH_ERROR,
};

void mg_http_chunked_init(struct mg_http_chunked *c, size_t max_trailer)
{
	memset(c, 0, sizeof(*c));
	c->state = CH_SIZE0;
	c->max_trailer = max_trailer ? max_trailer : MG_HTTP_DEFAULT_MAX_TRAILER;
}

bool mg_http_chunked_done(const struct mg_http_chunked *c)
{
	return c->state == CH_DONE;
}

/* Moves <c> past one framing byte <ch>. Returns NULL, or why <ch> is wrong. */
static const char *chunked_step(struct mg_http_chunked *c, unsigned char ch)
{
	unsigned int k = cls[ch];

	if (c->state < CH_DATA) {
		/* Extensions are not bounded by the grammar; the line is. */
		if (++c->line > MG_HTTP_MAX_CHUNK_LINE)
			return "chunk line too long";
	} else if (c->state >= CH_TR_LINE0) {
		if (++c->line > c->max_trailer)
			return "trailer section too large";
	}

	switch (c->state) {
	case CH_SIZE0:
		/* 1*HEXDIG: no sign, no "0x", no leading whitespace. */
		if (!(k & C_HEX))
			return ch == '\r' ? "empty chunk size" : "invalid chunk size";
		c->remaining = hex_val(ch);
		c->digits = 1;
		c->state = CH_SIZE;
		return NULL;
	case CH_SIZE:
		if (k & C_HEX) {
			unsigned int d = hex_val(ch);

			/* A size we cannot represent is where parsers that
			 * truncate differently part ways: cap it, and the
			 * digits (leading zeros included). */
			if (++c->digits > 16 || c->remaining > (MG_HTTP_MAX_LENGTH - d) >> 4)
				return "chunk size too large";
			c->remaining = c->remaining << 4 | d;
			return NULL;
		}
		break;
	case CH_EXT_NAME0:
		if (!(k & C_TCHAR))
			return "invalid chunk extension";
		c->state = CH_EXT_NAME;
		return NULL;
	case CH_EXT_NAME:
		if (k & C_TCHAR)
			return NULL;
		if (ch == '=') {
			c->state = CH_EXT_VAL0;
			return NULL;
		}
		break;
	case CH_EXT_VAL0:
		if (ch == '"')
			c->state = CH_EXT_QUOTED;
		else if (k & C_TCHAR)
			c->state = CH_EXT_TOKEN;
		else
			return "invalid chunk extension";
		return NULL;
	case CH_EXT_TOKEN:
		if (k & C_TCHAR)
			return NULL;
		break;
	case CH_EXT_QUOTED:
		if (ch == '"')
			c->state = CH_EXT_QEND;
		else if (ch == '\\')
			c->state = CH_EXT_QPAIR;
		else if (!(k & C_QDTEXT))
			return "invalid chunk extension";
		return NULL;
	case CH_EXT_QPAIR:
		if (!(k & C_FVAL))
			return "invalid chunk extension";
		c->state = CH_EXT_QUOTED;
		return NULL;
	case CH_EXT_QEND:
		break;
	case CH_SIZE_LF:
		if (ch != '\n')
			return "CR not followed by LF";
		c->line = 0;
		c->state = c->remaining ? CH_DATA : CH_TR_LINE0;
		return NULL;
	case CH_DATA_CR:
		/* The CRLF after the data is what proves the size was right. */
		if (ch != '\r')
			return ch == '\n' ? "bare LF after chunk data" : "no CRLF after chunk data";
		c->state = CH_DATA_LF;
		return NULL;
	case CH_DATA_LF:
		if (ch != '\n')
			return "no CRLF after chunk data";
		c->line = 0;
		c->state = CH_SIZE0;
		return NULL;
	case CH_TR_LINE0:
		/* Trailer fields follow the header rules (RFC 9112 §7.1.2). */
		if (ch == '\r') {
			c->state = CH_END_LF;
			return NULL;
		}
		if (k & C_TCHAR) {
			c->state = CH_TR_NAME;
			return NULL;
		}
		if (is_ows(ch))
			return "obsolete line folding in trailer";
		if (ch == ':')
			return "empty field name in trailer";
		return ch == '\n' ? "bare LF in trailer"
				  : "invalid character in trailer field name";
	case CH_TR_NAME:
		if (k & C_TCHAR)
			return NULL;
		if (ch == ':') {
			c->state = CH_TR_VALUE;
			return NULL;
		}
		if (is_ows(ch))
			return "whitespace before colon in trailer";
		return "invalid character in trailer field name";
	case CH_TR_VALUE:
		if (k & C_FVAL)
			return NULL;
		if (ch == '\r') {
			c->state = CH_TR_LF;
			return NULL;
		}
		return ch == '\n' ? "bare LF in trailer" : "invalid character in trailer value";
	case CH_TR_LF:
		if (ch != '\n')
			return "CR not followed by LF";
		c->state = CH_TR_LINE0;
		return NULL;
	case CH_END_LF:
		if (ch != '\n')
			return "CR not followed by LF";
		c->state = CH_DONE;
		return NULL;
	default:
		return "chunked decoder misuse";
	}

	/* The states that may end an extension or the size line. */
	if (ch == ';') {
		c->state = CH_EXT_NAME0;
		return NULL;
	}
	if (ch == '\r') {
		c->state = CH_SIZE_LF;
		return NULL;
	}
	if (ch == '\n')
		return "bare LF in chunk line";
	if (is_ows(ch))
		return "whitespace in chunk line";
	return c->state == CH_SIZE ? "invalid chunk size" : "invalid chunk extension";
}

ssize_t mg_http_chunked_feed(struct mg_http_chunked *c, const char *buf, size_t len,
			     struct mg_str *data_out, struct mg_http_err *err)
{
	const unsigned char *s = (const unsigned char *)buf;
	size_t i = 0;

	if (data_out)
		*data_out = (struct mg_str){buf, 0};
	if (c->state == CH_ERROR)
		return reject(err, 400, "chunked body already rejected", c->offset);

	while (i < len && c->state != CH_DONE) {
		const char *why;

		if (c->state == CH_DATA) {
			/* Hand the data back in place, one slice per call, so
			 * the caller can forward it before reading on. */
			size_t n = len - i;

			if (n > c->remaining)
				n = (size_t)c->remaining;
			if (data_out)
				*data_out = (struct mg_str){buf + i, n};
			c->remaining -= n;
			if (!c->remaining)
				c->state = CH_DATA_CR;
			i += n;
			break;
		}
		why = chunked_step(c, s[i]);
		if (why) {
			size_t pos = c->offset + i;

			c->state = CH_ERROR;
			c->offset = pos;
			return reject(err, 400, why, pos);
		}
		i++;
	}
	c->offset += i;
	return (ssize_t)i;
}

size_t mg_http_chunk_header(char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char tmp[16];
	size_t k = 0, len;

	do {
		tmp[k++] = hex[n & 0xf];
		n >>= 4;
	} while (n);
	for (len = 0; k;)
		out[len++] = tmp[--k];
	out[len++] = '\r';
	out[len++] = '\n';
	return len;
}

/* ---- error responses ---- */

const char *mg_http_k8s_reason(int code)
{
	/* metav1.StatusReason values; the API server's own choices where it
	 * has one (apimachinery NewGenericServerResponse). */
	switch (code) {
	case 400:
		return "BadRequest";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "NotFound";
	case 405:
		return "MethodNotAllowed";
	case 406:
		return "NotAcceptable";
	case 408:
		return "Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 413:
		return "RequestEntityTooLarge";
	case 415:
		return "UnsupportedMediaType";
	case 422:
		return "Invalid";
	case 429:
		return "TooManyRequests";
	/* 501 here means a request we cannot process as sent (an unknown
	 * transfer coding): the client's side, not a server fault. */
	case 501:
		return "BadRequest";
	case 503:
		return "ServiceUnavailable";
	case 504:
		return "Timeout";
	}
	if (code >= 400 && code < 500)
		return "BadRequest";
	if (code >= 500)
		return "InternalError";
	return "";
}

/* The reason-phrase for the status-line (RFC 9110 §15). */
static const char *status_text(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 406:
		return "Not Acceptable";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 417:
		return "Expectation Failed";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	}
	return "Status";
}

/* Appends to a caller buffer, counting what did not fit (snprintf-like). */
struct wbuf {
	char *p;
	size_t cap;
	size_t len;
};

static void put(struct wbuf *w, const char *s, size_t n)
{
	if (w->len < w->cap) {
		size_t room = w->cap - w->len;

		memcpy(w->p + w->len, s, n < room ? n : room);
	}
	w->len += n;
}

#define PUT_LIT(w, lit) put((w), (lit), sizeof(lit) - 1)

static void put_str(struct wbuf *w, const char *s)
{
	put(w, s, strlen(s));
}

static void put_uint(struct wbuf *w, unsigned long long v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%llu", v);

	put(w, tmp, (size_t)n);
}

/* Appends <s> as a JSON string (RFC 8259 §7), quotes included. */
static void put_json_str(struct wbuf *w, const char *str)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	const unsigned char *run = s;

	PUT_LIT(w, "\"");
	while (*s) {
		unsigned char c = *s;
		size_t n = 1;

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			s++;
			continue;
		}
		put(w, (const char *)run, (size_t)(s - run));
		if (c == '"') {
			PUT_LIT(w, "\\\"");
		} else if (c == '\\') {
			PUT_LIT(w, "\\\\");
		} else if (c == '\n') {
			PUT_LIT(w, "\\n");
		} else if (c == '\r') {
			PUT_LIT(w, "\\r");
		} else if (c == '\t') {
			PUT_LIT(w, "\\t");
		} else if (c < 0x20) {
			char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};

			put(w, u, sizeof(u));
		} else {
			/* A message may quote what a peer sent: never let a
			 * stray byte make the whole body invalid JSON. */
			n = mg_utf8_seq_len(s);
			if (n)
				put(w, (const char *)s, n);
			else
				PUT_LIT(w, "\\ufffd");
			if (!n)
				n = 1;
		}
		s += n;
		run = s;
	}
	put(w, (const char *)run, (size_t)(s - run));
	PUT_LIT(w, "\"");
}

static void put_status_body(struct wbuf *w, int code, const char *reason, const char *message)
{
	PUT_LIT(w, "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":");
	if (code >= 400)
		PUT_LIT(w, "\"Failure\"");
	else
		PUT_LIT(w, "\"Success\"");
	PUT_LIT(w, ",\"message\":");
	put_json_str(w, message);
	if (*reason) {
		PUT_LIT(w, ",\"reason\":");
		put_json_str(w, reason);
	}
	PUT_LIT(w, ",\"code\":");
	put_uint(w, (unsigned long long)code);
	PUT_LIT(w, "}");
}

size_t mg_http_status_json(char *out, size_t cap, int code, const char *reason, const char *message,
			   bool keep_alive)
{
	struct wbuf count = {NULL, 0, 0};
	struct wbuf w = {out, cap, 0};

	/* 1xx, 204 and 304 cannot carry the body (RFC 9112 §6.3). */
	if (code < 200 || code > 599 || code == 204 || code == 304)
		code = 500;
	if (!reason)
		reason = mg_http_k8s_reason(code);
	if (!message)
		message = "";

	/* Measure the body first: Content-Length goes before it. */
	put_status_body(&count, code, reason, message);

	PUT_LIT(&w, "HTTP/1.1 ");
	put_uint(&w, (unsigned long long)code);
	PUT_LIT(&w, " ");
	put_str(&w, status_text(code));
	PUT_LIT(&w, "\r\nContent-Type: application/json\r\n"
		    "Cache-Control: no-cache, private\r\n"
		    "Content-Length: ");
	put_uint(&w, (unsigned long long)count.len);
	PUT_LIT(&w, "\r\n");
	if (!keep_alive)
		PUT_LIT(&w, "Connection: close\r\n");
	PUT_LIT(&w, "\r\n");
	put_status_body(&w, code, reason, message);

	if (cap)
		out[w.len < cap ? w.len : cap - 1] = '\0';
	return w.len;
}
