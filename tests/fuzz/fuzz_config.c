/*
 * Fuzzes the config loader (JSON file + flags). The input is the --config
 * file's bytes, then optionally a NUL and NUL-separated extra argv entries
 * (flags). Properties:
 *   - never crashes, never reads past what it was given (ASan);
 *   - an accepted configuration holds only in-range values: the checks
 *     mg_config_load() promises (ports, intervals, list counts, strings
 *     terminated inside their field);
 *   - a refusal is one printable line (the operator's one line of error,
 *     whatever bytes the file or a flag held);
 *   - loading the same input twice gives the same result (no state left
 *     over from an earlier call, e.g. getopt's).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../userspace/core/config.c"

#define MAX_ARGS 24

/* A NUL inside the field is all "terminated" needs to mean here. */
#define TERMINATED(f) (memchr((f), '\0', sizeof(f)) != NULL)

static void check_accepted(const struct mg_config *c)
{
	if (!TERMINATED(c->node_name) || !TERMINATED(c->cgroup_path) || !TERMINATED(c->pin_dir) ||
	    !TERMINATED(c->proxy_addr4) || !TERMINATED(c->proxy_addr6) ||
	    !TERMINATED(c->api_server) || !TERMINATED(c->select_labels) ||
	    !TERMINATED(c->admin_listen) || !TERMINATED(c->creds_provider) ||
	    !TERMINATED(c->mask_config) || !TERMINATED(c->impersonate_groups))
		abort();
	if (c->proxy_port == 0 || c->proxy_port > 65535)
		abort();
	if (!c->proxy_addr4[0] && !c->proxy_addr6[0])
		abort();
	if (c->n_endpoints > MG_CONFIG_MAX_ENDPOINTS || c->n_tls_sans > MG_CONFIG_MAX_SANS)
		abort();
	for (size_t i = 0; i < c->n_tls_sans; i++)
		if (!TERMINATED(c->tls_sans[i]) || !c->tls_sans[i][0])
			abort();
	if (c->endpoints_interval == 0 || c->leaf_validity < 300)
		abort();
	if (strncmp(c->api_server, "https://", 8))
		abort();
}

static void check_refused(const char *err)
{
	if (!err[0])
		abort();
	for (const char *p = err; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			abort();
}

/* Loads <argv> into <c>; returns mg_config_load's result, <err> filled. */
static int load(struct mg_config *c, int argc, char **argv, char *err, size_t n)
{
	memset(err, 0, n);
	return mg_config_load(c, argc, argv, err, n);
}

/* --help prints the whole option list to stdout: keep the fuzzer's output
 * (stderr) readable. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

	(void)argc;
	(void)argv;
	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		close(fd);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mg_config a, b;
	char *argv[MAX_ARGS + 4], *copy, path[64], ea[512], eb[512];
	const uint8_t *nul = memchr(data, '\0', size);
	size_t flen = nul ? (size_t)(nul - data) : size;
	int argc = 0, fd, ra, rb;

	fd = memfd_create("mg-config", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (write(fd, data, flen) != (ssize_t)flen) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

	/* One heap copy of the flags, so ASan sees any over-read. */
	copy = malloc(size - flen + 1);
	if (!copy) {
		close(fd);
		return 0;
	}
	memcpy(copy, data + flen, size - flen);
	copy[size - flen] = '\0';

	argv[argc++] = "mcpgated";
	argv[argc++] = "--config";
	argv[argc++] = path;
	for (size_t off = 1; nul && off < size - flen && argc < MAX_ARGS + 3;) {
		char *arg = copy + off;
		size_t al = strnlen(arg, size - flen - off);

		/* Another --config (or an abbreviation of it) could name a FIFO
		 * or a device: the file is the input's first part, only. */
		if (!strncmp(arg, "--co", 4))
			arg = "--x";
		argv[argc++] = arg;
		off += al + 1;
	}
	argv[argc] = NULL;

	/* The API server default comes from the environment when unset. */
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	ra = load(&a, argc, argv, ea, sizeof(ea));
	rb = load(&b, argc, argv, eb, sizeof(eb));
	if (ra != rb || strcmp(ea, eb))
		abort();
	if (ra == 0) {
		check_accepted(&a);
		if (memcmp(&a, &b, sizeof(a)))
			abort();
	} else if (ra < 0) {
		check_refused(ea);
	}
	free(copy);
	close(fd);
	return 0;
}
