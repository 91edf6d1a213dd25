/*
 * relay — one client connection and its upstream connection: choose a
 * backend, connect (retrying on another backend), copy bytes both ways with
 * backpressure, propagate half-close, enforce connect and idle timeouts.
 *
 * Lifecycle: WAITING (no view of the service yet) -> CONNECTING ->
 * ESTABLISHED -> CLOSED. relay_set_state() is the one place states change.
 * Thread: the owning worker only.
 */
#ifndef ZKLB_RELAY_H
#define ZKLB_RELAY_H

#include <stdint.h>

struct worker;
struct acceptor;

enum relay_close_reason {
	RELAY_CLOSE_DONE = 0,		/* both directions finished */
	RELAY_CLOSE_CLIENT_ERROR,	/* read/write error on the client side */
	RELAY_CLOSE_BACKEND_ERROR,	/* read/write error on the backend side */
	RELAY_CLOSE_IDLE_TIMEOUT,
	RELAY_CLOSE_CONNECT_FAILED,	/* every try failed */
	RELAY_CLOSE_NO_BACKEND,		/* nothing routable */
	RELAY_CLOSE_WAIT_TIMEOUT,	/* no view of the service arrived in time */
	RELAY_CLOSE_LOCAL_ERROR,	/* out of fds or memory on our side */
	RELAY_CLOSE_SHUTDOWN,		/* drain deadline or listener gone at exit */
	RELAY_CLOSE_REASONS
};

const char *relay_close_reason_name(enum relay_close_reason r);

/* Take over an accepted client socket for listener l. */
void relay_accept(struct worker *w, struct acceptor *l, int cfd);

/* A first view arrived for l: start every relay waiting on it. */
void relay_wake_waiting(struct acceptor *l);

/* Listener l goes away: its waiting relays stop pointing at it. */
void relay_detach_waiting(struct acceptor *l);

/* Close every relay of w now (drain deadline). */
void relay_close_all(struct worker *w);

/* Free the relays closed during the last loop turn (w->dead). */
void relay_reap(struct worker *w);

#endif
