/*
 * http: request and response heads (valid shapes, every smuggling shape with
 * the status the proxy answers, limits, byte-by-byte arrival), the chunked
 * decoder at every split point, Content-Length, header helpers, and the
 * Kubernetes Status responses read back with jansson.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <jansson.h>

#include "../../userspace/net/http.c"

/* A byte string that may hold NULs. */
struct raw {
	const char *ptr;
	size_t len;
};

#define RAW(lit) ((struct raw){(lit), sizeof(lit) - 1})

/* Every parse runs on an exact-size heap copy, so ASan sees any read past
 * the bytes we were given. */
static char *dup_exact(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);

	assert_non_null(p);
	memcpy(p, s, n);
	return p;
}

static ssize_t req_n(struct mg_http_req *req, const char *s, size_t n,
		     const struct mg_http_limits *lim, struct mg_http_err *err)
{
	char *b = dup_exact(s, n);
	ssize_t r = mg_http_parse_req(req, b, n, lim, err);

	/* Slices point into the copy: rebase them onto <s> for the caller. */
	if (r > 0) {
		ptrdiff_t d = s - b;

		req->method.ptr += d;
		req->target.ptr += d;
		if (req->host.ptr)
			req->host.ptr += d;
		if (req->upgrade_proto.ptr)
			req->upgrade_proto.ptr += d;
		for (size_t i = 0; i < req->n_headers; i++) {
			req->headers[i].name.ptr += d;
			req->headers[i].value.ptr += d;
		}
	}
	free(b);
	return r;
}

static ssize_t resp_n(struct mg_http_resp *resp, const char *s, size_t n,
		      const struct mg_http_limits *lim, struct mg_http_err *err)
{
	char *b = dup_exact(s, n);
	ssize_t r = mg_http_parse_resp(resp, b, n, lim, err);

	if (r > 0) {
		ptrdiff_t d = s - b;

		resp->reason.ptr += d;
		if (resp->upgrade_proto.ptr)
			resp->upgrade_proto.ptr += d;
		if (resp->content_type.ptr)
			resp->content_type.ptr += d;
		if (resp->content_encoding.ptr)
			resp->content_encoding.ptr += d;
		for (size_t i = 0; i < resp->n_headers; i++) {
			resp->headers[i].name.ptr += d;
			resp->headers[i].value.ptr += d;
		}
	}
	free(b);
	return r;
}

static struct mg_http_req req_buf;
static struct mg_http_resp resp_buf;

static ssize_t req_str(const char *s, struct mg_http_err *err)
{
	memset(&req_buf, 0xa5, sizeof(req_buf));
	return req_n(&req_buf, s, strlen(s), NULL, err);
}

static ssize_t resp_str(const char *s, struct mg_http_err *err)
{
	memset(&resp_buf, 0xa5, sizeof(resp_buf));
	return resp_n(&resp_buf, s, strlen(s), NULL, err);
}

static void assert_slice(struct mg_str s, const char *want)
{
	assert_non_null(s.ptr);
	if (s.len != strlen(want) || memcmp(s.ptr, want, s.len) != 0)
		fail_msg("slice \"%.*s\" != \"%s\"", (int)s.len, s.ptr, want);
}

/* ---- valid requests ---- */

static void test_req_get_query(void **state)
{
	const char *s = "GET /api/v1/namespaces/default/pods?labelSelector=app%3Dweb&limit=500 "
			"HTTP/1.1\r\n"
			"Host: kubernetes.default.svc:443\r\n"
			"User-Agent: kubectl/v1.30.0 (linux/amd64)\r\n"
			"Accept: application/json;as=Table;v=v1;g=meta.k8s.io, application/json\r\n"
			"Authorization: Bearer abc.def\r\n"
			"\r\n";
	struct mg_http_err err = {0};

	(void)state;
	assert_int_equal(req_str(s, &err), strlen(s));
	assert_slice(req_buf.method, "GET");
	assert_slice(req_buf.target,
		     "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb&limit=500");
	assert_int_equal(req_buf.minor, 1);
	assert_int_equal(req_buf.n_headers, 4);
	assert_slice(req_buf.headers[0].name, "Host");
	assert_slice(req_buf.headers[3].value, "Bearer abc.def");
	assert_int_equal(req_buf.body, MG_HTTP_BODY_NONE);
	assert_int_equal(req_buf.content_length, 0);
	assert_true(req_buf.keep_alive);
	assert_false(req_buf.upgrade);
	assert_null(req_buf.upgrade_proto.ptr);
	assert_false(req_buf.expect_continue);
	assert_true(req_buf.has_host);
	assert_slice(req_buf.host, "kubernetes.default.svc:443");
	assert_slice(mg_http_header(req_buf.headers, req_buf.n_headers, MG_STR("user-AGENT")),
		     "kubectl/v1.30.0 (linux/amd64)");
}

static void test_req_post_content_length(void **state)
{
	const char *head = "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\n"
			   "Host: 10.96.0.1\r\n"
			   "Content-Type: application/json\r\n"
			   "Content-Length: 17\r\n"
			   "Expect: 100-Continue\r\n"
			   "\r\n";
	char s[512];
	struct mg_http_err err = {0};

	(void)state;
	/* The body and the next request follow: only the head is consumed. */
	snprintf(s, sizeof(s), "%s{\"kind\":\"Pod\"}\r\nGET / HTTP/1.1\r\n", head);
	assert_int_equal(req_str(s, &err), strlen(head));
	assert_slice(req_buf.method, "POST");
	assert_int_equal(req_buf.body, MG_HTTP_BODY_LENGTH);
	assert_int_equal(req_buf.content_length, 17);
	assert_true(req_buf.expect_continue);
	assert_true(req_buf.keep_alive);
}

static void test_req_chunked(void **state)
{
	const char *s = "PATCH /apis/apps/v1/namespaces/x/deployments/y HTTP/1.1\r\n"
			"Host: k\r\n"
			"Transfer-Encoding: Chunked\r\n"
			"\r\n";
	struct mg_http_err err = {0};

	(void)state;
	assert_int_equal(req_str(s, &err), strlen(s));
	assert_int_equal(req_buf.body, MG_HTTP_BODY_CHUNKED);
	assert_int_equal(req_buf.content_length, 0);
}

static void test_req_keep_alive_rules(void **state)
{
	static const struct {
		const char *req;
		bool keep_alive;
	} cases[] = {
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\nConnection: close\r\n\r\n",
		 false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true},
		{"GET / HTTP/1.0\r\n\r\n", false},
		{"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
		{"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
	};
	struct mg_http_err err = {0};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(req_str(cases[i].req, &err), strlen(cases[i].req));
		if (req_buf.keep_alive != cases[i].keep_alive)
			fail_msg("case %zu: keep_alive %d", i, req_buf.keep_alive);
	}
}

static void test_req_upgrade_websocket(void **state)
{
	const char *s = "GET /api/v1/namespaces/ns/pods/p/exec?command=sh&stdin=true&tty=true "
			"HTTP/1.1\r\n"
			"Host: kubernetes\r\n"
			"Connection: Upgrade\r\n"
			"Upgrade: websocket\r\n"
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			"Sec-WebSocket-Version: 13\r\n"
			"Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n"
			"\r\n";
	struct mg_http_err err = {0};

	(void)state;
	assert_int_equal(req_str(s, &err), strlen(s));
	assert_true(req_buf.upgrade);
	assert_slice(req_buf.upgrade_proto, "websocket");

	/* Upgrade is only acted on when Connection names it (RFC 9110 §7.8). */
	assert_true(req_str("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", &err) > 0);
	assert_false(req_buf.upgrade);
	assert_true(req_str("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", &err) > 0);
	assert_false(req_buf.upgrade);
	assert_true(req_str("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
			    "Upgrade: SPDY/3.1\r\n\r\n",
			    &err) > 0);
	assert_true(req_buf.upgrade);
	assert_slice(req_buf.upgrade_proto, "SPDY/3.1");
	/* ... and ignored in HTTP/1.0. */
	assert_true(req_str("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
			    &err) > 0);
	assert_false(req_buf.upgrade);
}

