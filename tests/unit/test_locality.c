/*
 * Unit tests for locality: the spill share at and around the threshold
 * (Envoy's model: what the local zone lacks below min_healthy_percent
 * leaves it), the edges (no local instance, nothing elsewhere, threshold
 * 0 and 100), and payload pairs read as hostile bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "locality.h"

static void test_healthy_zone_keeps_everything(void **state)
{
	assert_int_equal(locality_spill_permille(4, 4, 4, 70), 0);
	assert_int_equal(locality_spill_permille(3, 4, 4, 70), 0);	/* 75 % >= 70 % */
	assert_int_equal(locality_spill_permille(7, 10, 4, 70), 0);	/* exactly at it */
}

static void test_spill_is_what_the_zone_lacks(void **state)
{
	/* 50 % healthy, 70 % wanted: keeps 50/70, spills 2/7 = 285.7 permille */
	assert_int_equal(locality_spill_permille(1, 2, 2, 70), 286);
	/* 35 % of 70 %: half leaves */
	assert_int_equal(locality_spill_permille(7, 20, 2, 70), 500);
	/* 0 % healthy: all of it */
	assert_int_equal(locality_spill_permille(0, 3, 2, 70), 1000);
	/* the share grows as health falls */
	uint32_t last = 0;
	for (size_t up = 10; up-- > 0;) {
		uint32_t s = locality_spill_permille(up, 10, 5, 70);
		assert_true(s >= last);
		last = s;
	}
}

static void test_edges(void **state)
{
	/* nothing routable elsewhere: stay, whatever the local health */
	assert_int_equal(locality_spill_permille(0, 3, 0, 70), 0);
	/* no local instance at all: everything leaves */
	assert_int_equal(locality_spill_permille(0, 0, 3, 70), 1000);
	/* threshold 0: never spill; 100: spill as soon as one is down */
	assert_int_equal(locality_spill_permille(0, 3, 3, 0), 0);
	assert_int_equal(locality_spill_permille(9, 10, 3, 100), 100);
	assert_int_equal(locality_spill_permille(10, 10, 3, 100), 0);
	/* huge counts do not overflow */
	assert_int_equal(locality_spill_permille(SIZE_MAX / 1000, SIZE_MAX / 1000, 1, 70), 0);
}

#define PAIRS(s) (s), sizeof(s) - 1

static void test_zone_of_payload(void **state)
{
	size_t n;
	const char p[] = "shard\0" "3\0" "zone\0" "eu-1a\0";
	const char *v = locality_zone_of(PAIRS(p), "zone", &n);
	assert_non_null(v);
	assert_int_equal(n, 5);
	assert_memory_equal(v, "eu-1a", 5);
	assert_true(locality_in_zone(PAIRS(p), "zone", "eu-1a"));
	assert_false(locality_in_zone(PAIRS(p), "zone", "eu-1"));
	assert_false(locality_in_zone(PAIRS(p), "zon", "eu-1a"));
	assert_false(locality_in_zone(PAIRS(p), "region", "eu-1a"));
	assert_false(locality_in_zone(NULL, 0, "zone", "eu-1a"));
	/* a value equal to a key name is not a key */
	const char q[] = "a\0" "zone\0" "b\0" "x\0";
	assert_null(locality_zone_of(PAIRS(q), "zone", &n));
}

static void test_cut_pairs_are_ignored(void **state)
{
	size_t n;
	const char cut_value[] = "zone\0" "eu";		/* value without its NUL */
	assert_null(locality_zone_of(PAIRS(cut_value), "zone", &n));
	const char cut_key[] = "zo";
	assert_null(locality_zone_of(PAIRS(cut_key), "zone", &n));
	const char key_only[] = "zone\0";
	assert_null(locality_zone_of(PAIRS(key_only), "zone", &n));
	/* an empty value is a value */
	const char empty[] = "zone\0\0";
	assert_non_null(locality_zone_of(PAIRS(empty), "zone", &n));
	assert_int_equal(n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_healthy_zone_keeps_everything),
		cmocka_unit_test(test_spill_is_what_the_zone_lacks),
		cmocka_unit_test(test_edges),
		cmocka_unit_test(test_zone_of_payload),
		cmocka_unit_test(test_cut_pairs_are_ignored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
