/*
 * mask: streaming, bounded-memory secret redaction of API-server responses.
 *
 * The proxy runs every response body through one of these maskers before a
 * byte reaches the pod; requests are never rewritten. Masking is done on
 * what the API server answers, by object kind, so the form of the question
 * (get, list, watch, Table, last-applied annotation, logs) does not matter.
 *
 * What is masked
 *  - Secret objects wherever they appear (single object, SecretList, generic
 *    List, watch events, Table rows, nested in other objects): every value of
 *    `data` becomes MG_MASK_DATA_MARKER (valid base64, so typed clients still
 *    decode) and every value of `stringData` becomes MG_MASK_STRING_MARKER.
 *    Keys are kept; `managedFields` pass (they hold no values).
 *  - `kubectl.kubernetes.io/last-applied-configuration` annotations: the
 *    JSON document inside the string is masked by a nested streaming masker
 *    (same rules), its output re-escaped into the string. If that document is
 *    not valid JSON, the rest of the annotation is replaced by a marker. The
 *    nested document's position comes from its own kind alone, never from the
 *    object it sits on (often a PartialObjectMetadata: Table rows, metadata
 *    lists and watches): kubectl sorts its keys, so its `data` comes before
 *    its `kind` and is masked until that kind says it is not a Secret (a
 *    ConfigMap's last-applied data is masked too: its live `data` is not).
 *  - Pattern detectors over every other string value and over text streams;
 *    a hit keeps any public prefix (`ghp_`, `AKIA`, `-----BEGIN … KEY-----`)
 *    and replaces the secret part by `***MASKED:<detector>***`.
 *
 * How a Secret is recognised while bytes stream (kind may come after data:
 * unstructured objects and last-applied documents serialise keys in sorted
 * order, so "data" < "kind" is normal there):
 *  - each object has a kind (once its "kind" member is read) and a position
 *    hint: top level, watch event `object` and Table `rows[].object` take the
 *    request's resource hint ("secrets" → Secret); items of a SecretList are
 *    Secrets, items of another typed `XList` are X, items of a generic List
 *    are unknown; other nested objects are "not a Secret" when their parent
 *    is known not to be one (unless they carry an apiVersion of their own:
 *    an embedded manifest), else unknown.
 *  - a `data`/`stringData` member is masked when its object is a Secret, or
 *    its kind is not known yet and its position does not say "not a Secret".
 *    So ConfigMap data stays readable (kind comes first from the API server,
 *    and typed list items inherit the list's kind) while an object whose kind
 *    is still unknown is treated as a Secret.
 *  - if a "kind": "Secret" (or "SecretList") arrives after data of that
 *    object was passed unmasked, the masker fails (fail closed): the bytes
 *    already sent were proven safe under what was known, nothing more goes.
 *
 * Streaming and memory
 *  - Output goes to a caller-provided sink as bytes become safe; a feed may
 *    write nothing (pending detector candidates are held back) or more than
 *    it got (markers). Any split of the input gives the same output.
 *  - Memory per masker is fixed: about 44 KiB for a JSON masker (a nesting
 *    stack of 512 levels, a hold-back buffer of at most ~16.5 KiB for
 *    undecided detector candidates - the longest is a JWT header+payload; a
 *    longer candidate is masked -, a 16 KiB output buffer, a 4 KiB decode
 *    batch), plus one nested masker of the same size once a last-applied
 *    annotation is seen, plus ~18 KiB of compiled rules; ~35 KiB per text
 *    masker; gzip adds zlib's inflate and deflate state (~300 KiB).
 *  - Valid JSON in gives valid JSON out. Malformed JSON (including invalid
 *    UTF-8 and lone surrogates), nesting beyond 512, or an unsafe ordering is
 *    an error; the caller must stop the stream. Strings are re-encoded the
 *    way the API server (Go encoding/json) writes them, so unmasked API
 *    server output passes byte for byte.
 *
 * Text streams (pods/log, exec/attach output) use the same detectors as
 * streaming state machines: a hit split across chunks or frames is masked,
 * PEM blocks spanning lines are masked up to their END line (at most 64 KiB),
 * and bytes that cannot be part of a hit are written at once (a log line is
 * out before its newline arrives). Only bytes after a confirmed prefix
 * (e.g. after `ghp_`) are held until the candidate is decided.
 *
 * A candidate cut short is masked: when a stream ends (finish, the end of a
 * JSON string, an exec channel's end) or pauses (flush) while bytes after a
 * matched prefix or keyword are held, they are masked whatever their length
 * (limitBytes or an exec exit can stop a token one byte short of its
 * detector's minimum, and its tail is then a guess away). A run after an
 * access key id, which has no prefix of its own, is masked once it holds 20
 * chars; shorter, an end writes it and a pause keeps it held.
 *
 * Detectors (names as used in the config and in markers):
 *   aws-access-key   AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA + 16 [A-Z0-9];
 *                    ids ending in EXAMPLE (AKIAIOSFODNN7EXAMPLE) are left alone
 *   aws-secret-key   40+ chars [A-Za-z0-9/+=] after *secret_access_key / aws_secret_key
 *                    assignments, or starting within 512 bytes after an access key id;
 *                    values ending in EXAMPLEKEY are left alone
 *   private-key      -----BEGIN [A-Z ]*PRIVATE KEY( BLOCK)?----- … -----END …-----
 *   jwt              eyJ<b64url>.ey<b64url>.<b64url> (ServiceAccount tokens too)
 *   github-token     ghp_ gho_ ghu_ ghs_ ghr_ (36+), github_pat_ (22+)
 *   gitlab-token     glpat- (20+)
 *   slack-token      xoxb- xoxp- xoxa- xoxr- xoxs- (10+)
 *   eks-token        k8s-aws-v1. (20+)
 *   generic-password <identifier ending in password|passwd|secret|token|apikey|
 *                    accesskey|secretkey|privatekey>[quote][ws](=|:)[ws][quote]<value>:
 *                    the value up to whitespace or a quote; `authorization` values up
 *                    to the end of the line. In JSON it also masks string values of
 *                    members whose key ends in one of those words, and the `value`
 *                    of an object whose `name` does (container env).
 *
 * Config file (mg_mask_cfg_parse / mg_mask_cfg_load), every member optional:
 *   {
 *     "secrets": true,                       // mask Secret data/stringData
 *     "detectors": {"jwt": false, ...},      // built-in detector on/off
 *     "custom": [{"name": "acme-key",        // [a-z0-9-], 1..31 chars
 *                 "prefix": "acme_",         // literal, 1..31 bytes
 *                 "charset": "A-Za-z0-9_",   // ranges a-b and single chars
 *                 "min": 20, "max": 64}]     // hit at min body chars (1..255);
 *   }                                        // mask up to max (0: no limit)
 * Unknown members and detector names are errors.
 */
