/*
 * pods: cgroup tree + pod watch -> identities and the intercept set.
 * See include/mcpgate/pods.h.
 */
#include <errno.h>
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mcpgate/kube.h"
#include "mcpgate/log.h"
#include "mcpgate/pods.h"

#define SCAN_MAX_DEPTH 5 /* kubepods/<qos>/pod/<container>/<nested> */

/* ---- cgroup path parsing ---- */

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Copies the pod UID in <s>[0..<n>) to <out> if it is a canonical UUID
 * (with '_' for '-' when <systemd>) or a static pod's 32-hex config hash. */
static bool parse_uid(const char *s, size_t n, bool systemd, char *out)
{
	char sep = systemd ? '_' : '-';

	if (n == 32) {
		for (size_t i = 0; i < n; i++)
			if (!is_hex(s[i]))
				return false;
		memcpy(out, s, n);
		out[n] = '\0';
		return true;
	}
	if (n != 36)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != sep : !is_hex(s[i]))
			return false;
		out[i] = dash ? '-' : s[i];
	}
	out[n] = '\0';
	return true;
}

static bool comp_eq(const char *c, size_t n, const char *lit)
{
	return strlen(lit) == n && !memcmp(c, lit, n);
}

static bool has_prefix(const char *c, size_t n, const char *lit, size_t *skip)
{
	size_t l = strlen(lit);

	if (n < l || memcmp(c, lit, l))
		return false;
	*skip = l;
	return true;
}

/* Extracts a runtime container id from a container cgroup name:
 * "<64 hex>" (cgroupfs) or "<runtime>-<hex>.scope" (systemd). */
static void parse_container(const char *c, size_t n, char *out, size_t cap)
{
	const char *id = c;
	size_t len = n;

	if (n > 6 && !memcmp(c + n - 6, ".scope", 6)) {
		const char *dash = memrchr(c, '-', n - 6);

		if (dash) {
			id = dash + 1;
			len = c + n - 6 - id;
		} else {
			len = n - 6;
		}
	}
	for (size_t i = 0; i < len; i++)
		if (!is_hex(id[i])) {
			out[0] = '\0';
			return;
		}
	if (len >= cap)
		len = cap - 1;
	memcpy(out, id, len);
	out[len] = '\0';
}

static int qos_of(const char *s, size_t n, enum mg_pods_qos *q)
{
	if (comp_eq(s, n, "burstable"))
		*q = MG_PODS_QOS_BURSTABLE;
	else if (comp_eq(s, n, "besteffort"))
		*q = MG_PODS_QOS_BESTEFFORT;
	else
		return -1;
	return 0;
}

/* Tries component <c>[0..<n>) as a pod directory whose parent is <p>[0..<pn>)
 * and grandparent <g>[0..<gn>). Returns 1 (pod, <out> filled), 0 (not a
 * pod dir), -EINVAL (a malformed pod dir). */
static int try_pod(const char *g, size_t gn, const char *p, size_t pn, const char *c, size_t n,
		   struct mg_pods_cgpath *out)
{
	enum mg_pods_qos q;
	size_t skip;

	/* cgroupfs: kubepods/pod<uid> or kubepods/<qos>/pod<uid> */
	if (has_prefix(c, n, "pod", &skip)) {
		if (comp_eq(p, pn, "kubepods"))
			q = MG_PODS_QOS_GUARANTEED;
		else if (!qos_of(p, pn, &q) && comp_eq(g, gn, "kubepods"))
			;
		else
			return 0;
		if (!parse_uid(c + skip, n - skip, false, out->uid))
			return -EINVAL;
		out->qos = q;
		out->systemd = false;
		return 1;
	}

	/* systemd: kubepods.slice/kubepods-pod<uid_>.slice or
	 * kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice */
	if (n > 6 && !memcmp(c + n - 6, ".slice", 6) && has_prefix(c, n, "kubepods-", &skip)) {
		const char *rest = c + skip;
		size_t rn = n - skip - 6;

		if (has_prefix(rest, rn, "burstable-", &skip))
			q = MG_PODS_QOS_BURSTABLE;
		else if (has_prefix(rest, rn, "besteffort-", &skip))
			q = MG_PODS_QOS_BESTEFFORT;
		else {
			q = MG_PODS_QOS_GUARANTEED;
			skip = 0;
		}
		rest += skip;
		rn -= skip;
		if (!has_prefix(rest, rn, "pod", &skip))
			return 0; /* a QoS slice itself */
		if (q == MG_PODS_QOS_GUARANTEED ? !comp_eq(p, pn, "kubepods.slice")
						: !((q == MG_PODS_QOS_BURSTABLE &&
						     comp_eq(p, pn, "kubepods-burstable.slice")) ||
						    (q == MG_PODS_QOS_BESTEFFORT &&
						     comp_eq(p, pn, "kubepods-besteffort.slice"))))
			return -EINVAL;
		if (!parse_uid(rest + skip, rn - skip, true, out->uid))
			return -EINVAL;
		out->qos = q;
		out->systemd = true;
		return 1;
	}
	return 0;
}

