/*
 * json: the streaming JSON masker. A byte-level JSON state machine (no
 * tree, a fixed nesting stack) that tracks, per object, its kind and its
 * position (list item, watch event, Table row, nested), masks Secret
 * data/stringData values, runs every other string value through the
 * scanner (scan.c) as decoded bytes and re-escapes it the way the API
 * server does, and feeds last-applied annotations through a nested masker.
 * The rules it follows are in include/mcpgate/mask.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mcpgate/json.h"

#include "internal.h"

/* ---- limits ---- */

#define DEC_MAX	  4096 /* decoded string bytes batched around escapes */
#define CAP_MAX	  64   /* decoded bytes kept of keys, kinds and names */
#define MAX_DEPTH 512

enum { KD_NONE, KD_SECRET, KD_SLIST, KD_LIST, KD_OLIST, KD_TABLE, KD_OTHER }; /* kinds */
enum { P_UNKNOWN, P_SECRET, P_OTHER, P_NESTED };			      /* positions */
enum { R_PLAIN, R_ITEMS, R_ROWS, R_ROW };				      /* roles */
enum { M_NONE, M_DATA, M_SDATA };					      /* inherited masks */
enum {
	F_APIVERSION = 1,    /* has an apiVersion: an object of its own, not a plain field */
	F_DATA_UNMASKED = 2, /* a data/stringData member passed unmasked */
	F_DESC_UNMASKED = 4, /* ... in a descendant */
	F_NAME_SENS = 8,     /* "name" ends in a keyword: mask "value" (env) */
	F_COUNTED = 16,	     /* counted in stats->secrets */
};
enum {
	K_NONE,
	K_OTHER,
	K_KIND,
	K_APIVERSION,
	K_DATA,
	K_STRINGDATA,
	K_ITEMS,
	K_ROWS,
	K_OBJECT,
	K_NAME,
	K_VALUE,
	K_LASTAPPLIED,
};
enum {
	S_VALUE,     /* a value must come */
	S_VALUE_TOP, /* stream: another top-level value may come */
	S_ARR_FIRST, /* after '[' */
	S_KEY_FIRST, /* after '{' */
	S_KEY,	     /* after ',' in an object */
	S_COLON,
	S_AFTER, /* after a value inside a container */
	S_DONE,	 /* after the document: only whitespace */
	S_STR,
	S_ESC,
	S_UHEX,
	S_ULOW_BS, /* after a high surrogate: '\' of the low one */
	S_ULOW_U,
	S_UTF8, /* a UTF-8 sequence split across feeds */
	S_NUM,
	S_LIT,
};
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
/* What happens to the current scalar. */
enum { V_PASS, V_KEY, V_SCAN, V_DATA, V_SDATA, V_GENERIC, V_INNER, V_PLAINMASK };
enum { CAP_NONE, CAP_KIND, CAP_NAME };

struct frame {
	uint8_t is_obj, kind, pos, role, mask, flags, key, elem_pos;
	bool key_sens;
};

struct mg_mask_json {
	struct rules *rules_own;
	const struct rules *r;
	struct mg_mask_stats own_st;
	struct mg_mask_stats *st;
	struct mg_mask_err err;
	int rc;
	bool stream;
	uint8_t top_pos;
	unsigned level; /* 0, or 1 for a last-applied document */
	uint64_t off;	/* input offset of the current chunk */
	const char *chunk;
	uint8_t state, vmode, cap, num_st, esc_n, u8_len, lit_i;
	bool vmarked, capover, inner_failed;
	bool sfirst; /* nothing of the current string delivered yet */
	const char *lit;
	uint32_t cp, hi;
	char u8[4];
	unsigned caplen;
	char capbuf[CAP_MAX];
	unsigned dec_len;
	char dec[DEC_MAX];
	unsigned depth;
	struct frame stack[MAX_DEPTH];
	struct mg_mask_json *inner;
	struct out o;
	struct scan sc;
};

static void json_fail(struct mg_mask_json *m, const char *p, const char *reason)
{
	if (m->rc)
		return;
	m->rc = -EINVAL;
	m->err.reason = reason;
	m->err.pos = m->off + (p && m->chunk ? (uint64_t)(p - m->chunk) : 0);
}

static void json_reset(struct mg_mask_json *m, bool stream, uint8_t top_pos, unsigned level)
{
	m->rc = 0;
	m->err.reason = NULL;
	m->err.pos = 0;
	m->stream = stream;
	m->top_pos = top_pos;
	m->level = level;
	m->off = 0;
	m->chunk = NULL;
	m->depth = 0;
	m->state = stream ? S_VALUE_TOP : S_VALUE;
	m->hi = 0;
	m->u8_len = 0;
	m->dec_len = 0;
	m->o.len = m->o.ref_len = 0;
	m->o.err = 0;
	mg_scan_reset(&m->sc);
}

