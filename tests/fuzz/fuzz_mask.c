/*
 * libFuzzer target for the mask module. Input: a mode byte, a split byte,
 * then the body. Modes:
 *  0  the body as one JSON document (resource hint from the split byte):
 *     jansson-valid in must give valid JSON out, unchanged when nothing was
 *     masked; a second run split at a fuzz-chosen point must agree;
 *  1  the same as a watch stream (NDJSON), each output line valid JSON;
 *  2  a Secret value planted in a structure built around the body (the
 *     body as a JSON value, or as a string): kind before/after data,
 *     SecretList, List, watch, Table, last-applied annotation; the planted
 *     value must never be in the output, plain or in any string of it,
 *     whatever the masker's verdict;
 *  3  the body as text with a planted secret (token, key, PEM, JWT,
 *     password) spliced in at a fuzz-chosen place: the secret part must not
 *     survive, and any split gives the same output;
 *  4  the body as text, then a planted secret cut short by the end of the
 *     stream (finish, or a flush then finish): its cut part must not survive.
 * Mode 2 also plants into last-applied documents (sorted keys) on a
 * PartialObjectMetadata, alone, in a Table row or in a metadata watch.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "../../userspace/mask/rules.c"
#include "../../userspace/mask/scan.c"
#include "../../userspace/mask/json.c"
#include "../../userspace/mask/body.c"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

struct sbuf {
	char *p;
	size_t len, cap;
};

static int sbuf_write(void *ctx, const char *p, size_t n)
{
	struct sbuf *b = ctx;

	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		CHECK(b->p);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
	return 0;
}

/* Exact-size copy, so ASan flags any read past the bytes the masker got. */
static char *copy(const void *d, size_t n)
{
	char *p = malloc(n ? n : 1);

	CHECK(p);
	if (n)
		memcpy(p, d, n);
	return p;
}

static const char *last_reason;

static int run_json(const char *doc, size_t len, size_t cut, bool stream, const char *res,
		    struct sbuf *out, struct mg_mask_stats *st)
{
	struct mg_mask_json_opts o = {.stream = stream, .resource = mg_str_of(res)};
	struct mg_mask_json *m = mg_mask_json_new(NULL, &o);
	struct mg_mask_sink s = {sbuf_write, out};
	char *a, *b;
	int rc;

	CHECK(m);
	if (cut > len)
		cut = len;
	a = copy(doc, cut);
	b = copy(doc + cut, len - cut);
	rc = mg_mask_json_feed(m, a, cut, &s);
	if (!rc)
		rc = mg_mask_json_feed(m, b, len - cut, &s);
	if (!rc)
		rc = mg_mask_json_finish(m, &s);
	if (st)
		*st = *mg_mask_json_stats(m);
	last_reason = rc ? mg_mask_json_error(m)->reason : NULL;
	free(a);
	free(b);
	mg_mask_json_free(m);
	if (!out->p)
		sbuf_write(out, "", 0);
	return rc;
}

static bool masked_nothing(const struct mg_mask_stats *st)
{
	for (unsigned i = 0; i < MG_MASK_DET_MAX; i++)
		if (st->hits[i])
			return false;
	return !st->secret_fields && !st->last_applied;
}

static int depth_of(const uint8_t *d, size_t n)
{
	int depth = 0, max = 0;
	bool in_str = false;

	for (size_t i = 0; i < n; i++) {
		if (in_str) {
			if (d[i] == '\\')
				i++;
			else if (d[i] == '"')
				in_str = false;
		} else if (d[i] == '"') {
			in_str = true;
		} else if (d[i] == '{' || d[i] == '[') {
			if (++depth > max)
				max = depth;
		} else if (d[i] == '}' || d[i] == ']') {
			depth--;
		}
	}
	return max;
}

