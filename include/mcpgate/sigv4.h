/*
 * AWS Signature Version 4 on OpenSSL, and the STS query-protocol responses.
 *
 * One signer serves both shapes mcpgate needs: presigned URLs (query
 * authentication; the EKS token is a presigned STS GetCallerIdentity) and
 * requests signed in an Authorization header (STS AssumeRole, a form POST).
 * It follows the published SigV4 rules and the aws-sig-v4-test-suite; the
 * presigned query it emits keeps the parameter order botocore emits, so an
 * EKS token is byte-for-byte what `aws eks get-token` prints.
 *
 * The STS parser reads the three XML documents STS answers with
 * (AssumeRoleResponse, AssumeRoleWithWebIdentityResponse, ErrorResponse)
 * with a small strict XML reader: no DTD, no comments, no CDATA, no
 * processing instruction but the leading declaration, balanced tags, known
 * entities only, valid UTF-8, each known field at most once.
 *
 * Nothing here logs. Canonical requests and strings-to-sign carry the
 * session token: callers keep them out of logs too.
 */
#ifndef MCPGATE_SIGV4_H
#define MCPGATE_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "mcpgate/str.h"

#define MG_SIGV4_ALGORITHM "AWS4-HMAC-SHA256"

/** Longest values the STS parser keeps; a longer credential is an error. */
#define MG_SIGV4_MAX_KEY_ID	   128
#define MG_SIGV4_MAX_SECRET	   128
#define MG_SIGV4_MAX_SESSION_TOKEN 8192
#define MG_SIGV4_MAX_ARN	   2048

/** The credentials a request is signed with. */
struct mg_sigv4_creds {
	const char *access_key_id;
	const char *secret_access_key;
	const char *session_token; /* NULL or "": long-term keys */
};

/** A query parameter or header, NUL-terminated, decoded (not yet escaped). */
struct mg_sigv4_kv {
	const char *name;
	const char *value;
};

/** What to sign. Strings are borrowed for the duration of the call. */
struct mg_sigv4_req {
	const char *method;		 /* "GET", "POST" */
	const char *host;		 /* Host header as sent: host[:port] */
	const char *path;		 /* decoded path ("/" for STS), escaped once here */
	bool normalize_path;		 /* remove "." / ".." segments and empty ones */
	const struct mg_sigv4_kv *query; /* in the order they are to be emitted */
	size_t n_query;
	const struct mg_sigv4_kv *headers; /* signed besides Host; not X-Amz-Date */
	size_t n_headers;
	const void *body;
	size_t body_len;
	const char *region;	  /* e.g. "us-east-1" */
	const char *service;	  /* e.g. "sts" */
	time_t when;		  /* signing time (UTC seconds) */
	unsigned expires;	  /* > 0: presign, X-Amz-Expires=<expires>; 0: header */
	bool sign_content_sha256; /* header mode: add and sign x-amz-content-sha256 */
};

/**
 * The signer's output. Strings are malloc'd and owned by the struct; free
 * with mg_sigv4_signed_free(), which wipes them (the canonical request and
 * the presigned query contain the session token).
 *
 * Header mode: send X-Amz-Date: <amz_date>, X-Amz-Security-Token (when the
 * credentials have one), x-amz-content-sha256: <content_sha256> (when asked)
 * and Authorization: <authorization>; <query> is the caller's query, escaped.
 * Presign mode: <query> is the whole query string, caller's parameters first
 * then X-Amz-Algorithm, -Credential, -Date, -Expires, -SignedHeaders,
 * -Security-Token, -Signature (botocore's order); <authorization> is NULL.
 */
struct mg_sigv4_signed {
	char amz_date[17];	 /* 20150830T123600Z */
	char signature[65];	 /* lower-case hex */
	char content_sha256[65]; /* hex SHA-256 of the body */
	char *authorization;
	char *query;
	char *signed_headers; /* "host;x-amz-date" */
	char *canonical_request;
	char *string_to_sign;
};

