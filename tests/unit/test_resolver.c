/*
 * Unit tests of the resolver with a real event base and the real lookup
 * thread. Only names that need no DNS server are used ("localhost", from
 * /etc/hosts); slow, failing and retried lookups against a DNS server of the
 * test's own are in tests/integration/test_resolver.py. The ASan build checks
 * that cancelling at any point leaks nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>

#include "backend.h"
#include "resolver.h"
#include "service.h"

struct seen {
	struct event_base *base;
	struct backend *be;
	int calls;
};

/* As the control's hook does once the policy admits the address. */
static void on_done(void *arg, struct backend *be, const struct net_addr *addr)
{
	struct seen *s = arg;
	backend_set_addr(be, addr);
	s->be = be;
	s->calls++;
	event_base_loopbreak(s->base);
}

/* Run the loop until on_done or 10 s. */
static void run(struct seen *s)
{
	struct timeval tv = { 10, 0 };
	event_base_loopexit(s->base, &tv);
	event_base_dispatch(s->base);
}

static const struct resolver_policy any = { .allow_hostnames = true, .max_lookups = 4,
					    .timeout_ms = 10000 };

static struct backend *named(struct service *svc, const char *id, const char *host)
{
	struct member_spec m = { id, host, 9001, 0, 1, NULL, 0 };
	service_set_members(svc, &m, 1, 1000);
	return svc->members[0];
}

static void test_literal_needs_no_lookup(void **state)
{
	struct service *svc = service_new("web", 1);
	struct backend *be = named(svc, "a", "127.0.0.1");
	assert_true(backend_has_addr(be));
	assert_true(backend_routable(be, 1000));
	be = named(svc, "b", "::1");
	assert_true(backend_has_addr(be));
	be = named(svc, "c", "localhost");
	assert_false(backend_has_addr(be));
	assert_false(backend_routable(be, UINT64_MAX - 1));	/* never, until resolved */
	service_retire(svc);
	service_put(svc);
}

static void test_name_resolves_on_the_loop(void **state)
{
	struct seen s = { .base = event_base_new() };
	struct resolver *r = resolver_new(s.base, on_done, &s);
	assert_non_null(r);
	struct service *svc = service_new("web", 1);
	struct backend *be = named(svc, "a", "localhost");

	resolver_submit(r, be, &any);
	resolver_submit(r, be, &any);		/* queued once only */
	assert_true(be->resolving);
	struct resolver_stats st;
	resolver_stats(r, &st);
	assert_int_equal(st.pending, 1);

	run(&s);
	assert_int_equal(s.calls, 1);
	assert_ptr_equal(s.be, be);
	assert_true(backend_has_addr(be));
	assert_false(be->resolving);
	int fam = be->addr.ss.ss_family;
	assert_true(fam == AF_INET || fam == AF_INET6);
	uint16_t port = fam == AF_INET ? ((struct sockaddr_in *)&be->addr.ss)->sin_port
				       : ((struct sockaddr_in6 *)&be->addr.ss)->sin6_port;
	assert_int_equal(ntohs(port), 9001);
	resolver_stats(r, &st);
	assert_int_equal(st.resolved, 1);
	assert_int_equal(st.failed, 0);
	assert_int_equal(st.pending, 0);

	resolver_submit(r, be, &any);		/* has an address: nothing to do */
	resolver_stats(r, &st);
	assert_int_equal(st.pending, 0);

	resolver_free(r);
	service_retire(svc);
	service_put(svc);
	event_base_free(s.base);
}

