/*
 * pods: cgroup path -> pod UID for both kubelet cgroup drivers, every QoS
 * class, malformed paths; the label selector; the intercept reconciliation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../userspace/node/pods.c"

#define UID "0f6a8d3e-2b7c-4c1e-9a5d-1234567890ab"
#define UIDU "0f6a8d3e_2b7c_4c1e_9a5d_1234567890ab"
#define CID "3f1e2d4c5b6a79880123456789abcdef0123456789abcdef0123456789abcdef"

struct cg_case {
	const char *path;
	int rc;
	enum mg_pods_cg_kind kind;
	enum mg_pods_qos qos;
	bool systemd;
	const char *uid;
	const char *cid;
};

static const struct cg_case cg_cases[] = {
	/* cgroupfs driver */
	{ "/sys/fs/cgroup/kubepods/burstable/pod" UID "/" CID, 0, MG_PODS_CG_CONTAINER,
	  MG_PODS_QOS_BURSTABLE, false, UID, CID },
	{ "/sys/fs/cgroup/kubepods/besteffort/pod" UID, 0, MG_PODS_CG_POD, MG_PODS_QOS_BESTEFFORT,
	  false, UID, "" },
	{ "/sys/fs/cgroup/kubepods/pod" UID "/" CID, 0, MG_PODS_CG_CONTAINER,
	  MG_PODS_QOS_GUARANTEED, false, UID, CID },
	{ "kubepods/pod" UID, 0, MG_PODS_CG_POD, MG_PODS_QOS_GUARANTEED, false, UID, "" },
	{ "/sys/fs/cgroup/unified/kubepods/burstable/pod" UID "/" CID "/nested", 0,
	  MG_PODS_CG_CONTAINER, MG_PODS_QOS_BURSTABLE, false, UID, CID },
	/* static pod: 32-hex config hash as UID */
	{ "/kubepods/burstable/pod0123456789abcdef0123456789abcdef", 0, MG_PODS_CG_POD,
	  MG_PODS_QOS_BURSTABLE, false, "0123456789abcdef0123456789abcdef", "" },
	/* systemd driver */
	{ "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UIDU
	  ".slice/cri-containerd-" CID ".scope",
	  0, MG_PODS_CG_CONTAINER, MG_PODS_QOS_BURSTABLE, true, UID, CID },
	{ "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UIDU
	  ".slice",
	  0, MG_PODS_CG_POD, MG_PODS_QOS_BESTEFFORT, true, UID, "" },
	{ "/sys/fs/cgroup/kubepods.slice/kubepods-pod" UIDU ".slice/docker-" CID ".scope", 0,
	  MG_PODS_CG_CONTAINER, MG_PODS_QOS_GUARANTEED, true, UID, CID },
	{ "/sys/fs/cgroup/kubepods.slice/kubepods-pod" UIDU ".slice/crio-" CID ".scope", 0,
	  MG_PODS_CG_CONTAINER, MG_PODS_QOS_GUARANTEED, true, UID, CID },
	{ "/kubepods.slice/kubepods-pod" UIDU ".slice/crio-conmon-" CID ".scope", 0,
	  MG_PODS_CG_CONTAINER, MG_PODS_QOS_GUARANTEED, true, UID, CID },
	/* not pod level */
	{ "/sys/fs/cgroup/kubepods", 0, MG_PODS_CG_NONE, 0, false, "", "" },
	{ "/sys/fs/cgroup/kubepods/burstable", 0, MG_PODS_CG_NONE, 0, false, "", "" },
	{ "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice", 0, MG_PODS_CG_NONE, 0, false,
	  "", "" },
	{ "/sys/fs/cgroup/system.slice/containerd.service", 0, MG_PODS_CG_NONE, 0, false, "", "" },
	{ "/", 0, MG_PODS_CG_NONE, 0, false, "", "" },
	{ "", 0, MG_PODS_CG_NONE, 0, false, "", "" },
	/* "pod..." outside a kubepods root is not ours */
	{ "/sys/fs/cgroup/other/pod" UID, 0, MG_PODS_CG_NONE, 0, false, "", "" },
	{ "/sys/fs/cgroup/burstable/pod" UID, 0, MG_PODS_CG_NONE, 0, false, "", "" },
	/* malformed */
	{ "/kubepods/burstable/podnot-a-uid", -EINVAL, 0, 0, false, NULL, NULL },
	{ "/kubepods/burstable/pod" UIDU, -EINVAL, 0, 0, false, NULL, NULL },
	{ "/kubepods/pod0F6A8D3E-2B7C-4C1E-9A5D-1234567890AB", -EINVAL, 0, 0, false, NULL, NULL },
	{ "/kubepods/burstable/pod" UID "x", -EINVAL, 0, 0, false, NULL, NULL },
	{ "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID ".slice",
	  -EINVAL, 0, 0, false, NULL, NULL },
	/* QoS of the pod slice disagrees with its parent slice */
	{ "/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod" UIDU ".slice",
	  -EINVAL, 0, 0, false, NULL, NULL },
	{ "/kubepods.slice/kubepods-burstable.slice/kubepods-pod" UIDU ".slice", -EINVAL, 0, 0,
	  false, NULL, NULL },
	{ "/kubepods/burstable/../pod" UID, -EINVAL, 0, 0, false, NULL, NULL },
	{ NULL, -EINVAL, 0, 0, false, NULL, NULL },
};

