/*
 * sigv4: the signer against the published AWS SigV4 test suite, both in
 * header mode and in presign (query) mode, the presigned query's parameter
 * order, escaping, timestamps, and the strict STS XML reader (real response
 * shapes, every rejection, every truncation point, no secret left behind).
 *
 * Expected values come from the aws-sig-v4-test-suite as vendored by
 * awslabs/aws-c-auth (tests/aws-signing-test-suite/v4/<case>/, files
 * header-canonical-request.txt, header-string-to-sign.txt,
 * header-signature.txt, header-signed-request.txt, query-*.txt), commit
 * 495329c2433034bd8fd53fc6ba9e0202d3fac876. All cases use the suite's
 * context: AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, region
 * us-east-1, service "service", 2015-08-30T12:36:00Z, expiry 3600 s.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../userspace/net/sigv4.c"

#define SUITE_TIME  ((time_t)1440938160) /* 2015-08-30T12:36:00Z */
#define EMPTY_SHA   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SUITE_SCOPE "20150830/us-east-1/service/aws4_request"
#define SUITE_CRED  "AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request"

/* The suite's STS session token (post-sts-header-before/context.json). */
#define STS_TOKEN                                                                                  \
	"AQoDYXdzEPT//////////"                                                                    \
	"wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxf"                     \
	"pSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0K"  \
	"PkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZ"  \
	"bqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
#define STS_TOKEN_ESC                                                                              \
	"AQoDYXdzEPT%2F%2F%2F%2F%2F%2F%2F%2F%2F%"                                                  \
	"2FwEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWs"                                      \
	"KWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI%2FqkPpKPi%2FkMcGdQrmGdeehM4IC1NtBmUpp" \
	"2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d%2Bxo0rKwT" \
	"38xVqr7ZD0u0iPPkUL64lIZbqBAz%2BscqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2I"  \
	"CCR%2FoLxBA%3D%3D"

static const struct mg_sigv4_creds suite_creds = {
	.access_key_id = "AKIDEXAMPLE",
	.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
	.session_token = NULL,
};

static struct mg_sigv4_req suite_req(const char *method, const char *path)
{
	return (struct mg_sigv4_req){
		.method = method,
		.host = "example.amazonaws.com",
		.path = path,
		.normalize_path = true,
		.region = "us-east-1",
		.service = "service",
		.when = SUITE_TIME,
	};
}

/* Signs <r> and compares each published artefact that is not NULL. */
static void check(const struct mg_sigv4_req *r, const struct mg_sigv4_creds *c, const char *creq,
		  const char *sts, const char *sig, const char *authz)
{
	struct mg_sigv4_signed s;

	assert_int_equal(mg_sigv4_sign(r, c, &s), 0);
	assert_string_equal(s.amz_date, "20150830T123600Z");
	if (creq)
		assert_string_equal(s.canonical_request, creq);
	if (sts)
		assert_string_equal(s.string_to_sign, sts);
	assert_string_equal(s.signature, sig);
	if (authz)
		assert_string_equal(s.authorization, authz);
	if (r->expires)
		assert_null(s.authorization);
	mg_sigv4_signed_free(&s);
}

#define AUTHZ(signed_headers, sig)                                                                 \
	"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SUITE_SCOPE ", SignedHeaders=" signed_headers   \
	", Signature=" sig

/* ---- header mode ---- */

