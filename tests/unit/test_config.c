/*
 * config: defaults, file + flags precedence, and one clear line for every
 * bad value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>

#include "../../userspace/core/config.c"

static int load(struct mg_config *c, char *err, size_t n, ...)
{
	char *argv[32] = {"mcpgated"};
	int argc = 1;
	va_list ap;
	char *a;

	va_start(ap, n);
	while ((a = va_arg(ap, char *)) && argc < 31)
		argv[argc++] = a;
	va_end(ap);
	return mg_config_load(c, argc, argv, err, n);
}

static void test_defaults(void **state)
{
	struct mg_config c;
	char err[256];

	(void)state;
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	assert_int_equal(load(&c, err, sizeof(err), NULL), 0);
	assert_string_equal(c.api_server, "https://10.96.0.1:443");
	assert_string_equal(c.proxy_addr4, "169.254.77.1");
	assert_int_equal(c.proxy_port, 6443);
	assert_string_equal(c.select_labels, "mcpgate.io/intercept=true");
	assert_string_equal(c.pin_dir, MG_PIN_DIR);
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	assert_int_equal(load(&c, err, sizeof(err), NULL), 0);
	assert_string_equal(c.api_server, "https://[fd00::1]:443");
}

static void test_file_and_flags(void **state)
{
	char path[] = "/tmp/mg-config-test.XXXXXX";
	struct mg_config c;
	char err[256], buf[64];
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");

	(void)state;
	fputs("{\"proxy-port\": 7443, \"api-endpoint\": [\"10.0.0.1:443\", \"[fd00::2]:6443\"],"
	      " \"manage-address\": false, \"select-namespaces\": \"a,b\"}",
	      f);
	fclose(f);
	assert_int_equal(load(&c, err, sizeof(err), "--config", path, "--proxy-port", "8443", NULL),
			 0);
	assert_int_equal(c.proxy_port, 8443); /* the flag wins */
	assert_false(c.manage_address);
	assert_int_equal(c.n_endpoints, 2);
	assert_string_equal(mg_addr_fmt(&c.endpoints[0], buf, sizeof(buf)), "10.0.0.1:443");
	assert_string_equal(mg_addr_fmt(&c.endpoints[1], buf, sizeof(buf)), "[fd00::2]:6443");
	assert_string_equal(c.select_namespaces, "a,b");
	unlink(path);
}

static void test_errors(void **state)
{
	struct mg_config c;
	char err[256];

	(void)state;
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	assert_int_equal(load(&c, err, sizeof(err), "--proxy-port", "x", NULL), -EINVAL);
	assert_non_null(strstr(err, "proxy-port"));
	assert_int_equal(load(&c, err, sizeof(err), "--api-endpoint", "10.0.0.1", NULL), -EINVAL);
	assert_non_null(strstr(err, "ADDR:PORT"));
	assert_int_equal(load(&c, err, sizeof(err), "--proxy-addr4", "fd00::1", NULL), -EINVAL);
	assert_int_equal(load(&c, err, sizeof(err), "--api-server", "http://x", NULL), -EINVAL);
	assert_int_equal(load(&c, err, sizeof(err), "--config", "/nonexistent.json", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "/nonexistent.json"));
	assert_int_equal(load(&c, err, sizeof(err), "--bogus", "1", NULL), -EINVAL);
	assert_int_equal(load(&c, err, sizeof(err), "--manage-address", "maybe", NULL), -EINVAL);
	assert_int_equal(
		load(&c, err, sizeof(err), "--proxy-addr4", "none", "--proxy-addr6", "none", NULL),
		-EINVAL);
	assert_non_null(strstr(err, "no proxy address"));
	assert_int_equal(load(&c, err, sizeof(err), "--help", NULL), 1);
}

/* The limits: defaults from the modules that own them; zero, per pod above
 * the global cap, or more threads than the pool has room for: one line. */
