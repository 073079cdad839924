/*
 * What the credential providers share inside userspace/creds/ and nothing
 * outside does. A provider is one file (eks.c, serviceaccount.c,
 * impersonate.c) exporting a struct mg_creds_ops; creds.c keeps the
 * registry (by kind and by name, so a rule can pick a provider by name),
 * the configuration, the cache and the helpers below; aws.c is the AWS
 * credential-source chain and the STS calls.
 */
#ifndef MCPGATE_CREDS_PROVIDER_H
#define MCPGATE_CREDS_PROVIDER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "mcpgate/httpc.h"

#include "mcpgate/creds.h"
#include "mcpgate/sigv4.h"

/* ---- limits ---- */

/* A cached credential is refreshed once less than this is left. */
#define REFRESH_MARGIN 300
/* Nothing is handed out with less than this to live. */
#define MIN_VALIDITY 60
/* STS accepts a presigned GetCallerIdentity for 15 minutes after its
 * X-Amz-Date whatever X-Amz-Expires says (aws-iam-authenticator's
 * presignedURLExpiration); 60 is what every client sends. */
#define EKS_TOKEN_TTL	    900
#define EKS_PRESIGN_EXPIRES 60
/* awscli's TOKEN_EXPIRATION_MINS: the ExecCredential says 14 minutes. */
#define EKS_EXEC_TTL	 (14 * 60)
#define EKS_TOKEN_PREFIX "k8s-aws-v1."
#define STS_VERSION	 "2011-06-15"
#define FORM_TYPE	 "application/x-www-form-urlencoded; charset=utf-8"
#define MAX_BODY	 (1 << 20)
#define MAX_FILE	 (64 * 1024)
#define CACHE_SLOTS	 256
#define KEY_MAX		 512
/* An STS or agent URL and its parts, as split by mg_creds_split_url(). */
#define URL_MAX	      600
#define AUTHORITY_MAX 300
#define URL_PATH_MAX  256
/* AssumeRole DurationSeconds: STS's bounds; the default is its minimum. */
#define ROLE_DURATION_MIN 900
#define ROLE_DURATION_MAX 43200

struct mg_creds_ops;

struct aws_creds {
	char akid[MG_SIGV4_MAX_KEY_ID + 1];
	char secret[MG_SIGV4_MAX_SECRET + 1];
	char token[MG_SIGV4_MAX_SESSION_TOKEN + 1];
	time_t expiration; /* 0: does not expire (environment keys) */
};

/* One cached credential: the EKS token or ServiceAccount token for <key>,
 * and for AssumeRole the role session credentials it was signed with. */
struct entry {
	char key[KEY_MAX];
	char *value;
	time_t expiry;
	time_t refresh_at;
	time_t last_used;
	bool has_creds;
	struct aws_creds creds;
};

enum base_source { BASE_NONE = 0, BASE_WEB_IDENTITY, BASE_CONTAINER };

struct mg_creds {
	const struct mg_creds_ops *ops; /* the provider, by cfg.kind */
	struct mg_creds_config cfg;	/* strings point into owned copies */
	char *strings[32];
	size_t n_strings;
	char **audiences;
	char **groups;
	bool no_identity; /* eks-token CLI: no SourceIdentity, no tags */
	/* the STS endpoint, resolved */
	char sts_url[URL_MAX]; /* scheme://authority/path, no query */
	char sts_scheme[8];
	char sts_host[AUTHORITY_MAX]; /* authority, the signed Host */
	char sts_path[URL_PATH_MAX];
	char sign_region[64];
	bool sts_no_proxy;
	bool lock_ok;
	pthread_mutex_t lock;
	/* the daemon's own AWS credentials from IRSA / Pod Identity */
	enum base_source base_src;
	struct aws_creds base;
	struct entry *slots[CACHE_SLOTS];
};

/* A request: POST when <body> is set, GET otherwise. */
struct http_req {
	const char *url;
	const char *const *headers; /* "Name: value" */
	size_t n_headers;
	const char *body;
	size_t body_len;
	const char *ca_file;
	long timeout_ms;
	bool no_proxy;
};

struct http_resp {
	long status;
	char *body;
	size_t len;
	size_t cap;
	bool too_big;
	char err[MG_HTTPC_ERR_MAX];
};

/* ---- the provider interface ---- */

/* A provider: checks its part of the configuration once (mg_creds_new),
 * then answers mg_creds_get() (blocking, on a worker thread). */
