/*
 * relay — one client connection and its upstream connection: choose a
 * backend, connect (retrying on another backend), copy bytes both ways with
 * backpressure, propagate half-close, enforce connect and idle timeouts.
 *
 * Lifecycle: NEW -> [WAITING (no view of the service yet)] -> CONNECTING ->
 * ESTABLISHED -> CLOSED, with shortcuts where a step is not needed (a pooled
 * or at-once connect skips CONNECTING). relay_transition_allowed() lists the
 * legal moves; relay_set_state() in relay.c is the one place states change
 * and refuses the others.
 *
 * The data plane is one-way: the worker drives relays, relays use the pool,
 * and neither relay nor pool knows the worker. A relay runs on a struct
 * relay_worker (embedded in the worker, which hands it its event base,
 * reaper and pool) and waits for a first view on a struct relay_queue
 * (embedded in whatever accepts for the service).
 *
 * Thread: the owning worker only, except the atomics of struct relay_worker.
 */
#ifndef ZKLB_RELAY_H
#define ZKLB_RELAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spare.h"
#include "util.h"

struct accesslog_ring;
struct backend;
struct backend_set;
struct event;
struct event_base;
struct pool_worker;
struct relay;
struct trunk_client;

enum relay_close_reason {
	RELAY_CLOSE_DONE = 0,		/* both directions finished */
	RELAY_CLOSE_CLIENT_ERROR,	/* read/write error on the client side */
	RELAY_CLOSE_BACKEND_ERROR,	/* read/write error on the backend side */
	RELAY_CLOSE_IDLE_TIMEOUT,
	RELAY_CLOSE_CONNECT_FAILED,	/* every try failed */
	RELAY_CLOSE_NO_BACKEND,		/* nothing routable */
	RELAY_CLOSE_WAIT_TIMEOUT,	/* no view of the service arrived in time */
	RELAY_CLOSE_LOCAL_ERROR,	/* out of fds or memory on our side */
	RELAY_CLOSE_SHUTDOWN,		/* drain deadline or acceptor gone at exit */
	RELAY_CLOSE_BACKEND_DEMOTED,	/* the backend stopped being the primary (sentinel) */
	RELAY_CLOSE_INSTANCE_LIMIT,	/* every instance at its max_connections_per_instance */
	RELAY_CLOSE_BUFFER_BUDGET,	/* max_buffer_memory spent: no buffer for a slow reader */
	RELAY_CLOSE_QUEUE_TIMEOUT,	/* queued beyond max_connections for queue_timeout */
	RELAY_CLOSE_REASONS
};

enum relay_state {
	RELAY_NEW = 0,			/* accepted, not routed yet */
	RELAY_WAITING,			/* no view of the service yet: the connect timeout runs */
	RELAY_CONNECTING,		/* a connect in flight: the connect timeout runs */
	RELAY_ESTABLISHED,		/* copying: the idle timeout runs */
	RELAY_CLOSED,			/* sockets closed; freed after the loop turn */
	RELAY_STATES
};

/* Relays waiting for a first view of one service (embedded in the acceptor). */
struct relay_queue {
	struct relay *head;			/* not refs: each relay owns itself */
};

/* One worker's relay state (embedded in struct worker). */
/*
 * What every worker's relays hold in buffers, against max_buffer_memory: a
 * relay that must keep bytes its peer did not take, and cannot (the budget is
 * spent, or malloc says no), is closed as local_error and counted, rather
 * than the process growing until the kernel kills it. Owned by the control;
 * workers update it with relaxed atomics.
 */
struct relay_budget {
	_Atomic uint64_t used;			/* bytes in relays' buffers now */
	_Atomic uint64_t limit;			/* max_buffer_memory; 0 = none */
	_Atomic uint64_t refusals;		/* relays closed: no buffer could be had */
};

struct balance_candidate;
struct krelay;
struct krelay_ring;

/* Close a relay for a reason (relay.c's relay_close; relay_kernel.c calls it through rw). */
typedef void relay_close_fn(struct relay *r, enum relay_close_reason why);

