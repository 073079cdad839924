/*
 * mcpgatectl mask [--path URL] [--content-type T] [--content-encoding gzip]
 *                 [--config FILE] [--stats]
 *
 * Masks stdin to stdout with the proxy's body masker. The path decides the
 * resource hint, watch (watch=1|true or /watch/) and text (pods/log, exec,
 * attach). Exit status 0, 1 when the input cannot be masked safely (message
 * on stderr; what was written before is safe), 2 for usage errors.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mcpgate/mask.h"

#include "ctl.h"

static int fd_write(void *ctx, const char *p, size_t n)
{
	int fd = *(int *)ctx;

	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* What the request path says: resource, subresource and whether it is a
 * watch. A plain split, not the API server's full RequestInfo rules. */
static void cli_path(const char *path, char *res, size_t rlen, char *sub, size_t slen, bool *watch)
{
	const char *seg[16];
	size_t segl[16], n = 0, i;
	const char *p = path, *q, *e;

	res[0] = sub[0] = 0;
	if ((q = strstr(p, "://")) != NULL) {
		p = strchr(q + 3, '/');
		if (!p)
			return;
	}
	q = strchr(p, '?');
	e = q ? q : p + strlen(p);
	for (const char *a = q ? q + 1 : NULL; a && *a;) {
		const char *amp = strchr(a, '&');
		size_t l = amp ? (size_t)(amp - a) : strlen(a);

		if ((l == 7 && !strncmp(a, "watch=1", 7)) ||
		    (l == 10 && !strncmp(a, "watch=true", 10)))
			*watch = true;
		a = amp ? amp + 1 : NULL;
	}
	while (p < e && n < 16) {
		const char *s;

		while (p < e && *p == '/')
			p++;
		s = p;
		while (p < e && *p != '/')
			p++;
		if (p > s) {
			seg[n] = s;
			segl[n++] = (size_t)(p - s);
		}
	}
#define SEG_IS(k, lit) (segl[k] == sizeof(lit) - 1 && !memcmp(seg[k], lit, segl[k]))
	if (n && SEG_IS(0, "api"))
		i = 2;
	else if (n && SEG_IS(0, "apis"))
		i = 3;
	else
		return;
	if (i < n && SEG_IS(i, "watch")) {
		*watch = true;
		i++;
	}
	if (i + 2 < n && SEG_IS(i, "namespaces"))
		i += 2;
#undef SEG_IS
	if (i < n && segl[i] < rlen) {
		memcpy(res, seg[i], segl[i]);
		res[segl[i]] = 0;
	}
	if (i + 2 < n && segl[i + 2] < slen) {
		memcpy(sub, seg[i + 2], segl[i + 2]);
		sub[segl[i + 2]] = 0;
	}
}

static int cli_usage(FILE *f, int rc)
{
	fprintf(f, "usage: mcpgatectl mask [--path URL] [--content-type TYPE] "
		   "[--content-encoding gzip] [--config FILE] [--stats] < body > masked\n");
	return rc;
}

static void cli_stats(const struct mg_mask_cfg *cfg, const struct mg_mask_stats *st)
{
	fprintf(stderr,
		"{\"secrets\":%llu,\"secretFields\":%llu,\"lastApplied\":%llu,"
		"\"bytesIn\":%llu,\"bytesOut\":%llu,\"hits\":{",
		(unsigned long long)st->secrets, (unsigned long long)st->secret_fields,
		(unsigned long long)st->last_applied, (unsigned long long)st->bytes_in,
		(unsigned long long)st->bytes_out);
	for (unsigned i = 0, first = 1; i < MG_MASK_DET_BUILTIN + cfg->n_custom; i++) {
		if (!st->hits[i])
			continue;
		fprintf(stderr, "%s\"%s\":%llu", first ? "" : ",", mg_mask_det_name(cfg, i),
			(unsigned long long)st->hits[i]);
		first = 0;
	}
	fprintf(stderr, "}}\n");
}

