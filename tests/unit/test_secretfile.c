/*
 * secretfile: token files trimmed the same way everywhere, bounded, re-read
 * when they change, the last good value kept when a read fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../userspace/core/secretfile.c"

static char dir[64];

static const char *put(const char *name, const char *data, size_t len)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "we");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/mg-secretfile-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_trims_trailing_whitespace_only(void **state)
{
	struct mg_secret s = {0};

	(void)state;
	assert_int_equal(mg_secretfile_read(put("t", " ab c \t\r\n\n", 10), &s), 0);
	assert_string_equal(s.ptr, " ab c");
	assert_int_equal(s.len, 5);
	assert_int_equal(mg_secretfile_trim("x\t \r\n", 5), 1);
	assert_int_equal(mg_secretfile_trim("\n\n", 2), 0);
	mg_secret_wipe(&s);
	assert_null(s.ptr);
	assert_int_equal(s.len, 0);
	mg_secret_wipe(&s); /* an empty one is fine */
}

static void test_empty_file_is_empty_secret(void **state)
{
	struct mg_secret s = {0};

	(void)state;
	assert_int_equal(mg_secretfile_read(put("e", "\n", 1), &s), 0);
	assert_int_equal(s.len, 0);
	assert_string_equal(s.ptr, "");
	mg_secret_wipe(&s);
}

static void test_missing_and_oversized_files_refused(void **state)
{
	struct mg_secret s = {0};
	char *big = malloc(MG_SECRETFILE_MAX + 1);
	const char *p;

	(void)state;
	assert_int_equal(mg_secretfile_read("/nonexistent/mg-token", &s), -ENOENT);
	assert_null(s.ptr);
	memset(big, 'a', MG_SECRETFILE_MAX + 1);
	p = put("big", big, MG_SECRETFILE_MAX + 1);
	assert_int_equal(mg_secretfile_read(p, &s), -EFBIG);
	assert_null(s.ptr);
	/* exactly the limit fits */
	p = put("max", big, MG_SECRETFILE_MAX);
	assert_int_equal(mg_secretfile_read(p, &s), 0);
	assert_int_equal(s.len, MG_SECRETFILE_MAX);
	mg_secret_wipe(&s);
	free(big);
}

static void set_mtime(const char *path, time_t sec)
{
	struct timespec ts[2] = {{sec, 0}, {sec, 0}};

	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void test_watched_file_reread_when_changed(void **state)
{
	const char *p = put("w", "one\n", 4);
	struct mg_secretfile *f = mg_secretfile_open(p, 1000);
	struct mg_str s;

	(void)state;
	assert_non_null(f);
	set_mtime(p, 1000);
	s = mg_secretfile_get(f, 10);
	assert_true(mg_str_eq(s, MG_STR("one")));

	/* changed, but inside the recheck interval: the held value */
	put("w", "two\n", 4);
	set_mtime(p, 2000);
	s = mg_secretfile_get(f, 500);
	assert_true(mg_str_eq(s, MG_STR("one")));

	/* interval over, mtime moved: re-read */
	s = mg_secretfile_get(f, 1500);
	assert_true(mg_str_eq(s, MG_STR("two")));

	/* same mtime: not re-read even if the bytes differ */
	put("w", "three", 5);
	set_mtime(p, 2000);
	s = mg_secretfile_get(f, 3000);
	assert_true(mg_str_eq(s, MG_STR("two")));

	/* gone (rotation in progress): the last good value stays */
	assert_int_equal(unlink(p), 0);
	s = mg_secretfile_get(f, 5000);
	assert_true(mg_str_eq(s, MG_STR("two")));
	mg_secretfile_free(f);
	mg_secretfile_free(NULL);
}

static void test_watched_missing_file_is_null(void **state)
{
	struct mg_secretfile *f = mg_secretfile_open("/nonexistent/mg-token", 1000);

	(void)state;
	assert_null(mg_secretfile_get(f, 1).ptr);
	mg_secretfile_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_trims_trailing_whitespace_only),
		cmocka_unit_test(test_empty_file_is_empty_secret),
		cmocka_unit_test(test_missing_and_oversized_files_refused),
		cmocka_unit_test(test_watched_file_reread_when_changed),
		cmocka_unit_test(test_watched_missing_file_is_null),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
