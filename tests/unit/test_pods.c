/*
 * pods: cgroup path -> pod UID for both kubelet cgroup drivers, every QoS
 * class, malformed paths; the label selector; the intercept reconciliation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../userspace/node/pods.c"

#define UID  "0f6a8d3e-2b7c-4c1e-9a5d-1234567890ab"
#define UIDU "0f6a8d3e_2b7c_4c1e_9a5d_1234567890ab"
#define CID  "3f1e2d4c5b6a79880123456789abcdef0123456789abcdef0123456789abcdef"

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
	{"/sys/fs/cgroup/kubepods/burstable/pod" UID "/" CID, 0, MG_PODS_CG_CONTAINER,
	 MG_PODS_QOS_BURSTABLE, false, UID, CID},
	{"/sys/fs/cgroup/kubepods/besteffort/pod" UID, 0, MG_PODS_CG_POD, MG_PODS_QOS_BESTEFFORT,
	 false, UID, ""},
	{"/sys/fs/cgroup/kubepods/pod" UID "/" CID, 0, MG_PODS_CG_CONTAINER, MG_PODS_QOS_GUARANTEED,
	 false, UID, CID},
	{"kubepods/pod" UID, 0, MG_PODS_CG_POD, MG_PODS_QOS_GUARANTEED, false, UID, ""},
	{"/sys/fs/cgroup/unified/kubepods/burstable/pod" UID "/" CID "/nested", 0,
	 MG_PODS_CG_CONTAINER, MG_PODS_QOS_BURSTABLE, false, UID, CID},
	/* static pod: 32-hex config hash as UID */
	{"/kubepods/burstable/pod0123456789abcdef0123456789abcdef", 0, MG_PODS_CG_POD,
	 MG_PODS_QOS_BURSTABLE, false, "0123456789abcdef0123456789abcdef", ""},
	/* systemd driver */
	{"/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UIDU
	 ".slice/cri-containerd-" CID ".scope",
	 0, MG_PODS_CG_CONTAINER, MG_PODS_QOS_BURSTABLE, true, UID, CID},
	{"/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UIDU
	 ".slice",
	 0, MG_PODS_CG_POD, MG_PODS_QOS_BESTEFFORT, true, UID, ""},
	{"/sys/fs/cgroup/kubepods.slice/kubepods-pod" UIDU ".slice/docker-" CID ".scope", 0,
	 MG_PODS_CG_CONTAINER, MG_PODS_QOS_GUARANTEED, true, UID, CID},
	{"/sys/fs/cgroup/kubepods.slice/kubepods-pod" UIDU ".slice/crio-" CID ".scope", 0,
	 MG_PODS_CG_CONTAINER, MG_PODS_QOS_GUARANTEED, true, UID, CID},
	{"/kubepods.slice/kubepods-pod" UIDU ".slice/crio-conmon-" CID ".scope", 0,
	 MG_PODS_CG_CONTAINER, MG_PODS_QOS_GUARANTEED, true, UID, CID},
	/* not pod level */
	{"/sys/fs/cgroup/kubepods", 0, MG_PODS_CG_NONE, 0, false, "", ""},
	{"/sys/fs/cgroup/kubepods/burstable", 0, MG_PODS_CG_NONE, 0, false, "", ""},
	{"/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice", 0, MG_PODS_CG_NONE, 0, false, "",
	 ""},
	{"/sys/fs/cgroup/system.slice/containerd.service", 0, MG_PODS_CG_NONE, 0, false, "", ""},
	{"/", 0, MG_PODS_CG_NONE, 0, false, "", ""},
	{"", 0, MG_PODS_CG_NONE, 0, false, "", ""},
	/* "pod..." outside a kubepods root is not ours */
	{"/sys/fs/cgroup/other/pod" UID, 0, MG_PODS_CG_NONE, 0, false, "", ""},
	{"/sys/fs/cgroup/burstable/pod" UID, 0, MG_PODS_CG_NONE, 0, false, "", ""},
	/* malformed */
	{"/kubepods/burstable/podnot-a-uid", -EINVAL, 0, 0, false, NULL, NULL},
	{"/kubepods/burstable/pod" UIDU, -EINVAL, 0, 0, false, NULL, NULL},
	{"/kubepods/pod0F6A8D3E-2B7C-4C1E-9A5D-1234567890AB", -EINVAL, 0, 0, false, NULL, NULL},
	{"/kubepods/burstable/pod" UID "x", -EINVAL, 0, 0, false, NULL, NULL},
	{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID ".slice", -EINVAL, 0,
	 0, false, NULL, NULL},
	/* QoS of the pod slice disagrees with its parent slice */
	{"/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod" UIDU ".slice", -EINVAL,
	 0, 0, false, NULL, NULL},
	{"/kubepods.slice/kubepods-burstable.slice/kubepods-pod" UIDU ".slice", -EINVAL, 0, 0,
	 false, NULL, NULL},
	{"/kubepods/burstable/../pod" UID, -EINVAL, 0, 0, false, NULL, NULL},
	{NULL, -EINVAL, 0, 0, false, NULL, NULL},
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
	assert_int_equal(
		mg_pods_selector_parse(&sel, "mcpgate.io/intercept=true", NULL, err, sizeof(err)),
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

	assert_int_equal(
		mg_pods_selector_parse(&sel, "app!=mcp,mcpgate.io/intercept", "", err, sizeof(err)),
		0);
	assert_false(mg_pods_selector_match(&sel, "x", l1));

	assert_int_equal(mg_pods_selector_parse(&sel, "a=b=c", NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "a=b=c"));
	assert_int_equal(mg_pods_selector_parse(&sel, "=v", NULL, err, sizeof(err)), -EINVAL);
	assert_int_equal(mg_pods_selector_parse(&sel, "", "bad ns", err, sizeof(err)), -EINVAL);
	json_decref(l1);
	json_decref(l2);
}

