/* Unit tests of the balancing algorithms (pure functions). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "balance.h"

#define C(a, w) { .active = (a), .weight = (w), .eligible = true }

static size_t pick(enum balance_kind k, struct balance_candidate *c, size_t n, uint64_t seed)
{
	struct rng r;
	struct balance_cursor cur = { 0 };
	rng_seed(&r, seed);
	return balance_pick(k, c, n, &cur, &r);
}

static void test_least_conn_picks_least_loaded(void **state)
{
	struct balance_candidate c[] = { C(5, 1), C(2, 1), C(3, 1) };
	for (uint64_t s = 0; s < 50; s++)
		assert_int_equal(pick(BALANCE_LEAST_CONN, c, 3, s), 1);
}

static void test_least_conn_weighted(void **state)
{
	/* 4/4 = 1 beats 2/1 = 2 and 3/2 = 1.5 */
	struct balance_candidate c[] = { C(2, 1), C(3, 2), C(4, 4) };
	assert_int_equal(pick(BALANCE_LEAST_CONN, c, 3, 1), 2);
	/* 1/1 = 1 vs 1/2: weight 2 wins */
	struct balance_candidate d[] = { C(1, 1), C(1, 2) };
	assert_int_equal(pick(BALANCE_LEAST_CONN, d, 2, 1), 1);
}

static void test_least_conn_skips_ineligible(void **state)
{
	struct balance_candidate c[] = { C(0, 1), C(9, 1), C(0, 1) };
	c[0].eligible = false;
	c[2].weight = 0;
	assert_int_equal(pick(BALANCE_LEAST_CONN, c, 3, 7), 1);
	c[1].eligible = false;
	assert_true(pick(BALANCE_LEAST_CONN, c, 3, 7) == BALANCE_NONE);
	assert_true(pick(BALANCE_LEAST_CONN, c, 0, 7) == BALANCE_NONE);
}

/* Ties are broken at random in proportion to weight. */
static void test_least_conn_ties(void **state)
{
	struct balance_candidate c[] = { C(0, 1), C(0, 2), C(0, 1), C(5, 1) };
	struct rng r;
	struct balance_cursor cur = { 0 };
	rng_seed(&r, 42);
	unsigned hits[4] = { 0 };
	for (int i = 0; i < 40000; i++)
		hits[balance_pick(BALANCE_LEAST_CONN, c, 4, &cur, &r)]++;
	assert_int_equal(hits[3], 0);
	/* expected 10000 / 20000 / 10000 */
	assert_in_range(hits[0], 9000, 11000);
	assert_in_range(hits[1], 18500, 21500);
	assert_in_range(hits[2], 9000, 11000);
}

/* Simulated load: connections that stay open end up spread by weight. */
static void test_least_conn_converges_to_weights(void **state)
{
	struct balance_candidate c[] = { C(0, 1), C(0, 3), C(0, 2) };
	struct rng r;
	struct balance_cursor cur = { 0 };
	rng_seed(&r, 3);
	for (int i = 0; i < 600; i++)
		c[balance_pick(BALANCE_LEAST_CONN, c, 3, &cur, &r)].active++;
	assert_int_equal(c[0].active, 100);
	assert_int_equal(c[1].active, 300);
	assert_int_equal(c[2].active, 200);
}

static void test_p2c(void **state)
{
	struct balance_candidate two[] = { C(10, 1), C(1, 1) };
	for (uint64_t s = 0; s < 100; s++)
		assert_int_equal(pick(BALANCE_P2C, two, 2, s), 1);

	struct balance_candidate one[] = { C(10, 1), C(1, 1), C(0, 1) };
	one[1].eligible = false;
	one[2].eligible = false;
	for (uint64_t s = 0; s < 100; s++)
		assert_int_equal(pick(BALANCE_P2C, one, 3, s), 0);
	one[0].eligible = false;
	assert_true(pick(BALANCE_P2C, one, 3, 1) == BALANCE_NONE);

	/* The most loaded of many is never chosen: it loses every duel. */
	struct balance_candidate many[] = { C(1, 1), C(2, 1), C(3, 1), C(99, 1) };
	struct rng r;
	struct balance_cursor cur = { 0 };
	rng_seed(&r, 5);
	unsigned hits[4] = { 0 };
	for (int i = 0; i < 3000; i++)
		hits[balance_pick(BALANCE_P2C, many, 4, &cur, &r)]++;
	assert_int_equal(hits[3], 0);
	assert_true(hits[0] > hits[1] && hits[1] > hits[2] && hits[2] > 0);
}

static void test_round_robin(void **state)
{
	struct balance_candidate c[] = { C(0, 1), C(0, 2), C(0, 1) };
	struct rng r;
	struct balance_cursor cur = { 0 };
	rng_seed(&r, 1);
	size_t expect[] = { 0, 1, 1, 2, 0, 1, 1, 2 };
	for (size_t i = 0; i < ARRAY_SIZE(expect); i++)
		assert_int_equal(balance_pick(BALANCE_ROUND_ROBIN, c, 3, &cur, &r), expect[i]);
	c[1].eligible = false;
	size_t seen[3] = { 0 };
	for (int i = 0; i < 10; i++)
		seen[balance_pick(BALANCE_ROUND_ROBIN, c, 3, &cur, &r)]++;
	assert_int_equal(seen[1], 0);
	assert_int_equal(seen[0], 5);
	assert_int_equal(seen[2], 5);
}

static void test_random_weighted(void **state)
{
	struct balance_candidate c[] = { C(0, 1), C(0, 3) };
	struct rng r;
	struct balance_cursor cur = { 0 };
	rng_seed(&r, 11);
	unsigned hits[2] = { 0 };
	for (int i = 0; i < 20000; i++)
		hits[balance_pick(BALANCE_RANDOM, c, 2, &cur, &r)]++;
	assert_in_range(hits[0], 4500, 5500);
	c[0].eligible = c[1].eligible = false;
	assert_true(balance_pick(BALANCE_RANDOM, c, 2, &cur, &r) == BALANCE_NONE);
}

static void test_cmp_load(void **state)
{
	struct balance_candidate a = C(1, 2), b = C(1, 1), d = C(2, 4);
	assert_true(balance_cmp_load(&a, &b) < 0);
	assert_true(balance_cmp_load(&b, &a) > 0);
	assert_int_equal(balance_cmp_load(&a, &d), 0);
	assert_string_equal(balance_ops_get(BALANCE_P2C)->name, "p2c");
}

/* max_connections_per_instance: 0 is no limit; the limit itself is full. */
static void test_has_room(void **state)
{
	assert_true(balance_has_room(0, 0));
	assert_true(balance_has_room(UINT32_MAX, 0));
	assert_true(balance_has_room(2, 3));
	assert_false(balance_has_room(3, 3));
	assert_false(balance_has_room(4, 3));
	assert_false(balance_has_room(0, 0) && !balance_has_room(0, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_least_conn_picks_least_loaded),
		cmocka_unit_test(test_least_conn_weighted),
		cmocka_unit_test(test_least_conn_skips_ineligible),
		cmocka_unit_test(test_least_conn_ties),
		cmocka_unit_test(test_least_conn_converges_to_weights),
		cmocka_unit_test(test_p2c),
		cmocka_unit_test(test_round_robin),
		cmocka_unit_test(test_random_weighted),
		cmocka_unit_test(test_cmp_load),
		cmocka_unit_test(test_has_room),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
