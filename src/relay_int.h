/*
 * relay_int — what relay.c and relay_kernel.c share: a relay and its two
 * halves, and the few functions one calls in the other. For these two files
 * only; everyone else uses relay.h.
 */
#ifndef ZKLB_RELAY_INT_H
#define ZKLB_RELAY_INT_H

#include "config.h"
#include "krelay.h"
#include "relay.h"
#include "util.h"

#include <event2/event_struct.h>
#include <stdbool.h>
#include <stdint.h>

#define RELAY_MAX_TRIED (CONFIG_MAX_RETRIES + 1)	/* every attempt is remembered */

struct backend;
struct backend_set;
struct framing;
struct tls_conn;

/* One half of the relay: one direction of the copy, with its own buffer, FIN and pipe. */
struct relay_half {
	char *buf;				/* borrowed from rw->spares; NULL when empty */
	uint32_t start;				/* first pending byte */
	uint32_t end;				/* one past the last pending byte */
	bool eof;				/* the reading side sent FIN */
	bool shut;				/* SHUT_WR sent to the writing side */
	bool no_splice;				/* splice refused (EINVAL): copy instead */
	int pipe[2];				/* splice mode: read/write ends, -1 when off */
	uint32_t piped;				/* bytes sitting in the pipe */
	uint32_t full_reads;			/* reads in a row that filled the buffer */
};

struct trunk_call;

struct relay {
	struct relay *next;			/* rw's list of live relays, then of dead ones */
	struct relay *prev;
	struct relay *wnext;			/* q's list of waiting relays */
	struct relay_worker *rw;		/* owner */
	struct relay_queue *q;			/* while WAITING only; NULL once detached */
	struct backend_set *set;		/* ref */
	struct backend *be;			/* ref; the current or last target */
	enum relay_state state;
	int cfd;				/* client socket, owned */
	int ufd;				/* upstream socket, owned; -1 before connect */
	struct event cr;			/* client readable */
	struct event cw;			/* client writable */
	struct event ur;			/* upstream readable */
	struct event uw;			/* upstream writable (and connect completion) */
	struct event timer;
	struct relay_half c2u;			/* client -> upstream */
	struct relay_half u2c;			/* upstream -> client */
	uint32_t cap;				/* max_buffer of the service */
	uint32_t attempts;			/* connects started */
	struct backend *tried[RELAY_MAX_TRIED];	/* not refs: identity only */
	bool first_byte;			/* the backend sent something */
	bool fin_deferred;			/* client FIN held back: upstream may be pooled */
	bool reused;				/* the upstream came from the idle pool */
	bool over_budget;			/* a buffer was refused: max_buffer_memory spent */
	struct framing *fr;			/* owned; pool.reuse tracker, NULL when off */
	struct tls_conn *tls;			/* owned; upstream TLS, NULL for plain TCP */
	struct trunk_call *call;		/* owned ref; a trunk stream's resets, else NULL */
	bool reset;				/* close both sides with a reset (error close) */
	uint64_t last_active_ms;
	/* For the access log (log.access) only: */
	uint64_t accepted_ms;			/* monotonic */
	uint64_t established_ms;		/* monotonic; 0 before a backend answered the connect */
	uint64_t bytes_in;			/* backend -> client */
	uint64_t bytes_out;			/* client -> backend */
	bool backend_fin_first;			/* the backend ended its side before the client */
	struct net_addr peer;			/* the client, when the access log is on; len 0: unknown */
	/* relay: kernel */
	bool kwant;				/* to be paired once it has shown it stays (kreads) */
	uint32_t kreads;			/* reads from the upstream so far, while kwant */
	bool kernel;				/* the kernel relays the bytes now */
	bool kpaired;				/* kp is in the maps (until close, spilled or not) */
	bool kpending;				/* a FIN or a spill waits for bytes to drain */
	bool kparked;				/* spilled: the kernel finishes sending, relays no more */
	uint8_t kresume;			/* spilled: 1, 2 sweeps to go before kadd's events go on */
	uint8_t kresumed;			/* parked: directions (1 << krelay_dir) copied in user space */
	uint8_t kadd;				/* parked: directions whose read event goes on at kresume */
	struct krelay_pair kp;
	struct event kc;			/* kernel: the client's FIN, reset, error */
	struct event ku;			/* kernel: the upstream's */
};

/* relay_choose.c */
/*
 * The next backend for r: never one already tried nor one at its
 * max_connections_per_instance (*full counts those); NULL when none is left.
 */
struct backend *relay_choose(struct relay *r, uint64_t now, size_t *full);
/* The trunk port be is reached through for r, or 0: a TCP connection of its own. */
uint16_t relay_trunk_port(const struct relay *r, const struct backend *be);

/* relay_kernel.c (below relay.c: it closes a relay through rw->kclose, relay_close) */
/* relay: kernel|auto applies to r (and nothing the kernel cannot carry)? */
bool relay_kernel_wanted(const struct relay *r);
/* Pair r now: false = relay it in user space; true = the kernel has it (or r is closed). */
bool relay_kernel_start(struct relay *r);
/*
 * relay: auto, after an upstream read (counted): has r shown it stays, and
 * is nothing of it buffered or queued? Then the caller pairs it now.
 */
bool relay_kernel_due(struct relay *r);
/* Add what the kernel relayed since the last look to r's and its backend's counters. */
void relay_kernel_count(struct relay *r);
/* r closes: last counts, then out of the maps. */
void relay_kernel_end(struct relay *r);
void relay_kernel_worker_init(struct relay_worker *rw, relay_close_fn *close);
void relay_kernel_worker_free(struct relay_worker *rw);

#endif
