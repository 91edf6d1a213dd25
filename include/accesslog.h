/*
 * accesslog — one line per client connection at its end (log.access), in
 * text or JSON, written by a logger thread so a worker never waits on a
 * disk or a pipe.
 *
 * Each worker owns one bounded single-producer ring of fixed-size records;
 * the logger thread is the single consumer of every ring. A record that
 * finds its ring full is dropped and counted: under a stalled disk or a
 * reader that does not keep up, the proxy keeps relaying and the log says
 * how much it lost (zklb_access_log_dropped_total).
 *
 * Thread: accesslog_push() on the ring's worker only; accesslog_reopen() and
 * accesslog_stats() from any thread; the rest on the control thread.
 */
#ifndef ZKLB_ACCESSLOG_H
#define ZKLB_ACCESSLOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define ACCESSLOG_RING_SLOTS 1024	/* records per worker ring (a power of 2) */

struct accesslog;

/* One finished client connection. Strings are copied in, truncated to fit. */
struct accesslog_record {
	uint64_t end_wall_ms;			/* epoch ms at close */
	uint64_t connect_ms;			/* accept to established; 0 when never */
	uint64_t total_ms;			/* accept to close */
	uint64_t bytes_in;			/* backend -> client */
	uint64_t bytes_out;			/* client -> backend */
	uint32_t attempts;			/* connects started (1 + retries) */
	bool established;			/* a backend was reached */
	bool reused;				/* its upstream came from the idle pool */
	const char *end;			/* ref: a static reason name */
	char service[72];			/* service name */
	char client[72];			/* client address:port, or "unix" */
	char backend[272];			/* host:port of the last backend tried, or "" */
	char backend_id[128];			/* its instance id (from ZooKeeper: hostile) */
};

/* A worker's queue of records for the logger thread. */
struct accesslog_ring {
	struct accesslog_record *slots;		/* owned; ACCESSLOG_RING_SLOTS entries */
	_Atomic uint32_t head;			/* next slot to fill; the worker's */
	_Atomic uint32_t tail;			/* next slot to write; the logger's */
	_Atomic uint64_t dropped;		/* records that found the ring full */
};

struct accesslog_stats {
	uint64_t lines;				/* lines written */
	uint64_t dropped;			/* records lost to full rings */
	uint64_t write_errors;			/* lines lost to failed writes */
	uint64_t reopens;			/* SIGUSR1 reopens that worked */
};

/*
 * Open `target` ("stderr" or a file path, appended to, created 0640) and
 * prepare one ring per worker. Returns NULL with the reason in err (the
 * caller logs it). The logger thread starts with accesslog_start().
 */
struct accesslog *accesslog_new(const char *target, enum log_format format, unsigned n_rings,
				char *err, size_t errlen);
/* Start the logger thread; 0 or -errno. */
int accesslog_start(struct accesslog *al);
/* Worker i's ring (borrowed; lives until accesslog_free). */
struct accesslog_ring *accesslog_ring(struct accesslog *al, unsigned i);
/* Worker thread: queue a copy of rec; false (and counted) when the ring is full. */
bool accesslog_push(struct accesslog_ring *ring, const struct accesslog_record *rec);
/* Any thread (SIGUSR1): the logger reopens the file at its next turn. */
void accesslog_reopen(struct accesslog *al);
void accesslog_stats(const struct accesslog *al, struct accesslog_stats *out);
/*
 * Stop the logger after it wrote what the rings hold (a write that cannot
 * progress for 1 s gives up) and free everything. Every producer has
 * stopped. NULL is a no-op.
 */
void accesslog_free(struct accesslog *al);

/*
 * Pure: format rec as one line, newline included, into buf. Values are
 * escaped (control bytes, quotes, spaces in text; JSON string rules in
 * JSON). Returns the length, at most len - 1.
 */
size_t accesslog_format(const struct accesslog_record *rec, enum log_format format, char *buf,
			size_t len);

#endif