static void test_limits(void **state)
{
	struct mg_config c;
	char err[256];

	(void)state;
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	assert_int_equal(load(&c, err, sizeof(err), NULL), 0);
	assert_int_equal(c.max_connections, MG_PROXY_MAX_CONNS_DEFAULT);
	assert_int_equal(c.max_connections_per_pod, MG_PROXY_MAX_CONNS_PER_POD_DEFAULT);
	assert_int_equal(c.write_stall_timeout_ms, MG_PROXY_WRITE_STALL_MS_DEFAULT);
	assert_int_equal(c.worker_threads, MG_WORKER_THREADS_DEFAULT);
	assert_int_equal(c.worker_queue, MG_WORKER_QUEUE_DEFAULT);
	assert_int_equal(c.worker_jobs_per_pod, MG_WORKER_PER_KEY_DEFAULT);
	assert_int_equal(load(&c, err, sizeof(err), "--max-connections", "100",
			      "--max-connections-per-pod", "10", "--write-stall-timeout", "500",
			      "--worker-threads", "8", "--worker-queue", "9",
			      "--worker-jobs-per-pod", "2", NULL),
			 0);
	assert_int_equal(c.max_connections, 100);
	assert_int_equal(c.max_connections_per_pod, 10);
	assert_int_equal(c.write_stall_timeout_ms, 500);
	assert_int_equal(c.worker_threads, 8);
	assert_int_equal(c.worker_queue, 9);
	assert_int_equal(c.worker_jobs_per_pod, 2);
	static const char *const zero[] = {"--max-connections",	    "--max-connections-per-pod",
					   "--write-stall-timeout", "--worker-threads",
					   "--worker-queue",	    "--worker-jobs-per-pod"};
	for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++) {
		assert_int_equal(load(&c, err, sizeof(err), zero[i], "0", NULL), -EINVAL);
		assert_non_null(strstr(err, "at least 1"));
	}
	assert_int_equal(load(&c, err, sizeof(err), "--max-connections", "10",
			      "--max-connections-per-pod", "11", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "--max-connections-per-pod"));
	assert_int_equal(load(&c, err, sizeof(err), "--worker-threads", "65", NULL), -EINVAL);
	assert_non_null(strstr(err, "--worker-threads"));
	assert_int_equal(load(&c, err, sizeof(err), "--max-connections", "-1", NULL), -EINVAL);
}

/* A refusal must name what was wrong: getopt named the argument before a
 * short-option cluster ("mcpgated"), or a value, not the bad argument. */
static void test_bad_flag_error_names_the_argument(void **state)
{
	struct mg_config c;
	char err[256];

	(void)state;
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	assert_int_equal(load(&c, err, sizeof(err), "-1select-labels", "x", NULL), -EINVAL);
	assert_non_null(strstr(err, "-1select-labels"));
	assert_int_equal(load(&c, err, sizeof(err), "--proxy-port", "1", "-x", NULL), -EINVAL);
	assert_non_null(strstr(err, "-x"));
	assert_int_equal(load(&c, err, sizeof(err), "--proxy-port", NULL), -EINVAL);
	assert_non_null(strstr(err, "--proxy-port"));
	assert_non_null(strstr(err, "value"));
	assert_int_equal(load(&c, err, sizeof(err), "--bogus=1", NULL), -EINVAL);
	assert_non_null(strstr(err, "--bogus"));
	assert_int_equal(load(&c, err, sizeof(err), "stray", NULL), -EINVAL);
	assert_non_null(strstr(err, "stray"));
}

/* Each load starts afresh: a refused short-option cluster left getopt
 * pointing into the old argv, so the next load (the fuzzer's next input,
 * another argv) went on parsing the old one. */
static void test_load_after_a_bad_cluster_starts_afresh(void **state)
{
	struct mg_config c;
	char err[256];
	char *argv[4] = {"mcpgated", NULL, NULL, NULL};

	(void)state;
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	assert_int_equal(load(&c, err, sizeof(err), "-ab", NULL), -EINVAL);
	argv[1] = strdup("--proxy-port");
	argv[2] = strdup("7443");
	assert_int_equal(mg_config_load(&c, 3, argv, err, sizeof(err)), 0);
	assert_int_equal(c.proxy_port, 7443);
	free(argv[1]);
	free(argv[2]);
}

/* Flags take exact names, as the file does: an abbreviation that is unique
 * today would change meaning when an option is added. */
static void test_flag_names_are_exact(void **state)
{
	struct mg_config c;
	char err[256];

	(void)state;
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	assert_int_equal(load(&c, err, sizeof(err), "--proxy-p", "7443", NULL), -EINVAL);
	assert_non_null(strstr(err, "--proxy-p"));
	assert_int_equal(load(&c, err, sizeof(err), "--proxy-port=7443", NULL), 0);
	assert_int_equal(c.proxy_port, 7443);
}