static struct mg_mask_json *json_alloc(const struct rules *r, struct mg_mask_stats *st,
				       bool count_out)
{
	struct mg_mask_json *m = malloc(sizeof(*m));

	if (!m)
		return NULL;
	memset(m, 0, offsetof(struct mg_mask_json, stack));
	m->inner = NULL;
	m->r = r;
	m->st = st ? st : &m->own_st;
	m->o.st = count_out ? m->st : NULL;
	m->sc.r = r;
	m->sc.st = m->st;
	m->sc.o = &m->o;
	m->sc.json = true;
	mg_scan_trigv_init(&m->sc.tv, r);
	return m;
}

static uint8_t classify_key(const char *k, size_t n, bool over)
{
#define IS(lit) (!memcmp(k, lit, sizeof(lit) - 1))
	if (over)
		return K_OTHER;
	switch (n) {
	case 4:
		return IS("kind")   ? K_KIND
		       : IS("data") ? K_DATA
		       : IS("name") ? K_NAME
		       : IS("rows") ? K_ROWS
				    : K_OTHER;
	case 5:
		return IS("items") ? K_ITEMS : IS("value") ? K_VALUE : K_OTHER;
	case 6:
		return IS("object") ? K_OBJECT : K_OTHER;
	case 10:
		return IS("apiVersion") ? K_APIVERSION : IS("stringData") ? K_STRINGDATA : K_OTHER;
	case 48:
		return IS("kubectl.kubernetes.io/last-applied-configuration") ? K_LASTAPPLIED
									      : K_OTHER;
	default:
		return K_OTHER;
	}
#undef IS
}

/* <s>[0..<n>) lowercased, non-alphanumerics dropped, ends in a generic keyword. */
static bool name_sensitive(const char *s, size_t n)
{
	size_t e = n;

	while (e && !is_alnum((uint8_t)s[e - 1]))
		e--;
	if (!e || !kw_last(lower((uint8_t)s[e - 1])))
		return false;
	for (size_t j = 0; j < sizeof(kw_generic) / sizeof(kw_generic[0]); j++) {
		const struct kw *kw = &kw_generic[j];
		size_t i = e, k = kw->len;
		bool same = true;

		/* compare backwards, skipping what is not alphanumeric */
		while (same && k && i) {
			uint8_t c = (uint8_t)s[--i];

			if (is_alnum(c))
				same = lower(c) == kw->s[--k];
		}
		if (same && !k)
			return true;
	}
	return false;
}

static bool nonsecret_by_pos(const struct frame *f)
{
	return f->pos == P_OTHER || (f->pos == P_NESTED && !(f->flags & F_APIVERSION));
}

/* Known not to be a Secret: objects nested in it are plain fields. */
static bool known_nonsecret(const struct frame *f)
{
	if (f->kind == KD_NONE)
		return nonsecret_by_pos(f);
	return f->kind != KD_SECRET;
}

/* The position its members of list/table/event role inherit. */
static uint8_t inherit_pos(const struct frame *f)
{
	if (f->pos == P_SECRET)
		return P_SECRET;
	return nonsecret_by_pos(f) ? f->pos : P_UNKNOWN;
}

static bool secret_for_data(const struct mg_mask_json *m, const struct frame *f)
{
	if (!m->r->secrets)
		return false;
	return f->kind == KD_SECRET || (f->kind == KD_NONE && !nonsecret_by_pos(f));
}

static uint8_t kind_of(const char *k, size_t n, bool over)
{
	if (over)
		return KD_OTHER;
	if (n == 6 && !memcmp(k, "Secret", 6))
		return KD_SECRET;
	if (n == 10 && !memcmp(k, "SecretList", 10))
		return KD_SLIST;
	if (n == 4 && !memcmp(k, "List", 4))
		return KD_LIST;
	if (n > 4 && !memcmp(k + n - 4, "List", 4))
		return KD_OLIST;
	if (n == 5 && !memcmp(k, "Table", 5))
		return KD_TABLE;
	return KD_OTHER;
}

/* What the value starting now is, from its container and member key. */
struct vctx {
	uint8_t smode;		    /* for a string */
	uint8_t scalar;		    /* for a number or boolean: V_PASS, V_DATA, V_SDATA */
	uint8_t cap;		    /* capture the decoded string */
	uint8_t pos;		    /* for an object or array */
	uint8_t arr_role, arr_elem; /* for an array */
	uint8_t obj_role;	    /* for an object */
	uint8_t mask;		    /* inherited mask for a container */
};

