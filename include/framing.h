/*
 * framing — message boundaries on a relayed upstream connection, so that a
 * connection can go back to the idle pool when its client leaves
 * (`pool.reuse: http1 | redis | memcached`).
 *
 * zklb relays bytes verbatim. A framing tracker watches both directions of
 * one upstream connection (it never changes or holds the bytes) and answers
 * one question when the client closes: is this connection exactly at a
 * message boundary, so that no byte of this client's exchange can still
 * arrive on it? That means: every request sent was fully answered, no message
 * is half sent in either direction, the backend did not announce a close, and
 * no command left per-connection state behind (SELECT, AUTH, MULTI, ...).
 *
 * The tracker is conservative by construction. Anything it does not model —
 * a parse error, an unknown command, an unsolicited reply, a protocol switch —
 * poisons it for good: the connection is then simply closed instead of pooled.
 * It never reports an error to the client and never affects the relay.
 *
 * Cost: feeding is O(bytes) and allocates nothing; each tracker holds a few
 * hundred bytes whatever the message sizes (bodies and values are counted,
 * never buffered). Once poisoned, feeding returns at once.
 *
 * Threading: a tracker belongs to the worker that owns its connection; no
 * locks, no clock, no sockets.
 */
#ifndef ZKLB_FRAMING_H
#define ZKLB_FRAMING_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/*
 * Why a connection is (not) reusable. A small closed set, so that the pool can
 * keep one discard counter per value.
 */
enum framing_verdict {
	FRAMING_OK = 0,		/* at a boundary: the connection may be pooled */
	FRAMING_PARTIAL,	/* a message is half sent, or a reply is still owed */
	FRAMING_CLOSE,		/* a side announced the end (Connection: close, HTTP/1.0, QUIT) */
	FRAMING_UPGRADE,	/* protocol switch (Upgrade, CONNECT, 101 Switching Protocols) */
	FRAMING_PINNED,		/* a command left per-connection state (SELECT, AUTH, MULTI, ...) */
	FRAMING_UNFRAMED,	/* a response that ends only when the connection closes */
	FRAMING_UNSOLICITED,	/* the backend sent a reply nobody asked for */
	FRAMING_UNKNOWN,	/* a command the tracker does not model */
	FRAMING_ERROR,		/* bytes that do not parse, or an error reply with unclear aftermath */
	FRAMING_OVERFLOW,	/* more pipelined requests than the tracker follows */
	FRAMING_AMBIGUOUS,	/* a message two parsers could frame differently (smuggling shapes) */
	FRAMING_VERDICT_COUNT,	/* number of values, for counter arrays */
};

struct framing;

/*
 * A tracker for one upstream connection speaking `kind`; NULL for REUSE_NONE
 * (every function below accepts NULL and then reports "not reusable").
 * NULL too when memory is short (the connection is then never pooled). Owned by the
 * caller; release with framing_free().
 */
struct framing *framing_new(enum reuse_kind kind);

/* Release f. NULL is fine. */
void framing_free(struct framing *f);

/*
 * Start over for a new client on the same upstream connection (taken from
 * the pool, hence at a boundary): clears all state, including a poison.
 */
void framing_reset(struct framing *f);

/*
 * Account for `len` bytes relayed client -> backend. Feed them when they are
 * read from the client (no later than they are written to the backend), so
 * that a reply is never seen before its request.
 */
void framing_feed_request(struct framing *f, const char *buf, size_t len);

/* Account for `len` bytes relayed backend -> client. */
void framing_feed_response(struct framing *f, const char *buf, size_t len);

/*
 * FRAMING_OK when the connection is at a boundary and may be pooled;
 * otherwise why not. A poison is final (until framing_reset); PARTIAL may
 * turn back into OK as more bytes are fed. NULL gives FRAMING_UNKNOWN.
 */
enum framing_verdict framing_verdict(const struct framing *f);

/* framing_verdict(f) == FRAMING_OK. */
bool framing_reusable(const struct framing *f);

/*
 * The verdict as a short static label for logs and metrics: "ok", "partial",
 * "close", "upgrade", "pinned", "unframed", "unsolicited", "unknown",
 * "error", "overflow", "ambiguous". Never NULL.
 */
const char *framing_reason(const struct framing *f);

/* The label of a verdict, as framing_reason(); "invalid" out of range. */
const char *framing_verdict_name(enum framing_verdict v);

#endif
