/*
 * metrics — GET /metrics: every family zklb exports, declared once in one
 * table (name, type, labels, help, getter) that writes the Prometheus text
 * and that the README's list and the tests read (metrics_info;
 * tests/metrics_table.c prints it).
 *
 * Families are written in table order, each with # HELP and # TYPE. Those
 * of ZooKeeper, the overlay, announce and sync appear only when that part
 * is configured; service and backend families always do.
 */
#ifndef ZKLB_METRICS_H
#define ZKLB_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct control;
struct evbuffer;

/* Append the whole /metrics text for c to b. Thread: the control thread. */
void metrics_write(struct evbuffer *b, struct control *c);

#define METRICS_SCOPE_LABELS 2		/* labels naming a series' object, at most */

/* One family as the table declares it. */
struct metrics_info {
	const char *name;			/* static; "zklb_..." */
	const char *type;			/* static; "counter" or "gauge" */
	const char *scope_labels[METRICS_SCOPE_LABELS];	/* static; "service", "backend"...;
							   NULL after the last */
	const char *label;			/* static; its own label after those, or NULL */
	const char *(*label_values)(size_t k);	/* label's values, NULL past the last; NULL
						   when they vary (build version, view) */
	const char *when;			/* static; "with announce entries"...; NULL: always */
	const char *help;			/* static; the # HELP text */
};

/* Family i in /metrics order; false past the last. Pure; any thread. */
bool metrics_info(size_t i, struct metrics_info *out);

#endif
