/*
 * reqinfo: the API server's request info for a method and request-target.
 * See include/mcpgate/reqinfo.h for the normalisation rules and why each one
 * exists; the RequestInfo rules themselves follow requestinfo.go step by step,
 * and each step below says which of its rules it mirrors.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "mcpgate/reqinfo.h"

/* ---- character classes ---- */

/* RFC 3986 §3.3: pchar = unreserved / pct-encoded / sub-delims / ":" / "@",
 * '%' handled by the callers. */
static bool is_pchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("-._~!$&'()*+,;=:@", c);
}

/* RFC 3986 §3.4: query = *( pchar / "/" / "?" ), '%' handled by the callers. */
static bool is_query_char(unsigned char c)
{
	return c == '/' || c == '?' || is_pchar(c);
}

/* RFC 9110 §5.6.2: tchar. */
static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c);
}

static int hex_val(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The byte escaped at <s>[<i>] ('%' there), or -1 when the escape is cut
 * short or not two hex digits (RFC 3986 §2.1). */
static int escaped_byte(const char *s, size_t len, size_t i)
{
	int hi, lo;

	if (len - i < 3)
		return -1;
	hi = hex_val(s[i + 1]);
	lo = hex_val(s[i + 2]);
	if (hi < 0 || lo < 0)
		return -1;
	return hi << 4 | lo;
}

static int reject(struct mg_reqinfo_err *err, const char *reason, size_t pos)
{
	if (err) {
		err->reason = reason;
		err->pos = pos;
	}
	return -EINVAL;
}

/* ---- scratch ---- */

struct scratch {
	char *buf;
	size_t len;
	size_t used;
};

/* Reserves <n> bytes of <s>, or returns NULL when they do not fit. */
static char *scratch_take(struct scratch *s, size_t n)
{
	char *p;

	if (n > s->len - s->used)
		return NULL;
	p = s->buf + s->used;
	s->used += n;
	return p;
}

/* Gives back the tail of the last reservation: <n> bytes were not needed. */
static void scratch_give_back(struct scratch *s, size_t n)
{
	s->used -= n;
}

/* ---- path ---- */

/* Whether a decoded path byte must be refused. '/' and '\': an encoded
 * separator is not one (RFC 3986 §2.2) but Go decodes %2F into URL.Path, and
 * some servers treat '\' as a separator. '%': a double-encoded byte, which a
 * further decoder (a pod behind the proxy subresource) would read again.
 * NUL, controls and non-ASCII never appear in Kubernetes paths and confuse
 * logs and C strings. */
static bool bad_decoded_path_byte(unsigned char c)
{
	return c < 0x20 || c >= 0x7f || c == '/' || c == '\\' || c == '%';
}

/* Whether the decoded segment <seg> is a dot-segment (RFC 3986 §3.3). */
static bool is_dot_segment(const char *seg, size_t len)
{
	return (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.');
}

/* Decodes the path <raw> (starts with '/', no '?') into <dst> (room for
 * <raw>.len bytes), checking every rule of the header comment on the way.
 * Returns the decoded length, or -EINVAL with <err> (pos: offset in <raw>). */
static ssize_t decode_path(struct mg_str raw, char *dst, struct mg_reqinfo_err *err)
{
	size_t seg_raw = 1, seg_dst = 1, o = 1;

	dst[0] = '/';
	for (size_t i = 1;; i++) {
		unsigned char c;
		int b;

		if (i == raw.len || raw.ptr[i] == '/') {
			size_t n = o - seg_dst;

			/* A trailing '/' leaves one empty last segment, which
			 * the API server trims; any other empty segment would
			 * shift the parts it reads (it splits on every '/'). */
			if (n == 0 && i != raw.len)
				return reject(err, "empty path segment", seg_raw);
			if (is_dot_segment(dst + seg_dst, n))
				return reject(err, "dot-segment in path", seg_raw);
			if (i == raw.len)
				break;
			dst[o++] = '/';
			seg_raw = i + 1;
			seg_dst = o;
			continue;
		}
		c = raw.ptr[i];
		if (c == '%') {
			b = escaped_byte(raw.ptr, raw.len, i);
			if (b < 0)
				return reject(err, "invalid percent-escape in path", i);
			if (b == '/')
				return reject(err, "encoded '/' in path segment", i);
			if (b == 0)
				return reject(err, "encoded NUL in path", i);
			if (bad_decoded_path_byte(b))
				return reject(err, "forbidden encoded byte in path", i);
			dst[o++] = b;
			i += 2;
			continue;
		}
		if (c == '\\')
			return reject(err, "backslash in path", i);
		if (!is_pchar(c))
			return reject(err, "invalid character in path", i);
		dst[o++] = c;
	}
	return o;
}

/* Takes the first segment off <rest> (no empty segments: decode_path). */
static struct mg_str seg_take(struct mg_str *rest)
{
	const char *slash = memchr(rest->ptr, '/', rest->len);
	struct mg_str seg = *rest;

	if (slash) {
		seg.len = slash - rest->ptr;
		rest->ptr = slash + 1;
		rest->len -= seg.len + 1;
	} else {
		rest->ptr += rest->len;
		rest->len = 0;
	}
	return seg;
}

static struct mg_str seg_peek(struct mg_str rest)
{
	return seg_take(&rest);
}

static size_t seg_count(struct mg_str s)
{
	size_t n = 1;

	if (!s.len)
		return 0;
	for (size_t i = 0; i < s.len; i++)
		n += s.ptr[i] == '/';
	return n;
}

/* ---- query ---- */

/* Checks the raw query <q> (at offset <base> of the target): allowed bytes
 * and well-formed escapes everywhere, since Go's url.ParseQuery silently
 * drops a pair with a bad escape and we must not read a pair it ignores. */
static int check_query(struct mg_str q, size_t base, struct mg_reqinfo_err *err)
{
	for (size_t i = 0; i < q.len; i++) {
		unsigned char c = q.ptr[i];

		if (c == '%') {
			if (escaped_byte(q.ptr, q.len, i) < 0)
				return reject(err, "invalid percent-escape in query", base + i);
			i += 2;
			continue;
		}
		/* RFC 3986 allows ';' here, but Go's url.ParseQuery (since Go
		 * 1.17) drops every pair holding one, silently for the API
		 * server: a pair we read could be one it never sees. */
		if (c == ';')
			return reject(err, "';' in query", base + i);
		if (c == '#')
			return reject(err, "fragment in request-target", base + i);
		if (!is_query_char(c))
			return reject(err, "invalid character in query", base + i);
	}
	return 0;
}

/* Takes the next non-empty "key[=value]" pair off <rest> into <key> and <val>
 * (raw, still encoded; <val> empty when there is no '='). Returns false at
 * the end. Mirrors url.ParseQuery: split on '&', skip empty pairs, split
 * each at its first '='. */
static bool query_next(struct mg_str *rest, struct mg_str *key, struct mg_str *val)
{
	while (rest->len) {
		const char *amp = memchr(rest->ptr, '&', rest->len);
		struct mg_str pair = *rest;
		const char *eq;

		if (amp) {
			pair.len = amp - rest->ptr;
			rest->ptr = amp + 1;
			rest->len -= pair.len + 1;
		} else {
			rest->ptr += rest->len;
			rest->len = 0;
		}
		if (!pair.len)
			continue;
		eq = memchr(pair.ptr, '=', pair.len);
		*key = pair;
		*val = (struct mg_str){pair.ptr + pair.len, 0};
		if (eq) {
			key->len = eq - pair.ptr;
			*val = (struct mg_str){eq + 1, pair.len - key->len - 1};
		}
		return true;
	}
	return false;
}

/* Decodes the next byte of the query component <s> at <*i> as Go's
 * QueryUnescape does ('+' is a space), advancing <*i>; -1 on a bad escape. */
static int query_byte(struct mg_str s, size_t *i)
{
	unsigned char c = s.ptr[*i];
	int b;

	if (c == '+') {
		(*i)++;
		return ' ';
	}
	if (c != '%') {
		(*i)++;
		return c;
	}
	b = escaped_byte(s.ptr, s.len, *i);
	if (b >= 0)
		*i += 3;
	return b;
}

/* Whether the raw query component <raw> decodes to exactly <want>. */
static bool query_decodes_to(struct mg_str raw, struct mg_str want)
{
	size_t i = 0, j = 0;

	while (i < raw.len) {
		int b = query_byte(raw, &i);

		if (b < 0 || j == want.len || (unsigned char)want.ptr[j] != b)
			return false;
		j++;
	}
	return j == want.len;
}

/* Decodes the raw query component <raw> into <dst> (room for <raw>.len).
 * Returns the decoded length, or -1 on a bad escape. */
static ssize_t query_decode(struct mg_str raw, char *dst)
{
	size_t i = 0, o = 0;

	while (i < raw.len) {
		int b = query_byte(raw, &i);

		if (b < 0)
			return -1;
		dst[o++] = b;
	}
	return o;
}

/* The raw value of the first pair of <q> whose key decodes to <key>, like
 * url.Values.Get; ptr NULL when there is none. */
static struct mg_str query_first(struct mg_str q, struct mg_str key)
{
	struct mg_str k, v;

	while (query_next(&q, &k, &v))
		if (query_decodes_to(k, key))
			return v;
	return MG_STR_NULL;
}

/* The watch parameter as the API server reads it into ListOptions.Watch
 * (runtime.Convert_Slice_string_To_bool, on the first value only): false
 * when absent, "0", or EqualFold "false"; anything else (also "" and "no")
 * is true. A non-ASCII byte is an error: EqualFold folds U+017F to 's'. */
static int watch_param(struct mg_str q, size_t base, bool *watch, struct mg_reqinfo_err *err)
{
	static const char lc_false[] = "false";
	struct mg_str v = query_first(q, MG_STR("watch"));
	bool is_zero = true, is_false = true;
	size_t i = 0, n = 0;

	*watch = false;
	if (!v.ptr)
		return 0;
	while (i < v.len) {
		int b = query_byte(v, &i);

		if (b < 0 || b >= 0x80)
			return reject(err, "non-ASCII watch value", base + (v.ptr - q.ptr));
		is_zero = is_zero && n == 0 && b == '0';
		is_false = is_false && n < 5 && (b | 0x20) == lc_false[n];
		n++;
	}
	is_zero = is_zero && n == 1;
	is_false = is_false && n == 5;
	*watch = !is_zero && !is_false;
	return 0;
}

/* Whether every dryRun value is exactly "All", and there is one: the API
 * server refuses any other value, so anything else is not a dry run. */
static bool dry_run_param(struct mg_str q)
{
	struct mg_str k, v;
	bool seen = false;

	while (query_next(&q, &k, &v)) {
		if (!query_decodes_to(k, MG_STR("dryRun")))
			continue;
		if (!query_decodes_to(v, MG_STR("All")))
			return false;
		seen = true;
	}
	return seen;
}

/* Decodes the first value of <key> in <q> into scratch as <*out> (left
 * MG_STR_NULL when absent). Selectors are ASCII text: a control or non-ASCII
 * byte is refused rather than interpreted (Go's selector unescaping rewrites
 * invalid UTF-8, so the API server could see other bytes than we do). */
static int selector_param(struct mg_str q, size_t base, struct mg_str key, struct scratch *s,
			  struct mg_str *out, struct mg_reqinfo_err *err)
{
	struct mg_str v = query_first(q, key);
	ssize_t n;
	char *dst;

	*out = MG_STR_NULL;
	if (!v.ptr)
		return 0;
	dst = scratch_take(s, v.len);
	if (!dst)
		return -ENOBUFS;
	n = query_decode(v, dst);
	if (n < 0)
		return reject(err, "invalid percent-escape in query", base + (v.ptr - q.ptr));
	for (ssize_t i = 0; i < n; i++)
		if ((unsigned char)dst[i] < 0x20 || (unsigned char)dst[i] >= 0x7f)
			return reject(err, "control or non-ASCII byte in selector",
				      base + (v.ptr - q.ptr));
	scratch_give_back(s, v.len - n);
	*out = (struct mg_str){dst, n};
	return 0;
}

/* ---- field selector ---- */

/* Checks that <rhs> unescapes as fields.UnescapeValue wants: '\' only before
 * '\', ',' or '=', no bare ',' or '=', no trailing '\'. */
static bool selector_value_ok(struct mg_str rhs)
{
	bool in_slash = false;

	for (size_t i = 0; i < rhs.len; i++) {
		char c = rhs.ptr[i];

		if (in_slash) {
			if (c != '\\' && c != ',' && c != '=')
				return false;
			in_slash = false;
		} else if (c == '\\') {
			in_slash = true;
		} else if (c == ',' || c == '=') {
			return false;
		}
	}
	return !in_slash;
}

/* Splits the field-selector term <t> as fields.splitTerm does: at the first
 * place where "!=", "==" or "=" starts (tried in that order). Returns false
 * when <t> holds no operator; else sets <lhs>, <rhs>, and <*eq> (the
 * operator is "=" or "==", which both require an exact match). */
static bool selector_split_term(struct mg_str t, struct mg_str *lhs, struct mg_str *rhs, bool *eq)
{
	for (size_t i = 0; i < t.len; i++) {
		size_t op_len;

		if (t.ptr[i] == '!' && i + 1 < t.len && t.ptr[i + 1] == '=') {
			op_len = 2;
			*eq = false;
		} else if (t.ptr[i] == '=') {
			op_len = (i + 1 < t.len && t.ptr[i + 1] == '=') ? 2 : 1;
			*eq = true;
		} else {
			continue;
		}
		*lhs = (struct mg_str){t.ptr, i};
		*rhs = (struct mg_str){t.ptr + i + op_len, t.len - i - op_len};
		return true;
	}
	return false;
}

/* Go's string order, which sort.Strings applies to the raw terms. */
static int go_strcmp(struct mg_str a, struct mg_str b)
{
	int r = memcmp(a.ptr, b.ptr, a.len < b.len ? a.len : b.len);

	if (r)
		return r;
	return (a.len > b.len) - (a.len < b.len);
}

/* The name an API server reads from field selector <sel> for a list or
 * watch: fields.ParseSelector(<sel>).RequiresExactMatch("metadata.name"),
 * kept only if path.IsValidPathSegmentName accepts it. ParseSelector sorts the
 * raw terms and the first exact metadata.name term wins, so the smallest such
 * raw term is the one. An invalid selector gives no name (the API server
 * then refuses the list anyway). The name is unescaped into <dst> (room for
 * <sel>.len). Returns whether a non-empty name was found. */
static bool selector_exact_name(struct mg_str sel, char *dst, struct mg_str *name)
{
	struct mg_str best = MG_STR_NULL, best_rhs = MG_STR_NULL;
	size_t start = 0, o = 0;
	bool in_slash = false;

	for (size_t i = 0; i <= sel.len; i++) {
		struct mg_str term, lhs, rhs;
		bool eq;

		if (i < sel.len) {
			if (in_slash) {
				in_slash = false;
				continue;
			}
			if (sel.ptr[i] == '\\')
				in_slash = true;
			if (sel.ptr[i] != ',')
				continue;
		}
		term = (struct mg_str){sel.ptr + start, i - start};
		start = i + 1;
		if (!term.len)
			continue;
		if (!selector_split_term(term, &lhs, &rhs, &eq) || !selector_value_ok(rhs))
			return false;
		if (eq && mg_str_eq(lhs, MG_STR("metadata.name")) &&
		    (!best.ptr || go_strcmp(term, best) < 0)) {
			best = term;
			best_rhs = rhs;
		}
	}
	if (!best.ptr)
		return false;
	for (size_t i = 0; i < best_rhs.len; i++) {
		if (best_rhs.ptr[i] == '\\')
			i++;
		dst[o++] = best_rhs.ptr[i];
	}
	/* path.IsValidPathSegmentName: not "." or "..", no '/' or '%'. */
	if (!o || is_dot_segment(dst, o) || memchr(dst, '/', o) || memchr(dst, '%', o))
		return false;
	*name = (struct mg_str){dst, o};
	return true;
}

/* ---- request info ---- */

/* Lowercase method names for non-resource requests (strings.ToLower). */
static struct mg_str lower_method(struct mg_str method, struct scratch *s)
{
	static const char *const known[] = {"get",  "post",    "put",	  "patch", "delete",
					    "head", "options", "connect", "trace"};
	char *dst;

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		struct mg_str k = mg_str_of(known[i]);

		if (mg_str_caseeq(method, k))
			return k;
	}
	dst = scratch_take(s, method.len);
	if (!dst)
		return MG_STR_NULL;
	for (size_t i = 0; i < method.len; i++) {
		char c = method.ptr[i];

		dst[i] = (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
	}
	return (struct mg_str){dst, method.len};
}

/* The verb requestinfo.go gives <method> on a resource path (exact,
 * case-sensitive match: Go compares req.Method with "GET" etc.). */
static struct mg_str method_verb(struct mg_str method)
{
	if (mg_str_eq(method, MG_STR("GET")) || mg_str_eq(method, MG_STR("HEAD")))
		return MG_STR("get");
	if (mg_str_eq(method, MG_STR("POST")))
		return MG_STR("create");
	if (mg_str_eq(method, MG_STR("PUT")))
		return MG_STR("update");
	if (mg_str_eq(method, MG_STR("PATCH")))
		return MG_STR("patch");
	if (mg_str_eq(method, MG_STR("DELETE")))
		return MG_STR("delete");
	return MG_STR("");
}

static bool verb_is(const struct mg_reqinfo *ri, const char *lit)
{
	return mg_str_eq(ri->verb, mg_str_of(lit));
}

/* Fills the resource part of <ri> from the segments of <rest> (the path
 * after the API prefix, <n> segments, at least one), following
 * NewRequestInfo from "requestInfo.IsResourceRequest = true" on. */
static int resource_info(struct mg_reqinfo *ri, struct mg_str method, struct mg_str rest, size_t n,
			 struct mg_reqinfo_err *err)
{
	struct mg_str seg;

	ri->is_resource_request = true;
	ri->api_version = seg_take(&rest);
	n--;

	/* /{watch,proxy}/...: the deprecated verb-in-path forms. */
	seg = seg_peek(rest);
	if (mg_str_eq(seg, MG_STR("watch")) || mg_str_eq(seg, MG_STR("proxy"))) {
		/* The API server fails the request here ("unable to determine
		 * kind and namespace"). */
		if (n < 2)
			return reject(err, "special verb without a resource", 0);
		ri->verb = seg.ptr[0] == 'w' ? MG_STR("watch") : MG_STR("proxy");
		ri->verb_from_path = true;
		seg_take(&rest);
		n--;
	} else {
		ri->verb = method_verb(method);
	}

	/* namespaces/{ns}/{resource}/...: parts become relative to the resource,
	 * unless the third segment is a subresource of the namespace itself
	 * (status, finalize): then, like namespaces/{ns} alone, the resource is
	 * "namespaces" named {ns}, and the namespace is {ns} as well. */
	if (mg_str_eq(seg_peek(rest), MG_STR("namespaces")) && n > 1) {
		struct mg_str after = rest, third;

		seg_take(&after);
		ri->namespace = seg_take(&after);
		third = seg_peek(after);
		if (n > 2 && !mg_str_eq(third, MG_STR("status")) &&
		    !mg_str_eq(third, MG_STR("finalize"))) {
			rest = after;
			n -= 2;
		}
	}

	ri->parts = rest;
	ri->n_parts = n;
	/* parts: resource/name/subresource/...; "proxy" takes no subresource. */
	ri->resource = seg_take(&rest);
	if (n >= 2)
		ri->name = seg_take(&rest);
	if (n >= 3 && !verb_is(ri, "proxy"))
		ri->subresource = seg_take(&rest);
	return 0;
}

/* The query-dependent rules: get without a name becomes list or watch (and
 * may take its name from a metadata.name field selector), delete without a
 * name becomes deletecollection, and selectors are reported for list, watch
 * and deletecollection. <base>: offset of the query in the target. */
static int query_info(struct mg_reqinfo *ri, size_t base, struct scratch *s,
		      struct mg_reqinfo_err *err)
{
	struct mg_str q = ri->query.ptr ? ri->query : MG_STR("");
	struct mg_str fs, ls;
	bool watch;
	int r;

	/* Validate what we interpret even where the API server would ignore
	 * it: the verb-dependent reading below must not depend on it. */
	r = watch_param(q, base, &watch, err);
	if (r)
		return r;
	r = selector_param(q, base, MG_STR("fieldSelector"), s, &fs, err);
	if (r)
		return r;
	r = selector_param(q, base, MG_STR("labelSelector"), s, &ls, err);
	if (r)
		return r;
	ri->dry_run = dry_run_param(q);
	if (!ri->is_resource_request)
		return 0;

	if (!ri->name.len && verb_is(ri, "get")) {
		ri->verb = watch ? MG_STR("watch") : MG_STR("list");
		if (fs.ptr) {
			char *dst = scratch_take(s, fs.len);

			if (!dst)
				return -ENOBUFS;
			if (selector_exact_name(fs, dst, &ri->name)) {
				ri->name_from_field_selector = true;
				scratch_give_back(s, fs.len - ri->name.len);
			} else {
				scratch_give_back(s, fs.len);
			}
		}
	}
	if (!ri->name.len && verb_is(ri, "delete"))
		ri->verb = MG_STR("deletecollection");

	/* Selector authorization: not for the /watch/ prefix, which has both
	 * single-object and collection forms. */
	if (!ri->verb_from_path &&
	    (verb_is(ri, "list") || verb_is(ri, "watch") || verb_is(ri, "deletecollection"))) {
		ri->field_selector = fs;
		ri->label_selector = ls;
	}
	ri->watch = verb_is(ri, "watch");
	return 0;
}

static void reqinfo_init(struct mg_reqinfo *ri)
{
	struct mg_str e = MG_STR("");

	*ri = (struct mg_reqinfo){
		.path = e,
		.verb = e,
		.api_prefix = e,
		.api_group = e,
		.api_version = e,
		.namespace = e,
		.resource = e,
		.subresource = e,
		.name = e,
		.parts = e,
		.query = MG_STR_NULL,
		.field_selector = MG_STR_NULL,
		.label_selector = MG_STR_NULL,
	};
}

int mg_reqinfo_parse(struct mg_reqinfo *ri, struct mg_str method, struct mg_str target,
		     char *scratch, size_t scratch_len, struct mg_reqinfo_err *err)
{
	struct scratch s = {scratch, scratch ? scratch_len : 0, 0};
	struct mg_str raw_path = target, trimmed, seg, verb;
	const char *qmark;
	size_t n;
	ssize_t plen;
	char *dst;
	int r;

	reqinfo_init(ri);
	if (!method.len)
		return reject(err, "empty method", 0);
	for (size_t i = 0; i < method.len; i++)
		if (!is_tchar(method.ptr[i]))
			return reject(err, "invalid character in method", i);
	if (!target.len)
		return reject(err, "empty request-target", 0);

	/* RFC 9112 §3.2.4: asterisk-form, only for a server-wide OPTIONS; Go's
	 * URL.Path is then "*", a non-resource path. */
	if (mg_str_eq(target, MG_STR("*"))) {
		if (!mg_str_eq(method, MG_STR("OPTIONS")))
			return reject(err, "asterisk-form request-target not for OPTIONS", 0);
		ri->path = target;
		ri->verb = MG_STR("options");
		return 0;
	}
	/* RFC 9112 §3.2.1: origin-form. An absolute-form target would carry an
	 * authority that is not ours to interpret. */
	if (target.ptr[0] != '/')
		return reject(err, "request-target is not in origin-form", 0);

	qmark = memchr(target.ptr, '?', target.len);
	if (qmark) {
		raw_path.len = qmark - target.ptr;
		ri->query = (struct mg_str){qmark + 1, target.len - raw_path.len - 1};
		r = check_query(ri->query, raw_path.len + 1, err);
		if (r)
			return r;
	}

	dst = scratch_take(&s, raw_path.len);
	if (!dst)
		return -ENOBUFS;
	plen = decode_path(raw_path, dst, err);
	if (plen < 0)
		return plen;
	scratch_give_back(&s, raw_path.len - plen);
	ri->path = (struct mg_str){dst, plen};

	verb = lower_method(method, &s);
	if (!verb.ptr)
		return -ENOBUFS;
	ri->verb = verb;

	/* splitPath: trim the leading '/' and the one trailing '/' we allow. */
	trimmed = (struct mg_str){ri->path.ptr + 1, ri->path.len - 1};
	if (trimmed.len && trimmed.ptr[trimmed.len - 1] == '/')
		trimmed.len--;
	n = seg_count(trimmed);

	/* Fewer than three segments, or not under /api or /apis: non-resource
	 * (discovery such as /api, /api/v1, /apis, or /healthz, /version...). */
	if (n >= 3) {
		seg = seg_peek(trimmed);
		if (mg_str_eq(seg, MG_STR("api"))) {
			ri->api_prefix = seg_take(&trimmed);
			r = resource_info(ri, method, trimmed, n - 1, err);
		} else if (mg_str_eq(seg, MG_STR("apis")) && n >= 4) {
			/* /apis/{group}/{version} alone is discovery. */
			ri->api_prefix = seg_take(&trimmed);
			ri->api_group = seg_take(&trimmed);
			r = resource_info(ri, method, trimmed, n - 2, err);
		} else {
			r = 0;
		}
		if (r) {
			/* Its only error: the path ended after /watch or /proxy. */
			if (err)
				err->pos = raw_path.len;
			return r;
		}
	}
	return query_info(ri, raw_path.len + 1, &s, err);
}

struct mg_str mg_reqinfo_part(const struct mg_reqinfo *ri, size_t i)
{
	struct mg_str rest = ri->parts, seg = MG_STR("");

	if (i >= ri->n_parts)
		return seg;
	for (size_t k = 0; k <= i; k++)
		seg = seg_take(&rest);
	return seg;
}

size_t mg_reqinfo_format_resource(const struct mg_reqinfo *ri, char *buf, size_t size)
{
	int n;

	if (!ri->is_resource_request)
		n = snprintf(buf, size, "%s", "");
	else if (ri->subresource.len)
		n = snprintf(buf, size, "%.*s/%.*s", (int)ri->resource.len, ri->resource.ptr,
			     (int)ri->subresource.len, ri->subresource.ptr);
	else
		n = snprintf(buf, size, "%.*s", (int)ri->resource.len, ri->resource.ptr);
	return n < 0 ? 0 : (size_t)n;
}

int mg_reqinfo_query_get(struct mg_str query, struct mg_str key, char *buf, size_t size,
			 struct mg_str *value)
{
	struct mg_str v;
	size_t i = 0, o = 0;

	*value = MG_STR_NULL;
	if (!query.ptr)
		return 0;
	v = query_first(query, key);
	if (!v.ptr)
		return 0;
	while (i < v.len) {
		int b = query_byte(v, &i);

		if (b < 0)
			return -EINVAL;
		if (o == size)
			return -ENOBUFS;
		buf[o++] = b;
	}
	*value = (struct mg_str){o ? buf : "", o};
	return 1;
}
