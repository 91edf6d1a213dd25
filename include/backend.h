/*
 * backend — backend instances and the immutable backend-set snapshots that
 * workers route with.
 *
 * A struct backend is one instance (host:port) of one service. It lives as
 * long as anything references it: the service's registry while it is a
 * member, every snapshot that lists it, every relay connected to it. Its
 * identity (instance id, or host:port for static backends) survives
 * snapshots, so a new view from ZooKeeper keeps the active count and the
 * health of instances that stay.
 *
 * Threads: counters and `eligible_after_ms` are atomics written by workers
 * and the control thread; `health` is guarded by the service's health lock;
 * `addr` is written once by the control thread before `has_addr` is set
 * (release), so whoever sees has_addr (acquire) may use it; `resolving`
 * belongs to the control thread; everything else is immutable after
 * backend_new().
 */
#ifndef ZKLB_BACKEND_H
#define ZKLB_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "health.h"
#include "pool.h"
#include "util.h"

struct service;

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
	uint32_t weight;			/* 1..256 */
	struct service *svc;			/* ref */

	/* Health, published for workers: routable when now >= this (ms). */
	_Atomic uint64_t eligible_after_ms;
	_Atomic uint64_t serving_since_ms;	/* slow-start origin: added or returned */
	_Atomic bool member;			/* false once removed from the service */
	struct health health;			/* guarded by svc->health_lock */

	/* Counters (relaxed atomics, summed for the admin API). */
	_Atomic uint32_t active;		/* open or connecting, all workers */
	_Atomic uint64_t conn_total;		/* connections routed here */
	_Atomic uint64_t connect_failures;	/* refused, timed out, reset before first byte */
	_Atomic uint64_t bytes_in;		/* backend -> client */
	_Atomic uint64_t bytes_out;		/* client -> backend */
	_Atomic uint64_t upstream_opened;	/* upstream connections opened (incl. prewarm) */
	_Atomic uint64_t upstream_reused;	/* taken from the idle pool */
	_Atomic uint32_t idle;			/* idle pooled connections, all workers */

	struct pool_slot *slots;		/* owned; [svc->n_workers], slot i for worker i only */
};

/*
 * A refcounted config: snapshots point into it (struct service_conf), so it
 * must outlive every snapshot built from it.
 */
struct config_ref {
	_Atomic uint32_t refs;
	struct config *cfg;			/* owned */
};

struct config_ref *config_ref_new(struct config *cfg);
struct config_ref *config_ref_get(struct config_ref *r);
void config_ref_put(struct config_ref *r);

/*
 * The immutable set a worker routes with for one service. Built by the control
 * thread, handed to each worker with one reference each.
 */
struct backend_set {
	_Atomic uint32_t refs;
	struct service *svc;			/* ref */
	struct config_ref *cfg;			/* ref; keeps `conf` alive */
	const struct service_conf *conf;	/* borrowed from cfg */
	uint64_t version;			/* increases with every new set */
	bool ready;				/* a view exists; false: clients wait */
	size_t n;
	struct backend *v[];			/* refs */
};

/*
 * New instance with one reference. An IP literal host gives an address at
 * once; a host name leaves the backend without one (never routable) until
 * backend_set_addr(): names are resolved by the caller, off the data path.
 */
struct backend *backend_new(struct service *svc, const char *id, const char *host,
			    uint16_t port, uint16_t ssl_port, uint32_t weight, uint64_t now);

/* Give a backend created from a host name its address (once). Control thread. */
void backend_set_addr(struct backend *be, const struct net_addr *addr);

/* Does be have an address yet? Pairs with backend_set_addr(). */
static inline bool backend_has_addr(const struct backend *be)
{
	return atomic_load_explicit(&be->has_addr, memory_order_acquire);
}
struct backend *backend_get(struct backend *be);
void backend_put(struct backend *be);

/* Routable now? One atomic load. */
static inline bool backend_routable(const struct backend *be, uint64_t now)
{
	return now >= atomic_load_explicit(&be->eligible_after_ms, memory_order_relaxed);
}

/*
 * Passive health outcomes from the data plane (any thread). A failure takes
 * the service's health lock; a success takes it only when there is a failure
 * streak to reset.
 */
void backend_report_failure(struct backend *be, const char *why);
void backend_report_success(struct backend *be);

/* Set of n backends (each gets a new reference); takes a ref on cfg and svc. */
struct backend_set *backend_set_new(struct service *svc, struct config_ref *cfg,
				    const struct service_conf *conf, struct backend **v,
				    size_t n, bool ready);
struct backend_set *backend_set_get(struct backend_set *s);
void backend_set_put(struct backend_set *s);

#endif
