/*
 * client — the load generator side of zklb-bench.
 *
 * Modes (one connection "slot" runs one request at a time):
 *   rr      persistent connections; send req_size bytes, wait for exactly
 *           reply_size bytes back, repeat.
 *   conn    one new connection per request: connect, send req_size bytes,
 *           read reply_size bytes, then close (client first), or wait for the
 *           server's EOF before closing (close_by_server).
 *   stream  bulk one way: "up" sends to a sink, "down" reads from a source;
 *           bounded by the duration and an optional total byte count.
 *   http    HTTP/1.1 GET, keep-alive or Connection: close; a reply is read by
 *           its Content-Length. http_once: one keep-alive GET per connection,
 *           then the client closes (what lets a proxy reuse its upstream).
 *   idle    open `connections` connections, do one rr exchange on each (so a
 *           proxy has connected upstream), print "ready N" on stdout, then
 *           hold them idle until the duration ends or SIGINT/SIGTERM.
 *
 * Every run is bounded by duration_us; requests (if non-zero) bounds it in
 * count too. With rate > 0 the load is open-loop: request k of a slot is
 * due at start + k * connections / rate, and its latency is measured from
 * that due time, so a stall is charged to every request it delayed (no
 * coordinated omission).
 *
 * Threads: each has its own event base, slots, counters and histogram; the
 * results are merged after join.
 */
#ifndef ZKLB_BENCH_CLIENT_H
#define ZKLB_BENCH_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "histogram.h"
#include "util.h"

enum client_mode {
	CLIENT_RR = 0,
	CLIENT_CONN,
	CLIENT_STREAM,
	CLIENT_HTTP,
	CLIENT_IDLE,
};

struct client_opts {
	enum client_mode mode;		/* what each slot does */
	struct net_addr target;		/* where to connect */
	char target_text[300];		/* target as given, for the report and Host: */
	uint32_t connections;		/* slots in total, over all threads */
	uint32_t threads;		/* event loops, each on its own thread */
	uint64_t duration_us;		/* hard bound on the run, > 0 */
	uint64_t requests;		/* 0 = no count bound */
	uint64_t bytes;			/* stream: total byte bound, 0 = none */
	uint64_t req_size;		/* rr/conn/idle: bytes per request */
	uint64_t reply_size;		/* rr/conn/idle: bytes per reply */
	double rate;			/* requests per second over all slots; 0 = closed loop */
	bool close_by_server;		/* conn: wait for the server's EOF before closing */
	bool stream_down;		/* stream: read from a source instead of sending */
	bool http_close;		/* http: send Connection: close */
	bool http_once;			/* http: one keep-alive request per connection, client closes */
	char http_path[1024];		/* http: request target */
	char http_host[300];		/* http: Host header value */
	bool progress;			/* print a progress line on stderr each second */
};

struct client_result {
	uint64_t requests;		/* completed requests (stream: finished connections) */
	uint64_t errors;		/* failed requests, protocol violations, resets, connect failures */
	uint64_t connect_failures;	/* connects that failed (also counted in errors) */
	uint64_t connections_opened;	/* connects that succeeded */
	uint64_t bytes_sent;		/* accepted by send(2) */
	uint64_t bytes_received;	/* returned by recv(2) */
	uint64_t http_non2xx;		/* http: complete replies whose status was not 2xx */
	uint64_t idle_ready;		/* idle: connections held open at the end */
	uint64_t elapsed_us;		/* from start until the last thread stopped */
	struct histogram *latency;	/* owned; request latency in µs */
};

/* Fill o with the defaults (rr, 50 connections, 1 thread, 10 s, 64/64 bytes). */
void client_opts_default(struct client_opts *o);

/*
 * Run the load as described by o (already validated) and fill out. Blocks
 * until the run ends; SIGINT/SIGTERM end it early (the partial result is still
 * filled). Returns 0, or -errno when the run could not start at all (a
 * message has been logged). Free out->latency with client_result_free().
 */
int client_run(const struct client_opts *o, struct client_result *out);

void client_result_free(struct client_result *r);

/* "rr", "conn", ... ; false when unknown. */
bool client_mode_parse(const char *s, enum client_mode *out);
const char *client_mode_name(enum client_mode m);

#endif
