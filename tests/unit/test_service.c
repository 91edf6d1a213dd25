/*
 * Unit tests of service.c: membership (identity across views, removal,
 * draining), the snapshots it publishes with their refcounts (the ASan build
 * checks nothing leaks), and the passive-health policy the service owns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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
		{ "i1", "127.0.0.1", 9001, 0, 1, NULL, 0 },
		{ "i2", "127.0.0.1", 9002, 0, 1, NULL, 0 },
	};
	assert_true(service_set_members(svc, a, 2, 1000));
	struct backend *i1 = svc->members[0];
	atomic_store(&i1->active, 3);
	atomic_store(&svc->members[1]->active, 1);	/* i2 has an open connection */

	/* Same instance again plus a new one: i1 keeps its object and state. */
	struct member_spec b[] = {
		{ "i1", "127.0.0.1", 9001, 0, 1, NULL, 0 },
		{ "i3", "127.0.0.1", 9003, 0, 1, NULL, 0 },
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
	struct member_spec c[] = { { "i1", "127.0.0.1", 9101, 0, 1, NULL, 0 } };
	assert_true(service_set_members(svc, c, 1, 4000));
	assert_ptr_not_equal(svc->members[0], i1);
	atomic_store(&i1->active, 0);

	service_retire(svc);
	service_put(svc);
}

/* Every connection ends: the next tick forgets the draining ones; then free. */
static void close_all_and_free(struct service *svc)
{
	for (size_t i = 0; i < svc->n_draining; i++)
		atomic_store(&svc->draining[i]->active, 0);
	for (size_t i = 0; i < svc->n_members; i++)
		atomic_store(&svc->members[i]->active, 0);
	service_tick(svc, 2500);
	assert_int_equal(svc->n_draining, 0);
	service_retire(svc);
	service_put(svc);
}

/*
 * A view of 50,000 members, then one that keeps every other one and adds as
 * many: identity kept for exactly the survivors, the rest drain. (The
 * membership is matched through sorted indexes; the quadratic scan it
 * replaced took minutes here under ASan.)
 */
#define BIG 50000
static void test_large_view_keeps_identity(void **state)
{
	struct service *svc = service_new("big", 1);
	struct member_spec *a = calloc(BIG, sizeof(*a)), *b = calloc(BIG, sizeof(*b));
	char (*ids)[16] = calloc(2 * BIG, sizeof(*ids));
	struct backend **first = calloc(BIG, sizeof(*first));

	(void)state;
	for (size_t i = 0; i < 2 * BIG; i++)
		snprintf(ids[i], sizeof(ids[i]), "id%06zu", i);
	for (size_t i = 0; i < BIG; i++)
		a[i] = (struct member_spec){ ids[i], "127.0.0.1", (uint16_t)(1 + i % 60000), 0, 1, NULL, 0 };
	assert_true(service_set_members(svc, a, BIG, 1000));
	for (size_t i = 0; i < BIG; i++)
		first[i] = svc->members[i];
	/* An open connection on every member, so the removed ones stay draining. */
	for (size_t i = 0; i < BIG; i++)
		atomic_store(&svc->members[i]->active, 1);
	/* b: the even members of a (reversed order), then BIG/2 new ones. */
	for (size_t i = 0; i < BIG / 2; i++)
		b[i] = a[BIG - 2 - 2 * i];
	for (size_t i = BIG / 2; i < BIG; i++)
		b[i] = (struct member_spec){ ids[BIG + i], "127.0.0.1", 7, 0, 1, NULL, 0 };
	assert_true(service_set_members(svc, b, BIG, 2000));
	assert_int_equal(svc->n_members, BIG);
	for (size_t i = 0; i < BIG / 2; i++)
		assert_ptr_equal(svc->members[i], first[BIG - 2 - 2 * i]);
	for (size_t i = BIG / 2; i < BIG; i++)
		assert_string_equal(svc->members[i]->id, ids[BIG + i]);
	assert_int_equal(svc->n_draining, BIG / 2);
	for (size_t i = 0; i < svc->n_draining; i++)
		assert_false(atomic_load(&svc->draining[i]->member));
	close_all_and_free(svc);
	free(first);
	free(ids);
	free(b);
	free(a);
}

