/*
 * sacheck: SubjectAccessReviews of selected pods' own ServiceAccounts. See
 * include/mcpgate/sacheck.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcpgate/kube.h"
#include "mcpgate/log.h"
#include "mcpgate/metrics.h"
#include "mcpgate/pods.h"
#include "mcpgate/sacheck.h"

#define SAR_PATH "/apis/authorization.k8s.io/v1/subjectaccessreviews"

/* More than discovery: reading Secrets (here or anywhere), seeing or
 * starting pods, running commands in them, minting tokens, or anything. */
const struct mg_sacheck_probe mg_sacheck_probes[] = {
	{"get secrets", "get", "", "secrets", NULL, false},
	{"list secrets (all namespaces)", "list", "", "secrets", NULL, true},
	{"list pods", "list", "", "pods", NULL, false},
	{"create pods", "create", "", "pods", NULL, false},
	{"create pods/exec", "create", "", "pods", "exec", false},
	{"create serviceaccounts/token", "create", "", "serviceaccounts", "token", false},
	{"* * (all namespaces)", "*", "*", "*", NULL, true},
};
const size_t mg_sacheck_n_probes = sizeof(mg_sacheck_probes) / sizeof(mg_sacheck_probes[0]);

json_t *mg_sacheck_review(const char *ns, const char *sa, const struct mg_sacheck_probe *probe)
{
	char user[400], group[200];
	json_t *attrs;

	snprintf(user, sizeof(user), "system:serviceaccount:%s:%s", ns, sa);
	snprintf(group, sizeof(group), "system:serviceaccounts:%s", ns);
	attrs = json_pack("{s:s,s:s,s:s}", "verb", probe->verb, "group", probe->group, "resource",
			  probe->resource);
	if (probe->subresource)
		json_object_set_new(attrs, "subresource", json_string(probe->subresource));
	if (!probe->cluster)
		json_object_set_new(attrs, "namespace", json_string(ns));
	/* The groups a ServiceAccount token carries: a binding to any of them
	 * is a right of the token too. */
	return json_pack("{s:s,s:s,s:{s:s,s:[s,s,s],s:o}}", "apiVersion", "authorization.k8s.io/v1",
			 "kind", "SubjectAccessReview", "spec", "user", user, "groups",
			 "system:serviceaccounts", group, "system:authenticated",
			 "resourceAttributes", attrs);
}

int mg_sacheck_parse(json_t *answer)
{
	json_t *allowed = json_object_get(json_object_get(answer, "status"), "allowed");

	if (!json_is_boolean(allowed))
		return -EPROTO;
	return json_is_true(allowed) ? 1 : 0;
}

/* ---- the table and the thread ---- */

struct result {
	char uid[40];
	char namespace[64];
	char name[254];
	char service_account[254];
	uint32_t allowed; /* bit i: mg_sacheck_probes[i] allowed */
	bool checked;	  /* a complete answer is in <allowed> */
};

struct mg_sacheck {
	pthread_mutex_t mu; /* guards res, n_res, failures */
	struct mg_kube *kube;
	struct mg_pods *pods;
	unsigned interval_s;
	mg_sacheck_post_cb *post;
	void *post_data;

	struct result *res;
	size_t n_res;
	uint64_t failures;

	pthread_t thread;
	bool started;
	volatile bool stop;
	struct sa_metrics *metrics; /* mg_sacheck_register_metrics() */
};

static int kube_post(void *data, const char *body, json_t **out)
{
	struct mg_sacheck *c = data;
	char err[512];
	long status;
	int rc = mg_kube_post_json(c->kube, SAR_PATH, body, out, &status, err, sizeof(err));

	if (rc)
		mg_log_json("warn",
			    json_pack("{s:s,s:s}", "event", "sa_check_failed", "error", err));
	return rc;
}

int mg_sacheck_new(struct mg_sacheck **out, const struct mg_sacheck_opts *o)
{
	struct mg_sacheck *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->res = calloc(MG_SACHECK_MAX_PODS, sizeof(*c->res));
	if (!c->res) {
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->mu, NULL);
	c->kube = o->kube;
	c->pods = o->pods;
	c->interval_s = o->interval_s ? o->interval_s : 300;
	c->post = o->post ? o->post : kube_post;
	c->post_data = o->post ? o->post_data : c;
	*out = c;
	return 0;
}

