/*
 * Unit tests of the relay: its lifecycle table, and real relays driven on a
 * private event base with no network at all. The client is one end of an
 * AF_UNIX socketpair; each backend is a unix socket listening in a fresh
 * temporary directory, given to the backend the way a resolved host name is
 * (backend_set_addr), so the relay runs its ordinary connect path. A backend
 * whose path has nobody listening refuses like a closed port.
 *
 * What is checked is what a client and a backend see (bytes, FIN, close)
 * plus the relay worker's close counters and the backend/service counters
 * the admin API exports.
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
#include "config.h"
#include "pool.h"
#include "relay.h"
#include "service.h"
#include "util.h"

#define MAX_BE 2
#define DEADLINE_MS 10000	/* generous: the sanitized suite shares a busy machine */

struct fx {
	struct event_base *base;		/* owned */
	struct event *reap;			/* owned; what the worker's reaper does */
	struct pool_worker pool;
	struct relay_worker rw;
	struct relay_queue q;			/* the acceptor's waiting list */
	struct config_ref *cref;		/* owned */
	const struct service_conf *conf;	/* borrowed from cref */
	struct service *svc;			/* owned ref */
	struct backend_set *set;		/* owned ref; what relays route with */
	char dir[64];				/* temporary directory of the sockets */
	char path[MAX_BE][108];
	int lfd[MAX_BE];			/* listening socket, -1: this backend refuses */
	size_t n_be;
};

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	struct fx *fx = arg;
	relay_reap(&fx->rw);
	pool_worker_reap(&fx->pool);
}

/*
 * A service "t" of n_be backends; backend i listens when bit i of `listening`
 * is set. `settings` is YAML for the service (indented 4 spaces). The set is
 * published ready unless `ready` is false.
 */
static struct fx *fx_new(size_t n_be, unsigned listening, const char *settings, bool ready)
{
	struct fx *fx = xcalloc(1, sizeof(*fx));
	fx->n_be = n_be;
	fx->base = event_base_new();
	assert_non_null(fx->base);
	fx->reap = event_new(fx->base, -1, 0, on_reap, fx);
	pool_worker_init(&fx->pool, fx->base, fx->reap, 0, 1);
	relay_worker_init(&fx->rw, fx->base, fx->reap, &fx->pool, 42);