static void test_req_http10_and_misc(void **state)
{
	struct mg_http_err err = {0};
	const char *s;

	(void)state;
	s = "GET /healthz HTTP/1.0\r\n\r\n";
	assert_int_equal(req_str(s, &err), strlen(s));
	assert_int_equal(req_buf.minor, 0);
	assert_false(req_buf.has_host);
	assert_null(req_buf.host.ptr);
	assert_int_equal(req_buf.n_headers, 0);

	s = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_int_equal(req_str(s, &err), strlen(s));
	assert_slice(req_buf.target, "*");

	/* OWS trimmed on both sides, HTAB and obs-text allowed inside. */
	s = "GET / HTTP/1.1\r\nHost: a\r\nX-A: \t v1 \t v2\t  \r\nX-E:\r\nX-O: caf\xc3\xa9\r\n\r\n";
	assert_int_equal(req_str(s, &err), strlen(s));
	assert_int_equal(req_buf.n_headers, 4);
	assert_slice(req_buf.headers[1].value, "v1 \t v2");
	assert_non_null(req_buf.headers[2].value.ptr);
	assert_int_equal(req_buf.headers[2].value.len, 0);
	assert_slice(req_buf.headers[3].value, "caf\xc3\xa9");

	/* Empty Host is allowed (RFC 9112 §3.2), and a bracketed IPv6. */
	assert_true(req_str("GET / HTTP/1.1\r\nHost:\r\n\r\n", &err) > 0);
	assert_true(req_buf.has_host);
	assert_int_equal(req_buf.host.len, 0);
	assert_true(req_str("GET / HTTP/1.1\r\nHost: [fd00::1]:6443\r\n\r\n", &err) > 0);

	/* Methods are tokens: the parser does not judge them. */
	assert_true(req_str("PROPFIND /x HTTP/1.1\r\nHost: a\r\n\r\n", &err) > 0);
	assert_true(req_str("get /x HTTP/1.1\r\nHost: a\r\n\r\n", &err) > 0);
	/* Target characters outside RFC 3986 but inside VCHAR are passed. */
	assert_true(req_str("GET /a?x={\"y\"}|^ HTTP/1.1\r\nHost: a\r\n\r\n", &err) > 0);
	/* An empty field value for a framing field is still a bad CL. */
	assert_int_equal(req_str("GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", &err), -1);
}

/* ---- rejected requests ---- */

struct bad_case {
	struct raw in;
	int status;
};

