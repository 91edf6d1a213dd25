/*
 * Unit tests of the pool: its pure policy (prewarm shares, backoff), and its
 * mechanics on a private event base, as a worker drives them, with
 * socketpairs and unix sockets standing in for backends (no network).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "backend.h"
#include "backend_set.h"
#include "pool.h"
#include "service.h"
#include "util.h"

static void test_prewarm_share(void **state)
{
	/* Shares add up to the total and differ by at most one. */
	for (uint32_t total = 0; total < 50; total++) {
		for (unsigned n = 1; n <= 8; n++) {
			uint32_t sum = 0, lo = UINT32_MAX, hi = 0;
			for (unsigned id = 0; id < n; id++) {
				uint32_t s = pool_prewarm_share(total, n, id);
				sum += s;
				lo = s < lo ? s : lo;
				hi = s > hi ? s : hi;
			}
			assert_int_equal(sum, total);
			assert_true(hi - lo <= 1);
		}
	}
	assert_int_equal(pool_prewarm_share(5, 2, 0), 3);
	assert_int_equal(pool_prewarm_share(5, 2, 1), 2);
	assert_int_equal(pool_prewarm_share(7, 0, 0), 7);
}

static void test_backoff(void **state)
{
	assert_int_equal(pool_backoff_next(0), 100);
	assert_int_equal(pool_backoff_next(100), 200);
	assert_int_equal(pool_backoff_next(200), 400);
	assert_int_equal(pool_backoff_next(1600), 3200);
	assert_int_equal(pool_backoff_next(3200), 5000);
	assert_int_equal(pool_backoff_next(5000), 5000);
}

static void test_names(void **state)
{
	assert_string_equal(pool_discard_name(POOL_DISCARD_STALE), "stale");
	assert_string_equal(pool_discard_name(POOL_DISCARD_COUNT), "?");
}

/* --- Mechanics ------------------------------------------------------------ */

struct fx {
	struct event_base *base;		/* owned */
	struct event *reap;			/* owned; what the worker's reaper does */
	struct pool_worker pw;
	struct service *svc;			/* owned ref */
	struct backend *be;			/* owned ref */
	struct pool_conf pc;
	char dir[64];				/* temporary directory of the unix socket */
	char path[108];
};

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	pool_worker_reap(arg);
}

/* One backend of one worker's service; it has a unix address, nobody listening yet. */
static struct fx *fx_new(void)
{
	struct fx *fx = xcalloc(1, sizeof(*fx));
	fx->base = event_base_new();
	assert_non_null(fx->base);
	fx->reap = event_new(fx->base, -1, 0, on_reap, &fx->pw);
	pool_worker_init(&fx->pw, fx->base, fx->reap, 0, 1);
	fx->svc = service_new("p", 1);
	fx->be = backend_new(fx->svc->name, 1, "be", "be.invalid", 1, 0, 1, now_ms());
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/zklb-test-pool-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/be", fx->dir);
	char spec[128], err[128];
	snprintf(spec, sizeof(spec), "unix:%s", fx->path);
	struct net_addr a;
	assert_true(net_addr_parse(spec, &a, err, sizeof(err)));
	backend_set_addr(fx->be, &a);
	atomic_store(&fx->be->eligible_after_ms, 0);	/* routable */
	fx->pc = (struct pool_conf){ .max_idle = 4, .idle_timeout_ms = 10000 };
	return fx;
}

static void fx_free(struct fx *fx)
{
	pool_worker_close(&fx->pw);
	event_free(fx->reap);
	backend_put(fx->be);
	service_put(fx->svc);
	unlink(fx->path);
	rmdir(fx->dir);
	event_base_free(fx->base);
	free(fx);
}

static void fx_run_ms(struct fx *fx, uint64_t ms)
{
	uint64_t end = now_ms() + ms;
	while (now_ms() < end) {
		event_base_loop(fx->base, EVLOOP_NONBLOCK);
		usleep(500);
	}
}

/* A connected pair: [0] goes to the pool, [1] plays the backend. */
static void fx_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static uint64_t discards(struct fx *fx, enum pool_discard d)
{
	return fx->pw.discards[d];
}

