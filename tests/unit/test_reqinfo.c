/*
 * reqinfo: the API server's RequestInfo rules (core and grouped, namespaced
 * and cluster-scoped, discovery, both watch forms, the watch boolean as the
 * API server converts it, subresources, namespaces special cases, the
 * metadata.name field selector, selectors, dryRun), the spellings that must
 * be refused so that a policy cannot be dodged, and scratch sizing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../userspace/net/reqinfo.c"

/* ---- helpers ---- */

/* Every parse runs on exact-size heap copies, so ASan sees a read past the
 * target or a write past the scratch. */
struct run {
	char *target;
	char *scratch;
	size_t target_len;
	size_t scratch_len;
	struct mg_reqinfo ri;
	struct mg_reqinfo_err err;
	int rc;
};

static bool within(struct mg_str s, const char *base, size_t len)
{
	if (!s.len)
		return true;
	return s.ptr >= base && s.ptr + s.len <= base + len;
}

static bool slice_ok(const struct run *r, struct mg_str s)
{
	return within(s, r->target, r->target_len) || within(s, r->scratch, r->scratch_len);
}

/* Checks that every slice of a successful parse points into the target or
 * the scratch (or is empty, or a static verb) and that the path is clean. */
static void check_invariants(const struct run *r)
{
	const struct mg_reqinfo *ri = &r->ri;
	struct mg_str all[] = {ri->path,	ri->api_prefix,	    ri->api_group,
			       ri->api_version, ri->namespace,	    ri->resource,
			       ri->subresource, ri->name,	    ri->parts,
			       ri->query,	ri->field_selector, ri->label_selector};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		assert_true(slice_ok(r, all[i]));
	assert_non_null(ri->path.ptr);
	assert_non_null(ri->verb.ptr);
	assert_null(memmem(ri->path.ptr, ri->path.len, "//", 2));
	assert_null(memmem(ri->path.ptr, ri->path.len, "/./", 3));
	assert_null(memmem(ri->path.ptr, ri->path.len, "/../", 4));
	if (ri->query.ptr)
		assert_true(within(ri->query, r->target, r->target_len));
}

static void run_sized(struct run *r, const char *method, const char *target, size_t scratch_len)
{
	size_t tl = strlen(target);

	r->target = malloc(tl ? tl : 1);
	assert_non_null(r->target);
	memcpy(r->target, target, tl);
	r->target_len = tl;
	r->scratch_len = scratch_len;
	r->scratch = malloc(scratch_len ? scratch_len : 1);
	assert_non_null(r->scratch);
	r->err = (struct mg_reqinfo_err){NULL, 0};
	r->rc = mg_reqinfo_parse(&r->ri, mg_str_of(method), (struct mg_str){r->target, tl},
				 r->scratch, scratch_len, &r->err);
	if (r->rc == 0)
		check_invariants(r);
}

static void run(struct run *r, const char *method, const char *target)
{
	run_sized(r, method, target, MG_REQINFO_SCRATCH_LEN(strlen(target), strlen(method)));
}

static void run_free(struct run *r)
{
	free(r->target);
	free(r->scratch);
}

static void assert_str(struct mg_str got, const char *want, const char *what, const char *target)
{
	if (!mg_str_eq(got, mg_str_of(want))) {
		print_error("%s: %s is \"%.*s\", want \"%s\"\n", target, what, (int)got.len,
			    got.ptr ? got.ptr : "", want);
		fail();
	}
}

/* ---- resource and non-resource requests: one table ---- */

#define F_WATCH	  0x01 /* ri.watch */
#define F_VIAPATH 0x02 /* ri.verb_from_path */
#define F_NAMEFS  0x04 /* ri.name_from_field_selector */
#define F_DRYRUN  0x08 /* ri.dry_run */

struct ok_case {
	const char *method;
	const char *target;
	bool res;
	const char *verb;
	const char *group, *version, *ns, *resource, *sub, *name; /* NULL: "" */
	const char *path;					  /* NULL: the target up to '?' */
	const char *fs, *ls;					  /* NULL: absent */
	int n_parts;						  /* -1: not checked */
	unsigned flags;
};

/* A resource request; parts not checked. */
#define R(m, t, v, g, ver, ns, r, s, n)                                                            \
	{                                                                                          \
		m, t, true, v, g, ver, ns, r, s, n, NULL, NULL, NULL, -1, 0                        \
	}
/* The same with flags. */
#define RF(m, t, v, g, ver, ns, r, s, n, fl)                                                       \
	{                                                                                          \
		m, t, true, v, g, ver, ns, r, s, n, NULL, NULL, NULL, -1, fl                       \
	}
/* A non-resource request. */
#define NR(m, t, v)                                                                                \
	{                                                                                          \
		m, t, false, v, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0         \
	}

