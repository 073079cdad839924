/*
 * mask: streaming secret redaction of API-server responses. What is masked,
 * and why the ordering strategy is safe, is in include/mcpgate/mask.h; this
 * file is organised bottom-up: rules, output, the detector scanner (shared by
 * JSON strings and text streams), the JSON masker, text/exec, bodies with
 * gzip, and the CLI.
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
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <zlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "mcpgate/mask.h"

/* ---- limits ---- */

#define LB_MAX		128   /* lookback kept per segment: prefixes, keywords, PEM headers */
#define LB_BUF		512   /* lookback storage, compacted when full */
#define DEC_MAX		4096  /* decoded string bytes batched around escapes */
#define MAX_CAND	8     /* undecided candidates at once; one more masks them all */
#define JWT_MAX_HOLD	16384 /* a JWT header+payload longer than this is masked undecided */
#define HOLD_MAX	(JWT_MAX_HOLD + 512)
#define JWT_MIN_PART	4	    /* base64url chars a JWT header/payload needs past "ey(J)" */
#define PEM_MAX_SWALLOW (64 * 1024) /* a PEM body without END stops being masked here */
#define AWS_NEAR	512 /* decoded bytes after an access key id that may hold its secret */
#define AWS_SECRET_LEN	40
#define AWS_CUT_MIN	(AWS_SECRET_LEN / 2) /* a cut run near a key id is masked from here */
#define OUTBUF		16384
#define CAP_MAX		64 /* decoded bytes kept of keys, kinds and names */
#define MAX_DEPTH	512
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

/* Fills <set> from <spec>: "a-z" ranges and single bytes; a '-' that cannot
 * be a range (first, last) is literal. Returns 0, or -EINVAL for an empty
 * spec or a reversed range. */
