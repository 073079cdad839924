/*
 * conn: the per-pod connection counts behind --max-connections-per-pod
 * (an open-addressing table with backward-shift deletion) and admit()'s
 * caps. The rest of the proxy is covered end to end (tests/e2e).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>

#include "../../userspace/proxy/conn.c"

static struct mg_proxy *fake_proxy(size_t slots, unsigned max, unsigned per_pod)
{
	struct mg_proxy *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	p->n_pod_slots = slots;
	p->pod_slots = calloc(slots, sizeof(*p->pod_slots));
	assert_non_null(p->pod_slots);
	p->o.max_conns = max;
	p->o.max_conns_per_pod = per_pod;
	return p;
}

static void fake_free(struct mg_proxy *p)
{
	free(p->pod_slots);
	free(p);
}

/* Random opens and closes over more keys than fit without collisions in a
 * small table: every count always matches a plain array, and a key whose
 * count fell to zero is gone (its slot reusable). */
static void test_pod_counts_survive_collisions_and_deletions(void **state)
{
	enum { KEYS = 40, STEPS = 200000 };
	struct mg_proxy *p = fake_proxy(64, 1u << 30, 1u << 30);
	unsigned model[KEYS] = {0};
	uint64_t keys[KEYS];
	unsigned seed = 12345;

	(void)state;
	for (int i = 0; i < KEYS; i++)
		keys[i] = (uint64_t)i * 64 + 7; /* many share a home slot */
	for (int step = 0; step < STEPS; step++) {
		int k = (int)(rand_r(&seed) % KEYS);

		if (model[k] && rand_r(&seed) % 2) {
			pod_conn_put(p, keys[k]);
			model[k]--;
		} else if (model[k] < 5) {
			assert_null(admit(p, keys[k]));
			model[k]++;
		}
		if (step % 97 == 0)
			for (int i = 0; i < KEYS; i++)
				assert_int_equal(pod_slot(p, keys[i])->n, model[i]);
	}
	for (int i = 0; i < KEYS; i++)
		while (model[i]--)
			pod_conn_put(p, keys[i]);
	for (size_t i = 0; i < p->n_pod_slots; i++)
		assert_int_equal(p->pod_slots[i].n, 0);
	fake_free(p);
}

static void test_admit_caps_per_pod_then_globally(void **state)
{
	struct mg_proxy *p = fake_proxy(64, 5, 3);

	(void)state;
	for (int i = 0; i < 3; i++)
		assert_null(admit(p, 1));
	assert_string_equal(admit(p, 1), "max_connections_per_pod");
	assert_int_equal(p->st.limited_pod_conns, 1);
	assert_null(admit(p, 2)); /* another pod is not affected */
	p->st.active = 5;
	assert_string_equal(admit(p, 3), "max_connections");
	assert_int_equal(p->st.limited_conns, 1);
	/* connections kept only to answer 429 do not count against the cap */
	p->refusing = 1;
	assert_null(admit(p, 3));
	pod_conn_put(p, 1);
	p->st.active = 1;
	assert_null(admit(p, 1));
	fake_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pod_counts_survive_collisions_and_deletions),
		cmocka_unit_test(test_admit_caps_per_pod_then_globally),
	};

	return cmocka_run_group_tests_name("conn", tests, NULL, NULL);
}