#ifndef MCPGATE_MASK_H
#define MCPGATE_MASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpgate/str.h"

/* What a Secret `data` value becomes: base64("***MASKED***"). */
#define MG_MASK_DATA_MARKER "KioqTUFTS0VEKioq"
/* What a Secret `stringData` value, or an unparsable last-applied, becomes. */
#define MG_MASK_STRING_MARKER "***MASKED***"

/** Built-in detectors; custom detectors take ids MG_MASK_DET_BUILTIN + i. */
enum mg_mask_det {
	MG_MASK_DET_AWS_ACCESS_KEY = 0,
	MG_MASK_DET_AWS_SECRET_KEY,
	MG_MASK_DET_PRIVATE_KEY,
	MG_MASK_DET_JWT,
	MG_MASK_DET_GITHUB_TOKEN,
	MG_MASK_DET_GITLAB_TOKEN,
	MG_MASK_DET_SLACK_TOKEN,
	MG_MASK_DET_EKS_TOKEN,
	MG_MASK_DET_GENERIC_PASSWORD,
	MG_MASK_DET_BUILTIN, /* count of built-in detectors */
};

#define MG_MASK_MAX_CUSTOM 16
#define MG_MASK_DET_MAX	   (MG_MASK_DET_BUILTIN + MG_MASK_MAX_CUSTOM)

/** A custom detector: a literal prefix, then min..max bytes of a charset. */
struct mg_mask_custom {
	char name[32];	     /* [a-z0-9-]; the marker is ***MASKED:<name>*** */
	char prefix[32];     /* NUL-terminated literal, 1..31 bytes, kept in output */
	uint8_t charset[32]; /* bit set of the bytes a body may hold */
	unsigned min;	     /* a hit once this many body bytes follow (1..255) */
	unsigned max;	     /* mask at most this many body bytes; 0: the whole run */
};

/** What to mask. Start from mg_mask_cfg_default(). */
struct mg_mask_cfg {
	bool secrets;			     /* Secret data/stringData (default true) */
	bool detectors[MG_MASK_DET_BUILTIN]; /* each built-in detector (default all on) */
	unsigned n_custom;
	struct mg_mask_custom custom[MG_MASK_MAX_CUSTOM];
};

/** Why masking stopped; reason is a static string. */
struct mg_mask_err {
	const char *reason;
	uint64_t pos; /* input offset of the offending byte; for a gzip body, in the
		       * compressed bytes for gzip errors, else in the inflated ones */
};

