/*
 * zkretry — see zkretry.h.
 */
#include "zkretry.h"

#include <event2/event.h>

#include "log.h"
#include "util.h"
#include "zk.h"

static void zkretry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct zkretry *r = arg;

	(void)fd;
	(void)what;
	r->fn(r->arg);
}

void zkretry_init(struct zkretry *r, struct event_base *base, struct rng *rng,
		  uint64_t base_ms, uint64_t cap_ms, void (*fn)(void *arg), void *arg)
{
	r->ev = evtimer_new(base, zkretry_cb, r);
	r->rng = rng;
	r->base_ms = base_ms;
	r->cap_ms = cap_ms;
	r->attempt = 0;
	r->fn = fn;
	r->arg = arg;
}

void zkretry_fini(struct zkretry *r)
{
	if (r->ev)
		event_free(r->ev);
	r->ev = NULL;
}

bool zkretry_arm(struct zkretry *r, uint64_t *delay_ms)
{
	struct timeval tv;
	uint64_t delay;

	if (evtimer_pending(r->ev, NULL))
		return false;
	/* attempt + 1: zk_backoff_ms's attempt 0 is "at once", and a failed read never is. */
	delay = zk_backoff_ms(r->attempt + 1, r->base_ms, r->cap_ms, rng_next(r->rng));
	if (r->attempt < UINT32_MAX)
		r->attempt++;
	tv = timeval_from_ms(delay);
	evtimer_add(r->ev, &tv);
	if (delay_ms)
		*delay_ms = delay;
	return true;
}

void zkretry_failed(struct zkretry *r, const char *label, const char *what, const char *path,
		    int rc)
{
	uint64_t delay = 0;

	zkretry_arm(r, &delay);
	log_warn("%s: %s %s failed: %s; retrying in %llums", label, what, path, zk_rc_name(rc),
		 (unsigned long long)delay);
}

void zkretry_cancel(struct zkretry *r)
{
	evtimer_del(r->ev);
}

void zkretry_succeeded(struct zkretry *r)
{
	r->attempt = 0;
}

bool zkretry_pending(const struct zkretry *r)
{
	return evtimer_pending(r->ev, NULL);
}
