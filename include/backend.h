/*
 * backend — one backend instance (host:port) of one service: its identity,
 * its address, the health record its service keeps on it, and its own
 * counters. Data plus counters only: whether an outcome ejects the instance
 * is the service's decision (service_report_failure()), and the snapshots
 * workers route with are backend_set's.
 *
 * A struct backend lives as long as anything references it: the service's
 * registry while it is a member, every snapshot that lists it, every relay
 * connected to it. Its identity (instance id, or host:port for static
 * backends) survives snapshots, so a new view from ZooKeeper keeps the active
 * count and the health of instances that stay. It holds no reference on its
 * service: the service outlives it only through whoever holds both (a
 * snapshot), so it keeps a copy of the service's name for log lines.
 *
 * Threads: counters and `eligible_after_ms` are atomics written by workers
 * and the control thread; `health` is guarded by the owning service's health
 * lock; `addr` is written once by the control thread before `has_addr` is
 * set (release), so whoever sees has_addr (acquire) may use it; `resolving`
 * and `refused` belong to the control thread; everything else is immutable
 * after backend_new().
 *
 * A backend whose address the destination policy refuses (netpolicy) never
 * has one: has_addr stays false, so nothing routes to it, checks it or
 * prewarms it, and `refused` says why for /services.
 */
#ifndef ZKLB_BACKEND_H
#define ZKLB_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "health.h"
#include "pool.h"
#include "tls.h"
#include "util.h"

/*
 * The change a collapse hold keeps from applying to a member (discovery's
 * guard holds the candidate view; the member still serves meanwhile).
 */
enum backend_held {
	BACKEND_HELD_NONE = 0,		/* ZooKeeper lists it as served */
	BACKEND_HELD_REMOVED,		/* ZooKeeper no longer lists its id */
	BACKEND_HELD_CHANGED,		/* ZooKeeper lists its id at another endpoint */
};

struct backend {
	_Atomic uint32_t refs;
	char *id;				/* owned; instance id or host:port */
	char name[272];				/* "host:port", for logs and labels */
	char host[256];				/* as discovered */
	uint16_t port;
	uint16_t ssl_port;			/* 0 = none */
	struct net_addr addr;			/* valid once has_addr; written once */
	_Atomic bool has_addr;			/* an IP literal, or its name resolved */
	bool resolving;				/* control thread: queued in the resolver */
	char refused[96];			/* control thread: why the policy refused the address; "" = not */
	uint32_t weight;			/* 1..256 */
	char *payload;				/* owned, or NULL; control thread only: */
	uint16_t payload_len;			/*   instance.h's payload pairs, for render */
	_Atomic uint16_t trunk_port;		/* the payload's zklb.trunk (its host's trunk); 0 = none */
	char *svc_name;				/* owned; the service's name, for log lines */

	/* Health, published for workers: routable when now >= this (ms). */
	_Atomic uint64_t eligible_after_ms;
	_Atomic uint64_t serving_since_ms;	/* slow-start origin: added or returned */
	_Atomic bool member;			/* false once removed from the service */
	struct health health;			/* guarded by the service's health_lock */
	enum backend_held held;			/* guarded by health_lock; set by service_hold() */
	uint64_t held_until_ms;			/* guarded by health_lock; monotonic end of that hold */
	bool dropped;				/* guarded by health_lock: failed while held; member is false */

	/* Counters (relaxed atomics, summed for the admin API). */
	_Atomic uint32_t active;		/* open or connecting, all workers */
	_Atomic uint64_t conn_total;		/* connections routed here */
	_Atomic uint64_t connect_failures;	/* refused, timed out, reset before first byte */
	_Atomic uint64_t bytes_in;		/* backend -> client */
	_Atomic uint64_t bytes_out;		/* client -> backend */
	_Atomic uint64_t upstream_opened;	/* upstream connections opened (incl. prewarm) */
	_Atomic uint64_t upstream_reused;	/* taken from the idle pool */
	_Atomic uint32_t idle;			/* idle pooled connections, all workers */
	_Atomic uint64_t tls_handshakes[TLS_RESULTS];	/* upstream TLS handshakes, by result */
	_Atomic uint64_t tls_logged_ms;		/* last handshake failure logged (rate limit) */
	_Atomic uint64_t tls_bytes[2];		/* ciphertext on the wire: [0] from the backend, [1] to it */

