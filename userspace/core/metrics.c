/*
 * metrics: Prometheus text format writing. See metrics.h.
 */
#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpgate/metrics.h"
#include "mcpgate/str.h"

size_t mg_metrics_escape_label(const char *in, char *out, size_t cap)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t need = 0;

	while (*s) {
		char esc[4];
		const char *piece = esc;
		size_t plen = 2, n = mg_utf8_seq_len(s);

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

/* ---- the registry ---- */

struct mg_metrics_series {
	struct mg_metrics_series *next;
	struct mg_metrics_family *fam;
	char *values[MG_METRICS_MAX_LABELS];
	uint64_t u;				      /* counter (atomic) */
	int64_t g;				      /* gauge (atomic) */
	uint64_t buckets[MG_METRICS_MAX_BUCKETS + 1]; /* histogram, last +Inf; under mu */
	double sum;
	uint64_t count;
};

struct mg_metrics_family {
	struct mg_metrics_family *next;
	struct mg_metrics *reg;
	enum mg_metrics_type type;
	char *name, *help;
	char *labels[MG_METRICS_MAX_LABELS];
	size_t n_labels;
	double bounds[MG_METRICS_MAX_BUCKETS];
	size_t n_bounds;
	struct mg_metrics_series *head, **tail;
};

struct collector {
	struct collector *next;
	mg_metrics_collect_cb *cb;
	void *data;
};

struct mg_metrics {
	pthread_mutex_t mu; /* series lists and histogram values */
	struct mg_metrics_family *head, **tail;
	struct collector *collectors, **ctail;
};

struct mg_metrics *mg_metrics_new(void)
{
	struct mg_metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	pthread_mutex_init(&m->mu, NULL);
	m->tail = &m->head;
	m->ctail = &m->collectors;
	return m;
}

static void series_free(struct mg_metrics_series *s)
{
	for (size_t i = 0; i < MG_METRICS_MAX_LABELS; i++)
		free(s->values[i]);
	free(s);
}

static void clear_locked(struct mg_metrics_family *f)
{
	struct mg_metrics_series *s, *n;

	for (s = f->head; s; s = n) {
		n = s->next;
		series_free(s);
	}
	f->head = NULL;
	f->tail = &f->head;
}

static void family_free(struct mg_metrics_family *f)
{
	clear_locked(f);
	for (size_t i = 0; i < f->n_labels; i++)
		free(f->labels[i]);
	free(f->name);
	free(f->help);
	free(f);
}

void mg_metrics_free(struct mg_metrics *m)
{
	struct mg_metrics_family *f, *fn;
	struct collector *c, *cn;

	if (!m)
		return;
	for (f = m->head; f; f = fn) {
		fn = f->next;
		family_free(f);
	}
	for (c = m->collectors; c; c = cn) {
		cn = c->next;
		free(c);
	}
	pthread_mutex_destroy(&m->mu);
	free(m);
}

/* Prometheus data model: [a-zA-Z_:][a-zA-Z0-9_:]* for metric names,
 * the same without ':' for label names. */
static bool valid_name(const char *s, bool colon)
{
	if (!*s || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || (colon && *s == ':')))
			return false;
	return true;
}

static bool valid_family(const struct mg_metrics *m, enum mg_metrics_type type, const char *name,
			 const char *help, const char *const *labels, size_t n_labels,
			 const double *bounds, size_t n_bounds)
{
	if (!valid_name(name, true) || !help || strpbrk(help, "\\\n"))
		return false;
	if (n_labels > MG_METRICS_MAX_LABELS || n_bounds > MG_METRICS_MAX_BUCKETS)
		return false;
	if ((type == MG_METRICS_HISTOGRAM) != (n_bounds > 0))
		return false;
	for (size_t i = 0; i < n_labels; i++)
		if (!valid_name(labels[i], false) ||
		    (type == MG_METRICS_HISTOGRAM && !strcmp(labels[i], "le")))
			return false;
	for (size_t i = 1; i < n_bounds; i++)
		if (!(bounds[i] > bounds[i - 1]))
			return false;
	for (const struct mg_metrics_family *f = m->head; f; f = f->next)
		if (f->name && !strcmp(f->name, name))
			return false;
	return true;
}

