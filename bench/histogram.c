/*
 * histogram — see histogram.h.
 *
 * Index layout: for v < SUB the index is v. Otherwise let msb be the highest
 * set bit of v and shift = msb - SUB_BITS; the top SUB_BITS+1 bits of v form a
 * mantissa in [SUB, 2*SUB) and index = shift * SUB + mantissa. Values in
 * [SUB, 2*SUB) have shift 0 and so are exact too; each later octave adds SUB
 * buckets, each covering 2^shift values.
 */
#include "histogram.h"

#include <string.h>

void histogram_init(struct histogram *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

uint32_t histogram_bucket_of(uint64_t value)
{
	if (value < HISTOGRAM_SUB)
		return (uint32_t)value;
	unsigned msb = 63u - (unsigned)__builtin_clzll(value);
	unsigned shift = msb - HISTOGRAM_SUB_BITS;
	return shift * HISTOGRAM_SUB + (uint32_t)(value >> shift);
}

uint64_t histogram_bucket_low(uint32_t index)
{
	if (index < 2 * HISTOGRAM_SUB)
		return index;
	unsigned shift = index / HISTOGRAM_SUB - 1;
	uint64_t mantissa = index - (uint64_t)shift * HISTOGRAM_SUB;
	return mantissa << shift;
}

uint64_t histogram_bucket_high(uint32_t index)
{
	if (index < 2 * HISTOGRAM_SUB)
		return index;
	unsigned shift = index / HISTOGRAM_SUB - 1;
	uint64_t mantissa = index - (uint64_t)shift * HISTOGRAM_SUB;
	/* Written so the last bucket yields UINT64_MAX instead of overflowing. */
	return (mantissa << shift) + ((UINT64_C(1) << shift) - 1);
}

void histogram_record_n(struct histogram *h, uint64_t value, uint64_t n)
{
	if (n == 0)
		return;
	h->buckets[histogram_bucket_of(value)] += n;
	h->count += n;
	h->sum += (long double)value * (long double)n;
	if (value < h->min)
		h->min = value;
	if (value > h->max)
		h->max = value;
}

void histogram_record(struct histogram *h, uint64_t value)
{
	histogram_record_n(h, value, 1);
}

void histogram_merge(struct histogram *dst, const struct histogram *src)
{
	if (src->count == 0)
		return;
	for (uint32_t i = 0; i < HISTOGRAM_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t histogram_percentile(const struct histogram *h, double p)
{
	if (h->count == 0)
		return 0;
	if (p <= 0)
		return h->min;
	if (p >= 100)
		return h->max;
	/* rank = ceil(p% of count), at least 1; computed in long double so that
	 * p = 99.9 of 1000 samples is exactly 999, not 999.0000001 -> 1000. */
	long double exact = (long double)h->count * (long double)p / 100.0L;
	uint64_t rank = (uint64_t)exact;
	if ((long double)rank < exact - 1e-9L)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (uint32_t i = 0; i < HISTOGRAM_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t v = histogram_bucket_high(i);
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	return h->max;
}

double histogram_mean(const struct histogram *h)
{
	if (h->count == 0)
		return 0;
	return (double)(h->sum / (long double)h->count);
}