static void test_put_take(void **state)
{
	struct fx *fx = fx_new();
	int sv[2];
	fx_pair(sv);
	struct framing *fr = framing_new(REUSE_REDIS);
	assert_true(pool_put(&fx->pw, fx->be, sv[0], NULL, fr, &fx->pc));
	assert_int_equal(atomic_load(&fx->be->idle), 1);
	assert_int_equal(fx->be->slots[0].n_idle, 1);

	struct framing *got = NULL;
	struct tls_conn *tls = NULL;
	int fd = pool_take(&fx->pw, fx->be, &got, &tls);
	assert_int_equal(fd, sv[0]);
	assert_ptr_equal(got, fr);
	assert_int_equal(atomic_load(&fx->be->idle), 0);
	assert_int_equal(atomic_load(&fx->be->upstream_reused), 1);
	/* Empty now. */
	assert_int_equal(pool_take(&fx->pw, fx->be, &got, &tls), -1);
	for (int d = 0; d < POOL_DISCARD_COUNT; d++)
		assert_int_equal(discards(fx, d), 0);
	framing_free(fr);
	close(fd);
	close(sv[1]);
	fx_free(fx);
}

/* A connection the backend closed is never handed out, whether or not the loop saw it. */
static void test_take_checks_alive(void **state)
{
	struct fx *fx = fx_new();
	int sv[2];
	fx_pair(sv);
	assert_true(pool_put(&fx->pw, fx->be, sv[0], NULL, NULL, &fx->pc));
	close(sv[1]);
	struct framing *got = NULL;
	struct tls_conn *tls = NULL;
	assert_int_equal(pool_take(&fx->pw, fx->be, &got, &tls), -1);
	assert_int_equal(discards(fx, POOL_DISCARD_STALE), 1);
	assert_int_equal(atomic_load(&fx->be->idle), 0);
	fx_free(fx);
}

static void test_idle_watch(void **state)
{
	struct fx *fx = fx_new();
	int a[2], b[2];
	fx_pair(a);
	fx_pair(b);
	assert_true(pool_put(&fx->pw, fx->be, a[0], NULL, NULL, &fx->pc));
	assert_true(pool_put(&fx->pw, fx->be, b[0], NULL, NULL, &fx->pc));
	assert_int_equal(send(a[1], "x", 1, 0), 1);	/* nobody asked */
	close(b[1]);					/* closed while idle */
	for (uint64_t end = now_ms() + 10000; fx->pw.all && now_ms() < end;)
		fx_run_ms(fx, 5);
	assert_int_equal(discards(fx, POOL_DISCARD_DATA), 1);
	assert_int_equal(discards(fx, POOL_DISCARD_CLOSED), 1);
	assert_int_equal(atomic_load(&fx->be->idle), 0);
	assert_null(fx->pw.all);
	close(a[1]);
	fx_free(fx);
}

static void test_idle_timeout(void **state)
{
	struct fx *fx = fx_new();
	fx->pc.idle_timeout_ms = 300;
	int sv[2];
	fx_pair(sv);
	assert_true(pool_put(&fx->pw, fx->be, sv[0], NULL, NULL, &fx->pc));
	fx_run_ms(fx, 20);
	assert_int_equal(atomic_load(&fx->be->idle), 1);
	fx_run_ms(fx, 1000);
	assert_int_equal(discards(fx, POOL_DISCARD_IDLE_TIMEOUT), 1);
	assert_int_equal(atomic_load(&fx->be->idle), 0);
	close(sv[1]);
	fx_free(fx);
}

/* What the pool does not keep it closes: full, draining, backend gone. */
static void test_put_refused(void **state)
{
	struct fx *fx = fx_new();
	fx->pc.max_idle = 1;
	int a[2], b[2], c[2], d[2];
	fx_pair(a);
	fx_pair(b);
	fx_pair(c);
	fx_pair(d);
	assert_true(pool_put(&fx->pw, fx->be, a[0], NULL, NULL, &fx->pc));
	assert_false(pool_put(&fx->pw, fx->be, b[0], NULL, framing_new(REUSE_HTTP1), &fx->pc));
	assert_int_equal(discards(fx, POOL_DISCARD_FULL), 1);
	char ch;
	assert_int_equal(recv(b[1], &ch, 1, 0), 0);	/* closed: the peer sees EOF */

	fx->pc.max_idle = 4;
	atomic_store(&fx->be->member, false);
	assert_false(pool_put(&fx->pw, fx->be, c[0], NULL, NULL, &fx->pc));
	assert_int_equal(discards(fx, POOL_DISCARD_REMOVED), 1);
	atomic_store(&fx->be->member, true);

	pool_worker_drain(&fx->pw);
	assert_false(pool_put(&fx->pw, fx->be, d[0], NULL, NULL, &fx->pc));
	assert_int_equal(discards(fx, POOL_DISCARD_REMOVED), 2);
	assert_int_equal(atomic_load(&fx->be->idle), 1);

	pool_worker_close(&fx->pw);
	assert_int_equal(discards(fx, POOL_DISCARD_SHUTDOWN), 1);
	assert_int_equal(atomic_load(&fx->be->idle), 0);
	close(a[1]);
	close(b[1]);
	close(c[1]);
	close(d[1]);
	fx_free(fx);
}

