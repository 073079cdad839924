/*
 * tunmask: server-to-client WebSocket and SPDY frames are re-framed with
 * their data masked, at every split point of the input; control frames
 * pass; malformed shapes are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../userspace/tunmask.c"

#define KEY "AKIAQ7PLANTED1ZZQXWY"

/* A server WebSocket binary frame for <channel> carrying <s>. */
static size_t ws_frame(unsigned char *out, unsigned channel, const char *s)
{
	size_t n = strlen(s) + 1, o = 0;

	out[o++] = 0x82;
	out[o++] = (unsigned char)n;
	out[o++] = (unsigned char)channel;
	memcpy(out + o, s, n - 1);
	return o + n - 1;
}

/* Parses WebSocket frames in <b>, appending channel-<want> payloads to
 * <text>; returns the number of control frames seen. */
static int ws_collect(const struct mg_buf *b, unsigned want, char *text, size_t cap)
{
	const unsigned char *p = (const unsigned char *)mg_buf_head(b);
	size_t len = mg_buf_size(b), i = 0, tl = strlen(text);
	int controls = 0;

	while (i < len) {
		uint8_t op = p[i] & 0x0f;
		uint64_t n = p[i + 1] & 0x7f;
		size_t h = 2;

		if (n == 126) {
			n = ((uint64_t)p[i + 2] << 8) | p[i + 3];
			h = 4;
		}
		assert_true(i + h + n <= len);
		if (op >= 8) {
			controls++;
		} else {
			assert_int_equal(op, 2);
			if (p[i + h] == want) {
				assert_true(tl + n < cap);
				memcpy(text + tl, p + i + h + 1, n - 1);
				tl += n - 1;
				text[tl] = '\0';
			}
		}
		i += h + n;
	}
	return controls;
}

static void test_websocket_every_split(void **state)
{
	unsigned char in[512];
	size_t n = 0;

	(void)state;
	n += ws_frame(in + n, 1, "hello key=" KEY);
	n += ws_frame(in + n, 2, "err line\n");
	n += ws_frame(in + n, 1, " bye\n");
	in[n++] = 0x88; /* close */
	in[n++] = 0x02;
	in[n++] = 0x03;
	in[n++] = 0xe8;

	for (size_t split = 0; split <= n; split++) {
		struct mg_tunmask *t = mg_tunmask_new(MG_TUNMASK_WEBSOCKET, NULL);
		struct mg_buf out;
		char text[1024] = "";
		ssize_t a, b;

		mg_buf_init(&out, 1 << 20);
		a = mg_tunmask_feed(t, (const char *)in, split, &out);
		assert_int_equal(a, (ssize_t)split);
		b = mg_tunmask_feed(t, (const char *)in + split, n - split, &out);
		assert_int_equal(b, (ssize_t)(n - split));
		assert_int_equal(ws_collect(&out, 1, text, sizeof(text)), 1);
		assert_null(strstr(text, KEY));
		assert_non_null(strstr(text, "hello key="));
		assert_non_null(strstr(text, "MASKED"));
		assert_non_null(strstr(text, " bye"));
		text[0] = '\0';
		ws_collect(&out, 2, text, sizeof(text));
		assert_string_equal(text, "err line\n");
		mg_buf_free(&out);
		mg_tunmask_free(t);
	}
}

static void test_websocket_refusals(void **state)
{
	static const unsigned char bad[][4] = {
		{ 0x81, 0x02, 0x01, 'x' },	/* text data frame */
		{ 0xc2, 0x02, 0x01, 'x' },	/* RSV1 (compression) */
		{ 0x83, 0x02, 0x01, 'x' },	/* reserved opcode */
		{ 0x82, 0x82, 0x01, 'x' },	/* masked server frame */
		{ 0x09, 0x02, 0x01, 'x' },	/* fragmented control frame */
		{ 0x82, 0x02, 0x09, 'x' },	/* channel out of range */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mg_tunmask *t = mg_tunmask_new(MG_TUNMASK_WEBSOCKET, NULL);
		struct mg_buf out;

		mg_buf_init(&out, 1 << 20);
		if (mg_tunmask_feed(t, (const char *)bad[i], 4, &out) >= 0)
			fail_msg("case %zu accepted", i);
		mg_buf_free(&out);
		mg_tunmask_free(t);
	}
}

static size_t spdy_data(unsigned char *out, uint32_t sid, bool fin, const char *s)
{
	size_t n = strlen(s);

	out[0] = (unsigned char)(sid >> 24) & 0x7f;
	out[1] = (unsigned char)(sid >> 16);
	out[2] = (unsigned char)(sid >> 8);
	out[3] = (unsigned char)sid;
	out[4] = fin ? 1 : 0;
	out[5] = (unsigned char)(n >> 16);
	out[6] = (unsigned char)(n >> 8);
	out[7] = (unsigned char)n;
	memcpy(out + 8, s, n);
	return 8 + n;
}

static void test_spdy_every_split(void **state)
{
	unsigned char in[512];
	size_t n = 0;

	(void)state;
	/* a PING control frame, then stdout (stream 3) in two frames with a
	 * key split across them, the second with FIN */
	memcpy(in, "\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01", 12);
	n = 12;
	n += spdy_data(in + n, 3, false, "out AKIAQ7PLAN");
	n += spdy_data(in + n, 3, true, "TED1ZZQXWY end\n");

	for (size_t split = 0; split <= n; split++) {
		struct mg_tunmask *t = mg_tunmask_new(MG_TUNMASK_SPDY, NULL);
		const unsigned char *p;
		struct mg_buf out;
		char text[512] = "";
		size_t i = 0, tl = 0;
		bool fin = false;

		mg_buf_init(&out, 1 << 20);
		assert_int_equal(mg_tunmask_feed(t, (const char *)in, split, &out), (ssize_t)split);
		assert_int_equal(mg_tunmask_feed(t, (const char *)in + split, n - split, &out),
				 (ssize_t)(n - split));
		p = (const unsigned char *)mg_buf_head(&out);
		assert_memory_equal(p, in, 12); /* the control frame, unchanged */
		for (i = 12; i < mg_buf_size(&out);) {
			size_t len = ((size_t)p[i + 5] << 16) | ((size_t)p[i + 6] << 8) | p[i + 7];

			assert_int_equal(p[i + 3], 3);
			assert_false(fin); /* FIN only on the last frame */
			fin = p[i + 4] & 1;
			memcpy(text + tl, p + i + 8, len);
			tl += len;
			i += 8 + len;
		}
		text[tl] = '\0';
		assert_true(fin);
		assert_null(strstr(text, "PLANTED1"));
		assert_non_null(strstr(text, "out "));
		assert_non_null(strstr(text, " end\n"));
		mg_buf_free(&out);
		mg_tunmask_free(t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_websocket_every_split),
		cmocka_unit_test(test_websocket_refusals),
		cmocka_unit_test(test_spdy_every_split),
	};

	return cmocka_run_group_tests_name("tunmask", tests, NULL, NULL);
}
