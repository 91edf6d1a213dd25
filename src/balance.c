/*
 * balance — see balance.h.
 *
 * least_conn   fewest active / weight over all eligible candidates; ties
 *              are broken at random in proportion to weight (weighted
 *              reservoir sampling), so weights also hold for sequential
 *              traffic where every instance sits at zero.
 * p2c          two distinct eligible candidates drawn with weights, the less
 *              loaded wins (power of two choices): O(1) and no herding.
 * round_robin  walks the weighted sequence (a candidate of weight w takes w
 *              consecutive slots); eligible ones only.
 * random       weighted random.
 */
#include "balance.h"

static int cmp_load(const struct balance_candidate *a, const struct balance_candidate *b)
{
	uint64_t ka = (uint64_t)a->active * b->weight;
	uint64_t kb = (uint64_t)b->active * a->weight;
	return ka < kb ? -1 : ka > kb;
}

int balance_cmp_load(const struct balance_candidate *a, const struct balance_candidate *b)
{
	return cmp_load(a, b);
}

static bool usable(const struct balance_candidate *c)
{
	return c->eligible && c->weight > 0;
}

static size_t pick_least_conn(const struct balance_candidate *c, size_t n,
			      struct balance_cursor *cur, struct rng *rng)
{
	size_t best = BALANCE_NONE;
	uint64_t tied_weight = 0;
	for (size_t i = 0; i < n; i++) {
		if (!usable(&c[i]))
			continue;
		int d = best == BALANCE_NONE ? -1 : cmp_load(&c[i], &c[best]);
		if (d < 0) {
			best = i;
			tied_weight = c[i].weight;
		} else if (d == 0) {
			tied_weight += c[i].weight;
			if (rng_next(rng) % tied_weight < c[i].weight)
				best = i;
		}
	}
	return best;
}

static uint64_t total_weight(const struct balance_candidate *c, size_t n)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++)
		if (usable(&c[i]))
			sum += c[i].weight;
	return sum;
}

/* The candidate owning slot `slot` (< total weight) of the weighted sequence. */
static size_t weighted_slot(const struct balance_candidate *c, size_t n, uint64_t slot)
{
	for (size_t i = 0; i < n; i++) {
		if (!usable(&c[i]))
			continue;
		if (slot < c[i].weight)
			return i;
		slot -= c[i].weight;
	}
	return BALANCE_NONE;
}

static size_t pick_random(const struct balance_candidate *c, size_t n,
			  struct balance_cursor *cur, struct rng *rng)
{
	uint64_t sum = total_weight(c, n);
	if (sum == 0)
		return BALANCE_NONE;
	return weighted_slot(c, n, rng_next(rng) % sum);
}

static size_t pick_p2c(const struct balance_candidate *c, size_t n,
		       struct balance_cursor *cur, struct rng *rng)
{
	uint64_t sum = total_weight(c, n);
	if (sum == 0)
		return BALANCE_NONE;
	size_t a = weighted_slot(c, n, rng_next(rng) % sum);
	if (sum == c[a].weight)
		return a;	/* only one eligible candidate */
	/* Draw the second among the others so the two are distinct. */
	uint64_t slot = rng_next(rng) % (sum - c[a].weight);
	size_t b = BALANCE_NONE;
	for (size_t i = 0; i < n; i++) {
		if (i == a || !usable(&c[i]))
			continue;
		if (slot < c[i].weight) {
			b = i;
			break;
		}
		slot -= c[i].weight;
	}
	int d = cmp_load(&c[a], &c[b]);
	if (d == 0)
		return rng_below(rng, 2) ? a : b;
	return d < 0 ? a : b;
}

static size_t pick_round_robin(const struct balance_candidate *c, size_t n,
			       struct balance_cursor *cur, struct rng *rng)
{
	uint64_t sum = total_weight(c, n);
	if (sum == 0)
		return BALANCE_NONE;
	return weighted_slot(c, n, cur->next++ % sum);
}

static const struct balance_ops balance_table[] = {
	[BALANCE_LEAST_CONN]  = { "least_conn",  pick_least_conn },
	[BALANCE_P2C]         = { "p2c",         pick_p2c },
	[BALANCE_ROUND_ROBIN] = { "round_robin", pick_round_robin },
	[BALANCE_RANDOM]      = { "random",      pick_random },
};

const struct balance_ops *balance_ops_get(enum balance_kind kind)
{
	if ((size_t)kind >= ARRAY_SIZE(balance_table))
		kind = BALANCE_LEAST_CONN;
	return &balance_table[kind];
}
