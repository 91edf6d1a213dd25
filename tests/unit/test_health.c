/*
 * Unit tests for health: every transition of the state machine, the backoff
 * (doubling, cap, level cap), decay, rise/fall hysteresis, eligibility, and
 * the service-wide helpers (max_ejected_percent, panic, slow start).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "health.h"
#include "config.h"

#define BASE 1000u
#define MAXE 8000u
#define DECAY 20000u

/* failures_to_eject 3, base 1s, max 8s, decay 20s, no active check, rise 2, fall 3. */
static struct health_params params(void)
{
	return (struct health_params){
		.failures_to_eject = 3,
		.base_ejection_ms = BASE,
		.max_ejection_ms = MAXE,
		.decay_ms = DECAY,
		.max_ejected_percent = 50,
		.panic_threshold = 50,
		.active_check = false,
		.rise = 2,
		.fall = 3,
	};
}

static struct health_params params_checked(void)
{
	struct health_params p = params();
	p.active_check = true;
	return p;
}

/* Fail p->failures_to_eject times at `now`; returns the last transition. */
static enum health_transition fail_n(struct health *h, const struct health_params *p,
				     uint32_t n, uint64_t now, bool may)
{
	enum health_transition t = HEALTH_T_NONE;
	for (uint32_t i = 0; i < n; i++)
		t = health_on_failure(h, p, now, may);
	return t;
}

/* Eject at `now` and return at its expiry (no active check). Returns the ejection length. */
static uint64_t eject_and_return(struct health *h, const struct health_params *p, uint64_t now)
{
	assert_int_equal(fail_n(h, p, p->failures_to_eject, now, true), HEALTH_T_EJECTED);
	uint64_t len = h->ejected_until_ms - now;
	assert_int_equal(health_tick(h, p, h->ejected_until_ms), HEALTH_T_RETURNED);
	return len;
}

/* ---- params ---- */

static void test_params_defaults(void **state)
{
	struct health_conf c = {
		.failures_to_eject = 3,
		.base_ejection_ms = 5000,
		.max_ejection_ms = 300000,
		.max_ejected_percent = 50,
		.panic_threshold = 40,
		.check = { .type = CHECK_NONE, .rise = 2, .fall = 3 },
	};
	struct health_params p;
	health_params_from_conf(&p, &c);
	assert_int_equal(p.failures_to_eject, 3);
	assert_int_equal(p.base_ejection_ms, 5000);
	assert_int_equal(p.max_ejection_ms, 300000);
	assert_int_equal(p.decay_ms, 300000);	/* max(5m, 10 × 5s) */
	assert_int_equal(p.max_ejected_percent, 50);
	assert_int_equal(p.panic_threshold, 40);
	assert_false(p.active_check);
	assert_int_equal(p.rise, 2);
	assert_int_equal(p.fall, 3);
}

static void test_params_decay_floor_and_check(void **state)
{
	struct health_conf c = {
		.failures_to_eject = 1,
		.base_ejection_ms = 30000,
		.max_ejection_ms = 60000,
		.check = { .type = CHECK_HTTP, .rise = 0, .fall = 0 },
	};
	struct health_params p;
	health_params_from_conf(&p, &c);
	assert_int_equal(p.decay_ms, 300000);	/* 10 × base beats max */
	assert_true(p.active_check);
	assert_int_equal(p.rise, 1);		/* 0 makes no sense: 1 */
	assert_int_equal(p.fall, 1);

	c.check.type = CHECK_TCP;
	c.base_ejection_ms = UINT64_MAX / 2;
	health_params_from_conf(&p, &c);
	assert_true(p.active_check);
	assert_int_equal(p.decay_ms, UINT64_MAX);	/* saturates, no wrap */
}

/* ---- init, passive failures and successes ---- */

static void test_init(void **state)
{
	struct health h;
	memset(&h, 0xa5, sizeof(h));
	health_init(&h, 1234);
	assert_int_equal(h.state, HEALTH_HEALTHY);
	assert_int_equal(h.consecutive_failures, 0);
	assert_int_equal(h.ejection_level, 0);
	assert_int_equal(h.ejections_total, 0);
	assert_int_equal(h.ejected_until_ms, 0);
	assert_int_equal(h.level_since_ms, 1234);
	assert_int_equal(h.routable_since_ms, 1234);
	assert_int_equal(h.check_passes, 0);
	assert_int_equal(h.check_fails, 0);
	assert_int_equal(h.check_failures_total, 0);
	assert_true(health_routable(&h));
}

static void test_failures_below_threshold(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	assert_int_equal(health_on_failure(&h, &p, 10, true), HEALTH_T_NONE);
	assert_int_equal(h.consecutive_failures, 1);
	assert_int_equal(health_on_failure(&h, &p, 20, true), HEALTH_T_NONE);
	assert_int_equal(h.consecutive_failures, 2);
	assert_int_equal(h.state, HEALTH_HEALTHY);
	assert_true(health_routable(&h));
}

