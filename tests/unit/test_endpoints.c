/*
 * endpoints: which EndpointSlices are believed (only the API server's own),
 * and that a failed, empty, slice-less, overflowing or untrusted fetch keeps
 * the last good set instead of cutting or shrinking it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../userspace/node/endpoints.c"

static json_t *service(const char *ips_json)
{
	json_t *ips = json_loads(ips_json, 0, NULL);

	return json_pack("{s:{s:s,s:s},s:{s:s?,s:o,s:[{s:s,s:i,s:s}]}}", "metadata", "name",
			 "kubernetes", "namespace", "default", "spec", "clusterIP",
			 json_string_value(json_array_get(ips, 0)), "clusterIPs", ips, "ports",
			 "name", "https", "port", 443, "protocol", "TCP");
}

/* The slice the API server's reconciler writes: name, one label, no
 * managed-by, no owner. */
static json_t *slice(const char *name, const char *type, const char *addr, int port)
{
	return json_pack("{s:{s:s,s:s,s:{s:s}},s:s,s:[{s:[s],s:{s:b}}],s:[{s:s,s:i,s:s}]}",
			 "metadata", "name", name, "namespace", "default", "labels",
			 "kubernetes.io/service-name", "kubernetes", "addressType", type,
			 "endpoints", "addresses", addr, "conditions", "ready", 1, "ports", "name",
			 "https", "port", port, "protocol", "TCP");
}

static json_t *list_of(json_t *a, json_t *b)
{
	json_t *items = json_array();

	if (a)
		json_array_append_new(items, a);
	if (b)
		json_array_append_new(items, b);
	return json_pack("{s:s,s:o}", "kind", "EndpointSliceList", "items", items);
}

static bool has(const struct mg_endpoints_result *r, const char *hostport)
{
	struct mg_abi_addr a;

	assert_int_equal(mg_addr_parse_hostport(hostport, &a), 0);
	for (size_t i = 0; i < r->n; i++)
		if (!memcmp(&r->addrs[i], &a, sizeof(a)))
			return true;
	return false;
}

static void test_compute_trusted(void **state)
{
	struct mg_endpoints_result r;
	struct mg_abi_addr extra;
	json_t *svc = service("[\"10.96.0.1\", \"fd00:96::1\"]");
	json_t *sl = list_of(slice("kubernetes", "IPv4", "10.97.0.10", 6443),
			     slice("kubernetes-v6", "IPv6", "fd00:97::10", 6443));

	(void)state;
	assert_int_equal(mg_addr_parse_hostport("192.0.2.7:443", &extra), 0);
	mg_endpoints_compute(&extra, 1, NULL, 0, svc, sl, &r);
	assert_int_equal(r.verdict, MG_ENDPOINTS_OK);
	assert_int_equal(r.rejected, 0);
	assert_int_equal(r.n, 5);
	assert_memory_equal(&r.addrs[0], &extra, sizeof(extra)); /* extras first */
	assert_true(has(&r, "10.96.0.1:443"));
	assert_true(has(&r, "[fd00:96::1]:443"));
	assert_true(has(&r, "10.97.0.10:6443"));
	assert_true(has(&r, "[fd00:97::10]:6443"));
	json_decref(svc);
	json_decref(sl);
}

/* Each way a slice can claim the kubernetes Service without being the API
 * server's own: never believed, its address never enters the set. */