/* ---- the state machine, with a fake map and a fake cgroup tree ---- */

#define UA   "11111111-1111-1111-1111-111111111111"
#define UB   "22222222-2222-2222-2222-222222222222"
#define UC   "33333333-3333-3333-3333-333333333333"
#define UD   "44444444-4444-4444-4444-444444444444"
#define HASH "0123456789abcdef0123456789abcdef"

static struct {
	uint64_t id;
	struct mg_abi_pod v;
} fake_map[32];
static size_t fake_n;
static int fake_fail; /* fail the next N writes */
static uint64_t cut_ids[32];
static size_t n_cuts;

static int fake_set(void *data, uint64_t id, const struct mg_abi_pod *v)
{
	(void)data;
	if (fake_fail) {
		fake_fail--;
		return -EIO;
	}
	for (size_t i = 0; i < fake_n; i++)
		if (fake_map[i].id == id) {
			if (v)
				fake_map[i].v = *v;
			else
				fake_map[i] = fake_map[--fake_n];
			return 0;
		}
	if (v) {
		fake_map[fake_n].id = id;
		fake_map[fake_n++].v = *v;
	}
	return 0;
}

static void fake_cut(void *data, uint64_t id, const char *dir, const struct mg_pod_ident *pod)
{
	(void)data;
	(void)pod;
	assert_non_null(dir);
	cut_ids[n_cuts++] = id;
}

/* The state the fake map holds for <id>: MG_POD_* or -1 when absent. */
static int map_state(uint64_t id)
{
	for (size_t i = 0; i < fake_n; i++)
		if (fake_map[i].id == id)
			return (int)fake_map[i].v.state;
	return -1;
}

static uint32_t map_gen(uint64_t id)
{
	for (size_t i = 0; i < fake_n; i++)
		if (fake_map[i].id == id)
			return fake_map[i].v.sel_gen;
	return 0;
}

static size_t cuts_of(uint64_t id)
{
	size_t n = 0;

	for (size_t i = 0; i < n_cuts; i++)
		n += cut_ids[i] == id;
	return n;
}

