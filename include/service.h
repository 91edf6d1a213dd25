/*
 * service — the runtime of one configured service: its current members
 * (backend objects kept across views so their state survives), its health
 * policy, counters.
 *
 * The health policy lives here and only here: what a passive outcome
 * (service_report_failure/success), an active check result
 * (service_check_result) or the passing of time (service_tick) does to a
 * member. The decisions themselves are health.c's pure functions; this file
 * feeds them the service-wide facts (how many members are ejected, how many
 * are routable), serialises them under `health_lock`, publishes the outcome
 * to workers (backend->eligible_after_ms) and logs and counts it. Backends
 * are data; the snapshots workers route with (backend_set) sit above.
 *
 * Threads: the control thread creates services, changes members and runs
 * service_tick(). Workers only touch the atomics and call
 * service_report_failure/success(), which take `health_lock`. `members` is
 * replaced only under `health_lock`, and only by the control thread.
 */
#ifndef ZKLB_SERVICE_H
#define ZKLB_SERVICE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "health.h"
#include "queue.h"

struct service_conf;

/*
 * Where the service's members come from right now, as /services and the
 * zklb_discovery_connected{state=...} label print it (service_view_name()).
 * STATIC: the configuration lists them; the others follow discovery's state.
 */
enum service_view {
	SERVICE_VIEW_PENDING = 0,		/* nothing known yet: clients wait */
	SERVICE_VIEW_STATIC,			/* static backends from the configuration */
	SERVICE_VIEW_CONNECTED,			/* in sync with ZooKeeper */
	SERVICE_VIEW_DISCONNECTED,		/* ZooKeeper lost; the last-known view serves */
	SERVICE_VIEW_CACHED,			/* cache_dir's copy until ZooKeeper answers */
};

/*
 * The process-wide cap on client connections (max_connections), shared by
 * every service; owned by the control, which sets `max` on each (re)load.
 */
struct service_cap {
	_Atomic uint32_t open;			/* client connections open, all services */
	_Atomic uint32_t max;			/* 0 = no cap */
};

/* One member as a discovery source describes it. */
struct member_spec {
	const char *id;				/* identity: instance id or host:port */
	const char *host;
	uint16_t port;
	uint16_t ssl_port;			/* 0 = none */
	uint32_t weight;			/* 1..256 */
	const char *payload;			/* instance.h's payload pairs, or NULL */
	uint16_t payload_len;
};

struct service {
	_Atomic uint32_t refs;
	char *name;				/* owned */
	unsigned n_workers;			/* pool slots per backend */

	pthread_mutex_t health_lock;		/* guards the fields up to `panic` */
	struct health_params hp;		/* from the health: section (the schema's defaults) */
	uint64_t slow_start_ms;
	struct backend **members;		/* refs; the current instances */
	size_t n_members;
	bool panic;				/* last state logged by service_tick() */

	/* Control thread only. */
	uint64_t version;			/* of the last published snapshot; 0: none yet */
	bool ready;				/* the last published snapshot had a view */
	enum service_view view;			/* where the members come from */
	struct backend **draining;		/* refs; removed members with open connections */
	size_t n_draining;

	_Atomic uint64_t rr_next;		/* round_robin position, all workers */
	_Atomic uint64_t skip_logged_ms;	/* last "not ejected" log line (rate limit) */

	/* Counters. */
	_Atomic uint64_t conn_total;		/* client connections accepted */
	_Atomic uint64_t conn_failed;		/* closed without reaching any backend */
	_Atomic uint64_t retries;		/* connect attempts after the first */
	_Atomic uint64_t wait_timeouts;		/* gave up waiting for a first view */
	_Atomic uint64_t ejections;		/* passive ejections */
	_Atomic uint64_t check_failures;	/* active check failures */
	_Atomic uint64_t panics;		/* times panic mode was entered */
	_Atomic uint64_t view_updates;		/* member changes applied */
	_Atomic uint64_t refused;		/* instances refused by the destination policy */
	_Atomic uint64_t conn_open;		/* client connections open now, all workers */
	_Atomic uint64_t cap_pauses;		/* times accepting paused at a max_connections */
	_Atomic uint32_t max_conns;		/* services.NAME.max_connections; 0 = no cap */
	struct service_cap *cap;		/* ref: the control's global cap; NULL = none */

