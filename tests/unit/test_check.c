/*
 * Unit tests for check: the pure pieces (schedule jitter, expect prefix,
 * http status line) and the runner against loopback servers on a real
 * libevent loop — tcp, send_expect and http, passes and every failure kind,
 * stop from inside and outside the callback, no fd left behind. Intervals
 * and timeouts are 50 ms; every loop is bounded by a 2 s safety exit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "check.h"
#include "config.h"
#include "util.h"

#define MAX_RESULTS 8

/* ---- pure pieces ---- */

static void test_delay_first_within_interval(void **state)
{
	struct rng r;
	rng_seed(&r, 42);
	uint64_t lo = UINT64_MAX, hi = 0;
	for (int i = 0; i < 20000; i++) {
		uint64_t d = check_delay_ms(1000, true, &r);
		assert_true(d < 1000);
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	/* spread over the whole interval, not bunched */
	assert_true(lo < 10);
	assert_true(hi > 990);
}

static void test_delay_next_jitter_ten_percent(void **state)
{
	struct rng r;
	rng_seed(&r, 7);
	uint64_t lo = UINT64_MAX, hi = 0;
	for (int i = 0; i < 20000; i++) {
		uint64_t d = check_delay_ms(2000, false, &r);
		assert_true(d >= 1800 && d <= 2200);
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	assert_true(lo < 1810);
	assert_true(hi > 2190);
}

static void test_delay_small_and_large(void **state)
{
	struct rng r;
	rng_seed(&r, 1);
	assert_int_equal(check_delay_ms(0, true, &r), 0);
	assert_int_equal(check_delay_ms(0, false, &r), 0);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(check_delay_ms(1, true, &r), 0);
		assert_int_equal(check_delay_ms(1, false, &r), 1);
		uint64_t d = check_delay_ms(10, false, &r);
		assert_true(d >= 9 && d <= 11);
	}
	uint64_t big = UINT64_C(1) << 40;	/* jitter span beyond 32 bits: clamped, no wrap */
	uint64_t d = check_delay_ms(big, false, &r);
	assert_true(d >= big - big / 10 && d <= big - big / 10 + UINT32_MAX);
	assert_true(check_delay_ms(big, true, &r) < big);
}

static void test_delay_seeds_differ(void **state)
{
	struct rng a, b;
	rng_seed(&a, 1);
	rng_seed(&b, 2);
	int same = 0;
	for (int i = 0; i < 100; i++)
		same += check_delay_ms(2000, true, &a) == check_delay_ms(2000, true, &b);
	assert_true(same < 10);
}

static void test_expect_verdict(void **state)
{
	assert_int_equal(check_expect_verdict("", 0, "+PONG", 5), CHECK_VERDICT_MORE);
	assert_int_equal(check_expect_verdict("+PO", 3, "+PONG", 5), CHECK_VERDICT_MORE);
	assert_int_equal(check_expect_verdict("+PX", 3, "+PONG", 5), CHECK_VERDICT_FAIL);
	assert_int_equal(check_expect_verdict("-", 1, "+PONG", 5), CHECK_VERDICT_FAIL);
	assert_int_equal(check_expect_verdict("+PONG", 5, "+PONG", 5), CHECK_VERDICT_PASS);
	assert_int_equal(check_expect_verdict("+PONG\r\n", 7, "+PONG", 5), CHECK_VERDICT_PASS);
	assert_int_equal(check_expect_verdict("+PONX\r\n", 7, "+PONG", 5), CHECK_VERDICT_FAIL);
	assert_int_equal(check_expect_verdict("anything", 8, "", 0), CHECK_VERDICT_PASS);
	/* binary, with NUL bytes */
	assert_int_equal(check_expect_verdict("\0\1\2\3", 4, "\0\1\2", 3), CHECK_VERDICT_PASS);
	assert_int_equal(check_expect_verdict("\0\1\3", 3, "\0\1\2", 3), CHECK_VERDICT_FAIL);
	assert_int_equal(check_expect_verdict("\0", 1, "\0\1\2", 3), CHECK_VERDICT_MORE);
}

struct http_case {
	const char *reply;		/* status line (and more) */
	enum check_verdict verdict;	/* expected */
	int status;			/* expected *status */
};

static void test_http_verdict_table(void **state)
{
	static const struct http_case cases[] = {
		{ "HTTP/1.1 200 OK\r\n", CHECK_VERDICT_PASS, 200 },
		{ "HTTP/1.0 204 No Content\r\nServer: x\r\n\r\n", CHECK_VERDICT_PASS, 204 },
		{ "HTTP/1.1 302 Found\n", CHECK_VERDICT_PASS, 302 },
		{ "HTTP/1.1 399 Odd\r\n", CHECK_VERDICT_PASS, 399 },
		{ "HTTP/1.1 200\r\n", CHECK_VERDICT_PASS, 200 },	/* empty reason */
		{ "HTTP/1.1 200\n", CHECK_VERDICT_PASS, 200 },
		{ "HTTP/1.1 400 Bad Request\r\n", CHECK_VERDICT_FAIL, 400 },
		{ "HTTP/1.1 503 Service Unavailable\r\n", CHECK_VERDICT_FAIL, 503 },
		{ "HTTP/1.1 199 Early\r\n", CHECK_VERDICT_FAIL, 199 },
		{ "HTTP/1.1 099 Nope\r\n", CHECK_VERDICT_FAIL, 0 },
		{ "HTTP/1.1 2000 OK\r\n", CHECK_VERDICT_FAIL, 0 },
		{ "HTTP/1.1 20 OK\r\n", CHECK_VERDICT_FAIL, 0 },
		{ "HTTP/1.1 2x0 OK\r\n", CHECK_VERDICT_FAIL, 0 },
		{ "HTTP/11 200 OK\r\n", CHECK_VERDICT_FAIL, 0 },
		{ "HTTP/2 200\r\n", CHECK_VERDICT_FAIL, 0 },
		{ "HTTP/1.1  200 OK\r\n", CHECK_VERDICT_FAIL, 0 },
		{ "hello world\r\n", CHECK_VERDICT_FAIL, 0 },
		{ "HX", CHECK_VERDICT_FAIL, 0 },			/* garbage fails early */
		{ "\n", CHECK_VERDICT_FAIL, 0 },
		{ "", CHECK_VERDICT_MORE, 0 },
		{ "HTT", CHECK_VERDICT_MORE, 0 },
		{ "HTTP/1.1 200 OK", CHECK_VERDICT_MORE, 0 },		/* no line end yet */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int status = -1;
		enum check_verdict v = check_http_verdict(cases[i].reply, strlen(cases[i].reply),
							  &status);
		if (v != cases[i].verdict || status != cases[i].status)
			fail_msg("case %zu '%s': verdict %d status %d, want %d %d", i,
				 cases[i].reply, (int)v, status, (int)cases[i].verdict,
				 cases[i].status);
	}
}

static void test_http_verdict_long_line(void **state)
{
	char buf[2048];
	memcpy(buf, "HTTP/1.1 200 ", 13);
	memset(buf + 13, 'a', sizeof(buf) - 13);
	int status;
	assert_int_equal(check_http_verdict(buf, 1023, &status), CHECK_VERDICT_MORE);
	assert_int_equal(check_http_verdict(buf, 1024, &status), CHECK_VERDICT_FAIL);
	assert_int_equal(status, 0);
	buf[1500] = '\n';
	assert_int_equal(check_http_verdict(buf, 1501, &status), CHECK_VERDICT_FAIL);
	buf[1000] = '\n';	/* 1000-byte line: fine */
	assert_int_equal(check_http_verdict(buf, 1001, &status), CHECK_VERDICT_PASS);
	assert_int_equal(status, 200);
}

/* ---- loopback fixtures ---- */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static uint16_t fd_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

/* A loopback listening socket that never accepts: the kernel completes handshakes. */
static int listen_silent(int backlog, uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, backlog), 0);
	*port = fd_port(fd);
	return fd;
}

