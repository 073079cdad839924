/*
 * authn: optional TokenReview of the pod's own bearer token (the kernel says
 * which pod is talking; the token must belong to that pod's ServiceAccount).
 *
 * Answers are cached by SHA-256 of the token, never the token itself, for
 * MG_AUTHN_TTL_MS, so a busy pod costs one review a minute, not one per
 * request. mg_authn_review() makes a network call: it runs on a worker
 * thread (worker.h), the cache only on the loop thread.
 */
#ifndef MCPGATE_AUTHN_H
#define MCPGATE_AUTHN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpgate/str.h"

struct mg_kube;
struct mg_authn;

#define MG_AUTHN_CACHE	      256   /* answers kept (oldest replaced first) */
#define MG_AUTHN_TTL_MS	      60000 /* how long an answer is trusted */
#define MG_AUTHN_HASH_LEN     32    /* SHA-256 */
#define MG_AUTHN_USERNAME_MAX 254   /* "system:serviceaccount:<ns>:<name>" fits */
#define MG_AUTHN_ERROR_MAX    200

/** What the API server said about one token. */
struct mg_authn_answer {
	bool authenticated;
	char username[MG_AUTHN_USERNAME_MAX]; /* "" if none */
};

/** Takes <kube> (not owned): the API client reviews are POSTed with. */
int mg_authn_new(struct mg_authn **out, struct mg_kube *kube);
/** Wipes the cache. Accepts NULL. */
void mg_authn_free(struct mg_authn *a);

/** The cache key of <token>. */
void mg_authn_hash(struct mg_str token, unsigned char hash[MG_AUTHN_HASH_LEN]);

/**
 * The cached answer for <hash> still valid at <now_ms>, or NULL. The
 * pointer is valid until the next mg_authn_put().
 */
const struct mg_authn_answer *
mg_authn_find(struct mg_authn *a, const unsigned char hash[MG_AUTHN_HASH_LEN], uint64_t now_ms);

/** Caches <ans> for <hash> until <now_ms> + MG_AUTHN_TTL_MS. */
void mg_authn_put(struct mg_authn *a, const unsigned char hash[MG_AUTHN_HASH_LEN],
		  const struct mg_authn_answer *ans, uint64_t now_ms);

/**
 * POSTs a TokenReview of <token> and fills <ans>. Blocks: call it from a
 * worker thread. The request body is wiped once sent. 0, or -errno with
 * <error> (at most <error_len> bytes) saying why.
 */
int mg_authn_review(struct mg_authn *a, const char *token, struct mg_authn_answer *ans, char *error,
		    size_t error_len);

/**
 * Whether <ans> is the ServiceAccount <sa> of namespace <ns>: writes the
 * expected user name into <want> (for the log) either way.
 */
bool mg_authn_is_service_account(const struct mg_authn_answer *ans, const char *ns, const char *sa,
				 char *want, size_t want_len);

#endif /* MCPGATE_AUTHN_H */