static void append_family(struct mg_metrics *m, struct mg_metrics_family *f)
{
	f->reg = m;
	f->tail = &f->head;
	pthread_mutex_lock(&m->mu);
	*m->tail = f;
	m->tail = &f->next;
	pthread_mutex_unlock(&m->mu);
}

struct mg_metrics_family *mg_metrics_add(struct mg_metrics *m, enum mg_metrics_type type,
					 const char *name, const char *help,
					 const char *const *labels, size_t n_labels,
					 const double *bounds, size_t n_bounds)
{
	struct mg_metrics_family *f;
	bool oom = false;

	if (!valid_family(m, type, name, help, labels, n_labels, bounds, n_bounds))
		return NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->type = type;
	f->name = strdup(name);
	f->help = strdup(help);
	oom = !f->name || !f->help;
	for (size_t i = 0; i < n_labels; i++) {
		f->labels[i] = strdup(labels[i]);
		oom = oom || !f->labels[i];
	}
	f->n_labels = n_labels;
	if (n_bounds)
		memcpy(f->bounds, bounds, n_bounds * sizeof(*bounds));
	f->n_bounds = n_bounds;
	f->tail = &f->head;
	if (oom) {
		family_free(f);
		return NULL;
	}
	append_family(m, f);
	return f;
}

int mg_metrics_on_collect(struct mg_metrics *m, mg_metrics_collect_cb *cb, void *data)
{
	struct collector *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->cb = cb;
	c->data = data;
	pthread_mutex_lock(&m->mu);
	*m->ctail = c;
	m->ctail = &c->next;
	pthread_mutex_unlock(&m->mu);
	return 0;
}

static bool same_values(const struct mg_metrics_family *f, const struct mg_metrics_series *s,
			const char *const *values)
{
	for (size_t i = 0; i < f->n_labels; i++)
		if (strcmp(s->values[i], values[i] ? values[i] : ""))
			return false;
	return true;
}

static struct mg_metrics_series *new_series(struct mg_metrics_family *f, const char *const *values)
{
	struct mg_metrics_series *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->fam = f;
	for (size_t i = 0; i < f->n_labels; i++) {
		s->values[i] = strdup(values[i] ? values[i] : "");
		if (!s->values[i]) {
			series_free(s);
			return NULL;
		}
	}
	return s;
}

struct mg_metrics_series *mg_metrics_with(struct mg_metrics_family *f, const char *const *values)
{
	struct mg_metrics_series *s;

	pthread_mutex_lock(&f->reg->mu);
	for (s = f->head; s; s = s->next)
		if (same_values(f, s, values))
			goto out;
	s = new_series(f, values);
	if (s) {
		*f->tail = s;
		f->tail = &s->next;
	}
out:
	pthread_mutex_unlock(&f->reg->mu);
	return s;
}

void mg_metrics_clear(struct mg_metrics_family *f)
{
	pthread_mutex_lock(&f->reg->mu);
	clear_locked(f);
	pthread_mutex_unlock(&f->reg->mu);
}

void mg_metrics_inc(struct mg_metrics_series *s, uint64_t n)
{
	if (s)
		__atomic_add_fetch(&s->u, n, __ATOMIC_RELAXED);
}

void mg_metrics_set(struct mg_metrics_series *s, int64_t v)
{
	if (!s)
		return;
	__atomic_store_n(&s->g, v, __ATOMIC_RELAXED);
	__atomic_store_n(&s->u, (uint64_t)v, __ATOMIC_RELAXED);
}