static void value_ctx(struct mg_mask_json *m, struct vctx *v)
{
	struct frame *f;

	memset(v, 0, sizeof(*v));
	v->smode = V_SCAN;
	v->scalar = V_PASS;
	if (!m->depth) {
		v->pos = m->top_pos;
		v->arr_elem = m->top_pos;
		return;
	}
	f = &m->stack[m->depth - 1];
	if (f->mask) {
		v->mask = f->mask;
		v->smode = v->scalar = f->mask == M_DATA ? V_DATA : V_SDATA;
		return;
	}
	if (!f->is_obj) {
		v->pos = v->arr_elem = f->elem_pos;
		v->obj_role = f->role == R_ROWS ? R_ROW : R_PLAIN;
		return;
	}
	v->pos = known_nonsecret(f) ? P_NESTED : P_UNKNOWN;
	v->arr_elem = v->pos;
	switch (f->key) {
	case K_DATA:
	case K_STRINGDATA:
		if (secret_for_data(m, f)) {
			v->mask = f->key == K_DATA ? M_DATA : M_SDATA;
			v->smode = v->scalar = f->key == K_DATA ? V_DATA : V_SDATA;
			if (!(f->flags & F_COUNTED)) {
				f->flags |= F_COUNTED;
				m->st->secrets++;
			}
			return;
		}
		if (m->r->secrets)
			f->flags |= F_DATA_UNMASKED;
		break;
	case K_ITEMS:
		if (f->kind == KD_NONE || f->kind == KD_SLIST || f->kind == KD_LIST ||
		    f->kind == KD_OLIST) {
			v->arr_role = R_ITEMS;
			v->arr_elem = f->kind == KD_SLIST   ? P_SECRET
				      : f->kind == KD_LIST  ? P_UNKNOWN
				      : f->kind == KD_OLIST ? P_OTHER
							    : inherit_pos(f);
		}
		break;
	case K_ROWS:
		if (f->kind == KD_NONE || f->kind == KD_TABLE) {
			v->arr_role = R_ROWS;
			v->arr_elem = inherit_pos(f);
		}
		break;
	case K_OBJECT:
		if (f->kind == KD_NONE && (m->depth == 1 || f->role == R_ROW))
			v->pos = inherit_pos(f);
		break;
	case K_KIND:
		v->cap = CAP_KIND;
		break;
	case K_NAME:
		v->cap = CAP_NAME;
		break;
	case K_VALUE:
		if ((f->flags & F_NAME_SENS) && m->r->on[MG_MASK_DET_GENERIC_PASSWORD])
			v->smode = V_GENERIC;
		break;
	case K_LASTAPPLIED:
		v->smode = m->level ? V_PLAINMASK : V_INNER;
		break;
	default:
		break;
	}
	if (f->key_sens && v->smode == V_SCAN)
		v->smode = V_GENERIC;
}

static void end_value(struct mg_mask_json *m)
{
	struct frame *f;

	if (!m->depth) {
		m->state = m->stream ? S_VALUE_TOP : S_DONE;
		return;
	}
	f = &m->stack[m->depth - 1];
	if (f->is_obj) {
		f->key = K_NONE;
		f->key_sens = false;
	}
	m->state = S_AFTER;
}

static void set_kind(struct mg_mask_json *m, const char *p)
{
	struct frame *f = &m->stack[m->depth - 1];
	uint8_t k = kind_of(m->capbuf, m->caplen, m->capover);

	if (f->kind == KD_SECRET || f->kind == KD_SLIST)
		return; /* a second "kind" never makes a Secret less of one */
	/* a Secret's values are its own data members; a SecretList's are its items' */
	if (m->r->secrets && ((k == KD_SECRET && (f->flags & F_DATA_UNMASKED)) ||
			      (k == KD_SLIST && (f->flags & F_DESC_UNMASKED)))) {
		json_fail(m, p, "a Secret's kind arrived after its data was passed unmasked");
		return;
	}
	f->kind = k;
}

static int esc_write(void *ctx, const char *p, size_t n)
{
	struct mg_mask_json *m = ctx;

	mg_scan_out_escaped(&m->o, p, n);
	return m->o.err;
}

static void inner_fail(struct mg_mask_json *m)
{
	m->inner_failed = true;
	if (!m->o.err)
		mg_scan_out_copy(&m->o, MG_MASK_STRING_MARKER, sizeof(MG_MASK_STRING_MARKER) - 1);
}

