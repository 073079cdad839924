/*
 * pods: which pod a cgroup belongs to, and which pods are intercepted.
 *
 * Two sources meet here: the cgroup tree on this node (cgroup id = directory
 * inode -> pod UID, for both kubelet cgroup drivers) and the node-scoped pod
 * watch (pod UID -> namespace, name, ServiceAccount, labels). A pod is
 * intercepted when its metadata matches the selector and its pod-level cgroup
 * exists; the module tells its owner through a callback, which the daemon
 * wires to mg_loader_set_intercept(). Thread-safe: the watch runs in its own
 * thread, lookups come from the event loop.
 */
#ifndef MCPGATE_PODS_H
#define MCPGATE_PODS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

struct mg_kube;

/* ---- cgroup path parsing (pure, unit-tested) ---- */

enum mg_pods_cg_kind {
	MG_PODS_CG_NONE = 0,	/* not a pod's cgroup (a QoS slice, the root, ...) */
	MG_PODS_CG_POD,		/* the pod-level cgroup */
	MG_PODS_CG_CONTAINER,	/* a container (or deeper) cgroup of a pod */
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
	bool systemd;			/* kubepods.slice/... layout */
	char uid[40];			/* dashes restored for the systemd driver */
	char container_id[80];		/* hex id, empty when not a container */
	size_t pod_prefix_len;		/* length of the path up to the pod dir */
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
	char namespaces[MG_PODS_SEL_MAX][64];	/* empty list: every namespace */
	size_t n_namespaces;
};

/**
 * Parses an equality-based label selector ("k=v,k==v,k!=v,k,!k") and a
 * comma-separated namespace list (NULL or "" = all). Returns 0 or -EINVAL
 * with <errbuf> naming the bad part.
 */
int mg_pods_selector_parse(struct mg_pods_selector *sel, const char *labels,
			   const char *namespaces, char *errbuf, size_t errlen);

/** True if a pod in <ns> with <labels> (a JSON object or NULL) matches. */
bool mg_pods_selector_match(const struct mg_pods_selector *sel, const char *ns, json_t *labels);

/* ---- the table ---- */

struct mg_pods;

/** Called when a pod-level cgroup id must enter (<on>) or leave intercept. */
typedef int mg_pods_intercept_cb(void *data, uint64_t pod_cgroup_id, bool on);

struct mg_pods_opts {
	const char *cgroup_root;	/* the kubepods cgroup directory */
	const char *node_name;
	struct mg_pods_selector selector;
	mg_pods_intercept_cb *intercept;
	void *intercept_data;
};

/** Identity of the pod behind a connection; plain copies. */
struct mg_pod_ident {
	char namespace[64];
	char name[254];
	char uid[40];
	char service_account[254];
	char node[254];
	char container_id[80];
	json_t *labels;		/* owned reference or NULL: mg_pod_ident_release() */
	bool known;		/* metadata seen in the pod watch */
};

int mg_pods_new(struct mg_pods **out, const struct mg_pods_opts *o);
/** Ids a previous daemon left in intercept: kept until the first pod list. */
int mg_pods_preset(struct mg_pods *p, const uint64_t *ids, size_t n);
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

/** Number of pods currently in intercept. */
size_t mg_pods_intercepted(struct mg_pods *p);

/**
 * Starts a thread that lists then watches pods with
 * fieldSelector=spec.nodeName=<node_name> through <kube>, relisting on
 * errors with backoff. mg_pods_synced() turns true after the first list.
 */
int mg_pods_watch_start(struct mg_pods *p, struct mg_kube *kube);
bool mg_pods_synced(struct mg_pods *p);

#endif /* MCPGATE_PODS_H */