static void test_untrusted_slices_rejected(void **state)
{
	static const char *const edits[] = {
		"name",			     /* another name (a controller's kubernetes-abcde) */
		"managed-by",		     /* written by a controller */
		"managed-by-apiserver-name", /* a controller's label with any value */
		"owner",     /* owned by the Service, as controller-made slices are */
		"namespace", /* in another namespace */
		"type",	     /* the name's address type does not match the Service's */
		"v6-single", /* kubernetes-v6 for a single-stack Service */
		"label",     /* service-name label missing */
	};
	(void)state;
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		json_t *svc = service("[\"10.96.0.1\"]");
		json_t *good = slice("kubernetes", "IPv4", "10.97.0.10", 6443);
		json_t *bad = slice("kubernetes", "IPv4", "10.66.6.6", 443);
		json_t *md = json_object_get(bad, "metadata");
		struct mg_endpoints_result r;
		json_t *sl;

		if (!strcmp(edits[i], "name"))
			json_object_set_new(md, "name", json_string("kubernetes-x7k2p"));
		else if (!strcmp(edits[i], "managed-by"))
			json_object_set_new(json_object_get(md, "labels"), LABEL_MANAGED_BY,
					    json_string("endpointslice-controller.k8s.io"));
		else if (!strcmp(edits[i], "managed-by-apiserver-name"))
			json_object_set_new(json_object_get(md, "labels"), LABEL_MANAGED_BY,
					    json_string("kube-apiserver"));
		else if (!strcmp(edits[i], "owner"))
			json_object_set_new(md, "ownerReferences",
					    json_pack("[{s:s,s:s,s:s,s:s}]", "apiVersion", "v1",
						      "kind", "Service", "name", "kubernetes",
						      "uid", "x"));
		else if (!strcmp(edits[i], "namespace"))
			json_object_set_new(md, "namespace", json_string("attacker"));
		else if (!strcmp(edits[i], "type")) {
			json_object_set_new(bad, "addressType", json_string("IPv6"));
			json_array_set_new(
				json_object_get(
					json_array_get(json_object_get(bad, "endpoints"), 0),
					"addresses"),
				0, json_string("fd00:66::6"));
		} else if (!strcmp(edits[i], "v6-single")) {
			json_object_set_new(md, "name", json_string("kubernetes-v6"));
			json_object_set_new(bad, "addressType", json_string("IPv6"));
			json_array_set_new(
				json_object_get(
					json_array_get(json_object_get(bad, "endpoints"), 0),
					"addresses"),
				0, json_string("fd00:66::6"));
		} else if (!strcmp(edits[i], "label"))
			json_object_del(json_object_get(md, "labels"),
					"kubernetes.io/service-name");
		/* the forged one first: order must not matter */
		sl = list_of(bad, good);
		mg_endpoints_compute(NULL, 0, NULL, 0, svc, sl, &r);
		if (r.verdict != MG_ENDPOINTS_OK || r.rejected != 1 || has(&r, "10.66.6.6:443") ||
		    !has(&r, "10.97.0.10:6443"))
			fail_msg("%s: verdict %d rejected %zu n %zu", edits[i], r.verdict,
				 r.rejected, r.n);
		json_decref(svc);
		json_decref(sl);
	}
}

/* An address of the other family inside a believed slice is skipped. */
static void test_wrong_family_address_skipped(void **state)
{
	struct mg_endpoints_result r;
	json_t *svc = service("[\"10.96.0.1\"]");
	json_t *s = slice("kubernetes", "IPv4", "10.97.0.10", 6443);
	json_t *sl;

	(void)state;
	json_array_append_new(
		json_object_get(json_array_get(json_object_get(s, "endpoints"), 0), "addresses"),
		json_string("fd00:66::6"));
	sl = list_of(s, NULL);
	mg_endpoints_compute(NULL, 0, NULL, 0, svc, sl, &r);
	assert_int_equal(r.verdict, MG_ENDPOINTS_OK);
	assert_int_equal(r.n, 2);
	json_decref(svc);
	json_decref(sl);
}

/* ---- the refresh: a scripted API and a recording apply ---- */

static json_t *next_svc, *next_slices;
static bool fail_svc, fail_slices;
static struct mg_abi_addr applied[MG_ENDPOINTS_MAX];
static size_t n_applied, applies;
static int apply_rc;

static int fake_fetch(void *data, const char *path, json_t **out)
{
	bool is_svc = strstr(path, "/services/") != NULL;

	(void)data;
	if (is_svc ? fail_svc : fail_slices)
		return -EIO;
	*out = json_incref(is_svc ? next_svc : next_slices);
	return 0;
}

static int fake_apply(void *data, const struct mg_abi_addr *a, size_t n)
{
	(void)data;
	applies++;
	if (apply_rc)
		return apply_rc;
	memcpy(applied, a, n * sizeof(*a));
	n_applied = n;
	return 0;
}