static void mode_json(const uint8_t *d, size_t n, uint8_t k, bool stream)
{
	static const char *const hints[] = {"", "secrets", "configmaps"};
	const char *res = hints[k % 3];
	struct sbuf o1 = {0}, o2 = {0};
	struct mg_mask_stats st;
	int rc1 = run_json((const char *)d, n, n, stream, res, &o1, &st);
	int rc2 = run_json((const char *)d, n, (size_t)k * n / 255, stream, res, &o2, NULL);
	json_error_t e;

	/* the verdict and what is written do not depend on the split; after an
	 * error only how far the output got may differ (both are prefixes of
	 * the same masked stream) */
	CHECK(rc1 == rc2);
	if (!rc1)
		CHECK(o1.len == o2.len && !memcmp(o1.p, o2.p, o1.len));
	else
		CHECK(!memcmp(o1.p, o2.p, o1.len < o2.len ? o1.len : o2.len));
	if (!stream) {
		json_t *in = json_loadb((const char *)d, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);

		/* jansson stops at a raw NUL (never valid JSON): no verdict to compare */
		if (in && depth_of(d, n) < MAX_DEPTH && !memchr(d, 0, n)) {
			json_t *out;

			/* valid JSON is refused only for a Secret kind after unmasked data */
			CHECK(rc1 == 0 || (last_reason && strstr(last_reason, "Secret's kind")));
			if (rc1)
				goto done;
			out = json_loadb(o1.p, o1.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
			CHECK(out);
			if (masked_nothing(&st))
				CHECK(json_equal(in, out));
			json_decref(out);
		}
	done:
		json_decref(in);
	} else if (!rc1) {
		/* every top-level value of the output is valid JSON */
		size_t flags = JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY | JSON_ALLOW_NUL;
		const char *p = o1.p, *end = o1.p + o1.len;

		while (p < end) {
			json_t *v;

			while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
				p++;
			if (p == end)
				break;
			v = json_loadb(p, (size_t)(end - p), flags, &e);
			if (!v)
				break; /* e.g. numbers jansson cannot hold; not ours to judge */
			json_decref(v);
			CHECK(e.position > 0);
			p += e.position;
		}
	}
	free(o1.p);
	free(o2.p);
}

/* True if <plant> is in any string of <j>, or of JSON held in one of them. */
static bool tree_has(json_t *j, const char *plant, int depth)
{
	const char *key;
	json_t *v;
	size_t i;

	if (depth > 4)
		return false;
	if (json_is_string(j)) {
		const char *s = json_string_value(j);
		json_error_t e;
		json_t *inner;
		bool hit;

		if (strstr(s, plant))
			return true;
		inner = json_loads(s, JSON_DECODE_ANY, &e);
		hit = inner && tree_has(inner, plant, depth + 1);
		json_decref(inner);
		return hit;
	}
	if (json_is_object(j)) {
		json_object_foreach(j, key, v) if (strstr(key, plant) ||
						   tree_has(v, plant, depth)) return true;
	}
	if (json_is_array(j)) {
		json_array_foreach(j, i, v) if (tree_has(v, plant, depth)) return true;
	}
	return false;
}

static void mode_plant(const uint8_t *d, size_t n, uint8_t k)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char plant[33];
	uint32_t h = 2166136261u;
	json_error_t e;
	json_t *v = json_loadb((const char *)d, n, JSON_DECODE_ANY, &e), *secret, *doc;
	const char *res = "";
	bool stream = false;
	char *text;
	struct sbuf out = {0};
	int rc;

	/* a value that depends on the input, so no constant can match it */
	for (size_t i = 0; i < n; i++)
		h = (h ^ d[i]) * 16777619u;
	for (int i = 0; i < 32; i++) {
		h = h * 1103515245u + 12345u;
		plant[i] = b64[(h >> 16) & 63];
	}
	plant[32] = 0;
	if (!v) { /* not JSON: the bytes as a string (ASCII, so it stays valid UTF-8) */
		char *a = copy(d, n);

		for (size_t i = 0; i < n; i++)
			if ((uint8_t)a[i] >= 0x80)
				a[i] = '?';
		v = json_stringn(a, n);
		free(a);
	}
	CHECK(v);
	secret = json_pack("{s:s}", "k", plant);
	switch (k % 10) {
	case 0:
		doc = json_pack("{s:s,s:s,s:O,s:o}", "apiVersion", "v1", "kind", "Secret", "extra",
				v, "data", secret);
		text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
		break;
	case 1: /* sorted keys: data before kind, as in unstructured objects */
		doc = json_pack("{s:s,s:s,s:O,s:o}", "apiVersion", "v1", "kind", "Secret", "extra",
				v, "stringData", secret);
		text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
		break;
	case 2:
		doc = json_pack("{s:s,s:[{s:O,s:o}]}", "kind", "SecretList", "items", "metadata", v,
				"data", secret);
		text = json_dumps(doc,
				  JSON_COMPACT | ((k & 8) ? JSON_SORT_KEYS : JSON_PRESERVE_ORDER));
		break;
	case 3:
		doc = json_pack("{s:s,s:[O,{s:s,s:O,s:o}]}", "kind", "List", "items", v, "kind",
				"Secret", "x", v, "data", secret);
		text = json_dumps(doc,
				  JSON_COMPACT | ((k & 8) ? JSON_SORT_KEYS : JSON_PRESERVE_ORDER));
		break;
	case 4: {
		char *a = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		json_t *ev = json_pack("{s:s,s:{s:O,s:o}}", "type", "ADDED", "object", "metadata",
				       v, "data", secret);
		char *b = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
		size_t al = strlen(a), bl = strlen(b);

		doc = ev;
		text = malloc(al + bl + al + 4);
		CHECK(text);
		memcpy(text, a, al);
		text[al] = '\n';
		memcpy(text + al + 1, b, bl);
		text[al + 1 + bl] = '\n';
		memcpy(text + al + bl + 2, a, al);
		text[al + bl + al + 2] = '\n';
		text[al + bl + al + 3] = 0;
		free(a);
		free(b);
		res = "secrets";
		stream = true;
		break;
	}
	case 5:
		doc = json_pack("{s:s,s:[{s:[O],s:{s:O,s:o}}]}", "kind", "Table", "rows", "cells",
				v, "object", "metadata", v, "data", secret);
		text = json_dumps(doc,
				  JSON_COMPACT | ((k & 8) ? JSON_SORT_KEYS : JSON_PRESERVE_ORDER));
		res = "secrets";
		break;
	case 7:	  /* last-applied on a PartialObjectMetadata (as=PartialObjectMetadata) */
	case 8:	  /* ... in a Table row (includeObject=Metadata, what kubectl get asks) */
	case 9: { /* ... in a metadata-only watch event */
		json_t *la = json_pack("{s:s,s:s,s:O,s:o}", "apiVersion", "v1", "kind", "Secret",
				       "metadata", v, (k & 16) ? "stringData" : "data", secret);
		char *las = json_dumps(la, JSON_COMPACT | JSON_SORT_KEYS);
		json_t *pom = json_pack("{s:s,s:s,s:{s:s,s:{s:s}}}", "kind",
					"PartialObjectMetadata", "apiVersion", "meta.k8s.io/v1",
					"metadata", "name", "s", "annotations",
					"kubectl.kubernetes.io/last-applied-configuration", las);

		free(las);
		json_decref(la);
		res = (k & 32) ? "secrets" : "";
		if (k % 10 == 7) {
			doc = pom;
		} else if (k % 10 == 8) {
			doc = json_pack("{s:s,s:[{s:[O],s:o}]}", "kind", "Table", "rows", "cells",
					v, "object", pom);
		} else {
			doc = json_pack("{s:s,s:o}", "type", "ADDED", "object", pom);
			stream = true;
		}
		text = json_dumps(doc,
				  JSON_COMPACT | ((k & 8) ? JSON_SORT_KEYS : JSON_PRESERVE_ORDER));
		if (stream) {
			size_t tl = strlen(text);

			text = realloc(text, tl + 2);
			CHECK(text);
			text[tl] = '\n';
			text[tl + 1] = 0;
		}
		break;
	}
	default: {
		json_t *la = json_pack("{s:s,s:s,s:O,s:o}", "apiVersion", "v1", "kind", "Secret",
				       "metadata", v, "data", secret);
		char *las = json_dumps(la, JSON_COMPACT | JSON_SORT_KEYS);

		doc = json_pack("{s:s,s:{s:{s:s}},s:O}", "kind", "Secret", "metadata",
				"annotations", "kubectl.kubernetes.io/last-applied-configuration",
				las, "x", v);
		text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
		free(las);
		json_decref(la);
		break;
	}
	}
	CHECK(text);
	rc = run_json(text, strlen(text), (size_t)k * strlen(text) / 255, stream, res, &out, NULL);
	/* whatever the verdict, the planted value never got out */
	CHECK(!memmem(out.p, out.len, plant, 32));
	if (!rc && !stream) {
		json_t *o = json_loadb(out.p, out.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);

		if (o) /* NULL only for numbers jansson cannot hold */
			CHECK(!tree_has(o, plant, 0));
		json_decref(o);
	}
	free(text);
	free(out.p);
	json_decref(doc);
	json_decref(v);
}

