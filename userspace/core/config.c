/*
 * config: defaults < environment < --config file < flags. See config.h.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>

#include "mcpgate/config.h"
#include "mcpgate/addr.h"
#include "mcpgate/proxy.h"
#include "mcpgate/worker.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* What a certificate name may hold: DNS labels (and a leading wildcard)
 * or an IP literal. Anything else would go into the leaf's SAN as is. */
#define SAN_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:*_"

enum opt_kind { OPT_STR, OPT_UINT, OPT_BOOL, OPT_ENDPOINT, OPT_SAN };

struct opt {
	const char *name;
	enum opt_kind kind;
	size_t off;  /* into struct mg_config */
	size_t size; /* of a string field */
	const char *help;
};

static const struct opt opts[] = {
	{"node-name", OPT_STR, offsetof(struct mg_config, node_name), 254,
	 "this node's name, for the node-scoped pod watch (default: $NODE_NAME, else hostname)"},
	{"cgroup-path", OPT_STR, offsetof(struct mg_config, cgroup_path), 512,
	 "cgroup v2 directory to attach at: the kubepods cgroup (default: found under "
	 "/sys/fs/cgroup or /sys/fs/cgroup/unified)"},
	{"pin-dir", OPT_STR, offsetof(struct mg_config, pin_dir), 256,
	 "bpffs directory for pinned maps and links (default " MG_PIN_DIR ")"},
	{"btf-path", OPT_STR, offsetof(struct mg_config, btf_path), 256,
	 "kernel BTF to require (default /sys/kernel/btf/vmlinux)"},
	{"proxy-addr4", OPT_STR, offsetof(struct mg_config, proxy_addr4), 64,
	 "IPv4 address the redirected connections go to, or none (default 169.254.77.1)"},
	{"proxy-addr6", OPT_STR, offsetof(struct mg_config, proxy_addr6), 64,
	 "IPv6 address the redirected connections go to, or none (default fd00:6d67::1)"},
	{"proxy-port", OPT_UINT, offsetof(struct mg_config, proxy_port), 0,
	 "proxy port (default 6443)"},
	{"proxy-interface", OPT_STR, offsetof(struct mg_config, proxy_interface), 16,
	 "dummy interface that holds the proxy addresses (default mcpgate0)"},
	{"fallback-interface", OPT_STR, offsetof(struct mg_config, fallback_interface), 16,
	 "interface used when the kernel has no dummy links (default lo)"},
	{"manage-address", OPT_BOOL, offsetof(struct mg_config, manage_address), 0,
	 "add the proxy addresses to the interface (default true; false: they exist already)"},
	{"api-server", OPT_STR, offsetof(struct mg_config, api_server), 512,
	 "API server URL for the daemon's own calls (default "
	 "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)"},
	{"api-ca-file", OPT_STR, offsetof(struct mg_config, api_ca_file), 512,
	 "CA bundle verifying the API server (default " SA_DIR "/ca.crt)"},
	{"api-token-file", OPT_STR, offsetof(struct mg_config, api_token_file), 512,
	 "the daemon's bearer token, re-read on every call (default " SA_DIR "/token)"},
	{"api-endpoint", OPT_ENDPOINT, 0, 0,
	 "ADDR:PORT to intercept besides the kubernetes Service and EndpointSlice; "
	 "repeatable (e.g. the EKS endpoint's addresses)"},
	{"endpoints-interval", OPT_UINT, offsetof(struct mg_config, endpoints_interval), 0,
	 "seconds between refreshes of the API endpoints (default 10)"},
	{"select-labels", OPT_STR, offsetof(struct mg_config, select_labels), 1024,
	 "label selector of the pods to intercept (default mcpgate.io/intercept=true)"},
	{"select-namespaces", OPT_STR, offsetof(struct mg_config, select_namespaces), 1024,
	 "comma-separated namespaces to intercept in (default: all)"},
	{"admin-listen", OPT_STR, offsetof(struct mg_config, admin_listen), 128,
	 "ADDR:PORT of the admin listener: /healthz /readyz /metrics (default 127.0.0.1:9940)"},
	{"upstream-connect-timeout", OPT_UINT,
	 offsetof(struct mg_config, upstream_connect_timeout_ms), 0,
	 "milliseconds to connect upstream, TLS included (default 5000)"},
	{"header-timeout", OPT_UINT, offsetof(struct mg_config, header_timeout_ms), 0,
	 "milliseconds a client has to send a request head (default 30000)"},
	{"idle-timeout", OPT_UINT, offsetof(struct mg_config, idle_timeout_ms), 0,
	 "milliseconds an idle keep-alive client connection is kept (default 90000)"},
	{"ca-cert", OPT_STR, offsetof(struct mg_config, ca_cert), 512,
	 "the mcpgate CA certificate the pods trust; created with --ca-key if missing "
	 "(default /var/lib/mcpgate/ca.crt)"},
	{"ca-key", OPT_STR, offsetof(struct mg_config, ca_key), 512,
	 "the mcpgate CA key, mode 0600 (default /var/lib/mcpgate/ca.key)"},
	{"cluster-domain", OPT_STR, offsetof(struct mg_config, cluster_domain), 128,
	 "cluster DNS domain for kubernetes.default.svc.<domain> (default cluster.local)"},
	{"tls-san", OPT_SAN, 0, 0,
	 "extra DNS name or IP in the proxy's certificate (e.g. the EKS endpoint host); "
	 "repeatable"},
	{"leaf-validity", OPT_UINT, offsetof(struct mg_config, leaf_validity), 0,
	 "seconds the proxy's certificate is valid; renewed at 2/3 (default 86400)"},
	{"creds-provider", OPT_STR, offsetof(struct mg_config, creds_provider), 32,
	 "upstream credential: none (the daemon's --api-token-file), eks, serviceaccount or "
	 "impersonate (default none)"},
	{"eks-cluster", OPT_STR, offsetof(struct mg_config, eks_cluster), 128,
	 "eks: the cluster name signed into the token (x-k8s-aws-id)"},
	{"eks-region", OPT_STR, offsetof(struct mg_config, eks_region), 32,
	 "eks: the AWS region of the STS endpoint"},
	{"sts-endpoint", OPT_STR, offsetof(struct mg_config, sts_endpoint), 256,
	 "eks: regional (default), global, or an https:// URL"},
	{"sts-ca-file", OPT_STR, offsetof(struct mg_config, sts_ca_file), 512,
	 "eks: CA bundle for an https:// --sts-endpoint URL (default: the system store)"},
	{"role-arn", OPT_STR, offsetof(struct mg_config, role_arn), 256,
	 "eks: IAM role assumed per pod (session mcpgate-<ns>-<pod>, SourceIdentity = pod "
	 "uid); empty: sign with the daemon's own AWS credentials"},
	{"sa-namespace", OPT_STR, offsetof(struct mg_config, sa_namespace), 64,
	 "serviceaccount: namespace of the executor ServiceAccount (default: the pod's)"},
	{"sa-name", OPT_STR, offsetof(struct mg_config, sa_name), 254,
	 "serviceaccount: the executor ServiceAccount (default: the pod's own)"},
	{"sa-audiences", OPT_STR, offsetof(struct mg_config, sa_audiences), 512,
	 "serviceaccount: comma-separated token audiences (default: the API server's)"},
	{"sa-expiration", OPT_UINT, offsetof(struct mg_config, sa_expiration), 0,
	 "serviceaccount: TokenRequest expirationSeconds, >= 600 (default 3600)"},
	{"impersonate-user", OPT_STR, offsetof(struct mg_config, impersonate_user), 256,
	 "impersonate: user template, {namespace} {pod} {uid} {serviceaccount} (default "
	 "system:serviceaccount:{namespace}:{serviceaccount})"},
	{"impersonate-groups", OPT_STR, offsetof(struct mg_config, impersonate_groups), 512,
	 "impersonate: comma-separated group templates"},
	{"mask-config", OPT_STR, offsetof(struct mg_config, mask_config), 512,
	 "JSON file: which detectors mask responses, custom patterns (see mcpgatectl mask; "
	 "default: Secrets and every detector)"},
	{"token-review", OPT_BOOL, offsetof(struct mg_config, token_review), 0,
	 "check each pod's own token with a TokenReview: it must belong to the pod's "
	 "ServiceAccount, else 401 (default false)"},
/* limits; README "Limits" relates them to the DaemonSet's memory */
#define LIM_STR(x)  #x
#define LIM_XSTR(x) LIM_STR(x)
#define LIM_OPT(name, field, help, dflt)                                                           \
	{                                                                                          \
		name, OPT_UINT, offsetof(struct mg_config, field), 0,                              \
			help " (default " LIM_XSTR(dflt) ")"                                       \
	}
	LIM_OPT("max-connections", max_connections,
		"client connections open at once; past it a 429 with Retry-After",
		MG_PROXY_MAX_CONNS_DEFAULT),
	LIM_OPT("max-connections-per-pod", max_connections_per_pod,
		"client connections one pod may have open; past it a 429 with Retry-After",
		MG_PROXY_MAX_CONNS_PER_POD_DEFAULT),
	LIM_OPT("write-stall-timeout", write_stall_timeout_ms,
		"milliseconds a client may read nothing of a pending response before both "
		"sides are closed",
		MG_PROXY_WRITE_STALL_MS_DEFAULT),
	LIM_OPT("worker-threads", worker_threads,
		"threads for credential fetches and TokenReviews (at most 64)",
		MG_WORKER_THREADS_DEFAULT),
	LIM_OPT("worker-queue", worker_queue,
		"credential/TokenReview jobs waiting for a thread; past it a 429",
		MG_WORKER_QUEUE_DEFAULT),
	LIM_OPT("worker-jobs-per-pod", worker_jobs_per_pod,
		"credential/TokenReview jobs of one pod in flight; past it a 429",
		MG_WORKER_PER_KEY_DEFAULT),
#undef LIM_OPT
#undef LIM_XSTR
#undef LIM_STR
	{"unknown-pods", OPT_STR, offsetof(struct mg_config, unknown_pods), 8,
	 "refuse or pass: API connects (and packets to API endpoints) of a pod cgroup the "
	 "daemon has not classified yet, e.g. created while it was down (default refuse; "
	 "the daemon gives every pod cgroup it sees an entry)"},
	{"sa-check-interval", OPT_UINT, offsetof(struct mg_config, sa_check_interval), 0,
	 "seconds between SubjectAccessReview checks that selected pods' own ServiceAccounts "
	 "can do nothing beyond discovery (default 300; 0: off)"},
};
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static int err_line(char *errbuf, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int err_line(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
	/* Values come from the file and the command line: a newline or an
	 * escape sequence in one must not turn the one line into several. */
	for (char *p = errbuf; errlen && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return -EINVAL;
}

static int set_uint(struct mg_config *c, const struct opt *o, const char *v, char *errbuf,
		    size_t errlen)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || !*v || n > 1000000000UL || *v == '-')
		return err_line(errbuf, errlen, "--%s: not a number: %s", o->name, v);
	*(unsigned *)((char *)c + o->off) = (unsigned)n;
	return 0;
}