static bool applied_has(const char *hostport)
{
	struct mg_abi_addr a;

	assert_int_equal(mg_addr_parse_hostport(hostport, &a), 0);
	for (size_t i = 0; i < n_applied; i++)
		if (!memcmp(&applied[i], &a, sizeof(a)))
			return true;
	return false;
}

static void set_answers(json_t *svc, json_t *slices)
{
	json_decref(next_svc);
	json_decref(next_slices);
	next_svc = svc;
	next_slices = slices;
}

static json_t *many_addresses(size_t n)
{
	json_t *s = slice("kubernetes", "IPv4", "10.97.0.10", 6443);
	json_t *addrs =
		json_object_get(json_array_get(json_object_get(s, "endpoints"), 0), "addresses");

	for (size_t i = 1; i < n; i++) {
		char ip[32];

		snprintf(ip, sizeof(ip), "10.98.%zu.%zu", i / 250, i % 250 + 1);
		json_array_append_new(addrs, json_string(ip));
	}
	return s;
}

static void test_refresh_keeps_last_good_set(void **state)
{
	struct mg_endpoints_opts o = {0};
	struct mg_endpoints_stats st;
	struct mg_endpoints *e;

	(void)state;
	o.interval_s = 1;
	o.apply = fake_apply;
	o.fetch = fake_fetch;
	assert_int_equal(mg_endpoints_new(&e, &o), 0);

	/* A failed first fetch: nothing applied, not synced. */
	fail_svc = true;
	mg_endpoints_refresh(e);
	assert_int_equal(applies, 0);
	assert_false(mg_endpoints_synced(e));
	fail_svc = false;

	/* The good set. */
	set_answers(service("[\"10.96.0.1\"]"),
		    list_of(slice("kubernetes", "IPv4", "10.97.0.10", 6443), NULL));
	mg_endpoints_refresh(e);
	assert_int_equal(applies, 1);
	assert_true(mg_endpoints_synced(e));
	assert_int_equal(n_applied, 2);
	mg_endpoints_refresh(e); /* unchanged: not applied again */
	assert_int_equal(applies, 1);
	/* Each bad fetch keeps it: no apply. */
	fail_slices = true;
	mg_endpoints_refresh(e);
	fail_slices = false;
	set_answers(service("[\"10.96.0.1\"]"), list_of(NULL, NULL)); /* no slice at all */
	mg_endpoints_refresh(e);
	set_answers(service("[\"10.96.0.1\"]"),
		    list_of(slice("kubernetes", "IPv4", "10.97.0.10", 6443), NULL));
	json_array_clear(json_object_get(
		json_array_get(
			json_object_get(json_array_get(json_object_get(next_slices, "items"), 0),
					"endpoints"),
			0),
		"addresses")); /* the slice shrank to empty */
	mg_endpoints_refresh(e);
	set_answers(json_pack("{s:{s:s}}", "spec", "clusterIP", "None"),
		    list_of(slice("kubernetes", "IPv4", "10.97.0.10", 6443), NULL));
	mg_endpoints_refresh(e); /* no ClusterIP */
	set_answers(service("[\"10.96.0.1\"]"), list_of(many_addresses(MG_ENDPOINTS_MAX), NULL));
	mg_endpoints_refresh(e); /* 1 + 256 addresses: overflow, not cut at 256 */
	{
		json_t *evil = slice("kubernetes-evil", "IPv4", "10.66.6.6", 443);

		set_answers(service("[\"10.96.0.1\"]"), list_of(evil, NULL));
		mg_endpoints_refresh(e); /* untrusted only */
	}
	assert_int_equal(applies, 1);
	assert_int_equal(n_applied, 2);
	assert_true(applied_has("10.97.0.10:6443"));
	assert_false(applied_has("10.66.6.6:443"));
	mg_endpoints_get_stats(e, &st);
	assert_int_equal(st.fetches_failed, 2);
	assert_int_equal(st.fetches_empty, 1);	/* no ClusterIP */
	assert_int_equal(st.slices_missing, 3); /* none, emptied, forged only */
	assert_int_equal(st.overflows, 1);
	assert_int_equal(st.rejected_slices, 1);
	assert_int_equal(st.n_current, 2);
	assert_true(mg_endpoints_synced(e));

	/* Without a believed slice a ClusterIP change is still applied, the
	 * last slice addresses kept with it. */
	set_answers(service("[\"10.96.0.2\"]"), list_of(NULL, NULL));
	mg_endpoints_refresh(e);
	assert_int_equal(applies, 2);
	assert_true(applied_has("10.96.0.2:443"));
	assert_true(applied_has("10.97.0.10:6443"));
	assert_false(applied_has("10.96.0.1:443"));

	/* The largest set that fits is taken whole. */
	set_answers(service("[\"10.96.0.1\"]"),
		    list_of(many_addresses(MG_ENDPOINTS_MAX - 1), NULL));
	mg_endpoints_refresh(e);
	assert_int_equal(applies, 3);
	assert_int_equal(n_applied, MG_ENDPOINTS_MAX);

	/* A trusted change is applied; a failed apply is retried. */
	set_answers(service("[\"10.96.0.1\"]"),
		    list_of(slice("kubernetes", "IPv4", "10.97.0.11", 6443), NULL));
	apply_rc = -EIO;
	mg_endpoints_refresh(e);
	assert_int_equal(applies, 4);
	mg_endpoints_get_stats(e, &st);
	assert_int_equal(st.apply_failed, 1);
	assert_int_equal(st.n_current, MG_ENDPOINTS_MAX);
	apply_rc = 0;
	mg_endpoints_refresh(e);
	assert_int_equal(applies, 5);
	assert_int_equal(n_applied, 2);
	assert_true(applied_has("10.97.0.11:6443"));
	assert_false(applied_has("10.97.0.10:6443"));

	set_answers(NULL, NULL);
	mg_endpoints_free(e);
}