/* The operator gets one line of error whatever bytes a flag or the file
 * held: control characters (a newline, an escape sequence) are shown as '?'. */
static void test_error_is_one_printable_line(void **state)
{
	char path[] = "/tmp/mg-config-test.XXXXXX";
	struct mg_config c;
	char err[256];
	int fd;
	FILE *f;

	(void)state;
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	assert_int_equal(load(&c, err, sizeof(err), "--proxy-port", "1\n2", NULL), -EINVAL);
	assert_null(strpbrk(err, "\n\r\x1b"));
	assert_non_null(strstr(err, "1?2"));
	assert_int_equal(load(&c, err, sizeof(err), "--tls-san", "a\x1b[31mb", NULL), -EINVAL);
	assert_null(strpbrk(err, "\n\r\x1b"));
	assert_int_equal(load(&c, err, sizeof(err), "--bo\ngus", "1", NULL), -EINVAL);
	assert_null(strpbrk(err, "\n\r\x1b"));

	fd = mkstemp(path);
	f = fdopen(fd, "w");
	fputs("{\"line\\nbreak\": 1}", f);
	fclose(f);
	assert_int_equal(load(&c, err, sizeof(err), "--config", path, NULL), -EINVAL);
	assert_null(strpbrk(err, "\n\r\x1b"));
	assert_non_null(strstr(err, "line?break"));
	unlink(path);
}

static void test_hostport(void **state)
{
	struct mg_abi_addr a;

	(void)state;
	assert_int_equal(mg_addr_parse_hostport("1.2.3.4:5", &a), 0);
	assert_int_equal(mg_addr_parse_hostport("[::1]:443", &a), 0);
	assert_int_equal(mg_addr_parse_hostport("::1:443", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("1.2.3.4:0", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("1.2.3.4:65536", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("1.2.3.4:44x", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("host:443", &a), -EINVAL);
	assert_int_equal(mg_addr_parse_hostport("[1.2.3.4]:443", &a), 0);
}

/* --unknown-pods: refuse or pass, from a flag or the file; anything else is
 * one line naming the option. */
static void test_unknown_pods(void **state)
{
	char path[] = "/tmp/mg-config-test.XXXXXX";
	struct mg_config c;
	char err[256];
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");

	(void)state;
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	/* refuse by default: the pods module gives every pod cgroup an entry */
	assert_int_equal(load(&c, err, sizeof(err), NULL), 0);
	assert_string_equal(c.unknown_pods, "refuse");
	assert_int_equal(load(&c, err, sizeof(err), "--unknown-pods", "pass", NULL), 0);
	assert_string_equal(c.unknown_pods, "pass");
	fputs("{\"unknown-pods\": \"pass\"}", f);
	fclose(f);
	assert_int_equal(load(&c, err, sizeof(err), "--config", path, NULL), 0);
	assert_string_equal(c.unknown_pods, "pass");
	assert_int_equal(
		load(&c, err, sizeof(err), "--config", path, "--unknown-pods", "refuse", NULL), 0);
	assert_string_equal(c.unknown_pods, "refuse");
	unlink(path);
	assert_int_equal(load(&c, err, sizeof(err), "--unknown-pods", "deny", NULL), -EINVAL);
	assert_non_null(strstr(err, "--unknown-pods: refuse or pass"));
	assert_int_equal(load(&c, err, sizeof(err), "--unknown-pods", "", NULL), -EINVAL);
	assert_int_equal(load(&c, err, sizeof(err), "--unknown-pods", "refuse-all", NULL), -EINVAL);
	assert_non_null(strstr(err, "unknown-pods"));
	/* the ServiceAccount check: every 300 s unless told, 0 turns it off */
	assert_int_equal(load(&c, err, sizeof(err), NULL), 0);
	assert_int_equal(c.sa_check_interval, 300);
	assert_int_equal(load(&c, err, sizeof(err), "--sa-check-interval", "0", NULL), 0);
	assert_int_equal(c.sa_check_interval, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_file_and_flags),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_hostport),
		cmocka_unit_test(test_bad_flag_error_names_the_argument),
		cmocka_unit_test(test_load_after_a_bad_cluster_starts_afresh),
		cmocka_unit_test(test_flag_names_are_exact),
		cmocka_unit_test(test_error_is_one_printable_line),
		cmocka_unit_test(test_unknown_pods),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
