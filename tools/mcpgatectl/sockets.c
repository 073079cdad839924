/*
 * mcpgatectl sockets cut --pod-cgroup DIR [--method auto|kfunc|netlink]
 *                        [--pin-dir DIR]
 */
#include <stdio.h>
#include <string.h>

#include "mcpgate/config.h"
#include "mcpgate/loader.h"

#include "ctl.h"

/* sockets cut: resets every TCP connection that tasks of the pod cgroup DIR
 * (and below) hold to an API endpoint, as the daemon does when a pod becomes
 * selected. */
int ctl_sockets(int argc, char **argv)
{
	enum mg_loader_cut_method m = MG_LOADER_CUT_AUTO;
	const char *pin_dir = MG_PIN_DIR, *dir = NULL, *mname = "auto";
	struct mg_loader_err err;
	int n;

	if (argc < 2 || strcmp(argv[1], "cut"))
		return ctl_usage();
	for (int i = 2; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			return ctl_usage();
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
				fprintf(stderr,
					"mcpgatectl: --method: auto, kfunc or netlink, not %s\n",
					v);
				return 2;
			}
		} else
			return ctl_usage();
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
