/*
 * log: one JSON object per line on stdout, flushed per line, so a log
 * shipper or a test can read it as it happens. Never pass a token or a
 * secret value in here.
 */
#ifndef MCPGATE_LOG_H
#define MCPGATE_LOG_H

#include <jansson.h>

/** Adds "ts" and "level" to <obj>, prints it, and drops the reference. */
void mg_log_json(const char *level, json_t *obj);

/** A plain message: {"ts","level","msg"} plus printf-formatted text. */
void mg_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* MCPGATE_LOG_H */
