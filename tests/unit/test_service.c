/*
 * Unit tests of service.c: membership (identity across views, removal,
 * draining), the snapshots it publishes with their refcounts (the ASan build
 * checks nothing leaks), and the passive-health policy the service owns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "backend.h"
#include "backend_set.h"
#include "config.h"
#include "service.h"

static struct service_conf conf;

static struct config_ref *dummy_cfg(void)
{
	/* An empty config is enough: snapshots only keep it alive. */
	return config_ref_new(NULL);
}

static void test_members_keep_identity(void **state)
{
	struct service *svc = service_new("web", 2);
	struct member_spec a[] = {
		{ "i1", "127.0.0.1", 9001, 0, 1 },
		{ "i2", "127.0.0.1", 9002, 0, 1 },
	};
	assert_true(service_set_members(svc, a, 2, 1000));
	struct backend *i1 = svc->members[0];
	atomic_store(&i1->active, 3);
	atomic_store(&svc->members[1]->active, 1);	/* i2 has an open connection */

	/* Same instance again plus a new one: i1 keeps its object and state. */
	struct member_spec b[] = {
		{ "i1", "127.0.0.1", 9001, 0, 1 },
		{ "i3", "127.0.0.1", 9003, 0, 1 },
	};
	assert_true(service_set_members(svc, b, 2, 2000));
	assert_ptr_equal(svc->members[0], i1);
	assert_int_equal(atomic_load(&svc->members[0]->active), 3);
	assert_string_equal(svc->members[1]->id, "i3");
	/* i2 was removed: it drains. */
	assert_int_equal(svc->n_draining, 1);
	assert_string_equal(svc->draining[0]->id, "i2");
	assert_false(atomic_load(&svc->draining[0]->member));
	/* Its last connection ends: the next tick forgets it. */
	atomic_store(&svc->draining[0]->active, 0);
	service_tick(svc, 2500);
	assert_int_equal(svc->n_draining, 0);

	/* Unchanged view: nothing to do. */
	assert_false(service_set_members(svc, b, 2, 3000));

	/* Same id, new port: a new instance. */
	struct member_spec c[] = { { "i1", "127.0.0.1", 9101, 0, 1 } };
	assert_true(service_set_members(svc, c, 1, 4000));
	assert_ptr_not_equal(svc->members[0], i1);
	atomic_store(&i1->active, 0);

	service_retire(svc);
	service_put(svc);
}

static void test_snapshot_refcounts(void **state)
{
	struct service *svc = service_new("db", 2);
	struct member_spec a[] = { { "x", "127.0.0.1", 7000, 0, 2 } };
	service_set_members(svc, a, 1, 0);
	struct backend *x = svc->members[0];
	struct config_ref *cfg = dummy_cfg();

	assert_false(svc->ready);
	struct backend_set *s1 = backend_set_publish(svc, cfg, &conf, true);
	assert_int_equal(s1->version, 1);
	assert_int_equal(svc->version, 1);
	assert_true(svc->ready);
	assert_int_equal(s1->n, 1);
	assert_ptr_equal(s1->v[0], x);
	assert_ptr_equal(s1->svc, svc);
	/* x: the member list and the snapshot; the snapshot: us only (the
	 * service remembers its version, not the set); svc: us and the set */
	assert_int_equal(atomic_load(&x->refs), 2);
	assert_int_equal(atomic_load(&s1->refs), 1);
	assert_int_equal(atomic_load(&svc->refs), 2);

	struct backend_set *s2 = backend_set_publish(svc, cfg, &conf, true);
	assert_int_equal(s2->version, 2);
	assert_int_equal(atomic_load(&x->refs), 3);
	assert_int_equal(atomic_load(&svc->refs), 3);
	/* s1 is still held by us only */
	assert_int_equal(atomic_load(&s1->refs), 1);
	backend_set_put(s1);
	assert_int_equal(atomic_load(&x->refs), 2);

	/* A relay keeps a snapshot after the service is gone. */
	struct backend_set *held = backend_set_get(s2);
	backend_set_put(s2);
	service_retire(svc);
	service_put(svc);
	assert_int_equal(held->n, 1);
	assert_int_equal(atomic_load(&held->v[0]->refs), 1);
	assert_false(atomic_load(&held->v[0]->member));
	backend_set_put(held);
	config_ref_put(cfg);
}

static void test_unresolvable_member_never_routable(void **state)
{
	struct service *svc = service_new("bad", 2);
	struct member_spec a[] = { { "q", "no-such-host.invalid", 1, 0, 1 } };
	service_set_members(svc, a, 1, 0);
	assert_false(backend_routable(svc->members[0], 1000000));
	service_retire(svc);
	service_put(svc);
}

static void test_passive_failures_eject(void **state)
{
	struct service *svc = service_new("ej", 2);
	struct service_conf sc = { 0 };
	sc.health.failures_to_eject = 2;
	sc.health.base_ejection_ms = 5000;
	sc.health.max_ejection_ms = 60000;
	sc.health.max_ejected_percent = 100;
	sc.health.panic_threshold = 0;
	service_configure(svc, &sc);
	struct member_spec a[] = { { "a", "127.0.0.1", 7001, 0, 1 }, { "b", "127.0.0.1", 7002, 0, 1 } };
	service_set_members(svc, a, 2, now_ms());
	struct backend *be = svc->members[0];
	uint64_t t = now_ms();
	service_report_failure(svc, be, "test");
	assert_true(backend_routable(be, t));
	service_report_failure(svc, be, "test");
	assert_false(backend_routable(be, now_ms()));
	assert_true(backend_routable(be, now_ms() + 6000));
	assert_int_equal(atomic_load(&svc->ejections), 1);
	assert_int_equal(atomic_load(&be->connect_failures), 2);
	service_retire(svc);
	service_put(svc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_members_keep_identity),
		cmocka_unit_test(test_snapshot_refcounts),
		cmocka_unit_test(test_unresolvable_member_never_routable),
		cmocka_unit_test(test_passive_failures_eject),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