/* argv[0] is the command name; options from argv[1]. */
int ctl_mask(int argc, char **argv)
{
	const char *path = "", *ctype = NULL, *cenc = NULL, *config = NULL;
	bool stats = false, watch = false;
	struct mg_mask_body_opts opts = {.kind = MG_MASK_KIND_JSON};
	struct mg_mask_cfg cfg;
	struct mg_mask_err cerr = {0};
	struct mg_mask_body *b;
	char res[64], sub[64];
	int ofd = 1, rc = 0, ret = 0;
	struct mg_mask_sink out = {fd_write, &ofd};
	static char buf[65536];
	bool first = true;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], **dst = NULL;

		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			return cli_usage(stdout, 0);
		if (!strcmp(a, "--stats")) {
			stats = true;
			continue;
		}
		if (!strcmp(a, "--path"))
			dst = &path;
		else if (!strcmp(a, "--content-type"))
			dst = &ctype;
		else if (!strcmp(a, "--content-encoding"))
			dst = &cenc;
		else if (!strcmp(a, "--config"))
			dst = &config;
		if (!dst || i + 1 >= argc)
			return cli_usage(stderr, 2);
		*dst = argv[++i];
	}
	mg_mask_cfg_default(&cfg);
	if (config && mg_mask_cfg_load(&cfg, config, &cerr)) {
		fprintf(stderr, "mcpgatectl mask: %s: %s\n", config, cerr.reason);
		return 2;
	}
	cli_path(path, res, sizeof(res), sub, sizeof(sub), &watch);
	if (!strcmp(sub, "log") || !strcmp(sub, "exec") || !strcmp(sub, "attach"))
		opts.kind = MG_MASK_KIND_TEXT;
	else if (watch)
		opts.kind = MG_MASK_KIND_JSON_STREAM;
	if (ctype) {
		switch (mg_mask_content_type(mg_str_of(ctype))) {
		case MG_MASK_CT_JSON:
			opts.kind = watch ? MG_MASK_KIND_JSON_STREAM : MG_MASK_KIND_JSON;
			break;
		case MG_MASK_CT_TEXT:
			opts.kind = MG_MASK_KIND_TEXT;
			break;
		case MG_MASK_CT_PROTOBUF:
			fprintf(stderr, "mcpgatectl mask: protobuf bodies cannot be masked; "
					"ask for application/json\n");
			return 1;
		default:
			fprintf(stderr, "mcpgatectl mask: content type %s cannot be masked\n",
				ctype);
			return 1;
		}
	}
	if (cenc && *cenc && strcasecmp(cenc, "identity")) {
		if (strcasecmp(cenc, "gzip")) {
			fprintf(stderr, "mcpgatectl mask: content encoding %s cannot be masked\n",
				cenc);
			return 1;
		}
		opts.gzip = true;
	}
	opts.resource = mg_str_of(res);
	b = mg_mask_body_new(&cfg, &opts);
	if (!b) {
		fprintf(stderr, "mcpgatectl mask: out of memory\n");
		return 1;
	}
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "mcpgatectl mask: read stdin: %s\n", strerror(errno));
			ret = 1;
			goto out;
		}
		if (!n)
			break;
		if (first && !opts.gzip && opts.kind != MG_MASK_KIND_TEXT &&
		    mg_mask_is_protobuf(buf, (size_t)n)) {
			fprintf(stderr, "mcpgatectl mask: protobuf bodies cannot be masked; "
					"ask for application/json\n");
			ret = 1;
			goto out;
		}
		first = false;
		rc = mg_mask_body_feed(b, buf, (size_t)n, &out);
		if (rc)
			break;
	}
	if (!rc)
		rc = mg_mask_body_finish(b, &out);
	if (rc) {
		const struct mg_mask_err *e = mg_mask_body_error(b);

		fprintf(stderr,
			"mcpgatectl mask: input cannot be masked safely: %s (at byte %llu); "
			"output stopped there\n",
			e->reason ? e->reason : strerror(-rc), (unsigned long long)e->pos);
		ret = 1;
	}
	if (stats)
		cli_stats(&cfg, mg_mask_body_stats(b));
out:
	mg_mask_body_free(b);
	return ret;
}