struct relay_worker {
	struct event_base *base;		/* ref: the worker's */
	struct event *reap;			/* ref: the worker's; made active to free `dead` */
	struct pool_worker *pool;		/* ref: the worker's idle upstream connections */
	struct rng rng;				/* balancing draws */
	struct relay *live;			/* owned list of open relays */
	struct relay *dead;			/* closed, freed after the loop turn */
	char *scratch;				/* owned; read buffer for the fast path */
	size_t scratch_len;			/* bytes */
	struct spares spares;			/* relay buffers and splice pipes */
	_Atomic uint32_t n_relays;		/* open relays, read by the control thread */
	_Atomic uint64_t closes[RELAY_CLOSE_REASONS];	/* relays closed, by reason; read by admin */
	struct accesslog_ring *alog;		/* ref: this worker's access log queue; NULL when off */
	struct relay_budget *budget;		/* ref: the control's; NULL = none */
	struct trunk_client *trunk;		/* ref: the control's calling side; NULL without trunk: */
	struct balance_candidate *cands;	/* owned; balancing scratch, grown to the largest set */
	size_t cands_cap;			/* entries in cands */
	struct krelay *_Atomic krelay;		/* ref: the control's; NULL = no kernel relay */
	struct event *ksweep;			/* owned; looks after kernel-relayed connections */
	uint64_t ksweep_at_ms;			/* when ksweep fires, if pending (monotonic) */
	struct krelay_ring *kring;		/* owned; spills of this worker's pairs; NULL until one */
	struct event *kring_ev;			/* owned; kring readable */
	bool kring_failed;			/* kring could not be made: the sweep finds spills */
	uint32_t n_kernel;			/* relays the kernel relays now */
	relay_close_fn *kclose;			/* relay_close: how relay_kernel.c closes one */
};

const char *relay_close_reason_name(enum relay_close_reason r);
const char *relay_state_name(enum relay_state s);

/* Pure: is from -> to a move of the relay lifecycle? */
bool relay_transition_allowed(enum relay_state from, enum relay_state to);

/*
 * Relays of one worker run on `base`, use `pool`, and are freed by
 * relay_reap() from the worker's `reap` event, which they make active.
 * `seed` seeds the balancing draws.
 */
void relay_worker_init(struct relay_worker *rw, struct event_base *base, struct event *reap,
		       struct pool_worker *pool, uint64_t seed);
/* Free the caches; every relay is closed (relay_close_all) and reaped first. */
void relay_worker_free(struct relay_worker *rw);

/*
 * Take over an accepted client socket (cfd, owned from now on) that routes
 * with `set` (the relay takes its own reference). Without a view yet
 * (!set->ready) it waits on `q` until relay_wake_waiting() or its connect
 * timeout. accepted_ms (monotonic) is when the client was accepted (earlier
 * than now when it was queued), for the access log's durations; 0 = now.
 */
void relay_accept(struct relay_worker *rw, struct backend_set *set, struct relay_queue *q,
		  int cfd, uint64_t accepted_ms);

/*
 * Close a client that never became a relay (a queued one), for `why`: the
 * access log has its line (accepted at accepted_ms, monotonic) and
 * zklb_connections_closed_total{reason} counts it. cfd is closed; no
 * max_connections slot is involved.
 */
void relay_refuse(struct relay_worker *rw, const struct backend_set *set, int cfd,
		  enum relay_close_reason why, uint64_t accepted_ms);

/* A first view arrived: start every relay waiting on q, routing with `set`. */
void relay_wake_waiting(struct relay_queue *q, struct backend_set *set);

/* q goes away: its waiting relays stop pointing at it (their timeout still runs). */
void relay_detach_waiting(struct relay_queue *q);

/* Close every relay of rw now (drain deadline, worker exit). */
void relay_close_all(struct relay_worker *rw);

/*
 * Close the relays connecting or connected to be (not refs: identity only),
 * counted as backend_demoted; their upstream connections are not pooled.
 */
void relay_close_backend(struct relay_worker *rw, const struct backend *be);

/* Free the relays closed during the last loop turn (rw->dead). */
void relay_reap(struct relay_worker *rw);

#endif