static void test_cgroup_paths(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cg_cases) / sizeof(cg_cases[0]); i++) {
		const struct cg_case *c = &cg_cases[i];
		struct mg_pods_cgpath out;
		int rc = mg_pods_parse_cgroup_path(c->path, &out);

		if (rc != c->rc)
			fail_msg("case %zu (%s): rc %d, want %d", i, c->path, rc, c->rc);
		if (rc)
			continue;
		if (out.kind != c->kind)
			fail_msg("case %zu (%s): kind %d, want %d", i, c->path, out.kind, c->kind);
		if (c->kind == MG_PODS_CG_NONE)
			continue;
		assert_int_equal(out.qos, c->qos);
		assert_int_equal(out.systemd, c->systemd);
		assert_string_equal(out.uid, c->uid);
		assert_string_equal(out.container_id, c->cid);
	}
}

static void test_pod_prefix(void **state)
{
	const char *p = "/x/kubepods/burstable/pod" UID "/" CID;
	struct mg_pods_cgpath out;

	(void)state;
	assert_int_equal(mg_pods_parse_cgroup_path(p, &out), 0);
	assert_int_equal(out.pod_prefix_len, strlen("/x/kubepods/burstable/pod" UID));
}

static void test_selector(void **state)
{
	struct mg_pods_selector sel;
	char err[128];
	json_t *l1 = json_pack("{s:s,s:s}", "mcpgate.io/intercept", "true", "app", "mcp");
	json_t *l2 = json_pack("{s:s}", "app", "mcp");

	(void)state;
	assert_int_equal(mg_pods_selector_parse(&sel, "mcpgate.io/intercept=true", NULL, err,
						sizeof(err)),
			 0);
	assert_true(mg_pods_selector_match(&sel, "default", l1));
	assert_false(mg_pods_selector_match(&sel, "default", l2));
	assert_false(mg_pods_selector_match(&sel, "default", NULL));

	assert_int_equal(mg_pods_selector_parse(&sel, "app==mcp,!mcpgate.io/intercept",
						"team-ai,other", err, sizeof(err)),
			 0);
	assert_false(mg_pods_selector_match(&sel, "team-ai", l1));
	assert_true(mg_pods_selector_match(&sel, "team-ai", l2));
	assert_false(mg_pods_selector_match(&sel, "default", l2));

	assert_int_equal(mg_pods_selector_parse(&sel, "app!=mcp,mcpgate.io/intercept", "", err,
						sizeof(err)),
			 0);
	assert_false(mg_pods_selector_match(&sel, "x", l1));

	assert_int_equal(mg_pods_selector_parse(&sel, "a=b=c", NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "a=b=c"));
	assert_int_equal(mg_pods_selector_parse(&sel, "=v", NULL, err, sizeof(err)), -EINVAL);
	assert_int_equal(mg_pods_selector_parse(&sel, "", "bad ns", err, sizeof(err)), -EINVAL);
	json_decref(l1);
	json_decref(l2);
}

/* ---- reconciliation, with a fake map and a fake cgroup tree ---- */

static uint64_t fake_map[16];
static size_t fake_n;

static int fake_intercept(void *data, uint64_t id, bool on)
{
	(void)data;
	if (on) {
		fake_map[fake_n++] = id;
		return 0;
	}
	for (size_t i = 0; i < fake_n; i++)
		if (fake_map[i] == id) {
			fake_map[i] = fake_map[--fake_n];
			return 0;
		}
	return -ENOENT;
}

static bool fake_has(uint64_t id)
{
	for (size_t i = 0; i < fake_n; i++)
		if (fake_map[i] == id)
			return true;
	return false;
}

