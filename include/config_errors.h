/*
 * config_errors — the list of messages a configuration load collects.
 *
 * Loading is not fatal at the first problem: `zklb check` prints them all.
 * The list sits below both config (which loads) and schema (which validates
 * and words the messages), so neither has to reach up into the other.
 * Each message is complete, e.g.
 *   "zklb.yaml:12:5: services.web.connect_timeout: '5x' is not a duration"
 */
#ifndef ZKLB_CONFIG_ERRORS_H
#define ZKLB_CONFIG_ERRORS_H

#include <stddef.h>

struct config_errors {
	char **msgs;			/* owned, n entries, each owned */
	size_t n;
};

/* Append one complete message (printf style); errs starts zeroed. Thread: any. */
void config_errors_add(struct config_errors *errs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Free every message; errs is empty (and reusable) afterwards. NULL is a no-op. */
void config_errors_free(struct config_errors *errs);

#endif
