/*
 * Unit tests for zk's pure parts: the session lifecycle's transition table,
 * the reconnect backoff, and chroot parsing. (The session itself is tested
 * against a real ZooKeeper in tests/integration/test_discovery_module.py.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "zk.h"

static void test_transitions(void **state)
{
	(void)state;
	assert_true(zk_transition_allowed(ZK_CONNECTING, ZK_CONNECTED));
	assert_true(zk_transition_allowed(ZK_CONNECTING, ZK_EXPIRED));
	assert_true(zk_transition_allowed(ZK_CONNECTED, ZK_DISCONNECTED));
	assert_true(zk_transition_allowed(ZK_CONNECTED, ZK_EXPIRED));
	assert_true(zk_transition_allowed(ZK_DISCONNECTED, ZK_CONNECTED));
	assert_true(zk_transition_allowed(ZK_DISCONNECTED, ZK_EXPIRED));
	assert_true(zk_transition_allowed(ZK_EXPIRED, ZK_CONNECTING));
	for (int s = ZK_CONNECTING; s <= ZK_EXPIRED; s++)
		assert_true(zk_transition_allowed((enum zk_state)s, ZK_CLOSED));

	/* A new session always goes through CONNECTING. */
	assert_false(zk_transition_allowed(ZK_EXPIRED, ZK_CONNECTED));
	assert_false(zk_transition_allowed(ZK_EXPIRED, ZK_DISCONNECTED));
	/* DISCONNECTED means a session existed. */
	assert_false(zk_transition_allowed(ZK_CONNECTING, ZK_DISCONNECTED));
	assert_false(zk_transition_allowed(ZK_CONNECTED, ZK_CONNECTING));
	assert_false(zk_transition_allowed(ZK_DISCONNECTED, ZK_CONNECTING));
	for (int s = ZK_CONNECTING; s <= ZK_CLOSED; s++) {
		assert_false(zk_transition_allowed(ZK_CLOSED, (enum zk_state)s));
		assert_false(zk_transition_allowed((enum zk_state)s, (enum zk_state)s));
	}
}

static void test_backoff(void **state)
{
	(void)state;
	/* First retry immediate: the server said "expired", it is reachable. */
	assert_int_equal(zk_backoff_ms(0, 200, 30000, 12345), 0);
	/* No jitter with random 0: base, doubling, cap. */
	assert_int_equal(zk_backoff_ms(1, 200, 30000, 0), 200);
	assert_int_equal(zk_backoff_ms(2, 200, 30000, 0), 400);
	assert_int_equal(zk_backoff_ms(3, 200, 30000, 0), 800);
	assert_int_equal(zk_backoff_ms(8, 200, 30000, 0), 25600);
	assert_int_equal(zk_backoff_ms(9, 200, 30000, 0), 30000);
	assert_int_equal(zk_backoff_ms(4000000000u, 200, 30000, 0), 30000);
	/* Jitter takes off at most a quarter. */
	for (uint64_t r = 0; r < 5000; r += 7) {
		uint64_t d = zk_backoff_ms(3, 200, 30000, r * 2654435761u);
		assert_true(d >= 600 && d <= 800);
		d = zk_backoff_ms(20, 200, 30000, r * 2654435761u);
		assert_true(d >= 22500 && d <= 30000);
	}
}

static void test_chroot(void **state)
{
	(void)state;
	assert_string_equal(zk_chroot_of("127.0.0.1:2181"), "");
	assert_string_equal(zk_chroot_of("a:1,b:2/app/prod"), "/app/prod");
	assert_string_equal(zk_chroot_of("[::1]:2181/x"), "/x");
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(zk_state_name(ZK_DISCONNECTED), "disconnected");
	assert_string_equal(zk_session_event_name(ZK_SESSION_RESUMED), "resumed");
	assert_string_equal(zk_rc_name(ZNONODE), "ZNONODE");
	assert_string_equal(zk_rc_name(ZNOAUTH), "ZNOAUTH");
	assert_non_null(zk_rc_name(-12345));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transitions),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_chroot),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests_name("zk", tests, NULL, NULL);
}
