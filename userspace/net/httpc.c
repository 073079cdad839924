/*
 * httpc: one libcurl client. See httpc.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include "mcpgate/httpc.h"

_Static_assert(MG_HTTPC_ERR_MAX >= CURL_ERROR_SIZE, "err must hold a libcurl error buffer");

#define INITIAL_BODY_CAP 16384

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void wipe_free(char *p, size_t n, bool wipe)
{
	if (p && wipe)
		explicit_bzero(p, n);
	free(p);
}

void mg_httpc_resp_free(struct mg_httpc_resp *r)
{
	wipe_free(r->body, r->cap, r->wipe);
	r->body = NULL;
	r->len = r->cap = 0;
}

/* Grows <r>'s body to hold <need> bytes and a NUL. With <wipe>, the old
 * buffer is copied and wiped rather than realloc()ed, which could leave a
 * copy of a credential in freed memory. */
static int grow(struct mg_httpc_resp *r, size_t need)
{
	size_t cap = r->cap ? r->cap : INITIAL_BODY_CAP;
	char *b;

	if (need + 1 <= r->cap)
		return 0;
	while (cap < need + 1)
		cap *= 2;
	if (!r->wipe) {
		b = realloc(r->body, cap);
		if (!b)
			return -ENOMEM;
	} else {
		b = malloc(cap);
		if (!b)
			return -ENOMEM;
		if (r->body)
			memcpy(b, r->body, r->len);
		wipe_free(r->body, r->cap, true);
	}
	r->body = b;
	r->cap = cap;
	return 0;
}

/* Hands each complete line in the body buffer to the callback and keeps
 * the incomplete tail. Returns false when the callback asked to stop. */
static bool feed_lines(struct mg_httpc_resp *r)
{
	const struct mg_httpc_req *q = r->q;
	char *start = r->body, *nl;

	while ((nl = memchr(start, '\n', r->len - (size_t)(start - r->body)))) {
		if (nl > start && (r->line_rc = q->on_line(q->data, start, (size_t)(nl - start))))
			return false;
		start = nl + 1;
	}
	r->len -= (size_t)(start - r->body);
	memmove(r->body, start, r->len);
	return true;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct mg_httpc_resp *r = userdata;
	const struct mg_httpc_req *q = r->q;
	size_t n = size * nmemb;

	if (q->stop && *q->stop)
		return 0;
	if (r->len + n > q->max_body) {
		r->too_big = true;
		return 0;
	}
	if (grow(r, r->len + n))
		return 0;
	memcpy(r->body + r->len, ptr, n);
	r->len += n;
	r->body[r->len] = '\0';
	if (q->on_line && !feed_lines(r))
		return 0;
	return n;
}

/* libcurl calls this about once a second even while no byte arrives, so a
 * stop request ends a quiet stream promptly. */
static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	const struct mg_httpc_resp *r = userdata;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return r->q->stop && *r->q->stop;
}

static struct curl_slist *append(struct curl_slist *l, const char *line, bool *oom)
{
	struct curl_slist *n = *oom ? NULL : curl_slist_append(l, line);

	if (!n)
		*oom = true;
	return n ? n : l;
}

/* The header lines of <q>: the Authorization line built from <q->bearer>,
 * the extra lines, and an empty Expect: so curl adds none to a POST.
 * NULL with <*oom> set when one could not be allocated. */
static struct curl_slist *build_headers(const struct mg_httpc_req *q, bool *oom)
{
	static const char prefix[] = "Authorization: Bearer ";
	struct curl_slist *l = NULL;

	*oom = false;
	if (q->bearer.len) {
		size_t n = sizeof(prefix) - 1 + q->bearer.len;
		char *auth = malloc(n + 1);

		if (!auth) {
			*oom = true;
			return NULL;
		}
		memcpy(auth, prefix, sizeof(prefix) - 1);
		memcpy(auth + sizeof(prefix) - 1, q->bearer.ptr, q->bearer.len);
		auth[n] = '\0';
		l = append(l, auth, oom);
		explicit_bzero(auth, n);
		free(auth);
	}
	for (size_t i = 0; i < q->n_headers; i++)
		l = append(l, q->headers[i], oom);
	if (q->body)
		l = append(l, "Expect:", oom);
	return l;
}

/* Every header line may hold a bearer or session token. */
static void free_headers(struct curl_slist *l)
{
	for (struct curl_slist *n = l; n; n = n->next)
		explicit_bzero(n->data, strlen(n->data));
	curl_slist_free_all(l);
}

static void set_options(CURL *c, const struct mg_httpc_req *q, struct mg_httpc_resp *r,
			struct curl_slist *hdrs)
{
	curl_easy_setopt(c, CURLOPT_URL, q->url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, q->user_agent ? q->user_agent : "mcpgate");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->err);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	if (q->connect_timeout_ms)
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, q->connect_timeout_ms);
	if (q->timeout_ms)
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, q->timeout_ms);
	if (q->low_speed_time_s) {
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, q->low_speed_time_s);
	}
	if (q->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, q->ca_file);
	if (q->no_proxy)
		curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	if (q->body) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
	} else {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	}
	if (q->stop) {
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(c, CURLOPT_XFERINFODATA, r);
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	}
}

/* Whether <cc> only reports that we ended the transfer on purpose. */
static bool stopped_on_purpose(CURLcode cc, const struct mg_httpc_resp *r)
{
	return (cc == CURLE_WRITE_ERROR || cc == CURLE_ABORTED_BY_CALLBACK) &&
	       (r->line_rc || (r->q->stop && *r->q->stop));
}

int mg_httpc_do(const struct mg_httpc_req *q, struct mg_httpc_resp *r)
{
	struct curl_slist *hdrs = NULL;
	CURL *c = NULL;
	CURLcode cc;
	bool oom;
	int ret = -ENOMEM;

	memset(r, 0, sizeof(*r));
	r->q = q;
	r->wipe = q->wipe;
	pthread_once(&curl_once, curl_init_once);
	hdrs = build_headers(q, &oom);
	if (oom || grow(r, 0))
		goto out;
	c = curl_easy_init();
	if (!c)
		goto out;
	set_options(c, q, r, hdrs);
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	ret = 0;
	if (cc != CURLE_OK && !stopped_on_purpose(cc, r)) {
		if (r->too_big)
			snprintf(r->err, sizeof(r->err), "response body over %zu bytes",
				 q->max_body);
		else if (!r->err[0])
			snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(cc));
		ret = r->too_big ? -E2BIG : -EIO;
	}
out:
	if (ret == -ENOMEM)
		snprintf(r->err, sizeof(r->err), "out of memory");
	if (r->body)
		r->body[r->len] = '\0';
	free_headers(hdrs);
	curl_easy_cleanup(c);
	r->q = NULL;
	return ret;
}