static void test_success_resets_count(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	fail_n(&h, &p, 2, 10, true);
	assert_int_equal(health_on_success(&h, &p, 11), HEALTH_T_NONE);
	assert_int_equal(h.consecutive_failures, 0);
	/* two more are not enough: the count restarted */
	assert_int_equal(fail_n(&h, &p, 2, 12, true), HEALTH_T_NONE);
	assert_int_equal(h.state, HEALTH_HEALTHY);
	assert_int_equal(health_on_failure(&h, &p, 13, true), HEALTH_T_EJECTED);
}

static void test_eject_at_threshold(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	assert_int_equal(fail_n(&h, &p, 2, 100, true), HEALTH_T_NONE);
	assert_int_equal(health_on_failure(&h, &p, 500, true), HEALTH_T_EJECTED);
	assert_int_equal(h.state, HEALTH_EJECTED);
	assert_int_equal(h.ejection_level, 1);
	assert_int_equal(h.ejections_total, 1);
	assert_int_equal(h.ejected_until_ms, 500 + BASE);
	assert_int_equal(h.consecutive_failures, 0);
	assert_false(health_routable(&h));
	assert_int_equal(health_eligible_after(&h, &p), 500 + BASE);
	assert_int_equal(health_next_deadline(&h, &p), 500 + BASE);
}

static void test_failures_to_eject_one_and_zero(void **state)
{
	struct health_params p = params();
	struct health h;

	p.failures_to_eject = 1;
	health_init(&h, 0);
	assert_int_equal(health_on_failure(&h, &p, 1, true), HEALTH_T_EJECTED);

	p.failures_to_eject = 0;	/* passive ejection off */
	health_init(&h, 0);
	assert_int_equal(fail_n(&h, &p, 1000, 1, true), HEALTH_T_NONE);
	assert_int_equal(h.state, HEALTH_HEALTHY);
	assert_int_equal(h.ejections_total, 0);
}

static void test_eject_skipped_once_then_ejects_when_room(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	assert_int_equal(fail_n(&h, &p, 2, 1, false), HEALTH_T_NONE);
	assert_int_equal(health_on_failure(&h, &p, 2, false), HEALTH_T_EJECT_SKIPPED);
	assert_int_equal(h.state, HEALTH_HEALTHY);
	assert_int_equal(h.ejection_level, 0);
	assert_int_equal(h.ejections_total, 0);
	/* reported once per streak, not per failure */
	assert_int_equal(health_on_failure(&h, &p, 3, false), HEALTH_T_NONE);
	assert_int_equal(health_on_failure(&h, &p, 4, false), HEALTH_T_NONE);
	assert_int_equal(h.consecutive_failures, 5);
	/* room freed up: the very next failure ejects */
	assert_int_equal(health_on_failure(&h, &p, 5, true), HEALTH_T_EJECTED);
	assert_int_equal(h.ejection_level, 1);
	assert_int_equal(h.ejected_until_ms, 5 + BASE);
}

static void test_eject_skipped_then_success_resets(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	assert_int_equal(fail_n(&h, &p, 3, 1, false), HEALTH_T_EJECT_SKIPPED);
	health_on_success(&h, &p, 2);
	assert_int_equal(h.consecutive_failures, 0);
	assert_int_equal(fail_n(&h, &p, 2, 3, true), HEALTH_T_NONE);
	assert_int_equal(fail_n(&h, &p, 1, 3, false), HEALTH_T_EJECT_SKIPPED);
}

/* ---- EJECTED: expiry, and results that must not stretch anything ---- */

static void test_return_exactly_at_expiry(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	fail_n(&h, &p, 3, 1000, true);
	assert_int_equal(health_tick(&h, &p, 1000), HEALTH_T_NONE);
	assert_int_equal(health_tick(&h, &p, 1000 + BASE - 1), HEALTH_T_NONE);
	assert_int_equal(h.state, HEALTH_EJECTED);
	assert_int_equal(health_tick(&h, &p, 1000 + BASE), HEALTH_T_RETURNED);
	assert_int_equal(h.state, HEALTH_HEALTHY);
	assert_true(health_routable(&h));
	assert_int_equal(health_eligible_after(&h, &p), 0);
	assert_int_equal(health_next_deadline(&h, &p), UINT64_MAX);
	assert_int_equal(h.routable_since_ms, 1000 + BASE);
	assert_int_equal(h.ejection_level, 1);		/* not forgiven by returning */
	assert_int_equal(health_tick(&h, &p, 1000 + BASE), HEALTH_T_NONE);
}

static void test_late_tick_returns_from_expiry(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	fail_n(&h, &p, 3, 1000, true);
	assert_int_equal(health_tick(&h, &p, 1000 + BASE + 700), HEALTH_T_RETURNED);
	/* back since the expiry, when workers could already route to it */
	assert_int_equal(h.routable_since_ms, 1000 + BASE);
	assert_int_equal(h.level_since_ms, 1000 + BASE);
}

