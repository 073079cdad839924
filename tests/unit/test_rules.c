/*
 * mask rules: the configuration (file format errors, detector switches,
 * custom detectors) as it shows in what is masked.
 */
#include "../../userspace/mask/rules.c"
#include "mask_helpers.h"

static void test_detector_switches_and_custom(void **state)
{
	struct mg_mask_cfg cfg;
	struct mg_mask_err err;
	const char *conf = "{\"detectors\":{\"jwt\":false,\"generic-password\":false},"
			   "\"custom\":[{\"name\":\"acme-key\",\"prefix\":\"acme_\",\"charset\":"
			   "\"A-Za-z0-9\",\"min\":8,\"max\":12}]}";
	const char *in = "t eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2ln password=visible "
			 "acme_ABCDEFGHIJKLMNOP acme_short end";
	struct mg_mask_stats st;
	char *out;

	(void)state;
	assert_int_equal(mg_mask_cfg_parse(&cfg, conf, strlen(conf), &err), 0);
	assert_false(cfg.detectors[MG_MASK_DET_JWT]);
	assert_true(cfg.detectors[MG_MASK_DET_GITHUB_TOKEN]);
	assert_int_equal(cfg.n_custom, 1);
	out = text_all_ways(&cfg, in, &st);
	assert_present(out, "eyJzdWIiOiIxMjM0In0");
	assert_present(out, "password=visible");
	/* masked up to max (12) body bytes, the rest of the run stays */
	assert_present(out, "acme_***MASKED:acme-key***MNOP");
	assert_present(out, "acme_short");
	assert_int_equal(st.hits[MG_MASK_DET_BUILTIN], 1);
	assert_string_equal(mg_mask_det_name(&cfg, MG_MASK_DET_BUILTIN), "acme-key");
	free(out);
}

static void test_config_errors(void **state)
{
	static const char *const bad[] = {
		"[]",
		"{\"detector\":{}}",
		"{\"detectors\":{\"nope\":true}}",
		"{\"detectors\":{\"jwt\":1}}",
		"{\"secrets\":\"yes\"}",
		"{\"custom\":[{\"name\":\"Bad "
		"Name\",\"prefix\":\"x\",\"charset\":\"a\",\"min\":1}]}",
		"{\"custom\":[{\"name\":\"k\",\"prefix\":\"\",\"charset\":\"a\",\"min\":1}]}",
		"{\"custom\":[{\"name\":\"k\",\"prefix\":\"x\",\"charset\":\"z-a\",\"min\":1}]}",
		"{\"custom\":[{\"name\":\"k\",\"prefix\":\"x\",\"charset\":\"a\",\"min\":0}]}",
		"{\"custom\":[{\"name\":\"k\",\"prefix\":\"x\",\"charset\":\"a\",\"min\":5,\"max\":"
		"2}]}",
		"{\"custom\":[{\"name\":\"jwt\",\"prefix\":\"x\",\"charset\":\"a\",\"min\":1}]}",
		"{\"custom\":[{\"name\":\"k\",\"prefix\":\"x\",\"charset\":\"a\",\"min\":1,\"x\":1}"
		"]}",
	};
	struct mg_mask_cfg cfg;
	struct mg_mask_err err;
	char path[] = "/tmp/mask_cfg_XXXXXX";
	int fd;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err.reason = NULL;
		if (mg_mask_cfg_parse(&cfg, bad[i], strlen(bad[i]), &err) != -EINVAL)
			fail_msg("config accepted: %s", bad[i]);
		assert_non_null(err.reason);
	}
	/* load from a file */
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"secrets\":false}", 17), 17);
	close(fd);
	assert_int_equal(mg_mask_cfg_load(&cfg, path, &err), 0);
	assert_false(cfg.secrets);
	unlink(path);
	assert_true(mg_mask_cfg_load(&cfg, path, &err) < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_detector_switches_and_custom),
		cmocka_unit_test(test_config_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
