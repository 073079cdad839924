/*
 * creds/impersonate: the daemon's own token plus Impersonate-User,
 * -Group and -Extra headers expanded from the pod (templates with
 * {namespace} {pod} {uid} {serviceaccount}).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpgate/creds.h"

#include "provider.h"

/* ---- impersonate ---- */

/* Expands {namespace} {pod} {uid} {serviceaccount} in <tpl> from <who>.
 * Returns a malloc'd string, NULL if a placeholder has no value (or
 * ENOMEM, or an unknown placeholder). */
static char *expand(const char *tpl, const struct mg_creds_subject *who)
{
	static const char *const names[] = {"namespace", "pod", "uid", "serviceaccount"};
	char *o = NULL;
	size_t olen = 0;
	FILE *f = open_memstream(&o, &olen);

	if (!f)
		return NULL;
	for (const char *p = tpl; *p;) {
		const char *val = NULL;
		size_t i, n;

		if (*p != '{') {
			fputc(*p++, f);
			continue;
		}
		for (i = 0; i < 4; i++) {
			n = strlen(names[i]);
			if (!strncmp(p + 1, names[i], n) && p[1 + n] == '}')
				break;
		}
		if (i == 4)
			goto bad;
		if (who)
			val = i == 0   ? who->ns
			      : i == 1 ? who->pod
			      : i == 2 ? who->uid
				       : who->service_account;
		if (!val || !*val)
			goto bad;
		fputs(val, f);
		p += n + 2;
	}
	if (fclose(f)) {
		free(o);
		return NULL;
	}
	return o;
bad:
	fclose(f);
	free(o);
	return NULL;
}

/* Impersonate-Extra-<key>: the key lower-cased, and every byte that may
 * not appear in a header name (RFC 9110 §5.6.2 tchar), or '%' itself,
 * percent-encoded; the API server lower-cases the header name and
 * path-unescapes it back into the key. */
static char *extra_header_name(const char *key)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = strlen(key);
	char *o = malloc(sizeof("Impersonate-Extra-") + 3 * n), *p;

	if (!o)
		return NULL;
	p = o + sprintf(o, "Impersonate-Extra-");
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)key[i];

		if (ch >= 'A' && ch <= 'Z')
			ch = (unsigned char)(ch + 32);
		if (mg_creds_is_tchar(ch) && ch != '%') {
			*p++ = (char)ch;
		} else {
			*p++ = '%';
			*p++ = hex[ch >> 4];
			*p++ = hex[ch & 15];
		}
	}
	*p = '\0';
	return o;
}

static int add_header(struct mg_creds_result *out, char *name, char *value)
{
	struct mg_creds_header *h;

	if (!name || !value)
		goto nomem;
	h = realloc(out->headers, (out->n_headers + 1) * sizeof(*h));
	if (!h)
		goto nomem;
	out->headers = h;
	h[out->n_headers].name = name;
	h[out->n_headers].value = value;
	out->n_headers++;
	return 0;
nomem:
	free(name);
	free(value);
	return mg_creds_set_error(out, -ENOMEM, 500, "InternalError", "out of memory");
}

static int impersonate_get(struct mg_creds *c, const struct mg_creds_subject *who,
			   struct mg_creds_result *out)
{
	const char *tpl =
		c->cfg.user ? c->cfg.user : "system:serviceaccount:{namespace}:{serviceaccount}";
	char *bearer = NULL, *v;
	int ret;

	ret = mg_creds_read_secret_file(c->cfg.token_file, &bearer);
	if (ret < 0)
		return mg_creds_set_error(out, ret, 500, "NoCredentials", "token file %s: %s",
					  c->cfg.token_file, strerror(-ret));
	if (!*bearer || !mg_creds_header_safe(bearer)) {
		ret = mg_creds_set_error(out, -EINVAL, 500, "NoCredentials",
					 "token file %s is empty or not one line",
					 c->cfg.token_file);
		goto out;
	}
	ret = mg_creds_set_bearer(out, bearer);
	if (ret < 0)
		goto out;
	v = expand(tpl, who);
	if (!v || !*v || !mg_creds_header_safe(v)) {
		free(v);
		ret = mg_creds_set_error(out, -EINVAL, 500, "InvalidSubject",
					 "impersonated user template has no value for this pod");
		goto out;
	}
	ret = add_header(out, strdup("Impersonate-User"), v);
	for (size_t i = 0; !ret && i < c->cfg.n_groups; i++) {
		v = expand(c->cfg.groups[i], who);
		if (!v || !mg_creds_header_safe(v)) {
			free(v);
			ret = mg_creds_set_error(
				out, -EINVAL, 500, "InvalidSubject",
				"impersonated group template has no value for this pod");
			break;
		}
		ret = add_header(out, strdup("Impersonate-Group"), v);
	}
	if (!ret && who && who->uid) {
		if (!mg_creds_header_safe(who->uid))
			ret = mg_creds_set_error(out, -EINVAL, 500, "InvalidSubject",
						 "pod uid has control bytes");
		else
			ret = add_header(out, extra_header_name("mcpgate.io/pod-uid"),
					 strdup(who->uid));
	}
	if (!ret && who && who->approval_id) {
		if (!mg_creds_header_safe(who->approval_id))
			ret = mg_creds_set_error(out, -EINVAL, 500, "InvalidSubject",
						 "approval id has control bytes");
		else
			ret = add_header(out, extra_header_name("mcpgate.io/approval-id"),
					 strdup(who->approval_id));
	}
out:
	mg_creds_wipe_free(bearer, MAX_FILE + 1);
	return ret;
}

int mg_creds_impersonate_check(struct mg_creds *c, char *errbuf, size_t errlen)
{
	const struct mg_creds_config *g = &c->cfg;

	if (!g->token_file || !*g->token_file) {
		snprintf(errbuf, errlen, "%s: token file required",
			 g->kind == MG_CREDS_IMPERSONATE ? "impersonate" : "serviceaccount");
		return -EINVAL;
	}
	if (g->user && (!*g->user || !mg_creds_header_safe(g->user))) {
		snprintf(errbuf, errlen, "impersonate: bad user");
		return -EINVAL;
	}
	for (size_t i = 0; i < g->n_groups; i++)
		if (!g->groups[i] || !*g->groups[i] || !mg_creds_header_safe(g->groups[i])) {
			snprintf(errbuf, errlen, "impersonate: bad group");
			return -EINVAL;
		}
	return 0;
}

const struct mg_creds_ops mg_creds_impersonate_ops = {
	.name = "impersonate",
	.kind = MG_CREDS_IMPERSONATE,
	.check = mg_creds_impersonate_check,
	.get = impersonate_get,
};
