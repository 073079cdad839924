/*
 * mcpgatectl eks-token --cluster C --region R [--role-arn A]
 *                      [--sts-endpoint regional|global|URL] [--at RFC3339]
 *
 * Prints an ExecCredential with an EKS token, as `aws eks get-token` does,
 * signed with the same credential chain and code the daemon uses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>

#include "mcpgate/creds.h"

#include "ctl.h"

/* Parses an RFC 3339 UTC time "2026-11-29T01:02:03Z" into <*t>. */
static int parse_rfc3339(const char *s, time_t *t)
{
	struct tm tm = {0};
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);

	if (!end || (strcmp(end, "Z") && strcmp(end, "+00:00")))
		return -EINVAL;
	*t = timegm(&tm);
	return 0;
}

/* eks-token: argv[0] is the command name; options from argv[1]. */
int ctl_eks_token(int argc, char **argv)
{
	struct mg_creds_config cc = {.kind = MG_CREDS_EKS};
	struct mg_creds_result err = {0};
	time_t at = 0;
	char *json = NULL;

	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			return ctl_usage();
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
				fprintf(stderr,
					"mcpgatectl: --at: expected RFC 3339 UTC, e.g. "
					"2026-11-29T01:02:03Z, got %s\n",
					v);
				return 2;
			}
		} else
			return ctl_usage();
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
