/*
 * server — the benchmark backend side of zklb-bench (`zklb-bench serve`).
 *
 * Modes:
 *   echo       send back every byte received.
 *   fixed:M    after every req_size bytes received, send M bytes.
 *   sink       read and discard.
 *   source     send without end; source:N sends N bytes per connection, then
 *              closes (so a client can check the byte count exactly).
 * With close_after_reply (echo and fixed) the server closes the connection
 * itself once the first request's reply has been written: the server closes
 * first, as an HTTP server answering `Connection: close` does. On the
 * client's EOF the server finishes writing what it owes, then closes.
 *
 * Counters (accepted, open, bytes, requests...) are printed as one JSON line
 * on SIGUSR1 and at exit on stdout, and answered to every connection on the
 * optional status address, which then closes.
 *
 * One thread, one event base.
 */
#ifndef ZKLB_BENCH_SERVER_H
#define ZKLB_BENCH_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

enum server_mode {
	SERVER_ECHO = 0,
	SERVER_FIXED,
	SERVER_SINK,
	SERVER_SOURCE,
};

struct server_opts {
	struct net_addr listen;		/* where clients connect (port 0: any free port) */
	bool has_status;		/* status is set */
	struct net_addr status;		/* where the JSON status line is served */
	enum server_mode mode;		/* what to do with a connection */
	uint64_t reply_size;		/* fixed: bytes per reply */
	uint64_t source_size;		/* source: bytes per connection; 0 = no end */
	uint64_t req_size;		/* echo/fixed: bytes per request; 0 = echo counts no requests */
	bool close_after_reply;		/* echo/fixed: close after the first reply */
	int backlog;			/* listen(2) backlog */
};

void server_opts_default(struct server_opts *o);

/* "echo", "fixed:64", "sink", "source", "source:1m"; false when malformed. */
bool server_mode_parse(const char *s, struct server_opts *o);

/*
 * Listen and serve until SIGINT/SIGTERM. Prints one JSON line
 * {"listen":"ADDR","status":"ADDR"} on stdout once listening (with the real
 * ports when 0 was asked for). Returns 0, or -errno if it could not listen
 * (logged).
 */
int server_run(const struct server_opts *o);

#endif