static const struct {
	const char *before, *secret, *after;
} plants[] = {
	{"key=", "ghp_", "Q1w2E3r4T5y6U7i8O9p0AaSsDdFfGgHhJjKk"},
	{"", "AKIA", "Z7VRSQ5TAVXHXYZQ"},
	{"-----BEGIN RSA PRIVATE KEY-----\n", "", "MIIEpAIBAAKCAQEAsecretbody\n"},
	{"Bearer ", "eyJ", "hbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4eXoifQ.Zm9vYmFyYmF6cXV4"},
	{"DB_PASSWORD=", "", "Hunter2Hunter2x"},
	{"glpat-", "", "Ab3De6Gh9Jk2Mn5Pq8St"},
	{"id AKIAZ7VRSQ5TAVXHXYZQ secret ", "", "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"},
};

static size_t count(const char *h, size_t hl, const char *n, size_t nl)
{
	size_t c = 0;

	for (const char *p = h; h && (p = memmem(p, hl - (size_t)(p - h), n, nl)); p++)
		c++;
	return c;
}

/*
 * The body as text, then a planted token cut short by the end of the stream
 * (finish, or an idle flush then finish): the token's cut body after its
 * public part must not survive (a run near a key id only from 20 chars on).
 */
static void mode_cut(const uint8_t *d, size_t n, uint8_t k)
{
	unsigned which = k % (sizeof(plants) / sizeof(plants[0]));
	const char *bf = plants[which].before, *sp = plants[which].secret,
		   *af = plants[which].after;
	size_t bl = strlen(bf), sl = strlen(sp), al = strlen(af);
	size_t min = which == 6 ? 20 : 1, cut = min + (size_t)(k >> 3) % (al - min);
	size_t len = n + 1 + bl + sl + cut, tail = bl + sl < 6 ? bl + sl : 6;
	char *in = malloc(len + 1), *needle = malloc(tail + cut + 1);
	struct sbuf o = {0};
	struct mg_mask_sink s = {sbuf_write, &o};
	struct mg_mask_text *t = mg_mask_text_new(NULL);

	CHECK(in && needle && t);
	memcpy(in, d, n);
	in[n] = ' ';
	memcpy(in + n + 1, bf, bl);
	memcpy(in + n + 1 + bl, sp, sl);
	memcpy(in + n + 1 + bl + sl, af, cut);
	in[len] = 0;
	/* the last bytes before the body, then the cut body */
	memcpy(needle, in + len - cut - tail, tail + cut);
	needle[tail + cut] = 0;
	CHECK(mg_mask_text_feed(t, in, len, &s) == 0);
	if (k & 4)
		CHECK(mg_mask_text_flush(t, &s) == 0);
	CHECK(mg_mask_text_finish(t, &s) == 0);
	CHECK(count(o.p, o.len, needle, tail + cut) < count(in, len, needle, tail + cut));
	mg_mask_text_free(t);
	free(in);
	free(needle);
	free(o.p);
}