static int set_parse(uint8_t *set, const char *spec)
{
	const uint8_t *s = (const uint8_t *)spec;

	memset(set, 0, 32);
	if (!s || !*s)
		return -EINVAL;
	while (*s) {
		if (s[1] == '-' && s[2]) {
			if (s[0] > s[2])
				return -EINVAL;
			for (unsigned c = s[0]; c <= s[2]; c++)
				set_add(set, (uint8_t)c);
			s += 3;
		} else {
			set_add(set, *s++);
		}
	}
	return 0;
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

static const char *const det_names[MG_MASK_DET_BUILTIN] = {
	[MG_MASK_DET_AWS_ACCESS_KEY] = "aws-access-key",
	[MG_MASK_DET_AWS_SECRET_KEY] = "aws-secret-key",
	[MG_MASK_DET_PRIVATE_KEY] = "private-key",
	[MG_MASK_DET_JWT] = "jwt",
	[MG_MASK_DET_GITHUB_TOKEN] = "github-token",
	[MG_MASK_DET_GITLAB_TOKEN] = "gitlab-token",
	[MG_MASK_DET_SLACK_TOKEN] = "slack-token",
	[MG_MASK_DET_EKS_TOKEN] = "eks-token",
	[MG_MASK_DET_GENERIC_PASSWORD] = "generic-password",
};

static const struct {
	const char *prefix;
	uint8_t det;
	const char *set;
	uint16_t min, max;
	bool example;
} builtin_toks[] = {
	/* AWS IAM unique-id prefixes of credentials (access keys, STS, roles, …);
	 * no upper bound: a key id glued to more [A-Z0-9] is masked to the end of
	 * the run, or its tail would survive a neighbour's hit (fuzz regression) */
	{"AKIA", MG_MASK_DET_AWS_ACCESS_KEY, "A-Z0-9", 16, 0, true},
	{"ASIA", MG_MASK_DET_AWS_ACCESS_KEY, "A-Z0-9", 16, 0, true},
	{"AGPA", MG_MASK_DET_AWS_ACCESS_KEY, "A-Z0-9", 16, 0, true},
	{"AIDA", MG_MASK_DET_AWS_ACCESS_KEY, "A-Z0-9", 16, 0, true},
	{"AROA", MG_MASK_DET_AWS_ACCESS_KEY, "A-Z0-9", 16, 0, true},
	{"AIPA", MG_MASK_DET_AWS_ACCESS_KEY, "A-Z0-9", 16, 0, true},
	{"ANPA", MG_MASK_DET_AWS_ACCESS_KEY, "A-Z0-9", 16, 0, true},
	{"ANVA", MG_MASK_DET_AWS_ACCESS_KEY, "A-Z0-9", 16, 0, true},
	{"APKA", MG_MASK_DET_AWS_ACCESS_KEY, "A-Z0-9", 16, 0, true},
	{"ghp_", MG_MASK_DET_GITHUB_TOKEN, "A-Za-z0-9", 36, 255, false},
	{"gho_", MG_MASK_DET_GITHUB_TOKEN, "A-Za-z0-9", 36, 255, false},
	{"ghu_", MG_MASK_DET_GITHUB_TOKEN, "A-Za-z0-9", 36, 255, false},
	{"ghs_", MG_MASK_DET_GITHUB_TOKEN, "A-Za-z0-9", 36, 255, false},
	{"ghr_", MG_MASK_DET_GITHUB_TOKEN, "A-Za-z0-9", 36, 255, false},
	{"github_pat_", MG_MASK_DET_GITHUB_TOKEN, "A-Za-z0-9_", 22, 255, false},
	{"glpat-", MG_MASK_DET_GITLAB_TOKEN, "A-Za-z0-9_-", 20, 255, false},
	{"xoxb-", MG_MASK_DET_SLACK_TOKEN, "A-Za-z0-9-", 10, 255, false},
	{"xoxp-", MG_MASK_DET_SLACK_TOKEN, "A-Za-z0-9-", 10, 255, false},
	{"xoxa-", MG_MASK_DET_SLACK_TOKEN, "A-Za-z0-9-", 10, 255, false},
	{"xoxr-", MG_MASK_DET_SLACK_TOKEN, "A-Za-z0-9-", 10, 255, false},
	{"xoxs-", MG_MASK_DET_SLACK_TOKEN, "A-Za-z0-9-", 10, 255, false},
	{"k8s-aws-v1.", MG_MASK_DET_EKS_TOKEN, "A-Za-z0-9_-", 20, 0, false},
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

static int rules_compile(struct rules *r, const struct mg_mask_cfg *cfg)
{
	memset(r, 0, sizeof(*r));
	r->cfg = *cfg;
	r->secrets = cfg->secrets;
	if (cfg->n_custom > MG_MASK_MAX_CUSTOM)
		return -EINVAL;
	for (unsigned i = 0; i < MG_MASK_DET_BUILTIN; i++)
		r->on[i] = cfg->detectors[i];
	for (unsigned i = 0; i < cfg->n_custom; i++)
		r->on[MG_MASK_DET_BUILTIN + i] = true;

	for (unsigned i = 0; i < MG_MASK_DET_BUILTIN + cfg->n_custom; i++) {
		const char *name = i < MG_MASK_DET_BUILTIN
					   ? det_names[i]
					   : cfg->custom[i - MG_MASK_DET_BUILTIN].name;
		int n = snprintf(r->marker[i], MARKER_MAX, "***MASKED:%s***", name);

		if (n < 0 || n >= MARKER_MAX)
			return -EINVAL;
		r->marker_len[i] = (uint8_t)n;
	}

	for (size_t i = 0; i < sizeof(builtin_toks) / sizeof(builtin_toks[0]); i++) {
		struct tok *t = &r->tok[r->ntok];

		if (!r->on[builtin_toks[i].det])
			continue;
		t->plen = (uint8_t)strlen(builtin_toks[i].prefix);
		memcpy(t->prefix, builtin_toks[i].prefix, t->plen);
		t->det = builtin_toks[i].det;
		t->min = builtin_toks[i].min;
		t->max = builtin_toks[i].max;
		t->example = builtin_toks[i].example;
		set_parse(t->set, builtin_toks[i].set);
		r->ntok++;
	}
	for (unsigned i = 0; i < cfg->n_custom; i++) {
		const struct mg_mask_custom *c = &cfg->custom[i];
		struct tok *t = &r->tok[r->ntok++];
		size_t plen = strnlen(c->prefix, sizeof(c->prefix));

		if (!plen || plen >= sizeof(c->prefix) || !c->min || c->min > 255 ||
		    (c->max && c->max < c->min) || c->max > 65535)
			return -EINVAL;
		t->plen = (uint8_t)plen;
		memcpy(t->prefix, c->prefix, plen);
		t->det = (uint8_t)(MG_MASK_DET_BUILTIN + i);
		t->min = (uint16_t)c->min;
		t->max = (uint16_t)c->max;
		memcpy(t->set, c->charset, sizeof(t->set));
	}
	for (unsigned k = 0; k < r->ntok; k++) {
		const struct tok *t = &r->tok[k];
		uint8_t last = (uint8_t)t->prefix[t->plen - 1];

		r->by_last[last] |= 1ull << k;
		r->trig[last] |= T_TOK;
		if (t->plen == 1)
			memset(r->trig_prev[last], 0xff, 32);
		else
			set_add(r->trig_prev[last], (uint8_t)t->prefix[t->plen - 2]);
	}
	if (r->on[MG_MASK_DET_JWT]) {
		r->trig['J'] |= T_JWT;
		set_add(r->trig_prev['J'], 'y');
	}
	if (r->on[MG_MASK_DET_PRIVATE_KEY]) {
		r->trig['-'] |= T_PEM;
		set_add(r->trig_prev['-'], '-');
	}
	if (r->on[MG_MASK_DET_GENERIC_PASSWORD] || r->on[MG_MASK_DET_AWS_SECRET_KEY]) {
		/* kw_match(): blanks, a quote, _ - . or a keyword's last letter */
		static const char kw_prev[] = " \t\"'_-.dtnyDTNY";

		r->trig['='] |= T_KW;
		r->trig[':'] |= T_KW;
		for (const char *c = kw_prev; *c; c++) {
			set_add(r->trig_prev['='], (uint8_t)*c);
			set_add(r->trig_prev[':'], (uint8_t)*c);
		}
	}
	for (unsigned c = 0; c < 256; c++) {
		if (!r->trig[c])
			continue;
		if (r->ntrig == sizeof(r->trigs)) {
			r->ntrig = 0; /* too many: the scalar search */
			break;
		}
		r->trigs[r->ntrig++] = (uint8_t)c;
	}
	set_parse(r->set_b64url, "A-Za-z0-9_-");
	set_parse(r->set_jwt_any, "A-Za-z0-9_.=-");
	set_parse(r->set_jwt_sig, "A-Za-z0-9_=-");
	set_parse(r->set_aws, "A-Za-z0-9/+");
	set_parse(r->set_aws_sw, "A-Za-z0-9/+=");
	return 0;
}

/* ---- configuration ---- */

void mg_mask_cfg_default(struct mg_mask_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->secrets = true;
	for (unsigned i = 0; i < MG_MASK_DET_BUILTIN; i++)
		cfg->detectors[i] = true;
}

static int cfg_fail(struct mg_mask_err *err, const char *reason, int rc)
{
	if (err) {
		err->reason = reason;
		err->pos = 0;
	}
	return rc;
}

int mg_mask_cfg_add_custom(struct mg_mask_cfg *cfg, const char *name, const char *prefix,
			   const char *charset, unsigned min, unsigned max, struct mg_mask_err *err)
{
	struct mg_mask_custom *c;
	size_t nlen, plen;

	if (cfg->n_custom >= MG_MASK_MAX_CUSTOM)
		return cfg_fail(err, "too many custom detectors", -ENOSPC);
	nlen = name ? strlen(name) : 0;
	if (!nlen || nlen >= sizeof(c->name))
		return cfg_fail(err, "custom detector name must be 1..31 chars", -EINVAL);
	for (size_t i = 0; i < nlen; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '-'))
			return cfg_fail(err, "custom detector name must be [a-z0-9-]", -EINVAL);
	if (mg_mask_det_lookup(name) >= 0)
		return cfg_fail(err, "custom detector name is a built-in one", -EINVAL);
	for (unsigned i = 0; i < cfg->n_custom; i++)
		if (!strcmp(cfg->custom[i].name, name))
			return cfg_fail(err, "duplicate custom detector name", -EINVAL);
	plen = prefix ? strlen(prefix) : 0;
	if (!plen || plen >= sizeof(c->prefix))
		return cfg_fail(err, "custom detector prefix must be 1..31 bytes", -EINVAL);
	if (!min || min > 255 || (max && max < min) || max > 65535)
		return cfg_fail(err, "custom detector needs 1 <= min <= 255 and max 0 or >= min",
				-EINVAL);
	c = &cfg->custom[cfg->n_custom];
	memset(c, 0, sizeof(*c));
	if (set_parse(c->charset, charset))
		return cfg_fail(err, "custom detector charset is empty or has a reversed range",
				-EINVAL);
	memcpy(c->name, name, nlen);
	memcpy(c->prefix, prefix, plen);
	c->min = min;
	c->max = max;
	cfg->n_custom++;
	return 0;
}

int mg_mask_det_lookup(const char *name)
{
	for (int i = 0; i < MG_MASK_DET_BUILTIN; i++)
		if (!strcmp(det_names[i], name))
			return i;
	return -1;
}

const char *mg_mask_det_name(const struct mg_mask_cfg *cfg, unsigned id)
{
	if (id < MG_MASK_DET_BUILTIN)
		return det_names[id];
	if (cfg && id - MG_MASK_DET_BUILTIN < cfg->n_custom)
		return cfg->custom[id - MG_MASK_DET_BUILTIN].name;
	return NULL;
}

static int cfg_parse_custom(struct mg_mask_cfg *cfg, json_t *arr, struct mg_mask_err *err)
{
	size_t i;
	json_t *it;

	if (!json_is_array(arr))
		return cfg_fail(err, "\"custom\" must be an array", -EINVAL);
	json_array_foreach(arr, i, it)
	{
		const char *key;
		json_t *v;
		json_t *jn = json_object_get(it, "name"), *jp = json_object_get(it, "prefix");
		json_t *jc = json_object_get(it, "charset"), *jmin = json_object_get(it, "min");
		json_t *jmax = json_object_get(it, "max");
		int rc;

		if (!json_is_object(it))
			return cfg_fail(err, "\"custom\" entries must be objects", -EINVAL);
		json_object_foreach(it, key, v)
		{
			if (strcmp(key, "name") && strcmp(key, "prefix") &&
			    strcmp(key, "charset") && strcmp(key, "min") && strcmp(key, "max"))
				return cfg_fail(err, "unknown member in a \"custom\" entry",
						-EINVAL);
		}
		if (!json_is_string(jn) || !json_is_string(jp) || !json_is_string(jc) ||
		    !json_is_integer(jmin) || (jmax && !json_is_integer(jmax)))
			return cfg_fail(err,
					"a \"custom\" entry needs string name, prefix, charset and "
					"integer min (max optional)",
					-EINVAL);
		if (json_integer_value(jmin) < 0 || (jmax && json_integer_value(jmax) < 0))
			return cfg_fail(err, "custom detector min/max must not be negative",
					-EINVAL);
		rc = mg_mask_cfg_add_custom(cfg, json_string_value(jn), json_string_value(jp),
					    json_string_value(jc),
					    (unsigned)json_integer_value(jmin),
					    jmax ? (unsigned)json_integer_value(jmax) : 0, err);
		if (rc)
			return rc;
	}
	return 0;
}

int mg_mask_cfg_parse(struct mg_mask_cfg *cfg, const char *json, size_t len,
		      struct mg_mask_err *err)
{
	json_error_t je;
	json_t *root, *v;
	const char *key;
	int rc = 0;

	mg_mask_cfg_default(cfg);
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root || !json_is_object(root)) {
		json_decref(root);
		return cfg_fail(err, "mask config is not a JSON object", -EINVAL);
	}
	json_object_foreach(root, key, v)
	{
		if (!strcmp(key, "secrets")) {
			if (!json_is_boolean(v)) {
				rc = cfg_fail(err, "\"secrets\" must be a boolean", -EINVAL);
				break;
			}
			cfg->secrets = json_is_true(v);
		} else if (!strcmp(key, "detectors")) {
			const char *dk;
			json_t *dv;

			if (!json_is_object(v)) {
				rc = cfg_fail(err, "\"detectors\" must be an object", -EINVAL);
				break;
			}
			json_object_foreach(v, dk, dv)
			{
				int id = mg_mask_det_lookup(dk);

				if (id < 0) {
					rc = cfg_fail(err, "unknown detector name", -EINVAL);
					break;
				}
				if (!json_is_boolean(dv)) {
					rc = cfg_fail(err, "detector switches must be booleans",
						      -EINVAL);
					break;
				}
				cfg->detectors[id] = json_is_true(dv);
			}
			if (rc)
				break;
		} else if (!strcmp(key, "custom")) {
			rc = cfg_parse_custom(cfg, v, err);
			if (rc)
				break;
		} else {
			rc = cfg_fail(err, "unknown member in mask config", -EINVAL);
			break;
		}
	}
	json_decref(root);
	return rc;
}

