/*
 * authn: TokenReview of the pod's own token and its cache. See authn.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "mcpgate/authn.h"
#include "mcpgate/kube.h"

#define REVIEW_PATH "/apis/authentication.k8s.io/v1/tokenreviews"

struct entry {
	unsigned char hash[MG_AUTHN_HASH_LEN];
	struct mg_authn_answer ans;
	uint64_t expires_ms; /* 0: free */
};

struct mg_authn {
	struct mg_kube *kube;
	struct entry cache[MG_AUTHN_CACHE];
	unsigned next; /* the slot replaced next */
};

int mg_authn_new(struct mg_authn **out, struct mg_kube *kube)
{
	struct mg_authn *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	a->kube = kube;
	*out = a;
	return 0;
}

void mg_authn_free(struct mg_authn *a)
{
	if (!a)
		return;
	explicit_bzero(a->cache, sizeof(a->cache));
	free(a);
}

void mg_authn_hash(struct mg_str token, unsigned char hash[MG_AUTHN_HASH_LEN])
{
	SHA256((const unsigned char *)token.ptr, token.len, hash);
}

const struct mg_authn_answer *
mg_authn_find(struct mg_authn *a, const unsigned char hash[MG_AUTHN_HASH_LEN], uint64_t now_ms)
{
	for (size_t i = 0; i < MG_AUTHN_CACHE; i++)
		if (a->cache[i].expires_ms > now_ms &&
		    !memcmp(a->cache[i].hash, hash, MG_AUTHN_HASH_LEN))
			return &a->cache[i].ans;
	return NULL;
}

/* Round robin: a pod that floods with new tokens pushes out only the
 * oldest answers, which at worst costs another review. */
void mg_authn_put(struct mg_authn *a, const unsigned char hash[MG_AUTHN_HASH_LEN],
		  const struct mg_authn_answer *ans, uint64_t now_ms)
{
	struct entry *e = &a->cache[a->next++ % MG_AUTHN_CACHE];

	memcpy(e->hash, hash, MG_AUTHN_HASH_LEN);
	e->ans = *ans;
	e->expires_ms = now_ms + MG_AUTHN_TTL_MS;
}

int mg_authn_review(struct mg_authn *a, const char *token, struct mg_authn_answer *ans, char *error,
		    size_t error_len)
{
	json_t *req = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "authentication.k8s.io/v1",
				"kind", "TokenReview", "spec", "token", token);
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_t *resp = NULL, *st;
	long status = 0;
	int rc;

	json_decref(req); /* jansson keeps no copy past this; the body is wiped below */
	if (!body) {
		snprintf(error, error_len, "out of memory");
		return -ENOMEM;
	}
	rc = mg_kube_post_json(a->kube, REVIEW_PATH, body, &resp, &status, error, error_len);
	explicit_bzero(body, strlen(body));
	free(body);
	if (!rc) {
		st = json_object_get(resp, "status");
		ans->authenticated = json_is_true(json_object_get(st, "authenticated"));
		snprintf(ans->username, sizeof(ans->username), "%s",
			 json_string_value(json_object_get(json_object_get(st, "user"), "username"))
				 ?: "");
	}
	json_decref(resp);
	return rc;
}

bool mg_authn_is_service_account(const struct mg_authn_answer *ans, const char *ns, const char *sa,
				 char *want, size_t want_len)
{
	snprintf(want, want_len, "system:serviceaccount:%s:%s", ns, sa);
	return ans->authenticated && !strcmp(ans->username, want);
}