static void mode_text(const uint8_t *d, size_t n, uint8_t k)
{
	unsigned which = k % (sizeof(plants) / sizeof(plants[0]));
	const char *bf = plants[which].before, *sp = plants[which].secret,
		   *af = plants[which].after;
	size_t at = n ? (size_t)k * n / 255 : 0, bl = strlen(bf), sl = strlen(sp), al = strlen(af);
	size_t len = n + bl + sl + al + (which == 2 ? 30 : 0);
	char *in = malloc(len + 1), *a, *b;
	struct sbuf o1 = {0}, o2 = {0};
	struct mg_mask_sink s1 = {sbuf_write, &o1}, s2 = {sbuf_write, &o2};
	struct mg_mask_text *t;
	size_t cut, pos = 0;

	CHECK(in);
	if (at > n)
		at = n;
	memcpy(in, d, at);
	pos = at;
	memcpy(in + pos, bf, bl);
	pos += bl;
	memcpy(in + pos, sp, sl);
	pos += sl;
	memcpy(in + pos, af, al);
	pos += al;
	if (which == 2) {
		memcpy(in + pos, "-----END RSA PRIVATE KEY-----\n", 30);
		pos += 30;
	}
	memcpy(in + pos, d + at, n - at);
	pos += n - at;
	CHECK(pos == len);

	t = mg_mask_text_new(NULL);
	a = copy(in, len);
	CHECK(mg_mask_text_feed(t, a, len, &s1) == 0);
	CHECK(mg_mask_text_finish(t, &s1) == 0);
	mg_mask_text_free(t);
	free(a);
	/* the planted secret never survives (the body may hold copies of its own) */
	CHECK(count(o1.p, o1.len, af, al) < count(in, len, af, al));

	/* split at a point that depends on the input: same bytes out */
	cut = len ? (at * 7 + 3) % (len + 1) : 0;
	t = mg_mask_text_new(NULL);
	a = copy(in, cut);
	b = copy(in + cut, len - cut);
	CHECK(mg_mask_text_feed(t, a, cut, &s2) == 0);
	CHECK(mg_mask_text_feed(t, b, len - cut, &s2) == 0);
	CHECK(mg_mask_text_finish(t, &s2) == 0);
	mg_mask_text_free(t);
	CHECK(o1.len == o2.len && (!o1.len || !memcmp(o1.p, o2.p, o1.len)));
	free(a);
	free(b);
	free(in);
	free(o1.p);
	free(o2.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	switch (data[0] % 5) {
	case 0:
		mode_json(data + 2, size - 2, data[1], false);
		break;
	case 1:
		mode_json(data + 2, size - 2, data[1], true);
		break;
	case 2:
		mode_plant(data + 2, size - 2, data[1]);
		break;
	case 3:
		mode_text(data + 2, size - 2, data[1]);
		break;
	default:
		mode_cut(data + 2, size - 2, data[1]);
		break;
	}
	return 0;
}
