/*
 * locality — zone-aware routing, the pure part (Envoy's locality-weighted
 * model reduced to "local zone or not"). No sockets, no clock.
 *
 * With `locality.prefer: zone`, new connections stay among the instances of
 * the local zone (config `zone:` or `zone_file:`; an instance's zone is the
 * value of `locality.zone_key` in its payload pairs) while at least
 * `min_healthy_percent` of them are routable. Below that, the local zone
 * keeps the share of traffic its health covers, health / threshold, and the
 * rest — what the zone lacks — goes to the other zones: at 35 % healthy
 * with a 70 % threshold half the connections leave. With nothing routable
 * elsewhere nothing leaves; with no local instances everything does. Panic
 * mode (health.panic_threshold) is decided over the whole set first and,
 * when on, balances over all instances regardless of zones.
 *
 * Thread: any.
 */
#ifndef ZKLB_LOCALITY_H
#define ZKLB_LOCALITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Permille (0..1000) of new connections to send out of the local zone:
 * local_routable of local_members local instances are routable, and
 * remote_routable instances of other zones are.
 */
uint32_t locality_spill_permille(size_t local_routable, size_t local_members,
				 size_t remote_routable, uint32_t min_healthy_percent);

/*
 * The value of key in payload pairs ("key\0value\0" repeated, len bytes;
 * instance.h's format), or NULL; *vlen is set to its length. Pairs cut
 * short are ignored.
 */
const char *locality_zone_of(const char *payload, size_t len, const char *key, size_t *vlen);

/* Is the instance with these payload pairs in zone `zone` (NUL-terminated)? */
bool locality_in_zone(const char *payload, size_t len, const char *key, const char *zone);

#endif