struct mg_creds_ops {
	const char *name; /* as in the configuration and policy: "eks", ... */
	enum mg_creds_kind kind;
	/* <c->cfg> is copied and defaulted; one line into <errbuf> on -EINVAL */
	int (*check)(struct mg_creds *c, char *errbuf, size_t errlen);
	/* <out> is zeroed; on error, its error fields set (mg_creds_set_error) */
	int (*get)(struct mg_creds *c, const struct mg_creds_subject *who,
		   struct mg_creds_result *out);
};

extern const struct mg_creds_ops mg_creds_eks_ops;
extern const struct mg_creds_ops mg_creds_serviceaccount_ops;
extern const struct mg_creds_ops mg_creds_impersonate_ops;

/* The registered provider of <kind>, or NULL. */
const struct mg_creds_ops *mg_creds_ops_of(enum mg_creds_kind kind);

/* ---- creds.c: helpers ---- */

/* Wipes <p>[0..<n>) and frees it; accepts NULL. */
void mg_creds_wipe_free(void *p, size_t n);
/* Wipes and frees a string; accepts NULL. */
void mg_creds_wipe_str(char *s);
/* The provider's clock (cfg.now, else time(NULL)). */
time_t mg_creds_now(const struct mg_creds *c);
/* The provider's environment (cfg.getenv, else getenv()); NULL when empty. */
const char *mg_creds_env(const struct mg_creds *c, const char *name);
/* Sets the error fields of <out>: a one-line message, no secret in it.
 * Returns <err>. */
int mg_creds_set_error(struct mg_creds_result *out, int err, int status, const char *reason,
		       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Copies the first line of an upstream's <msg> into <dst>, <secret> blanked. */
void mg_creds_safe_message(char *dst, size_t n, const char *msg, const char *secret);
/* Reads a token file (at most MAX_FILE bytes, trimmed) into a malloc'd
 * <*out>, to free with mg_creds_wipe_free(<*out>, MAX_FILE + 1). */
int mg_creds_read_secret_file(const char *path, char **out);
bool mg_creds_is_tchar(unsigned char c);
/* True if <v> can go into a header value: no control bytes. */
bool mg_creds_header_safe(const char *v);
/* base64url of <s>[0..<n>) without padding, malloc'd; NULL on ENOMEM. */
char *mg_creds_base64url(const char *s, size_t n);
/* Sets <out->authorization> to "Bearer <token>". Returns 0 or -ENOMEM. */
int mg_creds_set_bearer(struct mg_creds_result *out, const char *token);
/* Performs <q>: 0 once any HTTP answer came back, -EIO, -ENOMEM. */
int mg_creds_http_do(const struct http_req *q, struct http_resp *r);
void mg_creds_http_resp_free(struct http_resp *r);
/* True if <s> has <min>..<max> bytes, each alphanumeric or in <extra>. */
bool mg_creds_all_chars(const char *s, const char *extra, size_t min, size_t max);
/* True for a DNS-1123 label/subdomain as namespaces and accounts use. */
bool mg_creds_k8s_name_ok(const char *s);
bool mg_creds_is_loopback_host(const char *h, size_t n);
/* Splits an http(s) URL into scheme, authority (and its host part) and
 * path. Returns 0 or -EINVAL. */
int mg_creds_split_url(const char *url, char *scheme, size_t sl, char *auth, size_t al, char *path,
		       size_t pl, const char **host, size_t *hlen);

/* ---- creds.c: the cache (callers hold c->lock) ---- */

struct entry *mg_creds_cache_find(struct mg_creds *c, const char *key);
/* The entry for <key>, created in a free slot or in place of the least
 * recently used one. NULL on ENOMEM. */
struct entry *mg_creds_cache_get(struct mg_creds *c, const char *key);

/* ---- aws.c: the daemon's own AWS credentials and STS ---- */

/* ARNs go into form bodies and error lines: visible ASCII only. */
bool mg_creds_arn_ok(const char *s);
/* Appends "&<name>=<value>" (form-escaped) to the malloc'd <*b>. */
int mg_creds_form_add(char **b, size_t *len, const char *name, const char *value);
/* Sends the form <body> for <action> into <role> to STS, parses <cr>. */
int mg_creds_sts_call(struct mg_creds *c, const char *action, const char *role, const char *body,
		      const char *const *headers, size_t nh, const char *secret,
		      struct aws_creds *cr, struct mg_creds_result *out);
/* The daemon's own AWS credentials at <now> (cached until near expiry). */
int mg_creds_aws_base(struct mg_creds *c, time_t now, struct aws_creds *cr,
		      struct mg_creds_result *out);

/* ---- impersonate.c ---- */

/* The daemon's own token file, user and groups (impersonate, and the
 * serviceaccount provider, which needs the same token). */
int mg_creds_impersonate_check(struct mg_creds *c, char *errbuf, size_t errlen);

#endif /* MCPGATE_CREDS_PROVIDER_H */
