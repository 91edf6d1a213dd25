/*
 * Unit tests for bench/histogram: bucket layout (exact low range, bounded
 * relative error, full 64-bit coverage), percentiles on known inputs, merge,
 * and the extremes (empty, one sample, 0, UINT64_MAX, huge counts).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "histogram.h"

static struct histogram *new_hist(void)
{
	struct histogram *h = malloc(sizeof(*h));
	assert_non_null(h);
	histogram_init(h);
	return h;
}

static void test_empty(void **state)
{
	struct histogram *h = new_hist();
	assert_int_equal(h->count, 0);
	assert_int_equal(histogram_percentile(h, 50), 0);
	assert_int_equal(histogram_percentile(h, 100), 0);
	assert_true(histogram_mean(h) == 0);
	free(h);
}

static void test_buckets_exact_low_range(void **state)
{
	for (uint64_t v = 0; v < 2 * HISTOGRAM_SUB; v++) {
		uint32_t i = histogram_bucket_of(v);
		assert_int_equal(i, v);
		assert_int_equal(histogram_bucket_low(i), v);
		assert_int_equal(histogram_bucket_high(i), v);
	}
}

static void test_buckets_cover_and_bound_error(void **state)
{
	/* Consecutive buckets tile the range with no gap and no overlap. */
	for (uint32_t i = 0; i + 1 < HISTOGRAM_BUCKETS; i++)
		assert_int_equal(histogram_bucket_high(i) + 1, histogram_bucket_low(i + 1));
	assert_int_equal(histogram_bucket_low(0), 0);
	assert_int_equal(histogram_bucket_high(HISTOGRAM_BUCKETS - 1), UINT64_MAX);
	assert_int_equal(histogram_bucket_of(UINT64_MAX), HISTOGRAM_BUCKETS - 1);

	/* Every value falls inside its bucket; width <= low / SUB. */
	uint64_t probes[] = { 255, 256, 257, 1000, 4095, 4096, 123456789,
			      UINT64_C(1) << 40, (UINT64_C(1) << 40) - 1, UINT64_MAX - 1, UINT64_MAX };
	for (size_t k = 0; k < sizeof(probes) / sizeof(probes[0]); k++) {
		uint32_t i = histogram_bucket_of(probes[k]);
		uint64_t lo = histogram_bucket_low(i);
		uint64_t hi = histogram_bucket_high(i);
		assert_true(lo <= probes[k] && probes[k] <= hi);
		assert_true(hi - lo <= lo / HISTOGRAM_SUB);
	}
}

static void test_percentiles_uniform_exact(void **state)
{
	/* 1..100 once each: all exact (below 2*SUB). */
	struct histogram *h = new_hist();
	for (uint64_t v = 1; v <= 100; v++)
		histogram_record(h, v);
	assert_int_equal(h->count, 100);
	assert_int_equal(h->min, 1);
	assert_int_equal(h->max, 100);
	assert_int_equal(histogram_percentile(h, 50), 50);
	assert_int_equal(histogram_percentile(h, 90), 90);
	assert_int_equal(histogram_percentile(h, 99), 99);
	assert_int_equal(histogram_percentile(h, 99.9), 100);
	assert_int_equal(histogram_percentile(h, 100), 100);
	assert_int_equal(histogram_percentile(h, 0), 1);
	assert_int_equal(histogram_percentile(h, 0.5), 1);
	assert_int_equal(histogram_percentile(h, 1), 1);
	assert_int_equal(histogram_percentile(h, 1.01), 2);
	assert_true(histogram_mean(h) > 50.49 && histogram_mean(h) < 50.51);
	free(h);
}

static void test_percentile_rank_rounding(void **state)
{
	/* 1000 samples 0..999: p99.9 is the 999th smallest = 998, not 999. */
	struct histogram *h = new_hist();
	for (uint64_t v = 0; v < 1000; v++)
		histogram_record(h, v);
	uint64_t p999 = histogram_percentile(h, 99.9);
	uint32_t i = histogram_bucket_of(998);
	assert_true(p999 >= 998 && p999 <= histogram_bucket_high(i));
	assert_true(p999 < 999 || histogram_bucket_of(999) == i);
	assert_int_equal(histogram_percentile(h, 100), 999);
	free(h);

	/* Exact values: 999 x 10 and 1 x 20; rank 999 is the last 10. */
	h = new_hist();
	histogram_record_n(h, 10, 999);
	histogram_record(h, 20);
	assert_int_equal(histogram_percentile(h, 99.9), 10);
	assert_int_equal(histogram_percentile(h, 99.95), 20);
	assert_int_equal(histogram_percentile(h, 50), 10);
	free(h);
}

