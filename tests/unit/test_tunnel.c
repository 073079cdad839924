/*
 * tunnel: server-to-client WebSocket and SPDY frames are re-framed with
 * their data masked, at every split point of the input; control frames
 * pass; malformed shapes are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../userspace/mask/tunnel.c"
#include "cut_cases.h"

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
		struct mg_tunnel *t = mg_tunnel_new(MG_TUNNEL_WEBSOCKET, NULL);
		struct mg_buf out;
		char text[1024] = "";
		ssize_t a, b;

		mg_buf_init(&out, 1 << 20);
		a = mg_tunnel_feed(t, (const char *)in, split, &out);
		assert_int_equal(a, (ssize_t)split);
		b = mg_tunnel_feed(t, (const char *)in + split, n - split, &out);
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
		mg_tunnel_free(t);
	}
}

static void test_websocket_refusals(void **state)
{
	static const unsigned char bad[][4] = {
		{0x81, 0x02, 0x01, 'x'}, /* text data frame */
		{0xc2, 0x02, 0x01, 'x'}, /* RSV1 (compression) */
		{0x83, 0x02, 0x01, 'x'}, /* reserved opcode */
		{0x82, 0x82, 0x01, 'x'}, /* masked server frame */
		{0x09, 0x02, 0x01, 'x'}, /* fragmented control frame */
		{0x82, 0x02, 0x09, 'x'}, /* channel out of range */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mg_tunnel *t = mg_tunnel_new(MG_TUNNEL_WEBSOCKET, NULL);
		struct mg_buf out;

		mg_buf_init(&out, 1 << 20);
		if (mg_tunnel_feed(t, (const char *)bad[i], 4, &out) >= 0)
			fail_msg("case %zu accepted", i);
		mg_buf_free(&out);
		mg_tunnel_free(t);
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
		struct mg_tunnel *t = mg_tunnel_new(MG_TUNNEL_SPDY, NULL);
		const unsigned char *p;
		struct mg_buf out;
		char text[512] = "";
		size_t i = 0, tl = 0;
		bool fin = false;

		mg_buf_init(&out, 1 << 20);
		assert_int_equal(mg_tunnel_feed(t, (const char *)in, split, &out), (ssize_t)split);
		assert_int_equal(mg_tunnel_feed(t, (const char *)in + split, n - split, &out),
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
		mg_tunnel_free(t);
	}
}

/* ---- a detector candidate cut short by the end of the tunnel ---- */

enum { END_WS_CLOSE, END_SPDY_FIN, END_SPDY_RST, END_SPDY_GOAWAY, END_CONN, END_N };

/* Appends to <out> a server frame for channel 1 (WebSocket) or stream 3
 * (SPDY) carrying <s>[0..<n>); <fin> sets SPDY's FIN. */
static size_t tun_data(unsigned char *out, enum mg_tunnel_proto proto, const char *s, size_t n,
		       bool fin)
{
	size_t o = 0;

	if (proto == MG_TUNNEL_WEBSOCKET) {
		out[o++] = 0x82;
		if (n + 1 < 126) {
			out[o++] = (unsigned char)(n + 1);
		} else {
			out[o++] = 126;
			out[o++] = (unsigned char)((n + 1) >> 8);
			out[o++] = (unsigned char)(n + 1);
		}
		out[o++] = 1;
	} else {
		memcpy(out, "\x00\x00\x00\x03", 4);
		out[4] = fin ? 1 : 0;
		out[5] = (unsigned char)(n >> 16);
		out[6] = (unsigned char)(n >> 8);
		out[7] = (unsigned char)n;
		o = 8;
	}
	memcpy(out + o, s, n);
	return o + n;
}

/* Appends the frame that ends the stream the way <end> says (nothing for
 * END_CONN: the caller flushes as the proxy does when the API server
 * closes). */
static size_t tun_end(unsigned char *out, int end)
{
	switch (end) {
	case END_WS_CLOSE: /* the kubelet closes after the exit status */
		memcpy(out, "\x88\x02\x03\xe8", 4);
		return 4;
	case END_SPDY_FIN:
		return tun_data(out, MG_TUNNEL_SPDY, "", 0, true);
	case END_SPDY_RST:
		memcpy(out, "\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x03\x00\x00\x00\x05", 16);
		return 16;
	case END_SPDY_GOAWAY:
		memcpy(out, "\x80\x03\x00\x07\x00\x00\x00\x08\x00\x00\x00\x03\x00\x00\x00\x00", 16);
		return 16;
	default:
		return 0;
	}
}

/* The channel-1 / stream-3 text of the frames in <b>, into <text>. */
static void tun_text(const struct mg_buf *b, enum mg_tunnel_proto proto, char *text, size_t cap)
{
	const unsigned char *p = (const unsigned char *)mg_buf_head(b);
	size_t len = mg_buf_size(b), i = 0, tl = 0;

	if (proto == MG_TUNNEL_WEBSOCKET) {
		text[0] = '\0';
		ws_collect(b, 1, text, cap);
		return;
	}
	while (i < len) {
		size_t n;

		assert_true(i + 8 <= len);
		n = ((size_t)p[i + 5] << 16) | ((size_t)p[i + 6] << 8) | p[i + 7];
		assert_true(i + 8 + n <= len);
		if (!(p[i] & 0x80) && p[i + 3] == 3) {
			assert_true(tl + n < cap);
			memcpy(text + tl, p + i + 8, n);
			tl += n;
		}
		i += 8 + n;
	}
	text[tl] = '\0';
}

