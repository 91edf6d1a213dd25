/*
 * relay_choose — which backend a relay tries next: health, panic mode,
 * weights and slow start, per-instance limits, zones and the trunk, then the
 * service's balancing algorithm (balance.h). It reads the relay's set and
 * what it tried; it opens nothing (relay.c connects to what it returns).
 *
 * Thread: the relay's worker.
 */
#include "relay_int.h"
#include "backend.h"
#include "backend_set.h"
#include "balance.h"
#include "health.h"
#include "locality.h"
#include "service.h"

#include <stdlib.h>

#define WEIGHT_SCALE 100		/* balancing weight units per configured weight */

static bool was_tried(const struct relay *r, const struct backend *be)
{
	for (uint32_t i = 0; i < r->attempts; i++)
		if (r->tried[i] == be)
			return true;
	return false;
}

/*
 * locality: keep only the candidates of one side — the local zone, or the
 * others when `out` — unless that side has none left (all tried, say):
 * then every eligible candidate stays.
 */
static void relay_pick_zone(const struct backend_set *s, struct balance_candidate *c, bool out)
{
	size_t left = 0;
	for (size_t i = 0; i < s->n; i++)
		left += c[i].eligible && s->local[i] != out;
	if (left == 0)
		return;
	for (size_t i = 0; i < s->n; i++)
		if (s->local[i] == out)
			c[i].eligible = false;
}

/*
 * The trunk port be is reached through, or 0 for a TCP connection of its
 * own: via trunk needs one advertised (else be is not reachable at all),
 * via auto takes it when there is one.
 */
uint16_t relay_trunk_port(const struct relay *r, const struct backend *be)
{
	if (r->set->conf->via == VIA_DIRECT || !r->rw->trunk)
		return 0;
	return atomic_load_explicit(&be->trunk_port, memory_order_relaxed);
}

static bool relay_can_reach(const struct relay *r, const struct backend *be)
{
	return r->set->conf->via != VIA_TRUNK || relay_trunk_port(r, be) != 0;
}

/*
 * Choose the next backend, never one already tried nor one at its
 * max_connections_per_instance (*full counts those); NULL when none is left.
 */
struct backend *relay_choose(struct relay *r, uint64_t now, size_t *full)
{
	const struct backend_set *s = r->set;
	uint32_t limit = s->conf->max_connections_per_instance;
	struct relay_worker *rw = r->rw;
	if (s->n > rw->cands_cap) {
		/* Once per size of set a worker meets, not per connection. */
		struct balance_candidate *grown = realloc(rw->cands, s->n * sizeof(*grown));
		if (!grown)
			return NULL;	/* out of memory: this client gets no backend */
		rw->cands = grown;
		rw->cands_cap = s->n;
	}
	struct balance_candidate *c = rw->cands;
	size_t routable = 0, members = 0;
	size_t local_routable = 0, local_members = 0;	/* locality: this host's zone */

	for (size_t i = 0; i < s->n; i++) {
		struct backend *be = s->v[i];
		bool member = atomic_load_explicit(&be->member, memory_order_relaxed) && backend_has_addr(be) &&
			      !backend_drained(be) && relay_can_reach(r, be);
		bool ok = member && backend_routable(be, now);
		members += member;
		routable += ok;
		c[i].active = atomic_load_explicit(&be->active, memory_order_relaxed);
		/*
		 * Weights are scaled up so slow start can ramp even a weight of 1
		 * (fractions of it); round_robin walks weights slot by slot, so
		 * it keeps the configured ones.
		 */
		uint32_t wt = s->conf->balance == BALANCE_ROUND_ROBIN ? backend_weight(be)
								     : backend_weight(be) * WEIGHT_SCALE;
		c[i].weight = health_slow_start_weight(wt,
			atomic_load_explicit(&be->serving_since_ms, memory_order_relaxed), now,
			s->conf->slow_start_ms);
		c[i].eligible = ok && !was_tried(r, be);
		if (s->local && s->local[i]) {
			local_members += member;
			local_routable += ok;
		}
	}
	/* Panic (Envoy): too few healthy ones left, so balance over all of them. */
	bool panic = health_in_panic(routable, members, s->conf->health.panic_threshold);
	if (panic) {
		for (size_t i = 0; i < s->n; i++) {
			struct backend *be = s->v[i];
			c[i].eligible = atomic_load_explicit(&be->member, memory_order_relaxed) &&
					backend_has_addr(be) && !backend_drained(be) && !was_tried(r, be) &&
					relay_can_reach(r, be);
		}
	}
	/* an instance at its max_connections_per_instance takes nothing, panic or not */
	for (size_t i = 0; limit && i < s->n; i++) {
		if (c[i].eligible && !balance_has_room(c[i].active, limit)) {
			c[i].eligible = false;
			(*full)++;
		}
	}
	if (s->local && !panic) {
		uint32_t spill = locality_spill_permille(local_routable, local_members,
							 routable - local_routable,
							 s->conf->locality.min_healthy_percent);
		relay_pick_zone(s, c, spill == 0 ? false :
				rng_below(&r->rw->rng, 1000) < spill);
	}
	struct balance_cursor cur = { 0 };
	if (s->conf->balance == BALANCE_ROUND_ROBIN)
		cur.next = atomic_fetch_add_explicit(&s->svc->rr_next, 1, memory_order_relaxed);
	size_t k = balance_pick(s->conf->balance, c, s->n, &cur, &r->rw->rng);
	if (k != BALANCE_NONE && s->local && !s->local[k])
		atomic_fetch_add_explicit(&s->svc->out_of_zone, 1, memory_order_relaxed);
	return k == BALANCE_NONE ? NULL : s->v[k];
}