int mg_pods_parse_cgroup_path(const char *path, struct mg_pods_cgpath *out)
{
	const char *comp[64];
	size_t len[64], n = 0;
	const char *s = path;

	memset(out, 0, sizeof(*out));
	if (!path)
		return -EINVAL;
	while (*s) {
		const char *e;

		while (*s == '/')
			s++;
		if (!*s)
			break;
		e = strchrnul(s, '/');
		if (n == 64)
			return -EINVAL;
		if ((e - s == 1 && s[0] == '.') || (e - s == 2 && s[0] == '.' && s[1] == '.'))
			return -EINVAL;
		comp[n] = s;
		len[n++] = e - s;
		s = e;
	}

	for (size_t i = 1; i < n; i++) {
		const char *g = i >= 2 ? comp[i - 2] : "";
		size_t gn = i >= 2 ? len[i - 2] : 0;
		int rc = try_pod(g, gn, comp[i - 1], len[i - 1], comp[i], len[i], out);

		if (rc < 0)
			return rc;
		if (rc == 0)
			continue;
		out->pod_prefix_len = comp[i] + len[i] - path;
		if (i + 1 < n) {
			out->kind = MG_PODS_CG_CONTAINER;
			parse_container(comp[i + 1], len[i + 1], out->container_id,
					sizeof(out->container_id));
		} else {
			out->kind = MG_PODS_CG_POD;
		}
		return 0;
	}
	out->kind = MG_PODS_CG_NONE;
	return 0;
}

/* ---- selector ---- */

static void set_err(char *errbuf, size_t errlen, const char *fmt, const char *what)
{
	if (errbuf && errlen)
		snprintf(errbuf, errlen, fmt, what);
}

int mg_pods_selector_parse(struct mg_pods_selector *sel, const char *labels, const char *namespaces,
			   char *errbuf, size_t errlen)
{
	char buf[2048], *save = NULL, *tok;

	memset(sel, 0, sizeof(*sel));
	if (labels && *labels) {
		if (strlen(labels) >= sizeof(buf)) {
			set_err(errbuf, errlen, "label selector too long: %.40s", labels);
			return -EINVAL;
		}
		strcpy(buf, labels);
		for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			char *op, *k = tok, *v = NULL, orig[256];
			int kind;

			snprintf(orig, sizeof(orig), "%s", tok);
			while (*k == ' ')
				k++;
			if (sel->n == MG_PODS_SEL_MAX) {
				set_err(errbuf, errlen, "too many label requirements in %s",
					labels);
				return -EINVAL;
			}
			if ((op = strstr(k, "!="))) {
				kind = MG_SEL_NE;
				*op = '\0';
				v = op + 2;
			} else if ((op = strstr(k, "=="))) {
				kind = MG_SEL_EQ;
				*op = '\0';
				v = op + 2;
			} else if ((op = strchr(k, '='))) {
				kind = MG_SEL_EQ;
				*op = '\0';
				v = op + 1;
			} else if (*k == '!') {
				kind = MG_SEL_NOT_EXISTS;
				k++;
			} else {
				kind = MG_SEL_EXISTS;
			}
			if (!*k || strlen(k) >= sizeof(sel->req[0].key) ||
			    (v && strlen(v) >= sizeof(sel->req[0].value)) || strpbrk(k, " !=") ||
			    (v && strpbrk(v, " !=,"))) {
				set_err(errbuf, errlen, "bad label selector requirement: %s", orig);
				return -EINVAL;
			}
			strcpy(sel->req[sel->n].key, k);
			if (v)
				strcpy(sel->req[sel->n].value, v);
			sel->req[sel->n].op = kind;
			sel->n++;
		}
	}
	if (namespaces && *namespaces) {
		if (strlen(namespaces) >= sizeof(buf)) {
			set_err(errbuf, errlen, "namespace list too long: %.40s", namespaces);
			return -EINVAL;
		}
		strcpy(buf, namespaces);
		save = NULL;
		for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if (sel->n_namespaces == MG_PODS_SEL_MAX || strlen(tok) >= 64 ||
			    strpbrk(tok, " /")) {
				set_err(errbuf, errlen, "bad namespace in selector: %s", tok);
				return -EINVAL;
			}
			strcpy(sel->namespaces[sel->n_namespaces++], tok);
		}
	}
	return 0;
}

bool mg_pods_selector_match(const struct mg_pods_selector *sel, const char *ns, json_t *labels)
{
	if (sel->n_namespaces) {
		bool in = false;

		for (size_t i = 0; i < sel->n_namespaces && !in; i++)
			in = ns && !strcmp(ns, sel->namespaces[i]);
		if (!in)
			return false;
	}
	for (size_t i = 0; i < sel->n; i++) {
		json_t *v =
			json_is_object(labels) ? json_object_get(labels, sel->req[i].key) : NULL;
		const char *s = json_string_value(v);

		switch (sel->req[i].op) {
		case MG_SEL_EQ:
			if (!s || strcmp(s, sel->req[i].value))
				return false;
			break;
		case MG_SEL_NE:
			if (s && !strcmp(s, sel->req[i].value))
				return false;
			break;
		case MG_SEL_EXISTS:
			if (!v)
				return false;
			break;
		case MG_SEL_NOT_EXISTS:
			if (v)
				return false;
			break;
		}
	}
	return true;
}

