/*
 * config: mcpgated's settings from one JSON file plus command-line flags
 * (flags win). Every option has the same name in both: `--proxy-port 6443`
 * or {"proxy-port": 6443}. A bad value is one line of error, exit 2.
 */
#ifndef MCPGATE_CONFIG_H
#define MCPGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "mcpgate/abi.h"

#define MG_CONFIG_MAX_ENDPOINTS 32
#define MG_CONFIG_MAX_SANS	16

struct mg_config {
	char node_name[254];
	char cgroup_path[512];
	char pin_dir[256];
	char btf_path[256];
	char proxy_addr4[64]; /* "" when disabled */
	char proxy_addr6[64];
	unsigned proxy_port;
	char proxy_interface[16];
	char fallback_interface[16];
	bool manage_address;
	char api_server[512];
	char api_ca_file[512];
	char api_token_file[512];
	struct mg_abi_addr endpoints[MG_CONFIG_MAX_ENDPOINTS];
	size_t n_endpoints;
	unsigned endpoints_interval; /* seconds */
	char select_labels[1024];
	char select_namespaces[1024];
	char admin_listen[128];
	unsigned upstream_connect_timeout_ms;
	unsigned header_timeout_ms;
	unsigned idle_timeout_ms;
	char ca_cert[512]; /* the mcpgate CA (created if missing) */
	char ca_key[512];
	char cluster_domain[128];
	char tls_sans[MG_CONFIG_MAX_SANS][256]; /* extra DNS names / IPs in the leaf */
	size_t n_tls_sans;
	unsigned leaf_validity; /* seconds */
	/* upstream credentials */
	char creds_provider[32]; /* none | eks | serviceaccount | impersonate */
	char eks_cluster[128];
	char eks_region[32];
	char sts_endpoint[256];
	char sts_ca_file[512];
	char role_arn[256];
	char sa_namespace[64];
	char sa_name[254];
	char sa_audiences[512]; /* comma-separated */
	unsigned sa_expiration;
	char impersonate_user[256];
	char impersonate_groups[512]; /* comma-separated */
	char mask_config[512];	      /* masking configuration (JSON); "" = defaults */
	bool token_review;	      /* check the pod's own token with TokenReview */
	/* limits that keep one pod from starving the node (proxy.h, worker.h) */
	unsigned max_connections;
	unsigned max_connections_per_pod;
	unsigned write_stall_timeout_ms;
	unsigned worker_threads;
	unsigned worker_queue;
	unsigned worker_jobs_per_pod;
	/* kernel: API connects of pod cgroups with no intercept entry yet */
	char unknown_pods[8]; /* "refuse" (MG_SET_REFUSE_UNKNOWN) or "pass" */
	/* control: selected pods' own ServiceAccounts (SubjectAccessReview) */
	unsigned sa_check_interval; /* seconds; 0 = off */
};

/**
 * Fills <c> from defaults, the environment (NODE_NAME,
 * KUBERNETES_SERVICE_HOST/PORT), the file named by --config and the flags
 * in <argc>/<argv>. Returns 0; 1 when --help was printed; -EINVAL with one
 * line in <errbuf> otherwise.
 */
int mg_config_load(struct mg_config *c, int argc, char **argv, char *errbuf, size_t errlen);

#endif /* MCPGATE_CONFIG_H */