/* The same set in another order is no change: nothing reissued. */
static void test_reordered_answer_is_no_change(void **state)
{
	struct mg_endpoints_opts o = {0};
	struct mg_endpoints *e;

	(void)state;
	applies = 0;
	o.apply = fake_apply;
	o.fetch = fake_fetch;
	assert_int_equal(mg_endpoints_new(&e, &o), 0);
	set_answers(service("[\"10.96.0.1\", \"fd00:96::1\"]"),
		    list_of(slice("kubernetes", "IPv4", "10.97.0.10", 6443),
			    slice("kubernetes-v6", "IPv6", "fd00:97::10", 6443)));
	mg_endpoints_refresh(e);
	assert_int_equal(applies, 1);
	set_answers(service("[\"10.96.0.1\", \"fd00:96::1\"]"),
		    list_of(slice("kubernetes-v6", "IPv6", "fd00:97::10", 6443),
			    slice("kubernetes", "IPv4", "10.97.0.10", 6443)));
	mg_endpoints_refresh(e);
	assert_int_equal(applies, 1);
	set_answers(NULL, NULL);
	mg_endpoints_free(e);
}

/* A cluster whose API server writes no EndpointSlice (never had one) still
 * gets its ClusterIPs, and is ready. */
static void test_no_slice_ever(void **state)
{
	struct mg_endpoints_opts o = {0};
	struct mg_endpoints *e;

	(void)state;
	applies = 0;
	o.apply = fake_apply;
	o.fetch = fake_fetch;
	assert_int_equal(mg_endpoints_new(&e, &o), 0);
	set_answers(service("[\"10.96.0.1\", \"fd00:96::1\"]"), list_of(NULL, NULL));
	mg_endpoints_refresh(e);
	assert_int_equal(applies, 1);
	assert_int_equal(n_applied, 2);
	assert_true(mg_endpoints_synced(e));
	set_answers(NULL, NULL);
	mg_endpoints_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compute_trusted),
		cmocka_unit_test(test_untrusted_slices_rejected),
		cmocka_unit_test(test_wrong_family_address_skipped),
		cmocka_unit_test(test_refresh_keeps_last_good_set),
		cmocka_unit_test(test_no_slice_ever),
		cmocka_unit_test(test_reordered_answer_is_no_change),
	};

	return cmocka_run_group_tests_name("endpoints", tests, NULL, NULL);
}
