/*
 * libFuzzer target for the reqinfo module. Input: one byte choosing the
 * method (low 4 bits: a table; 0xf: the bytes up to the first ' ' are the
 * method) and the scratch size (high 4 bits: 0 means ample, else a smaller
 * fraction), then the request-target.
 *
 * Invariants checked on every accepted target, so that a wrong "valid"
 * verdict is visible, not only a crash:
 *  - every slice points into the target or the scratch (or is empty);
 *  - reported selectors equal an independent query lookup;
 *  - the path starts with '/' and holds no empty or dot-segment;
 *  - resource, namespace, name... hold no '/' and are segments of the path;
 *  - the scratch bound MG_REQINFO_SCRATCH_LEN is never short, and a smaller
 *    scratch gives -ENOBUFS or the very same answer;
 *  - the normalisation is idempotent: the decoded path, when it is plain
 *    pchar text, parses (with the same query) to the same request info.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../userspace/net/reqinfo.c"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

static const char *const methods[] = {"GET",	  "HEAD",    "POST", "PUT",	"PATCH",
				      "DELETE",	  "OPTIONS", "get",  "CONNECT", "PROPFIND",
				      "M-SEARCH", "TRACE",   "GET",  "DELETE",	"POST"};

static bool within(struct mg_str s, const char *base, size_t len)
{
	return !s.len || (s.ptr >= base && s.ptr + s.len <= base + len);
}

static bool is_static_verb(struct mg_str v)
{
	static const char *const verbs[] = {
		"",	 "get",	    "list",
		"watch", "create",  "update",
		"patch", "delete",  "deletecollection",
		"proxy", "post",    "put",
		"head",	 "options", "connect",
		"trace",
	};

	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (mg_str_eq(v, mg_str_of(verbs[i])))
			return true;
	return false;
}

static bool same_text(struct mg_str a, struct mg_str b)
{
	if (!a.ptr || !b.ptr)
		return !a.ptr && !b.ptr;
	return mg_str_eq(a, b);
}

static bool same_info(const struct mg_reqinfo *a, const struct mg_reqinfo *b)
{
	return a->is_resource_request == b->is_resource_request && same_text(a->path, b->path) &&
	       same_text(a->verb, b->verb) && same_text(a->api_prefix, b->api_prefix) &&
	       same_text(a->api_group, b->api_group) && same_text(a->api_version, b->api_version) &&
	       same_text(a->namespace, b->namespace) && same_text(a->resource, b->resource) &&
	       same_text(a->subresource, b->subresource) && same_text(a->name, b->name) &&
	       same_text(a->parts, b->parts) && a->n_parts == b->n_parts &&
	       same_text(a->query, b->query) && a->watch == b->watch &&
	       a->verb_from_path == b->verb_from_path &&
	       a->name_from_field_selector == b->name_from_field_selector &&
	       same_text(a->field_selector, b->field_selector) &&
	       same_text(a->label_selector, b->label_selector) && a->dry_run == b->dry_run;
}

/* <seg> is one whole '/'-delimited segment of <path>. */
static bool is_segment_of(struct mg_str seg, struct mg_str path)
{
	const char *p = path.ptr, *end = path.ptr + path.len;

	if (!seg.len)
		return true;
	while (p < end) {
		const char *slash = memchr(p, '/', end - p);
		size_t n = slash ? (size_t)(slash - p) : (size_t)(end - p);

		if (mg_str_eq((struct mg_str){p, n}, seg))
			return true;
		p += n + 1;
	}
	return false;
}

/* A reported selector is what an independent lookup of <key> in the query
 * decodes to (catches overlapping scratch use). */
static void check_param(struct mg_str got, struct mg_str query, struct mg_str key)
{
	struct mg_str v;
	char *b;

	if (!got.ptr)
		return;
	b = malloc(query.len + 1);
	CHECK(b);
	CHECK(mg_reqinfo_query_get(query, key, b, query.len, &v) == 1);
	CHECK(mg_str_eq(got, v));
	free(b);
}

