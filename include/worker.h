/*
 * worker — a data-plane thread: its own event base, its own listening socket
 * per service (SO_REUSEPORT), the relays it accepted, its buffers.
 *
 * The control thread talks to a worker only through worker_post(): a message
 * queued under a mutex and a wake-up on an eventfd. Everything a worker owns
 * is touched by that worker alone, so the per-byte path takes no lock.
 */
#ifndef ZKLB_WORKER_H
#define ZKLB_WORKER_H

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>

#include "backend.h"
#include "backend_set.h"
#include "pool.h"
#include "relay.h"
#include "balance.h"
#include "util.h"

struct acceptor;
struct worker;

/* Descriptors at the top of RLIMIT_NOFILE that no client may take (see worker.c). */
#define WORKER_FD_RESERVE 64

enum worker_msg_kind {
	WORKER_MSG_LISTEN,			/* start accepting on fd with set */
	WORKER_MSG_UPDATE,			/* new snapshot for the acceptor `key` */
	WORKER_MSG_UNLISTEN,			/* stop accepting on `key` */
	WORKER_MSG_DRAIN,			/* stop accepting everywhere; finish */
	WORKER_MSG_STOP,			/* leave the loop now */
	WORKER_MSG_CLOSE_BACKEND,		/* close the relays to `be` (a demoted primary) */
};

struct worker_msg {
	struct worker_msg *next;
	enum worker_msg_kind kind;
	char *key;				/* owned */
	int fd;					/* LISTEN: ownership passes to the worker */
	struct backend_set *set;		/* ref passes to the worker */
	struct backend *be;			/* CLOSE_BACKEND: ref passes to the worker */
};

struct worker {
	unsigned id;
	unsigned n_workers;			/* how many workers there are in all */
	pthread_t thread;
	struct event_base *base;		/* owned */
	int wake_fd;				/* owned; eventfd */
	struct event *wake_ev;			/* owned */
	pthread_mutex_t inbox_lock;		/* guards inbox */
	struct worker_msg *inbox;		/* FIFO, newest at the tail */
	struct worker_msg *inbox_tail;
	struct acceptor *acceptors;		/* owned list */
	uint64_t emfile_logged_ms;		/* last "out of fds" log line */
	rlim_t fd_ceiling;			/* a client fd at or above this is refused */

	/*
	 * The data plane below, driven from here: relays use the pool, and
	 * neither knows the worker. Both free what they closed from `reaper`,
	 * after the loop turn; the pool's timer is the worker's `pool_tick`.
	 */
	struct relay_worker relay;		/* relays, their buffers and counters */
	struct pool_worker pool;		/* idle upstream connections */
	struct event *reaper;			/* owned; frees closed relays and pooled conns */
	struct event *pool_tick;		/* owned; drives the pool: sweep, prewarm refill */
	struct event *queue_tick;		/* owned; serves and expires queued clients while any wait */

	_Atomic bool draining;
	_Atomic uint64_t accept_errors;		/* accept failures (EMFILE etc.) */
	_Atomic uint64_t fd_refused;		/* clients closed: their fd was in the reserve */
};

/* Create (not start) worker `id` of `n`. */
struct worker *worker_new(unsigned id, unsigned n);
int worker_start(struct worker *w);
/* Queue a message (any thread); the worker takes ownership of msg. */
void worker_post(struct worker *w, struct worker_msg *msg);
/* Convenience constructors for worker_post(). */
void worker_post_listen(struct worker *w, const char *key, int fd, struct backend_set *set);
void worker_post_update(struct worker *w, const char *key, struct backend_set *set);
void worker_post_simple(struct worker *w, enum worker_msg_kind kind, const char *key);
/* Close w's relays to be (takes a reference of its own). */
void worker_post_close_backend(struct worker *w, struct backend *be);
/* Join the thread (after STOP) and free everything. */
void worker_join_free(struct worker *w);
/* Free a worker whose thread never started (worker_start failed). */
void worker_free_unstarted(struct worker *w);

#endif