/* A loopback port with nothing listening. */
static uint16_t closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	uint16_t port = fd_port(fd);
	close(fd);
	return port;
}

static struct net_addr loopback(uint16_t port)
{
	char s[32], err[128];
	struct net_addr a;
	snprintf(s, sizeof(s), "127.0.0.1:%u", port);
	assert_true(net_addr_parse(s, &a, err, sizeof(err)));
	return a;
}

/*
 * A server that reads until `until` appears (NULL: answers on accept, like a
 * banner), answers `reply` (empty: closes without a word), then closes.
 */
struct server {
	struct evconnlistener *lev;	/* owned */
	const char *until;		/* request terminator that triggers the reply, or NULL */
	const char *reply;		/* answer, written once */
	struct bufferevent *conns[MAX_RESULTS * 2];	/* owned; open connections */
	char request[4096];		/* the first request received, NUL-terminated */
	size_t request_len;		/* bytes in request; 0 until one arrived */
	uint16_t port;			/* where it listens on 127.0.0.1 */
};

static void server_drop(struct server *s, struct bufferevent *bev)
{
	for (size_t i = 0; i < sizeof(s->conns) / sizeof(s->conns[0]); i++)
		if (s->conns[i] == bev)
			s->conns[i] = NULL;
	bufferevent_free(bev);
}

