/*
 * libFuzzer target for tunnel: the WebSocket and SPDY/3.1 server-frame
 * readers of the exec/attach tunnel. Input: a mode byte, a seed byte, then
 * the body. Modes (mode byte):
 *  bit 0  the protocol: WebSocket (v4/v5.channel.k8s.io) or SPDY/3.1;
 *  bit 1  0: raw: the body is the server's byte stream, fed in pieces cut
 *            at seed-chosen points with idle flushes between some: whatever
 *            it is, no crash, and what comes out is whole frames (only a
 *            control frame passed through may be cut by the end of input);
 *         1: scripted: the body is read as a script of server frames (data
 *            on a channel or stream split anywhere, control frames incl.
 *            SPDY SYN_REPLY/HEADERS with zlib-compressed header blocks,
 *            PING, SETTINGS, WINDOW_UPDATE, idle flushes) with planted
 *            tokens (whole, or cut short right before their stream ends by
 *            a WebSocket close, SPDY FIN, RST_STREAM or GOAWAY, or the
 *            connection end). Checked: output is whole frames; control
 *            frames come out byte for byte and in order; no planted token
 *            body (nor a cut one after its prefix) is in any channel's text;
 *            a second run cut at other points gives the same text.
 * Client-to-server bytes are not parsed by the tunnel (stdin and resize
 * pass unchanged), so there is nothing of theirs to fuzz here.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../../userspace/mask/rules.c"
#include "../../userspace/mask/scan.c"
#include "../../userspace/mask/tunnel.c"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

#define MAX_OPS	   64
#define MAX_STREAM (64 * 1024)
#define N_CHAN	   3

struct sbuf {
	unsigned char *p;
	size_t len, cap;
};

static void sb_add(struct sbuf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		CHECK(b->p);
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
}

static uint32_t rng;

static uint32_t next(void)
{
	rng = rng * 1103515245u + 12345u;
	return rng >> 8;
}

/* ---- the reference frame reader for what comes out ---- */

struct parsed {
	struct sbuf text[N_CHAN + 1]; /* per channel (WebSocket) or stream slot (SPDY) */
	struct sbuf control;	      /* control frames, whole, in order */
	bool cut_control;	      /* the output ended inside a control frame */
};

static const uint32_t spdy_sids[N_CHAN + 1] = {0, 1, 3, 5};

/* Reads the frames in <b>[0..<n>) into <pr>; false if a frame is malformed
 * or a data frame is cut. */
static bool parse_out(bool ws, const unsigned char *b, size_t n, struct parsed *pr)
{
	size_t i = 0;

	while (i < n) {
		uint64_t len;
		size_t h;
		bool control;

		if (ws) {
			if (n - i < 2)
				return false;
			len = b[i + 1] & 0x7f;
			h = len == 126 ? 4 : len == 127 ? 10 : 2;
			if (b[i + 1] & 0x80 || n - i < h)
				return false;
			if (len == 126)
				len = ((uint64_t)b[i + 2] << 8) | b[i + 3];
			else if (len == 127)
				for (len = 0, h = 2; h < 10; h++)
					len = (len << 8) | b[i + h];
			control = (b[i] & 0x0f) >= 8;
			if (!control && ((b[i] & 0x8f) != 0x82 || !len))
				return false; /* only final binary frames with a channel */
		} else {
			h = 8;
			if (n - i < 8)
				return false;
			len = ((uint64_t)b[i + 5] << 16) | ((uint64_t)b[i + 6] << 8) | b[i + 7];
			control = b[i] & 0x80;
		}
		if (n - i - h < len) {
			if (!control)
				return false;
			pr->cut_control = true;
			sb_add(&pr->control, b + i, n - i);
			return true;
		}
		if (control) {
			sb_add(&pr->control, b + i, h + (size_t)len);
		} else if (ws) {
			unsigned ch = b[i + h];

			if (ch < 1 || ch > MAX_SLOTS)
				return false; /* only server-to-client channels */
			if (ch <= N_CHAN)
				sb_add(&pr->text[ch], b + i + h + 1, (size_t)len - 1);
		} else {
			uint32_t sid = ((uint32_t)b[i] << 24) | ((uint32_t)b[i + 1] << 16) |
				       ((uint32_t)b[i + 2] << 8) | b[i + 3];
			unsigned ch = 0;

			for (unsigned k = 1; k <= N_CHAN; k++)
				if (spdy_sids[k] == sid)
					ch = k;
			if (ch)
				sb_add(&pr->text[ch], b + i + h, (size_t)len);
		}
		i += h + (size_t)len;
	}
	return true;
}