/* Sets option <o> from its textual value <v> (a flag or a JSON scalar
 * turned into text). */
static int set_opt(struct mg_config *c, const struct opt *o, const char *v, char *errbuf,
		   size_t errlen)
{
	switch (o->kind) {
	case OPT_STR:
		if (strlen(v) >= o->size)
			return err_line(errbuf, errlen, "--%s: value too long", o->name);
		strcpy((char *)c + o->off, v);
		return 0;
	case OPT_UINT:
		return set_uint(c, o, v, errbuf, errlen);
	case OPT_BOOL:
		if (!strcmp(v, "true") || !strcmp(v, "1"))
			*(bool *)((char *)c + o->off) = true;
		else if (!strcmp(v, "false") || !strcmp(v, "0"))
			*(bool *)((char *)c + o->off) = false;
		else
			return err_line(errbuf, errlen, "--%s: expected true or false, got %s",
					o->name, v);
		return 0;
	case OPT_SAN:
		if (c->n_tls_sans == MG_CONFIG_MAX_SANS)
			return err_line(errbuf, errlen, "--%s: more than %d names", o->name,
					MG_CONFIG_MAX_SANS);
		if (!*v || strlen(v) >= sizeof(c->tls_sans[0]) || strspn(v, SAN_CHARS) != strlen(v))
			return err_line(errbuf, errlen, "--%s: not a DNS name or IP: %s", o->name,
					v);
		strcpy(c->tls_sans[c->n_tls_sans++], v);
		return 0;
	case OPT_ENDPOINT:
		if (c->n_endpoints == MG_CONFIG_MAX_ENDPOINTS)
			return err_line(errbuf, errlen, "--%s: more than %d endpoints", o->name,
					MG_CONFIG_MAX_ENDPOINTS);
		if (mg_addr_parse_hostport(v, &c->endpoints[c->n_endpoints]))
			return err_line(errbuf, errlen,
					"--%s: expected ADDR:PORT or [ADDR6]:PORT, got %s", o->name,
					v);
		c->n_endpoints++;
		return 0;
	}
	return -EINVAL;
}