/* ---- selector generation ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

uint32_t mg_pods_selector_gen(const struct mg_pods_selector *sel)
{
	static const char *const ops[] = {"=", "!=", "", "!"};
	char reqs[MG_PODS_SEL_MAX][400], *rp[MG_PODS_SEL_MAX], *np[MG_PODS_SEL_MAX];
	uint32_t h = 2166136261u;
	size_t i;

	/* Canonical form: requirements and namespaces sorted, so the same
	 * selector written in another order is the same generation. */
	for (i = 0; i < sel->n; i++) {
		if (sel->req[i].op == MG_SEL_NOT_EXISTS)
			snprintf(reqs[i], sizeof(reqs[i]), "!%s", sel->req[i].key);
		else
			snprintf(reqs[i], sizeof(reqs[i]), "%s%s%s", sel->req[i].key,
				 ops[sel->req[i].op], sel->req[i].value);
		rp[i] = reqs[i];
	}
	qsort(rp, sel->n, sizeof(rp[0]), cmp_str);
	for (i = 0; i < sel->n_namespaces; i++)
		np[i] = (char *)sel->namespaces[i];
	qsort(np, sel->n_namespaces, sizeof(np[0]), cmp_str);
	for (i = 0; i < sel->n + sel->n_namespaces; i++) {
		const char *s = i < sel->n ? rp[i] : np[i - sel->n];

		/* the separator keeps ("ab","c") and ("a","bc") apart; 0x01
		 * between the two lists keeps a label and a namespace apart */
		for (; *s; s++)
			h = (h ^ (uint8_t)*s) * 16777619u;
		h = (h ^ (i + 1 == sel->n ? 0x01u : 0x00u)) * 16777619u;
	}
	return h ? h : 1; /* 0 means "never selected" in the map */
}

/* ---- the table ---- */

/* A pod-level or container cgroup found in the tree. */
struct cg_entry {
	uint64_t ino;
	bool pod_level;
	char uid[40];
	char container_id[80];
	char *dir; /* pod-level only: the directory, for cutting sockets */
};

/* A pod from the watch. */
struct pod_meta {
	char uid[40];
	char mirror_of[40]; /* static pod: the config hash its cgroup is named by */
	char namespace[64];
	char name[254];
	char service_account[254];
	char node[254];
	json_t *labels;
	bool matches; /* the selector matches its namespace and labels now */
};

/* What `intercept` holds for one pod cgroup, as this module wrote it (or a
 * predecessor left it). */
struct pod_ent {
	uint64_t ino;
	struct mg_abi_pod v;
	bool sticky_logged; /* "labels no longer match, still selected" said once */
	bool owned;	    /* a pod cgroup's: this module keeps or releases it */
};

struct cut;

struct mg_pods;
static void free_cutq(struct mg_pods *p);
static void *cut_main(void *arg);

struct mg_pods {
	pthread_mutex_t mu;
	char *root;
	char *node;
	struct mg_pods_selector sel;
	uint32_t gen;
	mg_pods_set_cb *set_state;
	mg_pods_selected_cb *on_selected;
	void *cb_data;
	int ifd;

	struct cg_entry *cg;
	size_t n_cg, cap_cg;
	struct pod_meta *meta;
	size_t n_meta, cap_meta;
	struct pod_ent *ent;
	size_t n_ent, cap_ent;
	char self_uid[40]; /* the daemon's own pod (a DaemonSet pod), or "" */
	uint64_t *dirs;	   /* every directory inode under the root, sorted */
	size_t n_dirs;

	/* the cutter thread (opts.async_cuts) and its queue */
	pthread_mutex_t cut_mu;
	pthread_cond_t cut_cond;
	struct cut *cutq;
	size_t n_cutq, cap_cutq;
	pthread_t cut_thread;
	bool cut_started, cut_stop;

	bool synced;
	pthread_t thread;
	bool thread_started;
	volatile bool stop;
	struct mg_kube *kube;
};

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	void *n;
	size_t c;

	if (need <= *cap)
		return 0;
	c = *cap ? *cap * 2 : 64;
	while (c < need)
		c *= 2;
	n = realloc(*arr, c * elem);
	if (!n)
		return -ENOMEM;
	*arr = n;
	*cap = c;
	return 0;
}

/* Copies the UID of the pod this process runs in (from its cgroup v2
 * path) into <uid>, or "" outside a pod. */
static void self_pod_uid(char *uid)
{
	struct mg_pods_cgpath cp;
	char line[1024], *nl;
	FILE *f = fopen("/proc/self/cgroup", "re");

	uid[0] = '\0';
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3))
			continue;
		if ((nl = strchr(line, '\n')))
			*nl = '\0';
		if (!mg_pods_parse_cgroup_path(line + 3, &cp) && cp.kind != MG_PODS_CG_NONE)
			strcpy(uid, cp.uid);
		break;
	}
	if (f)
		fclose(f);
}