static json_t *pod_json(const char *ns, const char *name, const char *uid, bool selected)
{
	return json_pack("{s:{s:s,s:s,s:s,s:o},s:{s:s,s:s}}", "metadata", "namespace", ns, "name",
			 name, "uid", uid, "labels",
			 selected ? json_pack("{s:s}", "mcpgate.io/intercept", "true")
				  : json_object(),
			 "spec", "nodeName", "node1", "serviceAccountName", "agent");
}

static json_t *list_of(json_t *a, json_t *b)
{
	json_t *items = json_array();

	if (a)
		json_array_append_new(items, a);
	if (b)
		json_array_append_new(items, b);
	return json_pack("{s:o}", "items", items);
}

static void event(struct mg_pods *p, const char *type, json_t *pod)
{
	assert_int_equal(mg_pods_apply_event(p, type, pod), 0);
	json_decref(pod);
}

static void list(struct mg_pods *p, json_t *l)
{
	assert_int_equal(mg_pods_apply_list(p, l), 0);
	json_decref(l);
}

struct tree {
	char root[64];
	char kubepods[128];
};

static void sh(const char *fmt, const char *a, const char *b)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), fmt, a, b);
	assert_int_equal(system(cmd), 0);
}

/* Makes <root>/kubepods/burstable/pod<uid>/<cid> and returns the pod dir's inode. */
static uint64_t mkpod(struct tree *t, const char *uid)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/burstable/pod%s", t->kubepods, uid);
	sh("mkdir -p %s/%s", path, CID);
	assert_int_equal(stat(path, &st), 0);
	return st.st_ino;
}

static uint64_t container_ino(struct tree *t, const char *uid)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/burstable/pod%s/%s", t->kubepods, uid, CID);
	assert_int_equal(stat(path, &st), 0);
	return st.st_ino;
}

static void rmpod(struct tree *t, const char *uid)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/burstable/pod%s", t->kubepods, uid);
	sh("rm -rf %s%s", path, "");
}

static int tree_setup(void **state)
{
	struct tree *t = calloc(1, sizeof(*t));

	strcpy(t->root, "/tmp/mg-pods-test.XXXXXX");
	assert_non_null(mkdtemp(t->root));
	snprintf(t->kubepods, sizeof(t->kubepods), "%s/kubepods", t->root);
	sh("mkdir -p %s/burstable%s", t->kubepods, "");
	fake_n = 0;
	n_cuts = 0;
	fake_fail = 0;
	*state = t;
	return 0;
}

static int tree_teardown(void **state)
{
	struct tree *t = *state;

	sh("rm -rf %s%s", t->root, "");
	free(t);
	return 0;
}

static struct mg_pods *new_pods(struct tree *t, const char *selector)
{
	struct mg_pods_opts o = {0};
	struct mg_pods *p;
	char err[64];

	o.cgroup_root = t->kubepods;
	o.node_name = "node1";
	o.set_state = fake_set;
	o.on_selected = fake_cut;
	assert_int_equal(mg_pods_selector_parse(&o.selector, selector, NULL, err, sizeof(err)), 0);
	assert_int_equal(mg_pods_new(&p, &o), 0);
	return p;
}

/* Every pod cgroup gets an entry: pending until its metadata is known,
 * then selected or pass; a predecessor's entries are kept until the first
 * list, then the one whose cgroup is gone is removed. */
