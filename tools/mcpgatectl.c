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

#include "mcpgate/config.h"
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
		"                  [--config FILE] [--stats]\n"
		"       mcpgatectl sockets cut --pod-cgroup DIR [--method auto|kfunc|netlink]\n"
		"                  [--pin-dir DIR]\n");
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

/* Prints what is pinned under <pin_dir>: the ABI and settings the last
 * daemon wrote, how many pod cgroups are classified, and every counter. */
static int cmd_status(const char *pin_dir)
{
	struct mg_abi_settings st;
	unsigned long n_state[3] = { 0 }, n_other = 0;
	char path[512], a4[64], a6[64];
	__u64 vals[1024], key, next;
	int fd, ncpu = libbpf_num_possible_cpus();
	void *prev = NULL;
	__u32 zero = 0;

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

	snprintf(path, sizeof(path), "%s/settings", pin_dir);
	fd = bpf_obj_get(path);
	if (fd >= 0 && bpf_map_lookup_elem(fd, &zero, &st) == 0)
		printf("abi: v%u (this build v%d)\nproxy: %s %s\nunknown pods: %s\n",
		       st.abi_version, MG_ABI_VERSION,
		       st.proxy4.port ? mg_config_fmt_addr(&st.proxy4, a4, sizeof(a4)) : "-",
		       st.proxy6.port ? mg_config_fmt_addr(&st.proxy6, a6, sizeof(a6)) : "-",
		       st.flags & MG_SET_REFUSE_UNKNOWN ? "refuse" : "pass");
	if (fd >= 0)
		close(fd);

	snprintf(path, sizeof(path), "%s/intercept", pin_dir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		struct mg_abi_pod v;

		if (bpf_map_lookup_elem(fd, &next, &v) == 0) {
			if (v.state < 3)
				n_state[v.state]++;
			else
				n_other++;
		}
		key = next;
		prev = &key;
	}
	close(fd);
	printf("pod cgroups: %lu selected, %lu pending, %lu pass%s\n", n_state[MG_POD_SELECTED],
	       n_state[MG_POD_PENDING], n_state[MG_POD_PASS], n_other ? ", others unknown" : "");
	return 0;
}

/* sockets cut: resets every TCP connection that tasks of the pod cgroup DIR
 * (and below) hold to an API endpoint, as the daemon does when a pod becomes
 * selected. */
static int cmd_sockets(int argc, char **argv)
{
	enum mg_loader_cut_method m = MG_LOADER_CUT_AUTO;
	const char *pin_dir = MG_PIN_DIR, *dir = NULL, *mname = "auto";
	struct mg_loader_err err;
	int n;

	if (argc < 3 || strcmp(argv[2], "cut"))
		return usage();
	for (int i = 3; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			return usage();
		if (!strcmp(argv[i], "--pod-cgroup"))
			dir = v;
		else if (!strcmp(argv[i], "--pin-dir"))
			pin_dir = v;
		else if (!strcmp(argv[i], "--method")) {
			mname = v;
			if (!strcmp(v, "auto"))
				m = MG_LOADER_CUT_AUTO;
			else if (!strcmp(v, "kfunc"))
				m = MG_LOADER_CUT_KFUNC;
			else if (!strcmp(v, "netlink"))
				m = MG_LOADER_CUT_NETLINK;
			else {
				fprintf(stderr, "mcpgatectl: --method: auto, kfunc or netlink, not %s\n",
					v);
				return 2;
			}
		} else
			return usage();
		i++;
	}
	if (!dir) {
		fprintf(stderr, "mcpgatectl: sockets cut needs --pod-cgroup DIR\n");
		return 2;
	}
	n = mg_loader_cut_pod_sockets(pin_dir, dir, m, &err);
	if (n < 0) {
		fprintf(stderr, "mcpgatectl: sockets cut: %s\n", err.msg);
		return 1;
	}
	printf("cut %d connection%s of %s to the API server (method %s)\n", n, n == 1 ? "" : "s",
	       dir, mname);
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
	if (!strcmp(argv[1], "sockets"))
		return cmd_sockets(argc, argv);
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