int mg_pods_new(struct mg_pods **out, const struct mg_pods_opts *o)
{
	struct mg_pods *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->mu, NULL);
	pthread_mutex_init(&p->cut_mu, NULL);
	pthread_cond_init(&p->cut_cond, NULL);
	p->root = strdup(o->cgroup_root ? o->cgroup_root : "");
	p->node = strdup(o->node_name ? o->node_name : "");
	p->sel = o->selector;
	p->gen = mg_pods_selector_gen(&o->selector);
	p->set_state = o->set_state;
	p->on_selected = o->on_selected;
	p->cb_data = o->cb_data;
	p->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	self_pod_uid(p->self_uid);
	if (o->async_cuts && o->on_selected && !pthread_create(&p->cut_thread, NULL, cut_main, p))
		p->cut_started = true;
	if (!p->root || !p->node || p->ifd < 0) {
		int rc = p->ifd < 0 ? -errno : -ENOMEM;

		mg_pods_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

uint32_t mg_pods_gen(const struct mg_pods *p)
{
	return p->gen;
}

int mg_pods_preset(struct mg_pods *p, const uint64_t *ids, const struct mg_abi_pod *vals, size_t n)
{
	pthread_mutex_lock(&p->mu);
	if (grow((void **)&p->ent, &p->cap_ent, n, sizeof(*p->ent))) {
		pthread_mutex_unlock(&p->mu);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		p->ent[i] = (struct pod_ent){.ino = ids[i], .v = vals[i]};
	p->n_ent = n;
	pthread_mutex_unlock(&p->mu);
	return 0;
}

static void free_cg(struct cg_entry *cg, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(cg[i].dir);
	free(cg);
}

void mg_pods_free(struct mg_pods *p)
{
	if (!p)
		return;
	if (p->thread_started) {
		p->stop = true;
		pthread_join(p->thread, NULL);
	}
	if (p->cut_started) {
		pthread_mutex_lock(&p->cut_mu);
		p->cut_stop = true;
		pthread_cond_signal(&p->cut_cond);
		pthread_mutex_unlock(&p->cut_mu);
		pthread_join(p->cut_thread, NULL);
	}
	free_cutq(p);
	pthread_mutex_destroy(&p->cut_mu);
	pthread_cond_destroy(&p->cut_cond);
	for (size_t i = 0; i < p->n_meta; i++)
		json_decref(p->meta[i].labels);
	free(p->meta);
	free_cg(p->cg, p->n_cg);
	free(p->ent);
	free(p->dirs);
	free(p->root);
	free(p->node);
	if (p->ifd >= 0)
		close(p->ifd);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

static struct pod_meta *meta_find(struct mg_pods *p, const char *uid)
{
	for (size_t i = 0; i < p->n_meta; i++)
		if (!strcmp(p->meta[i].uid, uid))
			return &p->meta[i];
	return NULL;
}

/* The pod whose cgroup is named by <uid>: the pod with that UID, or for a
 * static pod (cgroup named by its config hash) its mirror pod. */
static struct pod_meta *meta_for_cgroup(struct mg_pods *p, const char *uid)
{
	struct pod_meta *m = meta_find(p, uid);

	for (size_t i = 0; !m && i < p->n_meta; i++)
		if (p->meta[i].mirror_of[0] && !strcmp(p->meta[i].mirror_of, uid))
			m = &p->meta[i];
	return m;
}

static struct cg_entry *cg_find(struct mg_pods *p, uint64_t ino)
{
	for (size_t i = 0; i < p->n_cg; i++)
		if (p->cg[i].ino == ino)
			return &p->cg[i];
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static struct pod_ent *ent_find(struct mg_pods *p, uint64_t ino)
{
	for (size_t i = 0; i < p->n_ent; i++)
		if (p->ent[i].ino == ino)
			return &p->ent[i];
	return NULL;
}

static const char *state_name(uint32_t s)
{
	return s == MG_POD_SELECTED ? "selected" : s == MG_POD_PENDING ? "pending" : "pass";
}

/* A pod cgroup that just became selected: its already-open API connections
 * are cut once the lock is dropped (reconcile collects them). */
struct cut {
	uint64_t ino;
	char *dir;
	struct mg_pod_ident id;
};

struct cuts {
	struct cut *v;
	size_t n, cap;
};

/* Logs one state change of pod cgroup <e> (pod <m>, NULL when unknown). */
static void log_state(const struct cg_entry *e, const struct pod_meta *m, uint32_t from, bool had,
		      uint32_t to, const char *why)
{
	json_t *j = json_pack("{s:s,s:I,s:s,s:s,s:s,s:s}", "event", "pod_state", "pod_cgroup_id",
			      (json_int_t)e->ino, "uid", e->uid, "from",
			      had ? state_name(from) : "none", "state", state_name(to), "why", why);

	if (m) {
		json_object_set_new(j, "namespace", json_string(m->namespace));
		json_object_set_new(j, "name", json_string(m->name));
	}
	mg_log_json(to == MG_POD_PENDING && had && from == MG_POD_SELECTED ? "warn" : "info", j);
}

/* Decides the state of the pod cgroup <e> (its entry <ent>, NULL if none)
 * and says why. The rules (pods.h): selection is sticky per pod while the
 * pod exists and the selector generation is the same; unknown metadata is
 * pending; a predecessor's entry is kept as it is until the first list. */
static uint32_t decide(struct mg_pods *p, const struct cg_entry *e, struct pod_ent *ent,
		       struct pod_meta *m, const char **why)
{
	/* The daemon's own pod: its pod list is what classifies every pod, so
	 * it is never pending; and never selected, which would send its own
	 * upstream connections back to itself. */
	if (p->self_uid[0] && !strcmp(e->uid, p->self_uid)) {
		*why = "the daemon's own pod";
		return MG_POD_PASS;
	}
	if (!p->synced && ent) {
		*why = "kept until the first pod list";
		return ent->v.state;
	}
	if (!m) {
		*why = p->synced ? "no pod with this UID in the API (not yet, or deleted)"
				 : "pod metadata not listed yet";
		return MG_POD_PENDING;
	}
	if (ent && ent->v.state == MG_POD_SELECTED && ent->v.sel_gen == p->gen) {
		if (!m->matches && !ent->sticky_logged) {
			ent->sticky_logged = true;
			mg_log_json(
				"warn",
				json_pack("{s:s,s:s,s:s,s:s,s:s}", "event", "selection_sticky",
					  "namespace", m->namespace, "name", m->name, "uid", e->uid,
					  "why",
					  "labels no longer match the selector; the pod stays "
					  "selected until it is deleted or the selector changes"));
		}
		*why = "selected (sticky)";
		return MG_POD_SELECTED;
	}
	if (m->matches) {
		*why = "matches the selector";
		return MG_POD_SELECTED;
	}
	*why = ent && ent->v.state == MG_POD_SELECTED ? "deselected: the selector changed"
						      : "does not match the selector";
	return MG_POD_PASS;
}

/* Brings `intercept` in line with (cgroups x metadata x selector), one
 * entry per pod cgroup; collects the pods that became selected into <cuts>.
 * Lock held. A failed map write keeps the old entry, retried next time. */
static void reconcile(struct mg_pods *p, struct cuts *cuts)
{
	size_t i;

	for (i = 0; i < p->n_cg; i++) {
		struct cg_entry *e = &p->cg[i];
		struct pod_ent *ent;
		struct pod_meta *m;
		struct mg_abi_pod v = {0};
		const char *why;
		bool had;

		if (!e->pod_level)
			continue;
		ent = ent_find(p, e->ino);
		if (ent)
			ent->owned = true;
		m = meta_for_cgroup(p, e->uid);
		v.state = decide(p, e, ent, m, &why);
		v.sel_gen = v.state == MG_POD_SELECTED
				    ? (ent && !p->synced ? ent->v.sel_gen : p->gen)
				    : 0;
		if (ent && ent->v.state == v.state && ent->v.sel_gen == v.sel_gen)
			continue;
		if (!ent) {
			if (grow((void **)&p->ent, &p->cap_ent, p->n_ent + 1, sizeof(*p->ent)))
				continue;
			ent = &p->ent[p->n_ent];
			*ent = (struct pod_ent){.ino = e->ino};
			had = false;
		} else {
			had = true;
		}
		if (p->set_state && p->set_state(p->cb_data, e->ino, &v))
			continue;
		if (!had)
			p->n_ent++;
		ent->owned = true;
		if (!had || ent->v.state != v.state)
			log_state(e, m, ent->v.state, had, v.state, why);
		/* Newly selected: connections it opened before are cut. */
		if (v.state == MG_POD_SELECTED && (!had || ent->v.state != MG_POD_SELECTED) &&
		    !grow((void **)&cuts->v, &cuts->cap, cuts->n + 1, sizeof(*cuts->v))) {
			struct cut *c = &cuts->v[cuts->n];

			memset(c, 0, sizeof(*c));
			c->ino = e->ino;
			c->dir = e->dir ? strdup(e->dir) : NULL;
			snprintf(c->id.uid, sizeof(c->id.uid), "%s", e->uid);
			if (m) {
				c->id.known = true;
				strcpy(c->id.namespace, m->namespace);
				strcpy(c->id.name, m->name);
				strcpy(c->id.service_account, m->service_account);
			}
			cuts->n++;
		}
		ent->v = v;
		if (v.state != MG_POD_SELECTED)
			ent->sticky_logged = false;
	}
	/* Entries whose cgroup is gone (a predecessor's included, once the
	 * tree and the first list are known): the pod left the node. An entry
	 * of a directory that is not a pod's (the loader's PASS entry for the
	 * daemon's own cgroup) is someone else's: left alone. */
	if (!p->synced)
		return;
	for (i = 0; i < p->n_ent;) {
		struct cg_entry *e = cg_find(p, p->ent[i].ino);

		if ((e && e->pod_level) ||
		    (!p->ent[i].owned &&
		     bsearch(&p->ent[i].ino, p->dirs, p->n_dirs, sizeof(*p->dirs), cmp_u64))) {
			i++;
			continue;
		}
		if (p->set_state && p->set_state(p->cb_data, p->ent[i].ino, NULL)) {
			i++;
			continue;
		}
		mg_log_json("info",
			    json_pack("{s:s,s:I,s:s}", "event", "pod_state", "pod_cgroup_id",
				      (json_int_t)p->ent[i].ino, "state", "gone"));
		p->ent[i] = p->ent[--p->n_ent];
	}
}

/* Cuts still queued at exit are dropped: the daemon is stopping. */
static void free_cutq(struct mg_pods *p)
{
	for (size_t i = 0; i < p->n_cutq; i++)
		free(p->cutq[i].dir);
	free(p->cutq);
}

static void do_cuts(struct mg_pods *p, struct cut *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p->on_selected)
			p->on_selected(p->cb_data, v[i].ino, v[i].dir, &v[i].id);
		free(v[i].dir);
	}
}

/* Runs the cuts reconcile collected, without the table lock: on the cutter
 * thread when there is one (a rescan on inotify runs on the event loop, and
 * a cut walks the pod's tasks and network namespaces), else here. Late is
 * harmless: the pod is selected in the map already, so new connects go to
 * the proxy and the egress program drops what the old ones send. */
static void run_cuts(struct mg_pods *p, struct cuts *cuts)
{
	if (p->cut_started && cuts->n) {
		pthread_mutex_lock(&p->cut_mu);
		if (!grow((void **)&p->cutq, &p->cap_cutq, p->n_cutq + cuts->n, sizeof(*p->cutq))) {
			memcpy(p->cutq + p->n_cutq, cuts->v, cuts->n * sizeof(*cuts->v));
			p->n_cutq += cuts->n;
			cuts->n = 0;
			pthread_cond_signal(&p->cut_cond);
		}
		pthread_mutex_unlock(&p->cut_mu);
	}
	do_cuts(p, cuts->v, cuts->n);
	free(cuts->v);
	cuts->v = NULL;
	cuts->n = cuts->cap = 0;
}

static void *cut_main(void *arg)
{
	struct mg_pods *p = arg;

	pthread_mutex_lock(&p->cut_mu);
	while (!p->cut_stop) {
		struct cut *v;
		size_t n;

		if (!p->n_cutq) {
			pthread_cond_wait(&p->cut_cond, &p->cut_mu);
			continue;
		}
		v = p->cutq;
		n = p->n_cutq;
		p->cutq = NULL;
		p->n_cutq = p->cap_cutq = 0;
		pthread_mutex_unlock(&p->cut_mu);
		do_cuts(p, v, n);
		free(v);
		pthread_mutex_lock(&p->cut_mu);
	}
	pthread_mutex_unlock(&p->cut_mu);
	return NULL;
}

struct scan {
	struct cg_entry *cg;
	size_t n, cap;
	uint64_t *dirs;
	size_t n_dirs, cap_dirs;
};

/* Walks <dir> (depth <depth>) adding every pod and container cgroup and
 * every directory inode to <sc>, and an inotify watch on every directory. */
static void scan_dir(struct mg_pods *p, const char *dir, int depth, struct scan *sc)
{
	struct dirent *de;
	DIR *d;

	inotify_add_watch(p->ifd, dir,
			  IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_ONLYDIR);
	if (depth >= SCAN_MAX_DEPTH)
		return;
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[PATH_MAX];
		struct mg_pods_cgpath cp;
		struct stat st;

		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
			continue;
		if (stat(path, &st))
			continue;
		if (!grow((void **)&sc->dirs, &sc->cap_dirs, sc->n_dirs + 1, sizeof(*sc->dirs)))
			sc->dirs[sc->n_dirs++] = st.st_ino;
		if (!mg_pods_parse_cgroup_path(path, &cp) && cp.kind != MG_PODS_CG_NONE &&
		    !grow((void **)&sc->cg, &sc->cap, sc->n + 1, sizeof(*sc->cg))) {
			struct cg_entry *e = &sc->cg[sc->n];

			memset(e, 0, sizeof(*e));
			e->ino = st.st_ino;
			e->pod_level = cp.kind == MG_PODS_CG_POD;
			strcpy(e->uid, cp.uid);
			strcpy(e->container_id, cp.container_id);
			e->dir = e->pod_level ? strdup(path) : NULL;
			if (!e->pod_level || e->dir)
				sc->n++;
		}
		scan_dir(p, path, depth + 1, sc);
	}
	closedir(d);
}

int mg_pods_scan(struct mg_pods *p)
{
	struct scan sc = {0};
	struct cuts cuts = {0};

	scan_dir(p, p->root, 0, &sc);
	if (sc.n_dirs)
		qsort(sc.dirs, sc.n_dirs, sizeof(*sc.dirs), cmp_u64);
	pthread_mutex_lock(&p->mu);
	free_cg(p->cg, p->n_cg);
	p->cg = sc.cg;
	p->n_cg = sc.n;
	p->cap_cg = sc.cap;
	free(p->dirs);
	p->dirs = sc.dirs;
	p->n_dirs = sc.n_dirs;
	reconcile(p, &cuts);
	pthread_mutex_unlock(&p->mu);
	run_cuts(p, &cuts);
	return 0;
}

int mg_pods_inotify_fd(const struct mg_pods *p)
{
	return p->ifd;
}

int mg_pods_on_inotify(struct mg_pods *p)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool any = false;
	ssize_t r;

	/* The tree is small (a node's pods): any change triggers a rescan,
	 * which also places watches on new directories. */
	while ((r = read(p->ifd, buf, sizeof(buf))) > 0)
		any = true;
	if (r < 0 && errno != EAGAIN)
		return -errno;
	return any ? mg_pods_scan(p) : 0;
}