static void test_every_pod_cgroup_has_an_entry(void **state)
{
	struct tree *t = *state;
	uint64_t a = mkpod(t, UA), b = mkpod(t, UB), c = mkpod(t, UC);
	struct mg_pods *p = new_pods(t, "mcpgate.io/intercept=true");
	struct mg_pod_ident id;
	struct mg_pods_counts cnt;
	uint64_t own = container_ino(t, UB);

	/* A predecessor's selection of a cgroup that is gone, and the
	 * loader's PASS entry for the daemon's own (container) cgroup. */
	fake_set(NULL, 999, &(struct mg_abi_pod){MG_POD_SELECTED, 7});
	fake_set(NULL, own, &(struct mg_abi_pod){MG_POD_PASS, 0});
	assert_int_equal(
		mg_pods_preset(p, (uint64_t[]){999, own},
			       (struct mg_abi_pod[]){{MG_POD_SELECTED, 7}, {MG_POD_PASS, 0}}, 2),
		0);
	assert_int_equal(mg_pods_scan(p), 0);
	assert_int_equal(map_state(a), MG_POD_PENDING);
	assert_int_equal(map_state(b), MG_POD_PENDING);
	assert_int_equal(map_state(c), MG_POD_PENDING);
	assert_int_equal(map_state(999), MG_POD_SELECTED);

	list(p, list_of(pod_json("default", "a", UA, true), pod_json("default", "b", UB, false)));
	assert_int_equal(map_state(a), MG_POD_SELECTED);
	assert_int_equal(map_gen(a), mg_pods_gen(p));
	assert_int_equal(map_state(b), MG_POD_PASS);
	assert_int_equal(map_gen(b), 0);
	assert_int_equal(map_state(c), MG_POD_PENDING); /* not listed (yet) */
	assert_int_equal(map_state(999), -1);
	assert_int_equal(map_state(own), MG_POD_PASS); /* not a pod's: left alone */
	assert_int_equal(fake_n, 4);
	assert_int_equal(cuts_of(a), 1);
	assert_int_equal(n_cuts, 1);
	mg_pods_counts(p, &cnt);
	assert_int_equal(cnt.selected, 1);
	assert_int_equal(cnt.pending, 1);
	assert_int_equal(cnt.pass, 1);

	/* pending -> selected when the pod appears: its connections are cut */
	event(p, "ADDED", pod_json("default", "c", UC, true));
	assert_int_equal(map_state(c), MG_POD_SELECTED);
	assert_int_equal(cuts_of(c), 1);

	assert_int_equal(mg_pods_lookup(p, a, 0, &id), 0);
	assert_true(id.known);
	assert_string_equal(id.name, "a");
	assert_string_equal(id.service_account, "agent");
	mg_pod_ident_release(&id);
	assert_int_equal(mg_pods_lookup(p, 12345, 0, &id), -ENOENT);
	{
		struct mg_pod_ident sel[4];

		assert_int_equal(mg_pods_list_selected(p, sel, 4), 2);
	}
	mg_pods_free(p);
}

/* Removing the label (a pod that can patch itself) does not deselect it;
 * only deleting the pod ends the selection. */
static void test_selection_sticky_until_deleted(void **state)
{
	struct tree *t = *state;
	uint64_t a = mkpod(t, UA);
	struct mg_pods *p = new_pods(t, "mcpgate.io/intercept=true");

	mg_pods_scan(p);
	list(p, list_of(pod_json("default", "a", UA, true), NULL));
	assert_int_equal(map_state(a), MG_POD_SELECTED);
	event(p, "MODIFIED", pod_json("default", "a", UA, false));
	assert_int_equal(map_state(a), MG_POD_SELECTED);
	/* a relist after a watch error does not forget it either */
	list(p, list_of(pod_json("default", "a", UA, false), NULL));
	assert_int_equal(map_state(a), MG_POD_SELECTED);
	assert_int_equal(cuts_of(a), 1);
	event(p, "DELETED", pod_json("default", "a", UA, false));
	assert_int_equal(map_state(a), MG_POD_PENDING);
	/* its cgroup goes: the entry goes */
	rmpod(t, UA);
	mg_pods_scan(p);
	assert_int_equal(map_state(a), -1);
	assert_int_equal(fake_n, 0);
	mg_pods_free(p);
}

/* Deleted and re-created under the same name: a new UID and cgroup, judged
 * afresh by its labels. */