static void server_on_write(struct bufferevent *bev, void *arg)
{
	server_drop(arg, bev);	/* the reply is out: close */
}

static void server_reply(struct server *s, struct bufferevent *bev)
{
	if (!*s->reply) {
		server_drop(s, bev);
		return;
	}
	bufferevent_setcb(bev, NULL, server_on_write, NULL, s);
	bufferevent_write(bev, s->reply, strlen(s->reply));
}

static void server_on_read(struct bufferevent *bev, void *arg)
{
	struct server *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);
	char buf[4096];
	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	evbuffer_copyout(in, buf, len);
	buf[len] = '\0';
	if (!strstr(buf, s->until))
		return;
	if (s->request_len == 0) {
		memcpy(s->request, buf, len + 1);
		s->request_len = len;
	}
	evbuffer_drain(in, evbuffer_get_length(in));
	server_reply(s, bev);
}

static void server_on_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		server_drop(arg, bev);
}

static void server_on_accept(struct evconnlistener *lev, evutil_socket_t fd,
			     struct sockaddr *sa, int len, void *arg)
{
	struct server *s = arg;
	struct bufferevent *bev = bufferevent_socket_new(evconnlistener_get_base(lev), fd,
							 BEV_OPT_CLOSE_ON_FREE);
	for (size_t i = 0; i < sizeof(s->conns) / sizeof(s->conns[0]); i++) {
		if (!s->conns[i]) {
			s->conns[i] = bev;
			bufferevent_setcb(bev, server_on_read, NULL, server_on_event, s);
			bufferevent_enable(bev, EV_READ | EV_WRITE);
			if (!s->until)
				server_reply(s, bev);
			return;
		}
	}
	bufferevent_free(bev);
}