/* Starts the nested masker of a last-applied document. Its position is
 * unknown whatever encloses it: the annotation holds what was applied, not
 * the object it sits on (a PartialObjectMetadata in a Table row, a metadata
 * watch), and kubectl sorts its keys, so "data" comes before "kind": its
 * data is masked until its own kind says it is not a Secret. */
static void inner_begin(struct mg_mask_json *m)
{
	m->inner_failed = false;
	m->st->last_applied++;
	if (!m->inner) {
		m->inner = json_alloc(m->r, m->st, false);
		if (!m->inner) {
			m->inner_failed = true;
			m->rc = -ENOMEM;
			m->err.reason = "out of memory";
			return;
		}
	}
	json_reset(m->inner, false, P_UNKNOWN, m->level + 1);
}

static void inner_feed(struct mg_mask_json *m, const char *p, size_t n)
{
	struct mg_mask_sink s = {esc_write, m};

	if (!m->inner_failed && mg_mask_json_feed(m->inner, p, n, &s))
		inner_fail(m);
}

static void inner_end(struct mg_mask_json *m)
{
	struct mg_mask_sink s = {esc_write, m};

	if (!m->inner_failed && mg_mask_json_finish(m->inner, &s))
		inner_fail(m);
}

static void cap_add(struct mg_mask_json *m, const char *p, size_t n)
{
	size_t room = CAP_MAX - m->caplen;

	if (n > room) {
		m->capover = true;
		n = room;
	}
	memcpy(m->capbuf + m->caplen, p, n);
	m->caplen += (unsigned)n;
}

/* Decoded string bytes <p>[0..<n>); <clean>: raw input needing no escape. */
static void deliver(struct mg_mask_json *m, const char *p, size_t n, bool clean)
{
	m->sfirst = false;
	switch (m->vmode) {
	case V_KEY:
		cap_add(m, p, n);
		if (clean)
			out_ref(&m->o, p, n);
		else
			mg_scan_out_escaped(&m->o, p, n);
		break;
	case V_SCAN:
		if (m->cap)
			cap_add(m, p, n);
		mg_scan_block(&m->sc, p, n, clean);
		break;
	case V_INNER:
		inner_feed(m, p, n);
		break;
	default: /* masked whole: one marker for a non-empty value */
		if (m->vmarked || !n)
			break;
		m->vmarked = true;
		if (m->vmode == V_DATA) {
			mg_scan_out_copy(&m->o, MG_MASK_DATA_MARKER,
					 sizeof(MG_MASK_DATA_MARKER) - 1);
			m->st->secret_fields++;
		} else if (m->vmode == V_SDATA || m->vmode == V_PLAINMASK) {
			mg_scan_out_copy(&m->o, MG_MASK_STRING_MARKER,
					 sizeof(MG_MASK_STRING_MARKER) - 1);
			if (m->vmode == V_SDATA)
				m->st->secret_fields++;
		} else {
			mg_scan_emit_marker(&m->sc, MG_MASK_DET_GENERIC_PASSWORD);
		}
		break;
	}
}

/* Delivers the batched decoded bytes. */
static void dec_flush(struct mg_mask_json *m)
{
	if (m->dec_len) {
		unsigned n = m->dec_len;

		m->dec_len = 0;
		deliver(m, m->dec, n, false);
	}
}

/* Batches decoded bytes <p>[0..<n>): escapes and the runs between them go to
 * the scanner as one block instead of many tiny ones. */
static void dec_put(struct mg_mask_json *m, const char *p, size_t n)
{
	m->sfirst = false;
	if (n > DEC_MAX - m->dec_len)
		dec_flush(m);
	if (n >= DEC_MAX / 4) {
		deliver(m, p, n, false);
		return;
	}
	memcpy(m->dec + m->dec_len, p, n);
	m->dec_len += (unsigned)n;
}

static void string_end(struct mg_mask_json *m, const char *p)
{
	struct frame *f = m->depth ? &m->stack[m->depth - 1] : NULL;

	dec_flush(m);
	if (m->vmode == V_KEY) {
		f->key = classify_key(m->capbuf, m->caplen, m->capover);
		f->key_sens = f->key == K_OTHER && m->r->on[MG_MASK_DET_GENERIC_PASSWORD] &&
			      name_sensitive(m->capbuf, m->caplen);
		if (f->key == K_APIVERSION)
			f->flags |= F_APIVERSION;
		out_byte(&m->o, '"');
		m->state = S_COLON;
		return;
	}
	if (m->vmode == V_SCAN) {
		mg_scan_end(&m->sc);
		if (m->cap == CAP_KIND)
			set_kind(m, p);
		else if (m->cap == CAP_NAME && !m->capover &&
			 m->r->on[MG_MASK_DET_GENERIC_PASSWORD] &&
			 name_sensitive(m->capbuf, m->caplen))
			f->flags |= F_NAME_SENS;
	} else if (m->vmode == V_INNER) {
		inner_end(m);
	}
	out_byte(&m->o, '"');
	end_value(m);
}

