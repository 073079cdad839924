/*
 * metrics: writing the Prometheus text exposition format (version 0.0.4).
 *
 * Label values come from what pods send (a request's resource name is any
 * segment the path parser accepts, quotes and braces included), and one
 * unescaped quote or line feed breaks the whole scrape, not one line. So no
 * label is ever printed with a bare "%s": every sample with labels goes
 * through mg_metrics_put_sample(), which escapes each value here.
 *
 * The registry (struct mg_metrics) is where modules put what /metrics
 * shows: each registers its families (counter, gauge, histogram; a name,
 * a help text, label names) once, and either updates series as things
 * happen (mg_metrics_inc, _observe: thread-safe) or fills them from its own
 * state in a collect callback run before each render. The admin listener
 * renders the registry: families in registration order, series in the
 * order they were first used, HELP and TYPE once per family.
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

/* ---- the registry ---- */

struct mg_metrics;
struct mg_metrics_family;
struct mg_metrics_series;

/** Largest number of labels a family has; of buckets a histogram has. */
#define MG_METRICS_MAX_LABELS  8
#define MG_METRICS_MAX_BUCKETS 32

enum mg_metrics_type {
	MG_METRICS_COUNTER = 0, /* uint64, only goes up (or mirrors a module's own counter) */
	MG_METRICS_GAUGE,	/* int64, set */
	MG_METRICS_HISTOGRAM,	/* cumulative buckets, _sum, _count */
};

/** An empty registry; NULL on ENOMEM. */
struct mg_metrics *mg_metrics_new(void);

/** Frees <m> and everything registered in it; accepts NULL. */
void mg_metrics_free(struct mg_metrics *m);

/**
 * Registers the family <name> of <type> with <help> (one line, no
 * backslash) and the label names <labels>[0..<n_labels>) (constants of
 * ours: copied, but not escaped). A histogram takes its upper bounds
 * <bounds>[0..<n_bounds>), strictly increasing (+Inf is implied); others
 * pass NULL, 0. Returns the family, or NULL when the name is not a valid
 * metric name, already registered, a limit is exceeded, or on ENOMEM.
 */
struct mg_metrics_family *mg_metrics_add(struct mg_metrics *m, enum mg_metrics_type type,
					 const char *name, const char *help,
					 const char *const *labels, size_t n_labels,
					 const double *bounds, size_t n_bounds);

/**
 * The series of <f> with the label values <values>[0..n_labels) (any
 * bytes: escaped when rendered; NULL is ""), created on first use and
 * kept until mg_metrics_clear(). NULL on ENOMEM.
 */
struct mg_metrics_series *mg_metrics_with(struct mg_metrics_family *f, const char *const *values);

/** Adds <n> to counter <s>. */
void mg_metrics_inc(struct mg_metrics_series *s, uint64_t n);

/** Sets counter or gauge <s> to <v> (a collect callback mirroring state). */
void mg_metrics_set(struct mg_metrics_series *s, int64_t v);

/** Counts <v> into histogram <s>. */
void mg_metrics_observe(struct mg_metrics_series *s, double v);

/**
 * Drops every series of <f> (a collect callback rebuilding a family whose
 * series come and go, e.g. one per pod). Pointers to them become invalid.
 */
void mg_metrics_clear(struct mg_metrics_family *f);

/** Called before each render, in registration order; fills series. */
typedef void mg_metrics_collect_cb(void *data);

/** Registers <cb>(<data>) to run before each render. 0 or -ENOMEM. */
int mg_metrics_on_collect(struct mg_metrics *m, mg_metrics_collect_cb *cb, void *data);

/** Runs the collect callbacks, then writes every family to <f>. 0 or -EIO. */
int mg_metrics_render(struct mg_metrics *m, FILE *f);

/** mg_metrics_render() into a malloc()ed NUL-terminated string; NULL on ENOMEM. */
char *mg_metrics_render_text(struct mg_metrics *m);

#endif /* MCPGATE_METRICS_H */