static void test_removed_member_is_dropped(void **state)
{
	struct seen s = { .base = event_base_new() };
	struct resolver *r = resolver_new(s.base, on_done, &s);
	struct service *svc = service_new("web", 1);
	struct backend *be = backend_get(named(svc, "a", "localhost"));
	resolver_submit(r, be, &any);
	service_set_members(svc, NULL, 0, 2000);	/* it leaves at once */
	assert_false(atomic_load(&be->member));

	/* The answer comes, is dropped; on_done never runs. */
	for (int i = 0; i < 200; i++) {
		struct resolver_stats st;
		resolver_stats(r, &st);
		if (st.pending == 0)
			break;
		event_base_loop(s.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		struct timeval tv = { 0, 10000 };
		select(0, NULL, NULL, NULL, &tv);
	}
	struct resolver_stats st;
	resolver_stats(r, &st);
	assert_int_equal(st.pending, 0);
	assert_int_equal(s.calls, 0);
	assert_false(backend_has_addr(be));
	backend_put(be);
	resolver_free(r);
	service_retire(svc);
	service_put(svc);
	event_base_free(s.base);
}

/* Free with lookups queued, in flight and done but not applied: no leak, no call. */
static void test_free_cancels(void **state)
{
	struct seen s = { .base = event_base_new() };
	struct resolver *r = resolver_new(s.base, on_done, &s);
	struct service *svc = service_new("web", 1);
	struct member_spec m[8];
	char ids[8][8];
	for (int i = 0; i < 8; i++) {
		snprintf(ids[i], sizeof(ids[i]), "i%d", i);
		m[i] = (struct member_spec){ ids[i], "localhost", (uint16_t)(9000 + i), 0, 1, NULL, 0 };
	}
	service_set_members(svc, m, 8, 1000);
	for (int i = 0; i < 8; i++)
		resolver_submit(r, svc->members[i], &any);
	resolver_free(r);
	assert_int_equal(s.calls, 0);
	for (int i = 0; i < 8; i++)
		assert_false(svc->members[i]->resolving);
	service_retire(svc);
	service_put(svc);
	event_base_free(s.base);
}

/* allow_hostnames false: refused at once, counted, never looked up; a reload may lift it. */
static void test_names_refused(void **state)
{
	struct seen s = { .base = event_base_new() };
	struct resolver *r = resolver_new(s.base, on_done, &s);
	struct service *svc = service_new("web", 1);
	struct backend *be = named(svc, "a", "localhost");
	const struct resolver_policy no = { .allow_hostnames = false, .max_lookups = 4,
					    .timeout_ms = 1000 };
	struct resolver_stats st;

	resolver_submit(r, be, &no);
	assert_string_equal(be->refused, resolver_refused_hostname);
	assert_false(be->resolving);
	resolver_submit(r, be, &no);
	resolver_stats(r, &st);
	assert_int_equal(st.refused, 1);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.threads, 0);

	resolver_submit(r, be, &any);
	assert_false(backend_refused(be));
	run(&s);
	assert_int_equal(s.calls, 1);
	assert_true(backend_has_addr(be));
	resolver_free(r);
	service_retire(svc);
	service_put(svc);
	event_base_free(s.base);
}

/* max_lookups: never more threads for one service than its cap; every name still resolves. */
static void test_lookups_capped_per_service(void **state)
{
	struct seen s = { .base = event_base_new() };
	struct resolver *r = resolver_new(s.base, on_done, &s);
	struct service *svc = service_new("web", 1);
	const struct resolver_policy two = { .allow_hostnames = true, .max_lookups = 2,
					     .timeout_ms = 10000 };
	struct member_spec m[12];
	char ids[12][8];
	struct resolver_stats st;
	uint64_t most = 0;

	for (int i = 0; i < 12; i++) {
		snprintf(ids[i], sizeof(ids[i]), "i%d", i);
		m[i] = (struct member_spec){ ids[i], "localhost", (uint16_t)(9000 + i), 0, 1, NULL, 0 };
	}
	service_set_members(svc, m, 12, 1000);
	for (int i = 0; i < 12; i++)
		resolver_submit(r, svc->members[i], &two);
	for (int i = 0; i < 1000; i++) {
		resolver_stats(r, &st);
		most = st.threads > most ? st.threads : most;
		if (st.pending == 0)
			break;
		event_base_loop(s.base, EVLOOP_ONCE);
	}
	resolver_stats(r, &st);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.resolved, 12);
	assert_int_equal(st.threads, 0);
	assert_int_equal(most, 2);
	assert_int_equal(s.calls, 12);
	resolver_free(r);
	service_retire(svc);
	service_put(svc);
	event_base_free(s.base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literal_needs_no_lookup),
		cmocka_unit_test(test_name_resolves_on_the_loop),
		cmocka_unit_test(test_removed_member_is_dropped),
		cmocka_unit_test(test_free_cancels),
		cmocka_unit_test(test_names_refused),
		cmocka_unit_test(test_lookups_capped_per_service),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
