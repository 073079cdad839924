/*
 * scan: the detector scanner over a decoded byte stream, the buffered output
 * it writes to, and the text maskers built on it (text streams, exec/attach
 * channels). What is masked, and why the ordering strategy is safe, is in
 * include/mcpgate/mask.h.
 *
 * The scanner is the heart of both modes. It sees decoded bytes (for JSON:
 * the string's value after unescaping) and decides per byte, so any split of
 * the input gives the same output. Detectors never need the bytes of a
 * prefix back (a prefix like `ghp_` is public and stays in the output): a
 * prefix is recognised by looking back at the last bytes of the segment
 * when its last byte arrives, and only the body after it is held until the
 * candidate is decided. That keeps the hold small (a JWT's header+payload at
 * worst, capped) and lets text be written as it arrives.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mcpgate/scan.h"

#include "internal.h"

/* ---- output: buffered, with zero-copy runs of input ---- */

static void out_sink(struct out *o, const char *p, size_t n)
{
	int rc;

	if (o->err || !n)
		return;
	rc = o->sink->write(o->sink->ctx, p, n);
	if (rc < 0)
		o->err = rc;
	else if (o->st)
		o->st->bytes_out += n;
}

void mg_scan_out_flush(struct out *o)
{
	if (o->len) {
		out_sink(o, o->buf, o->len);
		o->len = 0;
	}
	if (o->ref_len) {
		out_sink(o, o->ref, o->ref_len);
		o->ref_len = 0;
	}
}

