/*
 * tunnel: WebSocket / SPDY server-frame parsing and re-framing around the
 * per-channel text masker. See include/mcpgate/tunnel.h.
 *
 * WebSocket (RFC 6455 §5.2): a server frame is FIN|opcode, then the length
 * (7 bits, or 126 + 16 bits, or 127 + 64 bits), never a masking key.
 * SPDY/3.1: a data frame is a 31-bit stream id, 8 bits of flags (FIN =
 * 0x01) and a 24-bit length; a control frame has the top bit set and a
 * 24-bit length too.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "mcpgate/scan.h"
#include "mcpgate/tunnel.h"

#define WS_OP_CONT    0x0
#define WS_OP_TEXT    0x1
#define WS_OP_BIN     0x2
#define SPDY_FLAG_FIN 0x01
#define MAX_SLOTS     (MG_MASK_EXEC_CHANNELS - 1) /* channel 0 is never server-sent */
#define OUT_RESERVE   (64 * 1024) /* room kept free in <out> before consuming more */

enum { ST_HEAD = 0, ST_PAYLOAD, ST_CONTROL };

struct mg_tunnel {
	enum mg_tunnel_proto proto;
	struct mg_mask_exec *mx;
	int state;
	unsigned char hdr[14];
	size_t hlen, hneed;
	uint64_t left; /* payload bytes left in the current frame */
	/* the current data frame */
	bool fin;		       /* SPDY: the frame ends its stream */
	bool need_channel;	       /* WebSocket: the next payload byte is the channel */
	unsigned channel;	       /* masker channel of the current frame (0: none yet) */
	uint32_t slots[MAX_SLOTS + 1]; /* SPDY stream id per masker channel 1.. */
	unsigned ws_last_channel;      /* WebSocket: channel a continuation frame continues */
	unsigned fed;		       /* bit per masker channel that has seen data */
	struct mg_buf scratch;	       /* masked output of one feed, before framing */
};

struct mg_tunnel *mg_tunnel_new(enum mg_tunnel_proto proto, const struct mg_mask_cfg *cfg)
{
	struct mg_tunnel *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->proto = proto;
	t->mx = mg_mask_exec_new(cfg);
	if (!t->mx) {
		free(t);
		return NULL;
	}
	mg_buf_init(&t->scratch, 256 * 1024);
	return t;
}

void mg_tunnel_free(struct mg_tunnel *t)
{
	if (!t)
		return;
	mg_mask_exec_free(t->mx);
	mg_buf_free(&t->scratch);
	free(t);
}

void mg_tunnel_stats(const struct mg_tunnel *t, struct mg_mask_stats *st)
{
	mg_mask_exec_stats(t->mx, st);
}

static int scratch_write(void *ctx, const char *buf, size_t len)
{
	return mg_buf_append(ctx, buf, len) ? -ENOBUFS : 0;
}

/* Frames <data>[0..<len>) for masker <channel> onto <out>: a WebSocket
 * binary frame led by the channel byte (the masker channel is the channel
 * number itself), or a SPDY data frame on the channel's stream; <fin>
 * ends a SPDY stream (an empty frame may carry it). */
static int emit(struct mg_tunnel *t, unsigned channel, const char *data, size_t len, bool fin,
		struct mg_buf *out)
{
	unsigned char h[16];
	size_t hl = 0;

	if (t->proto == MG_TUNNEL_WEBSOCKET) {
		uint64_t plen = (uint64_t)len + 1;

		if (!len)
			return 0;
		h[hl++] = 0x80 | WS_OP_BIN;
		if (plen < 126) {
			h[hl++] = (unsigned char)plen;
		} else if (plen <= 0xffff) {
			h[hl++] = 126;
			h[hl++] = (unsigned char)(plen >> 8);
			h[hl++] = (unsigned char)plen;
		} else {
			h[hl++] = 127;
			for (int i = 7; i >= 0; i--)
				h[hl++] = (unsigned char)(plen >> (8 * i));
		}
		h[hl++] = (unsigned char)channel;
	} else {
		uint32_t sid = t->slots[channel];

		if (!len && !fin)
			return 0;
		h[hl++] = (unsigned char)((sid >> 24) & 0x7f);
		h[hl++] = (unsigned char)(sid >> 16);
		h[hl++] = (unsigned char)(sid >> 8);
		h[hl++] = (unsigned char)sid;
		h[hl++] = fin ? SPDY_FLAG_FIN : 0;
		h[hl++] = (unsigned char)(len >> 16);
		h[hl++] = (unsigned char)(len >> 8);
		h[hl++] = (unsigned char)len;
	}
	/* Header and payload together or not at all: half a frame would
	 * desynchronise the client. */
	if (mg_buf_reserve(out, hl + len))
		return -ENOBUFS;
	mg_buf_append(out, h, hl);
	if (len)
		mg_buf_append(out, data, len);
	return 0;
}