static void server_start(struct server *s, struct event_base *base, const char *until,
			 const char *reply)
{
	memset(s, 0, sizeof(*s));
	s->until = until;
	s->reply = reply;
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	s->lev = evconnlistener_new_bind(base, server_on_accept, s,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
					 (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(s->lev);
	s->port = fd_port(evconnlistener_get_fd(s->lev));
}

static void server_stop(struct server *s)
{
	for (size_t i = 0; i < sizeof(s->conns) / sizeof(s->conns[0]); i++)
		if (s->conns[i])
			bufferevent_free(s->conns[i]);
	evconnlistener_free(s->lev);
}

/* What the callback saw. */
struct run {
	struct event_base *base;	/* ref */
	int want;			/* stop the check after this many results */
	int got;			/* results seen (keeps counting past want: a bug) */
	bool passed[MAX_RESULTS];	/* per result */
	char reason[MAX_RESULTS][96];	/* per result, copied */
	uint64_t elapsed_ms[MAX_RESULTS];	/* per result, as reported */
	uint64_t at_ms[MAX_RESULTS];	/* monotonic time of the result */
};

static void run_on_result(struct check *c, bool passed, const char *reason,
			  uint64_t elapsed_ms, void *arg)
{
	struct run *r = arg;
	if (r->got < MAX_RESULTS) {
		r->passed[r->got] = passed;
		snprintf(r->reason[r->got], sizeof(r->reason[0]), "%s", reason);
		r->elapsed_ms[r->got] = elapsed_ms;
		r->at_ms[r->got] = now_ms();
	}
	r->got++;
	if (r->got == r->want) {
		/* stop from inside the callback, then watch 30 ms for stray calls */
		check_stop(c);
		struct timeval grace = { 0, 30000 };
		event_base_loopexit(r->base, &grace);
	}
}

static struct check_conf conf_of(enum check_kind type)
{
	return (struct check_conf){
		.type = type,
		.interval_ms = 50,
		.timeout_ms = 50,
		.rise = 2,
		.fall = 3,
	};
}

/* Run the loop until r->want results (or the 2 s safety exit). */
static void run_loop(struct run *r)
{
	struct timeval safety = { 2, 0 };
	event_base_loopexit(r->base, &safety);
	event_base_dispatch(r->base);
}

/* Start a check, collect `want` results, stop it from its callback. */
static void run_check(struct event_base *base, const struct check_conf *conf,
		      const struct net_addr *addr, struct run *r, int want)
{
	memset(r, 0, sizeof(*r));
	r->base = base;
	r->want = want;
	struct check *c = check_start(base, conf, addr, "test", run_on_result, r);
	assert_non_null(c);
	run_loop(r);
	assert_int_equal(r->got, want);
}

/* ---- tcp ---- */

static void test_tcp_pass(void **state)
{
	int fds = count_fds();
	struct event_base *base = event_base_new();
	uint16_t port;
	int lfd = listen_silent(16, &port);
	struct check_conf conf = conf_of(CHECK_TCP);
	struct net_addr addr = loopback(port);
	struct run r;

	run_check(base, &conf, &addr, &r, 1);
	assert_true(r.passed[0]);
	assert_string_equal(r.reason[0], "ok");
	assert_true(r.elapsed_ms[0] < 2000);	/* a loopback connect; only "never" is caught here */

	close(lfd);
	event_base_free(base);
	assert_int_equal(count_fds(), fds);
}

static void test_tcp_refused(void **state)
{
	int fds = count_fds();
	struct event_base *base = event_base_new();
	struct check_conf conf = conf_of(CHECK_TCP);
	struct net_addr addr = loopback(closed_port());
	struct run r;

	run_check(base, &conf, &addr, &r, 2);
	for (int i = 0; i < 2; i++) {
		assert_false(r.passed[i]);
		assert_string_equal(r.reason[i], "connect refused");
	}
	event_base_free(base);
	assert_int_equal(count_fds(), fds);
}

static void test_tcp_connect_timeout(void **state)
{
	int fds = count_fds();
	struct event_base *base = event_base_new();
	uint16_t port;
	/* backlog 0 and never accepted: once the queue is full, SYNs are dropped */
	int lfd = listen_silent(0, &port);
	struct net_addr addr = loopback(port);
	int fillers[4];
	for (int i = 0; i < 4; i++) {
		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(fillers[i] >= 0);
		int rc = connect(fillers[i], (struct sockaddr *)&addr.ss, addr.len);
		assert_true(rc == 0 || errno == EINPROGRESS);
	}
	usleep(20000);
	struct check_conf conf = conf_of(CHECK_TCP);
	struct run r;

	run_check(base, &conf, &addr, &r, 1);
	assert_false(r.passed[0]);
	assert_string_equal(r.reason[0], "connect timeout");
	assert_true(r.elapsed_ms[0] >= 45 && r.elapsed_ms[0] < 2000);

	for (int i = 0; i < 4; i++)
		close(fillers[i]);
	close(lfd);
	event_base_free(base);
	assert_int_equal(count_fds(), fds);
}

static void test_tcp_schedule(void **state)
{
	struct event_base *base = event_base_new();
	uint16_t port;
	int lfd = listen_silent(64, &port);
	struct check_conf conf = conf_of(CHECK_TCP);
	conf.timeout_ms = 500;	/* the gap must come from the interval, not the deadline */
	struct net_addr addr = loopback(port);
	struct run r;
	uint64_t t0 = now_ms();

	run_check(base, &conf, &addr, &r, 4);
	/*
	 * First within one interval, then interval -10% apart at least: a timer
	 * never fires early. The upper bounds only catch "never" (a loaded CI
	 * machine delays timers; timing goals belong to benchmarks).
	 */
	assert_true(r.at_ms[0] - t0 <= 2000);
	for (int i = 1; i < 4; i++) {
		uint64_t gap = r.at_ms[i] - r.at_ms[i - 1];
		if (gap < 44 || gap > 2000)
			fail_msg("gap %d: %llu ms", i, (unsigned long long)gap);
		assert_true(r.passed[i]);
	}
	close(lfd);
	event_base_free(base);
}

static void test_unix_pass_and_missing(void **state)
{
	int fds = count_fds();
	struct event_base *base = event_base_new();
	char path[108], spec[128], err[128];
	snprintf(path, sizeof(path), "/tmp/zklb-test-check-%d.sock", (int)getpid());
	unlink(path);
	snprintf(spec, sizeof(spec), "unix:%s", path);
	struct net_addr addr;
	assert_true(net_addr_parse(spec, &addr, err, sizeof(err)));
	struct check_conf conf = conf_of(CHECK_TCP);
	struct run r;

	/* nothing there: connect fails at once, with the kernel's reason */
	run_check(base, &conf, &addr, &r, 1);
	assert_false(r.passed[0]);
	assert_string_equal(r.reason[0], "connect failed: No such file or directory");

	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&addr.ss, addr.len), 0);
	assert_int_equal(listen(lfd, 16), 0);
	/* a unix connect completes inside connect(): the synchronous path */
	run_check(base, &conf, &addr, &r, 2);
	assert_true(r.passed[0]);
	assert_true(r.passed[1]);
	assert_string_equal(r.reason[1], "ok");

	close(lfd);
	unlink(path);
	event_base_free(base);
	assert_int_equal(count_fds(), fds);
}

