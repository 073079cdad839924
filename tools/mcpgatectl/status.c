/*
 * mcpgatectl status [--pin-dir DIR]: is interception installed, what the
 * last daemon wrote (ABI, settings), every counter and the pod cgroups.
 */
#include <stdio.h>

#include "mcpgate/addr.h"
#include "mcpgate/loader.h"

#include "ctl.h"

/* Prints what is pinned under <pin_dir>: the ABI and settings the last
 * daemon wrote, how many pod cgroups are classified, and every counter. */
static int show_status(const char *pin_dir)
{
	char a4[MG_ADDR_STRLEN], a6[MG_ADDR_STRLEN];
	struct mg_loader_status st;
	struct mg_loader_err err;

	if (mg_loader_read_status(pin_dir, &st, &err)) {
		printf("not installed (%s)\n", err.msg);
		return 1;
	}
	printf("installed: %s\n", pin_dir);
	for (size_t i = 0; i < st.n_counters; i++)
		printf("  %-16s %llu\n", mg_loader_counter_names[i],
		       (unsigned long long)st.counters[i]);
	if (st.has_settings)
		printf("abi: v%u (this build v%d)\nproxy: %s %s\nunknown pods: %s\n",
		       st.settings.abi_version, MG_ABI_VERSION,
		       st.settings.proxy4.port ? mg_addr_fmt(&st.settings.proxy4, a4, sizeof(a4))
					       : "-",
		       st.settings.proxy6.port ? mg_addr_fmt(&st.settings.proxy6, a6, sizeof(a6))
					       : "-",
		       st.settings.flags & MG_SET_REFUSE_UNKNOWN ? "refuse" : "pass");
	if (st.has_intercept)
		printf("pod cgroups: %lu selected, %lu pending, %lu pass%s\n",
		       st.pods[MG_POD_SELECTED], st.pods[MG_POD_PENDING], st.pods[MG_POD_PASS],
		       st.pods_other ? ", others unknown" : "");
	return 0;
}

int ctl_status(int argc, char **argv)
{
	const char *pin_dir = MG_PIN_DIR;

	if (ctl_pin_dir(argc, argv, &pin_dir))
		return ctl_usage();
	return show_status(pin_dir);
}
