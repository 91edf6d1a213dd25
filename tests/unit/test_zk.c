/*
 * Unit tests for the ZooKeeper layer without a server: the session
 * lifecycle's transition table, the reconnect backoff, chroot parsing; the
 * retry-after-error timer every watcher uses (zkretry); the request table's
 * completion, cancellation and ordering rules when there is no handle; and a
 * children watcher (zkset) that has no ZooKeeper. (The session itself is
 * tested against a real ZooKeeper in tests/integration/.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>

#include "util.h"
#include "zk.h"
#include "zkretry.h"
#include "zkset.h"
#include "zktunnel.h"
/* The request table and its queue are internal to src/zk/. */
#include "../../src/zk/zk_request.h"

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

/* The coalesce window: never longer than asked, at most a quarter shorter; resync: below it. */
static void test_read_delays(void **state)
{
	bool seen_low = false, seen_high = false;

	(void)state;
	assert_int_equal(zkset_delay_ms(0, true, 12345), 0);
	assert_int_equal(zkset_delay_ms(0, false, 12345), 0);
	assert_int_equal(zkset_delay_ms(200, true, 0), 200);
	for (uint64_t r = 0; r < 20000; r += 3) {
		uint64_t c = zkset_delay_ms(200, true, r * 2654435761u);
		uint64_t j = zkset_delay_ms(5000, false, r * 2654435761u);
		assert_true(c >= 150 && c <= 200);
		assert_true(j < 5000);
		seen_low |= j < 500;
		seen_high |= j >= 4500;
	}
	/* Spread over the whole window, not bunched at one end. */
	assert_true(seen_low && seen_high);
	assert_int_equal(zkset_delay_ms(1, false, UINT64_MAX), 0);
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

static void count_call(void *arg)
{
	(*(int *)arg)++;
}

static void test_retry_policy(void **state)
{
	struct event_base *base = event_base_new();
	struct zkretry r;
	struct rng rng;
	uint64_t d = 0;
	int calls = 0;

	(void)state;
	rng_seed(&rng, 42);
	zkretry_init(&r, base, &rng, 1000, 30000, count_call, &calls);
	assert_false(zkretry_pending(&r));
	/* the first retry waits base (less up to a quarter), never "at once" */
	assert_true(zkretry_arm(&r, &d));
	assert_true(d >= 750 && d <= 1000);
	assert_true(zkretry_pending(&r));
	/* a retry already pending is not pushed back nor counted */
	d = 0;
	assert_false(zkretry_arm(&r, &d));
	assert_int_equal(d, 0);
	assert_int_equal(r.attempt, 1);
	/* each further failure doubles */
	zkretry_cancel(&r);
	assert_false(zkretry_pending(&r));
	assert_true(zkretry_arm(&r, &d));
	assert_true(d >= 1500 && d <= 2000);
	/* up to the cap */
	for (int i = 0; i < 20; i++) {
		zkretry_cancel(&r);
		assert_true(zkretry_arm(&r, &d));
		assert_true(d <= 30000);
	}
	assert_true(d >= 22500);
	/* a success starts again from base */
	zkretry_succeeded(&r);
	zkretry_cancel(&r);
	assert_true(zkretry_arm(&r, &d));
	assert_true(d >= 750 && d <= 1000);
	zkretry_fini(&r);
	event_base_free(base);
	assert_int_equal(calls, 0);
}

static void test_retry_fires(void **state)
{
	struct event_base *base = event_base_new();
	struct zkretry r;
	struct rng rng;
	int calls = 0;

	(void)state;
	rng_seed(&rng, 7);
	zkretry_init(&r, base, &rng, 1, 1, count_call, &calls);
	assert_true(zkretry_arm(&r, NULL));
	event_base_dispatch(base);
	assert_int_equal(calls, 1);
	assert_false(zkretry_pending(&r));
	zkretry_fini(&r);
	event_base_free(base);
}

struct completion {
	int calls;			/* completions seen */
	int rc;				/* of the last */
	char path[64];			/* of the last */
};

static void record_done(void *arg, const struct zk_result *r)
{
	struct completion *c = arg;

	c->calls++;
	c->rc = r->rc;
	snprintf(c->path, sizeof(c->path), "%s", r->path);
}

/* Apply every queued reply, in order; how many there were. */
static int drain(struct zk_queue *q, struct zk_reqs *t)
{
	struct zk_event *ev = zk_queue_take(q);
	int n = 0;

	while (ev) {
		struct zk_event *next = ev->next;
		assert_int_equal(ev->kind, ZK_EV_REPLY);
		zk_req_reply(t, NULL, ev);
		zk_event_free(ev);
		ev = next;
		n++;
	}
	return n;
}

static void test_requests_without_handle(void **state)
{
	struct completion a = { 0 }, b = { 0 }, c = { 0 };
	struct zk_queue q;
	struct zk_reqs t;
	struct zk_event *ev;

	(void)state;
	assert_int_equal(zk_queue_init(&q), 0);
	zk_req_init(&t, &q);
	/* no handle: ZINVALIDSTATE, but never from inside the call */
	zk_req_get(&t, NULL, "/a", true, record_done, &a);
	zk_req_create(&t, NULL, "/b/c", "x", 1, ZOO_EPHEMERAL, ZK_ACL_OPEN, true, record_done, &b);
	zk_req_exists(&t, NULL, "/c", false, record_done, &c);
	assert_int_equal(a.calls + b.calls + c.calls, 0);
	/* a cancelled request completes silently */
	zk_req_cancel(&t, &c);
	zk_queue_ack(&q);
	assert_int_equal(drain(&q, &t), 3);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.rc, ZINVALIDSTATE);
	assert_string_equal(a.path, "/a");
	/* make_parents needs a handle: no retry, the create fails once */
	assert_int_equal(b.calls, 1);
	assert_int_equal(b.rc, ZINVALIDSTATE);
	assert_string_equal(b.path, "/b/c");
	assert_int_equal(c.calls, 0);
	assert_null(t.head);
	/* replies come back in the order asked */
	zk_req_delete(&t, NULL, "/1", -1, record_done, &a);
	zk_req_children(&t, NULL, "/2", true, record_done, &a);
	assert_int_equal(drain(&q, &t), 2);
	assert_int_equal(a.calls, 3);
	assert_string_equal(a.path, "/2");
	/* discarded: never completed, nothing left */
	zk_req_get(&t, NULL, "/d", false, record_done, &a);
	ev = zk_queue_take(&q);
	assert_non_null(ev);
	assert_null(ev->next);
	zk_req_discard(&t, ev->req);
	zk_event_free(ev);
	zk_req_discard_all(&t);
	assert_null(t.head);
	assert_int_equal(a.calls, 3);
	zk_queue_fini(&q);
}

