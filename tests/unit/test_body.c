/*
 * body: gzip bodies (round trip, corrupt input), text and watch bodies,
 * Content-Type classification and the protobuf envelope.
 */
#include "../../userspace/mask/body.c"
#include "mask_helpers.h"

/* ---- gzip bodies ---- */

static size_t gz(const char *in, size_t n, unsigned char *out, size_t cap)
{
	z_stream z = {0};

	assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	n = z.total_out;
	deflateEnd(&z);
	return n;
}

static char *gunzip(const unsigned char *in, size_t n, size_t *outlen)
{
	z_stream z = {0};
	size_t cap = 1 << 20;
	char *out = malloc(cap);

	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = (Bytef *)out;
	z.avail_out = (uInt)cap - 1;
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	*outlen = z.total_out;
	out[*outlen] = 0;
	inflateEnd(&z);
	return out;
}

static void test_gzip_roundtrip(void **state)
{
	unsigned char z[8192];
	size_t zn = gz(secret_doc, strlen(secret_doc), z, sizeof(z)), plainlen;
	struct mg_mask_body_opts o = {.kind = MG_MASK_KIND_JSON, .gzip = true};

	(void)state;
	/* every chunk size from 1 byte to the whole body */
	for (size_t step = 1; step <= zn; step = step < 16 ? step + 1 : step * 2) {
		struct sbuf b = {0};
		struct mg_mask_sink s = {sbuf_write, &b};
		struct mg_mask_body *body = mg_mask_body_new(NULL, &o);
		char *plainout;

		for (size_t off = 0; off < zn; off += step)
			assert_int_equal(mg_mask_body_feed(body, (const char *)z + off,
							   off + step > zn ? zn - off : step, &s),
					 0);
		assert_int_equal(mg_mask_body_finish(body, &s), 0);
		plainout = gunzip((const unsigned char *)b.p, b.len, &plainlen);
		assert_absent(plainout, "aHVudGVyMg");
		assert_present(plainout, "\"password\":\"" MG_MASK_DATA_MARKER "\"");
		assert_true(valid_json(plainout, plainlen, false));
		assert_int_equal(mg_mask_body_stats(body)->secret_fields, 3);
		assert_int_equal(mg_mask_body_stats(body)->bytes_in, zn);
		free(plainout);
		mg_mask_body_free(body);
		sbuf_reset(&b);
	}
}

static void test_gzip_bad(void **state)
{
	unsigned char z[8192];
	size_t zn = gz(secret_doc, strlen(secret_doc), z, sizeof(z));
	struct mg_mask_body_opts o = {.kind = MG_MASK_KIND_JSON, .gzip = true};
	struct sbuf b = {0};
	struct mg_mask_sink s = {sbuf_write, &b};
	struct mg_mask_body *body;

	(void)state;
	/* truncated */
	body = mg_mask_body_new(NULL, &o);
	assert_int_equal(mg_mask_body_feed(body, (const char *)z, zn - 4, &s), 0);
	assert_int_equal(mg_mask_body_finish(body, &s), -EINVAL);
	assert_non_null(mg_mask_body_error(body)->reason);
	mg_mask_body_free(body);
	sbuf_reset(&b);
	/* not gzip */
	body = mg_mask_body_new(NULL, &o);
	assert_int_equal(mg_mask_body_feed(body, secret_doc, 30, &s), -EINVAL);
	mg_mask_body_free(body);
	sbuf_reset(&b);
	/* gzip of malformed JSON */
	zn = gz("{\"kind\":\"Secret\",", 17, z, sizeof(z));
	body = mg_mask_body_new(NULL, &o);
	assert_int_equal(mg_mask_body_feed(body, (const char *)z, zn, &s), 0);
	assert_int_equal(mg_mask_body_finish(body, &s), -EINVAL);
	mg_mask_body_free(body);
	sbuf_reset(&b);
}

static void test_body_text_and_watch(void **state)
{
	struct mg_mask_body_opts ot = {.kind = MG_MASK_KIND_TEXT};
	struct mg_mask_body_opts ow = {.kind = MG_MASK_KIND_JSON_STREAM,
				       .resource = MG_STR("secrets")};
	struct sbuf b = {0};
	struct mg_mask_sink s = {sbuf_write, &b};
	struct mg_mask_body *body = mg_mask_body_new(NULL, &ot);
	const char *w = "{\"type\":\"ADDED\",\"object\":{\"data\":{\"a\":\"c2VjcmV0\"}}}\n";

	(void)state;
	assert_int_equal(mg_mask_body_feed(body, "password=x\n", 11, &s), 0);
	assert_int_equal(mg_mask_body_finish(body, &s), 0);
	assert_string_equal(b.p, "password=***MASKED:generic-password***\n");
	mg_mask_body_free(body);
	sbuf_reset(&b);
	body = mg_mask_body_new(NULL, &ow);
	assert_int_equal(mg_mask_body_feed(body, w, strlen(w), &s), 0);
	assert_int_equal(mg_mask_body_feed(body, w, strlen(w), &s), 0);
	assert_int_equal(mg_mask_body_finish(body, &s), 0);
	assert_absent(b.p, "c2VjcmV0");
	assert_int_equal(mg_mask_body_stats(body)->secret_fields, 2);
	mg_mask_body_free(body);
	sbuf_reset(&b);
}

/* ---- helpers for the proxy ---- */

static void test_content_type_and_protobuf(void **state)
{
	(void)state;
	assert_int_equal(mg_mask_content_type(MG_STR("application/json")), MG_MASK_CT_JSON);
	assert_int_equal(mg_mask_content_type(MG_STR("Application/JSON; charset=utf-8")),
			 MG_MASK_CT_JSON);
	assert_int_equal(
		mg_mask_content_type(MG_STR("application/json;as=Table;v=v1;g=meta.k8s.io")),
		MG_MASK_CT_JSON);
	assert_int_equal(mg_mask_content_type(MG_STR("application/jwk-set+json")), MG_MASK_CT_JSON);
	assert_int_equal(mg_mask_content_type(MG_STR("text/plain")), MG_MASK_CT_TEXT);
	assert_int_equal(mg_mask_content_type(MG_STR("application/vnd.kubernetes.protobuf;"
						     "stream=watch")),
			 MG_MASK_CT_PROTOBUF);
	assert_int_equal(mg_mask_content_type(MG_STR("application/yaml")), MG_MASK_CT_REFUSE);
	assert_int_equal(mg_mask_content_type(MG_STR("application/cbor")), MG_MASK_CT_REFUSE);
	assert_int_equal(mg_mask_content_type(MG_STR("")), MG_MASK_CT_REFUSE);
	assert_true(mg_mask_is_protobuf("k8s\0\x0a\x02v1", 8));
	assert_false(mg_mask_is_protobuf("k8s", 3));
	assert_false(mg_mask_is_protobuf("{\"kind\"", 7));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gzip_roundtrip),
		cmocka_unit_test(test_gzip_bad),
		cmocka_unit_test(test_body_text_and_watch),
		cmocka_unit_test(test_content_type_and_protobuf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
