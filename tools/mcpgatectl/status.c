/*
 * mcpgatectl status [--pin-dir DIR]: is interception installed, what the
 * last daemon wrote (ABI, settings), every counter and the pod cgroups.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "mcpgate/config.h"
#include "mcpgate/loader.h"

#include "ctl.h"

/* Prints what is pinned under <pin_dir>: the ABI and settings the last
 * daemon wrote, how many pod cgroups are classified, and every counter. */
static int show_status(const char *pin_dir)
{
	struct mg_abi_settings st;
	unsigned long n_state[3] = {0}, n_other = 0;
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

int ctl_status(int argc, char **argv)
{
	const char *pin_dir = MG_PIN_DIR;

	if (ctl_pin_dir(argc, argv, &pin_dir))
		return ctl_usage();
	return show_status(pin_dir);
}