/* Masks <data> for the current channel and frames what comes out. */
static int mask_piece(struct mg_tunnel *t, const char *data, size_t len, struct mg_buf *out)
{
	struct mg_mask_sink sink = {scratch_write, &t->scratch};
	int rc;

	t->scratch.off = t->scratch.len = 0;
	t->fed |= 1u << t->channel;
	rc = mg_mask_exec_feed(t->mx, t->channel, data, len, &sink);
	if (!rc)
		rc = emit(t, t->channel, mg_buf_head(&t->scratch), mg_buf_size(&t->scratch), false,
			  out);
	return rc;
}

/* Writes out what channel <ch> still holds: flushed (<finish> false) or
 * at the end of its stream. */
static int drain_channel(struct mg_tunnel *t, unsigned ch, bool finish, struct mg_buf *out)
{
	struct mg_mask_sink sink = {scratch_write, &t->scratch};
	int rc;

	if (!(t->fed & (1u << ch)))
		return 0; /* nothing held: no masker to wake */
	t->scratch.off = t->scratch.len = 0;
	rc = finish ? mg_mask_exec_finish(t->mx, ch, &sink) : mg_mask_exec_flush(t->mx, ch, &sink);
	if (!rc)
		rc = emit(t, ch, mg_buf_head(&t->scratch), mg_buf_size(&t->scratch), false, out);
	return rc;
}

int mg_tunnel_flush(struct mg_tunnel *t, struct mg_buf *out)
{
	/* Never in the middle of a frame being copied through, and only with
	 * room for what may come out. */
	if (t->state != ST_HEAD || mg_buf_room(out) <= OUT_RESERVE)
		return 0;
	for (unsigned ch = 1; ch <= MAX_SLOTS; ch++) {
		int rc;

		if (t->proto == MG_TUNNEL_SPDY && !t->slots[ch])
			continue;
		rc = drain_channel(t, ch, false, out);
		if (rc)
			return rc;
	}
	return 0;
}

/* SPDY: the masker channel of stream <sid>, allocating one on first use. */
static int spdy_channel(struct mg_tunnel *t, uint32_t sid)
{
	for (unsigned ch = 1; ch <= MAX_SLOTS; ch++)
		if (t->slots[ch] == sid)
			return (int)ch;
	for (unsigned ch = 1; ch <= MAX_SLOTS; ch++)
		if (!t->slots[ch]) {
			t->slots[ch] = sid;
			return (int)ch;
		}
	return -EPROTO; /* more streams than an exec ever opens */
}

/* A complete frame header is in t->hdr: decide what the frame is. */
static int start_frame(struct mg_tunnel *t, struct mg_buf *out)
{
	unsigned char *h = t->hdr;

	if (t->proto == MG_TUNNEL_WEBSOCKET) {
		uint8_t op = h[0] & 0x0f;
		size_t i = 2;
		uint64_t n = h[1] & 0x7f;

		if (h[1] & 0x80)
			return -EPROTO; /* servers never mask (RFC 6455 §5.1) */
		/* RSV bits mean an extension (compression) we did not offer;
		 * only the opcodes RFC 6455 §5.2 defines; control frames are
		 * short and final (§5.5). */
		if ((h[0] & 0x70) || (op > WS_OP_BIN && op < 0x8) || op > 0xA)
			return -EPROTO;
		if (op >= 0x8 && (!(h[0] & 0x80) || n > 125))
			return -EPROTO;
		if (n == 126)
			n = ((uint64_t)h[2] << 8) | h[3], i = 4;
		else if (n == 127)
			for (n = 0, i = 2; i < 10; i++)
				n = (n << 8) | h[i];
		t->left = n;
		if (op >= 0x8) {
			/* A close frame ends the session: what is held goes first. */
			if (op == 0x8)
				for (unsigned ch = 1; ch <= MAX_SLOTS; ch++)
					if (drain_channel(t, ch, true, out))
						return -ENOMEM;
			t->state = ST_CONTROL;
			return mg_buf_append(out, h, t->hlen) ? -ENOMEM : 0;
		}
		if (op == WS_OP_TEXT)
			return -EPROTO; /* base64 channel protocols are not offered */
		if (op == WS_OP_BIN) {
			t->need_channel = true;
		} else { /* continuation: the channel of the message it continues */
			t->need_channel = false;
			t->channel = t->ws_last_channel;
			if (!t->channel)
				return -EPROTO;
		}
		t->state = ST_PAYLOAD;
		return 0;
	}

	if (h[0] & 0x80) { /* SPDY control frame */
		uint16_t type = (uint16_t)((h[2] << 8) | h[3]);

		t->left = ((uint64_t)h[5] << 16) | ((uint64_t)h[6] << 8) | h[7];
		/* RST_STREAM (3) and GOAWAY (7) end streams: flush them first. */
		if (type == 3 || type == 7)
			for (unsigned ch = 1; ch <= MAX_SLOTS; ch++)
				if (t->slots[ch] && drain_channel(t, ch, true, out))
					return -ENOMEM;
		t->state = ST_CONTROL;
		return mg_buf_append(out, h, 8) ? -ENOMEM : 0;
	} else {
		uint32_t sid = ((uint32_t)(h[0] & 0x7f) << 24) | ((uint32_t)h[1] << 16) |
			       ((uint32_t)h[2] << 8) | h[3];
		int ch = spdy_channel(t, sid);

		if (ch < 0)
			return ch;
		t->channel = (unsigned)ch;
		t->fin = h[4] & SPDY_FLAG_FIN;
		t->left = ((uint64_t)h[5] << 16) | ((uint64_t)h[6] << 8) | h[7];
		t->state = ST_PAYLOAD;
		return 0;
	}
}

