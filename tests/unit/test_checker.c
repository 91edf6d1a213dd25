/*
 * Unit tests of checker.c: one running check per member with an address,
 * kept across syncs, stopped for removed members, restarted on a reload,
 * dropped when the service has no check or goes away; results reach the
 * service's health policy. The ASan build checks nothing leaks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checker.h"
#include "service.h"

static struct service_conf conf_with(enum check_kind type)
{
	struct service_conf sc = { 0 };
	sc.health.failures_to_eject = 3;
	sc.health.base_ejection_ms = 5000;
	sc.health.max_ejection_ms = 60000;
	sc.health.max_ejected_percent = 50;
	sc.health.check.type = type;
	sc.health.check.interval_ms = 20;
	sc.health.check.timeout_ms = 500;
	sc.health.check.rise = 1;
	sc.health.check.fall = 1;
	return sc;
}

static void test_sync_follows_members(void **state)
{
	struct event_base *base = event_base_new();
	struct checker *ck = checker_new(base);
	struct service *svc = service_new("web", 1);
	struct service_conf sc = conf_with(CHECK_TCP);
	service_configure(svc, &sc);
	struct member_spec a[] = {
		{ "a", "127.0.0.1", 1, 0, 1, NULL, 0 },
		{ "b", "127.0.0.1", 2, 0, 1, NULL, 0 },
		{ "n", "no-such-host.invalid", 3, 0, 1, NULL, 0 },	/* no address: no check */
	};
	service_set_members(svc, a, 3, 0);
	checker_sync(ck, svc, &sc, false);
	assert_int_equal(checker_count(ck, svc), 2);
	checker_sync(ck, svc, &sc, false);		/* idempotent */
	assert_int_equal(checker_count(ck, svc), 2);
	checker_sync(ck, svc, &sc, true);		/* reload: started over */
	assert_int_equal(checker_count(ck, svc), 2);

	service_set_members(svc, a + 1, 1, 1);		/* a removed */
	checker_sync(ck, svc, &sc, false);
	assert_int_equal(checker_count(ck, svc), 1);

	struct service *other = service_new("db", 1);
	service_configure(other, &sc);
	service_set_members(other, a, 1, 0);
	checker_sync(ck, other, &sc, false);
	assert_int_equal(checker_count(ck, other), 1);
	assert_int_equal(checker_count(ck, svc), 1);

	struct service_conf none = conf_with(CHECK_NONE);
	checker_sync(ck, svc, &none, false);		/* the check was removed */
	assert_int_equal(checker_count(ck, svc), 0);
	assert_int_equal(checker_count(ck, other), 1);
	checker_forget(ck, other);			/* the service goes away */
	assert_int_equal(checker_count(ck, other), 0);

	checker_sync(ck, svc, &sc, false);
	checker_free(ck);				/* stops what still runs */
	service_retire(svc);
	service_put(svc);
	service_retire(other);
	service_put(other);
	event_base_free(base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/* A listening port passes the check: the member comes up through its service. */
static void test_results_reach_the_service(void **state)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 16), 0);
	socklen_t len = sizeof(sin);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);

	struct event_base *base = event_base_new();
	struct checker *ck = checker_new(base);
	struct service *svc = service_new("web", 1);
	struct service_conf sc = conf_with(CHECK_TCP);
	service_configure(svc, &sc);
	struct member_spec a[] = { { "a", "127.0.0.1", ntohs(sin.sin_port), 0, 1, NULL, 0 } };
	service_set_members(svc, a, 1, 0);
	struct backend *be = svc->members[0];
	assert_int_equal(be->health.state, HEALTH_CHECKING);
	checker_sync(ck, svc, &sc, false);

	/* interval 20ms: the first attempt starts within 20ms; give it a second */
	struct event *deadline = evtimer_new(base, on_deadline, base);
	struct timeval tv = { 1, 0 };
	evtimer_add(deadline, &tv);
	while (be->health.check_passes == 0 && event_base_got_break(base) == 0)
		event_base_loop(base, EVLOOP_ONCE);
	assert_true(be->health.check_passes > 0);
	assert_int_equal(be->health.state, HEALTH_HEALTHY);
	assert_true(backend_routable(be, now_ms()));

	event_free(deadline);
	checker_free(ck);
	service_retire(svc);
	service_put(svc);
	event_base_free(base);
	close(lfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sync_follows_members),
		cmocka_unit_test(test_results_reach_the_service),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
