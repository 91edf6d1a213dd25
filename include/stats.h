/*
 * stats — consistent copies of what the admin API shows of a service's
 * instances: each one's state and health numbers, copied together under the
 * service's health lock, with a reference that keeps the backend alive while
 * /services, /metrics or the status page is written.
 *
 * Thread: the control thread (it reads the member lists the control thread
 * owns); the workers' atomics on the backend are read where they are shown.
 */
#ifndef ZKLB_STATS_H
#define ZKLB_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

struct backend;
struct service;

/* One instance's numbers, copied under the health lock. */
struct stats_instance {
	struct backend *be;			/* ref (backend_get) */
	const char *state;			/* static; healthy|ejected|checking|draining|resolving|dropped */
	uint32_t consecutive_failures;
	uint32_t ejections;
	uint64_t ejected_for_ms;		/* remaining, 0 when not ejected */
	uint64_t check_failures;
	enum backend_held held;			/* the change a collapse hold keeps from it */
	uint64_t hold_ends_in_ms;		/* remaining of that hold, 0 when none */
};

/*
 * The current members of svc, then its draining ones, into a new array of
 * *n_out entries; release it with stats_instances_free().
 */
struct stats_instance *stats_instances_of(struct service *svc, size_t *n_out);

void stats_instances_free(struct stats_instance *v, size_t n);

#endif
