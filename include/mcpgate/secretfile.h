/*
 * secretfile: reading secret files (bearer tokens, web-identity tokens).
 *
 * Every reader of a token file trims it the same way (trailing space, tab,
 * CR and LF: what `echo` and editors leave; a token never ends with one),
 * bounds it by MG_SECRETFILE_MAX, and wipes (explicit_bzero) the bytes it
 * held when it lets them go. Projected ServiceAccount tokens rotate under
 * us, so a watched file (struct mg_secretfile) is re-read when its mtime
 * changes, checked at most once per <recheck_ms>. Never log the contents.
 */
#ifndef MCPGATE_SECRETFILE_H
#define MCPGATE_SECRETFILE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mcpgate/str.h"

/** Largest secret file read; a bigger one is refused with -EFBIG. */
#define MG_SECRETFILE_MAX (64u * 1024)

/** Bytes read from a secret file: NUL-terminated, trimmed, heap-owned. */
struct mg_secret {
	char *ptr;
	size_t len;
};

/**
 * Reads <path> into <out> (any previous value is wiped first), trailing
 * whitespace trimmed (mg_secretfile_trim). Returns 0, -EFBIG when the file
 * holds more than MG_SECRETFILE_MAX bytes, -ENOMEM, or the -errno of
 * open/read. On error <out> is empty. An empty file is 0 with <out->len> 0.
 */
int mg_secretfile_read(const char *path, struct mg_secret *out);

/** Wipes and frees <s>'s bytes; <s> becomes empty. Accepts an empty one. */
void mg_secret_wipe(struct mg_secret *s);

/** Length of <buf>[0..<len>) without its trailing space, tab, CR and LF. */
size_t mg_secretfile_trim(const char *buf, size_t len);

/** A secret file kept in memory and re-read when it changes. */
struct mg_secretfile;

/** Watches <path> (copied); nothing is read yet. NULL on ENOMEM. */
struct mg_secretfile *mg_secretfile_open(const char *path, uint32_t recheck_ms);

/** Wipes the held secret and frees <f>; accepts NULL. */
void mg_secretfile_free(struct mg_secretfile *f);

/**
 * The current contents of <f> at time <now_ms> (monotonic ms). The file is
 * stat()ed when the last check is <recheck_ms> old or nothing is held yet,
 * and re-read when its mtime changed. A failed stat or read keeps the last
 * good value (a rotation in progress must not drop the token). The slice
 * stays valid until the next call or mg_secretfile_free(); it is
 * MG_STR_NULL while nothing was ever read.
 */
struct mg_str mg_secretfile_get(struct mg_secretfile *f, uint64_t now_ms);

#endif /* MCPGATE_SECRETFILE_H */