/* ---- send_expect ---- */

static struct check_conf conf_send_expect(const char *send, const char *expect)
{
	struct check_conf conf = conf_of(CHECK_SEND_EXPECT);
	conf.send = (char *)send;
	conf.send_len = send ? strlen(send) : 0;
	conf.expect = (char *)expect;
	conf.expect_len = expect ? strlen(expect) : 0;
	return conf;
}

static void test_send_expect_pass(void **state)
{
	int fds = count_fds();
	struct event_base *base = event_base_new();
	struct server s;
	server_start(&s, base, "\n", "+PONG\r\n");
	struct check_conf conf = conf_send_expect("PING\r\n", "+PONG");
	struct net_addr addr = loopback(s.port);
	struct run r;

	run_check(base, &conf, &addr, &r, 2);
	assert_true(r.passed[0]);
	assert_true(r.passed[1]);
	assert_string_equal(r.reason[0], "ok");
	assert_string_equal(s.request, "PING\r\n");

	server_stop(&s);
	event_base_free(base);
	assert_int_equal(count_fds(), fds);
}

static void test_send_expect_mismatch(void **state)
{
	struct event_base *base = event_base_new();
	struct server s;
	server_start(&s, base, "\n", "-ERR unknown command\r\n");
	struct check_conf conf = conf_send_expect("PING\r\n", "+PONG");
	struct net_addr addr = loopback(s.port);
	struct run r;

	run_check(base, &conf, &addr, &r, 1);
	assert_false(r.passed[0]);
	assert_string_equal(r.reason[0], "unexpected reply");

	server_stop(&s);
	event_base_free(base);
}

static void test_send_expect_short_reply_then_close(void **state)
{
	struct event_base *base = event_base_new();
	struct server s;
	server_start(&s, base, "\n", "+PO");
	struct check_conf conf = conf_send_expect("PING\r\n", "+PONG");
	struct net_addr addr = loopback(s.port);
	struct run r;

	run_check(base, &conf, &addr, &r, 1);
	assert_false(r.passed[0]);
	assert_string_equal(r.reason[0], "connection closed");

	server_stop(&s);
	event_base_free(base);
}

static void test_send_expect_timeout(void **state)
{
	int fds = count_fds();
	struct event_base *base = event_base_new();
	uint16_t port;
	int lfd = listen_silent(16, &port);	/* accepts (kernel) but never answers */
	struct check_conf conf = conf_send_expect("PING\r\n", "+PONG");
	struct net_addr addr = loopback(port);
	struct run r;

	run_check(base, &conf, &addr, &r, 1);
	assert_false(r.passed[0]);
	assert_string_equal(r.reason[0], "timeout");
	assert_true(r.elapsed_ms[0] >= 45 && r.elapsed_ms[0] < 2000);

	close(lfd);
	event_base_free(base);
	assert_int_equal(count_fds(), fds);
}