static void check_ok(const struct mg_reqinfo *ri, struct mg_str method, const char *t, size_t tl,
		     const char *s, size_t sl)
{
	struct mg_str text[] = {ri->path,	 ri->api_prefix,     ri->api_group,
				ri->api_version, ri->namespace,	     ri->resource,
				ri->subresource, ri->name,	     ri->parts,
				ri->query,	 ri->field_selector, ri->label_selector};
	struct mg_str p = ri->path;

	for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
		CHECK(within(text[i], t, tl) || within(text[i], s, sl));
	CHECK(ri->verb.ptr);
	CHECK(is_static_verb(ri->verb) || within(ri->verb, s, sl));
	CHECK(!ri->query.ptr || within(ri->query, t, tl));

	CHECK(p.ptr && p.len);
	if (mg_str_eq(p, MG_STR("*"))) {
		CHECK(!ri->is_resource_request);
		return;
	}
	CHECK(p.ptr[0] == '/');
	CHECK(!memmem(p.ptr, p.len, "//", 2));
	CHECK(!memmem(p.ptr, p.len, "/./", 3));
	CHECK(!memmem(p.ptr, p.len, "/../", 4));
	CHECK(!(p.len >= 2 && !memcmp(p.ptr + p.len - 2, "/.", 2)));
	CHECK(!(p.len >= 3 && !memcmp(p.ptr + p.len - 3, "/..", 3)));
	CHECK(!memchr(p.ptr, '\\', p.len) && !memchr(p.ptr, '%', p.len));
	for (size_t i = 0; i < p.len; i++)
		CHECK((unsigned char)p.ptr[i] >= 0x20 && (unsigned char)p.ptr[i] < 0x7f);

	if (!ri->is_resource_request) {
		CHECK(!ri->api_prefix.len && !ri->resource.len && !ri->n_parts);
		CHECK(!ri->watch && !ri->field_selector.ptr && !ri->label_selector.ptr);
		return;
	}
	CHECK(mg_str_eq(ri->api_prefix, MG_STR("api")) ||
	      mg_str_eq(ri->api_prefix, MG_STR("apis")));
	CHECK(mg_str_eq(ri->api_prefix, MG_STR("apis")) == (ri->api_group.len > 0));
	CHECK(ri->api_version.len && ri->resource.len && ri->n_parts >= 1);
	CHECK(mg_str_eq(mg_reqinfo_part(ri, 0), ri->resource));
	CHECK(within(ri->parts, p.ptr, p.len));
	{
		struct mg_str f[] = {ri->api_group, ri->api_version, ri->namespace, ri->resource,
				     ri->subresource};

		for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
			CHECK(!memchr(f[i].ptr, '/', f[i].len));
			CHECK(is_segment_of(f[i], p));
		}
	}
	CHECK(!memchr(ri->name.ptr, '/', ri->name.len));
	CHECK(ri->name_from_field_selector || is_segment_of(ri->name, p));
	CHECK(ri->watch == mg_str_eq(ri->verb, MG_STR("watch")));
	check_param(ri->field_selector, ri->query, MG_STR("fieldSelector"));
	check_param(ri->label_selector, ri->query, MG_STR("labelSelector"));
	CHECK(!(mg_str_eq(ri->verb, MG_STR("get")) && !ri->name.len));
	CHECK(!(mg_str_eq(ri->verb, MG_STR("delete")) && !ri->name.len));
	CHECK(!(mg_str_eq(ri->verb, MG_STR("deletecollection")) && ri->name.len));
	CHECK(!ri->subresource.len || ri->name.len);
	(void)method;
}

/* The decoded path plus the original query, when the path is plain pchar
 * text; NULL otherwise. */
static char *respell(const struct mg_reqinfo *ri, size_t *len)
{
	size_t ql = ri->query.ptr ? ri->query.len + 1 : 0;
	char *r;

	if (mg_str_eq(ri->path, MG_STR("*")))
		return NULL;
	for (size_t i = 0; i < ri->path.len; i++)
		if (ri->path.ptr[i] != '/' && !is_pchar(ri->path.ptr[i]))
			return NULL;
	r = malloc(ri->path.len + ql);
	CHECK(r);
	memcpy(r, ri->path.ptr, ri->path.len);
	if (ql) {
		r[ri->path.len] = '?';
		memcpy(r + ri->path.len + 1, ri->query.ptr, ri->query.len);
	}
	*len = ri->path.len + ql;
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mg_reqinfo ri, ri2;
	struct mg_reqinfo_err err = {NULL, 0};
	struct mg_str method;
	char *t, *s, *s2, *m = NULL;
	size_t tl, sl, sl2;
	unsigned sel;
	int rc, rc2;

	if (size < 1)
		return 0;
	sel = data[0];
	data++;
	size--;
	if ((sel & 0xf) == 0xf) {
		const uint8_t *sp = memchr(data, ' ', size);
		size_t ml = sp ? (size_t)(sp - data) : 0;

		m = malloc(ml ? ml : 1);
		CHECK(m);
		memcpy(m, data, ml);
		method = (struct mg_str){m, ml};
		if (sp) {
			data += ml + 1;
			size -= ml + 1;
		}
	} else {
		method = mg_str_of(methods[sel & 0xf]);
	}

	/* Exact-size copies: ASan sees any access past them. */
	tl = size;
	t = malloc(tl ? tl : 1);
	CHECK(t);
	memcpy(t, data, tl);
	sl = MG_REQINFO_SCRATCH_LEN(tl, method.len);
	s = malloc(sl ? sl : 1);
	CHECK(s);

	rc = mg_reqinfo_parse(&ri, method, (struct mg_str){t, tl}, s, sl, &err);
	CHECK(rc == 0 || rc == -EINVAL);
	if (rc == -EINVAL) {
		CHECK(err.reason);
		CHECK(err.pos <= (tl > method.len ? tl : method.len));
	} else {
		check_ok(&ri, method, t, tl, s, sl);
	}

	/* A smaller scratch: -ENOBUFS, or the same verdict and answer. */
	sl2 = (sel >> 4) ? sl * (sel >> 4) / 16 : sl / 2;
	s2 = malloc(sl2 ? sl2 : 1);
	CHECK(s2);
	rc2 = mg_reqinfo_parse(&ri2, method, (struct mg_str){t, tl}, s2, sl2, &err);
	CHECK(rc2 == rc || rc2 == -ENOBUFS);
	if (rc2 == 0) {
		check_ok(&ri2, method, t, tl, s2, sl2);
		CHECK(same_info(&ri, &ri2));
	}
	free(s2);

	/* Idempotence of the normalisation. */
	if (rc == 0) {
		size_t rl = 0;
		char *r = respell(&ri, &rl);

		if (r) {
			char *s3 = malloc(MG_REQINFO_SCRATCH_LEN(rl, method.len) + 1);

			CHECK(s3);
			rc2 = mg_reqinfo_parse(&ri2, method, (struct mg_str){r, rl}, s3,
					       MG_REQINFO_SCRATCH_LEN(rl, method.len), &err);
			CHECK(rc2 == 0);
			CHECK(same_info(&ri, &ri2));
			free(s3);
			free(r);
		}
	}
	free(s);
	free(t);
	free(m);
	return 0;
}
