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
 * Names come from ZooKeeper, so they are hostile input: a service's policy
 * (struct resolver_policy, from its discovery: section) says whether names
 * are looked up at all (a refused backend is marked `refused` and shown so
 * in /services), how many lookups of the service may be in flight at once
 * (the others wait their turn), and how long one may take: at the deadline
 * it fails and is retried like any failure. Each lookup runs on a thread of
 * its own that cannot be cancelled, so one past its deadline keeps counting
 * against its service until the name server gives up: names that never
 * answer hold at most max_lookups threads, and the other services' lookups
 * start at once.
 *
 * Everything but the lookup itself runs on the control thread.
 */
#ifndef ZKLB_RESOLVER_H
#define ZKLB_RESOLVER_H

#include <stdbool.h>
#include <stdint.h>

struct backend;
struct event_base;
struct resolver;
struct net_addr;

#define RESOLVER_RETRY_MIN_MS 1000
#define RESOLVER_RETRY_MAX_MS 30000

/* backend.refused (state refused) when discovery.allow_hostnames is false. */
extern const char resolver_refused_hostname[];	/* "hostname_not_allowed" */

/* What a service allows its names (from its discovery: section). */
struct resolver_policy {
	bool allow_hostnames;		/* false: a name is refused, never looked up */
	uint32_t max_lookups;		/* lookups of the service in flight, at most (>= 1) */
	uint64_t timeout_ms;		/* a lookup not answered by then fails (retried) */
};

/* Called on the control thread with the address be's name resolved to. */
typedef void (*resolver_done_fn)(void *arg, struct backend *be, const struct net_addr *addr);

/* Start the lookup threads. NULL (logged) if none can start. */
struct resolver *resolver_new(struct event_base *base, resolver_done_fn done, void *arg);

/*
 * Resolve be's host under p (copied). Takes a reference until done or the
 * backend leaves its service. No-op when be has an address, is already
 * queued, or was refused for another reason. When p refuses names, sets
 * be->refused (logged, counted) instead.
 */
void resolver_submit(struct resolver *r, struct backend *be, const struct resolver_policy *p);

/* Lookups so far by result; names and threads now. */
struct resolver_stats {
	uint64_t resolved;		/* zklb_resolver_lookups_total{result="ok"} */
	uint64_t failed;		/* {result="failed"} */
	uint64_t timed_out;		/* {result="timed_out"}: given up at the deadline */
	uint64_t refused;		/* {result="refused"}: names not allowed */
	uint64_t pending;		/* backends waiting for an address (zklb_resolver_pending) */
	uint64_t threads;		/* lookup threads alive (zklb_resolver_threads) */
};
void resolver_stats(const struct resolver *r, struct resolver_stats *out);

/*
 * Cancel everything and free. A lookup still blocked in getaddrinfo() is
 * left to finish on its own (its thread frees what it shares), so stopping
 * never waits for DNS. NULL is a no-op.
 */
void resolver_free(struct resolver *r);

#endif