/** What was masked (counts only, never values), for the audit record. */
struct mg_mask_stats {
	uint64_t hits[MG_MASK_DET_MAX]; /* detector hits, by detector id */
	uint64_t secrets;		/* objects whose data/stringData was masked */
	uint64_t secret_fields;		/* data/stringData values masked */
	uint64_t last_applied;		/* last-applied annotations run through the masker */
	uint64_t bytes_in;		/* body bytes read (compressed for gzip bodies) */
	uint64_t bytes_out;		/* body bytes written */
};

/** Output sink: returns 0, or a negative errno that stops the masker. */
typedef int mg_mask_write_fn(void *ctx, const char *buf, size_t len);

struct mg_mask_sink {
	mg_mask_write_fn *write;
	void *ctx;
};

/* ---- configuration ---- */

/** Secrets masked, every built-in detector on, no custom detector. */
void mg_mask_cfg_default(struct mg_mask_cfg *cfg);

/**
 * Adds a custom detector <name> (see struct mg_mask_custom) whose body bytes
 * are described by <charset> ("A-Za-z0-9_-": ranges and single bytes; a '-'
 * first or last is literal). Returns 0, or -EINVAL / -ENOSPC with <err>.
 */
int mg_mask_cfg_add_custom(struct mg_mask_cfg *cfg, const char *name, const char *prefix,
			   const char *charset, unsigned min, unsigned max,
			   struct mg_mask_err *err);

/**
 * Parses the JSON config <json>[0..<len>) (format in the comment at the top)
 * into <cfg>, starting from the defaults. Returns 0 or -EINVAL with <err>.
 */
int mg_mask_cfg_parse(struct mg_mask_cfg *cfg, const char *json, size_t len,
		      struct mg_mask_err *err);

/** mg_mask_cfg_parse() on the file <path>; -errno if it cannot be read. */
int mg_mask_cfg_load(struct mg_mask_cfg *cfg, const char *path, struct mg_mask_err *err);

/** Built-in detector id for <name>, or -1. */
int mg_mask_det_lookup(const char *name);

/** Name of detector <id> under <cfg> (custom names included), or NULL. */
const char *mg_mask_det_name(const struct mg_mask_cfg *cfg, unsigned id);

/* ---- JSON bodies ---- */

/** How a JSON body is read. */
struct mg_mask_json_opts {
	bool stream;		/* a watch: a sequence of top-level values (NDJSON) */
	struct mg_str resource; /* the request's resource ("secrets", "configmaps"); may be empty */
};

struct mg_mask_json;

/**
 * A JSON masker with its own copy of <cfg> (NULL: defaults). Returns NULL
 * when out of memory or when <cfg> is invalid.
 */
struct mg_mask_json *mg_mask_json_new(const struct mg_mask_cfg *cfg,
				      const struct mg_mask_json_opts *opts);

/**
 * Masks <in>[0..<len>) and writes what is safe to <out> (possibly nothing:
 * undecided bytes are held). Returns 0, -EINVAL when the input is malformed
 * or cannot be masked safely (see mg_mask_json_error()), -ENOMEM, or the
 * sink's negative return. Errors are sticky: later calls return them again.
 */
int mg_mask_json_feed(struct mg_mask_json *m, const char *in, size_t len,
		      const struct mg_mask_sink *out);

/**
 * Ends the body: writes what is still held and returns 0, or -EINVAL if the
 * document (or the last value of a stream) is incomplete.
 */
int mg_mask_json_finish(struct mg_mask_json *m, const struct mg_mask_sink *out);

const struct mg_mask_stats *mg_mask_json_stats(const struct mg_mask_json *m);
const struct mg_mask_err *mg_mask_json_error(const struct mg_mask_json *m);
void mg_mask_json_free(struct mg_mask_json *m);

/* ---- text streams (logs, exec/attach output) ---- */

struct mg_mask_text;

/** A text masker with its own copy of <cfg> (NULL: defaults), or NULL. */
struct mg_mask_text *mg_mask_text_new(const struct mg_mask_cfg *cfg);

/** Masks <in>[0..<len>) into <out>. Returns 0 or the sink's negative return. */
int mg_mask_text_feed(struct mg_mask_text *t, const char *in, size_t len,
		      const struct mg_mask_sink *out);

/**
 * Decides what is held as if the stream paused here for good. For an
 * interactive exec whose channel has been idle for a short while: held bytes
 * of a candidate (after `ghp_`, `eyJ`, …) are masked, not written, and what
 * continues the candidate after the flush is swallowed into the same hit, so
 * a secret split across frames on both sides of a flush stays masked. A
 * matched prefix with nothing after it yet, or a run after an access key id
 * shorter than 20 chars, stays pending and held.
 */
int mg_mask_text_flush(struct mg_mask_text *t, const struct mg_mask_sink *out);

/**
 * Ends the stream: decides what is still held (a candidate cut short is
 * masked, see above) and writes the rest. Returns 0 or the sink's error.
 */
