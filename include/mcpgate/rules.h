/*
 * mask rules: the detectors and the masking configuration (which detectors
 * run, custom patterns, whether Secrets are masked), and the types every
 * masker shares (sink, stats, error). What is masked, and how, is described
 * in mcpgate/mask.h.
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
#ifndef MCPGATE_RULES_H
#define MCPGATE_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#endif /* MCPGATE_RULES_H */
