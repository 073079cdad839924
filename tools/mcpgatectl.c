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
 *
 * Exit status: 0 success, 1 the operation failed, 2 usage.
 */
#include <errno.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "mcpgate/creds.h"
#include "mcpgate/loader.h"
#include "mcpgate/mask.h"

static int usage(void)
{
	fprintf(stderr,
		"usage: mcpgatectl uninstall|status [--pin-dir DIR]\n"
		"       mcpgatectl eks-token --cluster C --region R [--role-arn A]\n"
		"                  [--sts-endpoint regional|global|URL] [--at RFC3339]\n"
		"       mcpgatectl mask [--path URL] [--content-type T] [--content-encoding gzip]\n"
		"                  [--config FILE] [--stats]\n");
	return 2;
}

/* Parses an RFC 3339 UTC time "2026-11-29T01:02:03Z" into <*t>. */
static int parse_rfc3339(const char *s, time_t *t)
{
	struct tm tm = { 0 };
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);

	if (!end || (strcmp(end, "Z") && strcmp(end, "+00:00")))
		return -EINVAL;
	*t = timegm(&tm);
	return 0;
}

static int cmd_eks_token(int argc, char **argv)
{
	struct mg_creds_config cc = { .kind = MG_CREDS_EKS };
	struct mg_creds_result err = { 0 };
	time_t at = 0;
	char *json = NULL;

	for (int i = 2; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			return usage();
		if (!strcmp(argv[i], "--cluster"))
			cc.cluster_name = v;
		else if (!strcmp(argv[i], "--region"))
			cc.region = v;
		else if (!strcmp(argv[i], "--role-arn"))
			cc.role_arn = v;
		else if (!strcmp(argv[i], "--sts-endpoint"))
			cc.sts_endpoint = v;
		else if (!strcmp(argv[i], "--at")) {
			if (parse_rfc3339(v, &at)) {
				fprintf(stderr, "mcpgatectl: --at: expected RFC 3339 UTC, e.g. "
						"2026-11-29T01:02:03Z, got %s\n",
					v);
				return 2;
			}
		} else
			return usage();
		i++;
	}
	if (!cc.cluster_name) {
		fprintf(stderr, "mcpgatectl: eks-token needs --cluster\n");
		return 2;
	}
	if (mg_creds_eks_exec_credential(&cc, at, &json, &err)) {
		fprintf(stderr, "mcpgatectl: eks-token: %s%s%s\n", err.reason,
			err.reason[0] ? ": " : "", err.message);
		mg_creds_result_free(&err);
		return 1;
	}
	fputs(json, stdout);
	explicit_bzero(json, strlen(json));
	free(json);
	return 0;
}

static int cmd_status(const char *pin_dir)
{
	char path[512];
	__u64 vals[1024];
	int fd, ncpu = libbpf_num_possible_cpus();

	snprintf(path, sizeof(path), "%s/counters", pin_dir);
	fd = bpf_obj_get(path);
	if (fd < 0) {
		printf("not installed (%s: %s)\n", pin_dir, strerror(errno));
		return 1;
	}
	printf("installed: %s\n", pin_dir);
	for (__u32 i = 0; i < MG_CNT_MAX && ncpu > 0 && ncpu <= 1024; i++) {
		unsigned long long sum = 0;

		if (bpf_map_lookup_elem(fd, &i, vals))
			break;
		for (int c = 0; c < ncpu; c++)
			sum += vals[c];
		printf("  %-16s %llu\n", mg_loader_counter_names[i], sum);
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	const char *pin_dir = MG_PIN_DIR;
	struct mg_loader_err err;

	if (argc < 2)
		return usage();
	if (!strcmp(argv[1], "eks-token"))
		return cmd_eks_token(argc, argv);
	if (!strcmp(argv[1], "mask"))
		return mg_mask_cli(argc - 1, argv + 1);
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--pin-dir") && i + 1 < argc)
			pin_dir = argv[++i];
		else
			return usage();
	}
	if (!strcmp(argv[1], "uninstall")) {
		if (mg_loader_uninstall(pin_dir, &err)) {
			fprintf(stderr, "mcpgatectl: uninstall: %s\n", err.msg);
			return 1;
		}
		printf("mcpgate interception removed (%s)\n", pin_dir);
		return 0;
	}
	if (!strcmp(argv[1], "status"))
		return cmd_status(pin_dir);
	return usage();
}
