/*
 * health — the per-instance health state machine: passive ejection (Envoy's
 * outlier detection), active check rise/fall (HAProxy), panic mode and slow
 * start. Pure code: no sockets, no clock of its own (every call takes `now`
 * in monotonic ms), no locks. The caller (backend.c) serialises calls for one
 * service and publishes the result to workers.
 *
 * States:
 *   HEALTHY   routable.
 *   EJECTED   passive detection took it out until `ejected_until_ms`.
 *   CHECKING  not routable: the active check says down, or it returns from an
 *             ejection and must pass the check `rise` times first.
 */
#ifndef ZKLB_HEALTH_H
#define ZKLB_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum health_state {
	HEALTH_HEALTHY = 0,
	HEALTH_EJECTED,
	HEALTH_CHECKING,
};

/* What a call changed; the caller logs and counts anything but HEALTH_T_NONE. */
enum health_transition {
	HEALTH_T_NONE = 0,
	HEALTH_T_EJECTED,		/* HEALTHY -> EJECTED (passive) */
	HEALTH_T_EJECT_SKIPPED,		/* would eject, but max_ejected_percent forbids it */
	HEALTH_T_RETURNED,		/* EJECTED -> HEALTHY (time up, no active check) */
	HEALTH_T_AWAIT_CHECK,		/* EJECTED -> CHECKING (time up, needs `rise` passes) */
	HEALTH_T_CHECK_DOWN,		/* HEALTHY -> CHECKING (active check failed `fall` times) */
	HEALTH_T_CHECK_UP,		/* CHECKING -> HEALTHY (active check passed `rise` times) */
};

struct health_params {
	uint32_t failures_to_eject;	/* consecutive failures that eject */
	uint64_t base_ejection_ms;	/* first ejection; doubles per repeat */
	uint64_t max_ejection_ms;	/* cap on one ejection */
	uint64_t decay_ms;		/* healthy this long forgives one past ejection */
	bool active_check;		/* an active check runs for this service */
	uint32_t rise;			/* active check passes to come up */
	uint32_t fall;			/* active check failures to go down */
};

struct health {
	enum health_state state;
	uint32_t consecutive_failures;	/* passive, reset by a success */
	uint32_t ejection_level;	/* drives the backoff: base * 2^(level-1); decays */
	uint32_t ejections_total;	/* ever, for metrics */
	uint64_t ejected_until_ms;	/* EJECTED: when it may return */
	uint64_t level_since_ms;	/* when ejection_level last changed or the last return */
	uint32_t check_passes;		/* consecutive active-check passes */
	uint32_t check_fails;		/* consecutive active-check failures */
	uint64_t check_failures_total;	/* ever, for metrics */
};

void health_params_from_conf(struct health_params *p, const struct health_conf *c);

/* A new instance starts HEALTHY (an active check may take it down later). */
void health_init(struct health *h, uint64_t now);

/*
 * A passive failure (connect refused/timeout, RST before the first byte).
 * may_eject: the caller's verdict of health_may_eject() for the service.
 */
enum health_transition health_on_failure(struct health *h, const struct health_params *p,
					 uint64_t now, bool may_eject);

/* A passive success (first byte from the backend, or a clean end). */
enum health_transition health_on_success(struct health *h, const struct health_params *p,
					 uint64_t now);

/* One active check result. */
enum health_transition health_on_check(struct health *h, const struct health_params *p,
				       bool passed, uint64_t now);

/* Time passes: ejection expiry and decay of ejection_level. */
enum health_transition health_tick(struct health *h, const struct health_params *p,
				   uint64_t now);

bool health_routable(const struct health *h);

/*
 * The earliest time a worker may route to this instance without asking again:
 * 0 when routable now, ejected_until_ms when EJECTED without an active check
 * (it returns by itself), UINT64_MAX when it waits for the active check.
 */
uint64_t health_eligible_after(const struct health *h, const struct health_params *p);

/* May one more of n_total be ejected when n_ejected already are? */
bool health_may_eject(size_t n_ejected, size_t n_total, uint32_t max_ejected_percent);

/* Panic: the healthy share is below threshold percent (and there is anything at all). */
bool health_in_panic(size_t n_healthy, size_t n_total, uint32_t panic_threshold);

/*
 * Slow start: the weight to balance with, ramping linearly from weight/10
 * (at least 1) to weight over window_ms after since_ms. window_ms 0 = off.
 */
uint32_t health_slow_start_weight(uint32_t weight, uint64_t since_ms, uint64_t now,
				  uint64_t window_ms);

const char *health_state_name(enum health_state s);
const char *health_transition_name(enum health_transition t);

#endif