static void test_recreated_pod_judged_afresh(void **state)
{
	struct tree *t = *state;
	uint64_t a = mkpod(t, UA), d;
	struct mg_pods *p = new_pods(t, "mcpgate.io/intercept=true");

	mg_pods_scan(p);
	list(p, list_of(pod_json("default", "a", UA, true), NULL));
	event(p, "MODIFIED", pod_json("default", "a", UA, false));
	event(p, "DELETED", pod_json("default", "a", UA, false));
	d = mkpod(t, UD); /* before the rmdir: a tmpfs reuses inode numbers */
	rmpod(t, UA);
	event(p, "ADDED", pod_json("default", "a", UD, false));
	mg_pods_scan(p);
	assert_int_equal(map_state(a), -1);
	assert_int_equal(map_state(d), MG_POD_PASS);
	mg_pods_free(p);
}

/* pass -> selected when the label is added; the cut runs each time a pod
 * enters the selected state, never for a pod that stays in it. */
static void test_pass_to_selected_cuts(void **state)
{
	struct tree *t = *state;
	uint64_t b = mkpod(t, UB);
	struct mg_pods *p = new_pods(t, "mcpgate.io/intercept=true");

	mg_pods_scan(p);
	list(p, list_of(pod_json("default", "b", UB, false), NULL));
	assert_int_equal(map_state(b), MG_POD_PASS);
	assert_int_equal(n_cuts, 0);
	event(p, "MODIFIED", pod_json("default", "b", UB, true));
	assert_int_equal(map_state(b), MG_POD_SELECTED);
	assert_int_equal(cuts_of(b), 1);
	event(p, "MODIFIED", pod_json("default", "b", UB, true));
	mg_pods_scan(p);
	assert_int_equal(cuts_of(b), 1);
	mg_pods_free(p);
}

/* A restarted daemon: the same selector keeps a selection whose labels no
 * longer match (and cuts nothing); another selector re-judges it. */
static void test_restart_keeps_or_rejudges_by_generation(void **state)
{
	struct tree *t = *state;
	uint64_t a = mkpod(t, UA), b = mkpod(t, UB);
	struct mg_pods *p = new_pods(t, "mcpgate.io/intercept=true");
	uint32_t gen = mg_pods_gen(p);

	fake_set(NULL, a, &(struct mg_abi_pod){MG_POD_SELECTED, gen});
	fake_set(NULL, b, &(struct mg_abi_pod){MG_POD_SELECTED, gen});
	mg_pods_preset(p, (uint64_t[]){a, b},
		       (struct mg_abi_pod[]){{MG_POD_SELECTED, gen}, {MG_POD_SELECTED, gen}}, 2);
	mg_pods_scan(p);
	list(p, list_of(pod_json("default", "a", UA, false), pod_json("default", "b", UB, true)));
	assert_int_equal(map_state(a), MG_POD_SELECTED);
	assert_int_equal(map_state(b), MG_POD_SELECTED);
	assert_int_equal(n_cuts, 0);
	mg_pods_free(p);

	/* another selector: "a" (labels gone) is deselected, "b" re-selected */
	p = new_pods(t, "mcpgate.io/intercept=true,app!=x");
	assert_int_not_equal(mg_pods_gen(p), gen);
	mg_pods_preset(p, (uint64_t[]){a, b},
		       (struct mg_abi_pod[]){{MG_POD_SELECTED, gen}, {MG_POD_SELECTED, gen}}, 2);
	mg_pods_scan(p);
	assert_int_equal(map_state(a), MG_POD_SELECTED); /* kept until the list */
	list(p, list_of(pod_json("default", "a", UA, false), pod_json("default", "b", UB, true)));
	assert_int_equal(map_state(a), MG_POD_PASS);
	assert_int_equal(map_state(b), MG_POD_SELECTED);
	assert_int_equal(map_gen(b), mg_pods_gen(p));
	assert_int_equal(n_cuts, 0);
	mg_pods_free(p);
}

/* A static pod's cgroup is named by its config hash; its mirror pod in the
 * API says which. Without that it would stay pending forever. */