/* Copies a JSON string member into a fixed buffer ("" when absent). */
static void copy_str(char *dst, size_t cap, json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	snprintf(dst, cap, "%s", s ? s : "");
}

/* Adds or updates <pod>'s metadata. Lock held. */
static int upsert(struct mg_pods *p, json_t *pod)
{
	json_t *md = json_object_get(pod, "metadata"), *spec = json_object_get(pod, "spec");
	const char *uid = json_string_value(json_object_get(md, "uid"));
	struct pod_meta *m;

	if (!uid || strlen(uid) >= sizeof(m->uid))
		return -EINVAL;
	m = meta_find(p, uid);
	if (!m) {
		if (grow((void **)&p->meta, &p->cap_meta, p->n_meta + 1, sizeof(*p->meta)))
			return -ENOMEM;
		m = &p->meta[p->n_meta++];
		memset(m, 0, sizeof(*m));
		strcpy(m->uid, uid);
	}
	copy_str(m->namespace, sizeof(m->namespace), md, "namespace");
	copy_str(m->name, sizeof(m->name), md, "name");
	copy_str(m->mirror_of, sizeof(m->mirror_of), json_object_get(md, "annotations"),
		 "kubernetes.io/config.mirror");
	copy_str(m->service_account, sizeof(m->service_account), spec, "serviceAccountName");
	if (!m->service_account[0])
		strcpy(m->service_account, "default");
	copy_str(m->node, sizeof(m->node), spec, "nodeName");
	json_decref(m->labels);
	m->labels = json_deep_copy(json_object_get(md, "labels"));
	m->matches = mg_pods_selector_match(&p->sel, m->namespace, m->labels);
	return 0;
}