/* Length of the valid UTF-8 sequence at <q> (RFC 3629), 0 if it is a valid
 * but incomplete prefix before <end>, -1 if invalid. */
static int utf8_seq(const uint8_t *q, const uint8_t *end)
{
	uint8_t c = q[0], lo = 0x80, hi = 0xbf;
	int n;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		if (c == 0xed) /* surrogates */
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		if (c == 0xf4)
			hi = 0x8f;
	} else {
		return -1;
	}
	for (int k = 1; k < n; k++) {
		uint8_t d;

		if (q + k >= end)
			return 0;
		d = q[k];
		if (k == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xbf))
			return -1;
	}
	return n;
}

static inline bool is_2028(const char *q)
{
	return (uint8_t)q[0] == 0xe2 && (uint8_t)q[1] == 0x80 &&
	       ((uint8_t)q[2] == 0xa8 || (uint8_t)q[2] == 0xa9);
}

static const char *do_string(struct mg_mask_json *m, const char *p, const char *end)
{
	while (p < end) {
		const char *q = scan_str(p, end);
		uint8_t c;
		int l;

		/* valid multi-byte characters continue the plain run */
		while (q < end && (uint8_t)*q >= 0x80) {
			l = utf8_seq((const uint8_t *)q, (const uint8_t *)end);
			if (l <= 0 || (l == 3 && is_2028(q)))
				break;
			q = scan_str(q + l, end);
		}
		if (q > p) {
			size_t n = (size_t)(q - p);

			if (q < end && *q == '"' && m->vmode == V_SCAN && m->sfirst &&
			    !m->dec_len && mg_scan_passes(&m->sc, (const uint8_t *)p, n)) {
				/* the whole string, nothing to detect: straight through */
				if (m->cap)
					cap_add(m, p, n);
				out_ref(&m->o, p, n);
				m->sc.pos += n;
				m->sfirst = false;
			} else if (!m->dec_len)
				deliver(m, p, (size_t)(q - p), true);
			else if ((size_t)(q - p) >= DEC_MAX / 4) {
				dec_flush(m);
				deliver(m, p, (size_t)(q - p), true);
			} else {
				dec_put(m, p, (size_t)(q - p));
			}
		}
		if (q == end)
			return end;
		c = (uint8_t)*q;
		if (c == '"') {
			string_end(m, q);
			return q + 1;
		}
		if (c == '\\') {
			m->state = S_ESC;
			return q + 1;
		}
		if (c < 0x20) {
			json_fail(m, q, "control character in a JSON string");
			return end;
		}
		if (c < 0x80) { /* < > &: Go escapes them */
			dec_put(m, q, 1);
			p = q + 1;
			continue;
		}
		l = utf8_seq((const uint8_t *)q, (const uint8_t *)end);
		if (l < 0) {
			json_fail(m, q, "invalid UTF-8 in a JSON string");
			return end;
		}
		if (!l) {
			m->u8_len = (uint8_t)(end - q);
			memcpy(m->u8, q, m->u8_len);
			m->state = S_UTF8;
			return end;
		}
		dec_put(m, q, (size_t)l);
		p = q + l;
	}
	return p;
}

static const char *do_utf8(struct mg_mask_json *m, const char *p, const char *end)
{
	while (p < end) {
		int l;

		m->u8[m->u8_len++] = *p++;
		l = utf8_seq((const uint8_t *)m->u8, (const uint8_t *)m->u8 + m->u8_len);
		if (l < 0) {
			json_fail(m, p - 1, "invalid UTF-8 in a JSON string");
			return end;
		}
		if (l > 0) {
			dec_put(m, m->u8, (size_t)l);
			m->u8_len = 0;
			m->state = S_STR;
			return p;
		}
	}
	return p;
}

static void deliver_cp(struct mg_mask_json *m, uint32_t cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	dec_put(m, u, n);
}

