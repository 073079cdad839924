/*
 * mcpgatectl main: the command is picked by name from argv[1] under any
 * program name, from the program name when it carries one
 * (kubectl-mcpgate-<command>, dashes as underscores, as kubectl looks
 * plugins up), and the command sees its own name as argv[0]. The commands
 * are stubs here that record what they were given.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#define main ctl_main
#include "../../tools/mcpgatectl/main.c"
#undef main

static char called[32], first_arg[32];
static int called_argc;

static int record(const char *name, int argc, char **argv)
{
	snprintf(called, sizeof(called), "%s", name);
	snprintf(first_arg, sizeof(first_arg), "%s", argc > 1 ? argv[1] : "");
	called_argc = argc;
	return 0;
}

int ctl_status(int argc, char **argv)
{
	return record("status", argc, argv);
}

int ctl_uninstall(int argc, char **argv)
{
	return record("uninstall", argc, argv);
}

int ctl_eks_token(int argc, char **argv)
{
	return record("eks-token", argc, argv);
}

int ctl_mask(int argc, char **argv)
{
	return record("mask", argc, argv);
}

int ctl_sockets(int argc, char **argv)
{
	return record("sockets", argc, argv);
}

static int run(const char *const *args)
{
	char *argv[8];
	int argc = 0;

	called[0] = first_arg[0] = 0;
	called_argc = 0;
	while (args[argc]) {
		argv[argc] = (char *)args[argc];
		argc++;
	}
	argv[argc] = NULL;
	return ctl_main(argc, argv);
}

static void test_dispatch_by_argv(void **state)
{
	static const struct {
		const char *args[4];
		const char *cmd, *first;
		int argc;
	} cases[] = {
		{{"mcpgatectl", "status", "--pin-dir", NULL}, "status", "--pin-dir", 2},
		{{"/usr/bin/mcpgatectl", "eks-token", "--cluster", NULL},
		 "eks-token",
		 "--cluster",
		 2},
		{{"./build/kubectl-mcpgate", "mask", NULL}, "mask", "", 1},
		{{"kubectl-mcpgate", "uninstall", NULL}, "uninstall", "", 1},
		{{"/x/kubectl-mcpgate-eks_token", "--cluster", "c", NULL},
		 "eks-token",
		 "--cluster",
		 3},
		{{"mcpgatectl-sockets", "cut", NULL}, "sockets", "cut", 2},
		{{"a.out", "sockets", "cut", NULL}, "sockets", "cut", 2},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(run(cases[i].args), 0);
		assert_string_equal(called, cases[i].cmd);
		assert_string_equal(first_arg, cases[i].first);
		assert_int_equal(called_argc, cases[i].argc);
	}
}

static void test_unknown_command_is_usage(void **state)
{
	static const char *const none[] = {"mcpgatectl", NULL};
	static const char *const bogus[] = {"kubectl-mcpgate", "bogus", NULL};
	static const char *const bad_name[] = {"kubectl-mcpgate-bogus", NULL};
	static const char *const long_name[] = {
		"kubectl-mcpgate-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "status",
		NULL};

	(void)state;
	assert_int_equal(run(none), 2);
	assert_int_equal(run(bogus), 2);
	assert_int_equal(run(bad_name), 2);
	assert_string_equal(called, "");
	/* a name too long to be a command is no command name: argv[1] is */
	assert_int_equal(run(long_name), 0);
	assert_string_equal(called, "status");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dispatch_by_argv),
		cmocka_unit_test(test_unknown_command_is_usage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
