/*
 * body: a masker for a whole response body. Picks the JSON masker (one
 * document or a watch stream) or the text masker, inflates and re-deflates
 * gzip bodies around it, and classifies Content-Types for the proxy.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "mcpgate/body.h"
#include "mcpgate/json.h"
#include "mcpgate/scan.h"

/* ---- bodies: JSON, watch or text, optionally gzip ---- */

#define ZBUF 16384

struct mg_mask_body {
	enum mg_mask_kind kind;
	struct mg_mask_json *json;
	struct mg_mask_text *text;
	bool gzip, inf_init, def_init, inf_end, def_dirty;
	int rc;
	struct mg_mask_err err;
	const struct mg_mask_sink *out;
	uint64_t zin, zout;
	struct mg_mask_stats st;
	z_stream inf, def;
	unsigned char ibuf[ZBUF], obuf[ZBUF];
};

struct mg_mask_body *mg_mask_body_new(const struct mg_mask_cfg *cfg,
				      const struct mg_mask_body_opts *opts)
{
	struct mg_mask_body *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->kind = opts->kind;
	b->gzip = opts->gzip;
	if (opts->kind == MG_MASK_KIND_TEXT) {
		b->text = mg_mask_text_new(cfg);
	} else {
		struct mg_mask_json_opts jo = {
			.stream = opts->kind == MG_MASK_KIND_JSON_STREAM,
			.resource = opts->resource,
		};

		b->json = mg_mask_json_new(cfg, &jo);
	}
	if (!b->text && !b->json)
		goto fail;
	if (b->gzip) {
		/* 15 + 16: a gzip wrapper only (RFC 1952), what Content-Encoding: gzip means */
		if (inflateInit2(&b->inf, 15 + 16) != Z_OK)
			goto fail;
		b->inf_init = true;
		if (deflateInit2(&b->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
				 Z_DEFAULT_STRATEGY) != Z_OK)
			goto fail;
		b->def_init = true;
	}
	return b;
fail:
	mg_mask_body_free(b);
	return NULL;
}

/* Copies the inner masker's counts; for gzip, bytes are counted on the wire. */
static void body_sync_stats(struct mg_mask_body *b)
{
	b->st = *(b->json ? mg_mask_json_stats(b->json) : mg_mask_text_stats(b->text));
	if (b->gzip) {
		b->st.bytes_in = b->zin; /* inflateReset() clears total_in per member */
		b->st.bytes_out = b->zout;
	}
}

static int body_fail(struct mg_mask_body *b, int rc, const char *reason)
{
	body_sync_stats(b);
	if (!b->rc) {
		b->rc = rc;
		b->err.reason = reason;
		b->err.pos = b->zin - b->inf.avail_in; /* compressed offset */
	}
	return b->rc;
}

static int inner_feed_body(struct mg_mask_body *b, const char *p, size_t n,
			   const struct mg_mask_sink *s)
{
	return b->json ? mg_mask_json_feed(b->json, p, n, s) : mg_mask_text_feed(b->text, p, n, s);
}

static int inner_finish_body(struct mg_mask_body *b, const struct mg_mask_sink *s)
{
	return b->json ? mg_mask_json_finish(b->json, s) : mg_mask_text_finish(b->text, s);
}

/* Runs deflate with <flush> until it has nothing more to write for now. */
static int def_run(struct mg_mask_body *b, int flush)
{
	int zrc;

	do {
		size_t have;

		b->def.next_out = b->obuf;
		b->def.avail_out = ZBUF;
		zrc = deflate(&b->def, flush);
		if (zrc == Z_STREAM_ERROR)
			return -EIO;
		have = ZBUF - b->def.avail_out;
		if (have) {
			int rc = b->out->write(b->out->ctx, (const char *)b->obuf, have);

			if (rc < 0)
				return rc;
			b->zout += have;
		}
	} while (b->def.avail_out == 0 || (flush == Z_FINISH && zrc != Z_STREAM_END));
	return 0;
}

static int def_write(void *ctx, const char *p, size_t n)
{
	struct mg_mask_body *b = ctx;

	b->def.next_in = (Bytef *)(uintptr_t)p;
	b->def.avail_in = (uInt)n;
	b->def_dirty = true;
	return def_run(b, Z_NO_FLUSH);
}

