/*
 * pool — idle upstream connections kept per worker and per backend, so the
 * network carries few long-lived connections (pool.prewarm, pool.reuse).
 *
 * Each backend has one slot per worker; a slot is touched by its worker only,
 * so taking and returning connections takes no lock. An idle connection is
 * watched for readability while it waits: the backend closing it or sending
 * anything unasked discards it at once. It is checked again when taken
 * (recv(MSG_PEEK|MSG_DONTWAIT) must say EAGAIN).
 *
 * Over TLS (tls: on the service) a pooled connection is a TLS connection:
 * prewarm completes the handshake before the connection counts as idle,
 * and the checks look through TLS, because a TLS 1.3 server sends records
 * after the handshake that are not data (session tickets): such records are
 * consumed (the tickets feed session resumption) and the connection stays;
 * application data, close_notify or a FIN still discard it.
 *
 * The invariant the pool relies on, enforced by the relay: a connection is
 * returned only when its framing tracker says every request was fully
 * answered (FRAMING_OK) and nothing is pending in either direction, so no
 * byte of one client's exchange can ever reach the next client.
 *
 * The pure policy functions at the top take no sockets and no clock.
 *
 * The pool knows neither the worker nor the relay: the worker hands it its
 * event base and reaper (pool_worker_init) and drives it from its own timer
 * (pool_sweep, pool_refill); the relay takes and returns connections.
 */
#ifndef ZKLB_POOL_H
#define ZKLB_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "framing.h"

struct pool_conf;

struct backend;
struct backend_set;
struct event;
struct event_base;
struct pooled;
struct tls_conn;

/* Why an idle connection was dropped: one counter each. */
enum pool_discard {
	POOL_DISCARD_CLOSED = 0,	/* the backend closed it while idle */
	POOL_DISCARD_DATA,		/* the backend sent bytes nobody asked for */
	POOL_DISCARD_STALE,		/* failed the check when taken */
	POOL_DISCARD_IDLE_TIMEOUT,	/* pool.idle_timeout passed */
	POOL_DISCARD_FULL,		/* max_idle reached */
	POOL_DISCARD_REMOVED,		/* the backend left the service or is not routable */
	POOL_DISCARD_NOT_REUSABLE,	/* the framing tracker said no (see framing counters) */
	POOL_DISCARD_SHUTDOWN,		/* worker stopping */
	POOL_DISCARD_CONNECT_FAILED,	/* a prewarm connect failed */
	POOL_DISCARD_NO_MEMORY,		/* no memory to keep it */
	POOL_DISCARD_COUNT
};

/* One worker's slot of a backend. Cache-line aligned: slots of different workers sit side by side. */
struct pool_slot {
	struct pooled *idle;		/* LIFO of idle connections (most recent first) */
	uint32_t n_idle;
	uint32_t n_connecting;		/* prewarm connects in flight */
	uint32_t backoff_ms;		/* current prewarm backoff, 0 = none */
	uint64_t next_attempt_ms;	/* no prewarm connect before this */
} __attribute__((aligned(64)));

/* Per-worker pool state (embedded in struct worker). */
struct pool_worker {
	unsigned id;			/* the worker's index: our slot in every backend */
	unsigned n_workers;		/* workers in all, for the prewarm share */
	struct event_base *base;	/* ref: the worker's */
	struct event *reap;		/* ref: the worker's; made active to free `dead` */
	bool draining;			/* the worker drains: keep nothing returned */
	struct pooled *all;		/* every idle/connecting connection of this worker */
	struct pooled *dead;		/* closed, freed after the loop turn */
	uint64_t discards[POOL_DISCARD_COUNT];	/* written by the worker, read racily by admin */
	uint64_t not_reusable[FRAMING_VERDICT_COUNT];
};

/* --- Pure policy --------------------------------------------------------- */

/* How many of `prewarm` connections per backend worker `id` of `n` keeps. */
uint32_t pool_prewarm_share(uint32_t prewarm, unsigned n_workers, unsigned id);

/* The next prewarm backoff after a failure: 100ms, doubling, capped at 5s. */
uint32_t pool_backoff_next(uint32_t prev_ms);

const char *pool_discard_name(enum pool_discard d);

/* --- Worker mechanics (owning worker thread only) ------------------------ */

/*
 * Worker `id` of `n_workers` pools on `base`. `reap` is an event of the
 * worker's that frees what the pool closed (pool_worker_reap) after the loop
 * turn; the pool makes it active and never frees anything inside a callback.
 */
void pool_worker_init(struct pool_worker *pw, struct event_base *base, struct event *reap,
		      unsigned id, unsigned n_workers);
/* Close every pooled connection (worker exit). */
void pool_worker_close(struct pool_worker *pw);
/* Free connections closed during the last loop turn. */
void pool_worker_reap(struct pool_worker *pw);
/* The worker drains: connections returned from now on are closed, not kept. */
void pool_worker_drain(struct pool_worker *pw);

/* Drop idle connections to backends that left the service or are not routable. */
void pool_sweep(struct pool_worker *pw, uint64_t now);
/* Open prewarm connections to the backends of `set` up to this worker's share. */
void pool_refill(struct pool_worker *pw, const struct backend_set *set, uint64_t now);

/* A relay's framing tracker kept its upstream out of the pool: count verdict v. */
void pool_count_not_reusable(struct pool_worker *pw, enum framing_verdict v);

/*
 * An idle connection to `be`, checked alive, or -1. On success *fr gets its
 * framing tracker (reset for the new client; may be NULL) and *tls its TLS
 * state (NULL for plain TCP).
 */
int pool_take(struct pool_worker *pw, struct backend *be, struct framing **fr,
	      struct tls_conn **tls);

/*
 * Offer an upstream connection at a boundary to the pool. Takes ownership of
 * fd, tls (may be NULL) and fr in every case (closes them when the pool does
 * not keep them). Returns true when kept.
 */
bool pool_put(struct pool_worker *pw, struct backend *be, int fd, struct tls_conn *tls,
	      struct framing *fr, const struct pool_conf *pc);

#endif
