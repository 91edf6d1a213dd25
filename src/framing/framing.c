/*
 * framing — see framing.h. This file only dispatches to the protocol behind
 * the connection (framing_http1.c, framing_redis.c, framing_memcached.c, each
 * one const struct framing_ops) and keeps the one rule they share: the first
 * poison sticks, and nothing is parsed after it.
 */
#include "framing.h"
#include "framing_ops.h"
#include "util.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Every protocol, indexed by enum reuse_kind; REUSE_NONE has none. */
static const struct framing_ops *const framing_kinds[] = {
	[REUSE_NONE] = NULL,
	[REUSE_HTTP1] = &framing_http1_ops,
	[REUSE_REDIS] = &framing_redis_ops,
	[REUSE_MEMCACHED] = &framing_memcached_ops,
};

static const char *const framing_verdict_names[FRAMING_VERDICT_COUNT] = {
	[FRAMING_OK] = "ok",
	[FRAMING_PARTIAL] = "partial",
	[FRAMING_CLOSE] = "close",
	[FRAMING_UPGRADE] = "upgrade",
	[FRAMING_PINNED] = "pinned",
	[FRAMING_UNFRAMED] = "unframed",
	[FRAMING_UNSOLICITED] = "unsolicited",
	[FRAMING_UNKNOWN] = "unknown",
	[FRAMING_ERROR] = "error",
	[FRAMING_OVERFLOW] = "overflow",
	[FRAMING_AMBIGUOUS] = "ambiguous",
};

struct framing {
	const struct framing_ops *ops;	/* ref: static table for the protocol */
	enum framing_verdict poison;	/* FRAMING_OK until something poisons it; then final */
	alignas(max_align_t) unsigned char state[];	/* ops->state_size bytes, the protocol's */
};

struct framing *framing_new(enum reuse_kind kind)
{
	if ((size_t)kind >= ARRAY_SIZE(framing_kinds) || !framing_kinds[kind])
		return NULL;
	const struct framing_ops *ops = framing_kinds[kind];
	/* NULL when memory is short: the connection is then relayed, never pooled. */
	struct framing *f = malloc(sizeof(*f) + ops->state_size);
	if (!f)
		return NULL;
	f->ops = ops;
	framing_reset(f);
	return f;
}

void framing_free(struct framing *f)
{
	free(f);
}

void framing_reset(struct framing *f)
{
	if (!f)
		return;
	f->poison = FRAMING_OK;
	memset(f->state, 0, f->ops->state_size);
	f->ops->init(f->state);
}

void framing_feed_request(struct framing *f, const char *buf, size_t len)
{
	if (!f || f->poison != FRAMING_OK || len == 0)
		return;
	f->poison = f->ops->feed_request(f->state, buf, len);
}

void framing_feed_response(struct framing *f, const char *buf, size_t len)
{
	if (!f || f->poison != FRAMING_OK || len == 0)
		return;
	f->poison = f->ops->feed_response(f->state, buf, len);
}

enum framing_verdict framing_verdict(const struct framing *f)
{
	if (!f)
		return FRAMING_UNKNOWN;
	if (f->poison != FRAMING_OK)
		return f->poison;
	return f->ops->at_boundary(f->state);
}

bool framing_reusable(const struct framing *f)
{
	return framing_verdict(f) == FRAMING_OK;
}

const char *framing_reason(const struct framing *f)
{
	return framing_verdict_name(framing_verdict(f));
}

const char *framing_verdict_name(enum framing_verdict v)
{
	if ((size_t)v >= ARRAY_SIZE(framing_verdict_names))
		return "invalid";
	return framing_verdict_names[v];
}