	char yaml[1024];
	snprintf(yaml, sizeof(yaml),
		 "services:\n"
		 "  t:\n"
		 "    listen: \"127.0.0.1:1\"\n"
		 "    discovery:\n"
		 "      type: static\n"
		 "      backends: [\"127.0.0.1:9\"]\n"
		 "    balance: round_robin\n"
		 "    max_buffer: 16k\n"
		 "%s",
		 settings);
	struct config_errors errs = { 0 };
	struct config *cfg = config_load_string(yaml, strlen(yaml), "test_relay", &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	config_errors_free(&errs);
	assert_non_null(cfg);
	fx->cref = config_ref_new(cfg);
	fx->conf = &cfg->services[0];

	fx->svc = service_new("t", 1);
	service_configure(fx->svc, fx->conf);
	struct member_spec specs[MAX_BE] = {
		{ "be0", "be0.invalid", 1, 0, 1, NULL, 0 },
		{ "be1", "be1.invalid", 1, 0, 1, NULL, 0 },
	};
	assert_true(n_be <= MAX_BE);
	service_set_members(fx->svc, specs, n_be, now_ms());
	assert_int_equal(fx->svc->n_members, n_be);

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/zklb-test-relay-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	for (size_t i = 0; i < n_be; i++) {
		snprintf(fx->path[i], sizeof(fx->path[i]), "%s/be%zu", fx->dir, i);
		fx->lfd[i] = -1;
		if (listening & (1u << i)) {
			fx->lfd[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			struct sockaddr_un un = { .sun_family = AF_UNIX };
			snprintf(un.sun_path, sizeof(un.sun_path), "%s", fx->path[i]);
			assert_int_equal(bind(fx->lfd[i], (struct sockaddr *)&un, sizeof(un)), 0);
			assert_int_equal(listen(fx->lfd[i], 16), 0);
		}
		char spec[128], err[128];
		snprintf(spec, sizeof(spec), "unix:%s", fx->path[i]);
		struct net_addr a;
		assert_true(net_addr_parse(spec, &a, err, sizeof(err)));
		struct backend *be = fx->svc->members[i];
		backend_set_addr(be, &a);
		service_backend_ready(fx->svc, be, now_ms());
	}
	fx->set = backend_set_publish(fx->svc, fx->cref, fx->conf, ready);
	return fx;
}

static void fx_free(struct fx *fx)
{
	relay_close_all(&fx->rw);
	pool_worker_close(&fx->pool);
	relay_reap(&fx->rw);
	relay_worker_free(&fx->rw);
	event_free(fx->reap);
	backend_set_put(fx->set);
	service_retire(fx->svc);
	service_put(fx->svc);
	config_ref_put(fx->cref);
	for (size_t i = 0; i < fx->n_be; i++) {
		if (fx->lfd[i] >= 0)
			close(fx->lfd[i]);
		unlink(fx->path[i]);
	}
	rmdir(fx->dir);
	event_base_free(fx->base);
	free(fx);
}

/* A new client: the relay gets one end, the test keeps the other. */
static int fx_client(struct fx *fx)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	relay_accept(&fx->rw, fx->set, &fx->q, sv[1], 0);
	return sv[0];
}

/* One turn of the relay's loop without blocking, then a breath. */
static void fx_turn(struct fx *fx)
{
	event_base_loop(fx->base, EVLOOP_NONBLOCK);
	usleep(200);
}

/* Run the loop for about ms milliseconds. */
static void fx_run_ms(struct fx *fx, uint64_t ms)
{
	uint64_t end = now_ms() + ms;
	while (now_ms() < end)
		fx_turn(fx);
}

/* The upstream connection the relay opened to backend i. */
static int fx_upstream(struct fx *fx, size_t i)
{
	uint64_t end = now_ms() + DEADLINE_MS;
	for (;;) {
		int fd = accept4(fx->lfd[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
		assert_true(now_ms() < end);
		fx_turn(fx);
	}
}

/* Has backend i a connection waiting to be accepted? (Accepts and closes it.) */
static bool fx_pending(struct fx *fx, size_t i)
{
	int fd = accept4(fx->lfd[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* The byte at offset i of a test stream: not periodic at any buffer size. */
static uint8_t pattern(uint64_t seed, size_t i)
{
	uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
	x ^= x >> 29;
	x *= 0xBF58476D1CE4E5B9ull;
	return (uint8_t)(x >> 32);
}

/* Offer the next pattern bytes of a stream of `total` to fd; *sent counts what it took. */
static void fx_offer(int fd, uint64_t seed, size_t *sent, size_t total)
{
	uint8_t out[8192];
	size_t k = MIN(sizeof(out), total - *sent);
	if (k == 0)
		return;
	for (size_t j = 0; j < k; j++)
		out[j] = pattern(seed, *sent + j);
	ssize_t w = send(fd, out, k, MSG_NOSIGNAL);
	if (w > 0)
		*sent += (size_t)w;
	else
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Take what fd has of a pattern stream; every byte must be the next one, unchanged. */
static void fx_take(int fd, uint64_t seed, size_t *got)
{
	uint8_t in[8192];
	ssize_t r = recv(fd, in, sizeof(in), 0);
	if (r > 0) {
		for (ssize_t j = 0; j < r; j++)
			assert_int_equal(in[j], pattern(seed, *got + (size_t)j));
		*got += (size_t)r;
	} else {
		assert_true(r < 0);	/* no EOF in the middle of a stream */
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	}
}

/* Send n pattern bytes into wfd and read them all from rfd while the relay runs. */
static void fx_stream(struct fx *fx, int wfd, int rfd, size_t n, uint64_t seed)
{
	size_t sent = 0, got = 0;
	uint64_t end = now_ms() + DEADLINE_MS;
	while (got < n) {
		assert_true(now_ms() < end);
		fx_offer(wfd, seed, &sent, n);
		fx_take(rfd, seed, &got);
		fx_turn(fx);
	}
}

/* Read whatever arrives on fd until EOF; returns how many bytes came first. */
static size_t fx_until_eof(struct fx *fx, int fd)
{
	size_t n = 0;
	char buf[4096];
	uint64_t end = now_ms() + DEADLINE_MS;
	for (;;) {
		assert_true(now_ms() < end);
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r == 0)
			return n;
		if (r > 0)
			n += (size_t)r;
		else
			assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
		fx_turn(fx);
	}
}

/* Receive exactly the string s on fd. */
static void fx_expect(struct fx *fx, int fd, const char *s)
{
	size_t len = strlen(s), got = 0;
	char buf[256];
	assert_true(len < sizeof(buf));
	uint64_t end = now_ms() + DEADLINE_MS;
	while (got < len) {
		assert_true(now_ms() < end);
		ssize_t r = recv(fd, buf + got, len - got, 0);
		if (r > 0)
			got += (size_t)r;
		else
			assert_true(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
		fx_turn(fx);
	}
	assert_memory_equal(buf, s, len);
}

static void fx_send(int fd, const char *s)
{
	assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

static uint64_t closes(struct fx *fx, enum relay_close_reason why)
{
	return atomic_load(&fx->rw.closes[why]);
}

/* --- The lifecycle table --------------------------------------------------- */

static void test_transitions(void **state)
{
	/* Every legal move, and nothing else. */
	static const struct {
		enum relay_state from, to;
	} legal[] = {
		{ RELAY_NEW, RELAY_WAITING },
		{ RELAY_NEW, RELAY_CONNECTING },
		{ RELAY_NEW, RELAY_ESTABLISHED },
		{ RELAY_NEW, RELAY_CLOSED },
		{ RELAY_WAITING, RELAY_CONNECTING },
		{ RELAY_WAITING, RELAY_ESTABLISHED },
		{ RELAY_WAITING, RELAY_CLOSED },
		{ RELAY_CONNECTING, RELAY_CONNECTING },
		{ RELAY_CONNECTING, RELAY_ESTABLISHED },
		{ RELAY_CONNECTING, RELAY_CLOSED },
		{ RELAY_ESTABLISHED, RELAY_CLOSED },
	};
	for (int from = 0; from < RELAY_STATES; from++) {
		for (int to = 0; to < RELAY_STATES; to++) {
			bool want = false;
			for (size_t i = 0; i < ARRAY_SIZE(legal); i++)
				want |= legal[i].from == (enum relay_state)from &&
					legal[i].to == (enum relay_state)to;
			if (relay_transition_allowed(from, to) != want)
				fail_msg("%s -> %s: allowed %d, want %d", relay_state_name(from),
					 relay_state_name(to), !want, want);
		}
	}
	/* The ones a bug would most likely try. */
	assert_false(relay_transition_allowed(RELAY_ESTABLISHED, RELAY_CONNECTING));
	assert_false(relay_transition_allowed(RELAY_CLOSED, RELAY_CLOSED));
	assert_false(relay_transition_allowed(RELAY_CLOSED, RELAY_ESTABLISHED));
	assert_false(relay_transition_allowed(RELAY_WAITING, RELAY_WAITING));
	assert_false(relay_transition_allowed(RELAY_CONNECTING, RELAY_WAITING));
	assert_false(relay_transition_allowed(RELAY_STATES, RELAY_CLOSED));
	assert_false(relay_transition_allowed(RELAY_NEW, RELAY_STATES));
}

static void test_names(void **state)
{
	assert_string_equal(relay_state_name(RELAY_ESTABLISHED), "established");
	assert_string_equal(relay_state_name(RELAY_STATES), "?");
	assert_string_equal(relay_close_reason_name(RELAY_CLOSE_IDLE_TIMEOUT), "idle_timeout");
	assert_string_equal(relay_close_reason_name(RELAY_CLOSE_REASONS), "?");
}

/* --- Relays on socketpairs ------------------------------------------------- */

static void test_copy_both_ways(void **state)
{
	struct fx *fx = fx_new(1, 1, "", true);
	int c = fx_client(fx);
	int u = fx_upstream(fx, 0);
	assert_int_equal(atomic_load(&fx->rw.n_relays), 1);

	/* Small exchanges first (the copy path), then bulk (which may splice). */
	fx_send(c, "GET one\n");
	fx_expect(fx, u, "GET one\n");
	fx_send(u, "reply one\n");
	fx_expect(fx, c, "reply one\n");
	fx_stream(fx, c, u, 1 << 20, 1);
	fx_stream(fx, u, c, 1 << 20, 2);
	fx_send(c, "GET two\n");
	fx_expect(fx, u, "GET two\n");

	struct backend *be = fx->svc->members[0];
	assert_int_equal(atomic_load(&be->bytes_out), (1 << 20) + 16);
	assert_int_equal(atomic_load(&be->bytes_in), (1 << 20) + 10);
	assert_int_equal(atomic_load(&be->active), 1);
	assert_int_equal(closes(fx, RELAY_CLOSE_DONE), 0);

	close(c);
	close(u);
	fx_run_ms(fx, 20);
	assert_int_equal(atomic_load(&fx->rw.n_relays), 0);
	assert_int_equal(atomic_load(&be->active), 0);
	fx_free(fx);
}

/*
 * One side sends and shuts its writing half; the other gets every byte and
 * the FIN, and may still answer on the half that stays open; its own FIN
 * then ends the relay as done.
 */
static void half_close(bool client_first)
{
	struct fx *fx = fx_new(1, 1, "", true);
	int c = fx_client(fx);
	int u = fx_upstream(fx, 0);
	int first = client_first ? c : u, second = client_first ? u : c;

	fx_send(first, "request");
	shutdown(first, SHUT_WR);
	assert_int_equal(fx_until_eof(fx, second), strlen("request"));
	fx_send(second, "late answer");
	fx_expect(fx, first, "late answer");
	assert_int_equal(atomic_load(&fx->rw.n_relays), 1);
	shutdown(second, SHUT_WR);
	assert_int_equal(fx_until_eof(fx, first), 0);
	fx_run_ms(fx, 20);
	assert_int_equal(closes(fx, RELAY_CLOSE_DONE), 1);
	assert_int_equal(atomic_load(&fx->rw.n_relays), 0);
	close(c);
	close(u);
	fx_free(fx);
}

static void test_half_close_client_first(void **state)
{
	half_close(true);
}

static void test_half_close_backend_first(void **state)
{
	half_close(false);
}

/*
 * A backend that does not read: the client can only write what the kernel
 * buffers plus the relay's one bounded buffer (or one pipe load), not the
 * whole stream; once the backend reads, the rest flows, byte-exact.
 */
static void test_backpressure(void **state)
{
	const size_t total = 8u << 20;
	const size_t bound = 2u << 20;	/* socket buffers + 16k buffer or a 256k pipe, with room */
	struct fx *fx = fx_new(1, 1, "", true);
	int c = fx_client(fx);
	int u = fx_upstream(fx, 0);

	size_t sent = 0;
	uint64_t last_progress = now_ms();
	while (now_ms() - last_progress < 300) {
		size_t before = sent;
		fx_offer(c, 3, &sent, total);
		if (sent > before)
			last_progress = now_ms();
		assert_true(sent < total);
		fx_turn(fx);
	}
	assert_true(sent > 0);
	if (sent > bound)
		fail_msg("a backend that does not read let the client write %zu bytes", sent);

	/* The backend reads now: everything, the stalled part and the rest. */
	size_t got = 0;
	uint64_t end = now_ms() + DEADLINE_MS;
	while (got < total) {
		assert_true(now_ms() < end);
		fx_offer(c, 3, &sent, total);
		fx_take(u, 3, &got);
		fx_turn(fx);
	}
	assert_int_equal(atomic_load(&fx->svc->members[0]->bytes_out), total);
	close(c);
	close(u);
	fx_free(fx);
}

static void test_idle_timeout(void **state)
{
	struct fx *fx = fx_new(1, 1, "    idle_timeout: 500ms\n", true);
	int c = fx_client(fx);
	int u = fx_upstream(fx, 0);

	fx_send(c, "hello");
	fx_expect(fx, u, "hello");
	/* Traffic keeps it open... */
	fx_run_ms(fx, 250);
	fx_send(u, "tick");
	fx_expect(fx, c, "tick");
	uint64_t quiet_from = now_ms();
	fx_run_ms(fx, 250);
	assert_int_equal(atomic_load(&fx->rw.n_relays), 1);
	/* ...silence closes both sides. */
	assert_int_equal(fx_until_eof(fx, c), 0);
	/* The relay's silence began a little before ours: allow for the scheduler. */
	uint64_t quiet = now_ms() - quiet_from;
	if (quiet < 400)
		fail_msg("closed after %llums of silence, idle_timeout is 500ms",
			 (unsigned long long)quiet);
	assert_int_equal(fx_until_eof(fx, u), 0);
	assert_int_equal(closes(fx, RELAY_CLOSE_IDLE_TIMEOUT), 1);
	assert_int_equal(atomic_load(&fx->rw.n_relays), 0);
	close(c);
	close(u);
	fx_free(fx);
}

/* be0 refuses, be1 listens: every client ends up on be1, a retry each time it was be0's turn. */
static void test_connect_failure_retries(void **state)
{
	struct fx *fx = fx_new(2, 1u << 1, "    retries: 2\n", true);
	int c1 = fx_client(fx);
	int c2 = fx_client(fx);
	int u1 = fx_upstream(fx, 1);
	int u2 = fx_upstream(fx, 1);

	struct backend *be0 = fx->svc->members[0], *be1 = fx->svc->members[1];
	/* Round robin starts one of the two on be0. */
	assert_true(atomic_load(&be0->connect_failures) >= 1);
	assert_int_equal(atomic_load(&fx->svc->retries), atomic_load(&be0->connect_failures));
	assert_int_equal(atomic_load(&be1->connect_failures), 0);
	assert_int_equal(atomic_load(&be1->active), 2);
	assert_int_equal(atomic_load(&be0->active), 0);
	assert_int_equal(atomic_load(&fx->svc->conn_failed), 0);

	/* Both relays work. */
	fx_send(c1, "one");
	fx_send(c2, "two");
	char a[4] = { 0 }, b[4] = { 0 };
	uint64_t end = now_ms() + DEADLINE_MS;
	size_t na = 0, nb = 0;
	while (na < 3 || nb < 3) {
		assert_true(now_ms() < end);
		ssize_t r = recv(u1, a + na, 3 - na, 0);
		na += r > 0 ? (size_t)r : 0;
		r = recv(u2, b + nb, 3 - nb, 0);
		nb += r > 0 ? (size_t)r : 0;
		fx_turn(fx);
	}
	assert_true((strcmp(a, "one") == 0 && strcmp(b, "two") == 0) ||
		    (strcmp(a, "two") == 0 && strcmp(b, "one") == 0));
	close(c1);
	close(c2);
	close(u1);
	close(u2);
	fx_free(fx);
}

/* Nobody listens anywhere: each backend is tried once, then the client is closed. */
static void test_connect_failed_everywhere(void **state)
{
	struct fx *fx = fx_new(2, 0, "    retries: 2\n", true);
	int c = fx_client(fx);
	assert_int_equal(fx_until_eof(fx, c), 0);
	assert_int_equal(closes(fx, RELAY_CLOSE_CONNECT_FAILED), 1);
	assert_int_equal(atomic_load(&fx->svc->conn_failed), 1);
	assert_int_equal(atomic_load(&fx->svc->retries), 1);
	assert_int_equal(atomic_load(&fx->svc->members[0]->connect_failures), 1);
	assert_int_equal(atomic_load(&fx->svc->members[1]->connect_failures), 1);
	assert_int_equal(atomic_load(&fx->rw.n_relays), 0);
	close(c);
	fx_free(fx);
}

/* retries: 0 means one try only, even with another backend up. */
static void test_connect_failed_no_retry(void **state)
{
	struct fx *fx = fx_new(2, 1u << 1, "    retries: 0\n", true);
	/* Round robin: the first client starts on be0, which refuses. */
	int c = fx_client(fx);
	assert_int_equal(fx_until_eof(fx, c), 0);
	assert_int_equal(closes(fx, RELAY_CLOSE_CONNECT_FAILED), 1);
	assert_int_equal(atomic_load(&fx->svc->retries), 0);
	assert_false(fx_pending(fx, 1));
	close(c);
	fx_free(fx);
}

/* No view yet: the client waits instead of being refused, then routes with the first view. */
static void test_wait_then_wake(void **state)
{
	struct fx *fx = fx_new(1, 1, "", false);
	int c = fx_client(fx);
	fx_send(c, "early bytes");
	fx_run_ms(fx, 50);
	assert_false(fx_pending(fx, 0));
	assert_int_equal(atomic_load(&fx->rw.n_relays), 1);

	struct backend_set *view = backend_set_publish(fx->svc, fx->cref, fx->conf, true);
	relay_wake_waiting(&fx->q, view);
	assert_null(fx->q.head);
	int u = fx_upstream(fx, 0);
	fx_expect(fx, u, "early bytes");
	fx_send(u, "answer");
	fx_expect(fx, c, "answer");
	backend_set_put(view);
	close(c);
	close(u);
	fx_free(fx);
}

static void test_wait_timeout(void **state)
{
	struct fx *fx = fx_new(1, 1, "    connect_timeout: 100ms\n", false);
	int c = fx_client(fx);
	assert_non_null(fx->q.head);
	assert_int_equal(fx_until_eof(fx, c), 0);
	assert_null(fx->q.head);
	assert_int_equal(closes(fx, RELAY_CLOSE_WAIT_TIMEOUT), 1);
	assert_int_equal(atomic_load(&fx->svc->wait_timeouts), 1);
	assert_int_equal(atomic_load(&fx->svc->conn_failed), 1);
	assert_false(fx_pending(fx, 0));
	close(c);
	fx_free(fx);
}

/* The acceptor goes away while a relay waits: the relay forgets the queue and times out alone. */
static void test_detach_waiting(void **state)
{
	struct fx *fx = fx_new(1, 1, "    connect_timeout: 100ms\n", false);
	int c = fx_client(fx);
	relay_detach_waiting(&fx->q);
	assert_null(fx->q.head);
	assert_int_equal(fx_until_eof(fx, c), 0);
	assert_int_equal(closes(fx, RELAY_CLOSE_WAIT_TIMEOUT), 1);
	close(c);
	fx_free(fx);
}

/* Drain deadline: open relays are closed with reason shutdown. */
static void test_close_all(void **state)
{
	struct fx *fx = fx_new(1, 1, "", true);
	int c = fx_client(fx);
	int u = fx_upstream(fx, 0);
	relay_close_all(&fx->rw);
	assert_int_equal(closes(fx, RELAY_CLOSE_SHUTDOWN), 1);
	assert_int_equal(atomic_load(&fx->rw.n_relays), 0);
	assert_int_equal(fx_until_eof(fx, c), 0);
	assert_int_equal(fx_until_eof(fx, u), 0);
	close(c);
	close(u);
	fx_free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transitions),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_copy_both_ways),
		cmocka_unit_test(test_half_close_client_first),
		cmocka_unit_test(test_half_close_backend_first),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_connect_failure_retries),
		cmocka_unit_test(test_connect_failed_everywhere),
		cmocka_unit_test(test_connect_failed_no_retry),
		cmocka_unit_test(test_wait_then_wake),
		cmocka_unit_test(test_wait_timeout),
		cmocka_unit_test(test_detach_waiting),
		cmocka_unit_test(test_close_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