static const char *do_escape(struct mg_mask_json *m, const char *p, const char *end)
{
	while (p < end && m->state != S_STR && !m->rc) {
		char c = *p;
		char d;
		int h;

		switch (m->state) {
		case S_ESC:
			switch (c) {
			case '"':
			case '\\':
			case '/':
				d = c;
				break;
			case 'b':
				d = '\b';
				break;
			case 'f':
				d = '\f';
				break;
			case 'n':
				d = '\n';
				break;
			case 'r':
				d = '\r';
				break;
			case 't':
				d = '\t';
				break;
			case 'u':
				m->state = S_UHEX;
				m->esc_n = 0;
				m->cp = 0;
				p++;
				continue;
			default:
				json_fail(m, p, "invalid escape in a JSON string");
				return end;
			}
			p++;
			if (m->hi) {
				json_fail(m, p - 1, "unpaired UTF-16 surrogate escape");
				return end;
			}
			m->state = S_STR;
			dec_put(m, &d, 1);
			break;
		case S_UHEX:
			if (c >= '0' && c <= '9')
				h = c - '0';
			else if (c >= 'a' && c <= 'f')
				h = c - 'a' + 10;
			else if (c >= 'A' && c <= 'F')
				h = c - 'A' + 10;
			else {
				json_fail(m, p, "invalid \\u escape in a JSON string");
				return end;
			}
			p++;
			m->cp = m->cp << 4 | (uint32_t)h;
			if (++m->esc_n < 4)
				break;
			if (m->hi) {
				if (m->cp < 0xdc00 || m->cp > 0xdfff) {
					json_fail(m, p - 1, "unpaired UTF-16 surrogate escape");
					return end;
				}
				m->cp = 0x10000 + ((m->hi - 0xd800) << 10) + (m->cp - 0xdc00);
				m->hi = 0;
			} else if (m->cp >= 0xd800 && m->cp <= 0xdbff) {
				m->hi = m->cp;
				m->state = S_ULOW_BS;
				break;
			} else if (m->cp >= 0xdc00 && m->cp <= 0xdfff) {
				json_fail(m, p - 1, "unpaired UTF-16 surrogate escape");
				return end;
			}
			m->state = S_STR;
			deliver_cp(m, m->cp);
			break;
		case S_ULOW_BS:
			if (c != '\\') {
				json_fail(m, p, "unpaired UTF-16 surrogate escape");
				return end;
			}
			m->state = S_ULOW_U;
			p++;
			break;
		case S_ULOW_U:
			if (c != 'u') {
				json_fail(m, p, "unpaired UTF-16 surrogate escape");
				return end;
			}
			m->state = S_UHEX;
			m->esc_n = 0;
			m->cp = 0;
			p++;
			break;
		}
	}
	return p;
}

static bool num_complete(uint8_t st)
{
	return st == N_ZERO || st == N_INT || st == N_FRAC || st == N_EXP;
}

static void scalar_marker(struct mg_mask_json *m)
{
	out_byte(&m->o, '"');
	if (m->vmode == V_DATA)
		mg_scan_out_copy(&m->o, MG_MASK_DATA_MARKER, sizeof(MG_MASK_DATA_MARKER) - 1);
	else
		mg_scan_out_copy(&m->o, MG_MASK_STRING_MARKER, sizeof(MG_MASK_STRING_MARKER) - 1);
	out_byte(&m->o, '"');
	m->st->secret_fields++;
}

static void num_finish(struct mg_mask_json *m)
{
	if (m->vmode != V_PASS)
		scalar_marker(m);
	end_value(m);
}

static const char *do_number(struct mg_mask_json *m, const char *p, const char *end)
{
	const char *s = p;

	for (; p < end; p++) {
		char c = *p;
		bool dig = c >= '0' && c <= '9';

		switch (m->num_st) {
		case N_MINUS:
			if (!dig)
				goto bad;
			m->num_st = c == '0' ? N_ZERO : N_INT;
			continue;
		case N_ZERO:
		case N_INT:
			if (dig && m->num_st == N_INT)
				continue;
			if (dig)
				goto bad; /* leading zero */
			if (c == '.') {
				m->num_st = N_DOT;
				continue;
			}
			if (c == 'e' || c == 'E') {
				m->num_st = N_E;
				continue;
			}
			goto done;
		case N_DOT:
			if (!dig)
				goto bad;
			m->num_st = N_FRAC;
			continue;
		case N_FRAC:
			if (dig)
				continue;
			if (c == 'e' || c == 'E') {
				m->num_st = N_E;
				continue;
			}
			goto done;
		case N_E:
			if (c == '+' || c == '-') {
				m->num_st = N_ESIGN;
				continue;
			}
			if (!dig)
				goto bad;
			m->num_st = N_EXP;
			continue;
		case N_ESIGN:
			if (!dig)
				goto bad;
			m->num_st = N_EXP;
			continue;
		case N_EXP:
			if (dig)
				continue;
			goto done;
		}
	}
	if (m->vmode == V_PASS && p > s)
		out_ref(&m->o, s, (size_t)(p - s));
	return p;
done:
	if (m->vmode == V_PASS && p > s)
		out_ref(&m->o, s, (size_t)(p - s));
	num_finish(m);
	return p;
bad:
	json_fail(m, p, "invalid number");
	return end;
}

