/*
 * health — the per-instance health state machine: passive ejection (Envoy's
 * outlier detection), active check rise/fall (HAProxy), panic mode and slow
 * start. Pure code: no sockets, no clock of its own (every call takes `now`
 * in monotonic ms), no locks. The caller (service.c) serialises calls for one
 * service and publishes the result to workers.
 *
 * States:
 *   HEALTHY   routable.
 *   EJECTED   passive detection took it out until `ejected_until_ms`.
 *   CHECKING  not routable: the active check says down, or it returns from an
 *             ejection and must pass the check `rise` times first.
 *
 * Transitions (every one is reported by the call that makes it):
 *   HEALTHY  -> EJECTED   failures_to_eject consecutive passive failures, and
 *                         the caller's health_may_eject() allowed it.
 *   EJECTED  -> HEALTHY   health_tick() at/after ejected_until_ms, no active check.
 *   EJECTED  -> CHECKING  health_tick() at/after ejected_until_ms, active check.
 *   HEALTHY  -> CHECKING  the active check failed `fall` times in a row.
 *   CHECKING -> HEALTHY   the active check passed `rise` times in a row (or the
 *                         active check was removed by a reload: see health_tick).
 *
 * Backoff: the n-th ejection in a row lasts base × 2^(n−1), capped at
 * max_ejection. ejection_level counts "n" and decays by one for every decay_ms
 * the instance stays HEALTHY, so an instance that fails again soon after
 * returning is ejected for longer, and one that behaves is forgiven.
 *
 * Results that do not fit the state are ignored rather than stretched:
 *   - passive failures/successes while EJECTED or CHECKING change nothing (in
 *     panic mode traffic still reaches them; that neither extends an ejection
 *     nor shortens it — the timer and the active check are the authority);
 *   - active check results while EJECTED update the counters, but the `rise`
 *     passes needed to return are counted from the end of the ejection.
 * Decay is applied lazily at the start of every call, so the caller only needs
 * a timer for health_next_deadline().
 */
#ifndef ZKLB_HEALTH_H
#define ZKLB_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct health_conf;

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
	uint32_t failures_to_eject;	/* consecutive failures that eject; 0 = never eject */
	uint64_t base_ejection_ms;	/* first ejection; doubles per repeat */
	uint64_t max_ejection_ms;	/* cap on one ejection (even the first) */
	uint64_t decay_ms;		/* healthy this long forgives one past ejection */
	uint32_t max_ejected_percent;	/* 0..100, for health_may_eject() */
	uint32_t panic_threshold;	/* 0..100, for health_in_panic() */
	bool active_check;		/* an active check runs for this service */
	uint32_t rise;			/* active check passes to come up, >= 1 */
	uint32_t fall;			/* active check failures to go down, >= 1 */
};

struct health {
	enum health_state state;	/* changed only inside health.c (health_enter) */
	uint32_t consecutive_failures;	/* passive, HEALTHY only; reset by a success or a state change */
	uint32_t ejection_level;	/* drives the backoff: base * 2^(level-1); decays */
	uint32_t ejections_total;	/* ever, for metrics */
	uint64_t ejected_until_ms;	/* EJECTED: when it may return */
	uint64_t level_since_ms;	/* start of the current decay step (last ejection, return or step) */
	uint64_t routable_since_ms;	/* when it last became HEALTHY (init or return): slow start origin */
	uint32_t check_passes;		/* consecutive active-check passes */
	uint32_t check_fails;		/* consecutive active-check failures */
	uint64_t check_failures_total;	/* ever, for metrics */
};

/*
 * Derive the parameters from a service's health: section. decay_ms is not a
 * config key: it is max(max_ejection, 10 × base_ejection) (see health.c for why).
 * rise/fall of 0 are treated as 1.
 */
void health_params_from_conf(struct health_params *p, const struct health_conf *c);

/* A new instance starts HEALTHY (an active check may take it down later). */
void health_init(struct health *h, uint64_t now);

/*
 * Start CHECKING instead: nothing counts as up before the active check has
 * passed `rise` times (announce: a service is never registered unchecked).
 */
void health_init_checking(struct health *h, uint64_t now);

/*
 * A passive failure (connect refused/timeout, RST before the first byte).
 * may_eject: the caller's verdict of health_may_eject() for the service.
 * HEALTH_T_EJECT_SKIPPED is reported once, when the count first reaches the
 * threshold; the count keeps growing, so the first failure after room frees up
 * (may_eject true again) ejects at once.
 */
enum health_transition health_on_failure(struct health *h, const struct health_params *p,
					 uint64_t now, bool may_eject);

/* A passive success (first byte from the backend, or a clean end). */
enum health_transition health_on_success(struct health *h, const struct health_params *p,
					 uint64_t now);

/* One active check result. Ignored (HEALTH_T_NONE) when p->active_check is false. */
enum health_transition health_on_check(struct health *h, const struct health_params *p,
				       bool passed, uint64_t now);

/*
 * Time passes: ejection expiry and decay of ejection_level. An instance whose
 * ejection ends is considered back from ejected_until_ms (the moment workers
 * may route to it per health_eligible_after), however late the tick comes.
 * A CHECKING instance whose service no longer has an active check (reload)
 * comes back up (HEALTH_T_CHECK_UP), since nothing else would ever bring it back.
 */
enum health_transition health_tick(struct health *h, const struct health_params *p,
				   uint64_t now);

/*
 * When health_tick() next has something to do: ejected_until_ms while EJECTED,
 * 0 (now) for a CHECKING instance without an active check, else UINT64_MAX.
 * Decay needs no timer.
 */
uint64_t health_next_deadline(const struct health *h, const struct health_params *p);

bool health_routable(const struct health *h);

/*
 * The earliest time a worker may route to this instance without asking again:
 * 0 when routable now, ejected_until_ms when EJECTED without an active check
 * (it returns by itself), UINT64_MAX when it waits for the active check.
 */
uint64_t health_eligible_after(const struct health *h, const struct health_params *p);

/*
 * May one more of n_total be ejected when n_ejected already are? True iff
 * n_ejected + 1 <= floor(n_total × pct / 100): with 50%, 1 instance -> none,
 * 2 -> 1, 3 -> 1, 4 -> 2. 0% never ejects, 100% (or more) may eject all.
 */
bool health_may_eject(size_t n_ejected, size_t n_total, uint32_t max_ejected_percent);

/*
 * Panic: the healthy share is strictly below threshold percent (and there is
 * anything at all): n_healthy × 100 < threshold × n_total. 0 never panics.
 */
bool health_in_panic(size_t n_healthy, size_t n_total, uint32_t panic_threshold);

/*
 * Slow start: the weight to balance with, ramping linearly from weight/10
 * (at least 1) to weight over window_ms after since_ms (use routable_since_ms).
 * window_ms 0 = off; weight 0 stays 0; now before since_ms gives the floor.
 */
uint32_t health_slow_start_weight(uint32_t weight, uint64_t since_ms, uint64_t now,
				  uint64_t window_ms);

const char *health_state_name(enum health_state s);
const char *health_transition_name(enum health_transition t);

#endif
