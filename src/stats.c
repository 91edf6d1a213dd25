/*
 * stats — see stats.h.
 */
#include "stats.h"
#include "backend.h"
#include "service.h"

#include <stdlib.h>

static const char *instance_state(const struct backend *be)
{
	if (be->dropped && be->held != BACKEND_HELD_NONE)
		return "dropped";	/* failed while its removal is held (service_hold) */
	if (!atomic_load(&be->member))
		return "draining";
	if (backend_refused(be))
		return "refused";	/* policy or allow_hostnames said no (be->refused): never routed */
	if (!backend_has_addr(be))
		return "resolving";	/* a host name not resolved yet */
	if (backend_drained(be))
		return "drain";		/* an operator's drain (runtime API), apart from health */
	return health_state_name(be->health.state);
}

struct stats_instance *stats_instances_of(struct service *svc, size_t *n_out)
{
	uint64_t now = now_ms();
	pthread_mutex_lock(&svc->health_lock);
	size_t n = svc->n_members + svc->n_draining;
	struct stats_instance *v = xcalloc(n, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		struct backend *be = i < svc->n_members ? svc->members[i]
							: svc->draining[i - svc->n_members];
		v[i].be = backend_get(be);
		v[i].state = instance_state(be);
		v[i].consecutive_failures = be->health.consecutive_failures;
		v[i].ejections = be->health.ejections_total;
		v[i].check_failures = be->health.check_failures_total;
		if (be->health.state == HEALTH_EJECTED && be->health.ejected_until_ms > now)
			v[i].ejected_for_ms = be->health.ejected_until_ms - now;
		v[i].held = be->held;
		if (be->held != BACKEND_HELD_NONE && be->held_until_ms > now)
			v[i].hold_ends_in_ms = be->held_until_ms - now;
	}
	pthread_mutex_unlock(&svc->health_lock);
	*n_out = n;
	return v;
}

void stats_instances_free(struct stats_instance *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		backend_put(v[i].be);
	free(v);
}
