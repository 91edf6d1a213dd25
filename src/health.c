/*
 * health — the per-instance ejection / rise-fall state machine. See health.h
 * for the states and the contract. Everything here is pure: the caller passes
 * `now` and applies the result; one function (health_enter) performs every
 * state change and refuses illegal ones.
 */
#include "health.h"
#include "config.h"

/* 2^63 ms is far beyond any cap; keeps the shift defined. */
#define HEALTH_LEVEL_HARD_MAX 63u

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
	uint64_t r;
	return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

void health_params_from_conf(struct health_params *p, const struct health_conf *c)
{
	p->failures_to_eject = c->failures_to_eject;
	p->base_ejection_ms = c->base_ejection_ms;
	p->max_ejection_ms = c->max_ejection_ms;
	/*
	 * One level is forgiven only after the instance stayed up at least as long
	 * as the longest ejection it could be given: an instance that breaks every
	 * few minutes then keeps its long ejection instead of oscillating between
	 * short ones. The 10 × base floor matters when the cap is close to base
	 * (base 5s, max 10s): a level must not evaporate between two bursts of the
	 * same incident. With the defaults (5s, 5m) this is 5m, so climbing down
	 * from the cap (level 7) takes about half an hour of good behaviour.
	 */
	p->decay_ms = c->max_ejection_ms > sat_mul(c->base_ejection_ms, 10)
		? c->max_ejection_ms : sat_mul(c->base_ejection_ms, 10);
	p->max_ejected_percent = c->max_ejected_percent;
	p->panic_threshold = c->panic_threshold;
	p->active_check = c->check.type != CHECK_NONE;
	p->rise = c->check.rise ? c->check.rise : 1;
	p->fall = c->check.fall ? c->check.fall : 1;
}

void health_init(struct health *h, uint64_t now)
{
	*h = (struct health){
		.state = HEALTH_HEALTHY,
		.level_since_ms = now,
		.routable_since_ms = now,
	};
}

void health_init_checking(struct health *h, uint64_t now)
{
	*h = (struct health){
		.state = HEALTH_CHECKING,
		.level_since_ms = now,
	};
}

/*
 * The lowest level whose ejection already reaches the cap. Levels above it
 * would eject no longer but would take longer to decay, so the level stops
 * there.
 */
static uint32_t level_cap(const struct health_params *p)
{
	uint32_t level = 1;
	if (p->base_ejection_ms == 0)
		return 1;	/* every ejection is 0 ms long; nothing to back off */
	while (level < HEALTH_LEVEL_HARD_MAX &&
	       sat_mul(p->base_ejection_ms, UINT64_C(1) << (level - 1)) < p->max_ejection_ms)
		level++;
	return level;
}

/* base × 2^(level−1), capped at max. level >= 1. */
static uint64_t ejection_ms(const struct health_params *p, uint32_t level)
{
	uint32_t shift = level - 1 < HEALTH_LEVEL_HARD_MAX ? level - 1 : HEALTH_LEVEL_HARD_MAX;
	uint64_t d = sat_mul(p->base_ejection_ms, UINT64_C(1) << shift);
	return d < p->max_ejection_ms ? d : p->max_ejection_ms;
}

/* One decay step per whole decay_ms spent HEALTHY since level_since_ms. */
static void health_decay(struct health *h, const struct health_params *p, uint64_t now)
{
	if (h->state != HEALTH_HEALTHY || h->ejection_level == 0 || now <= h->level_since_ms)
		return;
	if (p->decay_ms == 0) {
		h->ejection_level = 0;
		h->level_since_ms = now;
		return;
	}
	uint64_t steps = (now - h->level_since_ms) / p->decay_ms;
	if (steps == 0)
		return;
	if (steps >= h->ejection_level) {
		h->ejection_level = 0;
		h->level_since_ms = now;
		return;
	}
	h->ejection_level -= (uint32_t)steps;
	/* keep the remainder so a late call loses no progress toward the next step */
	h->level_since_ms += steps * p->decay_ms;
}