void mg_scan_out_copy(struct out *o, const char *p, size_t n)
{
	if (o->ref_len)
		mg_scan_out_flush(o);
	if (n > OUTBUF - o->len) {
		mg_scan_out_flush(o);
		if (n >= OUTBUF) {
			out_sink(o, p, n);
			return;
		}
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

/* Bytes a JSON string cannot hold raw, or that Go's encoder escapes (the
 * HTML-significant <, >, & and U+2028/U+2029): escaping them the same way
 * keeps API-server output byte-identical through the masker. */
static const uint8_t esc_need[256] = {
	[0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, ['<'] = 1, ['>'] = 1, ['&'] = 1, [0xe2] = 1,
};

/* Writes the decoded string bytes <p>[0..<n>) JSON-escaped. <p> never splits
 * a UTF-8 sequence (the scanner only cuts at ASCII bytes). */
void mg_scan_out_escaped(struct out *o, const char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, run = 0;

	while (i < n) {
		uint8_t c;
		char e[8];
		size_t el = 2;

		i = (size_t)(scan_str(p + i, p + n) - p);
		if (i == n)
			break;
		c = (uint8_t)p[i];
		if (!esc_need[c]) {
			i++;
			continue;
		}
		if (c == 0xe2) {
			if (!(i + 2 < n && (uint8_t)p[i + 1] == 0x80 &&
			      ((uint8_t)p[i + 2] == 0xa8 || (uint8_t)p[i + 2] == 0xa9))) {
				i++;
				continue;
			}
		}
		if (i > run)
			mg_scan_out_copy(o, p + run, i - run);
		e[0] = '\\';
		switch (c) {
		case '"':
		case '\\':
			e[1] = (char)c;
			break;
		case '\n':
			e[1] = 'n';
			break;
		case '\r':
			e[1] = 'r';
			break;
		case '\t':
			e[1] = 't';
			break;
		case '\b':
			e[1] = 'b';
			break;
		case '\f':
			e[1] = 'f';
			break;
		case 0xe2:
			memcpy(e + 1, (uint8_t)p[i + 2] == 0xa8 ? "u2028" : "u2029", 5);
			el = 6;
			i += 2;
			break;
		default:
			e[1] = 'u';
			e[2] = '0';
			e[3] = '0';
			e[4] = hex[c >> 4];
			e[5] = hex[c & 15];
			el = 6;
			break;
		}
		mg_scan_out_copy(o, e, el);
		i++;
		run = i;
	}
	if (n > run)
		mg_scan_out_copy(o, p + run, n - run);
}

/* ---- scanner: the detectors over a decoded byte stream ---- */

void mg_scan_trigv_init(struct trigv *tv, const struct rules *r)
{
	tv->n = r->ntrig;
#ifdef __SSE2__
	for (unsigned k = 0; k < tv->n; k++)
		tv->t[k] = _mm_set1_epi8((char)r->trigs[k]);
#endif
}

void mg_scan_reset(struct scan *sc)
{
	sc->pos = 0;
	sc->lb_len = 0;
	sc->kw = KW_NONE;
	sc->near = 0;
	sc->nc = sc->ns = 0;
	sc->hold_len = 0;
	sc->blk = NULL;
	sc->e_lo = sc->e_hi = 0;
}

/* Byte <d> positions before block index <i> in the segment, or -1. */
static inline int lookback(const struct scan *sc, size_t i, size_t d)
{
	if (d <= i)
		return sc->blk[i - d];
	d -= i;
	if (d <= sc->lb_len)
		return sc->lb[sc->lb_len - d];
	return -1;
}

/* True if the <n> bytes before block index <i> are <s>. */
static bool lb_ends_with(const struct scan *sc, size_t i, const char *s, size_t n)
{
	for (size_t k = 1; k <= n; k++)
		if (lookback(sc, i, k) != (uint8_t)s[n - k])
			return false;
	return true;
}

/* Keeps at least the last LB_MAX bytes; no detector looks back further, so
 * what a lookback sees never depends on how the input was cut. */
static void lb_push(struct scan *sc, const uint8_t *p, size_t n)
{
	if (n >= LB_MAX) {
		memcpy(sc->lb, p + n - LB_MAX, LB_MAX);
		sc->lb_len = LB_MAX;
		return;
	}
	if (sc->lb_len + n > LB_BUF) {
		size_t keep = LB_MAX - n;

		memmove(sc->lb, sc->lb + sc->lb_len - keep, keep);
		sc->lb_len = (unsigned)keep;
	}
	memcpy(sc->lb + sc->lb_len, p, n);
	sc->lb_len += (unsigned)n;
}

/* Writes the block's pending range. */
static void pend_flush(struct scan *sc)
{
	if (sc->e_hi > sc->e_lo) {
		const char *p = (const char *)sc->blk + sc->e_lo;
		size_t n = sc->e_hi - sc->e_lo;

		if (sc->clean)
			out_ref(sc->o, p, n);
		else if (sc->json)
			mg_scan_out_escaped(sc->o, p, n);
		else
			mg_scan_out_copy(sc->o, p, n);
	}
	sc->e_lo = sc->e_hi;
}

static inline void pend_byte(struct scan *sc, size_t i)
{
	if (sc->e_hi != i) {
		pend_flush(sc);
		sc->e_lo = i;
	}
	sc->e_hi = i + 1;
}

static void hold_emit(struct scan *sc, size_t n)
{
	pend_flush(sc);
	if (sc->json)
		mg_scan_out_escaped(sc->o, sc->hold, n);
	else
		mg_scan_out_copy(sc->o, sc->hold, n);
	memmove(sc->hold, sc->hold + n, sc->hold_len - n);
	sc->hold_len -= n;
	sc->hold_pos += n;
}

static uint64_t cand_min_start(const struct scan *sc)
{
	uint64_t m = UINT64_MAX;

	for (unsigned j = 0; j < sc->nc; j++)
		if (sc->c[j].start < m)
			m = sc->c[j].start;
	return m;
}

/* Writes held bytes no remaining candidate covers. */
static void hold_release(struct scan *sc)
{
	uint64_t m = cand_min_start(sc);
	size_t n = sc->hold_len;

	if (m != UINT64_MAX && m - sc->hold_pos < n)
		n = (size_t)(m - sc->hold_pos);
	if (n)
		hold_emit(sc, n);
}

/* True if the held bytes end with <s> (the body of the candidate deciding now). */
static bool hold_tail_is(const struct scan *sc, const char *s)
{
	size_t n = strlen(s);

	return sc->hold_len >= n && !memcmp(sc->hold + sc->hold_len - n, s, n);
}

void mg_scan_emit_marker(struct scan *sc, unsigned det)
{
	pend_flush(sc);
	mg_scan_out_copy(sc->o, sc->r->marker[det], sc->r->marker_len[det]);
	sc->st->hits[det]++;
}

/* Adds the swallower that continues candidate <c>'s hit. */
static void sw_from_cand(struct scan *sc, const struct cand *c)
{
	const struct rules *r = sc->r;
	struct swal *s = &sc->s[sc->ns++];

	memset(s, 0, sizeof(*s));
	s->type = SW_RUN;
	switch (c->type) {
	case CT_TOK:
		s->set = r->tok[c->tok].set;
		s->n = c->n;
		s->max = r->tok[c->tok].max;
		break;
	case CT_JWT:
		s->set = c->phase == JP_SIG ? r->set_jwt_sig : r->set_jwt_any;
		break;
	default:
		s->set = r->set_aws_sw;
		if (c->fallback) {
			s = &sc->s[sc->ns++];
			memset(s, 0, sizeof(*s));
			s->type = SW_GENERIC;
		}
		break;
	}
}

/*
 * A hit of detector <det>: writes its marker in place of everything held,
 * and swallows from here while <prim> or any undecided candidate would still
 * go on (their bytes so far are under the marker, so their rest must be too).
 */
static void commit(struct scan *sc, unsigned det, const struct swal *prim)
{
	mg_scan_emit_marker(sc, det);
	sc->hold_len = 0;
	sc->ns = 0;
	if (prim)
		sc->s[sc->ns++] = *prim;
	for (unsigned j = 0; j < sc->nc; j++)
		sw_from_cand(sc, &sc->c[j]);
	sc->nc = 0;
	sc->kw = KW_NONE;
	if (det == MG_MASK_DET_AWS_ACCESS_KEY && sc->r->on[MG_MASK_DET_AWS_SECRET_KEY])
		sc->near = AWS_NEAR;
}

/* Steps the PEM END matcher over swallowed byte <b>; false ends the swallow. */
static bool pem_swallow(struct swal *s, uint8_t b)
{
	if (s->pst == PS_DONE || ++s->total > PEM_MAX_SWALLOW)
		return false;
	switch (s->pst) {
	case PS_DASH:
		if (b != '-')
			s->pn = 0;
		else if (++s->pn >= 5)
			s->pst = PS_END, s->pn = 0;
		break;
	case PS_END:
		if (b == "END "[s->pn]) {
			if (++s->pn == 4)
				s->pst = PS_LABEL, s->endlen = 0;
		} else if (!(b == '-' && !s->pn)) {
			s->pst = PS_DASH;
			s->pn = b == '-';
		}
		break;
	case PS_LABEL:
		if (((b >= 'A' && b <= 'Z') || b == ' ') && s->endlen < 48)
			s->endbuf[s->endlen++] = (char)b;
		else if (b == '-')
			s->pst = PS_CLOSE, s->pn = 1;
		else
			s->pst = PS_DASH, s->pn = 0;
		break;
	case PS_CLOSE:
		if (b != '-')
			s->pst = PS_DASH, s->pn = 0;
		else if (++s->pn == 5)
			s->pst = PS_DONE;
		break;
	}
	return true;
}

static bool swallow_one(const struct scan *sc, struct swal *s, uint8_t b)
{
	(void)sc;
	switch (s->type) {
	case SW_RUN:
		if ((s->max && s->n >= s->max) || !in_set(s->set, b))
			return false;
		s->n++;
		return true;
	case SW_GENERIC:
		if (b == '"' || b == '\'' || b == '\n' || b == '\r' || (b < 0x20 && b != '\t'))
			return false;
		return s->eol || (b != ' ' && b != '\t');
	case SW_PEM:
		return pem_swallow(s, b);
	}
	return false;
}

/* Offers <b> to the swallowers: true if at least one goes on (b dropped). */
static bool swallow(struct scan *sc, uint8_t b)
{
	bool any = false;

	for (unsigned j = 0; j < sc->ns; j++) {
		struct swal *s = &sc->s[j];

		if (s->type == SW_DEAD || (s->type == SW_PEM && s->pst == PS_DONE))
			continue;
		if (swallow_one(sc, s, b))
			any = true;
		else if (s->type != SW_PEM)
			s->type = SW_DEAD;
	}
	return any;
}

/* All swallowers are over: a PEM block's END line is written back. */
static void swallow_end(struct scan *sc)
{
	for (unsigned j = 0; j < sc->ns; j++) {
		struct swal *s = &sc->s[j];

		if (s->type == SW_PEM && s->pst == PS_DONE) {
			pend_flush(sc);
			mg_scan_out_copy(sc->o, "-----END ", 9);
			mg_scan_out_copy(sc->o, s->endbuf, s->endlen);
			mg_scan_out_copy(sc->o, "-----", 5);
		}
	}
	sc->ns = 0;
}

/* Candidate <c> over byte <b>: 1 goes on, 0 failed (b not its), 2 a hit (b its). */
static int cand_step(struct scan *sc, struct cand *c, uint8_t b)
{
	const struct rules *r = sc->r;

	switch (c->type) {
	case CT_TOK: {
		const struct tok *t = &r->tok[c->tok];

		if (!in_set(t->set, b))
			return 0;
		if (++c->n < t->min)
			return 1;
		if (t->example && b == 'E' && hold_tail_is(sc, "EXAMPL"))
			return 0;
		return 2;
	}
	case CT_RUN:
		if (!in_set(r->set_aws, b))
			return 0;
		if (++c->n < AWS_SECRET_LEN)
			return 1;
		if (b == 'Y' && hold_tail_is(sc, "EXAMPLEKE")) {
			c->fallback = false; /* the documentation example, not a secret */
			return 0;
		}
		return 2;
	default: /* CT_JWT */
		if (sc->pos - c->start >= JWT_MAX_HOLD && (in_set(r->set_b64url, b) || b == '.')) {
			c->phase = JP_OVER;
			return 2;
		}
		switch (c->phase) {
		case JP_HEAD:
		case JP_BODY:
			if (in_set(r->set_b64url, b)) {
				c->n++;
				return 1;
			}
			if (b != '.' || c->n < JWT_MIN_PART)
				return 0;
			c->phase = c->phase == JP_HEAD ? JP_E : JP_SIG;
			return c->phase == JP_SIG ? 2 : 1;
		case JP_E:
			if (b != 'e')
				return 0;
			c->phase = JP_Y;
			return 1;
		case JP_Y:
			if (b != 'y')
				return 0;
			c->phase = JP_BODY;
			c->n = 0;
			return 1;
		}
		return 0;
	}
}

/* Steps every candidate over <b>. Returns 0 (b still to place), 1 (b part
 * of a hit), 2 (a fallback hit was committed before b: offer b again). */
static int cands_step(struct scan *sc, uint8_t b)
{
	int hit = -1;
	bool fallback = false, dropped = false;
	unsigned j, k;

	for (j = 0; j < sc->nc; j++) {
		sc->c[j].rc = (int8_t)cand_step(sc, &sc->c[j], b);
		if (sc->c[j].rc == 2 && hit < 0)
			hit = (int)j;
	}
	if (hit >= 0) {
		unsigned det = sc->c[hit].det;

		for (j = k = 0; j < sc->nc; j++)
			if (sc->c[j].rc)
				sc->c[k++] = sc->c[j];
		sc->nc = k;
		commit(sc, det, NULL);
		return 1;
	}
	for (j = k = 0; j < sc->nc; j++) {
		if (sc->c[j].rc) {
			sc->c[k++] = sc->c[j];
		} else {
			dropped = true;
			fallback |= sc->c[j].fallback;
		}
	}
	sc->nc = k;
	if (fallback) {
		struct swal g = {.type = SW_GENERIC};

		commit(sc, MG_MASK_DET_GENERIC_PASSWORD, &g);
		return 2;
	}
	if (dropped)
		hold_release(sc);
	return 0;
}

/* Starts a candidate whose body begins at stream position <start>. With the
 * table full, everything undecided is masked instead and true is returned
 * (the current byte then belongs to that hit). */
static bool cand_start(struct scan *sc, uint8_t type, uint8_t det, uint8_t tok, uint64_t start,
		       bool fallback, bool lit)
{
	/* a body starting at the current byte already holds it */
	struct cand nc = {.type = type,
			  .det = det,
			  .tok = tok,
			  .start = start,
			  .fallback = fallback,
			  .lit = lit,
			  .n = start == sc->pos};

	if (sc->nc == MAX_CAND) {
		commit(sc, sc->c[0].det, NULL);
		sw_from_cand(sc, &nc);
		return true;
	}
	sc->c[sc->nc++] = nc;
	return false;
}

/* "-----BEGIN [A-Z ]*PRIVATE KEY( BLOCK)?-----" ends at block index <i>. */
static bool pem_header(const struct scan *sc, size_t i)
{
	size_t d;
	int c = 0;

	if (lb_ends_with(sc, i, "PRIVATE KEY----", 15))
		d = 16;
	else if (lb_ends_with(sc, i, "PRIVATE KEY BLOCK----", 21))
		d = 22;
	else
		return false;
	for (unsigned n = 0; n < 48; n++, d++) {
		c = lookback(sc, i, d);
		if (c == '-' || !((c >= 'A' && c <= 'Z') || c == ' '))
			break;
	}
	if (c != '-')
		return false;
	for (unsigned k = 1; k <= 6; k++)
		if (lookback(sc, i, d - k) != (uint8_t) "BEGIN "[k - 1])
			return false;
	for (unsigned k = 1; k < 5; k++)
		if (lookback(sc, i, d + k) != '-')
			return false;
	return true;
}

/* True if reversed identifier <rev>[0..<n>) ends (forwards) with <kw>. */
static bool rev_has_suffix(const char *rev, size_t n, const struct kw *kw)
{
	if (n < kw->len)
		return false;
	for (size_t j = 0; j < kw->len; j++)
		if (rev[j] != kw->s[kw->len - 1 - j])
			return false;
	return true;
}

/* The separator at block index <i> follows an identifier ending in a
 * keyword (case and _ - . ignored), maybe quoted, maybe with blanks. */
static uint8_t kw_match(const struct scan *sc, size_t i)
{
	const struct rules *r = sc->r;
	char rev[24];
	size_t n = 0, d = 1;
	uint8_t flags = 0;
	int c = lookback(sc, i, d);

	for (unsigned ws = 0; c == ' ' || c == '\t'; ws++) {
		if (ws == 8)
			return 0;
		c = lookback(sc, i, ++d);
	}
	if (c == '"' || c == '\'')
		c = lookback(sc, i, ++d);
	for (unsigned raw = 0; raw < 48 && c >= 0 && n < sizeof(rev); raw++) {
		if (is_alnum(c)) {
			rev[n++] = lower(c);
			if (n == 1 && !kw_last(rev[0]))
				return 0;
		} else if (c != '_' && c != '-' && c != '.') {
			break;
		}
		c = lookback(sc, i, ++d);
	}
	if (!n)
		return 0;
	if (r->on[MG_MASK_DET_GENERIC_PASSWORD])
		for (size_t k = 0; k < sizeof(kw_generic) / sizeof(kw_generic[0]); k++)
			if (rev_has_suffix(rev, n, &kw_generic[k]))
				flags |= KWF_GENERIC | (kw_generic[k].eol ? KWF_EOL : 0);
	if (r->on[MG_MASK_DET_AWS_SECRET_KEY])
		for (size_t k = 0; k < sizeof(kw_aws) / sizeof(kw_aws[0]); k++)
			if (rev_has_suffix(rev, n, &kw_aws[k]))
				flags |= KWF_AWS;
	return flags;
}

/* A byte that can open an assigned value (not blank, quote, control, bracket). */
static inline bool value_opens(uint8_t b)
{
	return b > ' ' && b != '"' && b != '\'' && b != '{' && b != '[' && b != ',' && b != '}' &&
	       b != ']';
}

/* After "keyword<sep>": 1 if <b> was consumed as the start of a hit. */
static int kw_step(struct scan *sc, uint8_t b)
{
	uint8_t flags = sc->kw_flags;

	if (sc->kw == KW_WS && (b == ' ' || b == '\t'))
		return 0;
	if (sc->kw == KW_WS && (b == '"' || b == '\'')) {
		sc->kw = KW_Q;
		return 0;
	}
	sc->kw = KW_NONE;
	if (!value_opens(b))
		return 0;
	if ((flags & KWF_AWS) && in_set(sc->r->set_aws, b))
		return cand_start(sc, CT_RUN, MG_MASK_DET_AWS_SECRET_KEY, 0, sc->pos,
				  flags & KWF_GENERIC, true);
	if (flags & KWF_GENERIC) {
		struct swal g = {.type = SW_GENERIC, .eol = flags & KWF_EOL};

		commit(sc, MG_MASK_DET_GENERIC_PASSWORD, &g);
		return 1;
	}
	return 0;
}

/* Detections ending at <b> (block index <i>). True if <b> was consumed. */
static bool triggers(struct scan *sc, size_t i, uint8_t b)
{
	const struct rules *r = sc->r;
	uint8_t t = r->trig[b];

	if (t & T_TOK) {
		uint64_t mask = r->by_last[b];

		while (mask) {
			unsigned k = (unsigned)__builtin_ctzll(mask);
			const struct tok *tk = &r->tok[k];

			mask &= mask - 1;
			if (lb_ends_with(sc, i, tk->prefix, tk->plen - 1u) &&
			    cand_start(sc, CT_TOK, tk->det, (uint8_t)k, sc->pos + 1, false, true))
				return true;
		}
	}
	if ((t & T_JWT) && lookback(sc, i, 1) == 'y' && lookback(sc, i, 2) == 'e' &&
	    cand_start(sc, CT_JWT, MG_MASK_DET_JWT, 0, sc->pos + 1, false, true))
		return true;
	if ((t & T_PEM) && pem_header(sc, i)) {
		struct swal p = {.type = SW_PEM};

		if (!sc->nc)
			pend_byte(sc, i); /* the header itself stays */
		commit(sc, MG_MASK_DET_PRIVATE_KEY, &p);
		return true;
	}
	if (t & T_KW) {
		uint8_t f = kw_match(sc, i);

		if (f) {
			sc->kw = KW_WS;
			sc->kw_flags = f;
		}
	}
	if (sc->near && in_set(r->set_aws, b)) {
		int prev = lookback(sc, i, 1);

		if ((prev < 0 || !in_set(r->set_aws, (uint8_t)prev)) &&
		    cand_start(sc, CT_RUN, MG_MASK_DET_AWS_SECRET_KEY, 0, sc->pos, false, false))
			return true;
	}
	return false;
}

/* One byte on the slow path (something is undecided or may start). */
static void scan_byte(struct scan *sc, size_t i)
{
	uint8_t b = sc->blk[i];

	if (sc->near)
		sc->near--;
again:
	if (sc->ns) {
		if (swallow(sc, b))
			goto consumed;
		swallow_end(sc);
	}
	if (sc->nc) {
		int rc = cands_step(sc, b);

		if (rc == 1)
			goto consumed;
		if (rc == 2)
			goto again;
	}
	if (sc->kw && kw_step(sc, b))
		goto consumed;
	if ((sc->r->trig[b] || sc->near) && triggers(sc, i, b))
		goto consumed;
	if (sc->nc && cand_min_start(sc) <= sc->pos) {
		if (sc->hold_len == HOLD_MAX) {
			/* Cannot happen with the candidate bounds above; masking is the safe side.
			 */
			commit(sc, sc->c[0].det, NULL);
			goto consumed;
		}
		if (!sc->hold_len)
			sc->hold_pos = sc->pos;
		sc->hold[sc->hold_len++] = (char)b;
	} else {
		pend_byte(sc, i);
	}
consumed:
	sc->pos++;
}

/* Index of the first trigger byte in <blk>[<j>..<n>), or <n>. */
static inline size_t next_trigger(const struct rules *r, const struct trigv *tv, const uint8_t *blk,
				  size_t j, size_t n)
{
#ifdef __SSE2__
	if (tv->n) {
		const __m128i *t = tv->t;
		unsigned k, nt = tv->n;

		while (j + 16 <= n) {
			__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(blk + j));
			__m128i x = _mm_cmpeq_epi8(v, t[0]);
			int mask;

			for (k = 1; k < nt; k++)
				x = _mm_or_si128(x, _mm_cmpeq_epi8(v, t[k]));
			mask = _mm_movemask_epi8(x);
			if (mask)
				return j + (size_t)__builtin_ctz((unsigned)mask);
			j += 16;
		}
	}
#endif
	while (j + 4 <= n &&
	       !(r->trig[blk[j]] | r->trig[blk[j + 1]] | r->trig[blk[j + 2]] | r->trig[blk[j + 3]]))
		j += 4;
	while (j < n && !r->trig[blk[j]])
		j++;
	return j;
}

/* Scans decoded block <p>[0..<n>). <clean>: raw input that needs no escape. */
void mg_scan_block(struct scan *sc, const char *p, size_t n, bool clean)
{
	const uint8_t *blk = (const uint8_t *)p;
	size_t i = 0;

	sc->blk = blk;
	sc->clean = clean;
	sc->e_lo = sc->e_hi = 0;
	while (i < n) {
		if (!(sc->nc | sc->ns | sc->kw | sc->near)) {
			size_t j = i;

			for (;;) {
				int prev;

				j = next_trigger(sc->r, &sc->tv, blk, j, n);
				if (j == n)
					break;
				/* idle, a detector can only fire here after one of these */
				prev = j ? blk[j - 1] : sc->lb_len ? sc->lb[sc->lb_len - 1] : -1;
				if (prev < 0 || in_set(sc->r->trig_prev[blk[j]], (uint8_t)prev))
					break;
				j++;
			}
			if (j > i) {
				if (sc->e_hi != i) {
					pend_flush(sc);
					sc->e_lo = i;
				}
				sc->e_hi = j;
				sc->pos += j - i;
				i = j;
				if (i == n)
					break;
			}
		}
		scan_byte(sc, i);
		i++;
	}
	pend_flush(sc);
	lb_push(sc, blk, n);
	sc->blk = NULL;
}

/* True if an idle scanner at the start of a segment would write <blk>[0..<n>)
 * unchanged and start nothing: a JSON string that is one such block skips
 * the scanner. Conservative: any trigger byte that could fire says no. */
bool mg_scan_passes(const struct scan *sc, const uint8_t *blk, size_t n)
{
	size_t j = 0;

	if (sc->nc | sc->ns | sc->kw | sc->near | sc->lb_len)
		return false;
	for (;;) {
		j = next_trigger(sc->r, &sc->tv, blk, j, n);
		if (j == n)
			return true;
		if (!j || in_set(sc->r->trig_prev[blk[j]], blk[j - 1]))
			return false;
		j++;
	}
}

/* True if candidate <c> is a hit when its stream ends or pauses now, short
 * of its detector's minimum. A cut candidate whose literal prefix matched
 * (a token prefix, "eyJ", a keyword) is, whatever its length: limitBytes, a
 * closed connection or an exec exit can stop a token one byte short, and
 * the rest is then a guess away (a GitHub token's tail is a checksum). A
 * run near an access key id has no prefix of its own: it is one once it
 * holds half a secret key (the rest is then < 128 bits). An empty body
 * hides nothing. */
static bool cand_cut_hit(const struct scan *sc, const struct cand *c)
{
	uint64_t n = sc->pos - c->start;

	return n && (c->lit || n >= AWS_CUT_MIN);
}

/* Decides the candidates as if the stream ended (<pause> false) or paused
 * here. A hit masks from the earliest hit candidate's body on and swallows
 * what continues any candidate (at a pause more may come). Without a hit,
 * an end writes what is held; a pause leaves it all held and pending (a
 * bare prefix, a short run near a key id): what follows decides, so a
 * secret split by the pause is still caught whole. */
static void cands_resolve(struct scan *sc, bool pause)
{
	const struct cand *hit = NULL;

	for (unsigned j = 0; j < sc->nc; j++) {
		const struct cand *c = &sc->c[j];

		if (cand_cut_hit(sc, c) && (!hit || c->start < hit->start))
			hit = c;
	}
	if (hit) {
		unsigned det = hit->fallback ? MG_MASK_DET_GENERIC_PASSWORD : hit->det;

		if (hit->start > sc->hold_pos)
			hold_emit(sc, (size_t)(hit->start - sc->hold_pos));
		commit(sc, det, NULL);
		return;
	}
	if (pause)
		return;
	sc->nc = 0;
	if (sc->hold_len)
		hold_emit(sc, sc->hold_len);
}

/* End of a segment (a JSON string, a text stream): everything is decided. */
void mg_scan_end(struct scan *sc)
{
	if (sc->nc)
		cands_resolve(sc, false);
	if (sc->ns)
		swallow_end(sc);
	sc->kw = KW_NONE;
	sc->lb_len = 0;
}

/* ---- text streams and exec channels ---- */

struct mg_mask_text {
	struct rules *rules_own;
	struct mg_mask_stats st;
	struct out o;
	struct scan sc;
};

static struct mg_mask_text *text_alloc(const struct rules *r)
{
	struct mg_mask_text *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->o.st = &t->st;
	t->sc.r = r;
	t->sc.st = &t->st;
	t->sc.o = &t->o;
	t->sc.json = false;
	mg_scan_trigv_init(&t->sc.tv, r);
	mg_scan_reset(&t->sc);
	return t;
}

struct mg_mask_text *mg_mask_text_new(const struct mg_mask_cfg *cfg)
{
	struct rules *r = mg_rules_new(cfg);
	struct mg_mask_text *t = r ? text_alloc(r) : NULL;

	if (!t) {
		free(r);
		return NULL;
	}
	t->rules_own = r;
	return t;
}

static int text_done(struct mg_mask_text *t)
{
	mg_scan_out_flush(&t->o);
	return t->o.err;
}

int mg_mask_text_feed(struct mg_mask_text *t, const char *in, size_t len,
		      const struct mg_mask_sink *out)
{
	if (t->o.err)
		return t->o.err;
	t->o.sink = out;
	t->st.bytes_in += len;
	if (len)
		mg_scan_block(&t->sc, in, len, true);
	return text_done(t);
}

int mg_mask_text_flush(struct mg_mask_text *t, const struct mg_mask_sink *out)
{
	if (t->o.err)
		return t->o.err;
	t->o.sink = out;
	cands_resolve(&t->sc, true);
	return text_done(t);
}

int mg_mask_text_finish(struct mg_mask_text *t, const struct mg_mask_sink *out)
{
	if (t->o.err)
		return t->o.err;
	t->o.sink = out;
	mg_scan_end(&t->sc);
	return text_done(t);
}

const struct mg_mask_stats *mg_mask_text_stats(const struct mg_mask_text *t)
{
	return &t->st;
}

void mg_mask_text_free(struct mg_mask_text *t)
{
	if (!t)
		return;
	free(t->rules_own);
	free(t);
}

struct mg_mask_exec {
	struct rules *r;
	struct mg_mask_text *ch[MG_MASK_EXEC_CHANNELS];
};

struct mg_mask_exec *mg_mask_exec_new(const struct mg_mask_cfg *cfg)
{
	struct mg_mask_exec *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->r = mg_rules_new(cfg);
	if (!x->r) {
		free(x);
		return NULL;
	}
	return x;
}

static struct mg_mask_text *exec_chan(struct mg_mask_exec *x, unsigned channel, int *rc)
{
	if (channel >= MG_MASK_EXEC_CHANNELS) {
		*rc = -EINVAL;
		return NULL;
	}
	if (!x->ch[channel])
		x->ch[channel] = text_alloc(x->r);
	*rc = x->ch[channel] ? 0 : -ENOMEM;
	return x->ch[channel];
}

int mg_mask_exec_feed(struct mg_mask_exec *x, unsigned channel, const char *in, size_t len,
		      const struct mg_mask_sink *out)
{
	int rc;
	struct mg_mask_text *t = exec_chan(x, channel, &rc);

	return t ? mg_mask_text_feed(t, in, len, out) : rc;
}

int mg_mask_exec_flush(struct mg_mask_exec *x, unsigned channel, const struct mg_mask_sink *out)
{
	int rc;
	struct mg_mask_text *t = exec_chan(x, channel, &rc);

	return t ? mg_mask_text_flush(t, out) : rc;
}

int mg_mask_exec_finish(struct mg_mask_exec *x, unsigned channel, const struct mg_mask_sink *out)
{
	int rc;
	struct mg_mask_text *t = exec_chan(x, channel, &rc);

	return t ? mg_mask_text_finish(t, out) : rc;
}

void mg_mask_exec_stats(const struct mg_mask_exec *x, struct mg_mask_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (unsigned c = 0; c < MG_MASK_EXEC_CHANNELS; c++) {
		const struct mg_mask_stats *s;

		if (!x->ch[c])
			continue;
		s = &x->ch[c]->st;
		for (unsigned i = 0; i < MG_MASK_DET_MAX; i++)
			st->hits[i] += s->hits[i];
		st->bytes_in += s->bytes_in;
		st->bytes_out += s->bytes_out;
	}
}

void mg_mask_exec_free(struct mg_mask_exec *x)
{
	if (!x)
		return;
	for (unsigned c = 0; c < MG_MASK_EXEC_CHANNELS; c++)
		free(x->ch[c]);
	free(x->r);
	free(x);
}
