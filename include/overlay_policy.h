/*
 * overlay_policy — what a configuration overlay from ZooKeeper
 * (zookeeper.config_path) may ask for: the file's `overlay:` section.
 *
 * The overlay is a less trusted source than the file: whoever can write one
 * znode could otherwise open a public listener on every host, point a
 * service at the cloud metadata address or at the host's own admin port,
 * make every host send bytes of its choosing as health checks, or replace
 * the services the file defines. So by default an overlay may only
 *   - listen on loopback (listen_networks) or on unix: paths under
 *     listen_dir (none when unset);
 *   - name static backends by IP address (a name's address is unknown until
 *     resolved), inside allowed_networks and outside denied_networks
 *     (reserved and loopback by default), checked on the socket address, so
 *     every spelling of an address is the same;
 *   - use tcp and http checks (send/expect payloads need check_payloads),
 *     no more often than min_check_interval;
 *   - ask sentinels by IP address under the same networks as static backends;
 *   - name a password_file (check or sentinel) only if a service or announce
 *     of the file names the same one: the file's bytes go, as AUTH, to
 *     instances ZooKeeper picks;
 *   - present a TLS client key (tls.key) only if a service of the file
 *     presents the same one;
 *   - ask for pool.prewarm, pool.max_idle and max_buffer within bounds;
 *   - add services, not replace the file's (replace_file_services).
 * A document that breaks any of it is rejected whole, like any invalid one;
 * each message names the JSON path.
 *
 * Pure: no sockets, no clock, no DNS. Thread: any.
 */
#ifndef ZKLB_OVERLAY_POLICY_H
#define ZKLB_OVERLAY_POLICY_H

#include <jansson.h>
#include <stdbool.h>

#include "config.h"

struct schema_ctx;
struct schema_path;

/*
 * Check svc, parsed from sobj (the overlay's JSON for it, at path sp),
 * against base's overlay policy (and the password files base's own services
 * use). replaces_file: svc would replace a service of the file.
 * Each breach is reported through schema_error (which rejects the document).
 */
void overlay_policy_check(struct schema_ctx *v, const struct schema_path *sp, const json_t *sobj,
			  const struct service_conf *svc, const struct config *base,
			  bool replaces_file);

#endif