static bool never_wanted(void *arg, const char *name)
{
	(*(int *)arg)++;
	return false;
}

static void never_read(void *arg, struct zkset_member *m, int rc, const char *data, size_t len)
{
	(*(int *)arg)++;
}

static void never_settled(void *arg)
{
	(*(int *)arg)++;
}

static void test_zkset_without_zookeeper(void **state)
{
	static const struct zkset_hooks hooks = {
		.wanted = never_wanted,
		.on_read = never_read,
		.on_settled = never_settled,
	};
	struct event_base *base = event_base_new();
	struct rng rng;
	struct zkset *set;
	size_t n = 1;
	int calls = 0;

	(void)state;
	rng_seed(&rng, 1);
	set = zkset_new(base, NULL, "svc=t", &rng, 60000, &hooks, &calls);
	assert_int_equal(zkset_phase(set), ZKSET_IDLE);
	assert_null(zkset_path(set));
	/* started, it waits for a session that never comes */
	zkset_start(set, "/services/t", "test");
	assert_string_equal(zkset_path(set), "/services/t");
	assert_int_equal(zkset_phase(set), ZKSET_IDLE);
	assert_true(zkset_needs_resync(set));
	assert_false(zkset_current(set));
	assert_null(zkset_members(set, &n));
	assert_int_equal(n, 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	zkset_reset(set, "test");
	assert_null(zkset_path(set));
	assert_int_equal(zkset_errors(set), 0);
	zkset_free(set);
	zkset_free(NULL);
	event_base_free(base);
	assert_int_equal(calls, 0);
}

/* The members the tunnel listens for: in order, chroot ignored, bad entries refused. */
static void test_tunnel_hosts(void **state)
{
	struct zktunnel_member m[3];

	assert_int_equal(zktunnel_parse_hosts("zk1:2281,10.0.0.2:2282,[::1]:2283/chroot/x", m, 3), 3);
	assert_string_equal(m[0].host, "zk1");
	assert_int_equal(m[0].port, 2281);
	assert_string_equal(m[1].host, "10.0.0.2");
	assert_int_equal(m[1].port, 2282);
	assert_string_equal(m[2].host, "::1");
	assert_int_equal(m[2].port, 2283);
	assert_int_equal(zktunnel_parse_hosts("zk1:2281", m, 3), 1);
	assert_int_equal(zktunnel_parse_hosts("a:1,b:2,c:3,d:4", m, 3), -1);
	assert_int_equal(zktunnel_parse_hosts("zk1", m, 3), -1);
	assert_int_equal(zktunnel_parse_hosts("zk1:", m, 3), -1);
	assert_int_equal(zktunnel_parse_hosts(":2181", m, 3), -1);
	assert_int_equal(zktunnel_parse_hosts("zk1:0", m, 3), -1);
	assert_int_equal(zktunnel_parse_hosts("zk1:65536", m, 3), -1);
	assert_int_equal(zktunnel_parse_hosts("zk1:99999999999", m, 3), -1);
	assert_int_equal(zktunnel_parse_hosts("zk1:2181,", m, 3), 1);
	assert_int_equal(zktunnel_parse_hosts("zk1:21x1", m, 3), -1);
	assert_int_equal(zktunnel_parse_hosts("", m, 3), -1);
	assert_int_equal(zktunnel_parse_hosts("/chroot", m, 3), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transitions),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_read_delays),
		cmocka_unit_test(test_chroot),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_retry_policy),
		cmocka_unit_test(test_retry_fires),
		cmocka_unit_test(test_requests_without_handle),
		cmocka_unit_test(test_zkset_without_zookeeper),
		cmocka_unit_test(test_tunnel_hosts),
	};
	return cmocka_run_group_tests_name("zk", tests, NULL, NULL);
}
