/*
 * queue — the waiting line of clients beyond a max_connections (HAProxy's
 * maxconn + timeout queue), the pure part: a FIFO of accepted client
 * sockets with the time each was queued, bounded by a maximum length, and
 * the expiry decision. No sockets are read or closed here, no clock is
 * read: the caller passes `now` and closes what it pops.
 *
 * Order: first in, first out; a client popped to be served is always the
 * one that has waited longest. Expiry: the head expires when it has waited
 * timeout_ms or more; only the head is looked at, since with one timeout
 * for everybody the head expires first. (A timeout shortened by a reload
 * applies at once to everybody; clients queued by two workers within the
 * same millisecond may be stamped a millisecond out of order.)
 *
 * Thread: not safe by itself; service.h's wrappers hold the service's lock.
 */
#ifndef ZKLB_QUEUE_H
#define ZKLB_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

struct queue_entry {
	int fd;					/* the client's socket; never closed here */
	uint64_t since_ms;			/* monotonic: when it was queued */
};

struct queue {
	struct queue_entry *v;			/* owned ring of `cap` entries; NULL when never used */
	uint32_t cap;				/* entries allocated; grows by doubling */
	uint32_t head;				/* index of the oldest entry */
	uint32_t len;				/* entries queued */
};

#define QUEUE_NEVER UINT64_MAX		/* queue_next_expiry_ms(): nothing to expire */

/* An empty queue (zeroed memory is one too). */
void queue_init(struct queue *q);
/* Free the ring. The fds still queued are the caller's: pop them first. */
void queue_free(struct queue *q);

/*
 * Queue fd at now, if fewer than max are queued (the ring grows up to max,
 * so an idle queue costs nothing). false: full, or out of memory.
 */
bool queue_push(struct queue *q, uint32_t max, int fd, uint64_t now_ms);

/* Take the oldest entry into *out; false when empty. */
bool queue_pop(struct queue *q, struct queue_entry *out);

/* Take the oldest entry if it waited timeout_ms or more at now; false otherwise. */
bool queue_pop_expired(struct queue *q, uint64_t now_ms, uint64_t timeout_ms,
		       struct queue_entry *out);

/* ms from now until the oldest entry expires (0: already); QUEUE_NEVER when empty. */
uint64_t queue_next_expiry_ms(const struct queue *q, uint64_t now_ms, uint64_t timeout_ms);

#endif
