/*
 * mcpgatectl uninstall [--pin-dir DIR]: detaches the eBPF programs and
 * unpins everything under DIR. The only way interception is removed: a
 * daemon that stops leaves it in place (fail closed).
 */
#include <stdio.h>

#include "mcpgate/config.h"
#include "mcpgate/loader.h"

#include "ctl.h"

int ctl_uninstall(int argc, char **argv)
{
	const char *pin_dir = MG_PIN_DIR;
	struct mg_loader_err err;

	if (ctl_pin_dir(argc, argv, &pin_dir))
		return ctl_usage();
	if (mg_loader_uninstall(pin_dir, &err)) {
		fprintf(stderr, "mcpgatectl: uninstall: %s\n", err.msg);
		return 1;
	}
	printf("mcpgate interception removed (%s)\n", pin_dir);
	return 0;
}
