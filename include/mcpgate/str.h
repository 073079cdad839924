/*
 * Slices and growable buffers shared by every module. A slice never owns its
 * bytes: it points into a receive buffer or a static string, so parsers can
 * describe what they found without copying.
 */
#ifndef MCPGATE_STR_H
#define MCPGATE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

/** A read-only view of <len> bytes at <ptr>; not NUL-terminated. */
struct mg_str {
	const char *ptr;
	size_t len;
};

#define MG_STR(lit) ((struct mg_str){(lit), sizeof(lit) - 1})
#define MG_STR_NULL ((struct mg_str){NULL, 0})

static inline struct mg_str mg_str_of(const char *s)
{
	return (struct mg_str){s, s ? strlen(s) : 0};
}

static inline bool mg_str_eq(struct mg_str a, struct mg_str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* ASCII case-insensitive comparison (header names, tokens). */
static inline bool mg_str_caseeq(struct mg_str a, struct mg_str b)
{
	return a.len == b.len && (a.len == 0 || strncasecmp(a.ptr, b.ptr, a.len) == 0);
}

static inline bool mg_str_has_prefix(struct mg_str s, struct mg_str prefix)
{
	return s.len >= prefix.len && memcmp(s.ptr, prefix.ptr, prefix.len) == 0;
}

/* Length of the well-formed UTF-8 sequence at <s> (RFC 3629 §4: no
 * overlongs, no surrogates, nothing above U+10FFFF), or 0 if there is none.
 * <s> is NUL-terminated, and NUL is not a continuation byte, so reading
 * ahead stops in time. One copy for the JSON log writer and the metrics
 * label escaper. */
static inline size_t mg_utf8_seq_len(const unsigned char *s)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n;

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
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

#endif /* MCPGATE_STR_H */