static void test_passive_results_while_ejected_change_nothing(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	fail_n(&h, &p, 3, 1000, true);
	struct health before = h;

	/* in panic mode traffic may still reach it */
	assert_int_equal(fail_n(&h, &p, 10, 1500, true), HEALTH_T_NONE);
	assert_int_equal(health_on_success(&h, &p, 1600), HEALTH_T_NONE);
	assert_memory_equal(&h, &before, sizeof(h));

	/* time up but not ticked yet: still EJECTED until the tick */
	assert_int_equal(health_on_failure(&h, &p, 1000 + BASE + 5, true), HEALTH_T_NONE);
	assert_int_equal(h.state, HEALTH_EJECTED);
	assert_int_equal(h.ejected_until_ms, 1000 + BASE);
}

static void test_backoff_doubles_and_caps(void **state)
{
	struct health_params p = params();	/* 1s, 2s, 4s, 8s, 8s ... */
	struct health h;
	uint64_t now = 0;
	static const uint64_t want[] = { 1000, 2000, 4000, 8000, 8000, 8000 };
	static const uint32_t level[] = { 1, 2, 3, 4, 4, 4 };

	health_init(&h, now);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(eject_and_return(&h, &p, now), want[i]);
		assert_int_equal(h.ejection_level, level[i]);
		assert_int_equal(h.ejections_total, i + 1);
		now = h.ejected_until_ms + 1;	/* fails again right away */
	}
}

static void test_backoff_cap_not_power_of_two(void **state)
{
	struct health_params p = params();
	p.max_ejection_ms = 5000;	/* 1, 2, 4, 5, 5 */
	struct health h;
	uint64_t now = 0;
	static const uint64_t want[] = { 1000, 2000, 4000, 5000, 5000 };

	health_init(&h, now);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(eject_and_return(&h, &p, now), want[i]);
		now = h.ejected_until_ms;
	}
	assert_int_equal(h.ejection_level, 4);	/* the first level that reaches the cap */
}

static void test_backoff_cap_below_base(void **state)
{
	struct health_params p = params();
	p.base_ejection_ms = 5000;
	p.max_ejection_ms = 3000;	/* the cap wins even for the first */
	struct health h;
	health_init(&h, 0);
	assert_int_equal(eject_and_return(&h, &p, 0), 3000);
	assert_int_equal(h.ejection_level, 1);
	assert_int_equal(eject_and_return(&h, &p, 3000), 3000);
	assert_int_equal(h.ejection_level, 1);
}

static void test_backoff_zero_base(void **state)
{
	struct health_params p = params();
	p.base_ejection_ms = 0;
	struct health h;
	health_init(&h, 0);
	assert_int_equal(fail_n(&h, &p, 3, 50, true), HEALTH_T_EJECTED);
	assert_int_equal(h.ejected_until_ms, 50);
	assert_int_equal(health_tick(&h, &p, 50), HEALTH_T_RETURNED);
	assert_int_equal(eject_and_return(&h, &p, 60), 0);
	assert_int_equal(h.ejection_level, 1);
}

static void test_backoff_huge_values_saturate(void **state)
{
	struct health_params p = params();
	p.base_ejection_ms = UINT64_MAX / 4;
	p.max_ejection_ms = UINT64_MAX;
	struct health h;
	health_init(&h, 0);
	h.ejection_level = 40;	/* as if after many ejections */
	assert_int_equal(fail_n(&h, &p, 3, 10, true), HEALTH_T_EJECTED);
	assert_int_equal(h.ejected_until_ms, UINT64_MAX);	/* no wrap into the past */
	assert_int_equal(h.ejection_level, 4);	/* base × 8 already saturates */
}

static void test_level_clamped_after_reload(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	h.ejection_level = 9;	/* earned under an older, larger cap */
	p.max_ejection_ms = 2000;	/* level cap is now 2 */
	assert_int_equal(fail_n(&h, &p, 3, 0, true), HEALTH_T_EJECTED);
	assert_int_equal(h.ejection_level, 2);
	assert_int_equal(h.ejected_until_ms, 2000);
}

/* ---- decay ---- */

static void test_decay_one_step_per_period(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	eject_and_return(&h, &p, 0);		/* level 1, back at 1000 */
	eject_and_return(&h, &p, 1000);		/* level 2, back at 3000 */
	assert_int_equal(h.ejection_level, 2);
	uint64_t back = h.ejected_until_ms;
	assert_int_equal(back, 3000);

	assert_int_equal(health_tick(&h, &p, back + DECAY - 1), HEALTH_T_NONE);
	assert_int_equal(h.ejection_level, 2);
	assert_int_equal(health_tick(&h, &p, back + DECAY), HEALTH_T_NONE);
	assert_int_equal(h.ejection_level, 1);
	assert_int_equal(h.level_since_ms, back + DECAY);
	assert_int_equal(health_tick(&h, &p, back + 2 * DECAY - 1), HEALTH_T_NONE);
	assert_int_equal(h.ejection_level, 1);
	assert_int_equal(health_tick(&h, &p, back + 2 * DECAY), HEALTH_T_NONE);
	assert_int_equal(h.ejection_level, 0);
	/* fully forgiven: the next ejection is the base one again */
	assert_int_equal(eject_and_return(&h, &p, back + 3 * DECAY), BASE);
}

