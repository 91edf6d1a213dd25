/*
 * admin_stats — the admin API's counters. They live in struct control
 * (written by admin.c on the control thread), so that /metrics reads them
 * without reaching back into the admin module that serves it.
 */
#ifndef ZKLB_ADMIN_STATS_H
#define ZKLB_ADMIN_STATS_H

#include <stdint.h>

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

/* "done", "unauthorized", "bad_request", "too_large", "timeout", "client_closed"; "?" else. */
static inline const char *admin_close_name(enum admin_close r)
{
	static const char *const names[ADMIN_CLOSE_COUNT] = {
		[ADMIN_CLOSE_DONE] = "done",
		[ADMIN_CLOSE_UNAUTHORIZED] = "unauthorized",
		[ADMIN_CLOSE_BAD_REQUEST] = "bad_request",
		[ADMIN_CLOSE_TOO_LARGE] = "too_large",
		[ADMIN_CLOSE_TIMEOUT] = "timeout",
		[ADMIN_CLOSE_CLIENT] = "client_closed",
	};
	return (unsigned)r < ADMIN_CLOSE_COUNT ? names[r] : "?";
}

struct admin_stats {
	uint64_t closes[ADMIN_CLOSE_COUNT];	/* connections closed, by reason */
	uint64_t paused;			/* times accepting paused at the cap */
	uint64_t accept_errors;			/* accept() failures */
	uint64_t metrics_built;			/* /metrics bodies built (not served from cache) */
	uint64_t open;				/* connections open now */
};

#endif
