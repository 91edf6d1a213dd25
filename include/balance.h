/*
 * balance — choosing a backend. Pure functions over a candidate array: no
 * sockets, no clock, no shared state; the caller passes its own cursor and
 * random generator. Algorithms plug in through one const ops table.
 */
#ifndef ZKLB_BALANCE_H
#define ZKLB_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

#define BALANCE_NONE SIZE_MAX

struct balance_candidate {
	uint32_t active;		/* connections open or connecting, all workers */
	uint32_t weight;		/* effective weight (slow start applied), 0 = skip */
	bool eligible;			/* routable and not excluded by the caller */
};

/* Per-chooser state that survives between picks (one per worker and listener). */
struct balance_cursor {
	uint64_t next;			/* round_robin position in the weighted sequence */
};

struct balance_ops {
	const char *name;
	/* Index of the chosen candidate, or BALANCE_NONE when none is eligible. */
	size_t (*pick)(const struct balance_candidate *c, size_t n,
		       struct balance_cursor *cur, struct rng *rng);
};

const struct balance_ops *balance_ops_get(enum balance_kind kind);

/* max_connections_per_instance: can an instance with `active` take one more? 0 = no limit. */
static inline bool balance_has_room(uint32_t active, uint32_t limit)
{
	return limit == 0 || active < limit;
}

static inline size_t balance_pick(enum balance_kind kind, const struct balance_candidate *c,
				  size_t n, struct balance_cursor *cur, struct rng *rng)
{
	return balance_ops_get(kind)->pick(c, n, cur, rng);
}

/*
 * least_conn's ordering: active / weight compared by cross-multiplication
 * (no division, no rounding): negative when a is less loaded than b.
 */
int balance_cmp_load(const struct balance_candidate *a, const struct balance_candidate *b);

#endif
