/*
 * zkretry — the one retry-after-error timer of the ZooKeeper layer: what
 * nodewatch, zkset and announce do after a request failed for a reason other
 * than the connection (no permission, a server error...).
 *
 * Connection trouble is not retried on a timer: the session's RESUMED or
 * NEW event is the moment to read again (zk_rc_is_connection). Any other
 * error arms the timer for zk_backoff_ms(attempt + 1, base, cap, jitter):
 * the first retry after `base`, doubling to `cap`, up to a quarter less at
 * random so that a fleet does not retry in step. A success resets the count.
 *
 * Thread: the control thread (the base given to zkretry_init).
 */
#ifndef ZKLB_ZKRETRY_H
#define ZKLB_ZKRETRY_H

#include <stdbool.h>
#include <stdint.h>

struct event;
struct event_base;
struct rng;

struct zkretry {
	struct event *ev;		/* owned; fires fn(arg) */
	struct rng *rng;		/* ref: jitter */
	uint64_t base_ms;		/* first delay */
	uint64_t cap_ms;		/* longest delay */
	uint32_t attempt;		/* failures since the last success */
	void (*fn)(void *arg);		/* the retry; the timer is no longer pending when it runs */
	void *arg;			/* fn's */
};

/* rng must outlive r. Nothing is armed. */
void zkretry_init(struct zkretry *r, struct event_base *base, struct rng *rng,
		  uint64_t base_ms, uint64_t cap_ms, void (*fn)(void *arg), void *arg);

/* Disarm and release. */
void zkretry_fini(struct zkretry *r);

/*
 * One more failure: arm the timer for the next attempt and count it. false
 * (nothing changes) when a retry is already pending. *delay_ms (may be
 * NULL) gets the delay, for the caller's log line.
 */
bool zkretry_arm(struct zkretry *r, uint64_t *delay_ms);

/*
 * The usual failure: zkretry_arm, then one warning
 * "LABEL: WHAT PATH failed: RC; retrying in Nms" (e.g. "get /x", "create /y").
 */
void zkretry_failed(struct zkretry *r, const char *label, const char *what, const char *path,
		    int rc);

/* Disarm; the failure count stays. */
void zkretry_cancel(struct zkretry *r);

/* A request succeeded: the next failure starts again from base. */
void zkretry_succeeded(struct zkretry *r);

bool zkretry_pending(const struct zkretry *r);

#endif
