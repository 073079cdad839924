/*
 * reqinfo: HTTP method + request-target -> Kubernetes request info, by the
 * rules of the API server's RequestInfoFactory (k8s.io/apiserver, package
 * endpoints/request, requestinfo.go): resource or non-resource request, verb
 * (list/watch/deletecollection derived as the API server does), API group and
 * version, namespace, resource, subresource, name.
 *
 * The policy engine allows or denies on this output, so a rule must not be
 * dodged by spelling a path differently. The target is brought to one
 * spelling, and every spelling the API server (Go's net/url) could read
 * differently from us is rejected (the proxy answers 400) instead of guessed:
 *  - origin-form only (RFC 9112 §3.2.1), or "*" with OPTIONS; no fragment;
 *    raw bytes must be RFC 3986 pchar / "/" (§3.3) and, in the query,
 *    pchar / "/" / "?" (§3.4) minus ';' (Go's url.ParseQuery silently drops
 *    pairs holding one, so "watch=1;x&watch=0" would be read as watch=0);
 *  - percent-escapes must be well-formed (RFC 3986 §2.1); in the path they
 *    are decoded, except that an encoded '/', '\', '%', NUL, control or
 *    non-ASCII byte is an error: %2F is not equivalent to '/' (RFC 3986 §2.2)
 *    but Go decodes it into URL.Path anyway, so "namespaces%2Fx%2Fsecrets"
 *    would name a different resource to the API server than to a naive proxy;
 *  - dot-segments ("." and "..", also spelled %2e) are rejected rather than
 *    resolved (RFC 3986 §5.2.4): the API server does not resolve them
 *    before computing its request info, so any resolution would disagree;
 *  - empty segments ("//") are rejected, one trailing '/' is allowed (the
 *    API server trims it when splitting, and keeps it in the path);
 *  - the first fieldSelector / labelSelector value must be printable ASCII,
 *    and a watch value must be ASCII (Go's EqualFold makes "fal\u017fe"
 *    equal "false").
 *
 * Nothing here allocates: decoded text is written to a caller's scratch buffer
 * and every output slice points into it, into the target, or at a static
 * string.
 */
#ifndef MCPGATE_REQINFO_H
#define MCPGATE_REQINFO_H

#include <stdbool.h>
#include <stddef.h>

#include "mcpgate/str.h"

/* Scratch bytes that always suffice for mg_reqinfo_parse(): the decoded path,
 * the two decoded selectors, the name taken from a field selector and a
 * lowercased method are each no longer than their source. */
#define MG_REQINFO_SCRATCH_LEN(target_len, method_len) (2 * (target_len) + (method_len))

/** Where and why a target was rejected; logged and put in the audit record. */
struct mg_reqinfo_err {
	const char *reason; /* static string, set on every error return */
	size_t pos;	    /* offset of the offending byte in the target (in the
			     * method for method errors) */
};

/**
 * What a request means to the API server. Text fields are never NULL (an
 * absent one is "" with len 0) except the selectors and <query>, whose ptr is
 * NULL when absent.
 */
struct mg_reqinfo {
	bool is_resource_request;
	/* The percent-decoded path (a trailing '/' kept, as the API server's
	 * URL.Path does): what RBAC-style nonResourceURLs are matched against. */
	struct mg_str path;
	/* Resource requests: get, list, watch, create, update, patch, delete,
	 * deletecollection, proxy, or "" for a method the API server maps to
	 * no verb (e.g. OPTIONS). Non-resource requests: the method lowercased. */
	struct mg_str verb;
	struct mg_str api_prefix; /* "api" or "apis" */
	struct mg_str api_group;  /* "" for the core (legacy) group */
	struct mg_str api_version;
	struct mg_str namespace; /* "" when cluster-scoped */
	struct mg_str resource;
	struct mg_str subresource; /* e.g. "exec", "log", "status", "token" */
	/* From the path, or from an exact metadata.name field selector of a
	 * list/watch (then <name_from_field_selector>), as the API server does. */
	struct mg_str name;
	/* The path segments from <resource> on ("pods/foo/log/..."), trailing
	 * '/' excluded, <n_parts> of them; see mg_reqinfo_part(). */
	struct mg_str parts;
	size_t n_parts;
	struct mg_str query; /* raw, after the '?', not decoded; ptr NULL if none */
	bool watch;	     /* verb is "watch" (by ?watch= or by /watch/ in the path) */
	bool verb_from_path; /* the deprecated /watch/ or /proxy/ path prefix set verb */
	bool name_from_field_selector;
	/* First fieldSelector / labelSelector values, decoded; set only for
	 * list, watch and deletecollection not using the /watch/ prefix, like
	 * the API server's selector authorization (elsewhere the API server
	 * ignores them, so a policy must not be able to rely on them). */
	struct mg_str field_selector;
	struct mg_str label_selector;
	/* Every dryRun value is exactly "All" (and there is at least one): the
	 * only form the API server accepts as a dry run. */
	bool dry_run;
};

/**
 * Computes the request info of <method> and <target> (the request-target as
 * received, origin-form) into <ri>. Decoded text goes to <scratch>, at most
 * MG_REQINFO_SCRATCH_LEN(<target>.len, <method>.len) bytes of it. The method
 * is case-sensitive, as in Go ("get" maps to no resource verb).
 * Returns 0; -EINVAL with <err> filled in when the target must be refused
 * (the proxy answers 400); or -ENOBUFS when <scratch_len> is too small (414).
 * On error <ri> holds nothing usable.
 */
int mg_reqinfo_parse(struct mg_reqinfo *ri, struct mg_str method, struct mg_str target,
		     char *scratch, size_t scratch_len, struct mg_reqinfo_err *err);

/** The <i>-th segment of <ri>->parts (0 is the resource), or "" past the end. */
struct mg_str mg_reqinfo_part(const struct mg_reqinfo *ri, size_t i);

/**
 * Writes "<resource>" or "<resource>/<subresource>" of <ri>, NUL-terminated
 * and truncated to <size>, into <buf> (an empty string for a non-resource
 * request). Returns the full length, as snprintf() does.
 */
size_t mg_reqinfo_format_resource(const struct mg_reqinfo *ri, char *buf, size_t size);

/**
 * Looks for query parameter <key> in the raw query <query> (e.g. <ri>->query)
 * and decodes its first value (Go's url.Values.Get: '+' is a space, keys are
 * decoded too) into <buf>[0..<size>), setting <*value> to it.
 * Returns 1 if found, 0 if not (<*value> = MG_STR_NULL), -EINVAL for a
 * malformed escape, -ENOBUFS when the value does not fit.
 */
int mg_reqinfo_query_get(struct mg_str query, struct mg_str key, char *buf, size_t size,
			 struct mg_str *value);

#endif /* MCPGATE_REQINFO_H */