/* The current data frame's payload has all been read. */
static int end_frame(struct mg_tunnel *t, struct mg_buf *out)
{
	int rc = 0;

	if (t->proto == MG_TUNNEL_SPDY && t->fin) {
		struct mg_mask_sink sink = {scratch_write, &t->scratch};

		t->scratch.off = t->scratch.len = 0;
		rc = mg_mask_exec_finish(t->mx, t->channel, &sink);
		if (!rc)
			rc = emit(t, t->channel, mg_buf_head(&t->scratch), mg_buf_size(&t->scratch),
				  true, out);
	}
	t->state = ST_HEAD;
	t->hlen = 0;
	return rc;
}

/* Bytes of frame header needed, given those already in t->hdr. */
static size_t header_need(const struct mg_tunnel *t)
{
	uint8_t l7;
	size_t need;

	if (t->proto == MG_TUNNEL_SPDY)
		return 8;
	if (t->hlen < 2)
		return 2;
	l7 = t->hdr[1] & 0x7f;
	need = l7 == 126 ? 4 : l7 == 127 ? 10 : 2;
	return (t->hdr[1] & 0x80) ? need + 4 : need;
}

ssize_t mg_tunnel_feed(struct mg_tunnel *t, const char *in, size_t len, struct mg_buf *out)
{
	size_t used = 0;
	int rc;

	while (mg_buf_room(out) > OUT_RESERVE) {
		const unsigned char *p = (const unsigned char *)in + used;
		size_t avail = len - used;

		if (t->state == ST_HEAD) {
			if (t->hlen < header_need(t)) {
				if (!avail)
					break;
				t->hdr[t->hlen++] = *p;
				used++;
				/* A masked server frame is refused as soon as it shows. */
				if (t->proto == MG_TUNNEL_WEBSOCKET && t->hlen == 2 &&
				    (t->hdr[1] & 0x80))
					return -EPROTO;
				continue;
			}
			rc = start_frame(t, out);
			if (rc)
				return rc;
			if (t->left == 0) {
				if (t->state == ST_PAYLOAD) {
					if ((rc = end_frame(t, out)))
						return rc;
				} else {
					t->state = ST_HEAD;
					t->hlen = 0;
				}
			}
			continue;
		}
		if (!avail)
			break;
		if (avail > t->left)
			avail = (size_t)t->left;
		if (avail > 16384)
			avail = 16384;
		if (t->state == ST_CONTROL) {
			if (mg_buf_append(out, p, avail))
				return -ENOMEM;
		} else {
			const char *d = (const char *)p;
			size_t n = avail;

			if (t->need_channel) {
				if (*p == 0 || *p > MAX_SLOTS)
					return -EPROTO; /* not a server-to-client channel */
				t->channel = t->ws_last_channel = *p;
				t->need_channel = false;
				d++;
				n--;
			}
			if (n && (rc = mask_piece(t, d, n, out)))
				return rc;
		}
		used += avail;
		t->left -= avail;
		if (t->left == 0) {
			if (t->state == ST_CONTROL) {
				t->state = ST_HEAD;
				t->hlen = 0;
			} else if ((rc = end_frame(t, out))) {
				return rc;
			}
		}
	}
	return (ssize_t)used;
}