static void parsed_free(struct parsed *pr)
{
	for (unsigned k = 0; k <= N_CHAN; k++)
		free(pr->text[k].p);
	free(pr->control.p);
	memset(pr, 0, sizeof(*pr));
}

/* ---- running the tunnel ---- */

/* Feeds <in>[0..<n>) cut at seed-chosen points; flushes at each offset in
 * <flush_at> (sorted, <nflush> of them) and at the end if <end_flush>.
 * The output is drained into <out> as it comes. Returns the first error, or
 * the bytes consumed. */
static ssize_t run(bool ws, const unsigned char *in, size_t n, const size_t *flush_at,
		   size_t nflush, bool end_flush, uint32_t seed, struct sbuf *out)
{
	struct mg_tunnel *t = mg_tunnel_new(ws ? MG_TUNNEL_WEBSOCKET : MG_TUNNEL_SPDY, NULL);
	struct mg_buf ob;
	size_t at = 0, fi = 0;
	ssize_t rc = 0;

	CHECK(t);
	mg_buf_init(&ob, 1 << 20);
	rng = seed;
	while (at < n) {
		size_t stop = n, piece, used;
		char *copy;

		if (fi < nflush && flush_at[fi] < stop)
			stop = flush_at[fi];
		piece = stop - at;
		if (piece > 1)
			piece = 1 + next() % piece;
		copy = malloc(piece ? piece : 1); /* exact size: ASan sees over-reads */
		CHECK(copy);
		memcpy(copy, in + at, piece);
		used = 0;
		while (used < piece) {
			rc = mg_tunnel_feed(t, copy + used, piece - used, &ob);
			if (rc < 0)
				break;
			used += (size_t)rc;
			sb_add(out, mg_buf_head(&ob), mg_buf_size(&ob));
			mg_buf_consume(&ob, mg_buf_size(&ob));
			CHECK(rc > 0 || used == piece);
		}
		free(copy);
		if (rc < 0)
			break;
		at += piece;
		while (fi < nflush && flush_at[fi] <= at) {
			if (flush_at[fi] == at)
				CHECK(mg_tunnel_flush(t, &ob) == 0);
			fi++;
		}
		sb_add(out, mg_buf_head(&ob), mg_buf_size(&ob));
		mg_buf_consume(&ob, mg_buf_size(&ob));
	}
	if (rc >= 0) {
		if (end_flush)
			CHECK(mg_tunnel_flush(t, &ob) == 0);
		sb_add(out, mg_buf_head(&ob), mg_buf_size(&ob));
		rc = (ssize_t)at;
	}
	mg_buf_free(&ob);
	mg_tunnel_free(t);
	return rc;
}

static void mode_raw(bool ws, const uint8_t *d, size_t n, uint8_t seed)
{
	struct sbuf out = {0};
	struct parsed pr = {0};
	size_t flush_at[4];

	for (int k = 0; k < 4; k++)
		flush_at[k] = n ? (size_t)(seed * (k + 1) * 37u) % (n + 1) : 0;
	for (int a = 0; a < 4; a++) /* sort */
		for (int b = a + 1; b < 4; b++)
			if (flush_at[b] < flush_at[a]) {
				size_t x = flush_at[a];

				flush_at[a] = flush_at[b];
				flush_at[b] = x;
			}
	run(ws, d, n, flush_at, 4, seed & 1, seed, &out);
	/* whatever was accepted comes out as whole frames */
	CHECK(parse_out(ws, out.p, out.len, &pr));
	parsed_free(&pr);
	free(out.p);
}