static void remove_meta(struct mg_pods *p, const char *uid)
{
	struct pod_meta *m = meta_find(p, uid);

	if (!m)
		return;
	json_decref(m->labels);
	*m = p->meta[--p->n_meta];
}

int mg_pods_apply_list(struct mg_pods *p, json_t *podlist)
{
	json_t *items = json_object_get(podlist, "items"), *it;
	struct cuts cuts = {0};
	size_t i;

	if (!json_is_array(items))
		return -EINVAL;
	pthread_mutex_lock(&p->mu);
	for (i = 0; i < p->n_meta; i++)
		json_decref(p->meta[i].labels);
	p->n_meta = 0;
	json_array_foreach(items, i, it) upsert(p, it);
	p->synced = true;
	reconcile(p, &cuts);
	pthread_mutex_unlock(&p->mu);
	run_cuts(p, &cuts);
	return 0;
}

int mg_pods_set_selector(struct mg_pods *p, const struct mg_pods_selector *sel)
{
	struct cuts cuts = {0};
	uint32_t gen = mg_pods_selector_gen(sel);
	bool same;

	pthread_mutex_lock(&p->mu);
	same = gen == p->gen;
	if (!same) {
		p->sel = *sel;
		p->gen = gen;
		for (size_t i = 0; i < p->n_meta; i++)
			p->meta[i].matches = mg_pods_selector_match(&p->sel, p->meta[i].namespace,
								    p->meta[i].labels);
		reconcile(p, &cuts);
	}
	pthread_mutex_unlock(&p->mu);
	run_cuts(p, &cuts);
	return same ? 0 : 1;
}

