/*
 * config: defaults, file + flags precedence, and one clear line for every
 * bad value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>

#include "../../userspace/config.c"

static int load(struct mg_config *c, char *err, size_t n, ...)
{
	char *argv[32] = { "mcpgated" };
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
	assert_string_equal(mg_config_fmt_addr(&c.endpoints[0], buf, sizeof(buf)), "10.0.0.1:443");
	assert_string_equal(mg_config_fmt_addr(&c.endpoints[1], buf, sizeof(buf)),
			    "[fd00::2]:6443");
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
	assert_int_equal(load(&c, err, sizeof(err), "--config", "/nonexistent.json", NULL), -EINVAL);
	assert_non_null(strstr(err, "/nonexistent.json"));
	assert_int_equal(load(&c, err, sizeof(err), "--bogus", "1", NULL), -EINVAL);
	assert_int_equal(load(&c, err, sizeof(err), "--manage-address", "maybe", NULL), -EINVAL);
	assert_int_equal(load(&c, err, sizeof(err), "--proxy-addr4", "none", "--proxy-addr6",
			      "none", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "no proxy address"));
	assert_int_equal(load(&c, err, sizeof(err), "--help", NULL), 1);
}

static void test_hostport(void **state)
{
	struct mg_abi_addr a;

	(void)state;
	assert_int_equal(mg_config_parse_hostport("1.2.3.4:5", &a), 0);
	assert_int_equal(mg_config_parse_hostport("[::1]:443", &a), 0);
	assert_int_equal(mg_config_parse_hostport("::1:443", &a), -EINVAL);
	assert_int_equal(mg_config_parse_hostport("1.2.3.4:0", &a), -EINVAL);
	assert_int_equal(mg_config_parse_hostport("1.2.3.4:65536", &a), -EINVAL);
	assert_int_equal(mg_config_parse_hostport("1.2.3.4:44x", &a), -EINVAL);
	assert_int_equal(mg_config_parse_hostport("host:443", &a), -EINVAL);
	assert_int_equal(mg_config_parse_hostport("[1.2.3.4]:443", &a), 0);
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
	assert_int_equal(load(&c, err, sizeof(err), "--config", path, "--unknown-pods", "refuse",
			      NULL),
			 0);
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
		cmocka_unit_test(test_hostport),
		cmocka_unit_test(test_unknown_pods),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
