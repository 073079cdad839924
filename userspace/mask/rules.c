/*
 * mask rules: the masking configuration (defaults, custom detectors, the
 * JSON config file) and its compilation into the tables the scanner runs
 * on (struct rules in internal.h): token prefixes by last byte, trigger
 * bytes, keyword lists, markers.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "mcpgate/rules.h"

#include "internal.h"

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

struct rules *mg_rules_new(const struct mg_mask_cfg *cfg)
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
