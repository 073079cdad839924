/*
 * libFuzzer target for the http module. Input: one mode byte, one split
 * byte, then the message. Modes: request head, response head, chunked body,
 * Status response + list helpers. Each mode checks that a message split at
 * the fuzz-chosen point gives exactly the one-shot result, plus invariants
 * that make a wrong "valid" verdict visible (framing fields counted again by
 * a naive scan, a re-serialised head parsing to the same framing, re-chunked
 * data decoding to the same bytes, the Status body parsing as JSON).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "../../userspace/net/http.c"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

static const struct mg_http_limits small_limits = {
	.max_head_bytes = 256,
	.max_headers = 4,
	.max_target_len = 32,
};

/* Exact-size copy, so ASan flags any read past the bytes a parser got. */
static char *copy(const uint8_t *d, size_t n)
{
	char *p = malloc(n ? n : 1);

	CHECK(p);
	if (n)
		memcpy(p, d, n);
	return p;
}

static bool slice_eq_at(struct mg_str a, const char *abase, struct mg_str b, const char *bbase)
{
	if (!a.ptr || !b.ptr)
		return !a.ptr && !b.ptr;
	return a.len == b.len && a.ptr - abase == b.ptr - bbase;
}

static bool hdrs_eq(const struct mg_http_hdr *a, const char *abase, const struct mg_http_hdr *b,
		    const char *bbase, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!slice_eq_at(a[i].name, abase, b[i].name, bbase) ||
		    !slice_eq_at(a[i].value, abase, b[i].value, bbase))
			return false;
	return true;
}

static bool err_eq(const struct mg_http_err *a, const struct mg_http_err *b)
{
	return a->status == b->status && a->pos == b->pos && !strcmp(a->reason, b->reason);
}

static size_t count_hdr(const struct mg_http_hdr *h, size_t n, const char *name)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (h[i].name.len == strlen(name) &&
		    !strncasecmp(h[i].name.ptr, name, h[i].name.len))
			k++;
	return k;
}

/* Field invariants: names are tokens, values hold no CTL but HTAB and no
 * OWS at either end. */
static void check_fields(const struct mg_http_hdr *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		CHECK(h[i].name.len > 0);
		for (size_t j = 0; j < h[i].name.len; j++)
			CHECK(cls[(unsigned char)h[i].name.ptr[j]] & C_TCHAR);
		for (size_t j = 0; j < h[i].value.len; j++)
			CHECK(cls[(unsigned char)h[i].value.ptr[j]] & C_FVAL);
		if (h[i].value.len) {
			CHECK(!is_ows(h[i].value.ptr[0]));
			CHECK(!is_ows(h[i].value.ptr[h[i].value.len - 1]));
		}
	}
}

/* Writes the head of <h> back out, canonically, into a fresh buffer. */
static char *reserialize(const char *start_line, size_t sl_len, const struct mg_http_hdr *h,
			 size_t n, size_t *out_len)
{
	size_t cap = sl_len + 2, len = 0;
	char *s;

	for (size_t i = 0; i < n; i++)
		cap += h[i].name.len + h[i].value.len + 4;
	s = malloc(cap + 2);
	CHECK(s);
	memcpy(s, start_line, sl_len);
	len = sl_len;
	for (size_t i = 0; i < n; i++) {
		memcpy(s + len, h[i].name.ptr, h[i].name.len);
		len += h[i].name.len;
		memcpy(s + len, ": ", 2);
		len += 2;
		memcpy(s + len, h[i].value.ptr, h[i].value.len);
		len += h[i].value.len;
		memcpy(s + len, "\r\n", 2);
		len += 2;
	}
	memcpy(s + len, "\r\n", 2);
	*out_len = len + 2;
	return s;
}

static struct mg_http_req rq1, rq2, rq3;