static void test_decay_keeps_remainder(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	h.ejection_level = 3;
	h.level_since_ms = 0;
	health_on_success(&h, &p, DECAY + DECAY / 2);	/* 1.5 periods */
	assert_int_equal(h.ejection_level, 2);
	assert_int_equal(h.level_since_ms, DECAY);	/* the half period is kept */
	health_on_success(&h, &p, 2 * DECAY);
	assert_int_equal(h.ejection_level, 1);
}

static void test_decay_many_periods_at_once(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	h.ejection_level = 4;
	assert_int_equal(health_tick(&h, &p, 100 * (uint64_t)DECAY), HEALTH_T_NONE);
	assert_int_equal(h.ejection_level, 0);
	assert_int_equal(h.level_since_ms, 100 * (uint64_t)DECAY);
}

static void test_decay_applied_lazily_on_failure(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	h.ejection_level = 3;	/* next would be 4s */
	/* healthy 2 periods, no tick: the ejection still uses the decayed level */
	uint64_t t = 2 * (uint64_t)DECAY;
	assert_int_equal(fail_n(&h, &p, 3, t, true), HEALTH_T_EJECTED);
	assert_int_equal(h.ejection_level, 2);
	assert_int_equal(h.ejected_until_ms, t + 2000);
}

static void test_decay_in_same_tick_as_return(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	eject_and_return(&h, &p, 0);
	fail_n(&h, &p, 3, 2000, true);		/* level 2, until 4000 */
	assert_int_equal(h.ejection_level, 2);
	assert_int_equal(health_tick(&h, &p, 4000 + DECAY), HEALTH_T_RETURNED);
	assert_int_equal(h.ejection_level, 1);	/* one period healthy since 4000 */
}

static void test_no_decay_while_ejected_or_checking(void **state)
{
	struct health_params p = params();
	p.max_ejection_ms = 100 * (uint64_t)DECAY;
	p.base_ejection_ms = 10 * (uint64_t)DECAY;
	struct health h;
	health_init(&h, 0);
	fail_n(&h, &p, 3, 0, true);
	health_on_success(&h, &p, 5 * (uint64_t)DECAY);
	health_tick(&h, &p, 9 * (uint64_t)DECAY);
	assert_int_equal(h.state, HEALTH_EJECTED);
	assert_int_equal(h.ejection_level, 1);

	struct health_params pc = params_checked();
	health_init(&h, 0);
	h.ejection_level = 2;
	for (int i = 0; i < 3; i++)
		health_on_check(&h, &pc, false, 0);
	assert_int_equal(h.state, HEALTH_CHECKING);
	health_on_check(&h, &pc, false, 10 * (uint64_t)DECAY);
	health_tick(&h, &pc, 10 * (uint64_t)DECAY);
	assert_int_equal(h.ejection_level, 2);
	/* back up: the decay clock restarts there */
	health_on_check(&h, &pc, true, 11 * (uint64_t)DECAY);
	assert_int_equal(health_on_check(&h, &pc, true, 12 * (uint64_t)DECAY), HEALTH_T_CHECK_UP);
	assert_int_equal(h.level_since_ms, 12 * (uint64_t)DECAY);
	health_tick(&h, &pc, 13 * (uint64_t)DECAY - 1);
	assert_int_equal(h.ejection_level, 2);
	health_tick(&h, &pc, 13 * (uint64_t)DECAY);
	assert_int_equal(h.ejection_level, 1);
}

static void test_decay_zero_forgives_at_once(void **state)
{
	struct health_params p = params();
	p.decay_ms = 0;
	struct health h;
	health_init(&h, 0);
	eject_and_return(&h, &p, 0);
	eject_and_return(&h, &p, 1000);	/* not decayed at the same ms: level 2 */
	assert_int_equal(h.ejection_level, 2);
	health_tick(&h, &p, 3001);
	assert_int_equal(h.ejection_level, 0);
}

/* ---- active check: rise/fall ---- */