static void test_static_pod_by_mirror(void **state)
{
	struct tree *t = *state;
	uint64_t s = mkpod(t, HASH);
	struct mg_pods *p = new_pods(t, "mcpgate.io/intercept=true");
	json_t *mirror = pod_json("kube-system", "etcd-node1", UA, false);

	json_object_set_new(json_object_get(mirror, "metadata"), "annotations",
			    json_pack("{s:s}", "kubernetes.io/config.mirror", HASH));
	mg_pods_scan(p);
	list(p, list_of(mirror, NULL));
	assert_int_equal(map_state(s), MG_POD_PASS);
	mg_pods_free(p);
}

/* A failed map write changes nothing and is retried on the next reconcile. */
static void test_failed_write_retried(void **state)
{
	struct tree *t = *state;
	uint64_t a = mkpod(t, UA);
	struct mg_pods *p = new_pods(t, "mcpgate.io/intercept=true");

	mg_pods_scan(p);
	fake_fail = 1;
	list(p, list_of(pod_json("default", "a", UA, true), NULL));
	assert_int_equal(map_state(a), MG_POD_PENDING);
	assert_int_equal(n_cuts, 0);
	mg_pods_scan(p);
	assert_int_equal(map_state(a), MG_POD_SELECTED);
	assert_int_equal(cuts_of(a), 1);
	mg_pods_free(p);
}

/* A reload with another selector re-judges every pod (sticky selections
 * included); the same selector changes nothing. */
static void test_set_selector(void **state)
{
	struct tree *t = *state;
	uint64_t a = mkpod(t, UA), b = mkpod(t, UB);
	struct mg_pods *p = new_pods(t, "mcpgate.io/intercept=true");
	struct mg_pods_selector sel;
	char err[64];

	mg_pods_scan(p);
	list(p, list_of(pod_json("default", "a", UA, true), pod_json("team-ai", "b", UB, false)));
	event(p, "MODIFIED", pod_json("default", "a", UA, false)); /* sticky */
	assert_int_equal(map_state(a), MG_POD_SELECTED);
	assert_int_equal(
		mg_pods_selector_parse(&sel, "mcpgate.io/intercept=true", NULL, err, sizeof(err)),
		0);
	assert_int_equal(mg_pods_set_selector(p, &sel), 0);
	assert_int_equal(map_state(a), MG_POD_SELECTED);
	assert_int_equal(
		mg_pods_selector_parse(&sel, "!mcpgate.io/intercept", "team-ai", err, sizeof(err)),
		0);
	assert_int_equal(mg_pods_set_selector(p, &sel), 1);
	assert_int_equal(map_state(a), MG_POD_PASS);
	assert_int_equal(map_state(b), MG_POD_SELECTED);
	assert_int_equal(map_gen(b), mg_pods_selector_gen(&sel));
	assert_int_equal(cuts_of(b), 1);
	mg_pods_free(p);
}

static uint64_t async_cut_id;
static pthread_t async_cut_thread;

static void record_async_cut(void *data, uint64_t id, const char *dir,
			     const struct mg_pod_ident *pod)
{
	(void)data;
	(void)dir;
	(void)pod;
	async_cut_thread = pthread_self();
	__atomic_store_n(&async_cut_id, id, __ATOMIC_RELEASE);
}

/* The daemon's cuts run on a thread of their own, never on the caller's
 * (an inotify rescan runs on the event loop). */
static void test_async_cuts_off_the_caller(void **state)
{
	struct tree *t = *state;
	uint64_t a = mkpod(t, UA);
	struct mg_pods_opts o = {0};
	struct mg_pods *p;
	char err[64];

	o.cgroup_root = t->kubepods;
	o.node_name = "node1";
	o.set_state = fake_set;
	o.on_selected = record_async_cut;
	o.async_cuts = true;
	assert_int_equal(mg_pods_selector_parse(&o.selector, "mcpgate.io/intercept=true", NULL, err,
						sizeof(err)),
			 0);
	assert_int_equal(mg_pods_new(&p, &o), 0);
	mg_pods_scan(p);
	list(p, list_of(pod_json("default", "a", UA, true), NULL));
	for (int i = 0; i < 200 && !__atomic_load_n(&async_cut_id, __ATOMIC_ACQUIRE); i++)
		usleep(10000);
	assert_int_equal(__atomic_load_n(&async_cut_id, __ATOMIC_ACQUIRE), a);
	assert_false(pthread_equal(async_cut_thread, pthread_self()));
	mg_pods_free(p);
}

