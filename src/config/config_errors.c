/*
 * config_errors — see config_errors.h.
 */
#include "config_errors.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void config_errors_vadd(struct config_errors *errs, const char *fmt, va_list ap)
{
	/* Wide enough for schema's longest line: position, key path and message. */
	char buf[1200];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	errs->msgs = xrealloc(errs->msgs, (errs->n + 1) * sizeof(*errs->msgs));
	errs->msgs[errs->n++] = xstrdup(buf);
}

void config_errors_add(struct config_errors *errs, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	config_errors_vadd(errs, fmt, ap);
	va_end(ap);
}

void config_errors_free(struct config_errors *errs)
{
	if (!errs)
		return;
	for (size_t i = 0; i < errs->n; i++)
		free(errs->msgs[i]);
	free(errs->msgs);
	errs->msgs = NULL;
	errs->n = 0;
}