static void test_check_fall_to_checking(void **state)
{
	struct health_params p = params_checked();
	struct health h;
	health_init(&h, 0);
	assert_int_equal(health_on_check(&h, &p, false, 1), HEALTH_T_NONE);
	assert_int_equal(health_on_check(&h, &p, false, 2), HEALTH_T_NONE);
	assert_int_equal(h.check_fails, 2);
	assert_int_equal(h.state, HEALTH_HEALTHY);
	assert_int_equal(health_on_check(&h, &p, false, 3), HEALTH_T_CHECK_DOWN);
	assert_int_equal(h.state, HEALTH_CHECKING);
	assert_false(health_routable(&h));
	assert_int_equal(health_eligible_after(&h, &p), UINT64_MAX);
	assert_int_equal(health_next_deadline(&h, &p), UINT64_MAX);
	assert_int_equal(h.check_failures_total, 3);
	/* more failures: nothing new */
	assert_int_equal(health_on_check(&h, &p, false, 4), HEALTH_T_NONE);
	assert_int_equal(h.check_failures_total, 4);
}

static void test_check_fall_needs_consecutive(void **state)
{
	struct health_params p = params_checked();
	struct health h;
	health_init(&h, 0);
	health_on_check(&h, &p, false, 1);
	health_on_check(&h, &p, false, 2);
	assert_int_equal(health_on_check(&h, &p, true, 3), HEALTH_T_NONE);
	assert_int_equal(h.check_fails, 0);
	assert_int_equal(health_on_check(&h, &p, false, 4), HEALTH_T_NONE);
	assert_int_equal(health_on_check(&h, &p, false, 5), HEALTH_T_NONE);
	assert_int_equal(h.state, HEALTH_HEALTHY);
	assert_int_equal(health_on_check(&h, &p, false, 6), HEALTH_T_CHECK_DOWN);
}

static void test_check_rise_to_healthy(void **state)
{
	struct health_params p = params_checked();
	struct health h;
	health_init(&h, 0);
	for (int i = 0; i < 3; i++)
		health_on_check(&h, &p, false, 10);
	assert_int_equal(h.state, HEALTH_CHECKING);
	assert_int_equal(health_on_check(&h, &p, true, 20), HEALTH_T_NONE);
	assert_int_equal(h.check_passes, 1);
	/* a failure resets the rise count */
	assert_int_equal(health_on_check(&h, &p, false, 30), HEALTH_T_NONE);
	assert_int_equal(h.check_passes, 0);
	assert_int_equal(health_on_check(&h, &p, true, 40), HEALTH_T_NONE);
	assert_int_equal(h.state, HEALTH_CHECKING);
	assert_int_equal(health_on_check(&h, &p, true, 50), HEALTH_T_CHECK_UP);
	assert_int_equal(h.state, HEALTH_HEALTHY);
	assert_int_equal(h.routable_since_ms, 50);
	assert_int_equal(h.check_fails, 0);
	assert_int_equal(health_eligible_after(&h, &p), 0);
	/* passes while healthy change nothing */
	assert_int_equal(health_on_check(&h, &p, true, 60), HEALTH_T_NONE);
	assert_int_equal(h.state, HEALTH_HEALTHY);
}

static void test_check_rise_fall_one(void **state)
{
	struct health_params p = params_checked();
	p.rise = 1;
	p.fall = 1;
	struct health h;
	health_init(&h, 0);
	assert_int_equal(health_on_check(&h, &p, false, 1), HEALTH_T_CHECK_DOWN);
	assert_int_equal(health_on_check(&h, &p, true, 2), HEALTH_T_CHECK_UP);
	assert_int_equal(health_on_check(&h, &p, false, 3), HEALTH_T_CHECK_DOWN);
}

static void test_check_ignored_without_active_check(void **state)
{
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(health_on_check(&h, &p, false, (uint64_t)i), HEALTH_T_NONE);
	assert_int_equal(h.state, HEALTH_HEALTHY);
	assert_int_equal(h.check_fails, 0);
	assert_int_equal(h.check_failures_total, 0);
}

static void test_passive_results_while_checking_change_nothing(void **state)
{
	struct health_params p = params_checked();
	struct health h;
	health_init(&h, 0);
	for (int i = 0; i < 3; i++)
		health_on_check(&h, &p, false, 1);
	struct health before = h;
	assert_int_equal(fail_n(&h, &p, 10, 2, true), HEALTH_T_NONE);
	assert_int_equal(health_on_success(&h, &p, 3), HEALTH_T_NONE);
	assert_memory_equal(&h, &before, sizeof(h));
}