/* Asks every probe for <ns>/<sa>. Returns 0 with <*bits> filled, or
 * -errno when a review failed (no partial answer is believed). */
static int check_sa(struct mg_sacheck *c, const char *ns, const char *sa, uint32_t *bits)
{
	*bits = 0;
	for (size_t i = 0; i < mg_sacheck_n_probes; i++) {
		json_t *rev = mg_sacheck_review(ns, sa, &mg_sacheck_probes[i]), *ans = NULL;
		char *body = rev ? json_dumps(rev, JSON_COMPACT) : NULL;
		int rc = body ? c->post(c->post_data, body, &ans) : -ENOMEM;

		if (!rc)
			rc = mg_sacheck_parse(ans);
		free(body);
		json_decref(rev);
		json_decref(ans);
		if (rc < 0)
			return rc;
		if (rc)
			*bits |= 1u << i;
	}
	return 0;
}

static json_t *allowed_list(uint32_t bits)
{
	json_t *l = json_array();

	for (size_t i = 0; i < mg_sacheck_n_probes; i++)
		if (bits & (1u << i))
			json_array_append_new(l, json_string(mg_sacheck_probes[i].label));
	return l;
}

static struct result *res_find(struct mg_sacheck *c, const char *uid)
{
	for (size_t i = 0; i < c->n_res; i++)
		if (!strcmp(c->res[i].uid, uid))
			return &c->res[i];
	return NULL;
}

/* Brings the table in line with <sel>[0..<n>) (the selected pods now).
 * Lock held. */
static void sync_table(struct mg_sacheck *c, const struct mg_pod_ident *sel, size_t n)
{
	for (size_t i = 0; i < c->n_res;) {
		bool keep = false;

		for (size_t j = 0; j < n && !keep; j++)
			keep = !strcmp(sel[j].uid, c->res[i].uid);
		if (keep)
			i++;
		else
			c->res[i] = c->res[--c->n_res];
	}
	for (size_t j = 0; j < n && c->n_res < MG_SACHECK_MAX_PODS; j++) {
		struct result *r;

		if (res_find(c, sel[j].uid))
			continue;
		r = &c->res[c->n_res++];
		memset(r, 0, sizeof(*r));
		strcpy(r->uid, sel[j].uid);
		strcpy(r->namespace, sel[j].namespace);
		strcpy(r->name, sel[j].name);
		strcpy(r->service_account, sel[j].service_account);
	}
}

void mg_sacheck_run(struct mg_sacheck *c, bool all)
{
	struct mg_pod_ident *sel = calloc(MG_SACHECK_MAX_PODS, sizeof(*sel));
	struct result *todo = calloc(MG_SACHECK_MAX_PODS, sizeof(*todo));
	size_t n = 0, nt = 0;

	if (!sel || !todo)
		goto out;
	n = mg_pods_list_selected(c->pods, sel, MG_SACHECK_MAX_PODS);
	pthread_mutex_lock(&c->mu);
	sync_table(c, sel, n);
	for (size_t i = 0; i < c->n_res; i++)
		if (all || !c->res[i].checked)
			todo[nt++] = c->res[i];
	pthread_mutex_unlock(&c->mu);

	/* One review per (ServiceAccount, probe) per round: pods of one
	 * Deployment share theirs. */
	for (size_t i = 0; i < nt; i++) {
		struct result *t = &todo[i];
		struct result *r;
		bool first, same = false;
		int rc = 0;

		for (size_t j = 0; j < i && !same; j++)
			if (todo[j].checked && !strcmp(todo[j].namespace, t->namespace) &&
			    !strcmp(todo[j].service_account, t->service_account)) {
				same = true;
				t->allowed = todo[j].allowed;
			}
		if (!same)
			rc = check_sa(c, t->namespace, t->service_account, &t->allowed);
		pthread_mutex_lock(&c->mu);
		if (rc) {
			c->failures++;
			pthread_mutex_unlock(&c->mu);
			t->checked = false;
			continue;
		}
		r = res_find(c, t->uid);
		first = !r || !r->checked;
		same = r && r->checked && r->allowed == t->allowed;
		if (r) {
			r->allowed = t->allowed;
			r->checked = true;
		}
		pthread_mutex_unlock(&c->mu);
		t->checked = true;
		if (!r || (!first && same))
			continue;
		if (t->allowed)
			mg_log_json(
				"warn",
				json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:s}", "event",
					  "pod_serviceaccount_rights", "namespace", t->namespace,
					  "pod", t->name, "uid", t->uid, "serviceAccount",
					  t->service_account, "allowed", allowed_list(t->allowed),
					  "why",
					  "the pod's own token can do more than discovery: mcpgate "
					  "strips it on the redirected path, but it is worth "
					  "something to whoever takes it; bind this ServiceAccount "
					  "to nothing"));
		else if (!first)
			mg_log_json("info", json_pack("{s:s,s:s,s:s,s:s}", "event",
						      "pod_serviceaccount_rights", "namespace",
						      t->namespace, "pod", t->name, "allowed",
						      "nothing beyond discovery"));
	}