static const struct opt *find_opt(const char *name)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (!strcmp(opts[i].name, name))
			return &opts[i];
	return NULL;
}

static int load_file(struct mg_config *c, const char *path, char *errbuf, size_t errlen)
{
	json_error_t jerr;
	const char *key;
	json_t *root, *val;
	int rc = 0;

	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return err_line(errbuf, errlen, "config %s:%d: %s", path, jerr.line, jerr.text);
	if (!json_is_object(root)) {
		json_decref(root);
		return err_line(errbuf, errlen, "config %s: top level must be an object", path);
	}
	json_object_foreach(root, key, val)
	{
		const struct opt *o = find_opt(key);
		char num[32];

		if (!o || !strcmp(key, "config")) {
			rc = err_line(errbuf, errlen, "config %s: unknown option \"%s\"", path,
				      key);
			break;
		}
		if ((o->kind == OPT_ENDPOINT || o->kind == OPT_SAN) && json_is_array(val)) {
			size_t i;
			json_t *e;

			json_array_foreach(val, i, e)
			{
				if (!json_is_string(e)) {
					rc = err_line(errbuf, errlen,
						      "config %s: %s: expected strings", path, key);
					break;
				}
				rc = set_opt(c, o, json_string_value(e), errbuf, errlen);
				if (rc)
					break;
			}
		} else if (json_is_string(val) && o->kind != OPT_UINT && o->kind != OPT_BOOL) {
			rc = set_opt(c, o, json_string_value(val), errbuf, errlen);
		} else if (json_is_integer(val) && o->kind == OPT_UINT) {
			snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(val));
			rc = set_opt(c, o, num, errbuf, errlen);
		} else if (json_is_boolean(val) && o->kind == OPT_BOOL) {
			rc = set_opt(c, o, json_is_true(val) ? "true" : "false", errbuf, errlen);
		} else {
			rc = err_line(errbuf, errlen, "config %s: %s: wrong type", path, key);
		}
		if (rc)
			break;
	}
	json_decref(root);
	return rc;
}