static void test_ejected_with_check_awaits_rise(void **state)
{
	struct health_params p = params_checked();
	struct health h;
	health_init(&h, 0);
	assert_int_equal(fail_n(&h, &p, 3, 100, true), HEALTH_T_EJECTED);
	/* it does not return by itself: workers must ask again */
	assert_int_equal(health_eligible_after(&h, &p), UINT64_MAX);
	assert_int_equal(health_next_deadline(&h, &p), 100 + BASE);

	/* passes during the ejection do not count toward rise */
	for (int i = 0; i < 5; i++)
		assert_int_equal(health_on_check(&h, &p, true, 200), HEALTH_T_NONE);
	assert_int_equal(h.state, HEALTH_EJECTED);
	assert_int_equal(health_tick(&h, &p, 100 + BASE - 1), HEALTH_T_NONE);
	assert_int_equal(health_tick(&h, &p, 100 + BASE), HEALTH_T_AWAIT_CHECK);
	assert_int_equal(h.state, HEALTH_CHECKING);
	assert_int_equal(h.check_passes, 0);
	assert_false(health_routable(&h));
	assert_int_equal(health_eligible_after(&h, &p), UINT64_MAX);
	assert_int_equal(health_next_deadline(&h, &p), UINT64_MAX);
	assert_int_equal(health_on_check(&h, &p, true, 1200), HEALTH_T_NONE);
	assert_int_equal(health_on_check(&h, &p, true, 1300), HEALTH_T_CHECK_UP);
	assert_int_equal(h.routable_since_ms, 1300);
	assert_int_equal(h.level_since_ms, 1300);
	assert_int_equal(h.ejection_level, 1);
}

static void test_check_failures_while_ejected_do_not_transition(void **state)
{
	struct health_params p = params_checked();
	struct health h;
	health_init(&h, 0);
	fail_n(&h, &p, 3, 0, true);
	for (int i = 0; i < 5; i++)
		assert_int_equal(health_on_check(&h, &p, false, 10), HEALTH_T_NONE);
	assert_int_equal(h.state, HEALTH_EJECTED);
	assert_int_equal(h.check_fails, 5);
	assert_int_equal(h.check_failures_total, 5);
	assert_int_equal(h.ejected_until_ms, BASE);	/* not extended */
	assert_int_equal(health_tick(&h, &p, BASE), HEALTH_T_AWAIT_CHECK);
}

static void test_check_removed_by_reload(void **state)
{
	struct health_params pc = params_checked();
	struct health_params p = params();
	struct health h;
	health_init(&h, 0);
	for (int i = 0; i < 3; i++)
		health_on_check(&h, &pc, false, 1);
	assert_int_equal(h.state, HEALTH_CHECKING);
	/* the new config has no check: nothing would ever bring it back */
	assert_int_equal(health_next_deadline(&h, &p), 0);
	assert_int_equal(health_tick(&h, &p, 50), HEALTH_T_CHECK_UP);
	assert_int_equal(h.state, HEALTH_HEALTHY);
	assert_int_equal(h.routable_since_ms, 50);

	/* and an ejection started with a check returns by itself without one */
	health_init(&h, 0);
	fail_n(&h, &pc, 3, 0, true);
	assert_int_equal(health_eligible_after(&h, &p), BASE);
	assert_int_equal(health_tick(&h, &p, BASE), HEALTH_T_RETURNED);
}

static void test_check_added_by_reload_while_ejected(void **state)
{
	struct health_params p = params();
	struct health_params pc = params_checked();
	struct health h;
	health_init(&h, 0);
	fail_n(&h, &p, 3, 0, true);
	assert_int_equal(health_tick(&h, &pc, BASE), HEALTH_T_AWAIT_CHECK);
}

static void test_passive_eject_from_healthy_with_check(void **state)
{
	struct health_params p = params_checked();
	struct health h;
	health_init(&h, 0);
	health_on_check(&h, &p, false, 1);	/* one check failure, below fall */
	assert_int_equal(fail_n(&h, &p, 3, 2, true), HEALTH_T_EJECTED);
	assert_int_equal(h.state, HEALTH_EJECTED);
}

/* ---- eligible_after per state ---- */

static void test_eligible_after_table(void **state)
{
	struct health_params p = params();
	struct health_params pc = params_checked();
	struct health h;
	health_init(&h, 0);
	assert_int_equal(health_eligible_after(&h, &p), 0);
	assert_int_equal(health_eligible_after(&h, &pc), 0);
	h.state = HEALTH_EJECTED;
	h.ejected_until_ms = 777;
	assert_int_equal(health_eligible_after(&h, &p), 777);
	assert_int_equal(health_eligible_after(&h, &pc), UINT64_MAX);
	h.state = HEALTH_CHECKING;
	assert_int_equal(health_eligible_after(&h, &p), UINT64_MAX);
	assert_int_equal(health_eligible_after(&h, &pc), UINT64_MAX);
}

/* ---- max_ejected_percent ---- */

static void test_may_eject_small_sets(void **state)
{
	assert_false(health_may_eject(0, 0, 50));
	assert_false(health_may_eject(0, 0, 100));
	assert_false(health_may_eject(0, 1, 50));	/* 0.5 floors to 0 */
	assert_false(health_may_eject(0, 1, 99));
	assert_true(health_may_eject(0, 1, 100));
	assert_false(health_may_eject(1, 1, 100));
	assert_true(health_may_eject(0, 2, 50));
	assert_false(health_may_eject(1, 2, 50));
	assert_true(health_may_eject(0, 3, 50));
	assert_false(health_may_eject(1, 3, 50));	/* 1.5 floors to 1 */
	assert_true(health_may_eject(1, 4, 50));
	assert_false(health_may_eject(2, 4, 50));
	assert_true(health_may_eject(2, 3, 100));
	assert_false(health_may_eject(3, 3, 100));
}