static void test_send_expect_without_expect(void **state)
{
	struct event_base *base = event_base_new();
	uint16_t port;
	int lfd = listen_silent(16, &port);
	struct check_conf conf = conf_send_expect("PING\r\n", NULL);
	struct net_addr addr = loopback(port);
	struct run r;

	run_check(base, &conf, &addr, &r, 1);	/* written = pass */
	assert_true(r.passed[0]);
	assert_string_equal(r.reason[0], "ok");

	close(lfd);
	event_base_free(base);
}

static void test_send_expect_banner(void **state)
{
	struct event_base *base = event_base_new();
	struct server s;
	server_start(&s, base, NULL, "220 smtp ready\r\n");	/* speaks first */
	struct check_conf conf = conf_send_expect(NULL, "220 ");
	struct net_addr addr = loopback(s.port);
	struct run r;

	run_check(base, &conf, &addr, &r, 1);	/* nothing to send: just read */
	assert_true(r.passed[0]);
	assert_string_equal(r.reason[0], "ok");

	conf = conf_send_expect(NULL, "+OK");
	run_check(base, &conf, &addr, &r, 1);
	assert_false(r.passed[0]);
	assert_string_equal(r.reason[0], "unexpected reply");

	server_stop(&s);
	event_base_free(base);
}

/* ---- http ---- */

static void http_case(const char *reply, bool want_pass, const char *want_reason)
{
	int fds = count_fds();
	struct event_base *base = event_base_new();
	struct server s;
	server_start(&s, base, "\r\n\r\n", reply);
	struct check_conf conf = conf_of(CHECK_HTTP);
	conf.path = (char *)"/health?deep=1";
	struct net_addr addr = loopback(s.port);
	struct run r;

	run_check(base, &conf, &addr, &r, 1);
	if (r.passed[0] != want_pass || strcmp(r.reason[0], want_reason) != 0)
		fail_msg("reply '%s': got %d '%s', want %d '%s'", reply, r.passed[0],
			 r.reason[0], want_pass, want_reason);

	char host[64];
	snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%u\r\n", s.port);
	assert_true(strncmp(s.request, "GET /health?deep=1 HTTP/1.0\r\n", 29) == 0);
	assert_non_null(strstr(s.request, host));
	assert_non_null(strstr(s.request, "\r\nConnection: close\r\n"));

	server_stop(&s);
	event_base_free(base);
	assert_int_equal(count_fds(), fds);
}