static void print_help(void)
{
	printf("usage: mcpgated [--config FILE] [--OPTION VALUE ...]\n\n"
	       "mcpgate node daemon: attaches the eBPF redirect at the kubepods cgroup and\n"
	       "proxies selected pods' API-server connections. Every option can also be set\n"
	       "in the JSON --config file under the same name; flags win.\n\n"
	       "  --config FILE                 JSON file of options\n");
	for (size_t i = 0; i < N_OPTS; i++) {
		char left[64];

		snprintf(left, sizeof(left), "--%s %s", opts[i].name,
			 opts[i].kind == OPT_BOOL ? "BOOL" : "VALUE");
		printf("  %-29s %s\n", left, opts[i].help);
	}
	printf("  --help                        this text\n\n"
	       "Exit status: 0 clean stop (SIGTERM/SIGINT; interception stays in place),\n"
	       "2 bad configuration or environment (one line on stderr says which).\n");
}

/* Picks the kubepods cgroup of this node: systemd driver first. */
static void default_cgroup_path(char *out, size_t len)
{
	static const char *const cands[] = {
		"/sys/fs/cgroup/kubepods.slice",
		"/sys/fs/cgroup/kubepods",
		"/sys/fs/cgroup/unified/kubepods.slice",
		"/sys/fs/cgroup/unified/kubepods",
	};

	for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++)
		if (access(cands[i], F_OK) == 0) {
			snprintf(out, len, "%s", cands[i]);
			return;
		}
	snprintf(out, len, "%s", cands[0]);
}

enum { FLAG_CONFIG = N_OPTS, FLAG_HELP };

/*
 * Reads the flag at <argv>[<*i>] ("--name VALUE" or "--name=VALUE") and
 * advances <*i> past it and its value, which goes to <*val>. Names are exact,
 * as in the file: an abbreviation unique today would change meaning when an
 * option is added. No getopt: it keeps state between calls (a short-option
 * cluster it refused is resumed by the next call, on another argv).
 * Returns the index in opts[], FLAG_CONFIG, FLAG_HELP, or -EINVAL.
 */
