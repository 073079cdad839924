/*
 * kube: libcurl client for the daemon's own API-server calls. See kube.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <curl/curl.h>

#include "mcpgate/kube.h"

#define MG_KUBE_MAX_BODY (64u << 20)
#define MG_KUBE_MAX_LINE (16u << 20)

struct mg_kube {
	char *server;
	char *ca_file;
	char *token_file;
	long connect_timeout_ms;
};

struct body {
	char *buf;
	size_t len, cap;
	size_t max;
	bool too_big;
	/* line streaming */
	mg_kube_line_cb *cb;
	void *data;
	const volatile bool *stop;
	int cb_rc;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct mg_kube *mg_kube_new(const struct mg_kube_opts *o)
{
	struct mg_kube *k = calloc(1, sizeof(*k));

	pthread_once(&curl_once, curl_init_once);
	if (!k)
		return NULL;
	k->server = strdup(o->server ? o->server : "");
	k->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
	k->token_file = o->token_file ? strdup(o->token_file) : NULL;
	k->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 5000;
	if (!k->server || (o->ca_file && !k->ca_file) || (o->token_file && !k->token_file)) {
		mg_kube_free(k);
		return NULL;
	}
	return k;
}

void mg_kube_free(struct mg_kube *k)
{
	if (!k)
		return;
	free(k->server);
	free(k->ca_file);
	free(k->token_file);
	free(k);
}

/* Reads the token file into a fresh "Authorization: Bearer ..." header
 * line, trailing whitespace trimmed. NULL when there is no token. The
 * buffer is wiped by the caller after use. */
static char *auth_header(const struct mg_kube *k)
{
	char tok[8192], *h;
	size_t n;
	FILE *f;

	if (!k->token_file)
		return NULL;
	f = fopen(k->token_file, "re");
	if (!f)
		return NULL;
	n = fread(tok, 1, sizeof(tok) - 1, f);
	fclose(f);
	while (n && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
		n--;
	tok[n] = '\0';
	if (asprintf(&h, "Authorization: Bearer %s", tok) < 0)
		h = NULL;
	explicit_bzero(tok, sizeof(tok));
	return h;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct body *b = userdata;
	size_t n = size * nmemb;

	if (b->stop && *b->stop)
		return 0;
	if (b->len + n > b->max) {
		b->too_big = true;
		return 0;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		char *nb;

		while (cap < b->len + n + 1)
			cap *= 2;
		nb = realloc(b->buf, cap);
		if (!nb)
			return 0;
		b->buf = nb;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, ptr, n);
	b->len += n;
	b->buf[b->len] = '\0';

	if (b->cb) {
		char *start = b->buf, *nl;

		while ((nl = memchr(start, '\n', b->len - (start - b->buf)))) {
			if (nl > start && (b->cb_rc = b->cb(b->data, start, nl - start)))
				return 0;
			start = nl + 1;
		}
		b->len -= start - b->buf;
		memmove(b->buf, start, b->len);
	}
	return n;
}

/* libcurl calls this about once a second even while no byte arrives, so a
 * stop request ends a quiet watch promptly. */
static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct body *b = userdata;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return b->stop && *b->stop;
}

static int do_get(struct mg_kube *k, const char *path, struct body *b, bool stream, long *status,
		  char *errbuf, size_t errlen, const char *post)
{
	char url[4096], cerr[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = NULL;
	char *auth = auth_header(k);
	CURLcode cc;
	CURL *c;
	int rc = 0;

	*status = 0;
	snprintf(url, sizeof(url), "%s%s", k->server, path);
	c = curl_easy_init();
	if (!c) {
		free(auth);
		snprintf(errbuf, errlen, "curl_easy_init failed");
		return -ENOMEM;
	}
	if (auth)
		hdrs = curl_slist_append(hdrs, auth);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (post) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "mcpgated/0.1");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, k->connect_timeout_ms);
	if (!stream)
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
	else {
		/* A silent watch (no event, no bookmark) for this long is dead. */
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 120L);
	}
	if (k->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, k->ca_file);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	if (b->stop) {
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(c, CURLOPT_XFERINFODATA, b);
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	}
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (cc != CURLE_OK && !((cc == CURLE_WRITE_ERROR || cc == CURLE_ABORTED_BY_CALLBACK) &&
			       (b->cb_rc || (b->stop && *b->stop)))) {
		snprintf(errbuf, errlen, "GET %s: %s", path, cerr[0] ? cerr : curl_easy_strerror(cc));
		rc = b->too_big ? -E2BIG : -EIO;
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	if (auth) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	return rc;
}

int mg_kube_get_json(struct mg_kube *k, const char *path, json_t **out, long *status,
		     char *errbuf, size_t errlen)
{
	struct body b = { .max = MG_KUBE_MAX_BODY };
	json_error_t jerr;
	int rc;

	*out = NULL;
	rc = do_get(k, path, &b, false, status, errbuf, errlen, NULL);
	if (!rc && (*status < 200 || *status > 299)) {
		snprintf(errbuf, errlen, "GET %s: HTTP %ld", path, *status);
		rc = -EPROTO;
	}
	if (!rc) {
		*out = json_loadb(b.buf ? b.buf : "", b.len, 0, &jerr);
		if (!*out) {
			snprintf(errbuf, errlen, "GET %s: bad JSON: %s", path, jerr.text);
			rc = -EPROTO;
		}
	}
	free(b.buf);
	return rc;
}

int mg_kube_stream_lines(struct mg_kube *k, const char *path, mg_kube_line_cb *cb, void *data,
			 const volatile bool *stop, long *status, char *errbuf, size_t errlen)
{
	struct body b = { .max = MG_KUBE_MAX_LINE, .cb = cb, .data = data, .stop = stop };
	int rc;

	rc = do_get(k, path, &b, true, status, errbuf, errlen, NULL);
	if (!rc && (*status < 200 || *status > 299)) {
		snprintf(errbuf, errlen, "GET %s: HTTP %ld", path, *status);
		rc = -EPROTO;
	}
	free(b.buf);
	return rc;
}

int mg_kube_post_json(struct mg_kube *k, const char *path, const char *body, json_t **out,
		      long *status, char *errbuf, size_t errlen)
{
	struct body b = { .max = MG_KUBE_MAX_BODY };
	json_error_t jerr;
	int rc;

	*out = NULL;
	rc = do_get(k, path, &b, false, status, errbuf, errlen, body);
	if (!rc && (*status < 200 || *status > 299)) {
		snprintf(errbuf, errlen, "POST %s: HTTP %ld", path, *status);
		rc = -EPROTO;
	}
	if (!rc) {
		*out = json_loadb(b.buf ? b.buf : "", b.len, 0, &jerr);
		if (!*out) {
			snprintf(errbuf, errlen, "POST %s: bad JSON: %s", path, jerr.text);
			rc = -EPROTO;
		}
	}
	free(b.buf);
	return rc;
}
