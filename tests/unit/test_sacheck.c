/*
 * sacheck: the SubjectAccessReview it sends, how it reads the answer, and
 * the per-pod result: a selected pod whose ServiceAccount may get Secrets is
 * 1, one that may do nothing is 0, a failed review is no answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/stat.h>

#include "../../userspace/node/sacheck.c"

static void test_review_shape(void **state)
{
	json_t *r = mg_sacheck_review("team-ai", "agent", &mg_sacheck_probes[0]);
	json_t *spec = json_object_get(r, "spec"),
	       *ra = json_object_get(spec, "resourceAttributes");
	json_t *groups = json_object_get(spec, "groups");

	(void)state;
	assert_string_equal(json_string_value(json_object_get(r, "kind")), "SubjectAccessReview");
	assert_string_equal(json_string_value(json_object_get(spec, "user")),
			    "system:serviceaccount:team-ai:agent");
	assert_int_equal(json_array_size(groups), 3);
	assert_string_equal(json_string_value(json_array_get(groups, 1)),
			    "system:serviceaccounts:team-ai");
	assert_string_equal(json_string_value(json_object_get(ra, "verb")), "get");
	assert_string_equal(json_string_value(json_object_get(ra, "resource")), "secrets");
	assert_string_equal(json_string_value(json_object_get(ra, "namespace")), "team-ai");
	json_decref(r);

	/* exec: a subresource; "* *": cluster-wide, no namespace */
	for (size_t i = 0; i < mg_sacheck_n_probes; i++) {
		r = mg_sacheck_review("ns", "sa", &mg_sacheck_probes[i]);
		ra = json_object_get(json_object_get(r, "spec"), "resourceAttributes");
		if (mg_sacheck_probes[i].subresource)
			assert_string_equal(json_string_value(json_object_get(ra, "subresource")),
					    mg_sacheck_probes[i].subresource);
		assert_int_equal(json_object_get(ra, "namespace") == NULL,
				 mg_sacheck_probes[i].cluster);
		json_decref(r);
	}
}

static void test_parse(void **state)
{
	json_t *yes = json_pack("{s:{s:b}}", "status", "allowed", 1);
	json_t *no = json_pack("{s:{s:b,s:s}}", "status", "allowed", 0, "reason", "no");
	json_t *bad = json_pack("{s:{s:s}}", "status", "allowed", "true");

	(void)state;
	assert_int_equal(mg_sacheck_parse(yes), 1);
	assert_int_equal(mg_sacheck_parse(no), 0);
	assert_int_equal(mg_sacheck_parse(bad), -EPROTO);
	assert_int_equal(mg_sacheck_parse(NULL), -EPROTO);
	json_decref(yes);
	json_decref(no);
	json_decref(bad);
}

/* ---- a pods table with two selected pods, and a scripted API ---- */

static int posts;
static bool api_down;

/* "leaky" may get secrets in its namespace; everyone else nothing. */
static int fake_post(void *data, const char *body, json_t **out)
{
	json_t *r = json_loads(body, 0, NULL);
	json_t *spec = json_object_get(r, "spec");
	json_t *ra = json_object_get(spec, "resourceAttributes");
	const char *user = json_string_value(json_object_get(spec, "user"));
	bool allowed = !strcmp(user, "system:serviceaccount:default:leaky") &&
		       !strcmp(json_string_value(json_object_get(ra, "verb")), "get") &&
		       !strcmp(json_string_value(json_object_get(ra, "resource")), "secrets");

	(void)data;
	posts++;
	json_decref(r);
	if (api_down)
		return -EIO;
	*out = json_pack("{s:s,s:{s:b}}", "kind", "SubjectAccessReview", "status", "allowed",
			 allowed);
	return 0;
}

static int nop_set(void *data, uint64_t id, const struct mg_abi_pod *v)
{
	(void)data;
	(void)id;
	(void)v;
	return 0;
}

