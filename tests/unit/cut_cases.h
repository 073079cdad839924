/*
 * Shared by the mask tests (test_scan.c, test_json.c, ...) and test_tunnel.c: one example per
 * detector for "a candidate cut short by the end of its stream is masked". A stream is "x " <pre>
 * <body>[0..L) for every L in [1, strlen(body)), then it ends (finish, the end of a JSON string, an
 * exec channel's end) or pauses (flush, then <body>[L..] <end> " tail"). What must come out is "x "
 * <out_pre> <marker>, then <end> " tail" after a pause.
 */
#ifndef MG_TEST_CUT_CASES_H
#define MG_TEST_CUT_CASES_H

#include <stdio.h>
#include <stdlib.h>

#include "mcpgate/mask.h"

struct cut_case {
	const char *pre;     /* before the body: a prefix, a keyword, a key id */
	const char *body;    /* the secret part; a cut leaves 1..len-1 bytes of it */
	const char *end;     /* after the body, left visible (a PEM END line) */
	const char *out_pre; /* what <pre> becomes in the output */
	const char *marker;
	unsigned min_end; /* least cut body masked at an end (1: any) */
};

static const struct cut_case cut_cases[] = {
	{"AKIA", "Z7VRSQ5TAVXHXYZQ", "", "AKIA", "***MASKED:aws-access-key***", 1},
	{"ASIA", "Y34FZKBOKMUTVV7A", "", "ASIA", "***MASKED:aws-access-key***", 1},
	/* a keyword value short of 40 chars is a generic password */
	{"aws_secret_access_key=", "tFeBrqk8W6qSg1aK/7mF0bu9AqGzR3xUv+CzWLnQ", "",
	 "aws_secret_access_key=", "***MASKED:generic-password***", 1},
	/* a run after a key id has no prefix: masked at an end from half a key on */
	{"AKIAZ7VRSQ5TAVXHXYZQ ", "tFeBrqk8W6qSg1aK/7mF0bu9AqGzR3xUv+CzWLnQ", "",
	 "AKIA***MASKED:aws-access-key*** ", "***MASKED:aws-secret-key***", 20},
	{"-----BEGIN RSA PRIVATE KEY-----",
	 "\nMIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0\n",
	 "-----END RSA PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----",
	 "***MASKED:private-key***", 1},
	{"eyJ",
	 "hbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50In0."
	 "SIGNATUREsig_-abc",
	 "", "eyJ", "***MASKED:jwt***", 1},
	{"ghp_", "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0dF3gH6", "", "ghp_", "***MASKED:github-token***",
	 1},
	{"github_pat_", "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "", "github_pat_",
	 "***MASKED:github-token***", 1},
	{"glpat-", "xY9z_Kq2-Lm4Np6Rs8Tu", "", "glpat-", "***MASKED:gitlab-token***", 1},
	{"xoxb-", "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "", "xoxb-",
	 "***MASKED:slack-token***", 1},
	{"k8s-aws-v1.", "aHR0cHM6Ly9zdHMuYW1hem9uYXdzLmNvbS8_QWN0aW9uPUdldENhbGxlcklkZW50aXR5", "",
	 "k8s-aws-v1.", "***MASKED:eks-token***", 1},
	{"password=", "hunter2hunter2", "", "password=", "***MASKED:generic-password***", 1},
	{"acme_", "ABCDEFGHIJ", "", "acme_", "***MASKED:acme-key***", 1},
};

#define N_CUT_CASES (sizeof(cut_cases) / sizeof(cut_cases[0]))

/* The default config plus the custom detector of the last case. */
static inline void cut_cfg(struct mg_mask_cfg *cfg)
{
	struct mg_mask_err err;

	mg_mask_cfg_default(cfg);
	if (mg_mask_cfg_add_custom(cfg, "acme-key", "acme_", "A-Z", 8, 0, &err))
		abort();
}

/* "x " <pre> <body>[0..<cut>) into <buf> (NUL-terminated); its length. */
static inline size_t cut_input(char *buf, size_t cap, const struct cut_case *c, size_t cut)
{
	int n = snprintf(buf, cap, "x %s%.*s", c->pre, (int)cut, c->body);

	if (n < 0 || (size_t)n >= cap)
		abort();
	return (size_t)n;
}

/* What must come out for it: "x " <out_pre> <marker>. */
static inline void cut_expect(char *buf, size_t cap, const struct cut_case *c)
{
	int n = snprintf(buf, cap, "x %s%s", c->out_pre, c->marker);

	if (n < 0 || (size_t)n >= cap)
		abort();
}

#endif
