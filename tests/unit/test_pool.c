/* Unit tests of the pool's pure policy: prewarm shares and backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pool.h"

static void test_prewarm_share(void **state)
{
	/* Shares add up to the total and differ by at most one. */
	for (uint32_t total = 0; total < 50; total++) {
		for (unsigned n = 1; n <= 8; n++) {
			uint32_t sum = 0, lo = UINT32_MAX, hi = 0;
			for (unsigned id = 0; id < n; id++) {
				uint32_t s = pool_prewarm_share(total, n, id);
				sum += s;
				lo = s < lo ? s : lo;
				hi = s > hi ? s : hi;
			}
			assert_int_equal(sum, total);
			assert_true(hi - lo <= 1);
		}
	}
	assert_int_equal(pool_prewarm_share(5, 2, 0), 3);
	assert_int_equal(pool_prewarm_share(5, 2, 1), 2);
	assert_int_equal(pool_prewarm_share(7, 0, 0), 7);
}

static void test_backoff(void **state)
{
	assert_int_equal(pool_backoff_next(0), 100);
	assert_int_equal(pool_backoff_next(100), 200);
	assert_int_equal(pool_backoff_next(200), 400);
	assert_int_equal(pool_backoff_next(1600), 3200);
	assert_int_equal(pool_backoff_next(3200), 5000);
	assert_int_equal(pool_backoff_next(5000), 5000);
}

static void test_names(void **state)
{
	assert_string_equal(pool_discard_name(POOL_DISCARD_STALE), "stale");
	assert_string_equal(pool_discard_name(POOL_DISCARD_COUNT), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prewarm_share),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