static int next_flag(int argc, char **argv, int *i, const char **val, char *errbuf, size_t errlen)
{
	const char *arg = argv[*i], *name = arg + 2, *eq;
	const struct opt *o;
	char buf[64];
	size_t nl;
	int idx;

	if (strncmp(arg, "--", 2) || !*name)
		return err_line(errbuf, errlen, "unexpected argument %s (see --help)", arg);
	eq = strchr(name, '=');
	nl = eq ? (size_t)(eq - name) : strlen(name);
	if (nl >= sizeof(buf))
		return err_line(errbuf, errlen, "unknown option %.*s... (see --help)", 40, arg);
	memcpy(buf, name, nl);
	buf[nl] = '\0';
	if (!strcmp(buf, "help")) {
		(*i)++;
		return FLAG_HELP;
	}
	o = find_opt(buf);
	idx = !strcmp(buf, "config") ? FLAG_CONFIG : o ? (int)(o - opts) : -1;
	if (idx < 0)
		return err_line(errbuf, errlen, "unknown option --%s (see --help)", buf);
	if (eq) {
		*val = eq + 1;
	} else if (*i + 1 < argc) {
		*val = argv[++*i];
	} else {
		return err_line(errbuf, errlen, "--%s needs a value (see --help)", buf);
	}
	(*i)++;
	return idx;
}