int mg_mask_body_feed(struct mg_mask_body *b, const char *in, size_t len,
		      const struct mg_mask_sink *out)
{
	struct mg_mask_sink ds = {def_write, b};
	int rc;

	if (b->rc)
		return b->rc;
	while (b->gzip && len > (1u << 30)) { /* z_stream counts in uInt */
		rc = mg_mask_body_feed(b, in, 1u << 30, out);
		if (rc)
			return rc;
		in += 1u << 30;
		len -= 1u << 30;
	}
	if (!b->gzip) {
		rc = inner_feed_body(b, in, len, out);
		body_sync_stats(b);
		return rc ? body_fail(b, rc, NULL) : 0;
	}
	b->out = out;
	b->zin += len;
	b->inf.next_in = (Bytef *)(uintptr_t)in;
	b->inf.avail_in = (uInt)len;
	for (;;) {
		int zrc;
		size_t have;

		if (b->inf_end) {
			if (!b->inf.avail_in)
				break;
			/* a further gzip member (RFC 1952 §2.2); garbage fails in inflate */
			inflateReset(&b->inf);
			b->inf_end = false;
		}
		b->inf.next_out = b->ibuf;
		b->inf.avail_out = ZBUF;
		zrc = inflate(&b->inf, Z_NO_FLUSH);
		if (zrc == Z_STREAM_END)
			b->inf_end = true;
		else if (zrc != Z_OK && zrc != Z_BUF_ERROR)
			return body_fail(b, -EINVAL, "corrupt gzip body");
		have = ZBUF - b->inf.avail_out;
		if (have) {
			rc = inner_feed_body(b, (const char *)b->ibuf, have, &ds);
			if (rc)
				return body_fail(b, rc, NULL);
		}
		if (!b->inf.avail_in && b->inf.avail_out)
			break;
		if (zrc == Z_BUF_ERROR && !have)
			break;
	}
	if (b->def_dirty) {
		b->def_dirty = false;
		rc = def_run(b, Z_SYNC_FLUSH);
		if (rc)
			return body_fail(b, rc, "output sink failed");
	}
	body_sync_stats(b);
	return 0;
}

int mg_mask_body_finish(struct mg_mask_body *b, const struct mg_mask_sink *out)
{
	struct mg_mask_sink ds = {def_write, b};
	int rc;

	if (b->rc)
		return b->rc;
	if (!b->gzip) {
		rc = inner_finish_body(b, out);
		body_sync_stats(b);
		return rc ? body_fail(b, rc, NULL) : 0;
	}
	b->out = out;
	if (!b->inf_end)
		return body_fail(b, -EINVAL, "truncated gzip body");
	rc = inner_finish_body(b, &ds);
	if (rc)
		return body_fail(b, rc, NULL);
	b->def.next_in = NULL;
	b->def.avail_in = 0;
	rc = def_run(b, Z_FINISH);
	if (rc)
		return body_fail(b, rc, "output sink failed");
	body_sync_stats(b);
	return 0;
}

const struct mg_mask_stats *mg_mask_body_stats(const struct mg_mask_body *b)
{
	return &b->st;
}

const struct mg_mask_err *mg_mask_body_error(const struct mg_mask_body *b)
{
	if (b->err.reason || !b->json)
		return &b->err;
	return mg_mask_json_error(b->json);
}

void mg_mask_body_free(struct mg_mask_body *b)
{
	if (!b)
		return;
	if (b->inf_init)
		inflateEnd(&b->inf);
	if (b->def_init)
		deflateEnd(&b->def);
	mg_mask_json_free(b->json);
	mg_mask_text_free(b->text);
	free(b);
}

/* ---- helpers for the proxy ---- */

enum mg_mask_ctype mg_mask_content_type(struct mg_str ct)
{
	size_t n = 0;
	const char *p = ct.ptr;
	struct mg_str mt;

	while (ct.len && (*p == ' ' || *p == '\t'))
		p++, ct.len--;
	while (n < ct.len && p[n] != ';' && p[n] != ' ' && p[n] != '\t')
		n++;
	mt = (struct mg_str){p, n};

	if (mg_str_caseeq(mt, MG_STR("application/json")))
		return MG_MASK_CT_JSON;
	if (n > 5 && !strncasecmp(p + n - 5, "+json", 5) && memchr(p, '/', n))
		return MG_MASK_CT_JSON;
	if (mg_str_caseeq(mt, MG_STR("text/plain")))
		return MG_MASK_CT_TEXT;
	if (mg_str_caseeq(mt, MG_STR("application/vnd.kubernetes.protobuf")))
		return MG_MASK_CT_PROTOBUF;
	return MG_MASK_CT_REFUSE;
}

bool mg_mask_is_protobuf(const char *buf, size_t len)
{
	return len >= 4 && !memcmp(buf, "k8s\0", 4);
}