int mg_pods_apply_event(struct mg_pods *p, const char *type, json_t *pod)
{
	const char *uid =
		json_string_value(json_object_get(json_object_get(pod, "metadata"), "uid"));
	struct cuts cuts = {0};
	int rc = 0;

	if (!type || !uid)
		return -EINVAL;
	pthread_mutex_lock(&p->mu);
	if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED"))
		rc = upsert(p, pod);
	else if (!strcmp(type, "DELETED"))
		remove_meta(p, uid);
	else
		rc = -EINVAL;
	reconcile(p, &cuts);
	pthread_mutex_unlock(&p->mu);
	run_cuts(p, &cuts);
	return rc;
}

int mg_pods_lookup(struct mg_pods *p, uint64_t pod_cgroup_id, uint64_t cgroup_id,
		   struct mg_pod_ident *out)
{
	struct cg_entry *e, *c;
	struct pod_meta *m;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&p->mu);
	e = cg_find(p, pod_cgroup_id);
	if (!e) {
		pthread_mutex_unlock(&p->mu);
		return -ENOENT;
	}
	strcpy(out->uid, e->uid);
	c = cg_find(p, cgroup_id);
	if (c && !strcmp(c->uid, e->uid))
		strcpy(out->container_id, c->container_id);
	m = meta_for_cgroup(p, e->uid);
	if (m) {
		out->known = true;
		strcpy(out->namespace, m->namespace);
		strcpy(out->name, m->name);
		strcpy(out->service_account, m->service_account);
		strcpy(out->node, m->node);
		out->labels = json_incref(m->labels);
	}
	pthread_mutex_unlock(&p->mu);
	return 0;
}

void mg_pod_ident_release(struct mg_pod_ident *id)
{
	json_decref(id->labels);
	id->labels = NULL;
}

void mg_pods_counts(struct mg_pods *p, struct mg_pods_counts *c)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_lock(&p->mu);
	for (size_t i = 0; i < p->n_ent; i++) {
		if (!p->ent[i].owned)
			continue;
		if (p->ent[i].v.state == MG_POD_SELECTED)
			c->selected++;
		else if (p->ent[i].v.state == MG_POD_PENDING)
			c->pending++;
		else
			c->pass++;
	}
	pthread_mutex_unlock(&p->mu);
}