static void fuzz_req(const uint8_t *d, size_t n, size_t k, const struct mg_http_limits *lim)
{
	struct mg_http_limits l = eff_limits(lim);
	struct mg_http_err e1 = {0}, e2 = {0};
	char *full = copy(d, n), *part = copy(d, k);
	ssize_t r1 = mg_http_parse_req(&rq1, full, n, lim, &e1);
	ssize_t r2 = mg_http_parse_req(&rq2, part, k, lim, &e2);

	/* A prefix knows less: "need more", or the very same verdict. */
	if (r2 != 0) {
		CHECK(r2 == r1);
		if (r1 < 0) {
			CHECK(err_eq(&e1, &e2));
		} else {
			CHECK(slice_eq_at(rq1.method, full, rq2.method, part));
			CHECK(slice_eq_at(rq1.target, full, rq2.target, part));
			CHECK(rq1.n_headers == rq2.n_headers);
			CHECK(hdrs_eq(rq1.headers, full, rq2.headers, part, rq1.n_headers));
			CHECK(rq1.body == rq2.body && rq1.content_length == rq2.content_length);
			CHECK(rq1.keep_alive == rq2.keep_alive && rq1.upgrade == rq2.upgrade);
			CHECK(rq1.expect_continue == rq2.expect_continue);
		}
	}

	if (r1 < 0) {
		CHECK(r1 == -1 && e1.reason);
		CHECK(e1.status == 400 || e1.status == 414 || e1.status == 431 ||
		      e1.status == 501 || e1.status == 505);
		CHECK(e1.pos <= n);
	} else if (r1 == 0) {
		CHECK(n < l.max_head_bytes);
	} else {
		size_t h = (size_t)r1, cl, te;

		CHECK(h <= n && h <= l.max_head_bytes && h >= 4);
		CHECK(!memcmp(full + h - 4, "\r\n\r\n", 4));
		CHECK(memchr(full, '\0', h) == NULL);
		CHECK(rq1.method.len > 0 && rq1.target.len > 0);
		CHECK(rq1.target.ptr[0] == '/' ||
		      (rq1.target.len == 1 && mg_str_eq(rq1.method, MG_STR("OPTIONS"))));
		CHECK(rq1.target.len <= l.max_target_len);
		CHECK(rq1.minor == 0 || rq1.minor == 1);
		CHECK(rq1.n_headers <= l.max_headers);
		check_fields(rq1.headers, rq1.n_headers);
		/* Framing, recounted naively. */
		cl = count_hdr(rq1.headers, rq1.n_headers, "content-length");
		te = count_hdr(rq1.headers, rq1.n_headers, "transfer-encoding");
		CHECK(cl <= 1 && te <= 1 && !(cl && te));
		CHECK((rq1.body == MG_HTTP_BODY_LENGTH) == (cl == 1));
		CHECK((rq1.body == MG_HTTP_BODY_CHUNKED) == (te == 1));
		if (te)
			CHECK(rq1.minor == 1);
		CHECK(count_hdr(rq1.headers, rq1.n_headers, "host") == (rq1.has_host ? 1u : 0u));
		if (rq1.minor == 1)
			CHECK(rq1.has_host);
		CHECK(rq1.content_length <= MG_HTTP_MAX_LENGTH);
		/* Exactly the head: one byte less is not complete. */
		CHECK(mg_http_parse_req(&rq2, full, h - 1, lim, &e2) == 0);

		/* Written back canonically, it means the same. */
		char sl[16 + 8192 + 64];
		size_t sl_len, len;
		char *again;

		if (rq1.method.len + rq1.target.len < 8192) {
			sl_len = (size_t)snprintf(sl, sizeof(sl), "%.*s %.*s HTTP/1.%d\r\n",
						  (int)rq1.method.len, rq1.method.ptr,
						  (int)rq1.target.len, rq1.target.ptr, rq1.minor);
			again = reserialize(sl, sl_len, rq1.headers, rq1.n_headers, &len);
			if (len < l.max_head_bytes) {
				CHECK(mg_http_parse_req(&rq3, again, len, lim, &e2) ==
				      (ssize_t)len);
				CHECK(rq3.body == rq1.body &&
				      rq3.content_length == rq1.content_length);
				CHECK(rq3.keep_alive == rq1.keep_alive &&
				      rq3.upgrade == rq1.upgrade);
				CHECK(rq3.n_headers == rq1.n_headers);
			}
			free(again);
		}
	}
	free(full);
	free(part);
}