static void test_get_vanilla(void **state)
{
	struct mg_sigv4_req r = suite_req("GET", "/");

	(void)state;
	check(&r, &suite_creds,
	      "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
	      "host;x-amz-date\n" EMPTY_SHA,
	      "AWS4-HMAC-SHA256\n20150830T123600Z\n" SUITE_SCOPE
	      "\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
	      "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
	      AUTHZ("host;x-amz-date",
		    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"));
}

static void test_get_vanilla_query_order_key_case(void **state)
{
	const struct mg_sigv4_kv q[] = {{"Param2", "value2"}, {"Param1", "value1"}};
	struct mg_sigv4_req r = suite_req("GET", "/");
	struct mg_sigv4_signed s;

	(void)state;
	r.query = q;
	r.n_query = 2;
	check(&r, &suite_creds,
	      "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\n"
	      "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA,
	      "AWS4-HMAC-SHA256\n20150830T123600Z\n" SUITE_SCOPE
	      "\n816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
	      "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500", NULL);
	/* Header mode sends the caller's query as given, not sorted. */
	assert_int_equal(mg_sigv4_sign(&r, &suite_creds, &s), 0);
	assert_string_equal(s.query, "Param2=value2&Param1=value1");
	mg_sigv4_signed_free(&s);
}

static void test_post_x_www_form_urlencoded(void **state)
{
	const struct mg_sigv4_kv h[] = {{"Content-Type", "application/x-www-form-urlencoded"},
					{"Content-Length", "13"}};
	struct mg_sigv4_req r = suite_req("POST", "/");

	(void)state;
	r.headers = h;
	r.n_headers = 2;
	r.body = "Param1=value1";
	r.body_len = 13;
	r.sign_content_sha256 = true; /* the case's "sign_body": true */
	check(&r, &suite_creds,
	      "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded\n"
	      "host:example.amazonaws.com\nx-amz-content-sha256:"
	      "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\n"
	      "x-amz-date:20150830T123600Z\n\n"
	      "content-length;content-type;host;x-amz-content-sha256;x-amz-date\n"
	      "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
	      "AWS4-HMAC-SHA256\n20150830T123600Z\n" SUITE_SCOPE
	      "\nb1edd1d03544c25390e32085d55b57acc9a3961bb59415ff86c45c3d89d16cfb",
	      "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
	      AUTHZ("content-length;content-type;host;x-amz-content-sha256;x-amz-date",
		    "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"));
}

static void test_get_utf8(void **state)
{
	struct mg_sigv4_req r = suite_req("GET", "/\xe1\x88\xb4");

	(void)state;
	check(&r, &suite_creds,
	      "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
	      "host;x-amz-date\n" EMPTY_SHA,
	      "AWS4-HMAC-SHA256\n20150830T123600Z\n" SUITE_SCOPE
	      "\n2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
	      "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85", NULL);
}

static void test_get_space(void **state)
{
	struct mg_sigv4_req r = suite_req("GET", "/example space/");
	const char *creq = "GET\n/example%20space/\n\nhost:example.amazonaws.com\n"
			   "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA;
	const char *sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n" SUITE_SCOPE
			  "\n63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86";
	const char *sig = "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741";

	(void)state;
	check(&r, &suite_creds, creq, sts, sig, NULL); /* get-space-normalized */
	r.normalize_path = false;
	check(&r, &suite_creds, creq, sts, sig, NULL); /* get-space-unnormalized */
}

/* The normalize-path cases: each resolves to the canonical URI shown. */
static void test_normalize_path(void **state)
{
	static const struct {
		const char *path;
		bool normalize;
		const char *uri;
		const char *sig;
	} cases[] = {
		/* get-slash-dot-slash-normalized */
		{"/./", true, "/",
		 "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
		/* get-relative-normalized */
		{"/example/..", true, "/",
		 "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
		/* get-relative-relative-normalized */
		{"/example1/example2/../..", true, "/",
		 "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
		/* get-slash-pointless-dot-normalized */
		{"/./example", true, "/example",
		 "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5"},
		/* get-slashes-normalized */
		{"//example//", true, "/example/",
		 "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"},
		/* get-slashes-unnormalized */
		{"//example//", false, "//example//",
		 "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct mg_sigv4_req r = suite_req("GET", cases[i].path);
		char creq[512];

		r.normalize_path = cases[i].normalize;
		snprintf(creq, sizeof(creq),
			 "GET\n%s\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
			 "host;x-amz-date\n" EMPTY_SHA,
			 cases[i].uri);
		check(&r, &suite_creds, creq, NULL, cases[i].sig, NULL);
	}
}

/* Our own normalisation edge cases (RFC 3986 §5.2.4 plus "//" merging). */
static void test_normalize_path_more(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"", "/"},	    {"/", "/"},		 {"/a/b/..", "/a/"},
		{"/a/./b", "/a/b"}, {"/..", "/"},	 {"/../a", "/a"},
		{"a/b", "/a/b"},    {"/a/b/.", "/a/b/"}, {"/a//b///", "/a/b/"},
		{"/a%b", "/a%25b"}, {"/a+b", "/a%2Bb"},	 {"/~-_.", "/~-_."},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct sb b = {0};

		sb_canonical_uri(&b, cases[i].in, true);
		assert_false(b.oom);
		assert_string_equal(b.p, cases[i].out);
		sb_wipe(&b);
	}
}

static void test_session_token_header(void **state)
{
	struct mg_sigv4_creds c = suite_creds;
	struct mg_sigv4_req r = suite_req("GET", "/");

	(void)state;
	/* get-vanilla-with-session-token */
	c.session_token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
	check(&r, &c,
	      "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n"
	      "x-amz-security-token:"
	      "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
	      "\n\nhost;x-amz-date;x-amz-security-token\n" EMPTY_SHA,
	      "AWS4-HMAC-SHA256\n20150830T123600Z\n" SUITE_SCOPE
	      "\n067b36aa60031588cea4a4cde1f21215227a047690c72247f1d70b32fbbfad2b",
	      "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
	      AUTHZ("host;x-amz-date;x-amz-security-token",
		    "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"));

	/* post-sts-header-before (the old suite's post-sts-token) */
	c.session_token = STS_TOKEN;
	r = suite_req("POST", "/");
	check(&r, &c,
	      "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n"
	      "x-amz-security-token:" STS_TOKEN
	      "\n\nhost;x-amz-date;x-amz-security-token\n" EMPTY_SHA,
	      "AWS4-HMAC-SHA256\n20150830T123600Z\n" SUITE_SCOPE
	      "\nc237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6",
	      "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
	      AUTHZ("host;x-amz-date;x-amz-security-token",
		    "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"));
}

static void test_header_values(void **state)
{
	const struct mg_sigv4_kv trim[] = {{"My-Header1", " value1"},
					   {"My-Header2", " \"a   b   c\""}};
	const struct mg_sigv4_kv dup[] = {
		{"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}};
	const struct mg_sigv4_kv order[] = {{"My-Header1", "value4"},
					    {"My-Header1", "value1"},
					    {"My-Header1", "value3"},
					    {"My-Header1", "value2"}};
	const struct mg_sigv4_kv multi[] = {{"My-Header1", "value1\n  value2\n     value3"}};
	struct mg_sigv4_req r = suite_req("GET", "/");

	(void)state;
	/* get-header-value-trim */
	r.headers = trim;
	r.n_headers = 2;
	check(&r, &suite_creds,
	      "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\n"
	      "x-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n" EMPTY_SHA,
	      NULL, "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736", NULL);
	/* get-header-key-duplicate */
	r.headers = dup;
	r.n_headers = 3;
	check(&r, &suite_creds,
	      "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\n"
	      "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n" EMPTY_SHA,
	      NULL, "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea", NULL);
	/* get-header-value-order */
	r.headers = order;
	r.n_headers = 4;
	check(&r, &suite_creds, NULL, NULL,
	      "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01", NULL);
	/* get-header-value-multiline */
	r.headers = multi;
	r.n_headers = 1;
	check(&r, &suite_creds,
	      "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1 value2 value3\n"
	      "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n" EMPTY_SHA,
	      NULL, "cfd34249e4b1c8d6b91ef74165d41a32e5fab3306300901bb65a51a73575eefd", NULL);
}

static void test_query_escaping(void **state)
{
	const struct mg_sigv4_kv utf8[] = {{"\xe1\x88\xb4", "bar"}};
	const struct mg_sigv4_kv enc[] = {
		{"Param-3", "Value3"}, {"Param", "Value2"}, {"\xe1\x88\xb4", "Value1"}};
	const char *u = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	const struct mg_sigv4_kv unres[] = {{u, u}};
	struct mg_sigv4_req r = suite_req("GET", "/");

	(void)state;
	/* get-vanilla-utf8-query */
	r.query = utf8;
	r.n_query = 1;
	check(&r, &suite_creds,
	      "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
	      "host;x-amz-date\n" EMPTY_SHA,
	      NULL, "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04", NULL);
	/* get-vanilla-query-order-encoded */
	r.query = enc;
	r.n_query = 3;
	check(&r, &suite_creds,
	      "GET\n/\n%E1%88%B4=Value1&Param=Value2&Param-3=Value3\nhost:example.amazonaws.com\n"
	      "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA,
	      NULL, "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac", NULL);
	/* get-vanilla-query-unreserved */
	r.query = unres;
	r.n_query = 1;
	check(&r, &suite_creds, NULL, NULL,
	      "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197", NULL);
}

/* ---- presign (query) mode ---- */

static void test_presign_get_vanilla(void **state)
{
	struct mg_sigv4_req r = suite_req("GET", "/");
	struct mg_sigv4_signed s;

	(void)state;
	r.expires = 3600;
	check(&r, &suite_creds,
	      "GET\n/\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" SUITE_CRED
	      "&X-Amz-Date=20150830T123600Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\n"
	      "host:example.amazonaws.com\n\nhost\n" EMPTY_SHA,
	      "AWS4-HMAC-SHA256\n20150830T123600Z\n" SUITE_SCOPE
	      "\nbb7705b4aa3cb8e8f5e1e0b3d4c0b64030797a313c8ceee43e33117cc43eadc5",
	      "e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d", NULL);
	/* The emitted order is botocore's (Expires before SignedHeaders). */
	assert_int_equal(mg_sigv4_sign(&r, &suite_creds, &s), 0);
	assert_string_equal(s.query,
			    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" SUITE_CRED
			    "&X-Amz-Date=20150830T123600Z&X-Amz-Expires=3600"
			    "&X-Amz-SignedHeaders=host&X-Amz-Signature="
			    "e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d");
	assert_string_equal(s.signed_headers, "host");
	mg_sigv4_signed_free(&s);
}

static void test_presign_query_order(void **state)
{
	const struct mg_sigv4_kv q[] = {{"Param2", "value2"}, {"Param1", "value1"}};
	struct mg_sigv4_req r = suite_req("GET", "/");
	struct mg_sigv4_signed s;

	(void)state;
	r.expires = 3600;
	r.query = q;
	r.n_query = 2;
	check(&r, &suite_creds,
	      "GET\n/\nParam1=value1&Param2=value2&X-Amz-Algorithm=AWS4-HMAC-SHA256"
	      "&X-Amz-Credential=" SUITE_CRED
	      "&X-Amz-Date=20150830T123600Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\n"
	      "host:example.amazonaws.com\n\nhost\n" EMPTY_SHA,
	      NULL, "86012e2c9ad4d77369f5d81c11f75158aae4f895a085212cc6d3f923d300bed5", NULL);
	assert_int_equal(mg_sigv4_sign(&r, &suite_creds, &s), 0);
	assert_true(!strncmp(s.query, "Param2=value2&Param1=value1&X-Amz-Algorithm=", 44));
	mg_sigv4_signed_free(&s);
}

static void test_presign_session_token(void **state)
{
	struct mg_sigv4_creds c = suite_creds;
	struct mg_sigv4_req r = suite_req("GET", "/");
	struct mg_sigv4_signed s;

	(void)state;
	r.expires = 3600;
	/* get-vanilla-with-session-token, query variant */
	c.session_token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
	check(&r, &c,
	      "GET\n/\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" SUITE_CRED
	      "&X-Amz-Date=20150830T123600Z&X-Amz-Expires=3600&X-Amz-Security-Token="
	      "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
	      "&X-Amz-SignedHeaders=host\nhost:example.amazonaws.com\n\nhost\n" EMPTY_SHA,
	      NULL, "7ff2b50b376cb4d151970630573d6291dc128cc5c2a12ffb237f73cc53f67b6c", NULL);
	/* post-sts-header-before, query variant: the token needs escaping. */
	c.session_token = STS_TOKEN;
	r = suite_req("POST", "/");
	r.expires = 3600;
	check(&r, &c,
	      "POST\n/\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" SUITE_CRED
	      "&X-Amz-Date=20150830T123600Z&X-Amz-Expires=3600&X-Amz-Security-Token=" STS_TOKEN_ESC
	      "&X-Amz-SignedHeaders=host\nhost:example.amazonaws.com\n\nhost\n" EMPTY_SHA,
	      NULL, "46c2e3c63c1dbe7d39f8ada16fe7f001c1f56c5791441565323677f96308871c", NULL);
	assert_int_equal(mg_sigv4_sign(&r, &c, &s), 0);
	assert_non_null(strstr(s.query,
			       "&X-Amz-SignedHeaders=host&X-Amz-Security-Token=" STS_TOKEN_ESC
			       "&X-Amz-Signature=46c2e3c6"));
	mg_sigv4_signed_free(&s);
}

static void test_presign_post_form(void **state)
{
	const struct mg_sigv4_kv h[] = {{"Content-Type", "application/x-www-form-urlencoded"},
					{"Content-Length", "13"}};
	struct mg_sigv4_req r = suite_req("POST", "/");

	(void)state;
	/* post-x-www-form-urlencoded, query variant */
	r.headers = h;
	r.n_headers = 2;
	r.body = "Param1=value1";
	r.body_len = 13;
	r.expires = 3600;
	check(&r, &suite_creds,
	      "POST\n/\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" SUITE_CRED
	      "&X-Amz-Date=20150830T123600Z&X-Amz-Expires=3600"
	      "&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost\n"
	      "content-length:13\ncontent-type:application/x-www-form-urlencoded\n"
	      "host:example.amazonaws.com\n\ncontent-length;content-type;host\n"
	      "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
	      NULL, "89a40deed0f26f9461242825a082d2222717248abc7ab41f552ad84a94ad46e9", NULL);
}

/* ---- arguments, escaping, time ---- */

static void test_sign_rejects(void **state)
{
	const struct mg_sigv4_kv bad_name[] = {{"Bad Header", "x"}};
	const struct mg_sigv4_kv host[] = {{"Host", "evil"}};
	const struct mg_sigv4_kv date[] = {{"X-Amz-Date", "20000101T000000Z"}};
	const struct mg_sigv4_kv nullv[] = {{"A", NULL}};
	struct mg_sigv4_creds c = suite_creds;
	struct mg_sigv4_req r = suite_req("GET", "/");
	struct mg_sigv4_signed s;

	(void)state;
	r.headers = bad_name;
	r.n_headers = 1;
	assert_int_equal(mg_sigv4_sign(&r, &c, &s), -EINVAL);
	r.headers = host;
	assert_int_equal(mg_sigv4_sign(&r, &c, &s), -EINVAL);
	r.headers = date;
	assert_int_equal(mg_sigv4_sign(&r, &c, &s), -EINVAL);
	r.headers = nullv;
	assert_int_equal(mg_sigv4_sign(&r, &c, &s), -EINVAL);
	r = suite_req("GET", "/");
	r.query = nullv;
	r.n_query = 1;
	assert_int_equal(mg_sigv4_sign(&r, &c, &s), -EINVAL);
	r = suite_req("GET", "/");
	r.region = "";
	assert_int_equal(mg_sigv4_sign(&r, &c, &s), -EINVAL);
	r = suite_req("GET", "/");
	c.secret_access_key = NULL;
	assert_int_equal(mg_sigv4_sign(&r, &c, &s), -EINVAL);
	/* A failed call leaves nothing to free but is safe to free anyway. */
	mg_sigv4_signed_free(&s);
}

/* A different secret, date, region or service gives another signature. */
static void test_sign_inputs_matter(void **state)
{
	struct mg_sigv4_creds c = suite_creds;
	struct mg_sigv4_req r = suite_req("GET", "/");
	struct mg_sigv4_signed a, b;

	(void)state;
	assert_int_equal(mg_sigv4_sign(&r, &c, &a), 0);
	c.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEz";
	assert_int_equal(mg_sigv4_sign(&r, &c, &b), 0);
	assert_string_not_equal(a.signature, b.signature);
	mg_sigv4_signed_free(&b);
	c = suite_creds;
	r.when++;
	assert_int_equal(mg_sigv4_sign(&r, &c, &b), 0);
	assert_string_not_equal(a.signature, b.signature);
	assert_string_equal(b.amz_date, "20150830T123601Z");
	mg_sigv4_signed_free(&b);
	r.when--;
	r.service = "sts";
	assert_int_equal(mg_sigv4_sign(&r, &c, &b), 0);
	assert_string_not_equal(a.signature, b.signature);
	assert_non_null(strstr(b.authorization, "/us-east-1/sts/aws4_request,"));
	mg_sigv4_signed_free(&b);
	mg_sigv4_signed_free(&a);
}

static void test_escape_append(void **state)
{
	char *buf = NULL;
	size_t len = 0;

	(void)state;
	assert_int_equal(mg_sigv4_escape_append(&buf, &len, "a b/c", 5, false), 0);
	assert_string_equal(buf, "a%20b%2Fc");
	assert_int_equal(mg_sigv4_escape_append(&buf, &len, "+=/~\xff", 5, true), 0);
	assert_string_equal(buf, "a%20b%2Fc%2B%3D/~%FF");
	assert_int_equal(len, strlen(buf));
	free(buf);
}

static void test_sha256_hex(void **state)
{
	char hex[65];

	(void)state;
	mg_sigv4_sha256_hex("", 0, hex);
	assert_string_equal(hex, EMPTY_SHA);
	mg_sigv4_sha256_hex("Param1=value1", 13, hex);
	assert_string_equal(hex,
			    "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
}

static void test_parse_time(void **state)
{
	static const struct {
		const char *s;
		time_t t;
	} good[] = {
		{"2015-08-30T12:36:00Z", 1440938160},
		{"2015-08-30T12:36:00.123Z", 1440938160},
		{"2015-08-30T14:36:00+02:00", 1440938160},
		{"2015-08-30T10:06:00-02:30", 1440938160},
		{"2024-02-29T00:00:00Z", 1709164800},
	};
	static const char *const bad[] = {
		"",
		"2015-08-30T12:36:00",
		"2015-08-30 12:36:00Z",
		"2015-08-30T12:36:00z",
		"2015-08-30T12:36:00.Z",
		"2015-08-30T12:36:00ZZ",
		"2015-13-30T12:36:00Z",
		"2015-02-30T12:36:00Z",
		"2023-02-29T00:00:00Z",
		"2015-08-30T24:00:00Z",
		"2015-08-30T12:60:00Z",
		"1969-12-31T23:59:59Z",
		"2015-08-30T12:36:00+0200",
		"2015-08-30T12:36:00+24:00",
		"+015-08-30T12:36:00Z",
	};
	time_t t;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
		assert_int_equal(mg_sigv4_parse_time(mg_str_of(good[i].s), &t), 0);
		assert_int_equal(t, good[i].t);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		assert_int_equal(mg_sigv4_parse_time(mg_str_of(bad[i]), &t), -EINVAL);
}

/* ---- STS XML ---- */

/* The AssumeRole response as STS sends it (shape of the STS API reference
 * sample, without its pretty-printing inside values). */
static const char assume_role_xml[] =
	"<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
	"  <AssumeRoleResult>\n"
	"    <SourceIdentity>0f3c9d62-1a2b-4c5d-8e9f-0123456789ab</SourceIdentity>\n"
	"    <AssumedRoleUser>\n"
	"      <AssumedRoleId>AROA3XFRBF535PLBIFPI4:mcpgate-ai-agent-0</AssumedRoleId>\n"
	"      <Arn>arn:aws:sts::123456789012:assumed-role/mcp-exec/mcpgate-ai-agent-0</Arn>\n"
	"    </AssumedRoleUser>\n"
	"    <Credentials>\n"
	"      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>\n"
	"      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>\n"
	"      <SessionToken>IQoJb3JpZ2luX2VjEO//////////wEaCXVzLWVhc3QtMSJH+abc=</SessionToken>\n"
	"      <Expiration>2019-11-09T13:34:41Z</Expiration>\n"
	"    </Credentials>\n"
	"    <PackedPolicySize>6</PackedPolicySize>\n"
	"  </AssumeRoleResult>\n"
	"  <ResponseMetadata>\n"
	"    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>\n"
	"  </ResponseMetadata>\n"
	"</AssumeRoleResponse>\n";

static const char web_identity_xml[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
	"<AssumeRoleWithWebIdentityResult>"
	"<Audience>sts.amazonaws.com</Audience>"
	"<AssumedRoleUser><AssumedRoleId>AROACLKWSDQRAOEXAMPLE:mcpgate</AssumedRoleId>"
	"<Arn>arn:aws:sts::123456789012:assumed-role/mcpgate-node/mcpgate</Arn></AssumedRoleUser>"
	"<Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/X"
	"</Provider>"
	"<Credentials><SessionToken>FwoGZXIvYXdzE/a+b=c==</SessionToken>"
	"<SecretAccessKey>secret&amp;key</SecretAccessKey>"
	"<Expiration>2024-01-02T04:04:05Z</Expiration>"
	"<AccessKeyId>ASIAWEBIDENTITY00001</AccessKeyId></Credentials>"
	"<SubjectFromWebIdentityToken>system:serviceaccount:mcpgate:mcpgate</"
	"SubjectFromWebIdentityToken>"
	"</AssumeRoleWithWebIdentityResult>"
	"<ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>"
	"</ResponseMetadata></AssumeRoleWithWebIdentityResponse>";

static const char error_xml[] =
	"<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
	"  <Error>\n"
	"    <Type>Sender</Type>\n"
	"    <Code>AccessDenied</Code>\n"
	"    <Message>User: arn:aws:sts::123456789012:assumed-role/node/x is not authorized to "
	"perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/deny-me &amp; "
	"&lt;more&gt; &#233;&#x1F600;</Message>\n"
	"  </Error>\n"
	"  <RequestId>4dbb7d5b-0f9b-4a4a-9f4a-0c5b4d7e2f11</RequestId>\n"
	"</ErrorResponse>\n";

static ssize_t parse(const char *s, size_t n, const char *action, struct mg_sigv4_sts_resp *r,
		     struct mg_sigv4_err *e)
{
	char *b = malloc(n ? n : 1); /* exact size: ASan sees any over-read */
	ssize_t ret;

	assert_non_null(b);
	memcpy(b, s, n);
	ret = mg_sigv4_sts_parse(b, n, action, r, e);
	free(b);
	return ret;
}

static void test_sts_assume_role(void **state)
{
	struct mg_sigv4_sts_resp *r = malloc(sizeof(*r));
	struct mg_sigv4_err e;

	(void)state;
	assert_int_equal(parse(assume_role_xml, strlen(assume_role_xml), "AssumeRole", r, &e),
			 strlen(assume_role_xml));
	assert_int_equal(r->kind, MG_SIGV4_STS_CREDENTIALS);
	assert_string_equal(r->access_key_id, "ASIAIOSFODNN7EXAMPLE");
	assert_string_equal(r->secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
	assert_string_equal(r->session_token,
			    "IQoJb3JpZ2luX2VjEO//////////wEaCXVzLWVhc3QtMSJH+abc=");
	assert_int_equal(r->expiration, 1573306481);
	assert_string_equal(r->assumed_role_arn,
			    "arn:aws:sts::123456789012:assumed-role/mcp-exec/mcpgate-ai-agent-0");
	assert_string_equal(r->source_identity, "0f3c9d62-1a2b-4c5d-8e9f-0123456789ab");
	assert_string_equal(r->request_id, "c6104cbe-af31-11e0-8154-cbc7ccf896c7");
	mg_sigv4_sts_resp_wipe(r);
	assert_string_equal(r->secret_access_key, "");
	assert_string_equal(r->session_token, "");
	/* The same body is not an answer to another action. */
	assert_int_equal(
		parse(assume_role_xml, strlen(assume_role_xml), "AssumeRoleWithWebIdentity", r, &e),
		-1);
	assert_string_equal(e.reason, "unexpected root element");
	free(r);
}

static void test_sts_web_identity(void **state)
{
	struct mg_sigv4_sts_resp *r = malloc(sizeof(*r));
	struct mg_sigv4_err e;

	(void)state;
	assert_int_equal(parse(web_identity_xml, strlen(web_identity_xml),
			       "AssumeRoleWithWebIdentity", r, &e),
			 strlen(web_identity_xml));
	assert_int_equal(r->kind, MG_SIGV4_STS_CREDENTIALS);
	assert_string_equal(r->access_key_id, "ASIAWEBIDENTITY00001");
	assert_string_equal(r->secret_access_key, "secret&key");
	assert_string_equal(r->session_token, "FwoGZXIvYXdzE/a+b=c==");
	assert_int_equal(r->expiration, 1704168245);
	assert_string_equal(r->assumed_role_arn,
			    "arn:aws:sts::123456789012:assumed-role/mcpgate-node/mcpgate");
	assert_string_equal(r->source_identity, "");
	mg_sigv4_sts_resp_wipe(r);
	free(r);
}

static void test_sts_error(void **state)
{
	struct mg_sigv4_sts_resp *r = malloc(sizeof(*r));
	struct mg_sigv4_err e;

	(void)state;
	assert_int_equal(parse(error_xml, strlen(error_xml), "AssumeRole", r, &e),
			 strlen(error_xml));
	assert_int_equal(r->kind, MG_SIGV4_STS_ERROR);
	assert_string_equal(r->error_type, "Sender");
	assert_string_equal(r->error_code, "AccessDenied");
	assert_string_equal(
		r->error_message,
		"User: arn:aws:sts::123456789012:assumed-role/node/x is not authorized "
		"to perform: sts:AssumeRole on resource: "
		"arn:aws:iam::123456789012:role/deny-me & <more> \xc3\xa9\xf0\x9f\x98\x80");
	assert_string_equal(r->request_id, "4dbb7d5b-0f9b-4a4a-9f4a-0c5b4d7e2f11");
	assert_string_equal(r->access_key_id, "");
	/* An error answers any action. */
	assert_int_equal(parse(error_xml, strlen(error_xml), "AssumeRoleWithWebIdentity", r, &e),
			 strlen(error_xml));
	free(r);
}

/* A long message is cut, not refused: the error code must get through. */
static void test_sts_error_long_message(void **state)
{
	struct mg_sigv4_sts_resp *r = malloc(sizeof(*r));
	struct mg_sigv4_err e;
	char *doc = malloc(4096);
	int n;

	(void)state;
	n = snprintf(doc, 4096,
		     "<ErrorResponse><Error><Code>Throttling</Code><Message>%0*d</Message></Error>"
		     "</ErrorResponse>",
		     2000, 7);
	assert_int_equal(parse(doc, (size_t)n, "AssumeRole", r, &e), n);
	assert_string_equal(r->error_code, "Throttling");
	assert_int_equal(strlen(r->error_message), sizeof(r->error_message) - 1);
	free(doc);
	free(r);
}

/* Every proper prefix of a valid document is "need more", never valid or
 * invalid; the only exception is a prefix that already ends the root. */
static void test_sts_truncation(void **state)
{
	struct mg_sigv4_sts_resp *r = malloc(sizeof(*r));
	const char *docs[] = {assume_role_xml, web_identity_xml, error_xml};
	const char *actions[] = {"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRole"};
	struct mg_sigv4_err e;

	(void)state;
	for (size_t d = 0; d < 3; d++) {
		size_t n = strlen(docs[d]);
		const char *end = strrchr(docs[d], '>');

		for (size_t i = 0; i < n; i++) {
			ssize_t ret = parse(docs[d], i, actions[d], r, &e);

			if (i > (size_t)(end - docs[d]))
				assert_int_equal(ret, i);
			else
				assert_int_equal(ret, 0);
		}
	}
	free(r);
}

static void test_sts_rejects(void **state)
{
	static const struct {
		const char *doc;
		const char *reason;
	} cases[] = {
		{"<Foo/>", "unexpected root element"},
		{"<!DOCTYPE x [<!ENTITY a \"b\">]><ErrorResponse/>",
		 "comment, DOCTYPE or CDATA not allowed"},
		{"<ErrorResponse><!-- c --></ErrorResponse>",
		 "comment, DOCTYPE or CDATA not allowed"},
		{"<ErrorResponse><Error><Code><![CDATA[x]]></Code></Error></ErrorResponse>",
		 "comment, DOCTYPE or CDATA not allowed"},
		{"<ErrorResponse><?pi x?></ErrorResponse>", "processing instruction not allowed"},
		{"<ErrorResponse><Error><Code>A&foo;</Code></Error></ErrorResponse>",
		 "unknown entity"},
		{"<ErrorResponse><Error><Code>A & B</Code></Error></ErrorResponse>",
		 "bad entity reference"},
		{"<ErrorResponse><Error><Code>&#0;</Code></Error></ErrorResponse>",
		 "character reference to a forbidden character"},
		{"<ErrorResponse><Error><Code>&#xD800;</Code></Error></ErrorResponse>",
		 "character reference to a forbidden character"},
		{"<ErrorResponse><Error><Code>&#x110000;</Code></Error></ErrorResponse>",
		 "character reference to a forbidden character"},
		{"<ErrorResponse><Error><Code>&#12a;</Code></Error></ErrorResponse>",
		 "bad character reference"},
		{"<ErrorResponse><Error><Code>\xc3\x28</Code></Error></ErrorResponse>",
		 "invalid UTF-8"},
		{"<ErrorResponse><Error><Code>\xc0\xaf</Code></Error></ErrorResponse>",
		 "invalid UTF-8"},
		{"<ErrorResponse><Error><Code>\xed\xa0\x80</Code></Error></ErrorResponse>",
		 "invalid UTF-8"},
		{"<ErrorResponse><Error><Code>\x01</Code></Error></ErrorResponse>",
		 "control character"},
		{"<ErrorResponse><Error><Code>A</Code></Eror></ErrorResponse>",
		 "mismatched end tag"},
		{"<ErrorResponse><Error><Code>A</Code><Code>B</Code></Error></ErrorResponse>",
		 "duplicate element"},
		{"<ErrorResponse><Error>x<Code>A</Code></Error></ErrorResponse>", "mixed content"},
		{"<ErrorResponse><Error><Code>A</Code>x</Error></ErrorResponse>", "mixed content"},
		{"<ErrorResponse><Error><Code>A<B/></Code></Error></ErrorResponse>",
		 "mixed content"},
		{"<ErrorResponse><Error><Code><B/></Code></Error></ErrorResponse>",
		 "element inside a value"},
		{"<ErrorResponse><Error><Code>A</Code></Error></ErrorResponse>x",
		 "text outside the root element"},
		{"x<ErrorResponse/>", "text outside the root element"},
		{"<ErrorResponse/><ErrorResponse/>", "content after the root element"},
		{"<ErrorResponse a=\"1\" a=\"2\"/>", "duplicate attribute"},
		{"<ErrorResponse a=1/>", "unquoted attribute value"},
		{"<ErrorResponse a=\"<\"/>", "'<' in an attribute value"},
		{"<ErrorResponse a=\"1\"b=\"2\"/>", "attribute without preceding space"},
		{"<ErrorResponse a/>", "attribute without value"},
		{"<ErrorResponse/ >", "bad empty-element tag"},
		{"<1ErrorResponse/>", "bad name"},
		{"<ErrorResponse></ErrorResponse >x", "text outside the root element"},
		{"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><ErrorResponse/>",
		 "encoding other than UTF-8"},
		{" <?xml version=\"1.0\"?><ErrorResponse/>", "processing instruction not allowed"},
		{"<ErrorResponse/>", "missing Error/Code"},
		{"<ErrorResponse><Error><Code>  </Code></Error></ErrorResponse>",
		 "missing Error/Code"},
		{"<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>A</AccessKeyId>"
		 "<SecretAccessKey>S</SecretAccessKey><SessionToken>T</SessionToken></Credentials>"
		 "</AssumeRoleResult></AssumeRoleResponse>",
		 "missing credentials field"},
		{"<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>A</AccessKeyId>"
		 "<SecretAccessKey>S</SecretAccessKey><SessionToken>T</SessionToken>"
		 "<Expiration>yesterday</Expiration></Credentials>"
		 "</AssumeRoleResult></AssumeRoleResponse>",
		 "bad Expiration"},
		{"<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>A</AccessKeyId>"
		 "<SecretAccessKey>S</SecretAccessKey><SessionToken>T\n U</SessionToken>"
		 "<Expiration>2019-11-09T13:34:41Z</Expiration></Credentials>"
		 "</AssumeRoleResult></AssumeRoleResponse>",
		 "whitespace inside a credential"},
		/* Credentials outside the Result element are not credentials. */
		{"<AssumeRoleResponse><Credentials><AccessKeyId>A</AccessKeyId>"
		 "<SecretAccessKey>S</SecretAccessKey><SessionToken>T</SessionToken>"
		 "<Expiration>2019-11-09T13:34:41Z</Expiration></Credentials>"
		 "</AssumeRoleResponse>",
		 "missing credentials field"},
		{"<ErrorResponse><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a>",
		 "nesting too deep"},
	};
	struct mg_sigv4_sts_resp *r = malloc(sizeof(*r));
	struct mg_sigv4_err e;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		ssize_t ret = parse(cases[i].doc, strlen(cases[i].doc), "AssumeRole", r, &e);

		if (ret != -1)
			fail_msg("case %zu accepted (%zd): %s", i, ret, cases[i].doc);
		assert_non_null(e.reason);
		if (strcmp(e.reason, cases[i].reason))
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, e.reason, cases[i].reason);
		/* Nothing of a rejected document survives in <r>. */
		assert_string_equal(r->secret_access_key, "");
		assert_string_equal(r->session_token, "");
	}
	free(r);
}

static void test_sts_limits(void **state)
{
	struct mg_sigv4_sts_resp *r = malloc(sizeof(*r));
	size_t cap = MG_SIGV4_MAX_SESSION_TOKEN + 512;
	char *doc = malloc(cap + 512), *tok = malloc(cap);
	struct mg_sigv4_err e;
	int n;

	(void)state;
	/* Exactly the longest token kept is accepted; one more byte is not. */
	for (int extra = 0; extra <= 1; extra++) {
		memset(tok, 'A', MG_SIGV4_MAX_SESSION_TOKEN + extra);
		tok[MG_SIGV4_MAX_SESSION_TOKEN + extra] = '\0';
		n = snprintf(doc, cap + 512,
			     "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
			     "<AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey>"
			     "<SessionToken>%s</SessionToken>"
			     "<Expiration>2019-11-09T13:34:41Z</Expiration></Credentials>"
			     "</AssumeRoleResult></AssumeRoleResponse>",
			     tok);
		if (!extra) {
			assert_int_equal(parse(doc, (size_t)n, "AssumeRole", r, &e), n);
			assert_int_equal(strlen(r->session_token), MG_SIGV4_MAX_SESSION_TOKEN);
		} else {
			assert_int_equal(parse(doc, (size_t)n, "AssumeRole", r, &e), -1);
			assert_string_equal(e.reason, "value too long");
		}
	}
	free(doc);
	free(tok);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_vanilla),
		cmocka_unit_test(test_get_vanilla_query_order_key_case),
		cmocka_unit_test(test_post_x_www_form_urlencoded),
		cmocka_unit_test(test_get_utf8),
		cmocka_unit_test(test_get_space),
		cmocka_unit_test(test_normalize_path),
		cmocka_unit_test(test_normalize_path_more),
		cmocka_unit_test(test_session_token_header),
		cmocka_unit_test(test_header_values),
		cmocka_unit_test(test_query_escaping),
		cmocka_unit_test(test_presign_get_vanilla),
		cmocka_unit_test(test_presign_query_order),
		cmocka_unit_test(test_presign_session_token),
		cmocka_unit_test(test_presign_post_form),
		cmocka_unit_test(test_sign_rejects),
		cmocka_unit_test(test_sign_inputs_matter),
		cmocka_unit_test(test_escape_append),
		cmocka_unit_test(test_sha256_hex),
		cmocka_unit_test(test_parse_time),
		cmocka_unit_test(test_sts_assume_role),
		cmocka_unit_test(test_sts_web_identity),
		cmocka_unit_test(test_sts_error),
		cmocka_unit_test(test_sts_error_long_message),
		cmocka_unit_test(test_sts_truncation),
		cmocka_unit_test(test_sts_rejects),
		cmocka_unit_test(test_sts_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
