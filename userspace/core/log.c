/*
 * log: JSON lines on stdout. See include/mcpgate/log.h.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mcpgate/log.h"

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void now_rfc3339(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%06ldZ", ts.tv_nsec / 1000);
}

void mg_log_json(const char *level, json_t *obj)
{
	char ts[40];
	char *s;

	if (!obj)
		return;
	now_rfc3339(ts, sizeof(ts));
	json_object_set_new(obj, "ts", json_string(ts));
	json_object_set_new(obj, "level", json_string(level));
	s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (s) {
		pthread_mutex_lock(&log_mu);
		fputs(s, stdout);
		fputc('\n', stdout);
		fflush(stdout);
		pthread_mutex_unlock(&log_mu);
		free(s);
	}
	json_decref(obj);
}

void mg_log(const char *level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mg_log_json(level, json_pack("{s:s}", "msg", msg));
}