out:
	free(sel);
	free(todo);
}

static void *check_main(void *arg)
{
	struct mg_sacheck *c = arg;
	unsigned t = 0;

	while (!c->stop) {
		/* new pods within a second; everyone again every interval */
		mg_sacheck_run(c, t == 0);
		for (unsigned i = 0; i < 10 && !c->stop; i++) {
			struct timespec ts = {0, 100 * 1000000L};

			nanosleep(&ts, NULL);
		}
		t = (t + 1) % c->interval_s;
	}
	return NULL;
}

int mg_sacheck_start(struct mg_sacheck *c)
{
	int rc = pthread_create(&c->thread, NULL, check_main, c);

	if (rc)
		return -rc;
	c->started = true;
	return 0;
}

void mg_sacheck_free(struct mg_sacheck *c)
{
	if (!c)
		return;
	if (c->started) {
		c->stop = true;
		pthread_join(c->thread, NULL);
	}
	pthread_mutex_destroy(&c->mu);
	free(c->metrics);
	free(c->res);
	free(c);
}

/* ---- metrics ---- */

struct sa_metrics {
	struct mg_sacheck *c;
	struct mg_metrics_family *excess, *failed;
};

static void collect_metrics(void *data)
{
	struct sa_metrics *sm = data;
	struct mg_sacheck *c = sm->c;

	pthread_mutex_lock(&c->mu);
	/* One series per checked pod: pods come and go, so rebuilt each time. */
	mg_metrics_clear(sm->excess);
	for (size_t i = 0; i < c->n_res; i++) {
		const char *v[] = {c->res[i].namespace, c->res[i].name, c->res[i].service_account};

		if (c->res[i].checked)
			mg_metrics_set(mg_metrics_with(sm->excess, v), c->res[i].allowed ? 1 : 0);
	}
	mg_metrics_set(mg_metrics_with(sm->failed, NULL), (int64_t)c->failures);
	pthread_mutex_unlock(&c->mu);
}

static int add_families(struct sa_metrics *sm, struct mg_metrics *m)
{
	static const char *const labels[] = {"namespace", "pod", "serviceaccount"};

	sm->excess = mg_metrics_add(m, MG_METRICS_GAUGE, "mcpgate_pod_serviceaccount_excess_rights",
				    "1 when a selected pod's own ServiceAccount may do more than "
				    "discovery (SubjectAccessReview).",
				    labels, 3, NULL, 0);
	sm->failed = mg_metrics_add(
		m, MG_METRICS_COUNTER, "mcpgate_serviceaccount_checks_failed_total",
		"ServiceAccount checks that got no complete answer.", NULL, 0, NULL, 0);
	if (!sm->excess || !sm->failed)
		return -ENOMEM;
	return mg_metrics_on_collect(m, collect_metrics, sm);
}

int mg_sacheck_register_metrics(struct mg_sacheck *c, struct mg_metrics *m)
{
	struct sa_metrics *sm;
	int rc;

	if (c->metrics)
		return -EEXIST;
	sm = calloc(1, sizeof(*sm));
	if (!sm)
		return -ENOMEM;
	sm->c = c;
	rc = add_families(sm, m);
	if (rc) {
		free(sm);
		return rc;
	}
	c->metrics = sm;
	return 0;
}

void mg_sacheck_write_metrics(struct mg_sacheck *c, FILE *f)
{
	struct sa_metrics sm = {.c = c};
	struct mg_metrics *m = mg_metrics_new();

	if (m && !add_families(&sm, m))
		mg_metrics_render(m, f);
	mg_metrics_free(m);
}