static const char *do_literal(struct mg_mask_json *m, const char *p, const char *end)
{
	const char *s = p;

	while (p < end && m->lit[m->lit_i]) {
		if (*p != m->lit[m->lit_i]) {
			json_fail(m, p, "invalid literal");
			return end;
		}
		p++;
		m->lit_i++;
	}
	if (m->vmode == V_PASS && p > s)
		out_ref(&m->o, s, (size_t)(p - s));
	if (!m->lit[m->lit_i]) {
		if (m->vmode != V_PASS)
			scalar_marker(m);
		end_value(m);
	}
	return p;
}

/* Starts the value at <p> and, where the chunk holds it, finishes it. */
static const char *begin_value(struct mg_mask_json *m, const char *p, const char *end)
{
	struct vctx v;
	char c = *p;

	value_ctx(m, &v);
	if (m->rc)
		return p;
	switch (c) {
	case '{':
	case '[': {
		struct frame *f;

		if (m->depth == MAX_DEPTH) {
			json_fail(m, p, "JSON nested too deeply");
			return p;
		}
		f = &m->stack[m->depth++];
		memset(f, 0, sizeof(*f));
		f->is_obj = c == '{';
		f->pos = v.pos;
		f->mask = v.mask;
		if (f->is_obj) {
			f->role = v.obj_role;
		} else {
			f->role = v.arr_role;
			f->elem_pos = v.arr_elem;
		}
		out_ref(&m->o, p, 1);
		m->state = f->is_obj ? S_KEY_FIRST : S_ARR_FIRST;
		return p + 1;
	}
	case '"':
		m->vmode = v.smode;
		m->cap = v.smode == V_SCAN ? v.cap : CAP_NONE;
		m->caplen = 0;
		m->capover = false;
		m->vmarked = false;
		m->sfirst = true;
		out_byte(&m->o, '"');
		if (v.smode == V_INNER)
			inner_begin(m);
		m->state = S_STR;
		return m->rc ? p : do_string(m, p + 1, end);
	case '-':
	case '0' ... '9':
		m->vmode = v.scalar;
		m->num_st = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
		if (m->vmode == V_PASS)
			out_ref(&m->o, p, 1);
		m->state = S_NUM;
		return do_number(m, p + 1, end);
	case 't':
	case 'f':
	case 'n':
		m->lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
		m->lit_i = 1;
		m->vmode = c == 'n' ? V_PASS : v.scalar;
		if (m->vmode == V_PASS)
			out_ref(&m->o, p, 1);
		m->state = S_LIT;
		return do_literal(m, p + 1, end);
	default:
		json_fail(m, p, "unexpected byte where a JSON value should start");
		return p;
	}
}

static void close_container(struct mg_mask_json *m, const char *p)
{
	struct frame *f = &m->stack[--m->depth];

	out_ref(&m->o, p, 1);
	if (m->depth && (f->flags & (F_DATA_UNMASKED | F_DESC_UNMASKED)))
		m->stack[m->depth - 1].flags |= F_DESC_UNMASKED;
	end_value(m);
}