static struct mg_http_resp rs1, rs2, rs3;

static void fuzz_resp(const uint8_t *d, size_t n, size_t k, const struct mg_http_limits *lim)
{
	struct mg_http_limits l = eff_limits(lim);
	struct mg_http_err e1 = {0}, e2 = {0};
	char *full = copy(d, n), *part = copy(d, k);
	ssize_t r1 = mg_http_parse_resp(&rs1, full, n, lim, &e1);
	ssize_t r2 = mg_http_parse_resp(&rs2, part, k, lim, &e2);

	if (r2 != 0) {
		CHECK(r2 == r1);
		if (r1 < 0) {
			CHECK(err_eq(&e1, &e2));
		} else {
			CHECK(rs1.status == rs2.status && rs1.minor == rs2.minor);
			CHECK(slice_eq_at(rs1.reason, full, rs2.reason, part));
			CHECK(rs1.n_headers == rs2.n_headers);
			CHECK(hdrs_eq(rs1.headers, full, rs2.headers, part, rs1.n_headers));
			CHECK(rs1.body == rs2.body && rs1.content_length == rs2.content_length);
			CHECK(rs1.keep_alive == rs2.keep_alive && rs1.upgrade == rs2.upgrade);
			CHECK(slice_eq_at(rs1.content_type, full, rs2.content_type, part));
			CHECK(slice_eq_at(rs1.content_encoding, full, rs2.content_encoding, part));
		}
	}

	if (r1 < 0) {
		CHECK(r1 == -1 && e1.reason && e1.status == 502 && e1.pos <= n);
	} else if (r1 == 0) {
		CHECK(n < l.max_head_bytes);
	} else {
		size_t h = (size_t)r1, cl, te;

		CHECK(h <= n && h <= l.max_head_bytes);
		CHECK(!memcmp(full + h - 4, "\r\n\r\n", 4));
		CHECK(rs1.status >= 100 && rs1.status <= 599);
		check_fields(rs1.headers, rs1.n_headers);
		cl = count_hdr(rs1.headers, rs1.n_headers, "content-length");
		te = count_hdr(rs1.headers, rs1.n_headers, "transfer-encoding");
		CHECK(cl <= 1 && te <= 1 && !(cl && te));
		CHECK(rs1.has_content_length == (cl == 1));
		CHECK(count_hdr(rs1.headers, rs1.n_headers, "content-type") ==
		      (rs1.has_content_type ? 1u : 0u));
		CHECK(mg_http_resp_body_kind(&rs1, true) == MG_HTTP_BODY_NONE);
		if (rs1.status < 200 || rs1.status == 204 || rs1.status == 304)
			CHECK(rs1.body == MG_HTTP_BODY_NONE);
		else if (te)
			CHECK(rs1.body == MG_HTTP_BODY_CHUNKED);
		else if (cl)
			CHECK(rs1.body == MG_HTTP_BODY_LENGTH);
		else
			CHECK(rs1.body == MG_HTTP_BODY_CLOSE && !rs1.keep_alive);
		CHECK(rs1.upgrade == (rs1.status == 101));
		CHECK(mg_http_parse_resp(&rs2, full, h - 1, lim, &e2) == 0);

		char sl[64];
		size_t sl_len, len;
		char *again;

		sl_len = (size_t)snprintf(sl, sizeof(sl), "HTTP/1.%d %d X\r\n", rs1.minor,
					  rs1.status);
		again = reserialize(sl, sl_len, rs1.headers, rs1.n_headers, &len);
		if (len < l.max_head_bytes) {
			CHECK(mg_http_parse_resp(&rs3, again, len, lim, &e2) == (ssize_t)len);
			CHECK(rs3.body == rs1.body && rs3.content_length == rs1.content_length);
			CHECK(rs3.keep_alive == rs1.keep_alive);
		}
		free(again);
	}
	free(full);
	free(part);
}

