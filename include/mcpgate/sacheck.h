/*
 * sacheck: what a selected pod's own ServiceAccount may do without mcpgate.
 *
 * On the redirected path the pod's token never reaches the API server, but
 * a pod still holds it, and a path around the proxy (a raw socket, a node
 * the daemon is down on) would carry it. The documented deployment gives a
 * selected pod's ServiceAccount nothing beyond discovery, so a stolen token
 * is worth nothing; this check says when that is not so. For each selected
 * pod, at start, when it is selected and every interval, one
 * SubjectAccessReview per probe below asks whether
 * system:serviceaccount:<ns>:<sa> (with its groups) may do it; any "allowed"
 * is a warning in the log and the pod's gauge
 * mcpgate_pod_serviceaccount_excess_rights{namespace,pod,serviceaccount} = 1.
 *
 * Reviews go through the kube client on this module's own thread, never the
 * event loop; one review per (ServiceAccount, probe) per round.
 */
#ifndef MCPGATE_SACHECK_H
#define MCPGATE_SACHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

struct mg_kube;
struct mg_pods;

/** Pods tracked at most (a node's selected pods). */
#define MG_SACHECK_MAX_PODS 1024

/** One sensitive request a ServiceAccount should not be allowed. */
struct mg_sacheck_probe {
	const char *label; /* "get secrets", for the log */
	const char *verb;
	const char *group;
	const char *resource;
	const char *subresource; /* NULL: none */
	bool cluster;		 /* cluster-wide, not in the pod's namespace */
};

/** The probes, in the order of the allowed-bits of a result. */
extern const struct mg_sacheck_probe mg_sacheck_probes[];
extern const size_t mg_sacheck_n_probes;

/** The SubjectAccessReview asking <probe> for system:serviceaccount:<ns>:<sa>
 * with its groups. New reference. */
json_t *mg_sacheck_review(const char *ns, const char *sa, const struct mg_sacheck_probe *probe);

/** Reads a SubjectAccessReview answer: 1 allowed, 0 not, -EPROTO malformed. */
int mg_sacheck_parse(json_t *answer);

/** POSTs the review <body> and returns the answer in <*out> (0) or -errno;
 * the default goes through the kube client, tests answer themselves. */
typedef int mg_sacheck_post_cb(void *data, const char *body, json_t **out);

struct mg_sacheck_opts {
	struct mg_kube *kube;
	struct mg_pods *pods;
	unsigned interval_s;	  /* full recheck period; new pods are checked within 1 s */
	mg_sacheck_post_cb *post; /* NULL: mg_kube_post_json on <kube> */
	void *post_data;
};

struct mg_sacheck;

int mg_sacheck_new(struct mg_sacheck **out, const struct mg_sacheck_opts *o);
int mg_sacheck_start(struct mg_sacheck *c);
/** Stops the thread if started, frees. Accepts NULL. */
void mg_sacheck_free(struct mg_sacheck *c);

/** One pass on the caller's thread: checks the selected pods not checked
 * yet, or all of them when <all>; forgets pods no longer selected. */
void mg_sacheck_run(struct mg_sacheck *c, bool all);

struct mg_metrics;

/**
 * Registers the per-pod gauge mcpgate_pod_serviceaccount_excess_rights and
 * the counter mcpgate_serviceaccount_checks_failed_total in <m>, filled at
 * each render. Once per <c> (which must outlive <m>'s renders). 0, -ENOMEM
 * or -EEXIST.
 */
int mg_sacheck_register_metrics(struct mg_sacheck *c, struct mg_metrics *m);

/** The same families rendered on their own into <f> (tests, tools). */
void mg_sacheck_write_metrics(struct mg_sacheck *c, FILE *f);

#endif /* MCPGATE_SACHECK_H */