/*
 * The one place that changes state. `at` is when the new state began (the
 * ejection end for a timed return, else now). Returns false, changing nothing,
 * for a transition the machine does not have.
 */
static bool health_enter(struct health *h, enum health_state to, uint64_t at)
{
	enum health_state from = h->state;
	bool legal;

	switch (to) {
	case HEALTH_EJECTED:
		legal = from == HEALTH_HEALTHY;
		break;
	case HEALTH_CHECKING:
		legal = from == HEALTH_HEALTHY || from == HEALTH_EJECTED;
		break;
	case HEALTH_HEALTHY:
		legal = from == HEALTH_EJECTED || from == HEALTH_CHECKING;
		break;
	default:
		legal = false;
		break;
	}
	if (!legal)
		return false;

	h->state = to;
	h->consecutive_failures = 0;
	switch (to) {
	case HEALTH_HEALTHY:
		h->routable_since_ms = at;
		h->level_since_ms = at;	/* the decay clock runs while healthy only */
		h->check_fails = 0;
		break;
	case HEALTH_CHECKING:
		h->check_passes = 0;	/* `rise` passes count from here */
		break;
	case HEALTH_EJECTED:
		break;
	}
	return true;
}

enum health_transition health_on_failure(struct health *h, const struct health_params *p,
					 uint64_t now, bool may_eject)
{
	health_decay(h, p, now);
	if (h->state != HEALTH_HEALTHY || p->failures_to_eject == 0)
		return HEALTH_T_NONE;

	if (h->consecutive_failures < UINT32_MAX)
		h->consecutive_failures++;
	if (h->consecutive_failures < p->failures_to_eject)
		return HEALTH_T_NONE;
	if (!may_eject)
		return h->consecutive_failures == p->failures_to_eject
			? HEALTH_T_EJECT_SKIPPED : HEALTH_T_NONE;

	uint32_t cap = level_cap(p);
	uint32_t level = h->ejection_level < cap ? h->ejection_level + 1 : cap;
	if (!health_enter(h, HEALTH_EJECTED, now))
		return HEALTH_T_NONE;
	h->ejection_level = level;
	h->level_since_ms = now;
	h->ejected_until_ms = sat_add(now, ejection_ms(p, level));
	if (h->ejections_total < UINT32_MAX)
		h->ejections_total++;
	return HEALTH_T_EJECTED;
}

enum health_transition health_on_success(struct health *h, const struct health_params *p,
					 uint64_t now)
{
	health_decay(h, p, now);
	if (h->state == HEALTH_HEALTHY)
		h->consecutive_failures = 0;
	return HEALTH_T_NONE;
}

enum health_transition health_on_check(struct health *h, const struct health_params *p,
				       bool passed, uint64_t now)
{
	if (!p->active_check)
		return HEALTH_T_NONE;
	health_decay(h, p, now);

	if (passed) {
		h->check_fails = 0;
		if (h->check_passes < UINT32_MAX)
			h->check_passes++;
	} else {
		h->check_passes = 0;
		if (h->check_fails < UINT32_MAX)
			h->check_fails++;
		h->check_failures_total++;
	}

	switch (h->state) {
	case HEALTH_HEALTHY:
		if (!passed && h->check_fails >= p->fall &&
		    health_enter(h, HEALTH_CHECKING, now))
			return HEALTH_T_CHECK_DOWN;
		break;
	case HEALTH_CHECKING:
		if (passed && h->check_passes >= p->rise &&
		    health_enter(h, HEALTH_HEALTHY, now))
			return HEALTH_T_CHECK_UP;
		break;
	case HEALTH_EJECTED:
		/* the timer decides; passes are counted again from the expiry */
		break;
	}
	return HEALTH_T_NONE;
}