static json_t *pod_json(const char *ns, const char *name, const char *uid, bool selected)
{
	return json_pack("{s:{s:s,s:s,s:s,s:o},s:{s:s,s:s}}", "metadata", "namespace", ns, "name",
			 name, "uid", uid, "labels",
			 selected ? json_pack("{s:s}", "mcpgate.io/intercept", "true") : json_object(),
			 "spec", "nodeName", "node1", "serviceAccountName", "agent");
}

static void test_reconcile(void **state)
{
	char root[] = "/tmp/mg-pods-test.XXXXXX", path[512];
	struct mg_pods_opts o = { 0 };
	struct mg_pod_ident id;
	struct mg_pods *p;
	struct stat st;
	json_t *list, *pod;
	uint64_t ino_a, ino_c;
	char err[64];

	(void)state;
	fake_n = 0;
	assert_non_null(mkdtemp(root));
	snprintf(path, sizeof(path), "%s/kubepods/burstable/pod%s/%s", root,
		 "11111111-1111-1111-1111-111111111111", CID);
	assert_int_equal(system(NULL) != 0, 1);
	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "mkdir -p %s %s/kubepods/pod%s", path, root,
			 "22222222-2222-2222-2222-222222222222");
		assert_int_equal(system(cmd), 0);
	}
	snprintf(path, sizeof(path), "%s/kubepods/burstable/pod%s", root,
		 "11111111-1111-1111-1111-111111111111");
	assert_int_equal(stat(path, &st), 0);
	ino_a = st.st_ino;
	snprintf(path, sizeof(path), "%s/kubepods/burstable/pod%s/%s", root,
		 "11111111-1111-1111-1111-111111111111", CID);
	assert_int_equal(stat(path, &st), 0);
	ino_c = st.st_ino;

	snprintf(path, sizeof(path), "%s/kubepods", root);
	o.cgroup_root = path;
	o.node_name = "node1";
	o.intercept = fake_intercept;
	assert_int_equal(mg_pods_selector_parse(&o.selector, "mcpgate.io/intercept=true", NULL, err,
						sizeof(err)),
			 0);
	assert_int_equal(mg_pods_new(&p, &o), 0);

	/* A previous daemon's entry survives until the first list. */
	fake_map[fake_n++] = 999;
	assert_int_equal(mg_pods_preset(p, (uint64_t[]){ 999 }, 1), 0);
	assert_int_equal(mg_pods_scan(p), 0);
	assert_true(fake_has(999));
	assert_int_equal(fake_n, 1);

	list = json_pack("{s:[o,o]}", "items",
			 pod_json("default", "a", "11111111-1111-1111-1111-111111111111", true),
			 pod_json("default", "b", "22222222-2222-2222-2222-222222222222", false));
	assert_int_equal(mg_pods_apply_list(p, list), 0);
	json_decref(list);
	assert_true(fake_has(ino_a));
	assert_false(fake_has(999));
	assert_int_equal(fake_n, 1);

	assert_int_equal(mg_pods_lookup(p, ino_a, ino_c, &id), 0);
	assert_true(id.known);
	assert_string_equal(id.namespace, "default");
	assert_string_equal(id.name, "a");
	assert_string_equal(id.service_account, "agent");
	assert_string_equal(id.container_id, CID);
	mg_pod_ident_release(&id);
	assert_int_equal(mg_pods_lookup(p, 12345, 0, &id), -ENOENT);

	/* Label change deselects; delete removes. */
	pod = pod_json("default", "a", "11111111-1111-1111-1111-111111111111", false);
	assert_int_equal(mg_pods_apply_event(p, "MODIFIED", pod), 0);
	assert_false(fake_has(ino_a));
	json_decref(pod);
	pod = pod_json("default", "a", "11111111-1111-1111-1111-111111111111", true);
	assert_int_equal(mg_pods_apply_event(p, "ADDED", pod), 0);
	assert_true(fake_has(ino_a));
	assert_int_equal(mg_pods_apply_event(p, "DELETED", pod), 0);
	assert_false(fake_has(ino_a));
	assert_int_equal(mg_pods_apply_event(p, "BOGUS", pod), -EINVAL);
	json_decref(pod);

	mg_pods_free(p);
	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
		assert_int_equal(system(cmd), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cgroup_paths),
		cmocka_unit_test(test_pod_prefix),
		cmocka_unit_test(test_selector),
		cmocka_unit_test(test_reconcile),
	};

	return cmocka_run_group_tests_name("pods", tests, NULL, NULL);
}
