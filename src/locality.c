/*
 * locality — zone-aware routing decisions (see locality.h).
 */
#include "locality.h"

#include <string.h>

uint32_t locality_spill_permille(size_t local_routable, size_t local_members,
				 size_t remote_routable, uint32_t min_healthy_percent)
{
	if (remote_routable == 0)
		return 0;		/* nowhere else to go */
	if (local_members == 0)
		return 1000;
	if (min_healthy_percent == 0)
		return 0;
	uint64_t healthy_pm = (uint64_t)local_routable * 1000 / local_members;
	uint64_t threshold_pm = (uint64_t)min_healthy_percent * 10;
	if (healthy_pm >= threshold_pm)
		return 0;
	/* the local zone keeps healthy/threshold of the traffic; the rest spills */
	return (uint32_t)(1000 - healthy_pm * 1000 / threshold_pm);
}

const char *locality_zone_of(const char *payload, size_t len, const char *key, size_t *vlen)
{
	size_t klen = strlen(key);
	size_t off = 0;
	while (off < len) {
		const char *k = payload + off;
		const char *kend = memchr(k, '\0', len - off);
		if (!kend)
			return NULL;
		const char *v = kend + 1;
		if (v >= payload + len)
			return NULL;
		const char *vend = memchr(v, '\0', (size_t)(payload + len - v));
		if (!vend)
			return NULL;
		if ((size_t)(kend - k) == klen && memcmp(k, key, klen) == 0) {
			*vlen = (size_t)(vend - v);
			return v;
		}
		off = (size_t)(vend + 1 - payload);
	}
	return NULL;
}

bool locality_in_zone(const char *payload, size_t len, const char *key, const char *zone)
{
	size_t vlen;
	const char *v = payload ? locality_zone_of(payload, len, key, &vlen) : NULL;
	return v && vlen == strlen(zone) && memcmp(v, zone, vlen) == 0;
}