/* A view sorted by id (as discovery delivers them) takes the walk, not the search. */
static void test_sorted_view_keeps_identity(void **state)
{
	enum { N = 3000 };
	struct service *svc = service_new("sorted", 1);
	struct member_spec *a = calloc(N, sizeof(*a)), *c = calloc(N, sizeof(*c));
	char (*ids)[16] = calloc(2 * N, sizeof(*ids));
	struct backend **first = calloc(N, sizeof(*first));
	size_t n = 0;

	(void)state;
	for (size_t i = 0; i < 2 * N; i++)
		snprintf(ids[i], sizeof(ids[i]), "id%06zu", i);
	for (size_t i = 0; i < N; i++)
		a[i] = (struct member_spec){ ids[i], "127.0.0.1", (uint16_t)(1 + i), 0, 1, NULL, 0 };
	assert_true(service_set_members(svc, a, N, 1000));
	for (size_t i = 0; i < N; i++) {
		first[i] = svc->members[i];
		atomic_store(&first[i]->active, 1);
	}
	/* Two of every three stay (one with a new port: a new backend), then new ids. */
	for (size_t i = 0; i < N; i++) {
		if (i % 3 == 0)
			continue;
		c[n] = a[i];
		if (i == 1)
			c[n].port = 7;
		n++;
	}
	for (size_t i = N; n < N; i++)
		c[n++] = (struct member_spec){ ids[i], "127.0.0.1", 7, 0, 1, NULL, 0 };
	assert_true(service_set_members(svc, c, N, 2000));
	for (size_t i = 0, k = 0; i < N; i++) {
		if (i % 3 == 0)
			continue;
		if (i == 1)
			assert_ptr_not_equal(svc->members[k], first[i]);
		else
			assert_ptr_equal(svc->members[k], first[i]);
		k++;
	}
	/* The dropped third, and the one whose port changed, drain. */
	assert_int_equal(svc->n_draining, N / 3 + 1);
	close_all_and_free(svc);
	free(first);
	free(ids);
	free(c);
	free(a);
}