int mg_mask_cfg_load(struct mg_mask_cfg *cfg, const char *path, struct mg_mask_err *err)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return cfg_fail(err, "cannot open the mask config", -errno);
	for (;;) {
		ssize_t n;

		if (len == cap) {
			char *nb;

			if (cap >= (1u << 20)) {
				rc = cfg_fail(err, "mask config larger than 1 MiB", -EFBIG);
				goto out;
			}
			cap = cap ? cap * 2 : 4096;
			nb = realloc(buf, cap);
			if (!nb) {
				rc = cfg_fail(err, "out of memory", -ENOMEM);
				goto out;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = cfg_fail(err, "cannot read the mask config", -errno);
			goto out;
		}
		if (!n)
			break;
		len += (size_t)n;
	}
	rc = mg_mask_cfg_parse(cfg, buf ? buf : "", len, err);
out:
	free(buf);
	close(fd);
	return rc;
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

static void out_flush(struct out *o)
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

static void out_copy(struct out *o, const char *p, size_t n)
{
	if (o->ref_len)
		out_flush(o);
	if (n > OUTBUF - o->len) {
		out_flush(o);
		if (n >= OUTBUF) {
			out_sink(o, p, n);
			return;
		}
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

static inline void out_byte(struct out *o, char c)
{
	if (o->ref_len || o->len == OUTBUF)
		out_flush(o);
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
		out_flush(o);
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
static const char *scan_str(const char *p, const char *end)
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

/* Bytes a JSON string cannot hold raw, or that Go's encoder escapes (the
 * HTML-significant <, >, & and U+2028/U+2029): escaping them the same way
 * keeps API-server output byte-identical through the masker. */
static const uint8_t esc_need[256] = {
	[0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, ['<'] = 1, ['>'] = 1, ['&'] = 1, [0xe2] = 1,
};

/* Writes the decoded string bytes <p>[0..<n>) JSON-escaped. <p> never splits
 * a UTF-8 sequence (the scanner only cuts at ASCII bytes). */
static void out_escaped(struct out *o, const char *p, size_t n)
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
			out_copy(o, p + run, i - run);
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
		out_copy(o, e, el);
		i++;
		run = i;
	}
	if (n > run)
		out_copy(o, p + run, n - run);
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

static void trigv_init(struct trigv *tv, const struct rules *r)
{
	tv->n = r->ntrig;
#ifdef __SSE2__
	for (unsigned k = 0; k < tv->n; k++)
		tv->t[k] = _mm_set1_epi8((char)r->trigs[k]);
#endif
}

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

static void scan_reset(struct scan *sc)
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
			out_escaped(sc->o, p, n);
		else
			out_copy(sc->o, p, n);
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
		out_escaped(sc->o, sc->hold, n);
	else
		out_copy(sc->o, sc->hold, n);
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

static void emit_marker(struct scan *sc, unsigned det)
{
	pend_flush(sc);
	out_copy(sc->o, sc->r->marker[det], sc->r->marker_len[det]);
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
	emit_marker(sc, det);
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
			out_copy(sc->o, "-----END ", 9);
			out_copy(sc->o, s->endbuf, s->endlen);
			out_copy(sc->o, "-----", 5);
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
static void scan_block(struct scan *sc, const char *p, size_t n, bool clean)
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
static bool scan_passes(const struct scan *sc, const uint8_t *blk, size_t n)
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
static void scan_end(struct scan *sc)
{
	if (sc->nc)
		cands_resolve(sc, false);
	if (sc->ns)
		swallow_end(sc);
	sc->kw = KW_NONE;
	sc->lb_len = 0;
}

/* ---- JSON masker ---- */

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
	scan_reset(&m->sc);
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
	trigv_init(&m->sc.tv, r);
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

	out_escaped(&m->o, p, n);
	return m->o.err;
}

static void inner_fail(struct mg_mask_json *m)
{
	m->inner_failed = true;
	if (!m->o.err)
		out_copy(&m->o, MG_MASK_STRING_MARKER, sizeof(MG_MASK_STRING_MARKER) - 1);
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
			out_escaped(&m->o, p, n);
		break;
	case V_SCAN:
		if (m->cap)
			cap_add(m, p, n);
		scan_block(&m->sc, p, n, clean);
		break;
	case V_INNER:
		inner_feed(m, p, n);
		break;
	default: /* masked whole: one marker for a non-empty value */
		if (m->vmarked || !n)
			break;
		m->vmarked = true;
		if (m->vmode == V_DATA) {
			out_copy(&m->o, MG_MASK_DATA_MARKER, sizeof(MG_MASK_DATA_MARKER) - 1);
			m->st->secret_fields++;
		} else if (m->vmode == V_SDATA || m->vmode == V_PLAINMASK) {
			out_copy(&m->o, MG_MASK_STRING_MARKER, sizeof(MG_MASK_STRING_MARKER) - 1);
			if (m->vmode == V_SDATA)
				m->st->secret_fields++;
		} else {
			emit_marker(&m->sc, MG_MASK_DET_GENERIC_PASSWORD);
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
		scan_end(&m->sc);
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
			    !m->dec_len && scan_passes(&m->sc, (const uint8_t *)p, n)) {
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
		out_copy(&m->o, MG_MASK_DATA_MARKER, sizeof(MG_MASK_DATA_MARKER) - 1);
	else
		out_copy(&m->o, MG_MASK_STRING_MARKER, sizeof(MG_MASK_STRING_MARKER) - 1);
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
	struct mg_mask_cfg def;
	struct rules *r = malloc(sizeof(*r));
	struct mg_mask_json *m;
	uint8_t pos = P_UNKNOWN;

	if (!cfg) {
		mg_mask_cfg_default(&def);
		cfg = &def;
	}
	if (!r || rules_compile(r, cfg)) {
		free(r);
		return NULL;
	}
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
	out_flush(&m->o);
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
	out_flush(&m->o);
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
	trigv_init(&t->sc.tv, r);
	scan_reset(&t->sc);
	return t;
}

static struct rules *rules_new(const struct mg_mask_cfg *cfg)
{
	struct mg_mask_cfg def;
	struct rules *r = malloc(sizeof(*r));

	if (!cfg) {
		mg_mask_cfg_default(&def);
		cfg = &def;
	}
	if (r && rules_compile(r, cfg)) {
		free(r);
		r = NULL;
	}
	return r;
}

struct mg_mask_text *mg_mask_text_new(const struct mg_mask_cfg *cfg)
{
	struct rules *r = rules_new(cfg);
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
	out_flush(&t->o);
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
		scan_block(&t->sc, in, len, true);
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
	scan_end(&t->sc);
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
	x->r = rules_new(cfg);
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

/* ---- CLI: mcpgatectl mask ---- */

static int fd_write(void *ctx, const char *p, size_t n)
{
	int fd = *(int *)ctx;

	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* What the request path says: resource, subresource and whether it is a
 * watch. A plain split, not the API server's full RequestInfo rules. */
static void cli_path(const char *path, char *res, size_t rlen, char *sub, size_t slen, bool *watch)
{
	const char *seg[16];
	size_t segl[16], n = 0, i;
	const char *p = path, *q, *e;

	res[0] = sub[0] = 0;
	if ((q = strstr(p, "://")) != NULL) {
		p = strchr(q + 3, '/');
		if (!p)
			return;
	}
	q = strchr(p, '?');
	e = q ? q : p + strlen(p);
	for (const char *a = q ? q + 1 : NULL; a && *a;) {
		const char *amp = strchr(a, '&');
		size_t l = amp ? (size_t)(amp - a) : strlen(a);

		if ((l == 7 && !strncmp(a, "watch=1", 7)) ||
		    (l == 10 && !strncmp(a, "watch=true", 10)))
			*watch = true;
		a = amp ? amp + 1 : NULL;
	}
	while (p < e && n < 16) {
		const char *s;

		while (p < e && *p == '/')
			p++;
		s = p;
		while (p < e && *p != '/')
			p++;
		if (p > s) {
			seg[n] = s;
			segl[n++] = (size_t)(p - s);
		}
	}
#define SEG_IS(k, lit) (segl[k] == sizeof(lit) - 1 && !memcmp(seg[k], lit, segl[k]))
	if (n && SEG_IS(0, "api"))
		i = 2;
	else if (n && SEG_IS(0, "apis"))
		i = 3;
	else
		return;
	if (i < n && SEG_IS(i, "watch")) {
		*watch = true;
		i++;
	}
	if (i + 2 < n && SEG_IS(i, "namespaces"))
		i += 2;
#undef SEG_IS
	if (i < n && segl[i] < rlen) {
		memcpy(res, seg[i], segl[i]);
		res[segl[i]] = 0;
	}
	if (i + 2 < n && segl[i + 2] < slen) {
		memcpy(sub, seg[i + 2], segl[i + 2]);
		sub[segl[i + 2]] = 0;
	}
}

static int cli_usage(FILE *f, int rc)
{
	fprintf(f, "usage: mcpgatectl mask [--path URL] [--content-type TYPE] "
		   "[--content-encoding gzip] [--config FILE] [--stats] < body > masked\n");
	return rc;
}

static void cli_stats(const struct mg_mask_cfg *cfg, const struct mg_mask_stats *st)
{
	fprintf(stderr,
		"{\"secrets\":%llu,\"secretFields\":%llu,\"lastApplied\":%llu,"
		"\"bytesIn\":%llu,\"bytesOut\":%llu,\"hits\":{",
		(unsigned long long)st->secrets, (unsigned long long)st->secret_fields,
		(unsigned long long)st->last_applied, (unsigned long long)st->bytes_in,
		(unsigned long long)st->bytes_out);
	for (unsigned i = 0, first = 1; i < MG_MASK_DET_BUILTIN + cfg->n_custom; i++) {
		if (!st->hits[i])
			continue;
		fprintf(stderr, "%s\"%s\":%llu", first ? "" : ",", mg_mask_det_name(cfg, i),
			(unsigned long long)st->hits[i]);
		first = 0;
	}
	fprintf(stderr, "}}\n");
}

int mg_mask_cli(int argc, char **argv)
{
	const char *path = "", *ctype = NULL, *cenc = NULL, *config = NULL;
	bool stats = false, watch = false;
	struct mg_mask_body_opts opts = {.kind = MG_MASK_KIND_JSON};
	struct mg_mask_cfg cfg;
	struct mg_mask_err cerr = {0};
	struct mg_mask_body *b;
	char res[64], sub[64];
	int ofd = 1, rc = 0, ret = 0;
	struct mg_mask_sink out = {fd_write, &ofd};
	static char buf[65536];
	bool first = true;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], **dst = NULL;

		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			return cli_usage(stdout, 0);
		if (!strcmp(a, "--stats")) {
			stats = true;
			continue;
		}
		if (!strcmp(a, "--path"))
			dst = &path;
		else if (!strcmp(a, "--content-type"))
			dst = &ctype;
		else if (!strcmp(a, "--content-encoding"))
			dst = &cenc;
		else if (!strcmp(a, "--config"))
			dst = &config;
		if (!dst || i + 1 >= argc)
			return cli_usage(stderr, 2);
		*dst = argv[++i];
	}
	mg_mask_cfg_default(&cfg);
	if (config && mg_mask_cfg_load(&cfg, config, &cerr)) {
		fprintf(stderr, "mcpgatectl mask: %s: %s\n", config, cerr.reason);
		return 2;
	}
	cli_path(path, res, sizeof(res), sub, sizeof(sub), &watch);
	if (!strcmp(sub, "log") || !strcmp(sub, "exec") || !strcmp(sub, "attach"))
		opts.kind = MG_MASK_KIND_TEXT;
	else if (watch)
		opts.kind = MG_MASK_KIND_JSON_STREAM;
	if (ctype) {
		switch (mg_mask_content_type(mg_str_of(ctype))) {
		case MG_MASK_CT_JSON:
			opts.kind = watch ? MG_MASK_KIND_JSON_STREAM : MG_MASK_KIND_JSON;
			break;
		case MG_MASK_CT_TEXT:
			opts.kind = MG_MASK_KIND_TEXT;
			break;
		case MG_MASK_CT_PROTOBUF:
			fprintf(stderr, "mcpgatectl mask: protobuf bodies cannot be masked; "
					"ask for application/json\n");
			return 1;
		default:
			fprintf(stderr, "mcpgatectl mask: content type %s cannot be masked\n",
				ctype);
			return 1;
		}
	}
	if (cenc && *cenc && strcasecmp(cenc, "identity")) {
		if (strcasecmp(cenc, "gzip")) {
			fprintf(stderr, "mcpgatectl mask: content encoding %s cannot be masked\n",
				cenc);
			return 1;
		}
		opts.gzip = true;
	}
	opts.resource = mg_str_of(res);
	b = mg_mask_body_new(&cfg, &opts);
	if (!b) {
		fprintf(stderr, "mcpgatectl mask: out of memory\n");
		return 1;
	}
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "mcpgatectl mask: read stdin: %s\n", strerror(errno));
			ret = 1;
			goto out;
		}
		if (!n)
			break;
		if (first && !opts.gzip && opts.kind != MG_MASK_KIND_TEXT &&
		    mg_mask_is_protobuf(buf, (size_t)n)) {
			fprintf(stderr, "mcpgatectl mask: protobuf bodies cannot be masked; "
					"ask for application/json\n");
			ret = 1;
			goto out;
		}
		first = false;
		rc = mg_mask_body_feed(b, buf, (size_t)n, &out);
		if (rc)
			break;
	}
	if (!rc)
		rc = mg_mask_body_finish(b, &out);
	if (rc) {
		const struct mg_mask_err *e = mg_mask_body_error(b);

		fprintf(stderr,
			"mcpgatectl mask: input cannot be masked safely: %s (at byte %llu); "
			"output stopped there\n",
			e->reason ? e->reason : strerror(-rc), (unsigned long long)e->pos);
		ret = 1;
	}
	if (stats)
		cli_stats(&cfg, mg_mask_body_stats(b));
out:
	mg_mask_body_free(b);
	return ret;
}
