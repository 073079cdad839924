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

#endif /* MCPGATE_STR_H */
