/*
 * pods: which pod a cgroup belongs to, and what the kernel does with each
 * pod's API connects.
 *
 * Two sources meet here: the cgroup tree on this node (cgroup id = directory
 * inode -> pod UID, for both kubelet cgroup drivers) and the node-scoped pod
 * watch (pod UID -> namespace, name, ServiceAccount, labels). Every pod-level
 * cgroup under the attach point gets an `intercept` entry (abi.h), so that
 * with --unknown-pods refuse a cgroup with none is known to be new:
 *
 *   PENDING   its metadata is not known (yet, or the pod was deleted): API
 *             connects refused
 *   SELECTED  the selector matched it once: API connects go to the proxy.
 *             Sticky per pod while the pod exists and the selector is the
 *             same (sel_gen = mg_pods_selector_gen()): a pod that can patch
 *             itself cannot remove the label and go direct. Deselecting is
 *             an admin act: a restart with another selector, logged per pod.
 *   PASS      known, not selected: untouched
 *
 * A pod that becomes selected (from none, PENDING or PASS) has its open API
 * connections cut through the owner's callback, outside the table lock.
 * A restarted daemon keeps its predecessor's entries as they are until its
 * first pod list. Thread-safe: the watch runs in its own thread, scans and
 * lookups come from the event loop.
 */
#ifndef MCPGATE_PODS_H
#define MCPGATE_PODS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "mcpgate/abi.h"

struct mg_kube;

/* ---- cgroup path parsing (pure, unit-tested) ---- */

enum mg_pods_cg_kind {
	MG_PODS_CG_NONE = 0,  /* not a pod's cgroup (a QoS slice, the root, ...) */
	MG_PODS_CG_POD,	      /* the pod-level cgroup */
	MG_PODS_CG_CONTAINER, /* a container (or deeper) cgroup of a pod */
};

enum mg_pods_qos {
	MG_PODS_QOS_GUARANTEED = 0,
	MG_PODS_QOS_BURSTABLE,
	MG_PODS_QOS_BESTEFFORT,
};

/** What a cgroup path says about its pod. */
struct mg_pods_cgpath {
	enum mg_pods_cg_kind kind;
	enum mg_pods_qos qos;
	bool systemd;	       /* kubepods.slice/... layout */
	char uid[40];	       /* dashes restored for the systemd driver */
	char container_id[80]; /* hex id, empty when not a container */
	size_t pod_prefix_len; /* length of the path up to the pod dir */
};

/**
 * Parses a cgroup path (absolute or relative, any prefix above the kubepods
 * root) laid out by the kubelet's systemd driver
 * (kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/
 * <runtime>-<id>.scope) or cgroupfs driver (kubepods/<qos>/pod<uid>/<id>);
 * Guaranteed pods sit directly under the kubepods root. Returns 0 with
 * <out> filled (kind NONE for paths above pod level), -EINVAL for a path
 * that looks like a pod cgroup but is malformed (bad UID, QoS mismatch).
 */
int mg_pods_parse_cgroup_path(const char *path, struct mg_pods_cgpath *out);

/* ---- selector ---- */

#define MG_PODS_SEL_MAX 16

struct mg_pods_selector {
	struct {
		char key[254];
		char value[64];
		enum { MG_SEL_EQ, MG_SEL_NE, MG_SEL_EXISTS, MG_SEL_NOT_EXISTS } op;
	} req[MG_PODS_SEL_MAX];
	size_t n;
	char namespaces[MG_PODS_SEL_MAX][64]; /* empty list: every namespace */
	size_t n_namespaces;
};

/**
 * Parses an equality-based label selector ("k=v,k==v,k!=v,k,!k") and a
 * comma-separated namespace list (NULL or "" = all). Returns 0 or -EINVAL
 * with <errbuf> naming the bad part.
 */
int mg_pods_selector_parse(struct mg_pods_selector *sel, const char *labels, const char *namespaces,
			   char *errbuf, size_t errlen);

/** True if a pod in <ns> with <labels> (a JSON object or NULL) matches. */
bool mg_pods_selector_match(const struct mg_pods_selector *sel, const char *ns, json_t *labels);

/**
 * The selector's generation: a hash of its canonical form (requirements and
 * namespaces sorted), never 0. Stored in the entries it selects, so a
 * restarted daemon knows whether a selection was made by the same selector.
 */
