/*
 * histogram — latency samples in log-linear buckets, HdrHistogram style.
 *
 * Values are unsigned 64-bit (zklb-bench records microseconds). Every value
 * is counted: values below 2 * HISTOGRAM_SUB are exact, larger ones land in a
 * bucket whose width is at most 1/HISTOGRAM_SUB of its lower bound (< 0.8 %),
 * and the whole 64-bit range is covered, so no sample is ever dropped or
 * clamped. Minimum, maximum and sum are kept exactly.
 *
 * Pure code: no clock, no I/O, no locks. One histogram per thread; merge them
 * after the threads have been joined.
 */
#ifndef ZKLB_BENCH_HISTOGRAM_H
#define ZKLB_BENCH_HISTOGRAM_H

#include <stdint.h>

#define HISTOGRAM_SUB_BITS 7
#define HISTOGRAM_SUB (1u << HISTOGRAM_SUB_BITS)	/* buckets per power of two */
/* Buckets needed for the full 64-bit range: exact [0, 2*SUB), then SUB per octave. */
#define HISTOGRAM_BUCKETS ((64 - HISTOGRAM_SUB_BITS + 1) * HISTOGRAM_SUB)

struct histogram {
	uint64_t count;				/* samples recorded */
	uint64_t min;				/* smallest sample; UINT64_MAX when empty */
	uint64_t max;				/* largest sample; 0 when empty */
	long double sum;			/* sum of samples, for the mean (no overflow) */
	uint64_t buckets[HISTOGRAM_BUCKETS];	/* sample count per bucket */
};

/* Empty h. The struct is ~58 KB: allocate it, do not put it on a small stack. */
void histogram_init(struct histogram *h);

/* Count one sample. */
void histogram_record(struct histogram *h, uint64_t value);

/* Count `n` samples of the same value (n may be 0). */
void histogram_record_n(struct histogram *h, uint64_t value, uint64_t n);

/* Add every sample of src into dst; src is unchanged. */
void histogram_merge(struct histogram *dst, const struct histogram *src);

/*
 * The value at percentile p (0 < p <= 100): the smallest recorded value v such
 * that at least p % of the samples are <= v, reported as the highest value of
 * v's bucket, clamped to [min, max]. p <= 0 gives min, p >= 100 gives max
 * exactly. 0 when empty.
 */
uint64_t histogram_percentile(const struct histogram *h, double p);

/* Arithmetic mean; 0 when empty. */
double histogram_mean(const struct histogram *h);

/* Bucket index of a value, and the lowest/highest value of a bucket (exposed for tests). */
uint32_t histogram_bucket_of(uint64_t value);
uint64_t histogram_bucket_low(uint32_t index);
uint64_t histogram_bucket_high(uint32_t index);

#endif