	/*
	 * Clients accepted beyond a max_connections, waiting for a slot: one
	 * line per service, shared by every worker (HAProxy queues per backend,
	 * process-wide), so a slot freed in any worker serves the client that
	 * has waited longest, whichever worker accepted it.
	 */
	pthread_mutex_t queue_lock;		/* guards queue; never held across a syscall */
	struct queue queue;			/* owned; the fds are owned too until popped */
	_Atomic uint64_t queued;		/* queue.len, for readers without the lock */
	_Atomic uint64_t queued_total;		/* clients that entered the queue */
	_Atomic uint64_t queue_timeouts;	/* closed after queue_timeout without a slot */
	_Atomic uint64_t queue_full;		/* times accepting paused: queue_max clients queued */
	_Atomic uint64_t queue_logged_ms;	/* last queue log line (rate limit) */

	/* Destination policy (control thread): copies of the lists in force. */
	struct net_list allowed;		/* allowed_networks; empty = any */
	struct net_list denied;			/* denied_networks */
	struct net_self *self;			/* owned; zklb's own listeners, n_self */
	size_t n_self;
	bool readmitting;			/* service_readmit() is re-judging the members */
	_Atomic uint64_t at_capacity;		/* connects refused: every candidate at its max_connections_per_instance */
	_Atomic uint64_t out_of_zone;		/* connects sent out of the local zone (locality) */
	_Atomic uint64_t held_drops;		/* held members dropped at a failure (service_hold) */
	_Atomic uint64_t kernel_relays;		/* connections the kernel relay took (relay: kernel|auto) */
	_Atomic uint64_t kernel_fallbacks;	/* connections meant for it, relayed in user space */
	_Atomic uint64_t kernel_spills;		/* kernel-relayed connections moved to user space */
};

/* "pending", "static", "connected", "disconnected" or "cached". */
const char *service_view_name(enum service_view v);

/* In sync with its source: connected to ZooKeeper, or static. */
bool service_view_in_sync(enum service_view v);

/* A service whose backends will be used by n_workers workers. */
struct service *service_new(const char *name, unsigned n_workers);
struct service *service_get(struct service *svc);
void service_put(struct service *svc);

/* Drop the members when the service goes away (control thread). */
void service_retire(struct service *svc);

/* Apply (new) settings: health parameters, thresholds. Control thread. */
void service_configure(struct service *svc, const struct service_conf *conf);

/*
 * Replace the members with `v`. Members whose id (and address) match keep
 * their backend object (a dropped one, see service_hold, is made afresh);
 * removed ones stop being routable for new connections but keep the
 * connections they have. Returns true when anything changed. Control thread.
 */
bool service_set_members(struct service *svc, const struct member_spec *v, size_t n,
			 uint64_t now);

/*
 * A collapse hold (discovery's guard) keeps the members from following
 * ZooKeeper for a while. listed[0..n) is what ZooKeeper lists now (the held
 * view, sorted by id as discovery's views are): each member it does not list as served — its id gone, or listed at
 * another endpoint — is marked (backend->held) until hold_until_ms
 * (monotonic); the others are unmarked. holding false: no hold any more,
 * every mark is cleared.
 *
 * A marked member that fails (a passive failure, a failed active check) is
 * dropped at once — out of the pool, whatever max_ejected_percent says: that
 * cap protects what ZooKeeper still lists, while a held member that fails is
 * most likely gone on purpose. A marked member that keeps serving (a
 * spurious mass expiry) loses nothing.
 *
 * Returns how many dropped members should serve again (ZooKeeper lists them
 * again, or the hold ended without applying): the caller applies its view
 * again, and service_set_members() makes them afresh. Control thread.
 */
