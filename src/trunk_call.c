/*
 * trunk_call — see trunk_call.h.
 */
#include "trunk_call.h"
#include "util.h"

#include <stdatomic.h>
#include <stdlib.h>

struct trunk_call {
	_Atomic int refs;			/* 2 at birth: the relay and the trunk thread */
	_Atomic int remote;			/* enum trunk_call_end; written by the trunk thread */
	_Atomic bool local_reset;		/* written by the relay */
};

struct trunk_call *trunk_call_new(void)
{
	struct trunk_call *call = xcalloc(1, sizeof(*call));
	atomic_init(&call->refs, 2);
	atomic_init(&call->remote, TRUNK_CALL_CLEAN);
	atomic_init(&call->local_reset, false);
	return call;
}

void trunk_call_put(struct trunk_call *call)
{
	/* acq_rel: the last holder sees every store the other made before letting go. */
	if (call && atomic_fetch_sub_explicit(&call->refs, 1, memory_order_acq_rel) == 1)
		free(call);
}

void trunk_call_mark_remote(struct trunk_call *call, enum trunk_call_end end)
{
	int clean = TRUNK_CALL_CLEAN;
	/* One writer; the compare keeps the first reason (a reset before the trunk died). */
	atomic_compare_exchange_strong_explicit(&call->remote, &clean, (int)end,
						memory_order_release, memory_order_relaxed);
}

enum trunk_call_end trunk_call_remote(const struct trunk_call *call)
{
	return (enum trunk_call_end)atomic_load_explicit(&call->remote, memory_order_acquire);
}

void trunk_call_mark_local_reset(struct trunk_call *call)
{
	atomic_store_explicit(&call->local_reset, true, memory_order_release);
}

bool trunk_call_local_reset(const struct trunk_call *call)
{
	return atomic_load_explicit(&call->local_reset, memory_order_acquire);
}

const char *trunk_call_end_name(enum trunk_call_end end)
{
	switch (end) {
	case TRUNK_CALL_CLEAN:
		return "clean";
	case TRUNK_CALL_RESET:
		return "reset";
	case TRUNK_CALL_LOST:
		return "trunk lost";
	}
	return "?";
}