/* The histogram of <s> lives in a family whose registry lock guards it. */
static void observe_locked(const struct mg_metrics_family *f, struct mg_metrics_series *s, double v)
{
	size_t i = 0;

	while (i < f->n_bounds && v > f->bounds[i])
		i++;
	s->buckets[i]++; /* "le": a value equal to a bound counts in it */
	s->sum += v;
	s->count++;
}

void mg_metrics_observe(struct mg_metrics_series *s, double v)
{
	struct mg_metrics_family *f;

	if (!s)
		return;
	f = s->fam;
	pthread_mutex_lock(&f->reg->mu);
	observe_locked(f, s, v);
	pthread_mutex_unlock(&f->reg->mu);
}

static const char *const type_names[] = {
	[MG_METRICS_COUNTER] = "counter",
	[MG_METRICS_GAUGE] = "gauge",
	[MG_METRICS_HISTOGRAM] = "histogram",
};

static void labels_of(const struct mg_metrics_family *f, const struct mg_metrics_series *s,
		      struct mg_metrics_label *l)
{
	for (size_t i = 0; i < f->n_labels; i++) {
		l[i].name = f->labels[i];
		l[i].value = s->values[i];
	}
}

static void render_histogram(FILE *f, const struct mg_metrics_family *fam,
			     const struct mg_metrics_series *s)
{
	struct mg_metrics_label l[MG_METRICS_MAX_LABELS + 1];
	char name[256], le[32];
	uint64_t cum = 0;

	labels_of(fam, s, l);
	snprintf(name, sizeof(name), "%s_bucket", fam->name);
	for (size_t i = 0; i <= fam->n_bounds; i++) {
		cum += s->buckets[i];
		if (i < fam->n_bounds)
			snprintf(le, sizeof(le), "%g", fam->bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		l[fam->n_labels] = (struct mg_metrics_label){"le", le};
		mg_metrics_put_u64(f, name, l, fam->n_labels + 1, cum);
	}
	snprintf(name, sizeof(name), "%s_sum", fam->name);
	snprintf(le, sizeof(le), "%.6f", s->sum);
	mg_metrics_put_sample(f, name, l, fam->n_labels, le);
	snprintf(name, sizeof(name), "%s_count", fam->name);
	mg_metrics_put_u64(f, name, l, fam->n_labels, s->count);
}

static void render_family(FILE *f, const struct mg_metrics_family *fam)
{
	struct mg_metrics_label l[MG_METRICS_MAX_LABELS];

	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fam->name, fam->help, fam->name,
		type_names[fam->type]);
	for (const struct mg_metrics_series *s = fam->head; s; s = s->next) {
		char v[24];

		labels_of(fam, s, l);
		switch (fam->type) {
		case MG_METRICS_COUNTER:
			mg_metrics_put_u64(f, fam->name, l, fam->n_labels,
					   __atomic_load_n(&s->u, __ATOMIC_RELAXED));
			break;
		case MG_METRICS_GAUGE:
			snprintf(v, sizeof(v), "%" PRId64,
				 __atomic_load_n(&s->g, __ATOMIC_RELAXED));
			mg_metrics_put_sample(f, fam->name, l, fam->n_labels, v);
			break;
		case MG_METRICS_HISTOGRAM:
			render_histogram(f, fam, s);
			break;
		}
	}
}

int mg_metrics_render(struct mg_metrics *m, FILE *f)
{
	/* Collectors take the lock themselves (mg_metrics_with). They are
	 * only added at start-up, before the first render. */
	for (struct collector *c = m->collectors; c; c = c->next)
		c->cb(c->data);
	pthread_mutex_lock(&m->mu);
	for (const struct mg_metrics_family *fam = m->head; fam; fam = fam->next)
		render_family(f, fam);
	pthread_mutex_unlock(&m->mu);
	return ferror(f) ? -EIO : 0;
}

char *mg_metrics_render_text(struct mg_metrics *m)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	if (mg_metrics_render(m, f)) {
		fclose(f);
		free(out);
		return NULL;
	}
	if (fclose(f)) {
		free(out);
		return NULL;
	}
	return out;
}
