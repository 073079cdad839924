/*
 * creds: the upstream credential the proxy attaches after stripping the
 * pod's own token. Three providers:
 *
 *   eks             an EKS token: "k8s-aws-v1." + base64url (no padding) of
 *                   a SigV4-presigned STS GetCallerIdentity URL carrying the
 *                   signed header x-k8s-aws-id: <cluster>, X-Amz-Expires=60,
 *                   byte-for-byte what `aws eks get-token` prints for the
 *                   same credentials, region, cluster and second. Signed
 *                   with the daemon's AWS credentials, or with those of an
 *                   STS AssumeRole into the rule's role (DurationSeconds 900,
 *                   RoleSessionName mcpgate-<ns>-<pod>, SourceIdentity = pod
 *                   uid and/or session tags with pod uid and approval id).
 *   serviceaccount  a TokenRequest for a ServiceAccount, made with the
 *                   daemon's own bearer token.
 *   impersonate     the daemon's own bearer token plus Impersonate-User,
 *                   Impersonate-Group and Impersonate-Extra-* headers.
 *
 * The daemon's AWS credentials come, in the AWS SDKs' default-chain order,
 * from: the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN); IRSA web identity (AWS_ROLE_ARN +
 * AWS_WEB_IDENTITY_TOKEN_FILE, exchanged with STS AssumeRoleWithWebIdentity);
 * the container provider, which is how EKS Pod Identity is delivered
 * (AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE,
 * the file re-read on every fetch).
 *
 * Blocking: a cache miss makes HTTP calls (libcurl) to STS, the Pod Identity
 * agent or the API server. Call mg_creds_get() from a worker thread, never
 * from the event loop. A provider is thread-safe: its caches sit behind a
 * mutex that is not held across network calls.
 *
 * Secrets (secret keys, session tokens, bearer tokens, signatures) are
 * never logged and never put in an error message; buffers that held them
 * are wiped before they are freed.
 */
#ifndef MCPGATE_CREDS_H
#define MCPGATE_CREDS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum mg_creds_kind {
	MG_CREDS_EKS = 1,
	MG_CREDS_SERVICEACCOUNT,
	MG_CREDS_IMPERSONATE,
};

/** Where the eks provider finds the daemon's own AWS credentials. */
enum mg_creds_aws_source {
	MG_CREDS_AWS_CHAIN = 0, /* environment, then IRSA, then Pod Identity */
	MG_CREDS_AWS_ENV,
	MG_CREDS_AWS_WEB_IDENTITY,
	MG_CREDS_AWS_POD_IDENTITY,
};

/** How an AssumeRole session carries the pod's identity (bit mask). */
enum mg_creds_session_identity {
	/* SourceIdentity = the pod uid (the role's trust needs sts:SetSourceIdentity) */
	MG_CREDS_SOURCE_IDENTITY = 1 << 0,
	/* session tags mcpgate.io/pod-uid and mcpgate.io/approval-id (sts:TagSession) */
	MG_CREDS_SESSION_TAGS = 1 << 1,
};

/** Reads one environment variable; NULL if unset. */
typedef const char *mg_creds_getenv_fn(void *data, const char *name);
/** The clock (UTC seconds). */
typedef time_t mg_creds_now_fn(void *data);

/**
 * What a provider is made from. Strings are copied by mg_creds_new(); NULL
 * means "default" where one is given.
 */
struct mg_creds_config {
	enum mg_creds_kind kind;

	/* eks */
	const char *cluster_name;  /* x-k8s-aws-id; required */
	const char *region;	   /* required unless sts_endpoint is "global" */
	const char *sts_endpoint;  /* "regional" (default), "global" (sts.amazonaws.com,
				    * signed for us-east-1) or a URL "http[s]://host[:port]"
				    * used both for STS calls and in the token */
	const char *sts_ca_file;   /* CA bundle for an https URL endpoint; NULL: system */
	const char *role_arn;	   /* AssumeRole into it per subject; NULL: sign with
				    * the daemon's credentials */
	unsigned duration_seconds; /* AssumeRole DurationSeconds; 0: 900 */
	unsigned session_identity; /* enum mg_creds_session_identity bits; 0: SourceIdentity */
	const char *session_name;  /* fixed RoleSessionName; NULL: mcpgate-<ns>-<pod> */
	enum mg_creds_aws_source aws_source;
	mg_creds_getenv_fn *getenv; /* NULL: the process environment */
	void *getenv_data;

	/* serviceaccount and impersonate: the daemon's own API-server identity */
	const char *api_server;	 /* https://host:port (serviceaccount) */
	const char *api_ca_file; /* verifies api_server */
	const char *token_file;	 /* the daemon's bearer token, re-read per use */

