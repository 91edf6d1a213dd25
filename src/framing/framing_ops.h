/*
 * framing_ops — the hooks one protocol plugs into framing.c (internal to the
 * framing module; not installed, not used elsewhere).
 *
 * Each protocol keeps its whole per-connection state in one fixed-size block
 * that framing.c allocates behind struct framing, zeroed before init(). The
 * hooks never allocate. A feed hook returns FRAMING_OK while everything is
 * understood and otherwise the poison verdict; after a poison, framing.c
 * never calls the feed hooks again (until a reset), so they need not be
 * idempotent on garbage.
 */
#ifndef ZKLB_FRAMING_OPS_H
#define ZKLB_FRAMING_OPS_H

#include <stddef.h>

#include "framing.h"

struct framing_ops {
	const char *name;		/* protocol, as spelled in pool.reuse */
	size_t state_size;		/* bytes of per-connection state */
	/* Prepare zeroed state for a fresh connection or a new client. */
	void (*init)(void *state);
	/* Client -> backend bytes; FRAMING_OK or the poison verdict. */
	enum framing_verdict (*feed_request)(void *state, const char *buf, size_t len);
	/* Backend -> client bytes; FRAMING_OK or the poison verdict. */
	enum framing_verdict (*feed_response)(void *state, const char *buf, size_t len);
	/* Unpoisoned state: FRAMING_OK at a boundary, else FRAMING_PARTIAL. */
	enum framing_verdict (*at_boundary)(const void *state);
};

extern const struct framing_ops framing_http1_ops;
extern const struct framing_ops framing_redis_ops;
extern const struct framing_ops framing_memcached_ops;

#endif