/* ---- the scripted stream ---- */

static const char b62[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

struct plant {
	char prefix[16];
	char body[48];
	size_t cut; /* body bytes sent (strlen(body) when whole) */
};

/* A token for detector <k> whose body depends on the input hash <h>. */
static void make_plant(struct plant *p, unsigned k, uint32_t *h)
{
	static const struct {
		const char *prefix, *set;
		unsigned len;
	} kinds[] = {
		{"ghp_", b62, 36},	  {"AKIA", "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16},
		{"glpat-", b62, 20},	  {"xoxb-", "0123456789", 24},
		{"k8s-aws-v1.", b62, 40}, {"eyJ", b62, 40},
	};
	unsigned i = k % (sizeof(kinds) / sizeof(kinds[0]));
	size_t sl = strlen(kinds[i].set);

	snprintf(p->prefix, sizeof(p->prefix), "%s", kinds[i].prefix);
	for (unsigned j = 0; j < kinds[i].len; j++) {
		*h = *h * 1103515245u + 12345u;
		p->body[j] = kinds[i].set[(*h >> 16) % sl];
	}
	p->body[kinds[i].len] = 0;
	if (i == 5) { /* a JWT: header.payload.signature */
		p->body[12] = '.';
		p->body[13] = 'e';
		p->body[14] = 'y';
		p->body[28] = '.';
	}
	p->cut = kinds[i].len;
}

struct script {
	bool ws;
	struct sbuf bytes;
	size_t flush_at[MAX_OPS];
	size_t nflush;
	bool end_flush;
	struct plant plants[MAX_OPS];
	unsigned plant_ch[MAX_OPS];
	size_t nplant;
	struct sbuf control; /* the control frames, as sent */
	z_stream z;	     /* SPDY: one header compression context per session */
};

static void put_data(struct script *s, unsigned ch, const void *p, size_t n, bool fin)
{
	unsigned char h[14];
	size_t hl = 0;

	if (s->ws) {
		h[hl++] = 0x82;
		if (n + 1 < 126) {
			h[hl++] = (unsigned char)(n + 1);
		} else {
			h[hl++] = 126;
			h[hl++] = (unsigned char)((n + 1) >> 8);
			h[hl++] = (unsigned char)(n + 1);
		}
		h[hl++] = (unsigned char)ch;
	} else {
		uint32_t sid = spdy_sids[ch];

		h[hl++] = (unsigned char)(sid >> 24);
		h[hl++] = (unsigned char)(sid >> 16);
		h[hl++] = (unsigned char)(sid >> 8);
		h[hl++] = (unsigned char)sid;
		h[hl++] = fin ? 1 : 0;
		h[hl++] = (unsigned char)(n >> 16);
		h[hl++] = (unsigned char)(n >> 8);
		h[hl++] = (unsigned char)n;
	}
	sb_add(&s->bytes, h, hl);
	sb_add(&s->bytes, p, n);
}

/* Data on <ch> split into 1..3 frames at input-chosen points. */
static void put_text(struct script *s, unsigned ch, const char *p, size_t n, bool fin)
{
	size_t a = n ? next() % (n + 1) : 0, b = a + (n - a ? next() % (n - a + 1) : 0);

	put_data(s, ch, p, a, false);
	put_data(s, ch, p + a, b - a, false);
	put_data(s, ch, p + b, n - b, fin);
}

static void put_control(struct script *s, const unsigned char *p, size_t n)
{
	sb_add(&s->bytes, p, n);
	sb_add(&s->control, p, n);
}

/* A SPDY control frame of <type> for stream <sid>: SYN_REPLY / HEADERS carry
 * a name/value block built from <d>, compressed in the session's context. */
static void put_spdy_control(struct script *s, unsigned type, uint32_t sid, const uint8_t *d,
			     size_t n)
{
	unsigned char f[8 + 4 + 512], nv[256];
	size_t pl = 0, nvl = 0;

	f[0] = 0x80;
	f[1] = 3;
	f[2] = 0;
	f[3] = (unsigned char)type;
	f[4] = 0;
	if (type == 2 || type == 8) {
		size_t k = n < 64 ? n : 64;

		memcpy(f + 8, "\0\0\0", 3);
		f[11] = (unsigned char)sid;
		/* one pair: "x-fuzz" = the bytes */
		memcpy(nv, "\0\0\0\1\0\0\0\6x-fuzz\0\0\0", 17);
		nv[17] = (unsigned char)k;
		memcpy(nv + 18, d, k);
		nvl = 18 + k;
		s->z.next_in = nv;
		s->z.avail_in = (uInt)nvl;
		s->z.next_out = f + 12;
		s->z.avail_out = 512;
		CHECK(deflate(&s->z, Z_SYNC_FLUSH) == Z_OK);
		pl = 4 + (512 - s->z.avail_out);
	} else { /* PING (6), SETTINGS (4) with no entries, WINDOW_UPDATE (9) */
		memset(f + 8, 0, 8);
		f[11] = (unsigned char)sid;
		pl = type == 4 ? 4 : 8;
		if (type == 6)
			pl = 4;
	}
	f[5] = (unsigned char)(pl >> 16);
	f[6] = (unsigned char)(pl >> 8);
	f[7] = (unsigned char)pl;
	put_control(s, f, 8 + pl);
}

/* Builds the script from <d>; every plant is preceded by a blank (a token
 * glued to random bytes may be part of a longer run, not ours to judge). */
static void build(struct script *s, const uint8_t *d, size_t n, uint32_t h)
{
	size_t i = 0;
	bool ended[N_CHAN + 1] = {false};

	for (unsigned op = 0; op < MAX_OPS && i < n && s->bytes.len < MAX_STREAM; op++) {
		uint8_t c = d[i++];
		unsigned ch = 1 + (c >> 4) % N_CHAN;

		if (ended[ch])
			ch = 1 + (ch % N_CHAN);
		if (ended[ch] && !s->ws)
			continue;
		switch (c & 7) {
		case 0:
		case 1:
		case 2: { /* random text */
			size_t k = i < n ? d[i++] % 96 : 0;

			if (k > n - i)
				k = n - i;
			put_text(s, ch, (const char *)d + i, k, false);
			i += k;
			break;
		}
		case 3: /* a control frame */
			if (s->ws) {
				unsigned char f[2 + 16];
				size_t k = n - i < 16 ? n - i : 16;

				f[0] = 0x89; /* ping */
				f[1] = (unsigned char)k;
				memcpy(f + 2, d + i, k);
				i += k;
				put_control(s, f, 2 + k);
			} else {
				static const unsigned types[] = {2, 8, 6, 4, 9};

				put_spdy_control(s, types[(c >> 5) % 5], spdy_sids[ch], d + i,
						 n - i);
			}
			break;
		case 4: /* an idle flush */
			if (s->nflush < MAX_OPS)
				s->flush_at[s->nflush++] = s->bytes.len;
			break;
		case 5:	  /* a whole token */
		case 6: { /* a token cut short, then its stream ends */
			struct plant *p = &s->plants[s->nplant];
			char buf[80];
			int bl;

			make_plant(p, c >> 3, &h);
			if ((c & 7) == 6)
				p->cut = 1 + next() % (strlen(p->body) - 1);
			s->plant_ch[s->nplant++] = ch;
			bl = snprintf(buf, sizeof(buf), " %s%.*s", p->prefix, (int)p->cut, p->body);
			if ((c & 7) == 5) {
				buf[bl++] = ' ';
				put_text(s, ch, buf, (size_t)bl, false);
				break;
			}
			if (s->ws) { /* the session ends with a close frame or the connection */
				put_text(s, ch, buf, (size_t)bl, false);
				if (c & 0x80)
					put_control(s, (const unsigned char *)"\x88\x02\x03\xe8",
						    4);
				else
					s->end_flush = true;
				return;
			}
			switch (c >> 6) {
			case 0:
				put_text(s, ch, buf, (size_t)bl, true);
				ended[ch] = true;
				break;
			case 1: /* RST_STREAM, GOAWAY end every stream */
			case 2:
				put_text(s, ch, buf, (size_t)bl, false);
				put_spdy_control(s, c >> 6 == 1 ? 3 : 7, spdy_sids[ch], NULL, 0);
				return;
			default:
				put_text(s, ch, buf, (size_t)bl, false);
				s->end_flush = true;
				return;
			}
			break;
		}
		default: /* an empty frame */
			put_data(s, ch, "", 0, false);
			break;
		}
	}
}

static size_t count(const unsigned char *hay, size_t hl, const char *needle)
{
	size_t c = 0, nl = strlen(needle);

	for (const unsigned char *p = hay;
	     hay && (p = memmem(p, hl - (size_t)(p - hay), needle, nl)); p++)
		c++;
	return c;
}

static void mode_script(bool ws, const uint8_t *d, size_t n, uint8_t seed)
{
	struct script s = {.ws = ws};
	struct sbuf o1 = {0}, o2 = {0};
	struct parsed p1 = {0}, p2 = {0};
	uint32_t h = 2166136261u;
	ssize_t rc;

	for (size_t i = 0; i < n; i++)
		h = (h ^ d[i]) * 16777619u;
	rng = h ^ seed;
	CHECK(deflateInit(&s.z, Z_DEFAULT_COMPRESSION) == Z_OK);
	build(&s, d, n, h);
	deflateEnd(&s.z);

	rc = run(ws, s.bytes.p, s.bytes.len, s.flush_at, s.nflush, s.end_flush, seed, &o1);
	CHECK(rc == (ssize_t)s.bytes.len);
	CHECK(parse_out(ws, o1.p, o1.len, &p1));
	CHECK(!p1.cut_control);
	/* control frames pass unchanged, in order */
	CHECK(p1.control.len == s.control.len &&
	      (!s.control.len || !memcmp(p1.control.p, s.control.p, s.control.len)));
	/* no planted body, nor a cut one right after its prefix */
	for (size_t k = 0; k < s.nplant; k++) {
		const struct plant *p = &s.plants[k];
		char needle[80];

		snprintf(needle, sizeof(needle), "%s%.*s", p->prefix, (int)p->cut, p->body);
		for (unsigned ch = 1; ch <= N_CHAN; ch++)
			CHECK(count(p1.text[ch].p, p1.text[ch].len, needle) <=
			      count((const unsigned char *)d, n, needle));
		if (p->cut >= 12) {
			snprintf(needle, sizeof(needle), "%.*s", (int)p->cut, p->body);
			for (unsigned ch = 1; ch <= N_CHAN; ch++)
				CHECK(count(p1.text[ch].p, p1.text[ch].len, needle) <=
				      count((const unsigned char *)d, n, needle));
		}
	}
	/* other cuts of the same stream: the same text on every channel */
	CHECK(run(ws, s.bytes.p, s.bytes.len, s.flush_at, s.nflush, s.end_flush, seed * 7u + 1,
		  &o2) == rc);
	CHECK(parse_out(ws, o2.p, o2.len, &p2));
	for (unsigned ch = 1; ch <= N_CHAN; ch++)
		CHECK(p1.text[ch].len == p2.text[ch].len &&
		      (!p1.text[ch].len || !memcmp(p1.text[ch].p, p2.text[ch].p, p1.text[ch].len)));
	parsed_free(&p1);
	parsed_free(&p2);
	free(o1.p);
	free(o2.p);
	free(s.bytes.p);
	free(s.control.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size > 4 * MAX_STREAM)
		return 0;
	if (data[0] & 2)
		mode_script(data[0] & 1, data + 2, size - 2, data[1]);
	else
		mode_raw(data[0] & 1, data + 2, size - 2, data[1]);
	return 0;
}