static void test_may_eject_percentages(void **state)
{
	assert_false(health_may_eject(0, 10, 0));	/* 0% never */
	assert_false(health_may_eject(0, 1000, 0));
	assert_true(health_may_eject(0, 10, 10));
	assert_false(health_may_eject(1, 10, 10));
	assert_false(health_may_eject(0, 9, 10));	/* 0.9 floors to 0 */
	assert_true(health_may_eject(32, 100, 33));
	assert_false(health_may_eject(33, 100, 33));
	assert_true(health_may_eject(9, 10, 150));	/* over 100 is 100 */
	assert_false(health_may_eject(10, 10, 150));
	assert_false(health_may_eject(11, 10, 100));	/* inconsistent counts: no */
}

static void test_may_eject_no_overflow(void **state)
{
	/* floor(SIZE_MAX × 50 / 100) = SIZE_MAX / 2 */
	assert_true(health_may_eject(SIZE_MAX / 2 - 1, SIZE_MAX, 50));
	assert_false(health_may_eject(SIZE_MAX / 2, SIZE_MAX, 50));
	assert_true(health_may_eject(SIZE_MAX - 1, SIZE_MAX, 100));
	assert_true(health_may_eject(SIZE_MAX - 1, SIZE_MAX, UINT32_MAX));	/* clamped first */
}

/* ---- panic ---- */

static void test_panic_threshold(void **state)
{
	assert_false(health_in_panic(0, 0, 50));	/* nothing at all */
	assert_false(health_in_panic(1, 2, 50));	/* exactly 50%: not below */
	assert_true(health_in_panic(0, 2, 50));
	assert_true(health_in_panic(2, 5, 50));		/* 40% */
	assert_false(health_in_panic(3, 5, 50));	/* 60% */
	assert_true(health_in_panic(49, 100, 50));
	assert_false(health_in_panic(50, 100, 50));
	assert_false(health_in_panic(0, 5, 0));		/* 0 = never */
	assert_true(health_in_panic(0, 1, 1));
	assert_false(health_in_panic(1, 1, 100));
	assert_true(health_in_panic(99, 100, 100));
	assert_true(health_in_panic(99, 100, 150));	/* over 100 is 100 */
	assert_false(health_in_panic(100, 100, 150));
	assert_false(health_in_panic(5, 5, 100));
}

static void test_panic_no_overflow(void **state)
{
	assert_true(health_in_panic(SIZE_MAX / 2, SIZE_MAX, 50));	/* just below half */
	assert_false(health_in_panic(SIZE_MAX / 2 + 1, SIZE_MAX, 50));
	assert_true(health_in_panic(SIZE_MAX - 1, SIZE_MAX, 100));
}

/* ---- slow start ---- */

static void test_slow_start_off_and_edges(void **state)
{
	assert_int_equal(health_slow_start_weight(100, 1000, 1000, 0), 100);	/* off */
	assert_int_equal(health_slow_start_weight(0, 1000, 1500, 1000), 0);
	assert_int_equal(health_slow_start_weight(100, 1000, 500, 1000), 10);	/* before since */
	assert_int_equal(health_slow_start_weight(100, 1000, 1000, 1000), 10);	/* start: floor */
	assert_int_equal(health_slow_start_weight(100, 1000, 2000, 1000), 100);	/* end */
	assert_int_equal(health_slow_start_weight(100, 1000, 99999, 1000), 100);
}

static void test_slow_start_linear(void **state)
{
	/* floor 10, ramp of 90 over 1000 ms */
	assert_int_equal(health_slow_start_weight(100, 1000, 1001, 1000), 10);
	assert_int_equal(health_slow_start_weight(100, 1000, 1012, 1000), 11);
	assert_int_equal(health_slow_start_weight(100, 1000, 1250, 1000), 32);
	assert_int_equal(health_slow_start_weight(100, 1000, 1500, 1000), 55);
	assert_int_equal(health_slow_start_weight(100, 1000, 1999, 1000), 99);
	/* small weights: the floor is 1 */
	assert_int_equal(health_slow_start_weight(1, 0, 0, 1000), 1);
	assert_int_equal(health_slow_start_weight(1, 0, 500, 1000), 1);
	assert_int_equal(health_slow_start_weight(5, 0, 0, 1000), 1);
	assert_int_equal(health_slow_start_weight(5, 0, 500, 1000), 3);
	assert_int_equal(health_slow_start_weight(5, 0, 1000, 1000), 5);
	assert_int_equal(health_slow_start_weight(256, 0, 0, 1000), 25);

	uint32_t prev = 0;
	for (uint64_t t = 0; t <= 1000; t++) {
		uint32_t w = health_slow_start_weight(256, 0, t, 1000);
		assert_true(w >= prev);
		assert_true(w >= 25 && w <= 256);
		prev = w;
	}
	assert_int_equal(prev, 256);
}

