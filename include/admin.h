/*
 * admin — the HTTP admin API on the control thread:
 *   GET /healthz   200 "ok" (503 "draining" while draining)
 *   GET /services  JSON: services, their discovery state and instances
 *   GET /metrics   Prometheus text format, zklb_ prefix (see metrics.h); cached
 *                  for admin.metrics_cache
 *   GET /          a human status page
 * Bound to 127.0.0.1 by default; it reads control state and atomics only.
 * With admin.token_file, every path but /healthz needs "Authorization:
 * Bearer TOKEN". At most admin.max_connections are open (then accepting
 * pauses); a request head must be complete within admin.request_timeout;
 * every response closes its connection.
 */
#ifndef ZKLB_ADMIN_H
#define ZKLB_ADMIN_H

#include <stdint.h>

struct control;
struct admin;

/* How an admin connection ended, one counter each. */
enum admin_close {
	ADMIN_CLOSE_DONE = 0,		/* answered (404 and 501 included) */
	ADMIN_CLOSE_UNAUTHORIZED,	/* 401: no or a wrong token */
	ADMIN_CLOSE_BAD_REQUEST,	/* 400: a malformed head */
	ADMIN_CLOSE_TOO_LARGE,		/* 431: a head over ADMINREQ_HEAD_MAX */
	ADMIN_CLOSE_TIMEOUT,		/* no whole head within admin.request_timeout */
	ADMIN_CLOSE_CLIENT,		/* the client left, or did not read its response */
	ADMIN_CLOSE_COUNT,
};

/* "done", "unauthorized", "bad_request", "too_large", "timeout", "client_closed". */
const char *admin_close_name(enum admin_close r);

struct admin_stats {
	uint64_t closes[ADMIN_CLOSE_COUNT];	/* connections closed, by reason */
	uint64_t paused;			/* times accepting paused at the cap */
	uint64_t accept_errors;			/* accept() failures */
	uint64_t metrics_built;			/* /metrics bodies built (not served from cache) */
	uint32_t open;				/* connections open now */
};

/* a's counters. Control thread. */
void admin_stats(const struct admin *a, struct admin_stats *out);

/*
 * Listen on `listen` ("host:port", or "unix:/path": a socket file of mode
 * 0660, removed again by admin_free); NULL after logging when that fails.
 * Thread: the control thread (c->base).
 */
struct admin *admin_new(struct control *c, const char *listen);
void admin_free(struct admin *a);

#endif
