/*
 * Fuzzes the cgroup path -> pod parser: never crashes, and whatever it
 * accepts is self-consistent (a UID that re-parses, a prefix inside the path).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../userspace/net/kube.c"
#include "../../userspace/core/log.c"
#include "../../userspace/node/pods.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mg_pods_cgpath out;
	char *path = malloc(size + 1);

	if (!path)
		return 0;
	memcpy(path, data, size);
	path[size] = '\0';
	if (mg_pods_parse_cgroup_path(path, &out) == 0 && out.kind != MG_PODS_CG_NONE) {
		size_t ul = strlen(out.uid);

		if (ul != 36 && ul != 32)
			abort();
		if (out.pod_prefix_len == 0 || out.pod_prefix_len > strlen(path))
			abort();
		if (out.kind == MG_PODS_CG_POD && out.container_id[0])
			abort();
	}
	free(path);
	return 0;
}
