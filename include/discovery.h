/*
 * discovery — turns ZooKeeper (and cache_dir, and static lists) into one
 * view per service: the routable instances, delivered to the owner through a
 * callback on the control thread.
 *
 * For `discovery.type: curator` the children of `path` are the instances and
 * each child's data is a Curator ServiceInstance; for `serverset` the
 * `member_*` children are Finagle ServerSet members. The children and every
 * child's data are watched. A path that does not exist is watched with
 * exists until it appears, and again when it disappears (Curator deletes its
 * CONTAINER parents when they empty). Malformed children are skipped, logged
 * once per node version and counted; so are well-formed children without
 * the port the service uses (an sslPort-only instance on a service without
 * tls), apart. Several children with one id (a DYNAMIC_SEQUENTIAL instance's
 * id is its JSON id, and Curator may leave two nodes for it) give one
 * instance: the newest registrationTimeUTC, else the greatest node name
 * (instance_cmp_nodes); the others are logged once and counted. The rest of
 * the set applies.
 *
 * Every candidate view goes through the guard (instance_guard_step): an
 * empty view never replaces a non-empty one while keep_last_known is on, and
 * a change that shrinks the set by more than collapse_guard is held for
 * collapse_hold and applies only if it still holds then; the owner hears of
 * a hold (on_hold), so that what ZooKeeper no longer lists can be told
 * apart while the old view serves. A view is delivered
 * only when it differs from the last one delivered, and only once every
 * child has been read (never a half-read set). Applied views are written to
 * cache_dir/<service>.json by cache.h's writer thread (never an fsync on the
 * control thread); at discovery_watch() the cached view (if any) is
 * delivered first, before ZooKeeper answers.
 *
 * Per-service state (enum discovery_state), one transition function:
 *   PENDING --cache loaded--> CACHED --first sync--> CONNECTED <--> DISCONNECTED
 *      \--------------------first sync-------------------^
 *
 * ZooKeeper errors: a lost connection keeps serving and re-reads what failed
 * once the session is back; a new session (after expiry) re-reads everything;
 * no permission (ACL) or another server error is logged and retried with
 * backoff.
 *
 * Thread: everything runs on the control thread's event base. Hooks are
 * called from event callbacks, never from inside a discovery_* call.
 */
#ifndef ZKLB_DISCOVERY_H
#define ZKLB_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "instance.h"

struct config;
struct service_conf;

struct event_base;
struct zk;
struct discovery;

enum discovery_state {
	DISCOVERY_PENDING = 0,		/* nothing known yet: clients wait up to connect_timeout */
	DISCOVERY_CACHED,		/* serving cache_dir's copy; ZooKeeper has not answered yet */
	DISCOVERY_CONNECTED,		/* in sync with ZooKeeper (static services: always) */
	DISCOVERY_DISCONNECTED,		/* ZooKeeper lost; serving the last-known view */
};

struct discovery_hooks {
	/*
	 * A new view of `service` applies. v[0..n) is sorted by id and holds
	 * only routable instances (enabled, ALIVE, with the port the service
	 * uses: ssl_port when its tls: section is on, else port). Borrowed for
	 * the duration of the call. n may be 0 (nothing to route to). Required.
	 */
	void (*on_view)(void *arg, const char *service, const struct instance *v, size_t n);
	/* The service's state changed. May be NULL. */
	void (*on_state)(void *arg, const char *service, enum discovery_state st);
	/*
	 * A change is held by the collapse guard (holding true): held[0..n)
	 * is what ZooKeeper lists now (routable instances, sorted by id;
	 * borrowed for the call), which applies at hold_until_ms (monotonic)
	 * if it still holds then; the applied view keeps serving meanwhile.
	 * Called when a hold starts and whenever the held view changes. With
	 * holding false (held NULL, n 0) when a hold ends without applying:
	 * withdrawn (ZooKeeper lists the applied view again), refused
	 * (keep_last_known), or dropped (ZooKeeper lost, source changed). A
	 * hold that applies ends with on_view alone. May be NULL.
	 */
	void (*on_hold)(void *arg, const char *service, bool holding, const struct instance *held,
			size_t n, uint64_t hold_until_ms);
};

struct discovery_stats {
	enum discovery_state state;	/* now */
	size_t instances;		/* in the applied view */
	size_t skipped;			/* children currently skipped (bad, disabled, unusable) */
	uint64_t updates_total;		/* views delivered (zklb_discovery_updates_total) */
	uint64_t bad_instances_total;	/* malformed nodes, once per node version
					   (zklb_discovery_bad_instances_total) */
	uint64_t unroutable_total;	/* well-formed nodes without the port the service uses
					   (sslPort only, no tls), once per node version
					   (zklb_discovery_unroutable_instances_total) */
	uint64_t duplicates_total;	/* nodes skipped for another node of the same id, once
					   per node version (zklb_discovery_duplicate_instances_total) */
	uint64_t held_total;		/* collapses held (zklb_discovery_held_changes_total) */
	uint64_t kept_total;		/* empty views refused by keep_last_known */
	uint64_t errors_total;		/* ZooKeeper read errors other than connection loss */
	bool holding;			/* a collapse is held right now */
	uint64_t last_update_ms;	/* wall ms of the last delivered view; 0 = never */
	uint64_t read_wait_ms;		/* a known change has waited this long for its coalesced or
					   jittered read (the added staleness); 0 = none
					   (zklb_discovery_read_wait_ms) */
	uint64_t lists_total;		/* children requests sent (zklb_discovery_lists_total) */
	uint64_t gets_total;		/* get requests sent (zklb_discovery_gets_total) */
};

/*
 * zk may be NULL (no zookeeper: section): ZooKeeper services then serve only
 * their cache. cfg is read during the call (cache_dir, zookeeper.hosts for
 * the chroot) and not kept. h and arg must outlive the discovery.
 */
struct discovery *discovery_new(struct event_base *base, struct zk *zk, const struct config *cfg,
				const struct discovery_hooks *h, void *arg);

/*
 * Start (or update) the discovery of svc (copied; svc need not outlive the
 * call). Calling it again for the same name with the same type, path and tls
 * setting only updates the guard settings; otherwise the service's watches
 * restart on the new source while its last view keeps serving. static
 * services get their backends delivered as a view once. Returns 0, or
 * -EINVAL for a curator/serverset service without a path.
 */
int discovery_watch(struct discovery *d, const struct service_conf *svc);

/* Stop watching `service`; no hook is called for it afterwards. */
void discovery_unwatch(struct discovery *d, const char *service);

/* Stop everything. Not from inside a hook. */
void discovery_free(struct discovery *d);

/* Counters and state of one service; false when it is not watched. */
bool discovery_stats(const struct discovery *d, const char *service, struct discovery_stats *out);

/* A child of a ZooKeeper service's path that is not in its view, and why. */
struct discovery_skip {
	const char *node;		/* borrowed: the znode name, until the next event */
	const char *kind;		/* "bad", "disabled", "unroutable" or "duplicate" */
	const char *reason;		/* borrowed, as logged */
};

/*
 * The children of service skipped now: up to max of them into out; returns
 * how many there are in all (0 for a static or unknown service).
 */
size_t discovery_skipped(const struct discovery *d, const char *service,
			 struct discovery_skip *out, size_t max);

/* The currently applied view (sorted by id); NULL with *n = 0 when none. */
const struct instance *discovery_view(const struct discovery *d, const char *service, size_t *n);

const char *discovery_state_name(enum discovery_state st);

#endif
