/*
 * A growable byte buffer with a hard cap, one per connection direction.
 * Bytes are appended at the end and consumed from the front; consumed space
 * is reclaimed lazily (memmove when it is worth it), so the common
 * read-parse-forward cycle copies each byte at most once more.
 */
#ifndef MCPGATE_BUF_H
#define MCPGATE_BUF_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mcpgate/str.h"

struct mg_buf {
	char *data;
	size_t off; /* first unconsumed byte */
	size_t len; /* end of valid bytes (data[off..len) is the content) */
	size_t cap; /* allocated */
	size_t max; /* never grows past this */
};

static inline void mg_buf_init(struct mg_buf *b, size_t max)
{
	b->data = NULL;
	b->off = b->len = b->cap = 0;
	b->max = max;
}

static inline void mg_buf_free(struct mg_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}

/** Bytes waiting in <b>. */
static inline size_t mg_buf_size(const struct mg_buf *b)
{
	return b->len - b->off;
}

static inline char *mg_buf_head(const struct mg_buf *b)
{
	return b->data + b->off;
}

static inline struct mg_str mg_buf_str(const struct mg_buf *b)
{
	return (struct mg_str){b->data + b->off, b->len - b->off};
}

/** Room that can still be appended without exceeding max. */
static inline size_t mg_buf_room(const struct mg_buf *b)
{
	return b->max - mg_buf_size(b);
}

/**
 * Makes at least <n> bytes writable at mg_buf_tail(). Returns 0, or -ENOBUFS
 * when that would exceed the cap, -ENOMEM when allocation fails.
 */
static inline int mg_buf_reserve(struct mg_buf *b, size_t n)
{
	size_t used = b->len - b->off, cap;
	char *nd;

	if (used + n > b->max)
		return -ENOBUFS;
	if (b->cap - b->len >= n)
		return 0;
	if (b->off && b->cap - used >= n) {
		memmove(b->data, b->data + b->off, used);
		b->off = 0;
		b->len = used;
		return 0;
	}
	cap = b->cap ? b->cap : 4096;
	while (cap < used + n)
		cap *= 2;
	if (cap > b->max)
		cap = b->max;
	nd = malloc(cap);
	if (!nd)
		return -ENOMEM;
	if (used)
		memcpy(nd, b->data + b->off, used);
	free(b->data);
	b->data = nd;
	b->cap = cap;
	b->off = 0;
	b->len = used;
	return 0;
}

static inline char *mg_buf_tail(const struct mg_buf *b)
{
	return b->data + b->len;
}

/** Writable space at the tail right now (after a reserve). */
static inline size_t mg_buf_tailroom(const struct mg_buf *b)
{
	return b->cap - b->len;
}

static inline void mg_buf_commit(struct mg_buf *b, size_t n)
{
	b->len += n;
}

static inline int mg_buf_append(struct mg_buf *b, const void *p, size_t n)
{
	int rc = mg_buf_reserve(b, n);

	if (rc)
		return rc;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static inline int mg_buf_append_str(struct mg_buf *b, struct mg_str s)
{
	return mg_buf_append(b, s.ptr, s.len);
}

static inline void mg_buf_consume(struct mg_buf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

#endif /* MCPGATE_BUF_H */
