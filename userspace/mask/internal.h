/*
 * What the mask modules share inside userspace/mask/ and nothing outside
 * does: the limits, the rules compiled for the scanner (rules.c), the
 * buffered output and the scanner state (scan.c) that the JSON masker
 * (json.c) drives over decoded string values. The hot helpers (byte sets,
 * out_byte, out_ref, scan_str) are static inline here so that splitting the
 * masker into modules costs no call per byte.
 */
#ifndef MCPGATE_MASK_INTERNAL_H
#define MCPGATE_MASK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <emmintrin.h>

#include "mcpgate/rules.h"

/* ---- limits ---- */

#define LB_MAX		128   /* lookback kept per segment: prefixes, keywords, PEM headers */
#define LB_BUF		512   /* lookback storage, compacted when full */
#define MAX_CAND	8     /* undecided candidates at once; one more masks them all */
#define JWT_MAX_HOLD	16384 /* a JWT header+payload longer than this is masked undecided */
#define HOLD_MAX	(JWT_MAX_HOLD + 512)
#define JWT_MIN_PART	4	    /* base64url chars a JWT header/payload needs past "ey(J)" */
#define PEM_MAX_SWALLOW (64 * 1024) /* a PEM body without END stops being masked here */
#define AWS_NEAR	512 /* decoded bytes after an access key id that may hold its secret */
#define AWS_SECRET_LEN	40
#define AWS_CUT_MIN	(AWS_SECRET_LEN / 2) /* a cut run near a key id is masked from here */
#define OUTBUF		16384
#define MAX_TOK		64
#define MARKER_MAX	48

/* ---- byte sets ---- */

static inline bool in_set(const uint8_t *set, uint8_t c)
{
	return set[c >> 3] & (1u << (c & 7));
}

static inline void set_add(uint8_t *set, uint8_t c)
{
	set[c >> 3] |= 1u << (c & 7);
}

static inline bool is_alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static inline char lower(int c)
{
	return (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
}

/* ---- rules: the config compiled for the scanner ---- */

/* A prefixed token: <prefix>, then at least <min> body bytes of <set>. */
struct tok {
	char prefix[32];
	uint8_t plen;
	uint8_t det;
	bool example; /* AWS documentation ids (…EXAMPLE) are not secrets */
	uint16_t min, max;
	uint8_t set[32];
};

/* Trigger flags per byte: the last byte of something worth a look-back. */
enum { T_TOK = 1, T_JWT = 2, T_PEM = 4, T_KW = 8 };

struct rules {
	struct mg_mask_cfg cfg;
	bool secrets;
	bool on[MG_MASK_DET_MAX];
	unsigned ntok;
	struct tok tok[MAX_TOK];
	uint64_t by_last[256]; /* tokens whose prefix ends in this byte */
	uint8_t trig[256];
	/* bytes that may precede trigger byte b for any detector to fire at b:
	 * most '-', '.', ':', '=' in text are decided by this alone */
	uint8_t trig_prev[256][32];
	unsigned ntrig; /* distinct trigger bytes, when few enough for SIMD */
	uint8_t trigs[8];
	uint8_t set_b64url[32], set_jwt_any[32], set_jwt_sig[32], set_aws[32], set_aws_sw[32];
	char marker[MG_MASK_DET_MAX][MARKER_MAX];
	uint8_t marker_len[MG_MASK_DET_MAX];
};

struct kw {
	const char *s;
	uint8_t len;
	bool eol; /* the value runs to the end of the line */
};

#define KW(lit, eol)                                                                               \
	{                                                                                          \
		lit, sizeof(lit) - 1, eol                                                          \
	}

/* Words an identifier may end in (compared lowercased, ignoring _ - .) for
 * its assigned value to be masked as generic-password. */
static const struct kw kw_generic[] = {
	KW("password", false),	KW("passwd", false),	 KW("secret", false),
	KW("token", false),	KW("apikey", false),	 KW("accesskey", false),
	KW("secretkey", false), KW("privatekey", false), KW("authorization", true),
};

/* Identifiers whose value is an AWS secret access key (40 base64 chars). */
static const struct kw kw_aws[] = {KW("secretaccesskey", false), KW("awssecretkey", false)};

/* The last letters of the keywords above: a cheap first filter. */
static inline bool kw_last(char c)
{
	return c == 'd' || c == 't' || c == 'n' || c == 'y';
}

/* ---- output: buffered, with zero-copy runs of input ---- */

/*
 * Pending output is <buf> followed by <ref> (a run of the caller's input,
 * valid until the end of the current feed, when everything is flushed).
 * Pass-through bytes extend <ref>, so an unmasked document reaches the sink
 * in a few large writes.
 */
struct out {
	const struct mg_mask_sink *sink;
	struct mg_mask_stats *st; /* bytes_out counted here; NULL for a nested masker */
	const char *ref;
	size_t ref_len;
	size_t len;
	int err;
	char buf[OUTBUF];
};

/* Writes what is pending (buffer, then the input run) to the sink. */
void mg_scan_out_flush(struct out *o);

static inline void out_byte(struct out *o, char c)
{
	if (o->ref_len || o->len == OUTBUF)
		mg_scan_out_flush(o);
	o->buf[o->len++] = c;
}

/* <p> points into the current input and stays valid until the feed ends. */
static inline void out_ref(struct out *o, const char *p, size_t n)
{
	if (o->ref_len) {
		if (o->ref + o->ref_len == p) {
			o->ref_len += n;
			return;
		}
		mg_scan_out_flush(o);
	}
	if (n < 64 && n <= OUTBUF - o->len) {
		memcpy(o->buf + o->len, p, n);
		o->len += n;
		return;
	}
	o->ref = p;
	o->ref_len = n;
}

/* First byte in [p, end) that ends a plain run of string bytes. */
static inline const char *scan_str(const char *p, const char *end)
{
	static const uint8_t special[256] = {
		[0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1,	  ['<'] = 1,
		['>'] = 1,	  ['&'] = 1, [0x80 ... 0xff] = 1,
	};
#ifdef __SSE2__
	const __m128i q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\'), sp = _mm_set1_epi8(0x20);
	const __m128i lt = _mm_set1_epi8('<'), gt = _mm_set1_epi8('>'), amp = _mm_set1_epi8('&');

	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		/* signed compare: < 0x20 and >= 0x80 both fall below ' ' */
		__m128i x = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs)),
					 _mm_cmplt_epi8(v, sp));

		x = _mm_or_si128(
			x, _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, lt), _mm_cmpeq_epi8(v, gt)),
					_mm_cmpeq_epi8(v, amp)));
		int mask = _mm_movemask_epi8(x);

		if (mask)
			return p + __builtin_ctz((unsigned)mask);
		p += 16;
	}
