/*
 * config_errors — the list of messages a configuration load collects.
 *
 * Loading is not fatal at the first problem: `zklb check` prints them all.
 * The list sits below config (which loads), schema (which validates and
 * words the messages) and yamltree (which parses), so none of them has to
 * reach up into another.
 * Each message is complete, e.g.
 *   "zklb.yaml:12:5: services.web.connect_timeout: '5x' is not a duration"
 */
#ifndef ZKLB_CONFIG_ERRORS_H
#define ZKLB_CONFIG_ERRORS_H

#include <stdarg.h>
#include <stddef.h>

struct config_errors {
	char **msgs;			/* owned, n entries, each owned */
	size_t n;
};

/* Append one complete message (printf style); errs starts zeroed. Thread: any. */
void config_errors_add(struct config_errors *errs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The same with a va_list, for functions that take a format of their own. */
void config_errors_vadd(struct config_errors *errs, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* Free every message; errs is empty (and reusable) afterwards. NULL is a no-op. */
void config_errors_free(struct config_errors *errs);

#endif