struct dec {
	char *data;
	size_t len, consumed;
	int rc;
	bool done;
	struct mg_http_err err;
};

/* Feeds <s>[0..<n>) in pieces ending at the offsets in <cuts> (then <n>). */
static void decode(const char *s, size_t n, const size_t *cuts, size_t ncuts, size_t max_trailer,
		   struct dec *o)
{
	struct mg_http_chunked c;
	size_t from = 0;

	o->data = malloc(n + 1);
	CHECK(o->data);
	o->len = o->consumed = 0;
	o->rc = 0;
	mg_http_chunked_init(&c, max_trailer);
	for (size_t i = 0; i <= ncuts && !o->rc; i++) {
		size_t to = i < ncuts ? cuts[i] : n;
		char *piece = copy((const uint8_t *)s + from, to - from);
		size_t j = 0;

		while (j < to - from) {
			struct mg_str dd;
			ssize_t r =
				mg_http_chunked_feed(&c, piece + j, to - from - j, &dd, &o->err);

			if (r < 0) {
				o->rc = -1;
				break;
			}
			if (r == 0)
				break;
			CHECK(dd.ptr >= piece + j && dd.ptr + dd.len <= piece + j + r);
			memcpy(o->data + o->len, dd.ptr, dd.len);
			o->len += dd.len;
			o->consumed += (size_t)r;
			j += (size_t)r;
		}
		free(piece);
		from = to;
	}
	o->done = mg_http_chunked_done(&c);
	if (o->done)
		CHECK(mg_http_chunked_feed(&c, "x", 1, NULL, NULL) == 0);
}

static bool dec_eq(const struct dec *a, const struct dec *b)
{
	if (a->rc != b->rc || a->done != b->done)
		return false;
	if (a->rc)
		return a->err.pos == b->err.pos && !strcmp(a->err.reason, b->err.reason);
	return a->consumed == b->consumed && a->len == b->len && !memcmp(a->data, b->data, a->len);
}

static void fuzz_chunked(const uint8_t *d, size_t n, size_t k, size_t max_trailer)
{
	const char *s = (const char *)d;
	struct dec one, split, bytes;
	size_t *cuts = malloc((n ? n : 1) * sizeof(*cuts));

	CHECK(cuts);
	decode(s, n, NULL, 0, max_trailer, &one);
	decode(s, n, &k, 1, max_trailer, &split);
	CHECK(dec_eq(&one, &split));
	for (size_t i = 0; i + 1 < n; i++)
		cuts[i] = i + 1;
	decode(s, n, cuts, n ? n - 1 : 0, max_trailer, &bytes);
	CHECK(dec_eq(&one, &bytes));

	if (one.rc) {
		CHECK(one.err.pos < n && one.err.status == 400);
	} else {
		CHECK(one.len <= one.consumed && one.consumed <= n);
		if (!one.done)
			CHECK(one.consumed == n);
		/* Re-chunked the way the proxy does, it decodes to the same data. */
		if (one.done) {
			char *enc = malloc(one.len + MG_HTTP_CHUNK_HEADER_MAX + 8);
			size_t m = 0;
			struct dec again;

			CHECK(enc);
			if (one.len) {
				m = mg_http_chunk_header(enc, one.len);
				memcpy(enc + m, one.data, one.len);
				m += one.len;
				memcpy(enc + m, MG_HTTP_CHUNK_CRLF, 2);
				m += 2;
			}
			memcpy(enc + m, MG_HTTP_CHUNK_LAST, 5);
			m += 5;
			decode(enc, m, NULL, 0, 0, &again);
			CHECK(again.rc == 0 && again.done && again.consumed == m);
			CHECK(again.len == one.len && !memcmp(again.data, one.data, one.len));
			free(again.data);
			free(enc);
		}
	}
	free(one.data);
	free(split.data);
	free(bytes.data);
	free(cuts);
}