	struct pool_slot *slots;		/* owned; [n_workers], slot i for worker i only */

	/*
	 * Administrative state, set through the runtime API and kept apart from
	 * health (HAProxy's drain/weight): read by workers, written by the
	 * control thread. Lives as long as this object, i.e. while discovery
	 * keeps the instance at the same endpoint and weight.
	 */
	_Atomic bool admin_drain;		/* no new connections; open ones are kept */
	_Atomic uint32_t weight_override;	/* 1..256 replaces weight; 0: none */
	char admin_note[128];			/* control thread: who changed it last, for the page */
};

/*
 * New instance of service `svc_name` (copied) with one reference and one pool
 * slot per worker. An IP literal host gives an address at once; a host name
 * leaves the backend without one (never routable) until backend_set_addr():
 * names are resolved by the caller, off the data path.
 */
struct backend *backend_new(const char *svc_name, unsigned n_workers, const char *id,
			    const char *host, uint16_t port, uint16_t ssl_port, uint32_t weight,
			    uint64_t now);

/* Give a backend created from a host name its address (once). Control thread. */
void backend_set_addr(struct backend *be, const struct net_addr *addr);

/*
 * The destination policy refused be's address: record why and take the
 * address back. Control thread, before be is published to any worker (for a
 * literal, right after backend_new(); for a name, instead of backend_set_addr()).
 */
void backend_refuse(struct backend *be, const char *why);

/* Was be's address refused? Control thread. */
static inline bool backend_refused(const struct backend *be)
{
	return be->refused[0] != '\0';
}
/*
 * The instance's payload pairs (instance.h), as discovery last read them,
 * and the trunk port they advertise (trunk.h: TRUNK_PAYLOAD_KEY, 1..65535;
 * anything else is none). Control thread.
 */
void backend_set_payload(struct backend *be, const char *payload, uint16_t len);

/* Does be have an address yet? Pairs with backend_set_addr(). */
static inline bool backend_has_addr(const struct backend *be)
{
	return atomic_load_explicit(&be->has_addr, memory_order_acquire);
}
/* "removed", "changed" (BACKEND_HELD_NONE: "none"). */
const char *backend_held_name(enum backend_held h);
/*
 * Count a TLS handshake with be (relay, pool or check) and, for a failure,
 * log `reason` — at most one line per backend every BACKEND_TLS_LOG_MS, so a
 * backend with a bad certificate cannot flood the log. Any thread.
 */
void backend_count_tls(struct backend *be, enum tls_result r, const char *reason, uint64_t now);

/* Add what t moved on the wire since the last call to be's TLS byte counters. Any thread. */
void backend_count_tls_bytes(struct backend *be, struct tls_conn *t);

struct backend *backend_get(struct backend *be);
void backend_put(struct backend *be);

/*
 * Count one more connection to be unless it has `limit` already (limit 0:
 * no limit). Atomic, so workers racing for the last slot cannot overshoot.
 */
static inline bool backend_take_slot(struct backend *be, uint32_t limit)
{
	if (limit == 0) {
		atomic_fetch_add_explicit(&be->active, 1, memory_order_relaxed);
		return true;
	}
	uint32_t n = atomic_load_explicit(&be->active, memory_order_relaxed);
	do {
		if (n >= limit)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&be->active, &n, n + 1,
							memory_order_relaxed, memory_order_relaxed));
	return true;
}

/* Routable now? One atomic load. */
static inline bool backend_routable(const struct backend *be, uint64_t now)
{
	return now >= atomic_load_explicit(&be->eligible_after_ms, memory_order_relaxed);
}

/* Drained by an operator (runtime API): not routed, not even in panic. */
static inline bool backend_drained(const struct backend *be)
{
	return atomic_load_explicit(&be->admin_drain, memory_order_relaxed);
}

/* The weight in force: an operator's override, else the discovered one. */
static inline uint32_t backend_weight(const struct backend *be)
{
	uint32_t w = atomic_load_explicit(&be->weight_override, memory_order_relaxed);
	return w ? w : be->weight;
}

#endif
