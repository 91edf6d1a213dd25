/*
 * sentinel — `discovery.type: sentinel`: a service whose one instance is
 * the primary of a Redis master name monitored by Redis Sentinel, found
 * and followed the way Redis's Sentinel client guidelines describe:
 *
 *   1. ask the sentinels in order `SENTINEL get-master-addr-by-name <name>`;
 *      one that cannot be reached, times out, errs or does not know the
 *      name is skipped for the next; the one that answers is asked first
 *      next time. When every sentinel failed, try again after a pause;
 *   2. confirm the answer with `ROLE` on it (after AUTH with
 *      discovery.password_file): only `master` is delivered, anything else
 *      means a failover is under way, so ask again after a pause;
 *   3. stay subscribed to `+switch-master` on every sentinel. A message for
 *      our name switches the view at once (Sentinel publishes it once the
 *      promoted replica reports itself master), then ROLE confirms it;
 *      every SENTINEL_REFRESH_MS lost subscriptions are re-made and the
 *      address asked again, so a missed message costs at most that long.
 *
 * When the primary changes, the view holds the new one only, and after
 * discovery.close_grace the owner hears on_demoted() for the old one: its
 * connections should close, since writes to a demoted primary fail.
 *
 * The Redis clients are hiredis's asynchronous ones on the control
 * thread's libevent base; every byte of their answers is checked before
 * use (addresses must be IP literals, ports 1..65535). Sentinels are IP
 * literals too: the control thread never waits for DNS.
 *
 * Per-service lifecycle (enum sentinel_phase), sentinel_set_phase() the one
 * place it changes:
 *   ASKING --answer--> VERIFYING --master--> WATCHING --refresh--> ASKING
 *     |  ^                 |                    |
 *     |  +--- BACKOFF <----+ (not master,       +--+switch-master--> VERIFYING
 *     +-all failed-^         failed)
 *
 * Thread: the control thread (the base's); hooks are called from event
 * callbacks, never from inside a sentinel_* call.
 */
#ifndef ZKLB_SENTINEL_H
#define ZKLB_SENTINEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "instance.h"

struct event_base;
struct sentinel;

/* Re-subscribe and re-ask this often while watching. */
#define SENTINEL_REFRESH_MS 2000
/* Pause after a round where no sentinel answered, or the answer was not a master. */
#define SENTINEL_RETRY_MS 250

struct sentinel_hooks {
	/* The primary of `service` is v[0] (n is 1); borrowed for the call. Required. */
	void (*on_view)(void *arg, const char *service, const struct instance *v, size_t n);
	/* close_grace after a switch: connections to instance `id` should close. Required. */
	void (*on_demoted)(void *arg, const char *service, const char *id);
	/*
	 * May zklb connect to host:port (an IP literal a sentinel named) for
	 * `service`? true with why filled when its destinations policy refuses
	 * it: that primary is neither asked ROLE (nor sent the password) nor
	 * routed to. Optional (NULL: every address).
	 */
	bool (*refuses)(void *arg, const char *service, const char *host, uint16_t port, char *why,
			size_t len);
};

struct sentinel_stats {
	uint64_t switches_total;	/* primaries changed (zklb_sentinel_switches_total) */
	uint64_t failures_total;	/* failed queries, sentinels and ROLE (zklb_sentinel_failures_total) */
	uint64_t last_switch_ms;	/* wall ms of the last +switch-master seen; 0 = never */
};

/* h and arg must outlive the object. */
struct sentinel *sentinel_new(struct event_base *base, const struct sentinel_hooks *h, void *arg);

/*
 * Start (or restart with new settings) following sc's master (sc is copied;
 * sc->discovery.type must be DISCOVERY_SENTINEL). The last primary
 * delivered stays in the view until a new one is confirmed. Returns 0, or
 * -EINVAL (logged) for settings it cannot use (password file unreadable).
 */
int sentinel_watch(struct sentinel *s, const struct service_conf *sc);

/* Stop following `service` (no-op when not followed); no hook is called for it afterwards. */
void sentinel_unwatch(struct sentinel *s, const char *service);

/* Counters of `service`; false when it is not followed. */
bool sentinel_stats(const struct sentinel *s, const char *service, struct sentinel_stats *out);

/* Stop everything. Not from inside a hook. NULL is a no-op. */
void sentinel_free(struct sentinel *s);

/* ---- pure pieces, exported for the unit tests ---- */

/*
 * A +switch-master message: "<name> <old-ip> <old-port> <new-ip> <new-port>".
 * True when it is well formed and about `name`; the new address goes to
 * host[0..host_len) and *port. IP literals only; ports 1..65535.
 */
bool sentinel_parse_switch(const char *msg, size_t len, const char *name, char *host,
			   size_t host_len, uint16_t *port);

/* An IP literal (v4 or v6) and a decimal port 1..65535, as a sentinel's answer must be. */
bool sentinel_addr_ok(const char *host, size_t host_len, const char *port, size_t port_len,
		      char *host_out, size_t host_out_len, uint16_t *port_out);

#endif