static const struct ok_case ok_cases[] = {
	/* core group, namespaced: the verb from the method, list vs get */
	R("GET", "/api/v1/namespaces/default/pods", "list", "", "v1", "default", "pods", "", ""),
	R("GET", "/api/v1/namespaces/default/pods/web", "get", "", "v1", "default", "pods", "",
	  "web"),
	R("HEAD", "/api/v1/namespaces/default/pods/web", "get", "", "v1", "default", "pods", "",
	  "web"),
	R("HEAD", "/api/v1/namespaces/default/pods", "list", "", "v1", "default", "pods", "", ""),
	R("POST", "/api/v1/namespaces/default/pods", "create", "", "v1", "default", "pods", "", ""),
	R("PUT", "/api/v1/namespaces/default/pods/web", "update", "", "v1", "default", "pods", "",
	  "web"),
	R("PATCH", "/api/v1/namespaces/default/pods/web", "patch", "", "v1", "default", "pods", "",
	  "web"),
	R("DELETE", "/api/v1/namespaces/default/pods/web", "delete", "", "v1", "default", "pods",
	  "", "web"),
	R("DELETE", "/api/v1/namespaces/default/pods", "deletecollection", "", "v1", "default",
	  "pods", "", ""),
	/* a method requestinfo.go maps to no verb, and case-sensitivity */
	R("OPTIONS", "/api/v1/pods", "", "", "v1", "", "pods", "", ""),
	R("get", "/api/v1/pods", "", "", "v1", "", "pods", "", ""),
	R("POST", "/api/v1/namespaces/default/pods/web", "create", "", "v1", "default", "pods", "",
	  "web"),
	/* core group, cluster-scoped */
	R("GET", "/api/v1/pods", "list", "", "v1", "", "pods", "", ""),
	R("GET", "/api/v1/nodes/node-1", "get", "", "v1", "", "nodes", "", "node-1"),
	R("PATCH", "/api/v1/nodes/node-1/status", "patch", "", "v1", "", "nodes", "status",
	  "node-1"),
	R("GET", "/api/v1/persistentvolumes", "list", "", "v1", "", "persistentvolumes", "", ""),
	/* named groups */
	R("GET", "/apis/apps/v1/deployments", "list", "apps", "v1", "", "deployments", "", ""),
	R("GET", "/apis/apps/v1/namespaces/prod/deployments/api", "get", "apps", "v1", "prod",
	  "deployments", "", "api"),
	R("PUT", "/apis/apps/v1/namespaces/prod/deployments/api/scale", "update", "apps", "v1",
	  "prod", "deployments", "scale", "api"),
	R("PATCH", "/apis/apps/v1/namespaces/prod/deployments/api/status", "patch", "apps", "v1",
	  "prod", "deployments", "status", "api"),
	R("DELETE", "/apis/batch/v1/namespaces/ci/jobs", "deletecollection", "batch", "v1", "ci",
	  "jobs", "", ""),
	R("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin", "get",
	  "rbac.authorization.k8s.io", "v1", "", "clusterroles", "", "admin"),
	R("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "create",
	  "authorization.k8s.io", "v1", "", "selfsubjectaccessreviews", "", ""),
	R("GET", "/apis/example.com/v1alpha1/namespaces/a/widgets/w1", "get", "example.com",
	  "v1alpha1", "a", "widgets", "", "w1"),
	/* namespaces: the resource itself and its own subresources */
	R("GET", "/api/v1/namespaces", "list", "", "v1", "", "namespaces", "", ""),
	R("POST", "/api/v1/namespaces", "create", "", "v1", "", "namespaces", "", ""),
	R("GET", "/api/v1/namespaces/kube-system", "get", "", "v1", "kube-system", "namespaces", "",
	  "kube-system"),
	R("DELETE", "/api/v1/namespaces/kube-system", "delete", "", "v1", "kube-system",
	  "namespaces", "", "kube-system"),
	R("PUT", "/api/v1/namespaces/ns1/status", "update", "", "v1", "ns1", "namespaces", "status",
	  "ns1"),
	R("PUT", "/api/v1/namespaces/ns1/finalize", "update", "", "v1", "ns1", "namespaces",
	  "finalize", "ns1"),
	R("GET", "/api/v1/namespaces/ns1/status/extra", "get", "", "v1", "ns1", "namespaces",
	  "status", "ns1"),
	/* a namespaced resource called like a namespace subresource is not one */
	R("GET", "/api/v1/namespaces/ns1/statuses", "list", "", "v1", "ns1", "statuses", "", ""),
	R("GET", "/apis/apps/v1/namespaces/ns1", "get", "apps", "v1", "ns1", "namespaces", "",
	  "ns1"),
	/* subresources */
	R("GET", "/api/v1/namespaces/ns/pods/p/log?container=c&follow=true", "get", "", "v1", "ns",
	  "pods", "log", "p"),
	R("POST", "/api/v1/namespaces/ns/pods/p/exec?command=ls&command=-l&stdout=1", "create", "",
	  "v1", "ns", "pods", "exec", "p"),
	R("GET", "/api/v1/namespaces/ns/pods/p/exec?command=sh", "get", "", "v1", "ns", "pods",
	  "exec", "p"),
	R("POST", "/api/v1/namespaces/ns/pods/p/attach?stdin=true", "create", "", "v1", "ns",
	  "pods", "attach", "p"),
	R("POST", "/api/v1/namespaces/ns/pods/p/portforward?ports=8080", "create", "", "v1", "ns",
	  "pods", "portforward", "p"),
	R("POST", "/api/v1/namespaces/ns/pods/p/eviction", "create", "", "v1", "ns", "pods",
	  "eviction", "p"),
	R("POST", "/api/v1/namespaces/ns/pods/p/binding", "create", "", "v1", "ns", "pods",
	  "binding", "p"),
	R("POST", "/api/v1/namespaces/ns/serviceaccounts/default/token", "create", "", "v1", "ns",
	  "serviceaccounts", "token", "default"),
	R("GET", "/api/v1/namespaces/ns/services/https:web:443/proxy/", "get", "", "v1", "ns",
	  "services", "proxy", "https:web:443"),
	R("GET", "/api/v1/nodes/n1/proxy/metrics", "get", "", "v1", "", "nodes", "proxy", "n1"),
	{"GET", "/api/v1/namespaces/ns/pods/p/proxy/a/b", true, "get", "", "v1", "ns", "pods",
	 "proxy", "p", NULL, NULL, NULL, 5, 0},
	/* the deprecated /watch/ prefix: verb from the path, method ignored */
	RF("GET", "/api/v1/watch/pods", "watch", "", "v1", "", "pods", "", "", F_WATCH | F_VIAPATH),
	RF("GET", "/api/v1/watch/namespaces/ns/pods", "watch", "", "v1", "ns", "pods", "", "",
	   F_WATCH | F_VIAPATH),
	RF("GET", "/api/v1/watch/namespaces/ns/pods/p", "watch", "", "v1", "ns", "pods", "", "p",
	   F_WATCH | F_VIAPATH),
	RF("POST", "/api/v1/watch/pods", "watch", "", "v1", "", "pods", "", "",
	   F_WATCH | F_VIAPATH),
	RF("GET", "/apis/apps/v1/watch/namespaces/ns/deployments", "watch", "apps", "v1", "ns",
	   "deployments", "", "", F_WATCH | F_VIAPATH),
	RF("GET", "/api/v1/watch/namespaces/ns", "watch", "", "v1", "ns", "namespaces", "", "ns",
	   F_WATCH | F_VIAPATH),
	RF("GET", "/api/v1/watch/namespaces", "watch", "", "v1", "", "namespaces", "", "",
	   F_WATCH | F_VIAPATH),
	/* ?watch= on the /watch/ form changes nothing */
	RF("GET", "/api/v1/watch/pods?watch=false", "watch", "", "v1", "", "pods", "", "",
	   F_WATCH | F_VIAPATH),
	/* the deprecated /proxy/ prefix: no subresource, the rest is parts */
	{"GET", "/api/v1/proxy/namespaces/ns/pods/p/a/b", true, "proxy", "", "v1", "ns", "pods", "",
	 "p", NULL, NULL, NULL, 4, F_VIAPATH},
	{"GET", "/api/v1/proxy/nodes/n1/stats", true, "proxy", "", "v1", "", "nodes", "", "n1",
	 NULL, NULL, NULL, 3, F_VIAPATH},
	/* ?watch= on a collection: runtime.Convert_Slice_string_To_bool on the
	 * first value: only "0" and EqualFold "false" are false */
	RF("GET", "/api/v1/pods?watch=true", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	RF("GET", "/api/v1/pods?watch=1", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	RF("GET", "/api/v1/pods?watch=True", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	RF("GET", "/api/v1/pods?watch=TRUE", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	RF("GET", "/api/v1/pods?watch=t", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	RF("GET", "/api/v1/pods?watch=T", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	RF("GET", "/api/v1/pods?watch=yes", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	RF("GET", "/api/v1/pods?watch=no", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	RF("GET", "/api/v1/pods?watch=f", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	RF("GET", "/api/v1/pods?watch=00", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	RF("GET", "/api/v1/pods?watch=falsee", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	RF("GET", "/api/v1/pods?watch=", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	RF("GET", "/api/v1/pods?watch", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	RF("GET", "/api/v1/pods?watch=+", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	R("GET", "/api/v1/pods?watch=false", "list", "", "v1", "", "pods", "", ""),
	R("GET", "/api/v1/pods?watch=0", "list", "", "v1", "", "pods", "", ""),
	R("GET", "/api/v1/pods?watch=False", "list", "", "v1", "", "pods", "", ""),
	R("GET", "/api/v1/pods?watch=FALSE", "list", "", "v1", "", "pods", "", ""),
	R("GET", "/api/v1/pods?watch=fAlSe", "list", "", "v1", "", "pods", "", ""),
	R("GET", "/api/v1/pods?watch=%30", "list", "", "v1", "", "pods", "", ""),
	R("GET", "/api/v1/pods?watch=fals%65", "list", "", "v1", "", "pods", "", ""),
	R("GET", "/api/v1/pods?watchx=1&xwatch=1", "list", "", "v1", "", "pods", "", ""),
	/* duplicates: the first value decides, whatever key spelling */
	R("GET", "/api/v1/pods?watch=false&watch=true", "list", "", "v1", "", "pods", "", ""),
	RF("GET", "/api/v1/pods?watch=true&watch=false", "watch", "", "v1", "", "pods", "", "",
	   F_WATCH),
	RF("GET", "/api/v1/pods?w%61tch=1&watch=0", "watch", "", "v1", "", "pods", "", "", F_WATCH),
	R("GET", "/api/v1/pods?&&watch=0&watch=1", "list", "", "v1", "", "pods", "", ""),
	/* only a get without a name becomes a watch */
	R("GET", "/api/v1/namespaces/ns/pods/p?watch=1", "get", "", "v1", "ns", "pods", "", "p"),
	R("DELETE", "/api/v1/namespaces/ns/pods?watch=1", "deletecollection", "", "v1", "ns",
	  "pods", "", ""),
	RF("HEAD", "/api/v1/namespaces/ns/pods?watch=1", "watch", "", "v1", "ns", "pods", "", "",
	   F_WATCH),
	/* discovery and other non-resource paths: the lowercased method */
	NR("GET", "/", "get"),
	NR("GET", "/api", "get"),
	NR("GET", "/api/", "get"),
	NR("GET", "/api/v1", "get"),
	NR("GET", "/api/v1/", "get"),
	NR("GET", "/apis", "get"),
	NR("GET", "/apis/apps", "get"),
	NR("GET", "/apis/apps/v1", "get"),
	NR("GET", "/apis/apps/v1/", "get"),
	NR("GET", "/apis/apps/v1?watch=1", "get"),
	NR("GET", "/healthz", "get"),
	NR("GET", "/livez/ping", "get"),
	NR("GET", "/version", "get"),
	NR("GET", "/openapi/v2", "get"),
	NR("GET", "/openapi/v3/apis/apps/v1", "get"),
	NR("GET", "/metrics", "get"),
	NR("GET", "/logs/kube-apiserver.log", "get"),
	NR("HEAD", "/healthz", "head"),
	NR("OPTIONS", "/healthz", "options"),
	NR("POST", "/healthz", "post"),
	NR("PUT", "/x", "put"),
	NR("PATCH", "/x", "patch"),
	NR("DELETE", "/x", "delete"),
	NR("PROPFIND", "/x", "propfind"),
	NR("MyVerb", "/x", "myverb"),
	NR("OPTIONS", "*", "options"),
	/* case matters to Go, and anything outside /api, /apis is non-resource */
	NR("GET", "/API/v1/pods", "get"),
	NR("GET", "/apiv1/v1/pods", "get"),
	NR("GET", "/healthz/api/v1/pods", "get"),
	/* a trailing '/' is trimmed for the parts and kept in the path */
	R("GET", "/api/v1/namespaces/ns/pods/", "list", "", "v1", "ns", "pods", "", ""),
	R("GET", "/api/v1/namespaces/ns/pods/p/", "get", "", "v1", "ns", "pods", "", "p"),
	/* percent-decoding: the decoded spelling is what the policy sees */
	{"GET", "/api/v1/namespaces/default/%73ecrets/db", true, "get", "", "v1", "default",
	 "secrets", "", "db", "/api/v1/namespaces/default/secrets/db", NULL, NULL, 2, 0},
	{"GET", "/%61pi/v1/n%61mespaces/kube-system/secrets", true, "list", "", "v1", "kube-system",
	 "secrets", "", "", "/api/v1/namespaces/kube-system/secrets", NULL, NULL, 1, 0},
	{"GET", "/apis/apps/v1/namespaces/p/deployments/a%3Ab%40c", true, "get", "apps", "v1", "p",
	 "deployments", "", "a:b@c", "/apis/apps/v1/namespaces/p/deployments/a:b@c", NULL, NULL, 2,
	 0},
	/* '+' is not a space in a path (Go's PathUnescape) */
	R("GET", "/api/v1/namespaces/ns/configmaps/a+b", "get", "", "v1", "ns", "configmaps", "",
	  "a+b"),
	/* names with dots that are not dot-segments */
	R("GET", "/api/v1/namespaces/ns/configmaps/...", "get", "", "v1", "ns", "configmaps", "",
	  "..."),
	R("GET", "/api/v1/namespaces/ns/configmaps/.a", "get", "", "v1", "ns", "configmaps", "",
	  ".a"),
	R("GET", "/api/v1/namespaces/ns/configmaps/..b", "get", "", "v1", "ns", "configmaps", "",
	  "..b"),
	/* a metadata.name field selector names the object of a list/watch */
	{"GET", "/api/v1/namespaces/ns/secrets?fieldSelector=metadata.name%3Ddb", true, "list", "",
	 "v1", "ns", "secrets", "", "db", NULL, "metadata.name=db", NULL, 1, F_NAMEFS},
	{"GET", "/api/v1/namespaces/ns/secrets?fieldSelector=metadata.name%3D%3Ddb&watch=1", true,
	 "watch", "", "v1", "ns", "secrets", "", "db", NULL, "metadata.name==db", NULL, 1,
	 F_NAMEFS | F_WATCH},
	{"GET", "/api/v1/secrets?fieldSelector=metadata.namespace%3Dx,metadata.name%3Dy", true,
	 "list", "", "v1", "", "secrets", "", "y", NULL, "metadata.namespace=x,metadata.name=y",
	 NULL, 1, F_NAMEFS},
	/* sorted raw terms: "metadata.name==c" sorts before "metadata.name=b" */
	{"GET", "/api/v1/secrets?fieldSelector=metadata.name%3Db,metadata.name%3D%3Dc", true,
	 "list", "", "v1", "", "secrets", "", "c", NULL, "metadata.name=b,metadata.name==c", NULL,
	 1, F_NAMEFS},
	{"GET", "/api/v1/secrets?fieldSelector=metadata.name%3Da%5C,b", true, "list", "", "v1", "",
	 "secrets", "", "a,b", NULL, "metadata.name=a\\,b", NULL, 1, F_NAMEFS},
	/* no name: not exact, not valid as a name, or an invalid selector */
	{"GET", "/api/v1/secrets?fieldSelector=metadata.name!%3Ddb", true, "list", "", "v1", "",
	 "secrets", "", "", NULL, "metadata.name!=db", NULL, 1, 0},
	{"GET", "/api/v1/secrets?fieldSelector=metadata.name%3Da%2Fb", true, "list", "", "v1", "",
	 "secrets", "", "", NULL, "metadata.name=a/b", NULL, 1, 0},
	{"GET", "/api/v1/secrets?fieldSelector=metadata.name%3D..", true, "list", "", "v1", "",
	 "secrets", "", "", NULL, "metadata.name=..", NULL, 1, 0},
	{"GET", "/api/v1/secrets?fieldSelector=metadata.name%3Da%3Db", true, "list", "", "v1", "",
	 "secrets", "", "", NULL, "metadata.name=a=b", NULL, 1, 0},
	{"GET", "/api/v1/secrets?fieldSelector=metadata.name%3Ddb,junk", true, "list", "", "v1", "",
	 "secrets", "", "", NULL, "metadata.name=db,junk", NULL, 1, 0},
	{"GET", "/api/v1/secrets?fieldSelector=metadata.name%3D", true, "list", "", "v1", "",
	 "secrets", "", "", NULL, "metadata.name=", NULL, 1, 0},
	{"GET", "/api/v1/secrets?fieldSelector=+metadata.name%3Ddb", true, "list", "", "v1", "",
	 "secrets", "", "", NULL, " metadata.name=db", NULL, 1, 0},
	{"GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&labelSelector=app+in+%28a%2Cb%29",
	 true, "list", "", "v1", "", "pods", "", "", NULL, "spec.nodeName=n1", "app in (a,b)", 1,
	 0},
	/* the first fieldSelector wins */
	{"GET", "/api/v1/secrets?fieldSelector=a%3D1&fieldSelector=metadata.name%3Ddb", true,
	 "list", "", "v1", "", "secrets", "", "", NULL, "a=1", NULL, 1, 0},
	/* deletecollection reports selectors but takes no name from them */
	{"DELETE", "/api/v1/namespaces/ns/pods?labelSelector=a%3Db&fieldSelector=metadata.name%3Dx",
	 true, "deletecollection", "", "v1", "ns", "pods", "", "", NULL, "metadata.name=x", "a=b",
	 1, 0},
	/* selectors are not reported where the API server ignores them */
	R("GET", "/api/v1/namespaces/ns/pods/p?labelSelector=a%3Db", "get", "", "v1", "ns", "pods",
	  "", "p"),
	RF("GET", "/api/v1/watch/pods?fieldSelector=metadata.name%3Dp&labelSelector=a", "watch", "",
	   "v1", "", "pods", "", "", F_WATCH | F_VIAPATH),
	R("POST", "/api/v1/namespaces/ns/pods?labelSelector=a", "create", "", "v1", "ns", "pods",
	  "", ""),
	/* dryRun */
	RF("POST", "/api/v1/namespaces/ns/pods?dryRun=All", "create", "", "v1", "ns", "pods", "",
	   "", F_DRYRUN),
	RF("PATCH", "/api/v1/namespaces/ns/pods/p?dryRun=All&dryRun=All", "patch", "", "v1", "ns",
	   "pods", "", "p", F_DRYRUN),
	RF("DELETE", "/api/v1/namespaces/ns/pods/p?dryRun=%41ll", "delete", "", "v1", "ns", "pods",
	   "", "p", F_DRYRUN),
	R("POST", "/api/v1/namespaces/ns/pods?dryRun=all", "create", "", "v1", "ns", "pods", "",
	  ""),
	R("POST", "/api/v1/namespaces/ns/pods?dryRun=", "create", "", "v1", "ns", "pods", "", ""),
	R("POST", "/api/v1/namespaces/ns/pods?dryRun=All&dryRun=x", "create", "", "v1", "ns",
	  "pods", "", ""),
	R("POST", "/api/v1/namespaces/ns/pods?dryrun=All", "create", "", "v1", "ns", "pods", "",
	  ""),
	/* an empty query, and '?' and '/' inside a query */
	R("GET", "/api/v1/pods?", "list", "", "v1", "", "pods", "", ""),
	R("GET", "/api/v1/pods?continue=a/b?c&limit=5", "list", "", "v1", "", "pods", "", ""),
};

static void check_ok_case(const struct ok_case *c)
{
	struct run r;
	const struct mg_reqinfo *ri = &r.ri;
	char path[512];
	const char *q;

	run(&r, c->method, c->target);
	if (r.rc != 0) {
		print_error("%s %s: rc %d (%s at %zu), want 0\n", c->method, c->target, r.rc,
			    r.err.reason ? r.err.reason : "-", r.err.pos);
		fail();
	}
	q = strchr(c->target, '?');
	snprintf(path, sizeof(path), "%.*s", q ? (int)(q - c->target) : (int)strlen(c->target),
		 c->target);
	assert_str(ri->path, c->path ? c->path : path, "path", c->target);
	assert_int_equal(ri->is_resource_request, c->res);
	assert_str(ri->verb, c->verb, "verb", c->target);
	assert_str(ri->api_prefix,
		   !c->res		   ? ""
		   : c->group && *c->group ? "apis"
					   : "api",
		   "api_prefix", c->target);
	assert_str(ri->api_group, c->group ? c->group : "", "api_group", c->target);
	assert_str(ri->api_version, c->version ? c->version : "", "api_version", c->target);
	assert_str(ri->namespace, c->ns ? c->ns : "", "namespace", c->target);
	assert_str(ri->resource, c->resource ? c->resource : "", "resource", c->target);
	assert_str(ri->subresource, c->sub ? c->sub : "", "subresource", c->target);
	assert_str(ri->name, c->name ? c->name : "", "name", c->target);
	if (c->fs)
		assert_str(ri->field_selector, c->fs, "field_selector", c->target);
	else
		assert_null(ri->field_selector.ptr);
	if (c->ls)
		assert_str(ri->label_selector, c->ls, "label_selector", c->target);
	else
		assert_null(ri->label_selector.ptr);
	if (c->n_parts >= 0)
		assert_int_equal(ri->n_parts, c->n_parts);
	if (!c->res)
		assert_int_equal(ri->n_parts, 0);
	if (ri->is_resource_request) {
		/* parts always start with the resource */
		assert_true(ri->n_parts >= 1);
		assert_true(mg_str_eq(mg_reqinfo_part(ri, 0), ri->resource));
	}
	assert_int_equal(ri->watch, !!(c->flags & F_WATCH));
	assert_int_equal(ri->verb_from_path, !!(c->flags & F_VIAPATH));
	assert_int_equal(ri->name_from_field_selector, !!(c->flags & F_NAMEFS));
	assert_int_equal(ri->dry_run, !!(c->flags & F_DRYRUN));
	if (q) {
		assert_non_null(ri->query.ptr);
		assert_true(mg_str_eq(ri->query, mg_str_of(q + 1)));
		assert_ptr_equal(ri->query.ptr, r.target + (q + 1 - c->target));
	} else {
		assert_null(ri->query.ptr);
	}
	run_free(&r);
}

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++)
		check_ok_case(&ok_cases[i]);
}

/* ---- rejected targets ---- */

struct bad_case {
	const char *method;
	const char *target;
	const char *reason; /* a substring of err.reason */
	size_t pos;
};

static const struct bad_case bad_cases[] = {
	/* encoded separators and NULs: the API server decodes %2F into the path */
	{"GET", "/api/v1/namespaces%2Fkube-system%2Fsecrets", "encoded '/'", 18},
	{"GET", "/api/v1/namespaces/ns/secrets%2fdb", "encoded '/'", 29},
	{"GET", "/api/v1/namespaces/ns/secrets/db%00", "encoded NUL", 32},
	{"GET", "/api/v1/namespaces/ns/secrets/db%5C", "forbidden encoded byte", 32},
	{"GET", "/api/v1/namespaces/ns/secrets/db%2500", "forbidden encoded byte", 32},
	{"GET", "/api/v1/namespaces/ns/secrets/db%0A", "forbidden encoded byte", 32},
	{"GET", "/api/v1/namespaces/ns/secrets/db%C3%A9", "forbidden encoded byte", 32},
	{"GET", "/api/v1/namespaces/ns/secrets/db%7F", "forbidden encoded byte", 32},
	/* dot-segments, plain and encoded (RFC 3986 §5.2.4: rejected) */
	{"GET", "/api/v1/namespaces/ns/pods/../secrets", "dot-segment", 27},
	{"GET", "/api/v1/namespaces/ns/pods/%2e%2e/secrets", "dot-segment", 27},
	{"GET", "/api/v1/namespaces/ns/pods/.%2E/secrets", "dot-segment", 27},
	{"GET", "/api/v1/namespaces/ns/pods/%2E./secrets", "dot-segment", 27},
	{"GET", "/api/v1/./pods", "dot-segment", 8},
	{"GET", "/api/v1/%2e/pods", "dot-segment", 8},
	{"GET", "/api/v1/pods/.", "dot-segment", 13},
	{"GET", "/api/v1/pods/..", "dot-segment", 13},
	{"GET", "/..", "dot-segment", 1},
	{"GET", "/./", "dot-segment", 1},
	/* empty segments */
	{"GET", "/api/v1//pods", "empty path segment", 8},
	{"GET", "//api/v1/pods", "empty path segment", 1},
	{"GET", "/api/v1/pods//", "empty path segment", 13},
	{"GET", "//", "empty path segment", 1},
	/* escapes, raw bytes */
	{"GET", "/api/v1/pods%zz", "invalid percent-escape in path", 12},
	{"GET", "/api/v1/pods%2", "invalid percent-escape in path", 12},
	{"GET", "/api/v1/pods%", "invalid percent-escape in path", 12},
	{"GET", "/api/v1/po\\ds", "backslash", 10},
	{"GET",
	 "/api/v1/p\xc3\xa9"
	 "ds",
	 "invalid character in path", 9},
	{"GET", "/api/v1/pods x", "invalid character in path", 12},
	{"GET", "/api/v1/pods\tx", "invalid character in path", 12},
	{"GET", "/api/v1/pods#frag", "invalid character in path", 12},
	{"GET", "/api/v1/pods\"", "invalid character in path", 12},
	/* query: pairs Go would drop, bytes it would read differently */
	{"GET", "/api/v1/pods?watch=1;x&watch=0", "';' in query", 20},
	{"GET", "/api/v1/pods?watch=%G1", "invalid percent-escape in query", 19},
	{"GET", "/api/v1/pods?watch=1%", "invalid percent-escape in query", 20},
	{"GET", "/api/v1/pods?a=b c", "invalid character in query", 16},
	{"GET", "/api/v1/pods?a=\xff", "invalid character in query", 15},
	{"GET", "/api/v1/pods?a=b#f", "fragment", 16},
	{"GET", "/api/v1/pods?watch=fal%C5%BFe", "non-ASCII watch value", 19},
	{"GET", "/api/v1/pods?fieldSelector=a%3D%0A", "selector", 27},
	{"GET", "/api/v1/pods?labelSelector=a%3D%C3%A9", "selector", 27},
	{"GET", "/api/v1/pods?labelSelector=%00", "selector", 27},
	/* verb-in-path prefixes without a resource */
	{"GET", "/api/v1/watch", "special verb", 13},
	{"GET", "/api/v1/proxy/", "special verb", 14},
	{"GET", "/apis/apps/v1/watch", "special verb", 19},
	/* target and method forms */
	{"GET", "", "empty request-target", 0},
	{"GET", "api/v1/pods", "origin-form", 0},
	{"GET", "http://evil/api/v1/pods", "origin-form", 0},
	{"GET", "*", "asterisk-form", 0},
	{"", "/api/v1/pods", "empty method", 0},
	{"GE T", "/api/v1/pods", "invalid character in method", 2},
	{"GET\r\n", "/api/v1/pods", "invalid character in method", 3},
};

static void test_rejects(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct run r;

		run(&r, c->method, c->target);
		if (r.rc != -EINVAL || !r.err.reason || !strstr(r.err.reason, c->reason) ||
		    r.err.pos != c->pos) {
			print_error("\"%s\" \"%s\": rc %d reason \"%s\" pos %zu, want -EINVAL "
				    "\"%s\" at %zu\n",
				    c->method, c->target, r.rc, r.err.reason ? r.err.reason : "-",
				    r.err.pos, c->reason, c->pos);
			fail();
		}
		run_free(&r);
	}
}

/* Every spelling of "list the secrets of kube-system" either reads as exactly
 * that, or is refused, or names a resource the API server does not serve
 * (it is case-sensitive): none reads as something a policy would treat
 * differently while the API server serves the secrets. */
enum spelling { SAME, REFUSED, OTHER };

static void test_no_dodge(void **state)
{
	static const struct {
		const char *target;
		enum spelling want;
	} cases[] = {
		{"/api/v1/namespaces/kube-system/secrets", SAME},
		{"/api/v1/namespaces/kube-system/secrets/", SAME},
		{"/api/v1/namespaces/kube-system/%73%65%63%72%65%74%73", SAME},
		{"/api/v1/namespaces/kube-system/secrets?watch=0", SAME},
		{"/api/v1/namespaces/kube-system/secrets?watch=false&watch=1", SAME},
		{"/api/v1/namespaces/kube-system/SECRETS", OTHER},
		{"/api/v1/namespaces/kube-system/secrets;x", OTHER},
		{"/api/v1/namespaces/kube-system/secrets%2F", REFUSED},
		{"/api/v1/namespaces/kube-system/./secrets", REFUSED},
		{"/api/v1/namespaces/kube-system/pods/../secrets", REFUSED},
		{"/api/v1/namespaces/kube-system/pods/%2E%2E/secrets", REFUSED},
		{"/api/v1/namespaces/kube-system//secrets", REFUSED},
		{"//api/v1/namespaces/kube-system/secrets", REFUSED},
		{"/api/v1/namespaces%2Fkube-system/secrets", REFUSED},
		{"/api/v1/namespaces/kube-system/secrets%00", REFUSED},
		{"/api/v1/namespaces/kube-system/secrets\\", REFUSED},
		{"/api/v1/namespaces/default/..%2Fkube-system/secrets", REFUSED},
		{"/api/v1/namespaces/kube-system/secrets?watch=0;&watch=1", REFUSED},
		{"/api/v1/namespaces/kube-system/secrets?watch=0%", REFUSED},
		{"/api/v1/namespaces/kube-system/secrets#x", REFUSED},
		{"/api/v1/namespaces/kube-system/secrets?watch=fal%C5%BFe", REFUSED},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *t = cases[i].target;
		struct run r;

		run(&r, "GET", t);
		switch (cases[i].want) {
		case SAME:
			assert_int_equal(r.rc, 0);
			assert_str(r.ri.resource, "secrets", "resource", t);
			assert_str(r.ri.namespace, "kube-system", "namespace", t);
			assert_str(r.ri.verb, "list", "verb", t);
			assert_int_equal(r.ri.name.len, 0);
			break;
		case OTHER:
			assert_int_equal(r.rc, 0);
			assert_true(r.ri.is_resource_request);
			assert_false(mg_str_eq(r.ri.resource, MG_STR("secrets")));
			break;
		case REFUSED:
			if (r.rc != -EINVAL) {
				print_error("%s: rc %d, want -EINVAL\n", t, r.rc);
				fail();
			}
			break;
		}
		run_free(&r);
	}
}

/* ---- scratch sizing ---- */

static void test_scratch_exact(void **state)
{
	struct run r;

	(void)state;
	/* No query, a known method: the decoded path is all that is needed. */
	run_sized(&r, "GET", "/api/v1/namespaces/ns/pods/p", 28);
	assert_int_equal(r.rc, 0);
	assert_str(r.ri.name, "p", "name", "exact");
	run_free(&r);
	run_sized(&r, "GET", "/api/v1/namespaces/ns/pods/p", 27);
	assert_int_equal(r.rc, -ENOBUFS);
	run_free(&r);
	run_sized(&r, "GET", "/", 0);
	assert_int_equal(r.rc, -ENOBUFS);
	run_free(&r);
	/* An unknown method is lowercased into the scratch too. */
	run_sized(&r, "FOO", "/x", 4);
	assert_int_equal(r.rc, -ENOBUFS);
	run_free(&r);
	run_sized(&r, "FOO", "/x", 5);
	assert_int_equal(r.rc, 0);
	assert_str(r.ri.verb, "foo", "verb", "/x");
	run_free(&r);
	/* A selector is decoded in room for its raw value (17), then the
	 * name in room for the decoded selector (15): 12 + 15 + 15 at the peak. */
	run_sized(&r, "GET", "/api/v1/pods?fieldSelector=metadata.name%3Dp", 12 + 15 + 15);
	assert_int_equal(r.rc, 0);
	assert_str(r.ri.name, "p", "name", "fs");
	assert_str(r.ri.field_selector, "metadata.name=p", "fs", "fs");
	run_free(&r);
	run_sized(&r, "GET", "/api/v1/pods?fieldSelector=metadata.name%3Dp", 12 + 15 + 14);
	assert_int_equal(r.rc, -ENOBUFS);
	run_free(&r);
}

/* The bound of MG_REQINFO_SCRATCH_LEN holds for long targets with every
 * decoded output at its largest: a path, a field selector giving a name, a
 * label selector, and (non-resource) an unknown method. */
static void test_scratch_long(void **state)
{
	static const char head[] = "/api/v1/namespaces/ns/secrets?fieldSelector=metadata.name=";
	size_t n = 16384, len = sizeof(head) - 1;
	char *t = malloc(len + 2 * n + 64), *m = malloc(n + 1);
	struct run r;

	(void)state;
	assert_non_null(t);
	assert_non_null(m);
	memcpy(t, head, len);
	memset(t + len, 'a', n);
	len += n;
	memcpy(t + len, "&labelSelector=", 15);
	len += 15;
	memset(t + len, 'b', n);
	len += n;
	t[len] = '\0';
	run(&r, "GET", t);
	assert_int_equal(r.rc, 0);
	assert_true(r.ri.name_from_field_selector);
	assert_int_equal(r.ri.name.len, n);
	assert_int_equal(r.ri.field_selector.len, n + 14);
	assert_int_equal(r.ri.label_selector.len, n);
	run_free(&r);

	memset(m, 'X', n);
	m[n] = '\0';
	memcpy(t, "/healthz", 8); /* keeps the query: a non-resource path */
	memmove(t + 8, strchr(t, '?'), strlen(strchr(t, '?')) + 1);
	run(&r, m, t);
	assert_int_equal(r.rc, 0);
	assert_false(r.ri.is_resource_request);
	assert_int_equal(r.ri.verb.len, n);
	assert_int_equal(r.ri.verb.ptr[0], 'x');
	run_free(&r);
	free(t);
	free(m);
}

/* ---- helpers of the API ---- */

static void test_parts(void **state)
{
	struct run r;

	(void)state;
	run(&r, "GET", "/api/v1/namespaces/ns/pods/p/proxy/a/b/");
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.ri.n_parts, 5);
	assert_str(r.ri.parts, "pods/p/proxy/a/b", "parts", "proxy");
	assert_str(mg_reqinfo_part(&r.ri, 0), "pods", "part 0", "proxy");
	assert_str(mg_reqinfo_part(&r.ri, 1), "p", "part 1", "proxy");
	assert_str(mg_reqinfo_part(&r.ri, 2), "proxy", "part 2", "proxy");
	assert_str(mg_reqinfo_part(&r.ri, 4), "b", "part 4", "proxy");
	assert_str(mg_reqinfo_part(&r.ri, 5), "", "part 5", "proxy");
	assert_str(mg_reqinfo_part(&r.ri, SIZE_MAX), "", "part max", "proxy");
	run_free(&r);
	/* namespaces/{ns}/status keeps "namespaces" as the first part */
	run(&r, "PUT", "/api/v1/namespaces/ns/status");
	assert_int_equal(r.rc, 0);
	assert_str(r.ri.parts, "namespaces/ns/status", "parts", "status");
	run_free(&r);
	/* non-resource: no parts */
	run(&r, "GET", "/apis/apps/v1");
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.ri.n_parts, 0);
	assert_str(mg_reqinfo_part(&r.ri, 0), "", "part 0", "discovery");
	run_free(&r);
}

static void test_format_resource(void **state)
{
	char buf[32];
	struct run r;

	(void)state;
	run(&r, "POST", "/api/v1/namespaces/ns/pods/p/exec?command=id");
	assert_int_equal(r.rc, 0);
	assert_int_equal(mg_reqinfo_format_resource(&r.ri, buf, sizeof(buf)), 9);
	assert_string_equal(buf, "pods/exec");
	/* truncated like snprintf, still terminated */
	assert_int_equal(mg_reqinfo_format_resource(&r.ri, buf, 5), 9);
	assert_string_equal(buf, "pods");
	assert_int_equal(mg_reqinfo_format_resource(&r.ri, NULL, 0), 9);
	run_free(&r);

	run(&r, "GET", "/apis/apps/v1/deployments");
	assert_int_equal(r.rc, 0);
	assert_int_equal(mg_reqinfo_format_resource(&r.ri, buf, sizeof(buf)), 11);
	assert_string_equal(buf, "deployments");
	run_free(&r);

	run(&r, "GET", "/healthz");
	assert_int_equal(r.rc, 0);
	strcpy(buf, "junk");
	assert_int_equal(mg_reqinfo_format_resource(&r.ri, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
	run_free(&r);
}

static void test_query_get(void **state)
{
	struct mg_str q = MG_STR("command=ls&command=-l&c%6Fntainer=a+b%2Fc&empty&x=");
	char buf[16];
	struct mg_str v;

	(void)state;
	assert_int_equal(mg_reqinfo_query_get(q, MG_STR("command"), buf, sizeof(buf), &v), 1);
	assert_str(v, "ls", "command", "query");
	assert_int_equal(mg_reqinfo_query_get(q, MG_STR("container"), buf, sizeof(buf), &v), 1);
	assert_str(v, "a b/c", "container", "query");
	assert_true(v.ptr == buf);
	assert_int_equal(mg_reqinfo_query_get(q, MG_STR("empty"), buf, sizeof(buf), &v), 1);
	assert_non_null(v.ptr);
	assert_int_equal(v.len, 0);
	assert_int_equal(mg_reqinfo_query_get(q, MG_STR("x"), buf, sizeof(buf), &v), 1);
	assert_int_equal(v.len, 0);
	assert_int_equal(mg_reqinfo_query_get(q, MG_STR("stdin"), buf, sizeof(buf), &v), 0);
	assert_null(v.ptr);
	assert_int_equal(mg_reqinfo_query_get(MG_STR_NULL, MG_STR("x"), buf, sizeof(buf), &v), 0);
	assert_int_equal(mg_reqinfo_query_get(q, MG_STR("container"), buf, 4, &v), -ENOBUFS);
	assert_int_equal(mg_reqinfo_query_get(MG_STR("a=%zz"), MG_STR("a"), buf, sizeof(buf), &v),
			 -EINVAL);
}

/* The verb is a static string for every method-derived resource verb, and
 * the lowercased non-resource method is in the scratch only when unknown. */
static void test_verb_storage(void **state)
{
	struct run r;

	(void)state;
	run(&r, "DELETE", "/api/v1/nodes");
	assert_int_equal(r.rc, 0);
	assert_str(r.ri.verb, "deletecollection", "verb", "/api/v1/nodes");
	assert_false(within(r.ri.verb, r.scratch, r.scratch_len));
	run_free(&r);
	run(&r, "Get", "/healthz");
	assert_int_equal(r.rc, 0);
	assert_str(r.ri.verb, "get", "verb", "/healthz");
	assert_false(within(r.ri.verb, r.scratch, r.scratch_len));
	run_free(&r);
	run(&r, "M-SEARCH", "/healthz");
	assert_int_equal(r.rc, 0);
	assert_str(r.ri.verb, "m-search", "verb", "/healthz");
	assert_true(within(r.ri.verb, r.scratch, r.scratch_len));
	run_free(&r);
}

/* A NULL <err> is allowed. */
static void test_null_err(void **state)
{
	char scratch[64];
	struct mg_reqinfo ri;

	(void)state;
	assert_int_equal(mg_reqinfo_parse(&ri, MG_STR("GET"), MG_STR("/a//b"), scratch,
					  sizeof(scratch), NULL),
			 -EINVAL);
	assert_int_equal(mg_reqinfo_parse(&ri, MG_STR("GET"), MG_STR("/api/v1/pods"), scratch,
					  sizeof(scratch), NULL),
			 0);
	assert_str(ri.verb, "list", "verb", "null err");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_no_dodge),	cmocka_unit_test(test_scratch_exact),
		cmocka_unit_test(test_scratch_long),	cmocka_unit_test(test_parts),
		cmocka_unit_test(test_format_resource), cmocka_unit_test(test_query_get),
		cmocka_unit_test(test_verb_storage),	cmocka_unit_test(test_null_err),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