static inline bool is_ws(char c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* Reads a member name whose opening quote is at <p> and, in the usual
 * compact shape "key":value, the colon and the start of the value too,
 * without going back through the dispatch loop (the hot path). Returns
 * the new position; the caller returns it when m->state >= S_STR (input
 * ran out inside the name or the value). */
static inline const char *take_key(struct mg_mask_json *m, const char *p, const char *end)
{
	m->vmode = V_KEY;
	m->caplen = 0;
	m->capover = false;
	out_byte(&m->o, '"');
	m->state = S_STR;
	p = do_string(m, p + 1, end);
	if (m->state >= S_STR)
		return p;
	if (end - p >= 2 && *p == ':' && !is_ws(p[1]) && !m->rc) {
		out_ref(&m->o, p, 1);
		m->state = S_VALUE;
		p = begin_value(m, p + 1, end);
	}
	return p;
}

static const char *do_struct(struct mg_mask_json *m, const char *p, const char *end)
{
	while (p < end && !m->rc) {
		char c = *p;
		struct frame *f;

		if (is_ws(c)) {
			const char *q = p + 1;

			while (q < end && is_ws(*q))
				q++;
			out_ref(&m->o, p, (size_t)(q - p));
			p = q;
			continue;
		}
		switch (m->state) {
		case S_ARR_FIRST:
			if (c == ']') {
				close_container(m, p);
				p++;
				continue;
			}
			p = begin_value(m, p, end);
			if (m->state >= S_STR)
				return p;
			continue;
		case S_VALUE:
		case S_VALUE_TOP:
			p = begin_value(m, p, end);
			if (m->state >= S_STR)
				return p;
			continue;
		case S_KEY_FIRST:
			if (c == '}') {
				close_container(m, p);
				p++;
				continue;
			}
			__attribute__((fallthrough));
		case S_KEY:
			if (c != '"') {
				json_fail(m, p, "expected a member name");
				return p;
			}
			p = take_key(m, p, end);
			if (m->state >= S_STR)
				return p;
			continue;
		case S_COLON:
			if (c != ':') {
				json_fail(m, p, "expected ':'");
				return p;
			}
			out_ref(&m->o, p, 1);
			m->state = S_VALUE;
			p++;
			continue;
		case S_AFTER:
			f = &m->stack[m->depth - 1];
			if (c == ',') {
				out_ref(&m->o, p, 1);
				p++;
				if (!f->is_obj) {
					m->state = S_VALUE;
					continue;
				}
				m->state = S_KEY;
				if (p == end || *p != '"')
					continue;
				/* the usual ,"key" without the dispatch */
				p = take_key(m, p, end);
				if (m->state >= S_STR)
					return p;
				continue;
			}
			if (c == (f->is_obj ? '}' : ']')) {
				close_container(m, p);
				p++;
				continue;
			}
			json_fail(m, p, "expected ',' or the end of the container");
			return p;
		default: /* S_DONE */
			json_fail(m, p, "data after the end of the JSON document");
			return p;
		}
	}
	return p;
}

struct mg_mask_json *mg_mask_json_new(const struct mg_mask_cfg *cfg,
				      const struct mg_mask_json_opts *opts)
{
	struct rules *r = mg_rules_new(cfg);
	struct mg_mask_json *m;
	uint8_t pos = P_UNKNOWN;

	if (!r)
		return NULL;
	m = json_alloc(r, NULL, true);
	if (!m) {
		free(r);
		return NULL;
	}
	m->rules_own = r;
	if (opts && opts->resource.len)
		pos = mg_str_eq(opts->resource, MG_STR("secrets")) ? P_SECRET : P_OTHER;
	json_reset(m, opts && opts->stream, pos, 0);
	return m;
}

int mg_mask_json_feed(struct mg_mask_json *m, const char *in, size_t len,
		      const struct mg_mask_sink *out)
{
	const char *p = in, *end = in + len;

	if (m->rc)
		return m->rc;
	m->o.sink = out;
	m->chunk = in;
	if (!m->level)
		m->st->bytes_in += len;
	while (p < end && !m->rc && !m->o.err) {
		switch (m->state) {
		case S_STR:
			p = do_string(m, p, end);
			break;
		case S_ESC:
		case S_UHEX:
		case S_ULOW_BS:
		case S_ULOW_U:
			p = do_escape(m, p, end);
			break;
		case S_UTF8:
			p = do_utf8(m, p, end);
			break;
		case S_NUM:
			p = do_number(m, p, end);
			break;
		case S_LIT:
			p = do_literal(m, p, end);
			break;
		default:
			p = do_struct(m, p, end);
			break;
		}
	}
	if (!m->rc)
		dec_flush(m);
	mg_scan_out_flush(&m->o);
	if (!m->rc && m->o.err) {
		m->rc = m->o.err;
		m->err.reason = "output sink failed";
	}
	m->off += len;
	m->chunk = NULL;
	return m->rc;
}

int mg_mask_json_finish(struct mg_mask_json *m, const struct mg_mask_sink *out)
{
	if (m->rc)
		return m->rc;
	m->o.sink = out;
	if (m->state == S_NUM && !m->depth) {
		if (num_complete(m->num_st))
			num_finish(m);
		else
			json_fail(m, NULL, "invalid number");
	}
	if (!m->rc && m->state != S_DONE && !(m->stream && m->state == S_VALUE_TOP))
		json_fail(m, NULL, "incomplete JSON document");
	mg_scan_out_flush(&m->o);
	if (!m->rc && m->o.err) {
		m->rc = m->o.err;
		m->err.reason = "output sink failed";
	}
	return m->rc;
}

const struct mg_mask_stats *mg_mask_json_stats(const struct mg_mask_json *m)
{
	return m->st;
}

const struct mg_mask_err *mg_mask_json_error(const struct mg_mask_json *m)
{
	return &m->err;
}

void mg_mask_json_free(struct mg_mask_json *m)
{
	if (!m)
		return;
	if (m->inner)
		mg_mask_json_free(m->inner);
	free(m->rules_own);
	free(m);
}