/* The daemon's own pod is never pending (its pod list classifies every
 * pod: with refuse-unknown that would be a deadlock) and never selected
 * (its upstream connections would come back to itself). */
static void test_own_pod_always_pass(void **state)
{
	struct tree *t = *state;
	uint64_t a = mkpod(t, UA);
	struct mg_pods *p = new_pods(t, "mcpgate.io/intercept=true");

	strcpy(p->self_uid, UA);
	mg_pods_scan(p);
	assert_int_equal(map_state(a), MG_POD_PASS);
	list(p, list_of(pod_json("mcpgate", "mcpgated-x", UA, true), NULL));
	assert_int_equal(map_state(a), MG_POD_PASS);
	assert_int_equal(n_cuts, 0);
	mg_pods_free(p);
}

static void test_selector_gen(void **state)
{
	struct mg_pods_selector s1, s2, s3, s4;
	char err[64];

	(void)state;
	assert_int_equal(mg_pods_selector_parse(&s1, "a=1,b", "x,y", err, sizeof(err)), 0);
	assert_int_equal(mg_pods_selector_parse(&s2, "b,a==1", "y,x", err, sizeof(err)), 0);
	assert_int_equal(mg_pods_selector_parse(&s3, "a=1", "bx,y", err, sizeof(err)), 0);
	assert_int_equal(mg_pods_selector_parse(&s4, "a=1,b", "x", err, sizeof(err)), 0);
	assert_int_equal(mg_pods_selector_gen(&s1), mg_pods_selector_gen(&s2));
	assert_int_not_equal(mg_pods_selector_gen(&s1), mg_pods_selector_gen(&s3));
	assert_int_not_equal(mg_pods_selector_gen(&s1), mg_pods_selector_gen(&s4));
	assert_int_not_equal(mg_pods_selector_gen(&s1), 0);
	memset(&s1, 0, sizeof(s1));
	assert_int_not_equal(mg_pods_selector_gen(&s1), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cgroup_paths),
		cmocka_unit_test(test_pod_prefix),
		cmocka_unit_test(test_selector),
		cmocka_unit_test(test_selector_gen),
		cmocka_unit_test_setup_teardown(test_every_pod_cgroup_has_an_entry, tree_setup,
						tree_teardown),
		cmocka_unit_test_setup_teardown(test_selection_sticky_until_deleted, tree_setup,
						tree_teardown),
		cmocka_unit_test_setup_teardown(test_recreated_pod_judged_afresh, tree_setup,
						tree_teardown),
		cmocka_unit_test_setup_teardown(test_pass_to_selected_cuts, tree_setup,
						tree_teardown),
		cmocka_unit_test_setup_teardown(test_restart_keeps_or_rejudges_by_generation,
						tree_setup, tree_teardown),
		cmocka_unit_test_setup_teardown(test_static_pod_by_mirror, tree_setup,
						tree_teardown),
		cmocka_unit_test_setup_teardown(test_set_selector, tree_setup, tree_teardown),
		cmocka_unit_test_setup_teardown(test_async_cuts_off_the_caller, tree_setup,
						tree_teardown),
		cmocka_unit_test_setup_teardown(test_own_pod_always_pass, tree_setup,
						tree_teardown),
		cmocka_unit_test_setup_teardown(test_failed_write_retried, tree_setup,
						tree_teardown),
	};

	return cmocka_run_group_tests_name("pods", tests, NULL, NULL);
}