static json_t *pod(const char *name, const char *uid, const char *sa)
{
	return json_pack("{s:{s:s,s:s,s:s,s:{s:s}},s:{s:s,s:s}}", "metadata", "namespace",
			 "default", "name", name, "uid", uid, "labels", "mcpgate.io/intercept",
			 "true", "spec", "nodeName", "node1", "serviceAccountName", sa);
}

static char *metrics(struct mg_sacheck *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	mg_sacheck_write_metrics(c, f);
	fclose(f);
	return buf;
}

#define U1 "11111111-1111-1111-1111-111111111111"
#define U2 "22222222-2222-2222-2222-222222222222"
#define U3 "33333333-3333-3333-3333-333333333333"

static void test_per_pod_result(void **state)
{
	char root[] = "/tmp/mg-sacheck-test.XXXXXX", cmd[1024], kp[128], err[64];
	struct mg_pods_opts po = {0};
	struct mg_sacheck_opts so = {0};
	struct mg_sacheck *c;
	struct mg_pods *p;
	json_t *list;
	char *m;

	(void)state;
	assert_non_null(mkdtemp(root));
	snprintf(kp, sizeof(kp), "%s/kubepods", root);
	snprintf(cmd, sizeof(cmd), "mkdir -p %s/pod%s %s/pod%s %s/pod%s", kp, U1, kp, U2, kp, U3);
	assert_int_equal(system(cmd), 0);
	po.cgroup_root = kp;
	po.node_name = "node1";
	po.set_state = nop_set;
	assert_int_equal(mg_pods_selector_parse(&po.selector, "mcpgate.io/intercept=true", NULL,
						err, sizeof(err)),
			 0);
	assert_int_equal(mg_pods_new(&p, &po), 0);
	mg_pods_scan(p);
	list = json_pack("{s:[o,o,o]}", "items", pod("leaky-0", U1, "leaky"),
			 pod("leaky-1", U2, "leaky"), pod("quiet", U3, "quiet"));
	assert_int_equal(mg_pods_apply_list(p, list), 0);
	json_decref(list);

	so.pods = p;
	so.interval_s = 60;
	so.post = fake_post;
	assert_int_equal(mg_sacheck_new(&c, &so), 0);
	mg_sacheck_run(c, false);
	/* two ServiceAccounts, every probe once each: the shared one is cached */
	assert_int_equal(posts, 2 * (int)mg_sacheck_n_probes);
	m = metrics(c);
	assert_non_null(strstr(m, "mcpgate_pod_serviceaccount_excess_rights{namespace=\"default\","
				  "pod=\"leaky-0\",serviceaccount=\"leaky\"} 1\n"));
	assert_non_null(strstr(m, "pod=\"leaky-1\",serviceaccount=\"leaky\"} 1\n"));
	assert_non_null(strstr(m, "pod=\"quiet\",serviceaccount=\"quiet\"} 0\n"));
	assert_non_null(strstr(m, "mcpgate_serviceaccount_checks_failed_total 0\n"));
	free(m);

	/* checked pods are not asked again until a full round */
	mg_sacheck_run(c, false);
	assert_int_equal(posts, 2 * (int)mg_sacheck_n_probes);

	/* a failed round keeps the last answers and counts */
	api_down = true;
	mg_sacheck_run(c, true);
	api_down = false;
	m = metrics(c);
	assert_non_null(strstr(m, "pod=\"leaky-0\",serviceaccount=\"leaky\"} 1\n"));
	assert_non_null(strstr(m, "mcpgate_serviceaccount_checks_failed_total 3\n"));
	free(m);

	/* a pod deleted (no longer selected) leaves the gauge */
	list = pod("quiet", U3, "quiet");
	assert_int_equal(mg_pods_apply_event(p, "DELETED", list), 0);
	json_decref(list);
	mg_sacheck_run(c, false);
	m = metrics(c);
	assert_null(strstr(m, "pod=\"quiet\""));
	free(m);

	mg_sacheck_free(c);
	mg_pods_free(p);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_review_shape),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_per_pod_result),
	};

	return cmocka_run_group_tests_name("sacheck", tests, NULL, NULL);
}