size_t service_hold(struct service *svc, bool holding, const struct member_spec *listed,
		    size_t n, uint64_t hold_until_ms);

/* Is be one of svc's current members? Control thread. */
bool service_has_member(const struct service *svc, const struct backend *be);

/*
 * Take one client connection slot before accept(): false (nothing taken)
 * when the service or the whole process is at its max_connections. Every
 * true is given back by service_conn_release() when that connection closes
 * (or was not accepted after all). Any thread.
 */
bool service_conn_reserve(struct service *svc);
void service_conn_release(struct service *svc);

/*
 * The queue (see struct service). Any thread; each takes queue_lock briefly.
 * push: queue client fd (ownership passes to the queue) at now if fewer than
 * max wait; false (fd still the caller's) when full. pop: the client that
 * waited longest, or -1; *since_ms says when it was queued. pop_expired: the
 * same, only if it waited timeout_ms or more. next_ms: ms until the head
 * expires (QUEUE_NEVER when empty).
 */
bool service_queue_push(struct service *svc, uint32_t max, int fd, uint64_t now);
int service_queue_pop(struct service *svc, uint64_t *since_ms);
int service_queue_pop_expired(struct service *svc, uint64_t now, uint64_t timeout_ms,
			      uint64_t *since_ms);
uint64_t service_queue_next_ms(struct service *svc, uint64_t now, uint64_t timeout_ms);

/*
 * The destination policy: allowed/denied (copied) and zklb's own listening
 * sockets self[0..n) (copied). Applies to members created from now on;
 * returns whether it differs from the policy before. Control thread.
 */
bool service_set_policy(struct service *svc, const struct net_list *allowed,
			const struct net_list *denied, const struct net_self *self, size_t n);

/*
 * After the policy changed: every member whose standing may differ under it
 * (refused ones, and admitted ones it now refuses) is replaced by a new
 * backend object judged again; the old one stops taking new connections and
 * keeps the ones it has, as a removed member does. Control thread.
 */
void service_readmit(struct service *svc, uint64_t now);

/*
 * May member be connect to addr? When not, be is refused (backend_refuse),
 * the refusal counted in svc->refused and logged; returns false. Called
 * before be's address is published. Control thread.
 */
bool service_admit(struct service *svc, struct backend *be, const struct net_addr *addr);

/*
 * Would svc's destinations policy refuse addr (denied or not allowed
 * networks, one of zklb's own listeners)? Then why says so ("denied_network
 * 169.254.0.0/16"). No side effects; for connections that are not members'
 * (a Sentinel's candidate primary). Control thread.
 */
bool service_refuses(const struct service *svc, const struct net_addr *addr, char *why,
		     size_t len);

/*
 * A member created from a host name got its address: publish its health for
 * workers; slow start counts from now. Control thread.
 */
void service_backend_ready(struct service *svc, struct backend *be, uint64_t now);

/*
 * A snapshot of the members was handed to workers (backend_set_publish()):
 * remember whether it had a view; returns its version. Control thread.
 */
uint64_t service_published(struct service *svc, bool ready);

/*
 * Passive health outcomes of member be from the data plane (any thread). A
 * failure (connect refused or timed out, reset before the first byte) counts
 * in be->connect_failures and takes the health lock: it may eject be, within
 * max_ejected_percent of the members. A success takes the lock only when
 * there is a failure streak to reset.
 */
void service_report_failure(struct service *svc, struct backend *be, const char *why);
void service_report_success(struct service *svc, struct backend *be);

/* Time passes: ejection expiry, decay, panic enter/leave logging. Control thread. */
void service_tick(struct service *svc, uint64_t now);

/* One active check result for a member. Control thread. */
void service_check_result(struct service *svc, struct backend *be, bool passed,
			  const char *why, uint64_t now);

#endif