static void fuzz_misc(const uint8_t *d, size_t n, size_t k)
{
	char *msg = malloc(n + 1);
	size_t len, need;
	char *out;
	int code;
	bool ka;
	struct mg_http_resp *r = &rs1;
	struct mg_http_err e = {0};
	ssize_t h;
	json_t *j, *want;

	CHECK(msg);
	memcpy(msg, d, n);
	msg[n] = '\0';
	len = strlen(msg);
	code = n >= 2 ? (d[0] << 8 | d[1]) % 700 : 400;
	ka = n && (d[n - 1] & 1);

	need = mg_http_status_json(NULL, 0, code, NULL, msg, ka);
	out = malloc(need + 1);
	CHECK(out);
	CHECK(mg_http_status_json(out, need + 1, code, NULL, msg, ka) == need);
	CHECK(out[need] == '\0');
	h = mg_http_parse_resp(r, out, need, NULL, &e);
	CHECK(h > 0);
	if (code < 200 || code > 599 || code == 204 || code == 304)
		code = 500;
	CHECK(r->status == code && r->body == MG_HTTP_BODY_LENGTH);
	CHECK(r->content_length == need - (size_t)h && r->keep_alive == ka);
	j = json_loadb(out + h, need - (size_t)h, 0, NULL);
	CHECK(j);
	CHECK(json_integer_value(json_object_get(j, "code")) == code);
	/* Valid UTF-8 comes back byte for byte. */
	want = json_stringn(msg, len);
	if (want)
		CHECK(json_equal(json_object_get(j, "message"), want));
	else
		CHECK(json_is_string(json_object_get(j, "message")));
	json_decref(want);
	json_decref(j);
	free(out);

	/* Token lists: a token found is an element of the list. */
	if (k <= n) {
		struct mg_str list = {(const char *)d, k};
		struct mg_str tok = {(const char *)d + k, n - k};
		bool found = false;

		/* Split and trim by hand, independently of next_elem(). */
		for (size_t a = 0; a <= k;) {
			size_t b = a, x, y;

			while (b < k && d[b] != ',')
				b++;
			for (x = a; x < b && (d[x] == ' ' || d[x] == '\t');)
				x++;
			for (y = b; y > x && (d[y - 1] == ' ' || d[y - 1] == '\t');)
				y--;
			if (y - x == tok.len &&
			    (!tok.len || !strncasecmp((const char *)d + x, tok.ptr, tok.len)))
				found = true;
			a = b + 1;
		}
		/* strncasecmp stops at NUL; only compare when there is none. */
		if (!memchr(d, '\0', n))
			CHECK(mg_http_header_has_token(list, tok) == found);

		uint64_t v = 7;

		if (mg_http_parse_content_length(list, false, &v) == 0)
			CHECK(v <= MG_HTTP_MAX_LENGTH);
		else
			CHECK(v == 7);
	}
	free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct mg_http_limits *lim;
	unsigned mode;
	size_t k;

	if (size < 2)
		return 0;
	mode = data[0] & 3;
	lim = (data[0] & 4) ? &small_limits : NULL;
	k = (size - 2) * data[1] / 255;
	data += 2;
	size -= 2;

	switch (mode) {
	case 0:
		fuzz_req(data, size, k, lim);
		break;
	case 1:
		fuzz_resp(data, size, k, lim);
		break;
	case 2:
		fuzz_chunked(data, size, k, (data - 2)[0] & 4 ? 32 : 0);
		break;
	default:
		fuzz_misc(data, size, k);
		break;
	}
	return 0;
}
