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

#include "backend.h"
#include "backend_set.h"
#include "pool.h"
#include "relay.h"
#include "balance.h"
#include "util.h"

struct relay;
struct worker;

/* One service's listening socket in one worker. */
struct wlistener {
	struct wlistener *next;
	struct worker *w;			/* owner */
	char *key;				/* owned; the listen address as configured */
	int fd;					/* owned */
	struct event *ev;			/* owned; accept readiness */
	struct event *resume;			/* owned; re-arms accepting after EMFILE */
	bool paused;				/* accepting paused for fd exhaustion */
	struct backend_set *set;		/* ref; what new connections route with */
	struct relay *waiting;			/* relays waiting for a first view */
};

enum worker_msg_kind {
	WORKER_MSG_LISTEN,			/* start accepting on fd with set */
	WORKER_MSG_UPDATE,			/* new snapshot for the listener `key` */
	WORKER_MSG_UNLISTEN,			/* stop accepting on `key` */
	WORKER_MSG_DRAIN,			/* stop accepting everywhere; finish */
	WORKER_MSG_STOP,			/* leave the loop now */
};

struct worker_msg {
	struct worker_msg *next;
	enum worker_msg_kind kind;
	char *key;				/* owned */
	int fd;					/* LISTEN: ownership passes to the worker */
	struct backend_set *set;		/* ref passes to the worker */
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
	struct wlistener *listeners;		/* owned list */
	struct rng rng;
	uint64_t emfile_logged_ms;		/* last "out of fds" log line */

	struct relay *relays;			/* owned list of live relays */
	struct relay *dead;			/* closed, freed after the loop turn */
	struct event *reaper;			/* owned; frees `dead` */
	char *scratch;				/* owned; read buffer for the fast path */
	size_t scratch_len;
	void **buf_free;			/* cached relay buffers (max_buffer bytes) */
	size_t n_buf_free;
	size_t buf_free_size;			/* size of the cached buffers */
	struct pool_worker pool;		/* idle upstream connections */
	int (*pipes)[2];			/* cached empty pipes for splice */
	size_t n_pipes;

	_Atomic uint32_t n_relays;		/* live relays, read by the control thread */
	_Atomic bool draining;
	_Atomic uint64_t accept_errors;		/* accept failures (EMFILE etc.) */
	_Atomic uint64_t closes[RELAY_CLOSE_REASONS];	/* relays closed, by reason */
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
/* Join the thread (after STOP) and free everything. */
void worker_join_free(struct worker *w);
/* Free a worker whose thread never started (worker_start failed). */
void worker_free_unstarted(struct worker *w);

/* For relays. */
void *worker_buf_get(struct worker *w, size_t size);
void worker_buf_put(struct worker *w, void *buf, size_t size);
void worker_schedule_reap(struct worker *w);
/* An empty pipe for splice (cached or new); false when none can be had. */
bool worker_pipe_get(struct worker *w, int p[2]);
/* Return a pipe; `empty` false means bytes are left in it and it is closed. */
void worker_pipe_put(struct worker *w, const int p[2], bool empty);

#endif
