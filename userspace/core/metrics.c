/*
 * metrics: Prometheus text format writing. See metrics.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpgate/metrics.h"

/* Length of the valid UTF-8 sequence at <s> (RFC 3629 §4: no overlongs,
 * no surrogates, nothing above U+10FFFF), or 0 if there is none. */
static size_t utf8_seq_len(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	for (i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
			return 0;
	if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) ||
	    (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
		return 0;
	return n;
}

size_t mg_metrics_escape_label(const char *in, char *out, size_t cap)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t need = 0;

	while (*s) {
		char esc[4];
		const char *piece = esc;
		size_t plen = 2, n = utf8_seq_len(s);

		if (*s == '\\' || *s == '"') {
			esc[0] = '\\';
			esc[1] = (char)*s;
		} else if (*s == '\n') {
			esc[0] = '\\';
			esc[1] = 'n';
		} else if (n == 0) {
			piece = "\xef\xbf\xbd"; /* U+FFFD REPLACEMENT CHARACTER */
			plen = 3;
			n = 1;
		} else {
			piece = (const char *)s;
			plen = n;
		}
		/* Whole pieces only: a cut never leaves half an escape. */
		if (cap && need + plen < cap)
			memcpy(out + need, piece, plen);
		else if (cap && need < cap)
			cap = need + 1; /* stop writing; the NUL goes at <need> */
		need += plen;
		s += n;
	}
	if (cap)
		out[need < cap ? need : cap - 1] = '\0';
	return need;
}

int mg_metrics_put_sample(FILE *f, const char *name, const struct mg_metrics_label *labels,
			  size_t n, const char *value)
{
	fputs(name, f);
	for (size_t i = 0; i < n; i++) {
		char buf[512];
		size_t need = mg_metrics_escape_label(labels[i].value ? labels[i].value : "", buf,
						      sizeof(buf));

		fprintf(f, "%s%s=\"", i ? "," : "{", labels[i].name);
		if (need < sizeof(buf)) {
			fputs(buf, f);
		} else {
			char *big = malloc(need + 1);

			if (big) {
				mg_metrics_escape_label(labels[i].value, big, need + 1);
				fputs(big, f);
				free(big);
			} else {
				fputs(buf, f); /* cut at a piece boundary: still valid */
			}
		}
		fputc('"', f);
	}
	fprintf(f, "%s %s\n", n ? "}" : "", value);
	return ferror(f) ? -EIO : 0;
}

int mg_metrics_put_u64(FILE *f, const char *name, const struct mg_metrics_label *labels, size_t n,
		       uint64_t value)
{
	char v[24];

	snprintf(v, sizeof(v), "%" PRIu64, value);
	return mg_metrics_put_sample(f, name, labels, n, v);
}