static void test_http_200(void **state)
{
	http_case("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true, "status 200");
}

static void test_http_301(void **state)
{
	http_case("HTTP/1.0 301 Moved\r\nLocation: /x\r\n\r\n", true, "status 301");
}

static void test_http_503(void **state)
{
	http_case("HTTP/1.1 503 Service Unavailable\r\n\r\n", false, "status 503");
}

static void test_http_garbage(void **state)
{
	http_case("SSH-2.0-OpenSSH_9.2\r\n", false, "bad status line");
}

static void test_http_closed_without_reply(void **state)
{
	http_case("", false, "connection closed");
}

static void test_http_default_path(void **state)
{
	struct event_base *base = event_base_new();
	struct server s;
	server_start(&s, base, "\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n");
	struct check_conf conf = conf_of(CHECK_HTTP);	/* path NULL: "/" */
	struct net_addr addr = loopback(s.port);
	struct run r;

	run_check(base, &conf, &addr, &r, 1);
	assert_true(r.passed[0]);
	assert_true(strncmp(s.request, "GET / HTTP/1.0\r\n", 16) == 0);
	server_stop(&s);
	event_base_free(base);
}

/* ---- lifecycle ---- */

static void never_called(struct check *c, bool passed, const char *reason,
			 uint64_t elapsed_ms, void *arg)
{
	fail_msg("callback after stop: %s", reason);
}

static void exit_loop(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/* Run the loop for ms milliseconds. */
static void spin(struct event_base *base, int ms)
{
	struct timeval tv = { 0, ms * 1000 };
	struct event *ev = evtimer_new(base, exit_loop, base);
	evtimer_add(ev, &tv);
	event_base_dispatch(base);
	event_free(ev);
}

static void test_stop_mid_attempt(void **state)
{
	int fds0 = count_fds();
	struct event_base *base = event_base_new();
	uint16_t port;
	int lfd = listen_silent(16, &port);
	int fds = count_fds();
	struct check_conf conf = conf_send_expect("PING\r\n", "+PONG");
	conf.interval_ms = 10;
	conf.timeout_ms = 1000;
	struct net_addr addr = loopback(port);

	struct check *c = check_start(base, &conf, &addr, "test", never_called, NULL);
	assert_non_null(c);
	spin(base, 60);			/* the attempt is connected, waiting for a reply */
	assert_int_equal(count_fds(), fds + 1);	/* the check's socket */
	check_stop(c);			/* outside any callback */
	spin(base, 60);			/* no callback; the loop finalizes the socket and c */
	assert_int_equal(count_fds(), fds);

	close(lfd);
	event_base_free(base);
	assert_int_equal(count_fds(), fds0);
}

static void test_stop_before_first_attempt(void **state)
{
	struct event_base *base = event_base_new();
	struct check_conf conf = conf_of(CHECK_TCP);
	struct net_addr addr = loopback(closed_port());
	struct check *c = check_start(base, &conf, &addr, "test", never_called, NULL);
	assert_non_null(c);
	check_stop(c);
	check_stop(NULL);
	spin(base, 80);
	event_base_free(base);
}

static void test_stop_then_free_base_without_loop(void **state)
{
	/* event_base_free runs the pending finalizer: no leak (ASan checks) */
	struct event_base *base = event_base_new();
	struct check_conf conf = conf_of(CHECK_TCP);
	struct net_addr addr = loopback(closed_port());
	check_stop(check_start(base, &conf, &addr, "test", never_called, NULL));
	event_base_free(base);
}

static void test_start_rejects_bad_conf(void **state)
{
	struct event_base *base = event_base_new();
	struct net_addr addr = loopback(9);
	struct check_conf conf = conf_of(CHECK_NONE);
	assert_null(check_start(base, &conf, &addr, "test", never_called, NULL));
	conf = conf_of(CHECK_TCP);
	conf.interval_ms = 0;
	assert_null(check_start(base, &conf, &addr, "test", never_called, NULL));
	conf = conf_of(CHECK_TCP);
	conf.timeout_ms = 0;
	assert_null(check_start(base, &conf, &addr, "test", never_called, NULL));
	conf = conf_of(CHECK_HTTP);
	conf.path = (char *)"/a b";
	assert_null(check_start(base, &conf, &addr, "test", never_called, NULL));
	conf.path = (char *)"/a\r\nX: y";
	assert_null(check_start(base, &conf, &addr, "test", never_called, NULL));
	conf.path = (char *)"health";
	assert_null(check_start(base, &conf, &addr, NULL, never_called, NULL));
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delay_first_within_interval),
		cmocka_unit_test(test_delay_next_jitter_ten_percent),
		cmocka_unit_test(test_delay_small_and_large),
		cmocka_unit_test(test_delay_seeds_differ),
		cmocka_unit_test(test_expect_verdict),
		cmocka_unit_test(test_http_verdict_table),
		cmocka_unit_test(test_http_verdict_long_line),
		cmocka_unit_test(test_tcp_pass),
		cmocka_unit_test(test_tcp_refused),
		cmocka_unit_test(test_tcp_connect_timeout),
		cmocka_unit_test(test_tcp_schedule),
		cmocka_unit_test(test_unix_pass_and_missing),
		cmocka_unit_test(test_send_expect_pass),
		cmocka_unit_test(test_send_expect_mismatch),
		cmocka_unit_test(test_send_expect_short_reply_then_close),
		cmocka_unit_test(test_send_expect_timeout),
		cmocka_unit_test(test_send_expect_without_expect),
		cmocka_unit_test(test_send_expect_banner),
		cmocka_unit_test(test_http_200),
		cmocka_unit_test(test_http_301),
		cmocka_unit_test(test_http_503),
		cmocka_unit_test(test_http_garbage),
		cmocka_unit_test(test_http_closed_without_reply),
		cmocka_unit_test(test_http_default_path),
		cmocka_unit_test(test_stop_mid_attempt),
		cmocka_unit_test(test_stop_before_first_attempt),
		cmocka_unit_test(test_stop_then_free_base_without_loop),
		cmocka_unit_test(test_start_rejects_bad_conf),
	};
	return cmocka_run_group_tests_name("check", tests, NULL, NULL);
}
