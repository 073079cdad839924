/*
 * mcpgatectl: the operators' and security teams' CLI.
 *
 *   mcpgatectl uninstall [--pin-dir DIR]   detach the eBPF programs, unpin all
 *   mcpgatectl status    [--pin-dir DIR]   is interception installed; counters
 *
 * Exit status: 0 success, 1 the operation failed, 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "mcpgate/loader.h"

static int usage(void)
{
	fprintf(stderr, "usage: mcpgatectl uninstall|status [--pin-dir DIR]\n");
	return 2;
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
