/*
 * mcpgatectl: the operators' and security teams' CLI.
 *
 *   mcpgatectl uninstall [--pin-dir DIR]   detach the eBPF programs, unpin all
 *   mcpgatectl status    [--pin-dir DIR]   is interception installed; counters
 *   mcpgatectl eks-token --cluster C --region R [--role-arn A]
 *                        [--sts-endpoint regional|global|URL] [--at RFC3339]
 *                                           an ExecCredential, as `aws eks get-token`
 *   mcpgatectl mask [--path URL] [--content-type T] [--config FILE]
 *                                           mask stdin to stdout as the proxy would
 *   mcpgatectl sockets cut --pod-cgroup DIR [--method auto|kfunc|netlink] [--pin-dir DIR]
 *                                           reset the pod's open API connections
 *
 * One file per command (ctl.h); this one only picks the command. The same
 * binary is the kubectl plugin: installed (or symlinked, as the build does)
 * as `kubectl-mcpgate`, `kubectl mcpgate status` runs it with argv[0]
 * "kubectl-mcpgate" and the command in argv[1]; kubectl also looks for
 * `kubectl-mcpgate-<command>` (dashes of the command as underscores), so a
 * name with a command after the prefix runs that command.
 *
 * Exit status: 0 success, 1 the operation failed, 2 usage.
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

static const struct {
	const char *name;
	ctl_cmd_fn *run;
} commands[] = {
	{"eks-token", ctl_eks_token}, {"mask", ctl_mask},	    {"sockets", ctl_sockets},
	{"status", ctl_status},	      {"uninstall", ctl_uninstall},
};

int ctl_usage(void)
{
	fprintf(stderr,
		"usage: mcpgatectl uninstall|status [--pin-dir DIR]\n"
		"       mcpgatectl eks-token --cluster C --region R [--role-arn A]\n"
		"                  [--sts-endpoint regional|global|URL] [--at RFC3339]\n"
		"       mcpgatectl mask [--path URL] [--content-type T] [--content-encoding gzip]\n"
		"                  [--config FILE] [--stats]\n"
		"       mcpgatectl sockets cut --pod-cgroup DIR [--method auto|kfunc|netlink]\n"
		"                  [--pin-dir DIR]\n"
		"       (also as kubectl-mcpgate: kubectl mcpgate status, ...)\n");
	return 2;
}

/* Shared by the commands whose only option is --pin-dir: sets <*pin_dir>
 * from argv[1..]. Returns 0, or -1 on anything else. */
int ctl_pin_dir(int argc, char **argv, const char **pin_dir)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--pin-dir") || i + 1 >= argc)
			return -1;
		*pin_dir = argv[++i];
	}
	return 0;
}

/* The command a program name carries after "mcpgatectl" / "kubectl-mcpgate"
 * ("kubectl-mcpgate-eks_token" → "eks-token", written into <buf>), "" when
 * there is none (the command is then argv[1]), or NULL for a name that is
 * neither. */
static const char *command_of_name(const char *argv0, char *buf, size_t size)
{
	const char *base = strrchr(argv0, '/');
	size_t i;

	base = base ? base + 1 : argv0;
	if (!strncmp(base, "kubectl-", 8))
		base += 8;
	if (strncmp(base, "mcpgate", 7))
		return NULL;
	base += 7;
	if (!strncmp(base, "ctl", 3))
		base += 3;
	if (!*base)
		return "";
	if (*base != '-' || strlen(base + 1) >= size)
		return NULL;
	for (i = 0; base[i + 1]; i++)
		buf[i] = base[i + 1] == '_' ? '-' : base[i + 1];
	buf[i] = 0;
	return buf;
}

int main(int argc, char **argv)
{
	const char *name = NULL;
	char buf[32];

	if (argc >= 1)
		name = command_of_name(argv[0], buf, sizeof(buf));
	if (name && !*name) {
		/* the command is the first argument */
		if (argc < 2)
			return ctl_usage();
		argc--;
		argv++;
		name = argv[0];
	}
	if (!name)
		name = argc >= 2 ? (argc--, argv++, argv[0]) : "";
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(name, commands[i].name))
			return commands[i].run(argc, argv);
	return ctl_usage();
}