	/* serviceaccount */
	const char *namespace_name;   /* NULL: the subject's namespace */
	const char *service_account;  /* NULL: the subject's service account */
	const char *const *audiences; /* NULL/0: the API server's default audience */
	size_t n_audiences;
	unsigned expiration_seconds; /* >= 600; 0: 3600 */

	/* impersonate: templates, {namespace} {pod} {uid} {serviceaccount}
	 * replaced from the subject */
	const char *user; /* NULL: system:serviceaccount:{namespace}:{serviceaccount} */
	const char *const *groups;
	size_t n_groups;

	/* all */
	mg_creds_now_fn *now; /* NULL: time(NULL) */
	void *now_data;
	long timeout_ms; /* per HTTP call; 0: 5000 */
};

/** Who the credential is for: the pod the kernel identified, the grant. */
struct mg_creds_subject {
	const char *ns;		     /* pod namespace */
	const char *pod;	     /* pod name */
	const char *uid;	     /* pod UID */
	const char *service_account; /* the pod's service account */
	const char *approval_id;     /* the approval that granted this; NULL if none */
};

/** One header to add upstream. */
struct mg_creds_header {
	char *name;
	char *value;
};

/**
 * The answer. On success <authorization> is the whole Authorization value
 * ("Bearer ..."), <headers> any more headers, <expiry> when the credential
 * stops being usable. On error (mg_creds_get() < 0): <http_status> for the
 * client (502 when STS, the Pod Identity agent or TokenRequest failed; 500
 * for a local fault), <reason> a short code (the STS error code such as
 * "AccessDenied", or "STSUnavailable", "NoCredentials", ...), <message>
 * one line without secrets. Free with mg_creds_result_free().
 */
struct mg_creds_result {
	char *authorization;
	struct mg_creds_header *headers;
	size_t n_headers;
	time_t expiry;
	int http_status;
	char reason[64];
	char message[256];
};

struct mg_creds;

/**
 * The provider named <name> ("eks", "serviceaccount", "impersonate", as in
 * the configuration) into <*kind>. Returns 0, or -ENOENT for another name.
 */
int mg_creds_kind_lookup(const char *name, enum mg_creds_kind *kind);

/** The name of provider <kind>, or NULL for an unknown kind. */
const char *mg_creds_kind_name(enum mg_creds_kind kind);

/**
 * Creates a provider from <cfg>. Returns NULL with one line in <errbuf> on
 * a bad configuration (or "out of memory").
 */
struct mg_creds *mg_creds_new(const struct mg_creds_config *cfg, char *errbuf, size_t errlen);

/** Frees <c> and wipes its caches; accepts NULL. */
void mg_creds_free(struct mg_creds *c);

/**
 * Fills <out> (zeroed first) with the credential for <who> (may be NULL for
 * eks without a role). Cached per provider (one role, one cluster) and per
 * subject (pod uid + approval id for AssumeRole, namespace/serviceaccount
 * for TokenRequest); an EKS token is re-signed once less than 5 minutes of
 * its 15 are left, a TokenRequest token at 80% of its lifetime. While STS,
 * the agent or the API server fail transiently (-EAGAIN: unreachable, 5xx,
 * throttled) a cached token with at least 60 s left is still handed out;
 * never one with less, and never a broader credential (an AssumeRole
 * failure never falls back to the daemon's own). Impersonate results have
 * <expiry> 0. Blocking (see above).
 * Returns 0, or with <out>'s error fields set: -EACCES (refused: STS error
 * code, HTTP 4xx), -EAGAIN (transient), -ENOENT (no AWS credentials found),
 * -EINVAL (subject or environment unusable), -EPROTO (unreadable answer),
 * -ESTALE, -ENOMEM, or the -errno of reading a token file.
 */
int mg_creds_get(struct mg_creds *c, const struct mg_creds_subject *who,
		 struct mg_creds_result *out);

/** Wipes and frees what <r> holds; accepts a zeroed result. */
void mg_creds_result_free(struct mg_creds_result *r);

/**
 * For `mcpgatectl eks-token`: the ExecCredential JSON `aws eks get-token`
 * prints, final newline included, for the eks configuration <cfg> signed
 * at <at> (0: now). With cfg->role_arn, first assumes that role with
 * RoleSessionName cfg->session_name (default "EKSGetTokenAuth", as awscli)
 * and no session identity. expirationTimestamp is <at> + 14 minutes, as
 * awscli writes it. <*json> is malloc'd. Returns 0, or -errno with <err>'s
 * error fields set.
 */
int mg_creds_eks_exec_credential(const struct mg_creds_config *cfg, time_t at, char **json,
				 struct mg_creds_result *err);

#endif /* MCPGATE_CREDS_H */