int mg_mask_text_finish(struct mg_mask_text *t, const struct mg_mask_sink *out);

const struct mg_mask_stats *mg_mask_text_stats(const struct mg_mask_text *t);
void mg_mask_text_free(struct mg_mask_text *t);

/* ---- exec/attach: one text masker per channel ---- */

#define MG_MASK_EXEC_CHANNELS 8

struct mg_mask_exec;

/** Per-channel text maskers for one exec/attach session, or NULL. */
struct mg_mask_exec *mg_mask_exec_new(const struct mg_mask_cfg *cfg);

/**
 * Masks one frame payload <in>[0..<len>) of server-to-client <channel>
 * (1 stdout, 2 stderr, 3 error; < MG_MASK_EXEC_CHANNELS) into <out>; the
 * caller frames the output for the same channel. Returns 0, -EINVAL for a
 * channel out of range, -ENOMEM, or the sink's error.
 */
int mg_mask_exec_feed(struct mg_mask_exec *x, unsigned channel, const char *in, size_t len,
		      const struct mg_mask_sink *out);

/** mg_mask_text_flush() on <channel>. */
int mg_mask_exec_flush(struct mg_mask_exec *x, unsigned channel, const struct mg_mask_sink *out);

/** mg_mask_text_finish() on <channel> (call for each channel at the end). */
int mg_mask_exec_finish(struct mg_mask_exec *x, unsigned channel, const struct mg_mask_sink *out);

/** Counts summed over all channels into <st>. */
void mg_mask_exec_stats(const struct mg_mask_exec *x, struct mg_mask_stats *st);
void mg_mask_exec_free(struct mg_mask_exec *x);

/* ---- whole response bodies (JSON, watch, text; optionally gzip) ---- */

enum mg_mask_kind {
	MG_MASK_KIND_JSON = 0,	  /* one JSON document */
	MG_MASK_KIND_JSON_STREAM, /* a watch: NDJSON events */
	MG_MASK_KIND_TEXT,	  /* pods/log and other text/plain */
};

struct mg_mask_body_opts {
	enum mg_mask_kind kind;
	bool gzip;		/* Content-Encoding: gzip: inflate, mask, deflate (gzip) */
	struct mg_str resource; /* request resource hint for JSON */
};

struct mg_mask_body;

/** A body masker for <opts> under <cfg> (NULL: defaults), or NULL. */
struct mg_mask_body *mg_mask_body_new(const struct mg_mask_cfg *cfg,
				      const struct mg_mask_body_opts *opts);

/**
 * Masks body bytes <in>[0..<len>) (compressed when opts.gzip) into <out>.
 * Gzip output is sync-flushed at the end of each feed that produced output,
 * so a gzip watch stays live. Returns 0 or -errno as mg_mask_json_feed();
 * corrupt gzip is -EINVAL.
 */
int mg_mask_body_feed(struct mg_mask_body *b, const char *in, size_t len,
		      const struct mg_mask_sink *out);

/** Ends the body (gzip must be complete too). Returns 0 or -errno. */
int mg_mask_body_finish(struct mg_mask_body *b, const struct mg_mask_sink *out);

const struct mg_mask_stats *mg_mask_body_stats(const struct mg_mask_body *b);
const struct mg_mask_err *mg_mask_body_error(const struct mg_mask_body *b);
void mg_mask_body_free(struct mg_mask_body *b);

/* ---- helpers for the proxy ---- */

/** What the proxy can do with a response Content-Type. */
enum mg_mask_ctype {
	MG_MASK_CT_JSON = 0, /* application/json and +json types (any parameters) */
	MG_MASK_CT_TEXT,     /* text/plain (logs) */
	MG_MASK_CT_PROTOBUF, /* application/vnd.kubernetes.protobuf: refuse */
	MG_MASK_CT_REFUSE,   /* anything else (yaml, cbor, unknown): refuse */
};

/** Classifies the Content-Type value <ct> (media type case-insensitive). */
enum mg_mask_ctype mg_mask_content_type(struct mg_str ct);

/**
 * True if <buf>[0..<len>) starts with the Kubernetes protobuf envelope magic
 * "k8s\0". Needs len >= 4 for a definite answer; fewer bytes give false.
 */
bool mg_mask_is_protobuf(const char *buf, size_t len);

/**
 * `mcpgatectl mask [--path URL] [--content-type T] [--content-encoding gzip]
 * [--config FILE] [--stats]`: masks stdin to stdout. argv[0] is the command
 * name. The path decides the resource hint, watch (watch=1|true or /watch/)
 * and text (pods/log, exec, attach). Returns the exit status: 0, 1 when the
 * input cannot be masked safely (message on stderr; what was written before
 * is safe), 2 for usage errors.
 */
int mg_mask_cli(int argc, char **argv);

#endif /* MCPGATE_MASK_H */