/* Feeds <in>[0..<n>) in one piece and, for END_CONN, flushes. */
static void tun_run(struct mg_tunnel *t, const unsigned char *in, size_t n, int end,
		    struct mg_buf *out)
{
	assert_int_equal(mg_tunnel_feed(t, (const char *)in, n, out), (ssize_t)n);
	if (end == END_CONN)
		assert_int_equal(mg_tunnel_flush(t, out), 0);
}

/* Every detector's token cut 1..len-1 bytes into its body by the end of an
 * exec: a WebSocket close frame, SPDY FIN, RST_STREAM or GOAWAY, or the
 * connection closing (the proxy's flush at upstream EOF): the held body is
 * masked. And an idle flush in the middle masks it and what continues it. */
static void test_cut_candidate_masked_at_tunnel_end(void **state)
{
	static const struct {
		enum mg_tunnel_proto proto;
		int end;
	} ends[] = {
		{MG_TUNNEL_WEBSOCKET, END_WS_CLOSE}, {MG_TUNNEL_WEBSOCKET, END_CONN},
		{MG_TUNNEL_SPDY, END_SPDY_FIN},	     {MG_TUNNEL_SPDY, END_SPDY_RST},
		{MG_TUNNEL_SPDY, END_SPDY_GOAWAY},   {MG_TUNNEL_SPDY, END_CONN},
	};
	struct mg_mask_cfg cfg;

	(void)state;
	cut_cfg(&cfg);
	for (size_t i = 0; i < N_CUT_CASES; i++) {
		const struct cut_case *c = &cut_cases[i];

		for (size_t cut = 1; cut < strlen(c->body); cut++) {
			char tok[512], rest[512], want[512], fwant[512], pwant[1024], text[2048];
			size_t tn = cut_input(tok, sizeof(tok), c, cut);
			int rn = snprintf(rest, sizeof(rest), "%s%s tail\n", c->body + cut, c->end);

			cut_expect(want, sizeof(want), c);
			snprintf(pwant, sizeof(pwant), "%s%s tail\n", want, c->end);
			/* at a flush, a short run near a key id stays held */
			cut_expect(fwant, sizeof(fwant), c);
			if (cut < c->min_end)
				snprintf(fwant, sizeof(fwant), "x %s", c->out_pre);
			for (size_t k = 0; k < 2 * sizeof(ends) / sizeof(ends[0]); k++) {
				enum mg_tunnel_proto proto = ends[k / 2].proto;
				int end = ends[k / 2].end + (k % 2 ? END_N : 0);
				struct mg_tunnel *t = mg_tunnel_new(proto, &cfg);
				unsigned char in[2048];
				size_t n = 0;
				struct mg_buf out;

				mg_buf_init(&out, 1 << 20);
				if (end < END_N) {
					/* the stream ends right after the cut token */
					n += tun_data(in + n, proto, tok, tn, false);
					n += tun_end(in + n, end);
					tun_run(t, in, n, end, &out);
					tun_text(&out, proto, text, sizeof(text));
					/* a short run near a key id: an end writes it, the
					 * flush at a connection end keeps it (and drops it) */
					if (cut < c->min_end && end == END_CONN)
						snprintf(want, sizeof(want), "x %s", c->out_pre);
					else if (cut < c->min_end)
						snprintf(want, sizeof(want), "x %s%.*s", c->out_pre,
							 (int)cut, c->body);
					else
						cut_expect(want, sizeof(want), c);
					if (strcmp(text, want))
						fail_msg("end %d, case %zu cut %zu:\nout:  "
							 "%s\nwant: %s",
							 end, i, cut, text, want);
				} else {
					/* an idle flush after the cut, then the rest, then the end
					 */
					n += tun_data(in + n, proto, tok, tn, false);
					assert_int_equal(
						mg_tunnel_feed(t, (const char *)in, n, &out),
						(ssize_t)n);
					assert_int_equal(mg_tunnel_flush(t, &out), 0);
					tun_text(&out, proto, text, sizeof(text));
					assert_string_equal(text, fwant);
					n = tun_data(in, proto, rest, (size_t)rn, false);
					n += tun_end(in + n, end - END_N);
					tun_run(t, in, n, end - END_N, &out);
					tun_text(&out, proto, text, sizeof(text));
					if (strcmp(text, pwant))
						fail_msg("flush, end %d, case %zu cut %zu:\nout:  "
							 "%s\nwant: %s",
							 end - END_N, i, cut, text, pwant);
				}
				mg_buf_free(&out);
				mg_tunnel_free(t);
			}
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_websocket_every_split),
		cmocka_unit_test(test_websocket_refusals),
		cmocka_unit_test(test_spdy_every_split),
		cmocka_unit_test(test_cut_candidate_masked_at_tunnel_end),
	};

	return cmocka_run_group_tests_name("tunnel", tests, NULL, NULL);
}