static void test_percentiles_large_values_relative_error(void **state)
{
	/* 99 samples of 1 ms and one of 1 s (µs): p99 is ~1000, max exact. */
	struct histogram *h = new_hist();
	histogram_record_n(h, 1000, 99);
	histogram_record(h, 1000000);
	uint64_t p50 = histogram_percentile(h, 50);
	uint64_t p99 = histogram_percentile(h, 99);
	assert_true(p50 >= 1000 && p50 <= 1000 + 1000 / HISTOGRAM_SUB);
	assert_true(p99 >= 1000 && p99 <= 1000 + 1000 / HISTOGRAM_SUB);
	assert_int_equal(histogram_percentile(h, 99.9), 1000000);
	assert_int_equal(histogram_percentile(h, 100), 1000000);
	/* Reported values never exceed the recorded max. */
	struct histogram *one = new_hist();
	histogram_record(one, 1001);
	assert_int_equal(histogram_percentile(one, 50), 1001);
	assert_int_equal(histogram_percentile(one, 99.9), 1001);
	assert_int_equal(one->min, 1001);
	free(one);
	free(h);
}

static void test_extremes(void **state)
{
	struct histogram *h = new_hist();
	histogram_record(h, 0);
	histogram_record(h, UINT64_MAX);
	assert_int_equal(h->count, 2);
	assert_int_equal(h->min, 0);
	assert_int_equal(h->max, UINT64_MAX);
	assert_int_equal(histogram_percentile(h, 50), 0);
	assert_int_equal(histogram_percentile(h, 50.1), UINT64_MAX);
	assert_int_equal(histogram_percentile(h, 100), UINT64_MAX);
	assert_int_equal(h->buckets[0], 1);
	assert_int_equal(h->buckets[HISTOGRAM_BUCKETS - 1], 1);
	/* The sum does not overflow: mean is ~2^63. */
	assert_true(histogram_mean(h) > 9.2e18 && histogram_mean(h) < 9.3e18);

	/* A count beyond 32 bits. */
	histogram_record_n(h, 7, UINT64_C(5000000000));
	assert_int_equal(h->count, UINT64_C(5000000002));
	assert_int_equal(histogram_percentile(h, 50), 7);
	histogram_record_n(h, 9, 0);
	assert_int_equal(h->count, UINT64_C(5000000002));
	assert_int_equal(h->max, UINT64_MAX);
	free(h);
}

static void test_merge(void **state)
{
	struct histogram *a = new_hist();
	struct histogram *b = new_hist();
	struct histogram *all = new_hist();
	struct histogram *empty = new_hist();
	for (uint64_t v = 1; v <= 5000; v++) {
		histogram_record(v % 2 ? a : b, v * 3);
		histogram_record(all, v * 3);
	}
	histogram_merge(a, b);
	histogram_merge(a, empty);
	assert_int_equal(a->count, 5000);
	assert_int_equal(a->min, 3);
	assert_int_equal(a->max, 15000);
	assert_memory_equal(a->buckets, all->buckets, sizeof(all->buckets));
	double ps[] = { 1, 50, 90, 99, 99.9, 100 };
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
		assert_int_equal(histogram_percentile(a, ps[i]), histogram_percentile(all, ps[i]));
	assert_true(histogram_mean(a) == histogram_mean(all));
	/* b unchanged; merging into an empty one copies. */
	assert_int_equal(b->count, 2500);
	histogram_merge(empty, b);
	assert_int_equal(empty->min, 6);
	assert_int_equal(empty->max, 15000);
	assert_int_equal(histogram_percentile(empty, 50), histogram_percentile(b, 50));
	free(a);
	free(b);
	free(all);
	free(empty);
}

static void test_no_sample_dropped(void **state)
{
	/* Powers of two and their neighbours over the whole range: all counted. */
	struct histogram *h = new_hist();
	uint64_t n = 0;
	for (unsigned bit = 0; bit < 64; bit++) {
		uint64_t v = UINT64_C(1) << bit;
		histogram_record(h, v - 1);
		histogram_record(h, v);
		histogram_record(h, v + 1);
		n += 3;
	}
	uint64_t sum = 0;
	for (uint32_t i = 0; i < HISTOGRAM_BUCKETS; i++)
		sum += h->buckets[i];
	assert_int_equal(sum, n);
	assert_int_equal(h->count, n);
	assert_int_equal(h->min, 0);
	assert_int_equal(h->max, (UINT64_C(1) << 63) + 1);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_buckets_exact_low_range),
		cmocka_unit_test(test_buckets_cover_and_bound_error),
		cmocka_unit_test(test_percentiles_uniform_exact),
		cmocka_unit_test(test_percentile_rank_rounding),
		cmocka_unit_test(test_percentiles_large_values_relative_error),
		cmocka_unit_test(test_extremes),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_no_sample_dropped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