static void test_slow_start_no_overflow(void **state)
{
	uint32_t w = UINT32_MAX;
	uint32_t floor_w = UINT32_MAX / 10;
	/* (w − floor) × (M − 1) / M = (w − floor) − (w − floor) / M, floored */
	assert_int_equal(health_slow_start_weight(w, 0, UINT64_MAX - 1, UINT64_MAX), w - 1);
	/* 2^63 / (2^64 − 1) is a hair above one half */
	assert_int_equal(health_slow_start_weight(w, 0, UINT64_MAX / 2 + 1, UINT64_MAX),
			 floor_w + (w - floor_w) / 2);
}

/* ---- names ---- */

static void test_names(void **state)
{
	assert_string_equal(health_state_name(HEALTH_HEALTHY), "healthy");
	assert_string_equal(health_state_name(HEALTH_EJECTED), "ejected");
	assert_string_equal(health_state_name(HEALTH_CHECKING), "checking");
	assert_string_equal(health_state_name((enum health_state)42), "?");
	assert_string_equal(health_transition_name(HEALTH_T_NONE), "none");
	assert_string_equal(health_transition_name(HEALTH_T_EJECTED), "ejected");
	assert_string_equal(health_transition_name(HEALTH_T_EJECT_SKIPPED), "eject_skipped");
	assert_string_equal(health_transition_name(HEALTH_T_RETURNED), "returned");
	assert_string_equal(health_transition_name(HEALTH_T_AWAIT_CHECK), "await_check");
	assert_string_equal(health_transition_name(HEALTH_T_CHECK_DOWN), "check_down");
	assert_string_equal(health_transition_name(HEALTH_T_CHECK_UP), "check_up");
	assert_string_equal(health_transition_name((enum health_transition)42), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_params_defaults),
		cmocka_unit_test(test_params_decay_floor_and_check),
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_failures_below_threshold),
		cmocka_unit_test(test_success_resets_count),
		cmocka_unit_test(test_eject_at_threshold),
		cmocka_unit_test(test_failures_to_eject_one_and_zero),
		cmocka_unit_test(test_eject_skipped_once_then_ejects_when_room),
		cmocka_unit_test(test_eject_skipped_then_success_resets),
		cmocka_unit_test(test_return_exactly_at_expiry),
		cmocka_unit_test(test_late_tick_returns_from_expiry),
		cmocka_unit_test(test_passive_results_while_ejected_change_nothing),
		cmocka_unit_test(test_backoff_doubles_and_caps),
		cmocka_unit_test(test_backoff_cap_not_power_of_two),
		cmocka_unit_test(test_backoff_cap_below_base),
		cmocka_unit_test(test_backoff_zero_base),
		cmocka_unit_test(test_backoff_huge_values_saturate),
		cmocka_unit_test(test_level_clamped_after_reload),
		cmocka_unit_test(test_decay_one_step_per_period),
		cmocka_unit_test(test_decay_keeps_remainder),
		cmocka_unit_test(test_decay_many_periods_at_once),
		cmocka_unit_test(test_decay_applied_lazily_on_failure),
		cmocka_unit_test(test_decay_in_same_tick_as_return),
		cmocka_unit_test(test_no_decay_while_ejected_or_checking),
		cmocka_unit_test(test_decay_zero_forgives_at_once),
		cmocka_unit_test(test_check_fall_to_checking),
		cmocka_unit_test(test_check_fall_needs_consecutive),
		cmocka_unit_test(test_check_rise_to_healthy),
		cmocka_unit_test(test_check_rise_fall_one),
		cmocka_unit_test(test_check_ignored_without_active_check),
		cmocka_unit_test(test_passive_results_while_checking_change_nothing),
		cmocka_unit_test(test_ejected_with_check_awaits_rise),
		cmocka_unit_test(test_check_failures_while_ejected_do_not_transition),
		cmocka_unit_test(test_check_removed_by_reload),
		cmocka_unit_test(test_check_added_by_reload_while_ejected),
		cmocka_unit_test(test_passive_eject_from_healthy_with_check),
		cmocka_unit_test(test_eligible_after_table),
		cmocka_unit_test(test_may_eject_small_sets),
		cmocka_unit_test(test_may_eject_percentages),
		cmocka_unit_test(test_may_eject_no_overflow),
		cmocka_unit_test(test_panic_threshold),
		cmocka_unit_test(test_panic_no_overflow),
		cmocka_unit_test(test_slow_start_off_and_edges),
		cmocka_unit_test(test_slow_start_linear),
		cmocka_unit_test(test_slow_start_no_overflow),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests_name("health", tests, NULL, NULL);
}