static const struct bad_case bad_reqs[] = {
	/* CL + TE, either order (RFC 9112 §6.1) */
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: "
	     "chunked\r\n\r\n"),
	 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: "
	     "5\r\n\r\n"),
	 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n"),
	 400},
	/* (errors are reported in byte order: here the unknown coding comes first) */
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n"),
	 501},
	/* duplicate or invalid Content-Length (§6.3) */
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 0\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 4611686018427387905\r\n\r\n"), 400},
	/* Transfer-Encoding other than a single final chunked */
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"), 501},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"), 501},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n"), 501},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	     "Transfer-Encoding: chunked\r\n\r\n"),
	 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400},
	/* obs-fold (§5.2), whitespace before the first field (§2.2) */
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n 5\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400},
	/* bare CR anywhere, bare LF as a line end (§2.2) */
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\rHost: a\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), 400},
	{RAW("GET / HTTP/1.1\nHost: a\n\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\n\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nX\n: b\r\n\r\n"), 400},
	/* CTLs in values; HTAB is fine (above) */
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nX-A: \x01\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7f\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x1b[0m\r\n\r\n"), 400},
	/* field names: whitespace before colon (§5.1), empty, non-token */
	{RAW("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400},
	{RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: b\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nno-colon\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nX\0: b\r\n\r\n"), 400},
	/* method */
	{RAW("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	/* request-target: origin-form only */
	{RAW("GET http://evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("CONNECT kubernetes:443 HTTP/1.1\r\nHost: kubernetes:443\r\n\r\n"), 400},
	{RAW("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET /a%4 HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET /a% HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET /\r\n\r\n"), 400},
	/* single SP separators */
	{RAW("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400},
	/* empty line before the request-line: strict */
	{RAW("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
	/* Host (§3.2) */
	{RAW("GET / HTTP/1.1\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nX-Host: a\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: user@evil\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n"), 400},
	/* two Upgrade fields */
	{RAW("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n\r\n"), 400},
	/* versions */
	{RAW("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505},
	{RAW("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505},
	{RAW("GET / HTTP/0.9\r\n\r\n"), 505},
	{RAW("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET / HTTP/11.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET / http/1.1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET / HTTP/1\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1x\r\nHost: a\r\n\r\n"), 400},
	{RAW("GET / HTTP/1.1\nHost: a\r\n\r\n"), 400},
	{RAW("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 400},
};

static void test_req_rejects(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_reqs) / sizeof(bad_reqs[0]); i++) {
		const struct bad_case *c = &bad_reqs[i];
		struct mg_http_err err = {0};
		ssize_t r;

		memset(&req_buf, 0, sizeof(req_buf));
		r = req_n(&req_buf, c->in.ptr, c->in.len, NULL, &err);
		if (r != -1 || err.status != c->status)
			fail_msg("case %zu \"%.*s\": r=%zd status=%d reason=%s", i, (int)c->in.len,
				 c->in.ptr, r, err.status, err.reason ? err.reason : "-");
		assert_non_null(err.reason);
		assert_true(err.pos < c->in.len);
	}
}

static void test_req_error_positions(void **state)
{
	struct mg_http_err err = {0};
	const char *s;

	(void)state;
	s = "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n";
	assert_int_equal(req_n(&req_buf, s, 37, NULL, &err), -1);
	assert_int_equal(err.pos, strlen("GET / HTTP/1.1\r\nHost: a\r\nX-A: b"));
	assert_int_equal(err.status, 400);

	s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
	assert_int_equal(req_str(s, &err), -1);
	assert_int_equal(err.pos, strstr(s, "Transfer-") - s);
	assert_string_equal(err.reason, "both Content-Length and Transfer-Encoding");

	s = "GET /a#b HTTP/1.1\r\n";
	assert_int_equal(req_str(s, &err), -1);
	assert_int_equal(err.pos, 6);

	/* A bad request-line is found before the head is complete. */
	assert_int_equal(req_str("GET http://x", &err), -1);
	assert_int_equal(err.pos, 4);
	assert_int_equal(req_str("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c", &err), -1);
	assert_string_equal(err.reason, "obsolete line folding");

	assert_int_equal(req_str("GET / HTTP/1.1\r\nHost : a\r\n\r\n", &err), -1);
	assert_string_equal(err.reason, "whitespace before colon");
	assert_int_equal(err.pos, 20);
	assert_int_equal(req_str("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", &err), -1);
	assert_string_equal(err.reason, "empty field name");

	/* NULL err is allowed. */
	assert_int_equal(mg_http_parse_req(&req_buf, "\r\n", 2, NULL, NULL), -1);
}

/* ---- limits ---- */

/* Builds "GET <target of n bytes> HTTP/1.1\r\nHost: a\r\n\r\n" into a heap buffer. */
static char *req_with_target(size_t n, size_t *len)
{
	char *s = malloc(n + 64);

	assert_non_null(s);
	memcpy(s, "GET /", 5);
	memset(s + 5, 'a', n - 1);
	*len = (size_t)sprintf(s + 4 + n, " HTTP/1.1\r\nHost: a\r\n\r\n") + 4 + n;
	return s;
}

static void test_limits_target(void **state)
{
	struct mg_http_limits lim = {.max_target_len = 10};
	struct mg_http_err err = {0};
	size_t len;
	char *s;

	(void)state;
	s = req_with_target(8192, &len);
	assert_int_equal(req_n(&req_buf, s, len, NULL, &err), len);
	assert_int_equal(req_buf.target.len, 8192);
	free(s);

	s = req_with_target(8193, &len);
	assert_int_equal(req_n(&req_buf, s, len, NULL, &err), -1);
	assert_int_equal(err.status, 414);
	assert_int_equal(err.pos, 4 + 8192);
	/* Known as soon as the byte past the limit arrives. */
	assert_int_equal(req_n(&req_buf, s, 4 + 8193, NULL, &err), -1);
	assert_int_equal(err.status, 414);
	assert_int_equal(req_n(&req_buf, s, 4 + 8192, NULL, &err), 0);
	free(s);

	assert_true(req_n(&req_buf, "GET /012345678 HTTP/1.1\r\nHost: a\r\n\r\n", 36, &lim, &err) >
		    0);
	assert_int_equal(
		req_n(&req_buf, "GET /0123456789 HTTP/1.1\r\nHost: a\r\n\r\n", 37, &lim, &err), -1);
	assert_int_equal(err.status, 414);
	/* Percent-escapes count as the bytes they are. */
	assert_int_equal(
		req_n(&req_buf, "GET /01234567%41 HTTP/1.1\r\nHost: a\r\n\r\n", 38, &lim, &err),
		-1);
	assert_int_equal(err.status, 414);
}

static void test_limits_head_size(void **state)
{
	struct mg_http_limits lim = {.max_head_bytes = 64};
	struct mg_http_err err = {0};
	char s[256];
	size_t n;

	(void)state;
	/* A head of exactly the limit is accepted, one byte more is a 431. */
	n = (size_t)snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: %0*d\r\n\r\n",
			     64 - 36, 0);
	assert_int_equal(n, 64);
	assert_int_equal(req_n(&req_buf, s, n, &lim, &err), 64);
	n = (size_t)snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: %0*d\r\n\r\n",
			     65 - 36, 0);
	assert_int_equal(req_n(&req_buf, s, n, &lim, &err), -1);
	assert_int_equal(err.status, 431);
	/* Reaching the limit without the end is a 431 at once... */
	assert_int_equal(req_n(&req_buf, s, 64, &lim, &err), -1);
	assert_int_equal(err.status, 431);
	assert_int_equal(err.pos, 64);
	/* ... below it, more is needed. */
	assert_int_equal(req_n(&req_buf, s, 63, &lim, &err), 0);
	/* Errors before the limit still win over the limit. */
	memcpy(s, "GET / HTTP/1.1\r\nHost: a\r\nX\0", 27);
	assert_int_equal(req_n(&req_buf, s, 100, &lim, &err), -1);
	assert_int_equal(err.status, 400);
}

static void test_limits_head_size_default(void **state)
{
	size_t cap = 70 * 1024, n = 0;
	char *s = malloc(cap);
	struct mg_http_err err = {0};

	(void)state;
	assert_non_null(s);
	n += (size_t)sprintf(s, "GET / HTTP/1.1\r\nHost: a\r\n");
	/* 66 fields of 1 KiB: under the count limit, over the size limit. */
	for (int i = 0; i < 66; i++) {
		n += (size_t)sprintf(s + n, "X-%02d: ", i);
		memset(s + n, 'v', 1000);
		n += 1000;
		memcpy(s + n, "\r\n", 2);
		n += 2;
	}
	assert_true(n > 64 * 1024);
	assert_int_equal(req_n(&req_buf, s, 64 * 1024 - 1, NULL, &err), 0);
	assert_int_equal(req_n(&req_buf, s, 64 * 1024, NULL, &err), -1);
	assert_int_equal(err.status, 431);
	assert_int_equal(req_n(&req_buf, s, n, NULL, &err), -1);
	assert_int_equal(err.status, 431);
	free(s);
}

static void test_limits_header_count(void **state)
{
	struct mg_http_limits lim = {.max_headers = 3};
	struct mg_http_err err = {0};
	char s[8192];
	size_t n;

	(void)state;
	assert_true(req_n(&req_buf, "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", 39, &lim,
			  &err) > 0);
	assert_int_equal(req_n(&req_buf,
			       "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 45,
			       &lim, &err),
			 -1);
	assert_int_equal(err.status, 431);
	assert_int_equal(err.pos, 37);

	/* Default: 100 fields. */
	n = (size_t)sprintf(s, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 0; i < 99; i++)
		n += (size_t)sprintf(s + n, "X-%d: %d\r\n", i, i);
	memcpy(s + n, "\r\n", 2);
	assert_int_equal(req_n(&req_buf, s, n + 2, NULL, &err), n + 2);
	assert_int_equal(req_buf.n_headers, 100);
	n += (size_t)sprintf(s + n, "X-last: 1\r\n\r\n");
	assert_int_equal(req_n(&req_buf, s, n, NULL, &err), -1);
	assert_int_equal(err.status, 431);

	/* Limits above the array capacity are capped to it. */
	lim = (struct mg_http_limits){.max_headers = 100000};
	n = (size_t)sprintf(s, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 0; i < MG_HTTP_MAX_HEADERS; i++)
		n += (size_t)sprintf(s + n, "X-%d: %d\r\n", i, i);
	n += (size_t)sprintf(s + n, "\r\n");
	assert_int_equal(req_n(&req_buf, s, n, &lim, &err), -1);
	assert_int_equal(err.status, 431);

	lim = mg_http_limits_default();
	assert_int_equal(lim.max_head_bytes, 65536);
	assert_int_equal(lim.max_headers, 100);
	assert_int_equal(lim.max_target_len, 8192);
}

/* ---- incremental arrival ---- */

static void assert_same_req(const struct mg_http_req *a, const struct mg_http_req *b)
{
	assert_true(mg_str_eq(a->method, b->method));
	assert_true(mg_str_eq(a->target, b->target));
	assert_int_equal(a->minor, b->minor);
	assert_int_equal(a->n_headers, b->n_headers);
	for (size_t i = 0; i < a->n_headers; i++) {
		assert_true(mg_str_eq(a->headers[i].name, b->headers[i].name));
		assert_true(mg_str_eq(a->headers[i].value, b->headers[i].value));
	}
	assert_int_equal(a->body, b->body);
	assert_int_equal(a->content_length, b->content_length);
	assert_int_equal(a->keep_alive, b->keep_alive);
	assert_int_equal(a->upgrade, b->upgrade);
	assert_int_equal(a->expect_continue, b->expect_continue);
	assert_int_equal(a->has_host, b->has_host);
}

static void test_req_byte_by_byte(void **state)
{
	static const struct raw reqs[] = {
		RAW("POST /api/v1/namespaces/default/pods?dryRun=All HTTP/1.1\r\n"
		    "Host: kubernetes.default.svc\r\nContent-Type: application/json\r\n"
		    "Content-Length: 2\r\nConnection: keep-alive\r\n\r\n{}"),
		RAW("GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: k\r\nConnection: Upgrade\r\n"
		    "Upgrade: websocket\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n"),
		RAW("GET / HTTP/1.0\r\n\r\n"),
	};
	static struct mg_http_req one, part;
	struct mg_http_err err = {0};

	(void)state;
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		ssize_t full = req_n(&one, reqs[i].ptr, reqs[i].len, NULL, &err);

		assert_true(full > 0);
		for (size_t k = 0; k < (size_t)full; k++)
			if (req_n(&part, reqs[i].ptr, k, NULL, &err) != 0)
				fail_msg("request %zu: prefix %zu is not 'need more'", i, k);
		for (size_t k = (size_t)full; k <= reqs[i].len; k++) {
			assert_int_equal(req_n(&part, reqs[i].ptr, k, NULL, &err), full);
			assert_same_req(&one, &part);
		}
	}
}

/* Every prefix of a bad request is "need more" or exactly the same error. */
static void test_req_prefix_errors_stable(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_reqs) / sizeof(bad_reqs[0]); i++) {
		const struct raw *in = &bad_reqs[i].in;
		struct mg_http_err e1 = {0}, e2 = {0};

		assert_int_equal(req_n(&req_buf, in->ptr, in->len, NULL, &e1), -1);
		for (size_t k = 0; k < in->len; k++) {
			ssize_t r = req_n(&req_buf, in->ptr, k, NULL, &e2);

			if (r == 0)
				continue;
			if (r != -1 || e2.status != e1.status || e2.pos != e1.pos ||
			    strcmp(e2.reason, e1.reason))
				fail_msg("case %zu prefix %zu: r=%zd %s vs %s", i, k, r,
					 e2.reason ? e2.reason : "-", e1.reason);
		}
	}
}

/* ---- responses ---- */

static void test_resp_content_length(void **state)
{
	const char *head = "HTTP/1.1 200 OK\r\n"
			   "Audit-Id: 1d2c\r\n"
			   "Cache-Control: no-cache, private\r\n"
			   "Content-Type: application/json\r\n"
			   "X-Kubernetes-Pf-Flowschema-Uid: 9\r\n"
			   "Content-Length: 13\r\n"
			   "Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
			   "\r\n";
	char s[512];
	struct mg_http_err err = {0};

	(void)state;
	snprintf(s, sizeof(s), "%s{\"kind\":\"x\"}", head);
	assert_int_equal(resp_str(s, &err), strlen(head));
	assert_int_equal(resp_buf.minor, 1);
	assert_int_equal(resp_buf.status, 200);
	assert_slice(resp_buf.reason, "OK");
	assert_int_equal(resp_buf.n_headers, 6);
	assert_int_equal(resp_buf.body, MG_HTTP_BODY_LENGTH);
	assert_true(resp_buf.has_content_length);
	assert_int_equal(resp_buf.content_length, 13);
	assert_true(resp_buf.keep_alive);
	assert_false(resp_buf.upgrade);
	assert_true(resp_buf.has_content_type);
	assert_slice(resp_buf.content_type, "application/json");
	assert_false(resp_buf.has_content_encoding);
	assert_null(resp_buf.content_encoding.ptr);
	assert_int_equal(mg_http_resp_body_kind(&resp_buf, false), MG_HTTP_BODY_LENGTH);
	/* RFC 9112 §6.3: a response to HEAD has no body, CL or not. */
	assert_int_equal(mg_http_resp_body_kind(&resp_buf, true), MG_HTTP_BODY_NONE);
}

static void test_resp_chunked_gzip(void **state)
{
	const char *s = "HTTP/1.1 200 OK\r\n"
			"Content-Type: application/json;stream=watch\r\n"
			"Content-Encoding: gzip\r\n"
			"Transfer-Encoding: chunked\r\n"
			"\r\n";
	struct mg_http_err err = {0};

	(void)state;
	assert_int_equal(resp_str(s, &err), strlen(s));
	assert_int_equal(resp_buf.body, MG_HTTP_BODY_CHUNKED);
	assert_false(resp_buf.has_content_length);
	assert_true(resp_buf.keep_alive);
	assert_true(resp_buf.has_content_encoding);
	assert_slice(resp_buf.content_encoding, "gzip");
	assert_slice(resp_buf.content_type, "application/json;stream=watch");
	assert_int_equal(mg_http_resp_body_kind(&resp_buf, true), MG_HTTP_BODY_NONE);
}

static void test_resp_status_kinds(void **state)
{
	static const struct {
		const char *in;
		int status;
		enum mg_http_body body;
		bool keep_alive;
		bool upgrade;
	} cases[] = {
		{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
		 "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
		 101, MG_HTTP_BODY_NONE, false, true},
		{"HTTP/1.1 100 Continue\r\n\r\n", 100, MG_HTTP_BODY_NONE, true, false},
		{"HTTP/1.1 204 No Content\r\n\r\n", 204, MG_HTTP_BODY_NONE, true, false},
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", 304, MG_HTTP_BODY_NONE,
		 true, false},
		{"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", 204,
		 MG_HTTP_BODY_NONE, true, false},
		/* Neither CL nor TE: until close, so never reused. */
		{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", 200, MG_HTTP_BODY_CLOSE,
		 false, false},
		{"HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\nContent-Length: "
		 "0\r\n\r\n",
		 500, MG_HTTP_BODY_LENGTH, false, false},
		{"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", 200, MG_HTTP_BODY_LENGTH, false,
		 false},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", 200,
		 MG_HTTP_BODY_LENGTH, true, false},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", 200, MG_HTTP_BODY_CLOSE,
		 false, false},
		/* No reason-phrase, with and without its SP. */
		{"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", 404, MG_HTTP_BODY_LENGTH, true,
		 false},
		{"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", 404, MG_HTTP_BODY_LENGTH, true,
		 false},
		{"HTTP/1.1 599 Whatever \t it\xc3\xa9\r\nContent-Length: 0\r\n\r\n", 599,
		 MG_HTTP_BODY_LENGTH, true, false},
	};
	struct mg_http_err err = {0};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (resp_str(cases[i].in, &err) != (ssize_t)strlen(cases[i].in))
			fail_msg("case %zu rejected: %s", i, err.reason);
		assert_int_equal(resp_buf.status, cases[i].status);
		if (resp_buf.body != cases[i].body || resp_buf.keep_alive != cases[i].keep_alive ||
		    resp_buf.upgrade != cases[i].upgrade)
			fail_msg("case %zu: body %d keep_alive %d upgrade %d", i, resp_buf.body,
				 resp_buf.keep_alive, resp_buf.upgrade);
	}
	assert_true(resp_str(cases[0].in, &err) > 0);
	assert_slice(resp_buf.upgrade_proto, "websocket");
	assert_true(resp_str("HTTP/1.1 404\r\n\r\n", &err) > 0);
	assert_int_equal(resp_buf.reason.len, 0);
	assert_true(resp_str(cases[3].in, &err) > 0);
	assert_true(resp_buf.has_content_length);
	assert_int_equal(resp_buf.content_length, 100);
}

static const struct raw bad_resps[] = {
	RAW("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
	RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
	RAW("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
	RAW("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"),
	RAW("HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n"),
	RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
	RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
	RAW("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
	RAW("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Type: "
	    "application/json\r\n\r\n"),
	RAW("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: identity\r\n\r\n"),
	RAW("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
	RAW("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"),
	RAW("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n"),
	RAW("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n"),
	RAW("HTTP/1.1 200 O\rK\r\n\r\n"),
	RAW("HTTP/1.1 200 OK\x01\r\n\r\n"),
	RAW("HTTP/1.1 20 OK\r\n\r\n"),
	RAW("HTTP/1.1 2000 OK\r\n\r\n"),
	RAW("HTTP/1.1 099 X\r\n\r\n"),
	RAW("HTTP/1.1 600 X\r\n\r\n"),
	RAW("HTTP/1.1  200 OK\r\n\r\n"),
	RAW("HTTP/1.1 2x0 OK\r\n\r\n"),
	RAW("HTTP/2 200\r\n\r\n"),
	RAW("HTTP/1.2 200 OK\r\n\r\n"),
	RAW("HTTP/2.0 200 OK\r\n\r\n"),
	RAW("http/1.1 200 OK\r\n\r\n"),
	RAW("\r\nHTTP/1.1 200 OK\r\n\r\n"),
	RAW("HTTP/1.1 101 Switching\r\nUpgrade: a\r\nUpgrade: b\r\n\r\n"),
	RAW("HTTP/1.1 200 OK\r\nX : a\r\n\r\n"),
};

static void test_resp_rejects(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_resps) / sizeof(bad_resps[0]); i++) {
		struct mg_http_err err = {0}, e2 = {0};
		ssize_t r = resp_n(&resp_buf, bad_resps[i].ptr, bad_resps[i].len, NULL, &err);

		if (r != -1 || err.status != 502)
			fail_msg("case %zu: r=%zd status %d", i, r, err.status);
		assert_true(err.pos < bad_resps[i].len);
		for (size_t k = 0; k < bad_resps[i].len; k++) {
			r = resp_n(&resp_buf, bad_resps[i].ptr, k, NULL, &e2);
			assert_true(r == 0 || (r == -1 && e2.pos == err.pos &&
					       !strcmp(e2.reason, err.reason)));
		}
	}
}

static void test_resp_limits_and_incremental(void **state)
{
	struct mg_http_limits lim = {.max_head_bytes = 32, .max_headers = 2};
	const char *s = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
	const size_t head = strlen(s) - strlen("5\r\nhello\r\n");
	static struct mg_http_resp one;
	struct mg_http_err err = {0};

	(void)state;
	assert_int_equal(resp_n(&one, s, strlen(s), NULL, &err), head);
	for (size_t k = 0; k < head; k++)
		assert_int_equal(resp_n(&resp_buf, s, k, NULL, &err), 0);
	assert_int_equal(resp_n(&resp_buf, s, head, NULL, &err), head);
	assert_int_equal(resp_buf.body, one.body);
	assert_true(mg_str_eq(resp_buf.content_type, one.content_type));

	assert_int_equal(resp_n(&resp_buf, s, strlen(s), &lim, &err), -1);
	assert_int_equal(err.status, 502);
	lim.max_head_bytes = 0;
	lim.max_headers = 1;
	assert_int_equal(resp_n(&resp_buf, s, strlen(s), &lim, &err), -1);
	assert_int_equal(err.status, 502);
	assert_string_equal(err.reason, "too many header fields");
}

/* ---- helpers ---- */

static void test_header_helpers(void **state)
{
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\nAccept: x\r\naccept: y\r\nX-Empty:\r\n\r\n";
	struct mg_http_err err = {0};
	struct mg_str v;

	(void)state;
	assert_true(req_str(s, &err) > 0);
	assert_slice(mg_http_header(req_buf.headers, req_buf.n_headers, MG_STR("ACCEPT")), "x");
	v = mg_http_header(req_buf.headers, req_buf.n_headers, MG_STR("x-empty"));
	assert_non_null(v.ptr);
	assert_int_equal(v.len, 0);
	assert_null(mg_http_header(req_buf.headers, req_buf.n_headers, MG_STR("Accep")).ptr);
	assert_null(mg_http_header(req_buf.headers, req_buf.n_headers, MG_STR("Accepts")).ptr);
	assert_null(mg_http_header(req_buf.headers, 0, MG_STR("Host")).ptr);

	assert_true(mg_http_header_has_token(MG_STR("keep-alive, Upgrade"), MG_STR("upgrade")));
	assert_true(mg_http_header_has_token(MG_STR(" \tclose\t "), MG_STR("close")));
	assert_true(mg_http_header_has_token(MG_STR("a,,CLOSE,"), MG_STR("close")));
	assert_true(mg_http_header_has_token(MG_STR("x,y,z"), MG_STR("Z")));
	assert_false(mg_http_header_has_token(MG_STR("closed"), MG_STR("close")));
	assert_false(mg_http_header_has_token(MG_STR("clos"), MG_STR("close")));
	assert_false(mg_http_header_has_token(MG_STR("upgrade-insecure"), MG_STR("upgrade")));
	assert_false(mg_http_header_has_token(MG_STR("cl ose"), MG_STR("close")));
	assert_false(mg_http_header_has_token(MG_STR(""), MG_STR("close")));
	assert_false(mg_http_header_has_token(MG_STR_NULL, MG_STR("close")));
	assert_true(mg_http_header_has_token(MG_STR("a, ,b"), MG_STR("")));
}

static void test_content_length(void **state)
{
	static const struct {
		const char *in;
		int rc;
		uint64_t v;
	} cases[] = {
		{"0", 0, 0},
		{"42", 0, 42},
		{" \t42 ", 0, 42},
		{"007", 0, 7},
		{"4611686018427387904", 0, UINT64_C(4611686018427387904)},
		{"", -EINVAL, 0},
		{"  ", -EINVAL, 0},
		{"-1", -EINVAL, 0},
		{"+1", -EINVAL, 0},
		{"4 2", -EINVAL, 0},
		{"42,42", -EINVAL, 0},
		{"42, 42", -EINVAL, 0},
		{"0x10", -EINVAL, 0},
		{"1e3", -EINVAL, 0},
		{"12a", -EINVAL, 0},
		{"4611686018427387905", -EINVAL, 0},
		{"18446744073709551615", -EINVAL, 0},
		{"18446744073709551616", -EINVAL, 0},
		{"99999999999999999999999", -EINVAL, 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		int rc = mg_http_parse_content_length(mg_str_of(cases[i].in), false, &v);

		if (rc != cases[i].rc)
			fail_msg("\"%s\": rc %d", cases[i].in, rc);
		assert_int_equal(v, rc ? 12345 : cases[i].v);
	}
	/* <seen>: equal is fine, different is not and leaves <*len> alone. */
	uint64_t v = 5;

	assert_int_equal(mg_http_parse_content_length(MG_STR("5"), true, &v), 0);
	assert_int_equal(v, 5);
	assert_int_equal(mg_http_parse_content_length(MG_STR("6"), true, &v), -EINVAL);
	assert_int_equal(v, 5);
	assert_int_equal(mg_http_parse_content_length(MG_STR_NULL, false, &v), -EINVAL);
}

/* ---- chunked ---- */

struct dec_out {
	char data[70000];
	size_t len;
	size_t consumed;
	bool done;
	int rc;
	struct mg_http_err err;
};

/* Feeds <s>[0..<n>) to <c> until it stops, appending data to <o>. Copies
 * each piece to an exact-size heap buffer so ASan catches overreads. */
static void feed_piece(struct mg_http_chunked *c, const char *s, size_t n, struct dec_out *o)
{
	char *b = dup_exact(s, n);
	size_t i = 0;

	while (o->rc == 0 && i < n) {
		struct mg_str d;
		ssize_t r = mg_http_chunked_feed(c, b + i, n - i, &d, &o->err);

		if (r < 0) {
			o->rc = -1;
			break;
		}
		if (r == 0)
			break;
		/* The data is inside what was consumed. */
		assert_true(d.ptr >= b + i && d.ptr + d.len <= b + i + r);
		assert_true(o->len + d.len <= sizeof(o->data));
		memcpy(o->data + o->len, d.ptr, d.len);
		o->len += d.len;
		o->consumed += (size_t)r;
		i += (size_t)r;
	}
	o->done = mg_http_chunked_done(c);
	free(b);
}

static void decode_split(const char *s, size_t n, const size_t *cuts, size_t ncuts,
			 struct dec_out *o)
{
	struct mg_http_chunked c;
	size_t from = 0;

	memset(o, 0, sizeof(*o));
	mg_http_chunked_init(&c, 0);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : n;

		feed_piece(&c, s + from, to - from, o);
		if (o->rc)
			return;
		from = to;
	}
}

static const char chunked_body[] = "5\r\nhello\r\n"
				   "7;name=val;q=\"a \\\"b\\\\\";x\r\n, world\r\n"
				   "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n"
				   "00000000000001\r\n!\r\n"
				   "0;last\r\n"
				   "X-Checksum: abc\r\n"
				   "X-Other:\t d e \r\n"
				   "\r\n"
				   "GET /next HTTP/1.1\r\n";
static const char chunked_data[] = "hello, worldabcdefghijklmnopqrstuvwxyz!";

static void test_chunked_every_split(void **state)
{
	const size_t n = sizeof(chunked_body) - 1;
	const size_t body_len = n - strlen("GET /next HTTP/1.1\r\n");
	static struct dec_out o;

	(void)state;
	decode_split(chunked_body, n, NULL, 0, &o);
	assert_int_equal(o.rc, 0);
	assert_true(o.done);
	assert_int_equal(o.consumed, body_len);
	assert_int_equal(o.len, strlen(chunked_data));
	assert_memory_equal(o.data, chunked_data, o.len);

	for (size_t a = 0; a <= n; a++) {
		for (size_t b = a; b <= n; b++) {
			size_t cuts[2] = {a, b};

			decode_split(chunked_body, n, cuts, 2, &o);
			if (o.rc || !o.done || o.consumed != body_len ||
			    o.len != strlen(chunked_data) || memcmp(o.data, chunked_data, o.len))
				fail_msg("cuts %zu,%zu: rc %d done %d consumed %zu len %zu", a, b,
					 o.rc, o.done, o.consumed, o.len);
		}
	}

	/* Byte by byte. */
	size_t cuts[sizeof(chunked_body)];

	for (size_t i = 0; i < n - 1; i++)
		cuts[i] = i + 1;
	decode_split(chunked_body, n, cuts, n - 1, &o);
	assert_int_equal(o.rc, 0);
	assert_true(o.done);
	assert_int_equal(o.consumed, body_len);
	assert_memory_equal(o.data, chunked_data, o.len);
}

static void test_chunked_streams_large_chunk(void **state)
{
	const size_t size = 65535;
	char *s = malloc(size + 32);
	struct mg_http_chunked c;
	struct mg_http_err err = {0};
	size_t n, off = 0, got = 0, calls = 0;

	(void)state;
	assert_non_null(s);
	n = (size_t)sprintf(s, "ffff\r\n");
	memset(s + n, 'q', size);
	n += size;
	n += (size_t)sprintf(s + n, "\r\n0\r\n\r\n");

	/* 1000-byte reads: every slice comes back before the chunk is whole. */
	mg_http_chunked_init(&c, 0);
	while (off < n) {
		size_t piece = n - off < 1000 ? n - off : 1000, i = 0;

		while (i < piece) {
			struct mg_str d;
			ssize_t r = mg_http_chunked_feed(&c, s + off + i, piece - i, &d, &err);

			assert_true(r > 0);
			assert_true(d.len <= 1000);
			for (size_t j = 0; j < d.len; j++)
				assert_int_equal(d.ptr[j], 'q');
			got += d.len;
			i += (size_t)r;
			calls++;
		}
		off += piece;
	}
	assert_true(mg_http_chunked_done(&c));
	assert_int_equal(got, size);
	assert_true(calls < 200);
	free(s);
}

static void test_chunked_done_and_error_are_sticky(void **state)
{
	struct mg_http_chunked c;
	struct mg_http_err err = {0};
	struct mg_str d;

	(void)state;
	mg_http_chunked_init(&c, 0);
	assert_int_equal(mg_http_chunked_feed(&c, "0\r\n\r\nXYZ", 8, &d, &err), 5);
	assert_true(mg_http_chunked_done(&c));
	assert_int_equal(mg_http_chunked_feed(&c, "XYZ", 3, &d, &err), 0);
	assert_int_equal(d.len, 0);
	assert_int_equal(mg_http_chunked_feed(&c, "", 0, &d, &err), 0);

	mg_http_chunked_init(&c, 0);
	assert_int_equal(mg_http_chunked_feed(&c, "5\r\nhel", 6, &d, &err), 6);
	assert_int_equal(d.len, 3);
	assert_false(mg_http_chunked_done(&c));
	assert_int_equal(mg_http_chunked_feed(&c, "loX\r\n", 5, &d, &err), 2);
	assert_int_equal(d.len, 2);
	assert_int_equal(mg_http_chunked_feed(&c, "X\r\n", 3, &d, &err), -1);
	/* The position counts from the start of the body, across feeds. */
	assert_int_equal(err.pos, 8);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.reason, "no CRLF after chunk data");
	err.reason = NULL;
	assert_int_equal(mg_http_chunked_feed(&c, "\r\n0\r\n\r\n", 7, &d, &err), -1);
	assert_non_null(err.reason);
	assert_false(mg_http_chunked_done(&c));

	/* Only framing consumed: no data. */
	mg_http_chunked_init(&c, 0);
	assert_int_equal(mg_http_chunked_feed(&c, "1a;x=\"y\"", 8, &d, &err), 8);
	assert_int_equal(d.len, 0);
	assert_int_equal(mg_http_chunked_feed(&c, "\r\n", 2, &d, &err), 2);
	assert_int_equal(d.len, 0);
	/* A NULL data_out is allowed. */
	assert_int_equal(mg_http_chunked_feed(&c, "abc", 3, NULL, &err), 3);
}

static void test_chunked_rejects(void **state)
{
	static const struct {
		struct raw in;
		const char *reason;
	} cases[] = {
		{RAW("\r\n"), "empty chunk size"},
		{RAW(" 5\r\nhello\r\n0\r\n\r\n"), "invalid chunk size"},
		{RAW("\t5\r\n"), "invalid chunk size"},
		{RAW("5 \r\nhello\r\n0\r\n\r\n"), "whitespace in chunk line"},
		{RAW("5 ;a\r\nhello\r\n0\r\n\r\n"), "whitespace in chunk line"},
		{RAW("0x5\r\nhello\r\n0\r\n\r\n"), "invalid chunk size"},
		{RAW("-5\r\n"), "invalid chunk size"},
		{RAW("+5\r\n"), "invalid chunk size"},
		{RAW("g\r\n"), "invalid chunk size"},
		{RAW("5g\r\n"), "invalid chunk size"},
		{RAW("5\nhello\r\n0\r\n\r\n"), "bare LF in chunk line"},
		{RAW("5\rhello"), "CR not followed by LF"},
		{RAW("4000000000000001\r\n"), "chunk size too large"},
		{RAW("ffffffffffffffff\r\n"), "chunk size too large"},
		{RAW("10000000000000000\r\n"), "chunk size too large"},
		{RAW("00000000000000005\r\n"), "chunk size too large"},
		{RAW("5;\r\nhello\r\n"), "invalid chunk extension"},
		{RAW("5;=x\r\n"), "invalid chunk extension"},
		{RAW("5;a=\r\n"), "invalid chunk extension"},
		{RAW("5;a =b\r\n"), "whitespace in chunk line"},
		{RAW("5;a= b\r\n"), "invalid chunk extension"},
		{RAW("5;a=b c\r\n"), "whitespace in chunk line"},
		{RAW("5;a=\"x\r\n"), "invalid chunk extension"},
		{RAW("5;a=\"\x01\"\r\n"), "invalid chunk extension"},
		{RAW("5;a=\"x\"y\r\n"), "invalid chunk extension"},
		{RAW("5;a\nhello"), "bare LF in chunk line"},
		{RAW("5;a,b\r\n"), "invalid chunk extension"},
		{RAW("5\r\nhelloX\r\n"), "no CRLF after chunk data"},
		{RAW("5\r\nhello\n0\r\n\r\n"), "bare LF after chunk data"},
		{RAW("5\r\nhello\rX"), "no CRLF after chunk data"},
		{RAW("5\r\nhello\r\n\r\n"), "empty chunk size"},
		{RAW("0\r\nA: b\r\n c\r\n\r\n"), "obsolete line folding in trailer"},
		{RAW("0\r\n c\r\n\r\n"), "obsolete line folding in trailer"},
		{RAW("0\r\nA : b\r\n\r\n"), "whitespace before colon in trailer"},
		{RAW("0\r\nA: b\n\r\n"), "bare LF in trailer"},
		{RAW("0\r\nA: b\0\r\n\r\n"), "invalid character in trailer value"},
		{RAW("0\r\nA: b\rc\r\n\r\n"), "CR not followed by LF"},
		{RAW("0\r\n: b\r\n\r\n"), "empty field name in trailer"},
		{RAW("0\r\nA(: b\r\n\r\n"), "invalid character in trailer field name"},
		{RAW("0\r\nA\r\n\r\n"), "invalid character in trailer field name"},
		{RAW("0\r\n\n"), "bare LF in trailer"},
		{RAW("0\r\n\rX"), "CR not followed by LF"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		static struct dec_out o, p;

		decode_split(cases[i].in.ptr, cases[i].in.len, NULL, 0, &o);
		if (o.rc != -1 || strcmp(o.err.reason, cases[i].reason))
			fail_msg("case %zu: rc %d reason %s", i, o.rc,
				 o.err.reason ? o.err.reason : "-");
		assert_int_equal(o.err.status, 400);
		assert_true(o.err.pos < cases[i].in.len);
		/* Same error, same position, wherever the input is split. */
		for (size_t k = 0; k <= cases[i].in.len; k++) {
			decode_split(cases[i].in.ptr, cases[i].in.len, &k, 1, &p);
			assert_int_equal(p.rc, -1);
			assert_int_equal(p.err.pos, o.err.pos);
			assert_string_equal(p.err.reason, o.err.reason);
		}
	}
}

static void test_chunked_limits(void **state)
{
	struct mg_http_chunked c;
	struct mg_http_err err = {0};
	struct mg_str d;
	char line[MG_HTTP_MAX_CHUNK_LINE + 16];
	const char *tr = "0\r\nX-Long: 0123456789\r\n\r\n";
	ssize_t r;

	(void)state;
	/* 2^62 itself is accepted (and then awaits its data). */
	mg_http_chunked_init(&c, 0);
	assert_int_equal(mg_http_chunked_feed(&c, "4000000000000000\r\nab", 20, &d, &err), 20);
	assert_int_equal(d.len, 2);

	/* A chunk line with endless extensions is cut off. */
	memset(line, 'a', sizeof(line));
	memcpy(line, "5;", 2);
	mg_http_chunked_init(&c, 0);
	r = mg_http_chunked_feed(&c, line, MG_HTTP_MAX_CHUNK_LINE, &d, &err);
	assert_int_equal(r, MG_HTTP_MAX_CHUNK_LINE);
	r = mg_http_chunked_feed(&c, line + r, 1, &d, &err);
	assert_int_equal(r, -1);
	assert_string_equal(err.reason, "chunk line too long");

	/* Trailer section limit: its 22 bytes fit in 22, not in 21. */
	mg_http_chunked_init(&c, 22);
	assert_int_equal(mg_http_chunked_feed(&c, tr, strlen(tr), &d, &err), strlen(tr));
	assert_true(mg_http_chunked_done(&c));
	mg_http_chunked_init(&c, 21);
	assert_int_equal(mg_http_chunked_feed(&c, tr, strlen(tr), &d, &err), -1);
	assert_string_equal(err.reason, "trailer section too large");
	assert_int_equal(err.pos, strlen(tr) - 1);
}

static void test_chunk_header_roundtrip(void **state)
{
	char out[MG_HTTP_CHUNK_HEADER_MAX];
	char enc[4096];
	size_t n = 0;
	static struct dec_out o;

	(void)state;
	assert_int_equal(mg_http_chunk_header(out, 1), 3);
	assert_memory_equal(out, "1\r\n", 3);
	assert_int_equal(mg_http_chunk_header(out, 255), 4);
	assert_memory_equal(out, "ff\r\n", 4);
	assert_int_equal(mg_http_chunk_header(out, 4096), 6);
	assert_memory_equal(out, "1000\r\n", 6);
	assert_int_equal(mg_http_chunk_header(out, SIZE_MAX), 18);
	assert_memory_equal(out, "ffffffffffffffff\r\n", 18);

	/* Re-chunk what the decoder hands out, decode again: same data. */
	decode_split(chunked_body, sizeof(chunked_body) - 1, NULL, 0, &o);
	assert_int_equal(o.rc, 0);
	for (size_t i = 0; i < o.len; i += 7) {
		size_t len = o.len - i < 7 ? o.len - i : 7;

		n += mg_http_chunk_header(enc + n, len);
		memcpy(enc + n, o.data + i, len);
		n += len;
		memcpy(enc + n, MG_HTTP_CHUNK_CRLF, 2);
		n += 2;
	}
	memcpy(enc + n, MG_HTTP_CHUNK_LAST, 5);
	n += 5;
	static struct dec_out o2;

	decode_split(enc, n, NULL, 0, &o2);
	assert_int_equal(o2.rc, 0);
	assert_true(o2.done);
	assert_int_equal(o2.consumed, n);
	assert_int_equal(o2.len, o.len);
	assert_memory_equal(o2.data, o.data, o.len);
}

/* ---- Status responses ---- */

/* Parses the response in <out>[0..<n>) with our own parser and the body
 * with jansson; checks the framing and returns the Status object. */
static json_t *check_status_resp(const char *out, size_t n, int code, bool keep_alive)
{
	static struct mg_http_resp r;
	struct mg_http_err err = {0};
	json_error_t jerr;
	ssize_t head = mg_http_parse_resp(&r, out, n, NULL, &err);
	json_t *j;

	if (head <= 0)
		fail_msg("status response unparsable: %s at %zu", err.reason, err.pos);
	assert_int_equal(r.status, code);
	assert_int_equal(r.body, MG_HTTP_BODY_LENGTH);
	assert_int_equal(r.content_length, n - (size_t)head);
	assert_int_equal(r.keep_alive, keep_alive);
	assert_int_equal(mg_http_header(r.headers, r.n_headers, MG_STR("Connection")).ptr != NULL,
			 !keep_alive);
	assert_slice(r.content_type, "application/json");
	j = json_loadb(out + head, n - (size_t)head, 0, &jerr);
	if (!j)
		fail_msg("body is not JSON: %s: %.*s", jerr.text, (int)(n - head), out + head);
	assert_string_equal(json_string_value(json_object_get(j, "kind")), "Status");
	assert_string_equal(json_string_value(json_object_get(j, "apiVersion")), "v1");
	assert_true(json_is_object(json_object_get(j, "metadata")));
	assert_int_equal(json_integer_value(json_object_get(j, "code")), code);
	return j;
}

static void test_status_json_escaping(void **state)
{
	const char *msg = "bad \"header\" \\ here\n\ttab \x01\x1f caf\xc3\xa9 \xe2\x82\xac "
			  "\xf0\x9f\x98\x80 bad:\xff\xc3(\xed\xa0\x80 end";
	const char *want = "bad \"header\" \\ here\n\ttab \x01\x1f caf\xc3\xa9 \xe2\x82\xac "
			   "\xf0\x9f\x98\x80 bad:\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd"
			   "\xef\xbf\xbd end";
	char out[2048];
	size_t n;
	json_t *j;

	(void)state;
	n = mg_http_status_json(out, sizeof(out), 400, NULL, msg, false);
	assert_true(n < sizeof(out));
	assert_int_equal(strlen(out), n);
	assert_true(!strncmp(out, "HTTP/1.1 400 Bad Request\r\n", 26));
	/* Control characters are \u escapes, never raw. */
	assert_non_null(strstr(out, "\\u0001\\u001f"));
	j = check_status_resp(out, n, 400, false);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "Failure");
	assert_string_equal(json_string_value(json_object_get(j, "reason")), "BadRequest");
	assert_string_equal(json_string_value(json_object_get(j, "message")), want);
	json_decref(j);

	n = mg_http_status_json(out, sizeof(out), 403, NULL, "", true);
	j = check_status_resp(out, n, 403, true);
	assert_string_equal(json_string_value(json_object_get(j, "reason")), "Forbidden");
	assert_string_equal(json_string_value(json_object_get(j, "message")), "");
	json_decref(j);

	n = mg_http_status_json(out, sizeof(out), 410, "Expired", NULL, false);
	j = check_status_resp(out, n, 410, false);
	assert_string_equal(json_string_value(json_object_get(j, "reason")), "Expired");
	json_decref(j);

	/* Out-of-range codes become 500; no reason below 400. */
	n = mg_http_status_json(out, sizeof(out), 42, NULL, "x", false);
	json_decref(check_status_resp(out, n, 500, false));
	/* Nor can a code whose responses have no body carry a Status. */
	n = mg_http_status_json(out, sizeof(out), 101, NULL, "x", false);
	json_decref(check_status_resp(out, n, 500, false));
	n = mg_http_status_json(out, sizeof(out), 304, NULL, "x", false);
	json_decref(check_status_resp(out, n, 500, false));
	n = mg_http_status_json(out, sizeof(out), 200, NULL, "ok", true);
	j = check_status_resp(out, n, 200, true);
	assert_null(json_object_get(j, "reason"));
	assert_string_equal(json_string_value(json_object_get(j, "status")), "Success");
	json_decref(j);
}

static void test_status_json_reasons(void **state)
{
	static const struct {
		int code;
		const char *reason;
	} cases[] = {
		{400, "BadRequest"},
		{401, "Unauthorized"},
		{403, "Forbidden"},
		{404, "NotFound"},
		{405, "MethodNotAllowed"},
		{409, "Conflict"},
		{413, "RequestEntityTooLarge"},
		{414, "BadRequest"},
		{415, "UnsupportedMediaType"},
		{422, "Invalid"},
		{429, "TooManyRequests"},
		{431, "BadRequest"},
		{500, "InternalError"},
		{501, "BadRequest"},
		{502, "InternalError"},
		{503, "ServiceUnavailable"},
		{504, "Timeout"},
		{505, "InternalError"},
	};
	char out[1024];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = mg_http_status_json(out, sizeof(out), cases[i].code, NULL, "m", false);
		json_t *j = check_status_resp(out, n, cases[i].code, false);

		assert_string_equal(mg_http_k8s_reason(cases[i].code), cases[i].reason);
		assert_string_equal(json_string_value(json_object_get(j, "reason")),
				    cases[i].reason);
		json_decref(j);
	}
	assert_string_equal(mg_http_k8s_reason(200), "");
}

static void test_status_json_truncation(void **state)
{
	char full[1024], small[64];
	size_t n, m;

	(void)state;
	n = mg_http_status_json(full, sizeof(full), 429, NULL, "slow \"down\"", false);
	assert_true(n > sizeof(small));
	memset(small, 'Z', sizeof(small));
	m = mg_http_status_json(small, sizeof(small), 429, NULL, "slow \"down\"", false);
	assert_int_equal(m, n);
	assert_int_equal(small[sizeof(small) - 1], '\0');
	assert_memory_equal(small, full, sizeof(small) - 1);
	/* Exactly enough room: complete and terminated. */
	char *exact = malloc(n + 1);

	assert_non_null(exact);
	assert_int_equal(mg_http_status_json(exact, n + 1, 429, NULL, "slow \"down\"", false), n);
	assert_memory_equal(exact, full, n + 1);
	free(exact);
	assert_int_equal(mg_http_status_json(NULL, 0, 429, NULL, "slow \"down\"", false), n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_req_get_query),
		cmocka_unit_test(test_req_post_content_length),
		cmocka_unit_test(test_req_chunked),
		cmocka_unit_test(test_req_keep_alive_rules),
		cmocka_unit_test(test_req_upgrade_websocket),
		cmocka_unit_test(test_req_http10_and_misc),
		cmocka_unit_test(test_req_rejects),
		cmocka_unit_test(test_req_error_positions),
		cmocka_unit_test(test_limits_target),
		cmocka_unit_test(test_limits_head_size),
		cmocka_unit_test(test_limits_head_size_default),
		cmocka_unit_test(test_limits_header_count),
		cmocka_unit_test(test_req_byte_by_byte),
		cmocka_unit_test(test_req_prefix_errors_stable),
		cmocka_unit_test(test_resp_content_length),
		cmocka_unit_test(test_resp_chunked_gzip),
		cmocka_unit_test(test_resp_status_kinds),
		cmocka_unit_test(test_resp_rejects),
		cmocka_unit_test(test_resp_limits_and_incremental),
		cmocka_unit_test(test_header_helpers),
		cmocka_unit_test(test_content_length),
		cmocka_unit_test(test_chunked_every_split),
		cmocka_unit_test(test_chunked_streams_large_chunk),
		cmocka_unit_test(test_chunked_done_and_error_are_sticky),
		cmocka_unit_test(test_chunked_rejects),
		cmocka_unit_test(test_chunked_limits),
		cmocka_unit_test(test_chunk_header_roundtrip),
		cmocka_unit_test(test_status_json_escaping),
		cmocka_unit_test(test_status_json_reasons),
		cmocka_unit_test(test_status_json_truncation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