enum health_transition health_tick(struct health *h, const struct health_params *p,
				   uint64_t now)
{
	enum health_transition t = HEALTH_T_NONE;

	if (h->state == HEALTH_EJECTED && now >= h->ejected_until_ms) {
		if (p->active_check) {
			if (health_enter(h, HEALTH_CHECKING, h->ejected_until_ms))
				t = HEALTH_T_AWAIT_CHECK;
		} else if (health_enter(h, HEALTH_HEALTHY, h->ejected_until_ms)) {
			t = HEALTH_T_RETURNED;
		}
	} else if (h->state == HEALTH_CHECKING && !p->active_check) {
		if (health_enter(h, HEALTH_HEALTHY, now))
			t = HEALTH_T_CHECK_UP;
	}
	health_decay(h, p, now);
	return t;
}

uint64_t health_next_deadline(const struct health *h, const struct health_params *p)
{
	switch (h->state) {
	case HEALTH_EJECTED:
		return h->ejected_until_ms;
	case HEALTH_CHECKING:
		return p->active_check ? UINT64_MAX : 0;
	case HEALTH_HEALTHY:
		break;
	}
	return UINT64_MAX;
}

bool health_routable(const struct health *h)
{
	return h->state == HEALTH_HEALTHY;
}

uint64_t health_eligible_after(const struct health *h, const struct health_params *p)
{
	switch (h->state) {
	case HEALTH_HEALTHY:
		return 0;
	case HEALTH_EJECTED:
		return p->active_check ? UINT64_MAX : h->ejected_until_ms;
	case HEALTH_CHECKING:
		break;
	}
	return UINT64_MAX;
}

/* floor(n × pct / 100) without overflowing for any n. */
static size_t percent_of(size_t n, uint32_t pct)
{
	if (pct > 100)
		pct = 100;
	return n / 100 * pct + n % 100 * pct / 100;
}

bool health_may_eject(size_t n_ejected, size_t n_total, uint32_t max_ejected_percent)
{
	if (n_ejected >= n_total)
		return false;
	return n_ejected < percent_of(n_total, max_ejected_percent);
}

bool health_in_panic(size_t n_healthy, size_t n_total, uint32_t panic_threshold)
{
	if (n_total == 0 || panic_threshold == 0)
		return false;
	if (panic_threshold > 100)
		panic_threshold = 100;
	if (n_healthy >= n_total)
		return false;
	/* n_healthy × 100 < threshold × n_total, in 128 bits: no overflow for any size_t */
	return (unsigned __int128)n_healthy * 100 < (unsigned __int128)panic_threshold * n_total;
}

uint32_t health_slow_start_weight(uint32_t weight, uint64_t since_ms, uint64_t now,
				  uint64_t window_ms)
{
	if (window_ms == 0 || weight == 0)
		return weight;
	uint32_t floor_w = weight / 10 ? weight / 10 : 1;
	if (now <= since_ms)
		return floor_w;
	uint64_t elapsed = now - since_ms;
	if (elapsed >= window_ms)
		return weight;
	/* (weight − floor) × elapsed can exceed 64 bits for long windows */
	unsigned __int128 ramp = (unsigned __int128)(weight - floor_w) * elapsed / window_ms;
	return floor_w + (uint32_t)ramp;
}

const char *health_state_name(enum health_state s)
{
	switch (s) {
	case HEALTH_HEALTHY:
		return "healthy";
	case HEALTH_EJECTED:
		return "ejected";
	case HEALTH_CHECKING:
		return "checking";
	}
	return "?";
}

const char *health_transition_name(enum health_transition t)
{
	switch (t) {
	case HEALTH_T_NONE:
		return "none";
	case HEALTH_T_EJECTED:
		return "ejected";
	case HEALTH_T_EJECT_SKIPPED:
		return "eject_skipped";
	case HEALTH_T_RETURNED:
		return "returned";
	case HEALTH_T_AWAIT_CHECK:
		return "await_check";
	case HEALTH_T_CHECK_DOWN:
		return "check_down";
	case HEALTH_T_CHECK_UP:
		return "check_up";
	}
	return "?";
}
