/*
 * metrics: writing the Prometheus text exposition format (version 0.0.4).
 *
 * Label values come from what pods send (a request's resource name is any
 * segment the path parser accepts, quotes and braces included), and one
 * unescaped quote or line feed breaks the whole scrape, not one line. So no
 * label is ever printed with a bare "%s": every sample with labels goes
 * through mg_metrics_put_sample(), which escapes each value here.
 */
#ifndef MCPGATE_METRICS_H
#define MCPGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/** One label of a sample; <name> is a constant of ours, <value> anything. */
struct mg_metrics_label {
	const char *name;
	const char *value;
};

/**
 * Escapes <in> as the text between the quotes of a label value: backslash,
 * double quote and line feed become \\, \" and \n, as the format requires;
 * a byte that is not part of valid UTF-8 (the format is UTF-8, and
 * Prometheus refuses a scrape with invalid UTF-8 in a label value) becomes
 * U+FFFD. Writes at most <cap> bytes to <out>, always NUL-terminated when
 * <cap> > 0, and returns the length the whole escaped value needs (without
 * the NUL), like snprintf: the output was cut if the result is >= <cap>.
 */
size_t mg_metrics_escape_label(const char *in, char *out, size_t cap);

/**
 * Writes one sample line `<name>{<l0>="<v0>",...} <value>\n` to <f>, every
 * label value escaped (mg_metrics_escape_label), no braces when <n> is 0.
 * <value> is the sample's value as text (a number the caller formatted).
 * Returns 0, or -EIO when <f> reported an error.
 */
int mg_metrics_put_sample(FILE *f, const char *name, const struct mg_metrics_label *labels,
			  size_t n, const char *value);

/** mg_metrics_put_sample() with an unsigned integer value. */
int mg_metrics_put_u64(FILE *f, const char *name, const struct mg_metrics_label *labels, size_t n,
		       uint64_t value);

#endif /* MCPGATE_METRICS_H */