static void test_sweep(void **state)
{
	struct fx *fx = fx_new();
	int sv[2];
	fx_pair(sv);
	assert_true(pool_put(&fx->pw, fx->be, sv[0], NULL, NULL, &fx->pc));
	pool_sweep(&fx->pw, now_ms());
	assert_int_equal(atomic_load(&fx->be->idle), 1);
	/* Ejected: not routable until then. */
	atomic_store(&fx->be->eligible_after_ms, now_ms() + 60000);
	pool_sweep(&fx->pw, now_ms());
	assert_int_equal(discards(fx, POOL_DISCARD_REMOVED), 1);
	assert_int_equal(atomic_load(&fx->be->idle), 0);
	close(sv[1]);
	fx_free(fx);
}

static void test_count_not_reusable(void **state)
{
	struct fx *fx = fx_new();
	pool_count_not_reusable(&fx->pw, FRAMING_ERROR);
	pool_count_not_reusable(&fx->pw, FRAMING_VERDICT_COUNT);	/* out of range: an error */
	assert_int_equal(fx->pw.not_reusable[FRAMING_ERROR], 2);
	assert_int_equal(discards(fx, POOL_DISCARD_NOT_REUSABLE), 2);
	fx_free(fx);
}

/* The refill opens this worker's share of prewarm connections, and backs off from a refusal. */
static void test_refill(void **state)
{
	struct fx *fx = fx_new();
	struct service_conf conf = { .connect_timeout_ms = 1000 };
	conf.pool = (struct pool_conf){ .prewarm = 2, .max_idle = 4, .idle_timeout_ms = 10000 };
	struct config_ref *cref = config_ref_new(NULL);
	struct backend *v[] = { fx->be };
	struct backend_set *set = backend_set_new(fx->svc, cref, &conf, v, 1, true);
	struct pool_slot *slot = &fx->be->slots[0];

	/* Nobody listens: the connect fails at once and the slot backs off. */
	pool_refill(&fx->pw, set, now_ms());
	assert_int_equal(discards(fx, POOL_DISCARD_CONNECT_FAILED), 1);
	assert_int_equal(slot->backoff_ms, 100);
	pool_refill(&fx->pw, set, now_ms());	/* within the backoff: nothing */
	assert_int_equal(atomic_load(&fx->be->upstream_opened), 1);

	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	snprintf(un.sun_path, sizeof(un.sun_path), "%s", fx->path);
	assert_int_equal(bind(lfd, (struct sockaddr *)&un, sizeof(un)), 0);
	assert_int_equal(listen(lfd, 8), 0);
	pool_refill(&fx->pw, set, slot->next_attempt_ms);
	assert_int_equal(slot->n_connecting, 2);
	for (uint64_t end = now_ms() + 10000; slot->n_connecting && now_ms() < end;)
		fx_run_ms(fx, 5);
	assert_int_equal(slot->n_connecting, 0);
	assert_int_equal(slot->n_idle, 2);
	assert_int_equal(atomic_load(&fx->be->upstream_opened), 3);
	pool_refill(&fx->pw, set, now_ms() + 1000);	/* full share: nothing more */
	assert_int_equal(atomic_load(&fx->be->upstream_opened), 3);

	struct tls_conn *tls = NULL;
	/* A taken connection was worth having: the backoff ends. */
	struct framing *fr = NULL;
	int fd = pool_take(&fx->pw, fx->be, &fr, &tls);
	assert_true(fd >= 0);
	assert_int_equal(slot->backoff_ms, 0);
	close(fd);
	for (int i = 0; i < 2; i++) {
		int peer = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		assert_true(peer >= 0);
		close(peer);
	}
	close(lfd);
	backend_set_put(set);
	config_ref_put(cref);
	fx_free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prewarm_share),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_put_take),
		cmocka_unit_test(test_take_checks_alive),
		cmocka_unit_test(test_idle_watch),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_put_refused),
		cmocka_unit_test(test_sweep),
		cmocka_unit_test(test_count_not_reusable),
		cmocka_unit_test(test_refill),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