static void test_snapshot_refcounts(void **state)
{
	struct service *svc = service_new("db", 2);
	struct member_spec a[] = { { "x", "127.0.0.1", 7000, 0, 2, NULL, 0 } };
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
	struct member_spec a[] = { { "q", "no-such-host.invalid", 1, 0, 1, NULL, 0 } };
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
	struct member_spec a[] = { { "a", "127.0.0.1", 7001, 0, 1, NULL, 0 }, { "b", "127.0.0.1", 7002, 0, 1, NULL, 0 } };
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

/* A service with health settings (no active check unless check_type says). */
static struct service *health_svc(const char *name, uint32_t failures, uint32_t max_pct,
				  uint32_t panic, enum check_kind check_type)
{
	struct service *svc = service_new(name, 1);
	struct service_conf sc = { 0 };
	sc.health.failures_to_eject = failures;
	sc.health.base_ejection_ms = 5000;
	sc.health.max_ejection_ms = 60000;
	sc.health.max_ejected_percent = max_pct;
	sc.health.panic_threshold = panic;
	sc.health.check.type = check_type;
	sc.health.check.rise = 2;
	sc.health.check.fall = 1;
	service_configure(svc, &sc);
	return svc;
}

static void drop(struct service *svc)
{
	service_retire(svc);
	service_put(svc);
}

/* max_ejected_percent counts the service's members: 50% of 2 ejects one. */
static void test_max_ejected_percent_is_service_wide(void **state)
{
	struct service *svc = health_svc("pct", 1, 50, 0, CHECK_NONE);
	struct member_spec a[] = { { "a", "127.0.0.1", 7001, 0, 1, NULL, 0 }, { "b", "127.0.0.1", 7002, 0, 1, NULL, 0 } };
	service_set_members(svc, a, 2, now_ms());
	struct backend *x = svc->members[0], *y = svc->members[1];
	service_report_failure(svc, x, "test");
	assert_false(backend_routable(x, now_ms()));
	assert_int_equal(x->health.state, HEALTH_EJECTED);
	service_report_failure(svc, y, "test");
	assert_int_equal(y->health.state, HEALTH_HEALTHY);
	assert_true(backend_routable(y, now_ms()));
	assert_int_equal(atomic_load(&svc->ejections), 1);
	assert_int_equal(atomic_load(&y->connect_failures), 1);

	/* x's ejection ends: room again, and y's streak (still counting) ejects it at once. */
	service_tick(svc, x->health.ejected_until_ms);
	assert_int_equal(x->health.state, HEALTH_HEALTHY);
	service_report_failure(svc, y, "test");
	assert_int_equal(y->health.state, HEALTH_EJECTED);
	assert_int_equal(atomic_load(&svc->ejections), 2);
	drop(svc);
}

/*
 * A collapse hold marks what ZooKeeper no longer lists; a marked member that
 * fails is dropped at its first failure, past max_ejected_percent and
 * failures_to_eject; one that serves keeps serving; the hold's end brings a
 * dropped member back through a fresh backend.
 */
static void test_held_members_drop_at_first_failure(void **state)
{
	struct service *svc = health_svc("held", 3, 50, 50, CHECK_NONE);
	struct member_spec a[] = {
		{ "a", "127.0.0.1", 7001, 0, 1, NULL, 0 },
		{ "b", "127.0.0.1", 7002, 0, 1, NULL, 0 },
		{ "c", "127.0.0.1", 7003, 0, 1, NULL, 0 },
	};
	struct member_spec listed[] = {
		{ "a", "127.0.0.1", 7001, 0, 1, NULL, 0 },
		{ "c", "127.0.0.1", 7013, 0, 1, NULL, 0 },	/* c moved */
	};
	uint64_t now = now_ms();
	service_set_members(svc, a, 3, now);
	struct backend *x = svc->members[0], *y = svc->members[1], *z = svc->members[2];

	assert_int_equal(service_hold(svc, true, listed, 2, now + 30000), 0);
	assert_int_equal(x->held, BACKEND_HELD_NONE);
	assert_int_equal(y->held, BACKEND_HELD_REMOVED);
	assert_int_equal(z->held, BACKEND_HELD_CHANGED);
	assert_true(y->held_until_ms == now + 30000);

	/* A success changes nothing: a held member that serves keeps serving. */
	service_report_success(svc, y);
	assert_true(atomic_load(&y->member) && backend_routable(y, now_ms()));

	/* One failure each drops both; 50% of 3 would have let one be ejected, after 3. */
	service_report_failure(svc, y, "test");
	service_report_failure(svc, z, "test");
	assert_true(y->dropped && z->dropped);
	assert_false(atomic_load(&y->member));
	assert_false(atomic_load(&z->member));
	assert_int_equal(atomic_load(&svc->held_drops), 2);
	assert_int_equal(atomic_load(&svc->ejections), 0);
	/* An unmarked member is under the usual policy: one failure of three does nothing. */
	service_report_failure(svc, x, "test");
	assert_false(x->dropped);
	assert_true(atomic_load(&x->member));
	assert_int_equal(x->health.state, HEALTH_HEALTHY);
	/* The dropped ones are out of the pool: no panic over 1 of 1. */
	service_tick(svc, now_ms());
	assert_false(svc->panic);

	/* ZooKeeper lists b again (still held): b is to come back; the view is re-applied. */
	struct member_spec again[] = { a[0], a[1], listed[1] };
	assert_int_equal(service_hold(svc, true, again, 3, now + 30000), 1);
	assert_true(service_set_members(svc, a, 3, now_ms()));
	assert_ptr_equal(svc->members[0], x);
	assert_ptr_not_equal(svc->members[1], y);	/* made afresh */
	assert_ptr_not_equal(svc->members[2], z);
	assert_true(atomic_load(&svc->members[1]->member));
	assert_false(svc->members[1]->dropped);

	/* The hold ends: no marks left, on members or draining ones. */
	assert_int_equal(service_hold(svc, false, NULL, 0, 0), 0);
	for (size_t i = 0; i < svc->n_members; i++)
		assert_int_equal(svc->members[i]->held, BACKEND_HELD_NONE);
	for (size_t i = 0; i < svc->n_draining; i++)
		assert_int_equal(svc->draining[i]->held, BACKEND_HELD_NONE);
	drop(svc);
}

/* A failed active check of a held member drops it too. */
static void test_held_member_dropped_by_failed_check(void **state)
{
	struct service *svc = health_svc("heldck", 3, 50, 0, CHECK_TCP);
	struct member_spec a[] = { { "a", "127.0.0.1", 7001, 0, 1, NULL, 0 }, { "b", "127.0.0.1", 7002, 0, 1, NULL, 0 } };
	service_set_members(svc, a, 2, now_ms());
	struct backend *y = svc->members[1];
	service_hold(svc, true, a, 1, now_ms() + 1000);
	assert_int_equal(y->held, BACKEND_HELD_REMOVED);
	service_check_result(svc, y, true, NULL, now_ms());
	assert_false(y->dropped);
	service_check_result(svc, y, false, "refused", now_ms());
	assert_true(y->dropped);
	assert_false(atomic_load(&y->member));
	assert_int_equal(atomic_load(&svc->held_drops), 1);
	/* The hold ends without applying: y is to serve again. */
	assert_int_equal(service_hold(svc, false, NULL, 0, 0), 1);
	drop(svc);
}

/* A member still waiting for its name is no instance yet: it does not make room. */
static void test_unresolved_members_do_not_count(void **state)
{
	struct service *svc = health_svc("names", 1, 50, 0, CHECK_NONE);
	struct member_spec a[] = {
		{ "a", "127.0.0.1", 7001, 0, 1, NULL, 0 },
		{ "b", "no-such-host.invalid", 7002, 0, 1, NULL, 0 },
	};
	service_set_members(svc, a, 2, now_ms());
	struct backend *x = svc->members[0];
	service_report_failure(svc, x, "test");
	/* 50% of one instance with an address is none */
	assert_int_equal(x->health.state, HEALTH_HEALTHY);
	assert_true(backend_routable(x, now_ms()));
	assert_int_equal(atomic_load(&svc->ejections), 0);
	drop(svc);
}

/* A success resets the failure streak; failures_to_eject counts in a row. */
static void test_success_resets_the_streak(void **state)
{
	struct service *svc = health_svc("streak", 2, 100, 0, CHECK_NONE);
	struct member_spec a[] = { { "a", "127.0.0.1", 7001, 0, 1, NULL, 0 } };
	service_set_members(svc, a, 1, now_ms());
	struct backend *x = svc->members[0];
	service_report_success(svc, x);		/* no streak: nothing to do */
	service_report_failure(svc, x, "test");
	assert_int_equal(x->health.consecutive_failures, 1);
	service_report_success(svc, x);
	assert_int_equal(x->health.consecutive_failures, 0);
	service_report_failure(svc, x, "test");
	assert_int_equal(x->health.state, HEALTH_HEALTHY);
	service_report_failure(svc, x, "test");
	assert_int_equal(x->health.state, HEALTH_EJECTED);
	assert_int_equal(atomic_load(&x->connect_failures), 3);
	drop(svc);
}

/* service_tick: ejections end, panic is entered once and left. */
static void test_tick_panic_and_return(void **state)
{
	struct service *svc = health_svc("panic", 1, 100, 50, CHECK_NONE);
	struct member_spec a[] = { { "a", "127.0.0.1", 7001, 0, 1, NULL, 0 }, { "b", "127.0.0.1", 7002, 0, 1, NULL, 0 } };
	service_set_members(svc, a, 2, now_ms());
	struct backend *x = svc->members[0], *y = svc->members[1];
	uint64_t t = now_ms();

	service_report_failure(svc, x, "test");
	service_tick(svc, t);
	assert_false(svc->panic);		/* 1 of 2 routable is not below 50% */
	service_report_failure(svc, y, "test");
	service_tick(svc, t);
	assert_true(svc->panic);
	service_tick(svc, t + 1);
	assert_int_equal(atomic_load(&svc->panics), 1);	/* entered once */

	uint64_t back = x->health.ejected_until_ms > y->health.ejected_until_ms
		? x->health.ejected_until_ms : y->health.ejected_until_ms;
	service_tick(svc, back);
	assert_false(svc->panic);
	assert_true(backend_routable(x, back));
	assert_true(backend_routable(y, back));
	assert_int_equal(atomic_load(&svc->panics), 1);
	drop(svc);
}

/* With an active check, a new member waits for one pass; `fall` failures take it down. */
static void test_check_results(void **state)
{
	struct service *svc = health_svc("chk", 3, 50, 0, CHECK_TCP);
	struct member_spec a[] = { { "a", "127.0.0.1", 7001, 0, 1, NULL, 0 } };
	service_set_members(svc, a, 1, 1000);
	struct backend *x = svc->members[0];
	assert_int_equal(x->health.state, HEALTH_CHECKING);
	assert_false(backend_routable(x, UINT64_MAX - 1));
	service_check_result(svc, x, true, "ok", 2000);
	assert_int_equal(x->health.state, HEALTH_HEALTHY);
	assert_true(backend_routable(x, 2000));
	assert_int_equal(atomic_load(&x->serving_since_ms), 2000);	/* slow start from here */
	service_check_result(svc, x, false, "connect refused", 3000);
	assert_int_equal(x->health.state, HEALTH_CHECKING);
	assert_false(backend_routable(x, UINT64_MAX - 1));
	assert_int_equal(atomic_load(&svc->check_failures), 1);

	/* The check is removed by a reload: the next tick brings the member back. */
	struct service_conf sc = { 0 };
	sc.health.failures_to_eject = 3;
	sc.health.base_ejection_ms = 5000;
	sc.health.max_ejection_ms = 60000;
	sc.health.check.type = CHECK_NONE;
	service_configure(svc, &sc);
	service_tick(svc, 4000);
	assert_int_equal(x->health.state, HEALTH_HEALTHY);
	assert_true(backend_routable(x, 4000));
	drop(svc);
}

/* service_has_member: the resolver's answer finds its service by membership. */
static void test_has_member(void **state)
{
	struct service *svc = service_new("m", 1);
	struct member_spec a[] = { { "a", "127.0.0.1", 7001, 0, 1, NULL, 0 } };
	service_set_members(svc, a, 1, 0);
	struct backend *x = backend_get(svc->members[0]);
	assert_true(service_has_member(svc, x));
	assert_string_equal(x->svc_name, "m");
	service_set_members(svc, NULL, 0, 1);
	assert_false(service_has_member(svc, x));
	backend_put(x);
	drop(svc);
}

/* The view's names are what /services and the metrics label print. */
static void test_view_names(void **state)
{
	assert_string_equal(service_view_name(SERVICE_VIEW_PENDING), "pending");
	assert_string_equal(service_view_name(SERVICE_VIEW_STATIC), "static");
	assert_string_equal(service_view_name(SERVICE_VIEW_CONNECTED), "connected");
	assert_string_equal(service_view_name(SERVICE_VIEW_DISCONNECTED), "disconnected");
	assert_string_equal(service_view_name(SERVICE_VIEW_CACHED), "cached");
	assert_true(service_view_in_sync(SERVICE_VIEW_STATIC));
	assert_true(service_view_in_sync(SERVICE_VIEW_CONNECTED));
	assert_false(service_view_in_sync(SERVICE_VIEW_PENDING));
	assert_false(service_view_in_sync(SERVICE_VIEW_DISCONNECTED));
	assert_false(service_view_in_sync(SERVICE_VIEW_CACHED));
	struct service *svc = service_new("v", 1);
	assert_int_equal(svc->view, SERVICE_VIEW_PENDING);
	service_put(svc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_members_keep_identity),
		cmocka_unit_test(test_large_view_keeps_identity),
		cmocka_unit_test(test_sorted_view_keeps_identity),
		cmocka_unit_test(test_snapshot_refcounts),
		cmocka_unit_test(test_unresolvable_member_never_routable),
		cmocka_unit_test(test_passive_failures_eject),
		cmocka_unit_test(test_max_ejected_percent_is_service_wide),
		cmocka_unit_test(test_unresolved_members_do_not_count),
		cmocka_unit_test(test_held_members_drop_at_first_failure),
		cmocka_unit_test(test_held_member_dropped_by_failed_check),
		cmocka_unit_test(test_success_resets_the_streak),
		cmocka_unit_test(test_tick_panic_and_return),
		cmocka_unit_test(test_check_results),
		cmocka_unit_test(test_has_member),
		cmocka_unit_test(test_view_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