uint32_t mg_pods_selector_gen(const struct mg_pods_selector *sel);

/* ---- the table ---- */

struct mg_pods;

struct mg_pod_ident;

/** Sets the `intercept` entry of <pod_cgroup_id> to <v>, or removes it when
 * <v> is NULL. 0 / -errno (the change is retried on the next reconcile). */
typedef int mg_pods_set_cb(void *data, uint64_t pod_cgroup_id, const struct mg_abi_pod *v);

/** Pod cgroup <pod_cgroup_id> (directory <dir>, NULL if unknown) has just
 * become selected: cut its open API connections. <id> has no labels. */
typedef void mg_pods_selected_cb(void *data, uint64_t pod_cgroup_id, const char *dir,
				 const struct mg_pod_ident *id);

struct mg_pods_opts {
	const char *cgroup_root; /* the kubepods cgroup directory */
	const char *node_name;
	struct mg_pods_selector selector;
	mg_pods_set_cb *set_state;
	mg_pods_selected_cb *on_selected;
	void *cb_data;
	bool async_cuts; /* on_selected on a thread of its own (the daemon: never
			  * on the loop); false: on the thread that reconciles */
};

/** Identity of the pod behind a connection; plain copies. */
struct mg_pod_ident {
	char namespace[64];
	char name[254];
	char uid[40];
	char service_account[254];
	char node[254];
	char container_id[80];
	json_t *labels; /* owned reference or NULL: mg_pod_ident_release() */
	bool known;	/* metadata seen in the pod watch */
};

int mg_pods_new(struct mg_pods **out, const struct mg_pods_opts *o);
/** Entries a previous daemon left in intercept (ids and values): kept as
 * they are until the first pod list; selections of the same selector
 * generation stay sticky after it. */
int mg_pods_preset(struct mg_pods *p, const uint64_t *ids, const struct mg_abi_pod *vals, size_t n);
/**
 * Replaces the selector (an admin's reload): every pod is judged again by
 * its labels, as after a restart with another selector (deselections
 * logged per pod, new selections cut). Returns 1 if the generation changed,
 * 0 if it is the same selector (nothing done).
 */
int mg_pods_set_selector(struct mg_pods *p, const struct mg_pods_selector *sel);

/** The generation of this table's selector. */
uint32_t mg_pods_gen(const struct mg_pods *p);
/** Stops the watch thread if started, frees everything. Accepts NULL. */
void mg_pods_free(struct mg_pods *p);

/** Rescans the cgroup tree (inotify watches included) and reconciles. */
int mg_pods_scan(struct mg_pods *p);
/** The inotify fd to poll; call mg_pods_on_inotify() when readable. */
int mg_pods_inotify_fd(const struct mg_pods *p);
int mg_pods_on_inotify(struct mg_pods *p);

/** Replaces all metadata with a PodList (the watch's relist). */
int mg_pods_apply_list(struct mg_pods *p, json_t *podlist);
/** Applies one watch event: <type> ADDED, MODIFIED, DELETED. */
int mg_pods_apply_event(struct mg_pods *p, const char *type, json_t *pod);

/**
 * Fills <out> for the pod owning <pod_cgroup_id>; <cgroup_id> (the task's
 * own cgroup) selects the container. -ENOENT if the cgroup is unknown.
 */
int mg_pods_lookup(struct mg_pods *p, uint64_t pod_cgroup_id, uint64_t cgroup_id,
		   struct mg_pod_ident *out);
void mg_pod_ident_release(struct mg_pod_ident *id);

/** Entries by state. */
struct mg_pods_counts {
	size_t selected, pending, pass;
};
void mg_pods_counts(struct mg_pods *p, struct mg_pods_counts *c);

/** Number of pods currently selected. */
size_t mg_pods_intercepted(struct mg_pods *p);

/** Copies up to <max> selected pods whose metadata is known into <out>
 * (no labels); returns the count. */
size_t mg_pods_list_selected(struct mg_pods *p, struct mg_pod_ident *out, size_t max);

/**
 * Starts a thread that lists then watches pods with
 * fieldSelector=spec.nodeName=<node_name> through <kube>, relisting on
 * errors with backoff. mg_pods_synced() turns true after the first list.
 */
int mg_pods_watch_start(struct mg_pods *p, struct mg_kube *kube);
bool mg_pods_synced(struct mg_pods *p);

#endif /* MCPGATE_PODS_H */
