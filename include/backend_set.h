/*
 * backend_set — the immutable snapshot of one service's members that a
 * worker routes with. The control thread builds one per change
 * (backend_set_publish()) and hands each worker its own reference; relays
 * keep the set they were accepted with until they close.
 *
 * A set holds references on its backends, on the configuration its `conf`
 * points into, and on its service (relays count into the service's counters
 * through set->svc, even after a reload removed the service). That last
 * reference is why sets are their own module: the service registry
 * (service.c) sits below them and never needs to know they exist.
 *
 * The configuration a set borrows its settings from is refcounted here too
 * (struct config_ref): a reload must not free what running relays read.
 *
 * Threads: immutable after backend_set_publish(); refs are atomics.
 */
#ifndef ZKLB_BACKEND_SET_H
#define ZKLB_BACKEND_SET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "service.h"

struct config;
struct config_ref;
struct service_conf;

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

struct backend_set {
	_Atomic uint32_t refs;
	struct service *svc;			/* ref */
	struct config_ref *cfg;			/* ref; keeps `conf` alive */
	const struct service_conf *conf;	/* borrowed from cfg */
	uint64_t version;			/* increases with every new set of svc */
	bool ready;				/* a view exists; false: clients wait */
	size_t n;
	struct backend *v[];			/* refs */
};

/* Set of n backends (each gets a new reference); takes a ref on cfg and svc. */
struct backend_set *backend_set_new(struct service *svc, struct config_ref *cfg,
				    const struct service_conf *conf, struct backend **v,
				    size_t n, bool ready);

/*
 * A new set of svc's current members, with the service's next version
 * (service_published() records it). Returns one reference, for the caller
 * to share out to workers. Control thread.
 */
struct backend_set *backend_set_publish(struct service *svc, struct config_ref *cfg,
					const struct service_conf *conf, bool ready);

struct backend_set *backend_set_get(struct backend_set *s);
void backend_set_put(struct backend_set *s);

#endif