/**
 * Signs <r> with <c> into <out> (zeroed first). Canonical form: URI path
 * escaped once (RFC 3986 unreserved kept, '/' kept), query pairs escaped and
 * sorted by name then value, header names lower-cased, values trimmed with
 * inner whitespace runs collapsed, repeated headers joined with ',' in order.
 * Returns 0, -EINVAL for a missing field or a header name that is not a
 * token, -ENOMEM.
 */
int mg_sigv4_sign(const struct mg_sigv4_req *r, const struct mg_sigv4_creds *c,
		  struct mg_sigv4_signed *out);

/** Wipes and frees what mg_sigv4_sign() put in <s>; accepts a zeroed struct. */
void mg_sigv4_signed_free(struct mg_sigv4_signed *s);

/**
 * Percent-escapes <len> bytes at <s> the SigV4 way (everything but
 * A-Z a-z 0-9 - _ . ~, and '/' when <keep_slash>; upper-case hex) and
 * appends them NUL-terminated to the malloc'd <*buf> of length <*blen>.
 * Also the escaping of application/x-www-form-urlencoded bodies for the
 * AWS query protocol. Returns 0 or -ENOMEM.
 */
int mg_sigv4_escape_append(char **buf, size_t *blen, const char *s, size_t len, bool keep_slash);

/** Hex SHA-256 of <len> bytes at <data> into <hex> (65 bytes). */
void mg_sigv4_sha256_hex(const void *data, size_t len, char hex[65]);

/**
 * Parses an ISO 8601 / RFC 3339 UTC timestamp as STS, the Pod Identity
 * agent and the API server write them: YYYY-MM-DDTHH:MM:SS, optional
 * fraction (dropped), then 'Z' or +HH:MM / -HH:MM. Returns 0 or -EINVAL.
 */
int mg_sigv4_parse_time(struct mg_str s, time_t *out);

/** Where and why a document was rejected. */
struct mg_sigv4_err {
	const char *reason; /* static string, set on every error return */
	size_t pos;	    /* offset of the offending byte */
};

enum mg_sigv4_sts_kind {
	MG_SIGV4_STS_CREDENTIALS = 1, /* <Action>Response with Credentials */
	MG_SIGV4_STS_ERROR,	      /* ErrorResponse */
};

/**
 * An STS answer. Values are decoded (entities resolved) and NUL-terminated.
 * Holds a secret: wipe with mg_sigv4_sts_resp_wipe() when done.
 */
struct mg_sigv4_sts_resp {
	enum mg_sigv4_sts_kind kind;
	char access_key_id[MG_SIGV4_MAX_KEY_ID + 1];
	char secret_access_key[MG_SIGV4_MAX_SECRET + 1];
	char session_token[MG_SIGV4_MAX_SESSION_TOKEN + 1];
	time_t expiration;
	char assumed_role_arn[MG_SIGV4_MAX_ARN + 1]; /* AssumedRoleUser/Arn, "" if absent */
	char source_identity[65];		     /* "" if absent */
	char error_type[32];			     /* Sender / Receiver */
	char error_code[128];
	char error_message[512]; /* cut if longer */
	char request_id[128];
};

/**
 * Parses the complete STS response body <buf>[0..<len>) of the query-API
 * action <action> ("AssumeRole", "AssumeRoleWithWebIdentity") into <out>:
 * either <action>Response/<action>Result/Credentials (AccessKeyId,
 * SecretAccessKey, SessionToken, Expiration all required) or
 * ErrorResponse/Error (Code required). Unknown elements are checked for
 * well-formedness and skipped. Returns <len> (> 0) on success, 0 if the
 * document is truncated (more bytes would be needed), -1 with <err> filled.
 */
ssize_t mg_sigv4_sts_parse(const char *buf, size_t len, const char *action,
			   struct mg_sigv4_sts_resp *out, struct mg_sigv4_err *err);

/** Wipes the secret fields of <r> (OPENSSL_cleanse). */
void mg_sigv4_sts_resp_wipe(struct mg_sigv4_sts_resp *r);

#endif /* MCPGATE_SIGV4_H */
