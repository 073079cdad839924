/*
 * mcpgatectl mask: the CLI masks stdin as the proxy would (path hints,
 * content types, exit status), and its request-path split.
 */
#include "../../tools/mcpgatectl/mask.c"
#include "mask_helpers.h"

/* ---- CLI ---- */

/* Runs ctl_mask in a child with <in> on stdin; output and status back. */
static int run_cli(const char *const *args, const char *in, size_t inlen, struct sbuf *out,
		   struct sbuf *errout)
{
	int pin[2], pout[2], perr[2], status;
	pid_t pid;
	char buf[4096];
	ssize_t n;

	assert_int_equal(pipe(pin), 0);
	assert_int_equal(pipe(pout), 0);
	assert_int_equal(pipe(perr), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		int argc = 0;
		char *argv[16];

		dup2(pin[0], 0);
		dup2(pout[1], 1);
		dup2(perr[1], 2);
		close(pin[1]);
		close(pout[0]);
		close(perr[0]);
		while (args[argc]) {
			argv[argc] = (char *)args[argc];
			argc++;
		}
		argv[argc] = NULL;
		_exit(ctl_mask(argc, argv));
	}
	close(pin[0]);
	close(pout[1]);
	close(perr[1]);
	assert_int_equal(write(pin[1], in, inlen), (ssize_t)inlen);
	close(pin[1]);
	while ((n = read(pout[0], buf, sizeof(buf))) > 0)
		sbuf_write(out, buf, (size_t)n);
	while ((n = read(perr[0], buf, sizeof(buf))) > 0)
		sbuf_write(errout, buf, (size_t)n);
	close(pout[0]);
	close(perr[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!out->p)
		sbuf_write(out, "", 0);
	if (!errout->p)
		sbuf_write(errout, "", 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_cli(void **state)
{
	static const char *const get_secret[] = {
		"mask", "--path", "/api/v1/namespaces/a/secrets/db", "--stats", NULL};
	static const char *const watch[] = {"mask", "--path",
					    "/api/v1/namespaces/a/secrets?watch=true", NULL};
	static const char *const logs[] = {"mask", "--path", "/api/v1/namespaces/a/pods/p/log",
					   NULL};
	static const char *const proto[] = {"mask", "--content-type",
					    "application/vnd.kubernetes.protobuf", NULL};
	static const char *const bad[] = {"mask", "--bogus", NULL};
	static const char *const json[] = {"mask", NULL};
	const char *ev = "{\"type\":\"ADDED\",\"object\":{\"data\":{\"a\":\"c2VjcmV0\"}}}\n"
			 "{\"type\":\"ADDED\",\"object\":{\"data\":{\"a\":\"c2VjcmV0\"}}}\n";
	struct sbuf o = {0}, e = {0};

	(void)state;
	assert_int_equal(run_cli(get_secret, secret_doc, strlen(secret_doc), &o, &e), 0);
	assert_absent(o.p, "aHVudGVyMg");
	assert_present(e.p, "\"secretFields\":3");
	sbuf_reset(&o);
	sbuf_reset(&e);
	assert_int_equal(run_cli(watch, ev, strlen(ev), &o, &e), 0);
	assert_absent(o.p, "c2VjcmV0");
	sbuf_reset(&o);
	sbuf_reset(&e);
	assert_int_equal(run_cli(logs, "a password=x\n", 13, &o, &e), 0);
	assert_string_equal(o.p, "a password=***MASKED:generic-password***\n");
	sbuf_reset(&o);
	sbuf_reset(&e);
	assert_int_equal(run_cli(proto, "k8s\0xx", 6, &o, &e), 1);
	assert_present(e.p, "protobuf");
	sbuf_reset(&o);
	sbuf_reset(&e);
	assert_int_equal(run_cli(json, "k8s\0xx", 6, &o, &e), 1);
	sbuf_reset(&o);
	sbuf_reset(&e);
	assert_int_equal(run_cli(json, "{\"kind\":\"Secret\",\"data\":{\"a\":",
				 strlen("{\"kind\":\"Secret\",\"data\":{\"a\":"), &o, &e),
			 1);
	assert_present(e.p, "cannot be masked safely");
	sbuf_reset(&o);
	sbuf_reset(&e);
	assert_int_equal(run_cli(bad, "", 0, &o, &e), 2);
	sbuf_reset(&o);
	sbuf_reset(&e);
}

static void test_cli_path(void **state)
{
	char res[64], sub[64];
	bool w = false;

	(void)state;
	cli_path("/api/v1/namespaces/ns/pods/p/log?follow=true", res, 64, sub, 64, &w);
	assert_string_equal(res, "pods");
	assert_string_equal(sub, "log");
	assert_false(w);
	cli_path("https://k:6443/apis/apps/v1/watch/namespaces/x/deployments", res, 64, sub, 64,
		 &w);
	assert_string_equal(res, "deployments");
	assert_true(w);
	w = false;
	cli_path("/api/v1/secrets?limit=5&watch=1", res, 64, sub, 64, &w);
	assert_string_equal(res, "secrets");
	assert_true(w);
	w = false;
	cli_path("/api/v1/namespaces/kube-system", res, 64, sub, 64, &w);
	assert_string_equal(res, "namespaces");
	cli_path("/healthz", res, 64, sub, 64, &w);
	assert_string_equal(res, "");
	assert_false(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cli),
		cmocka_unit_test(test_cli_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