size_t mg_pods_intercepted(struct mg_pods *p)
{
	struct mg_pods_counts c;

	mg_pods_counts(p, &c);
	return c.selected;
}

size_t mg_pods_list_selected(struct mg_pods *p, struct mg_pod_ident *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&p->mu);
	for (size_t i = 0; i < p->n_ent && n < max; i++) {
		struct cg_entry *e = cg_find(p, p->ent[i].ino);
		struct pod_meta *m = e ? meta_for_cgroup(p, e->uid) : NULL;

		if (p->ent[i].v.state != MG_POD_SELECTED || !m)
			continue;
		memset(&out[n], 0, sizeof(out[n]));
		out[n].known = true;
		strcpy(out[n].uid, e->uid);
		strcpy(out[n].namespace, m->namespace);
		strcpy(out[n].name, m->name);
		strcpy(out[n].service_account, m->service_account);
		strcpy(out[n].node, m->node);
		n++;
	}
	pthread_mutex_unlock(&p->mu);
	return n;
}

bool mg_pods_synced(struct mg_pods *p)
{
	bool s;

	pthread_mutex_lock(&p->mu);
	s = p->synced;
	pthread_mutex_unlock(&p->mu);
	return s;
}

/* ---- the watch thread ---- */

struct watch_ctx {
	struct mg_pods *p;
	char rv[64];
	bool gone; /* 410: resourceVersion too old, relist */
};

static int on_event_line(void *data, const char *line, size_t len)
{
	struct watch_ctx *w = data;
	json_t *ev = json_loadb(line, len, 0, NULL), *obj;
	const char *type, *rv;

	if (!ev)
		return 0;
	type = json_string_value(json_object_get(ev, "type"));
	obj = json_object_get(ev, "object");
	rv = json_string_value(
		json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
	if (type && !strcmp(type, "ERROR")) {
		w->gone = json_integer_value(json_object_get(obj, "code")) == 410;
		json_decref(ev);
		return 1;
	}
	if (type && strcmp(type, "BOOKMARK"))
		mg_pods_apply_event(w->p, type, obj);
	if (rv && strlen(rv) < sizeof(w->rv))
		strcpy(w->rv, rv);
	json_decref(ev);
	return 0;
}

/* Percent-encodes the node name for a query (node names are DNS labels,
 * so this is belt and braces). */
static void url_escape(char *out, size_t cap, const char *s)
{
	size_t o = 0;

	for (; *s && o + 4 < cap; s++) {
		unsigned char c = *s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_')
			out[o++] = c;
		else
			o += snprintf(out + o, cap - o, "%%%02X", c);
	}
	out[o] = '\0';
}

static void sleep_ms(struct mg_pods *p, unsigned ms)
{
	for (unsigned t = 0; t < ms && !p->stop; t += 100) {
		struct timespec ts = {0, 100 * 1000000L};

		nanosleep(&ts, NULL);
	}
}

static void *watch_main(void *arg)
{
	struct mg_pods *p = arg;
	struct watch_ctx w = {.p = p};
	char node[600], path[1024], err[512];
	unsigned backoff = 500, max_backoff;

	url_escape(node, sizeof(node), p->node);
	while (!p->stop) {
		json_t *list = NULL;
		const char *rv;
		long status;

		snprintf(path, sizeof(path), "/api/v1/pods?fieldSelector=spec.nodeName%%3D%s",
			 node);
		if (mg_kube_get_json(p->kube, path, &list, &status, err, sizeof(err))) {
			mg_log_json("warn", json_pack("{s:s,s:s}", "event", "pod_list_failed",
						      "error", err));
			sleep_ms(p, backoff);
			/* Before the first list every pod here is pending (its API
			 * connects refused): retry sooner until then. */
			max_backoff = mg_pods_synced(p) ? 30000 : 2000;
			backoff = backoff * 2 < max_backoff ? backoff * 2 : max_backoff;
			continue;
		}
		rv = json_string_value(
			json_object_get(json_object_get(list, "metadata"), "resourceVersion"));
		snprintf(w.rv, sizeof(w.rv), "%s", rv ? rv : "");
		mg_pods_apply_list(p, list);
		json_decref(list);
		backoff = 500;

		/* Watch until the server ends it (timeoutSeconds), then resume
		 * from the last resourceVersion; relist on 410 or errors. */
		while (!p->stop) {
			w.gone = false;
			snprintf(path, sizeof(path),
				 "/api/v1/pods?fieldSelector=spec.nodeName%%3D%s&watch=1"
				 "&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=%s",
				 node, w.rv);
			if (mg_kube_stream_lines(p->kube, path, on_event_line, &w, &p->stop,
						 &status, err, sizeof(err)) ||
			    w.gone) {
				if (!p->stop && !w.gone)
					mg_log_json("warn",
						    json_pack("{s:s,s:s}", "event",
							      "pod_watch_ended", "error", err));
				break;
			}
		}
		sleep_ms(p, 200);
	}
	return NULL;
}

int mg_pods_watch_start(struct mg_pods *p, struct mg_kube *kube)
{
	int rc;

	p->kube = kube;
	rc = pthread_create(&p->thread, NULL, watch_main, p);
	if (rc)
		return -rc;
	p->thread_started = true;
	return 0;
}