#endif
	while (p < end && !special[(uint8_t)*p])
		p++;
	return p;
}

/* ---- scanner: the detectors over a decoded byte stream ---- */

enum { CT_TOK, CT_JWT, CT_RUN };			/* candidate types */
enum { JP_HEAD, JP_E, JP_Y, JP_BODY, JP_SIG, JP_OVER }; /* JWT phases */
enum { SW_RUN, SW_GENERIC, SW_PEM, SW_DEAD };		/* swallower types */
enum { PS_DASH, PS_END, PS_LABEL, PS_CLOSE, PS_DONE };	/* PEM END matcher */
enum { KW_NONE, KW_WS, KW_Q };				/* after a keyword's separator */
enum { KWF_GENERIC = 1, KWF_AWS = 2, KWF_EOL = 4 };

/* An undecided hit: its body from <start> on is held back. */
struct cand {
	uint8_t type, det, phase, tok;
	bool fallback; /* an AWS-keyword value: if not 40 chars, mask it as generic */
	bool lit;      /* a literal prefix or keyword matched (not a run near a key id) */
	int8_t rc;
	uint32_t n;
	uint64_t start;
};

/* A decided hit whose end is not reached yet: bytes are dropped while it lasts. */
struct swal {
	uint8_t type;
	bool eol; /* SW_GENERIC: the value runs to the end of the line */
	uint8_t pst, pn, endlen;
	const uint8_t *set;
	uint32_t n, max, total;
	char endbuf[64];
};

/* The trigger bytes broadcast for the SIMD search, set up once per scanner. */
struct trigv {
	unsigned n;
#ifdef __SSE2__
	__m128i t[8];
#endif
};

struct scan {
	const struct rules *r;
	struct mg_mask_stats *st;
	struct out *o;
	struct trigv tv;
	bool json;    /* emitted bytes are JSON string contents: escape them */
	uint64_t pos; /* stream position of the next byte */
	unsigned lb_len;
	uint8_t lb[LB_BUF]; /* the segment's last bytes (>= LB_MAX of them) before the block */
	uint8_t kw, kw_flags;
	uint32_t near; /* bytes left in which a run may be an AWS secret */
	unsigned nc, ns;
	struct cand c[MAX_CAND];
	struct swal s[MAX_CAND + 2];
	/* the block being scanned, and its pending (decided, not yet written) range */
	const uint8_t *blk;
	bool clean; /* block is raw input needing no escape: written by reference */
	size_t e_lo, e_hi;
	uint64_t hold_pos;
	size_t hold_len;
	char hold[HOLD_MAX];
};

/* ---- rules.c ---- */

/* The rules compiled from <cfg> (NULL: the defaults), or NULL when out of
 * memory or <cfg> is invalid. Freed with free(). */
struct rules *mg_rules_new(const struct mg_mask_cfg *cfg);

/* ---- scan.c: output ---- */

/* Appends <p>[0..<n>), which need not outlive the call. */
void mg_scan_out_copy(struct out *o, const char *p, size_t n);
/* Appends decoded string bytes <p>[0..<n>) JSON-escaped as Go escapes them. */
void mg_scan_out_escaped(struct out *o, const char *p, size_t n);

/* ---- scan.c: the scanner ---- */

void mg_scan_trigv_init(struct trigv *tv, const struct rules *r);
/* Starts a new segment (a text stream, or one JSON string value). */
void mg_scan_reset(struct scan *sc);
/* Scans the decoded bytes <p>[0..<n>) and writes what is decided; <clean>:
 * they are raw input needing no escaping, written by reference. */
void mg_scan_block(struct scan *sc, const char *p, size_t n, bool clean);
/* True if nothing in <blk>[0..<n>) can start or continue a hit: the caller
 * may pass the bytes through without a scan. */
bool mg_scan_passes(const struct scan *sc, const uint8_t *blk, size_t n);
/* Ends the segment: held candidates are decided (a cut one is masked). */
void mg_scan_end(struct scan *sc);
/* Writes the marker of detector <det> and counts the hit. */
void mg_scan_emit_marker(struct scan *sc, unsigned det);

#endif /* MCPGATE_MASK_INTERNAL_H */
