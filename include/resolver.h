/*
 * resolver — host names of backends, resolved off the control thread.
 *
 * Curator instances usually announce IP literals, but ServerSets (Aurora,
 * Finagle) and hand-written registrations often carry host names, and
 * getaddrinfo() blocks for as long as DNS takes: seconds when a name server
 * does not answer. So a backend named by a host name is created without an
 * address (listed, never routable), and a few threads of our own resolve the
 * queued names with getaddrinfo() — /etc/hosts, nsswitch.conf and
 * resolv.conf apply as for any other program. Results are applied on the
 * control thread: the `done` hook gets the address, judges it against the
 * destination policy, sets it (backend_set_addr) or refuses it, and then
 * publishes the backend's health and starts its active check.
 *
 * A name that does not resolve is logged (again only when the error
 * changes) and tried again after 1 s, doubling up to 30 s, for as long as
 * the backend is a member. An address is resolved once per backend, like an
 * IP literal: a new address comes with a new instance (or, for a static
 * backend, a restart), not from DNS; the first address getaddrinfo() gives
 * is used.
 *
 * Everything but the lookup itself runs on the control thread.
 */
#ifndef ZKLB_RESOLVER_H
#define ZKLB_RESOLVER_H

#include <stdint.h>

struct backend;
struct event_base;
struct resolver;
struct net_addr;

#define RESOLVER_RETRY_MIN_MS 1000
#define RESOLVER_RETRY_MAX_MS 30000

/* Called on the control thread with the address be's name resolved to. */
typedef void (*resolver_done_fn)(void *arg, struct backend *be, const struct net_addr *addr);

/* Start the lookup threads. NULL (logged) if none can start. */
struct resolver *resolver_new(struct event_base *base, resolver_done_fn done, void *arg);

/*
 * Resolve be's host. Takes a reference until done or the backend leaves its
 * service. No-op when be has an address or is already queued.
 */
void resolver_submit(struct resolver *r, struct backend *be);

/* Lookups that succeeded and failed so far, names waiting now. */
struct resolver_stats {
	uint64_t resolved;
	uint64_t failed;
	uint64_t pending;
};
void resolver_stats(const struct resolver *r, struct resolver_stats *out);

/*
 * Cancel everything and free. A lookup still blocked in getaddrinfo() is
 * left to finish on its own (its thread frees what it shares), so stopping
 * never waits for DNS. NULL is a no-op.
 */
void resolver_free(struct resolver *r);

#endif