int mg_config_load(struct mg_config *c, int argc, char **argv, char *errbuf, size_t errlen)
{
	const char *env, *cfg = NULL;
	int rc;

	memset(c, 0, sizeof(*c));
	env = getenv("NODE_NAME");
	if (env && *env)
		snprintf(c->node_name, sizeof(c->node_name), "%s", env);
	else
		gethostname(c->node_name, sizeof(c->node_name) - 1);
	default_cgroup_path(c->cgroup_path, sizeof(c->cgroup_path));
	strcpy(c->pin_dir, MG_PIN_DIR);
	strcpy(c->btf_path, "/sys/kernel/btf/vmlinux");
	strcpy(c->proxy_addr4, "169.254.77.1");
	strcpy(c->proxy_addr6, "fd00:6d67::1");
	c->proxy_port = 6443;
	strcpy(c->proxy_interface, "mcpgate0");
	strcpy(c->fallback_interface, "lo");
	c->manage_address = true;
	env = getenv("KUBERNETES_SERVICE_HOST");
	if (env && *env) {
		const char *port = getenv("KUBERNETES_SERVICE_PORT");

		snprintf(c->api_server, sizeof(c->api_server),
			 strchr(env, ':') ? "https://[%s]:%s" : "https://%s:%s", env,
			 port && *port ? port : "443");
	}
	strcpy(c->api_ca_file, SA_DIR "/ca.crt");
	strcpy(c->api_token_file, SA_DIR "/token");
	c->endpoints_interval = 10;
	strcpy(c->select_labels, "mcpgate.io/intercept=true");
	strcpy(c->admin_listen, "127.0.0.1:9940");
	c->upstream_connect_timeout_ms = 5000;
	c->header_timeout_ms = 30000;
	c->idle_timeout_ms = 90000;
	strcpy(c->ca_cert, "/var/lib/mcpgate/ca.crt");
	strcpy(c->ca_key, "/var/lib/mcpgate/ca.key");
	strcpy(c->cluster_domain, "cluster.local");
	c->leaf_validity = 86400;
	strcpy(c->creds_provider, "none");
	c->max_connections = MG_PROXY_MAX_CONNS_DEFAULT;
	c->max_connections_per_pod = MG_PROXY_MAX_CONNS_PER_POD_DEFAULT;
	c->write_stall_timeout_ms = MG_PROXY_WRITE_STALL_MS_DEFAULT;
	c->worker_threads = MG_WORKER_THREADS_DEFAULT;
	c->worker_queue = MG_WORKER_QUEUE_DEFAULT;
	c->worker_jobs_per_pod = MG_WORKER_PER_KEY_DEFAULT;
	strcpy(c->unknown_pods, "refuse");
	c->sa_check_interval = 300;

	/* Two passes: the file first, so flags override it wherever they are. */
	for (int i = 1; i < argc;) {
		const char *val = NULL;

		rc = next_flag(argc, argv, &i, &val, errbuf, errlen);
		if (rc < 0)
			return rc;
		if (rc == FLAG_HELP) {
			print_help();
			return 1;
		}
		if (rc == FLAG_CONFIG)
			cfg = val;
	}
	if (cfg && (rc = load_file(c, cfg, errbuf, errlen)))
		return rc;
	for (int i = 1; i < argc;) {
		const char *val = NULL;

		rc = next_flag(argc, argv, &i, &val, errbuf, errlen);
		if (rc >= 0 && rc < (int)N_OPTS &&
		    (rc = set_opt(c, &opts[rc], val, errbuf, errlen)))
			return rc;
	}

	if (!strcmp(c->proxy_addr4, "none"))
		c->proxy_addr4[0] = '\0';
	if (!strcmp(c->proxy_addr6, "none"))
		c->proxy_addr6[0] = '\0';
	{
		struct mg_abi_addr a;

		if (c->proxy_port == 0 || c->proxy_port > 65535)
			return err_line(errbuf, errlen, "--proxy-port: must be 1..65535");
		if (!c->proxy_addr4[0] && !c->proxy_addr6[0])
			return err_line(errbuf, errlen,
					"no proxy address: set --proxy-addr4 or "
					"--proxy-addr6");
		if (c->proxy_addr4[0] &&
		    (mg_addr_parse_ip(c->proxy_addr4, 1, &a) || strchr(c->proxy_addr4, ':')))
			return err_line(errbuf, errlen, "--proxy-addr4: not an IPv4 address: %s",
					c->proxy_addr4);
		if (c->proxy_addr6[0] &&
		    (mg_addr_parse_ip(c->proxy_addr6, 1, &a) || !strchr(c->proxy_addr6, ':')))
			return err_line(errbuf, errlen, "--proxy-addr6: not an IPv6 address: %s",
					c->proxy_addr6);
		if (mg_addr_parse_hostport(c->admin_listen, &a))
			return err_line(errbuf, errlen,
					"--admin-listen: expected ADDR:PORT, got %s",
					c->admin_listen);
	}
	if (!c->api_server[0])
		return err_line(errbuf, errlen,
				"no API server: set --api-server (or run in a pod "
				"with KUBERNETES_SERVICE_HOST)");
	if (strncmp(c->api_server, "https://", 8))
		return err_line(errbuf, errlen, "--api-server: must be an https:// URL: %s",
				c->api_server);
	if (strcmp(c->creds_provider, "none") && strcmp(c->creds_provider, "eks") &&
	    strcmp(c->creds_provider, "serviceaccount") && strcmp(c->creds_provider, "impersonate"))
		return err_line(
			errbuf, errlen,
			"--creds-provider: none, eks, serviceaccount or impersonate, not %s",
			c->creds_provider);
	if (!strcmp(c->creds_provider, "eks") && !c->eks_cluster[0])
		return err_line(errbuf, errlen, "--creds-provider eks needs --eks-cluster");
	if (c->sa_expiration && c->sa_expiration < 600)
		return err_line(errbuf, errlen, "--sa-expiration: at least 600 seconds");
	if (c->leaf_validity < 300)
		return err_line(errbuf, errlen, "--leaf-validity: at least 300 seconds");
	if (c->endpoints_interval == 0)
		return err_line(errbuf, errlen, "--endpoints-interval: must be at least 1 second");
	if (!c->max_connections || !c->max_connections_per_pod || !c->write_stall_timeout_ms ||
	    !c->worker_threads || !c->worker_queue || !c->worker_jobs_per_pod)
		return err_line(errbuf, errlen,
				"--max-connections, --max-connections-per-pod, "
				"--write-stall-timeout and --worker-*: at least 1");
	if (c->max_connections_per_pod > c->max_connections)
		return err_line(errbuf, errlen,
				"--max-connections-per-pod: at most --max-connections (%u)",
				c->max_connections);
	if (c->worker_threads > MG_WORKER_THREADS_MAX)
		return err_line(errbuf, errlen, "--worker-threads: at most %d",
				MG_WORKER_THREADS_MAX);
	if (strcmp(c->unknown_pods, "refuse") && strcmp(c->unknown_pods, "pass"))
		return err_line(errbuf, errlen, "--unknown-pods: refuse or pass, not %s",
				c->unknown_pods);
	return 0;
}
