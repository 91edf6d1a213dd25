/*
 * client — see client.h.
 *
 * Each slot is one connection (or, in conn mode, a sequence of them) and
 * carries at most one request at a time. A slot's life is the enum below;
 * slot_next() is the single place that decides what a slot does after a
 * request, and slot_fail() the single place an error is counted.
 *
 * Counters are per thread, written only by their thread with relaxed atomic
 * stores (no lock prefix) so the main thread can read them for the progress
 * line without a data race.
 */
#include "client.h"
#include "http_reply.h"
#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PATTERN_SIZE (64 * 1024)	/* bytes sent per send(2) at most */
#define RBUF_SIZE (64 * 1024)		/* bytes read per recv(2) at most */
#define IO_ROUNDS 16			/* syscalls per callback before yielding to the loop */
#define BACKOFF_US 10000		/* wait after an error before reconnecting */
#define ERRORS_LOGGED 5			/* per thread; the rest are only counted */

enum slot_state {
	SLOT_IDLE = 0,		/* between requests, no timer (transient) */
	SLOT_CONNECTING,	/* non-blocking connect in progress */
	SLOT_ACTIVE,		/* request in flight, or streaming */
	SLOT_WAITING,		/* open loop: the next request is not due yet */
	SLOT_CLOSE_WAIT,	/* conn: reply read, waiting for the server's EOF */
	SLOT_HOLDING,		/* idle: exchange done, connection held open */
	SLOT_BACKOFF,		/* after an error, before trying again */
	SLOT_DONE,		/* out of time or budget; never leaves this state */
};

struct client_counters {
	_Atomic uint64_t requests;		/* completed requests */
	_Atomic uint64_t errors;		/* every failure, see client_result */
	_Atomic uint64_t connect_failures;	/* failed connects */
	_Atomic uint64_t opened;		/* successful connects */
	_Atomic uint64_t bytes_sent;		/* accepted by send(2) */
	_Atomic uint64_t bytes_received;	/* returned by recv(2) */
	_Atomic uint64_t http_non2xx;		/* replies with a status outside 2xx */
	_Atomic uint64_t idle_ready;		/* idle: connections held now (a gauge) */
};

struct client_slot {
	struct client_thread *t;	/* owner */
	uint32_t index;			/* over all threads, staggers the open-loop schedule */
	int fd;				/* -1 when no socket; events are assigned iff fd >= 0 */
	enum slot_state state;		/* see enum slot_state */
	struct event *ev_read;		/* owned; EV_READ|EV_PERSIST on fd */
	struct event *ev_write;		/* owned; EV_WRITE|EV_PERSIST on fd, added only while blocked */
	struct event *ev_timer;		/* owned; open-loop wait and error backoff */
	bool write_armed;		/* ev_write is added */
	bool in_request;		/* a claimed request is in flight */
	uint64_t send_left;		/* request bytes still to send */
	uint64_t send_off;		/* http: offset into the request text */
	uint64_t recv_left;		/* rr/conn/idle: reply bytes still expected */
	uint64_t start_us;		/* latency origin of the request in flight */
	uint64_t due_ns;		/* open loop: due time of the next request, monotonic ns */
	uint64_t stream_left;		/* stream: bytes this slot may still move */
	struct http_reply *http;	/* owned; http mode only */
};

struct client_thread {
	struct client *c;		/* ref: shared run state */
	pthread_t thread;		/* the thread running base */
	struct event_base *base;	/* owned; freed by client_run after join */
	struct event *ev_deadline;	/* owned; ends the loop at the deadline */
	struct client_slot *slots;	/* owned array */
	uint32_t nslots;		/* entries in slots */
	uint32_t live_slots;		/* slots not DONE; the loop ends at 0 */
	uint32_t errors_logged;		/* errors written to the log so far */
	struct histogram *latency;	/* owned; µs */
	struct client_counters n;	/* this thread's counters */
	uint64_t end_us;		/* when this thread's loop ended */
	char *rbuf;			/* owned; RBUF_SIZE scratch for recv(2) */
};

struct client {
	const struct client_opts *o;	/* ref: the caller's options */
	uint64_t start_us;		/* monotonic start of the run */
	uint64_t deadline_us;		/* start_us + duration */
	uint64_t interval_ns;		/* open loop: time between two requests of one slot */
	_Atomic uint64_t claimed;	/* requests handed out so far (count bound) */
	_Atomic uint32_t threads_done;	/* threads whose loop has ended */
	_Atomic bool stop;		/* a signal asked to stop */
	char *pattern;			/* owned; PATTERN_SIZE bytes of payload */
	char *http_req;			/* owned; the request text (http mode) */
	size_t http_req_len;		/* bytes in http_req */
	struct client_thread *threads;	/* owned array of o->threads */
};

static const char *const mode_names[] = { "rr", "conn", "stream", "http", "idle" };

static void slot_next(struct client_slot *s);
static void slot_connect(struct client_slot *s);
static void slot_send(struct client_slot *s);

static inline void counter_add(_Atomic uint64_t *c, uint64_t n)
{
	/* Single writer: a relaxed load+store avoids a locked instruction. */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline uint64_t counter_get(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timeval tv_from_us(uint64_t us)
{
	struct timeval tv = { .tv_sec = (time_t)(us / 1000000u), .tv_usec = (suseconds_t)(us % 1000000u) };
	return tv;
}

void client_opts_default(struct client_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->mode = CLIENT_RR;
	o->connections = 50;
	o->threads = 1;
	o->duration_us = 10u * 1000000u;
	o->req_size = 64;
	o->reply_size = 64;
	snprintf(o->http_path, sizeof(o->http_path), "/");
}

bool client_mode_parse(const char *s, enum client_mode *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(mode_names); i++) {
		if (strcmp(s, mode_names[i]) == 0) {
			*out = (enum client_mode)i;
			return true;
		}
	}
	return false;
}

const char *client_mode_name(enum client_mode m)
{
	return (size_t)m < ARRAY_SIZE(mode_names) ? mode_names[m] : "?";
}

static bool run_over(const struct client *c)
{
	return atomic_load_explicit(&c->stop, memory_order_relaxed) || now_us() >= c->deadline_us;
}

static void slot_close_fd(struct client_slot *s)
{
	if (s->fd < 0)
		return;
	event_del(s->ev_read);
	event_del(s->ev_write);
	s->write_armed = false;
	close(s->fd);
	s->fd = -1;
}

/* The slot is finished for good; the thread's loop ends with its last slot. */
static void slot_finish(struct client_slot *s)
{
	if (s->state == SLOT_DONE)
		return;
	slot_close_fd(s);
	event_del(s->ev_timer);
	s->in_request = false;
	s->state = SLOT_DONE;
	if (--s->t->live_slots == 0)
		event_base_loopbreak(s->t->base);
}

/* Count one failure, drop the connection and retry after BACKOFF_US. */
static void slot_fail(struct client_slot *s, const char *what, int err)
{
	struct client_thread *t = s->t;
	counter_add(&t->n.errors, 1);
	if (t->errors_logged < ERRORS_LOGGED) {
		t->errors_logged++;
		log_warn("slot %u: %s%s%s%s", s->index, what, err ? ": " : "",
			 err ? strerror(err) : "",
			 t->errors_logged == ERRORS_LOGGED ? " (further errors are only counted)" : "");
	}
	if (s->state == SLOT_HOLDING)
		counter_add(&t->n.idle_ready, (uint64_t)-1);	/* a gauge: no longer held */
	slot_close_fd(s);
	s->in_request = false;
	if (run_over(t->c)) {
		slot_finish(s);
		return;
	}
	s->state = SLOT_BACKOFF;
	struct timeval tv = tv_from_us(BACKOFF_US);
	event_add(s->ev_timer, &tv);
}

static void slot_arm_write(struct client_slot *s, bool on)
{
	if (on && !s->write_armed)
		event_add(s->ev_write, NULL);
	else if (!on && s->write_armed)
		event_del(s->ev_write);
	s->write_armed = on;
}

/* A request (or an idle exchange) finished with its last byte. */
static void slot_complete(struct client_slot *s)
{
	struct client_thread *t = s->t;
	const struct client_opts *o = t->c->o;

	s->in_request = false;
	if (o->mode == CLIENT_IDLE) {
		counter_add(&t->n.idle_ready, 1);
		s->state = SLOT_HOLDING;
		return;
	}
	uint64_t now = now_us();
	histogram_record(t->latency, now > s->start_us ? now - s->start_us : 0);
	counter_add(&t->n.requests, 1);
	switch (o->mode) {
	case CLIENT_HTTP:
		if (s->http->status < 200 || s->http->status > 299)
			counter_add(&t->n.http_non2xx, 1);
		if (s->http->close || o->http_close || o->http_once)
			slot_close_fd(s);
		break;
	case CLIENT_CONN:
		if (o->close_by_server) {
			s->state = SLOT_CLOSE_WAIT;
			return;
		}
		slot_close_fd(s);
		break;
	default:
		break;
	}
	s->state = SLOT_IDLE;
	slot_next(s);
}

/* Start the request whose latency counts from start_us. */
static void slot_begin(struct client_slot *s, uint64_t start_us)
{
	const struct client *c = s->t->c;

	s->start_us = start_us;
	s->in_request = true;
	s->state = SLOT_ACTIVE;
	if (c->o->mode == CLIENT_HTTP) {
		s->send_left = c->http_req_len;
		s->send_off = 0;
		http_reply_reset(s->http);
	} else {
		s->send_left = c->o->req_size;
		s->recv_left = c->o->reply_size;
	}
	if (s->fd < 0)
		slot_connect(s);	/* conn mode, or the server closed a kept-alive connection */
	else
		slot_send(s);
}

/*
 * Arm the timer for a monotonic due time. libevent measures timeouts from
 * the loop's cached clock, which lags inside a busy callback; refresh it so
 * the timer does not fire early.
 */
static void slot_wait_until(struct client_slot *s, uint64_t due_ns)
{
	event_base_update_cache_time(s->t->base);
	uint64_t now = mono_ns();
	struct timeval tv = tv_from_us(due_ns > now ? (due_ns - now + 999u) / 1000u : 0);
	event_add(s->ev_timer, &tv);
}

/* Decide what the slot does next: stop, wait for its due time, or send. */
static void slot_next(struct client_slot *s)
{
	struct client *c = s->t->c;
	const struct client_opts *o = c->o;

	if (run_over(c)) {
		slot_finish(s);
		return;
	}
	if (o->requests && atomic_fetch_add(&c->claimed, 1) >= o->requests) {
		slot_finish(s);
		return;
	}
	if (o->rate > 0) {
		uint64_t due = s->due_ns;
		uint64_t now = mono_ns();
		s->due_ns += c->interval_ns;
		if (due > now) {
			s->state = SLOT_WAITING;
			s->start_us = due / 1000u;
			slot_wait_until(s, due);
			return;
		}
		/* Late: go now, but charge the wait to this request. */
		slot_begin(s, due / 1000u);
		return;
	}
	slot_begin(s, now_us());
}

static void slot_stream_done(struct client_slot *s)
{
	counter_add(&s->t->n.requests, 1);
	slot_finish(s);
}

static void slot_send(struct client_slot *s)
{
	struct client_thread *t = s->t;
	const struct client *c = t->c;
	const struct client_opts *o = c->o;
	bool streaming = o->mode == CLIENT_STREAM;

	for (int round = 0; round < IO_ROUNDS; round++) {
		uint64_t left = streaming ? s->stream_left : s->send_left;
		if (left == 0)
			break;
		const char *buf = o->mode == CLIENT_HTTP ? c->http_req + s->send_off : c->pattern;
		size_t n = left < PATTERN_SIZE ? (size_t)left : PATTERN_SIZE;
		ssize_t r = send(s->fd, buf, n, MSG_NOSIGNAL);
		if (r > 0) {
			counter_add(&t->n.bytes_sent, (uint64_t)r);
			if (streaming) {
				if (s->stream_left != UINT64_MAX)
					s->stream_left -= (uint64_t)r;
			} else {
				s->send_left -= (uint64_t)r;
				s->send_off += (uint64_t)r;
			}
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			slot_arm_write(s, true);
			return;
		}
		slot_fail(s, "send", r < 0 ? errno : 0);
		return;
	}
	if (streaming) {
		if (s->stream_left == 0) {
			slot_stream_done(s);
			return;
		}
		slot_arm_write(s, true);	/* yielded after IO_ROUNDS; keep going */
		return;
	}
	if (s->send_left > 0) {
		slot_arm_write(s, true);
		return;
	}
	slot_arm_write(s, false);
	if (o->mode != CLIENT_HTTP && s->recv_left == 0)
		slot_complete(s);	/* reply_size 0 (idle), or an echo already back */
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	slot_send(arg);
}

/* The peer closed its side. */
static void slot_on_eof(struct client_slot *s)
{
	const struct client_opts *o = s->t->c->o;

	if (s->state == SLOT_CLOSE_WAIT) {
		slot_close_fd(s);
		s->state = SLOT_IDLE;
		slot_next(s);
		return;
	}
	if (o->mode == CLIENT_STREAM && o->stream_down) {
		slot_stream_done(s);
		return;
	}
	if (s->in_request || s->state == SLOT_HOLDING || o->mode == CLIENT_STREAM) {
		slot_fail(s, "connection closed by the server", 0);
		return;
	}
	/* A kept-alive connection closed while no request was in flight: the
	 * next request reconnects; nothing was lost. */
	slot_close_fd(s);
}

/* Account r received bytes; returns false if the slot stopped reading. */
static bool slot_consume(struct client_slot *s, size_t r)
{
	struct client_thread *t = s->t;
	const struct client_opts *o = t->c->o;

	if (o->mode == CLIENT_STREAM) {
		if (!o->stream_down) {
			slot_fail(s, "unexpected bytes from a sink", 0);
			return false;
		}
		if (s->stream_left != UINT64_MAX) {
			s->stream_left -= r < s->stream_left ? r : s->stream_left;
			if (s->stream_left == 0) {
				slot_stream_done(s);
				return false;
			}
		}
		return true;
	}
	if (!s->in_request) {
		slot_fail(s, "bytes received outside a request", 0);
		return false;
	}
	if (o->mode == CLIENT_HTTP) {
		size_t used = http_reply_feed(s->http, t->rbuf, r);
		if (s->http->state == HTTP_REPLY_ERROR) {
			slot_fail(s, s->http->error, 0);
			return false;
		}
		if (s->http->state != HTTP_REPLY_DONE)
			return true;
		if (used < r || s->send_left > 0) {
			slot_fail(s, "bytes after the HTTP response", 0);
			return false;
		}
		slot_complete(s);
		return false;
	}
	if (r > s->recv_left) {
		slot_fail(s, "more reply bytes than expected", 0);
		return false;
	}
	s->recv_left -= r;
	if (s->recv_left == 0 && s->send_left == 0) {
		slot_complete(s);
		return false;
	}
	return true;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct client_slot *s = arg;
	struct client_thread *t = s->t;

	bool streaming = t->c->o->mode == CLIENT_STREAM;

	for (int round = 0; round < IO_ROUNDS; round++) {
		/* A bounded download reads no byte past its share: exact counts. */
		size_t want = RBUF_SIZE;
		if (streaming && s->stream_left < want)
			want = (size_t)s->stream_left;
		ssize_t r = recv(s->fd, t->rbuf, want, 0);
		if (r > 0) {
			counter_add(&t->n.bytes_received, (uint64_t)r);
			if (s->state == SLOT_CLOSE_WAIT) {
				slot_fail(s, "bytes after the reply", 0);
				return;
			}
			if (!slot_consume(s, (size_t)r))
				return;
			continue;
		}
		if (r == 0) {
			slot_on_eof(s);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			slot_fail(s, "recv", errno);
		return;
	}
}

static void slot_connected(struct client_slot *s)
{
	struct client_thread *t = s->t;
	const struct client_opts *o = t->c->o;

	counter_add(&t->n.opened, 1);
	event_assign(s->ev_read, t->base, s->fd, EV_READ | EV_PERSIST, on_read, s);
	event_assign(s->ev_write, t->base, s->fd, EV_WRITE | EV_PERSIST, on_write, s);
	event_add(s->ev_read, NULL);
	s->write_armed = false;
	s->state = SLOT_ACTIVE;

	switch (o->mode) {
	case CLIENT_STREAM:
		if (!o->stream_down)
			slot_send(s);
		return;
	case CLIENT_IDLE:
		s->in_request = true;
		s->send_left = o->req_size;
		s->recv_left = o->reply_size;
		slot_send(s);
		return;
	default:
		if (s->in_request)
			slot_send(s);	/* conn mode, or a reconnect for a due request */
		else
			slot_next(s);
		return;
	}
}

static void on_connect(evutil_socket_t fd, short what, void *arg)
{
	struct client_slot *s = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	event_del(s->ev_write);
	if (err) {
		counter_add(&s->t->n.connect_failures, 1);
		slot_fail(s, "connect", err);
		return;
	}
	slot_connected(s);
}

static void slot_connect(struct client_slot *s)
{
	struct client_thread *t = s->t;
	const struct client_opts *o = t->c->o;
	const struct net_addr *a = &o->target;

	s->state = SLOT_CONNECTING;
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		counter_add(&t->n.connect_failures, 1);
		slot_fail(s, "socket", errno);
		return;
	}
	if (o->mode != CLIENT_STREAM && a->ss.ss_family != AF_UNIX) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	s->fd = fd;
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0) {
		slot_connected(s);
		return;
	}
	if (errno != EINPROGRESS) {
		int err = errno;
		/* The events are not assigned yet: close by hand. */
		close(fd);
		s->fd = -1;
		counter_add(&t->n.connect_failures, 1);
		slot_fail(s, "connect", err);
		return;
	}
	event_assign(s->ev_read, t->base, fd, EV_READ | EV_PERSIST, on_read, s);
	event_assign(s->ev_write, t->base, fd, EV_WRITE, on_connect, s);
	s->write_armed = false;
	event_add(s->ev_write, NULL);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct client_slot *s = arg;
	const struct client_opts *o = s->t->c->o;

	if (s->state == SLOT_WAITING) {
		if (now_us() < s->start_us) {
			slot_wait_until(s, s->start_us * 1000u);	/* woke early */
			return;
		}
		slot_begin(s, s->start_us);
		return;
	}
	if (s->state != SLOT_BACKOFF)
		return;
	if (run_over(s->t->c)) {
		slot_finish(s);
		return;
	}
	s->state = SLOT_IDLE;
	if (o->mode == CLIENT_CONN || o->mode == CLIENT_RR || o->mode == CLIENT_HTTP)
		slot_next(s);	/* rr/http reconnect from slot_begin */
	else
		slot_connect(s);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct client_thread *t = arg;
	event_base_loopbreak(t->base);
}

static void slot_start(struct client_slot *s)
{
	const struct client *c = s->t->c;
	const struct client_opts *o = c->o;

	if (o->rate > 0)
		s->due_ns = c->start_us * 1000u + (uint64_t)((double)s->index * 1e9 / o->rate);
	if (o->mode == CLIENT_STREAM) {
		s->stream_left = UINT64_MAX;
		if (o->bytes) {
			s->stream_left = o->bytes / o->connections;
			if (s->index < o->bytes % o->connections)
				s->stream_left++;
			if (s->stream_left == 0) {
				slot_finish(s);
				return;
			}
		}
	}
	if (o->mode == CLIENT_CONN)
		slot_next(s);
	else
		slot_connect(s);
}

static void *thread_main(void *arg)
{
	struct client_thread *t = arg;
	struct client *c = t->c;
	uint64_t now = now_us();
	struct timeval tv = tv_from_us(c->deadline_us > now ? c->deadline_us - now : 0);

	evtimer_add(t->ev_deadline, &tv);
	t->live_slots = t->nslots;
	for (uint32_t i = 0; i < t->nslots && !run_over(c); i++)
		slot_start(&t->slots[i]);
	if (t->live_slots > 0 && !run_over(c))
		event_base_dispatch(t->base);
	t->end_us = now_us();
	for (uint32_t i = 0; i < t->nslots; i++) {
		slot_close_fd(&t->slots[i]);
		event_del(t->slots[i].ev_timer);
	}
	atomic_fetch_add(&c->threads_done, 1);
	return NULL;
}

static int thread_setup(struct client *c, struct client_thread *t, uint32_t first, uint32_t count)
{
	const struct client_opts *o = c->o;

	t->c = c;
	/* Without a precise timer epoll rounds waits up to whole milliseconds,
	 * which would start open-loop requests late and inflate their latency. */
	struct event_config *cfg = event_config_new();
	if (!cfg)
		return -ENOMEM;
	/* Only for open loop: with epoll it costs a timerfd_settime per loop turn. */
	if (o->rate > 0)
		event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	t->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (!t->base)
		return -ENOMEM;
	t->ev_deadline = evtimer_new(t->base, on_deadline, t);
	t->latency = xmalloc(sizeof(*t->latency));
	histogram_init(t->latency);
	t->rbuf = xmalloc(RBUF_SIZE);
	t->nslots = count;
	t->slots = xcalloc(count ? count : 1, sizeof(*t->slots));
	for (uint32_t i = 0; i < count; i++) {
		struct client_slot *s = &t->slots[i];
		s->t = t;
		s->index = first + i;
		s->fd = -1;
		s->ev_read = xcalloc(1, event_get_struct_event_size());
		s->ev_write = xcalloc(1, event_get_struct_event_size());
		s->ev_timer = evtimer_new(t->base, on_timer, s);
		if (o->mode == CLIENT_HTTP)
			s->http = xmalloc(sizeof(*s->http));
	}
	return 0;
}

static void thread_teardown(struct client_thread *t)
{
	for (uint32_t i = 0; i < t->nslots; i++) {
		struct client_slot *s = &t->slots[i];
		if (s->ev_timer)
			event_free(s->ev_timer);
		free(s->ev_read);
		free(s->ev_write);
		free(s->http);
	}
	free(t->slots);
	if (t->ev_deadline)
		event_free(t->ev_deadline);
	if (t->base)
		event_base_free(t->base);
	free(t->latency);
	free(t->rbuf);
}

static void sum_counters(struct client *c, struct client_counters *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (uint32_t i = 0; i < c->o->threads; i++) {
		struct client_counters *n = &c->threads[i].n;
		counter_add(&sum->requests, counter_get(&n->requests));
		counter_add(&sum->errors, counter_get(&n->errors));
		counter_add(&sum->connect_failures, counter_get(&n->connect_failures));
		counter_add(&sum->opened, counter_get(&n->opened));
		counter_add(&sum->bytes_sent, counter_get(&n->bytes_sent));
		counter_add(&sum->bytes_received, counter_get(&n->bytes_received));
		counter_add(&sum->http_non2xx, counter_get(&n->http_non2xx));
		counter_add(&sum->idle_ready, counter_get(&n->idle_ready));
	}
}

static void print_progress(struct client *c, struct client_counters *cur,
			   struct client_counters *before, double secs)
{
	bool idle = c->o->mode == CLIENT_IDLE;
	uint64_t req = counter_get(&cur->requests);
	uint64_t dreq = req - counter_get(&before->requests);
	uint64_t din = counter_get(&cur->bytes_received) - counter_get(&before->bytes_received);
	uint64_t dout = counter_get(&cur->bytes_sent) - counter_get(&before->bytes_sent);
	fprintf(stderr, "\r%6.1fs  %s %10llu  %9.0f/s  in %8.2f MB/s  out %8.2f MB/s  errors %llu   ",
		(double)(now_us() - c->start_us) / 1e6, idle ? "ready" : "requests",
		(unsigned long long)(idle ? counter_get(&cur->idle_ready) : req),
		(double)dreq / secs, (double)din / secs / 1e6, (double)dout / secs / 1e6,
		(unsigned long long)counter_get(&cur->errors));
}

/* Wait for the threads, print progress, turn SIGINT/SIGTERM into a stop. */
static void supervise(struct client *c, const sigset_t *stop_signals)
{
	const struct client_opts *o = c->o;
	struct client_counters last;
	uint64_t last_us = now_us();
	bool ready_said = false;
	bool progress_shown = false;
	struct timespec tick = { .tv_sec = 0, .tv_nsec = 50 * 1000 * 1000 };

	memset(&last, 0, sizeof(last));
	while (atomic_load(&c->threads_done) < o->threads) {
		int sig = sigtimedwait(stop_signals, NULL, &tick);
		if (sig > 0) {
			atomic_store(&c->stop, true);
			for (uint32_t i = 0; i < o->threads; i++)
				event_base_loopbreak(c->threads[i].base);
		}
		struct client_counters cur;
		sum_counters(c, &cur);
		if (o->mode == CLIENT_IDLE && !ready_said &&
		    counter_get(&cur.idle_ready) >= o->connections) {
			printf("ready %u\n", o->connections);
			fflush(stdout);
			ready_said = true;
		}
		uint64_t now = now_us();
		if (o->progress && now - last_us >= 1000000u) {
			print_progress(c, &cur, &last, (double)(now - last_us) / 1e6);
			progress_shown = true;
			last = cur;
			last_us = now;
		}
	}
	if (progress_shown)
		fputc('\n', stderr);
}

int client_run(const struct client_opts *o, struct client_result *out)
{
	struct client c;
	sigset_t stop_signals;
	sigset_t old_mask;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	memset(&c, 0, sizeof(c));
	c.o = o;
	evthread_use_pthreads();
	c.pattern = xmalloc(PATTERN_SIZE);
	for (size_t i = 0; i < PATTERN_SIZE; i++)
		c.pattern[i] = (char)('a' + i % 26);
	if (o->mode == CLIENT_HTTP) {
		size_t cap = strlen(o->http_path) + strlen(o->http_host) + 128;
		c.http_req = xmalloc(cap);
		int n = snprintf(c.http_req, cap, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: zklb-bench\r\n%s\r\n",
				 o->http_path, o->http_host, o->http_close ? "Connection: close\r\n" : "");
		c.http_req_len = (size_t)n;
	}
	if (o->rate > 0)
		c.interval_ns = (uint64_t)((double)o->connections * 1e9 / o->rate);

	c.threads = xcalloc(o->threads, sizeof(*c.threads));
	for (uint32_t i = 0; i < o->threads; i++) {
		uint32_t first = (uint32_t)((uint64_t)o->connections * i / o->threads);
		uint32_t next = (uint32_t)((uint64_t)o->connections * (i + 1) / o->threads);
		rc = thread_setup(&c, &c.threads[i], first, next - first);
		if (rc < 0) {
			log_error("cannot create an event base");
			goto out;
		}
	}

	/* Threads inherit the blocked mask, so only supervise() sees the signals. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask);

	c.start_us = now_us();
	c.deadline_us = c.start_us + o->duration_us;
	uint32_t started = 0;
	for (; started < o->threads; started++) {
		int err = pthread_create(&c.threads[started].thread, NULL, thread_main, &c.threads[started]);
		if (err) {
			log_error("pthread_create: %s", strerror(err));
			rc = -err;
			atomic_store(&c.stop, true);
			atomic_fetch_add(&c.threads_done, o->threads - started);
			break;
		}
	}
	supervise(&c, &stop_signals);
	for (uint32_t i = 0; i < started; i++)
		pthread_join(c.threads[i].thread, NULL);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);

	struct client_counters sum;
	sum_counters(&c, &sum);
	out->requests = counter_get(&sum.requests);
	out->errors = counter_get(&sum.errors);
	out->connect_failures = counter_get(&sum.connect_failures);
	out->connections_opened = counter_get(&sum.opened);
	out->bytes_sent = counter_get(&sum.bytes_sent);
	out->bytes_received = counter_get(&sum.bytes_received);
	out->http_non2xx = counter_get(&sum.http_non2xx);
	out->idle_ready = counter_get(&sum.idle_ready);
	out->latency = xmalloc(sizeof(*out->latency));
	histogram_init(out->latency);
	uint64_t end = c.start_us;
	for (uint32_t i = 0; i < started; i++) {
		histogram_merge(out->latency, c.threads[i].latency);
		if (c.threads[i].end_us > end)
			end = c.threads[i].end_us;
	}
	out->elapsed_us = end - c.start_us;
out:
	for (uint32_t i = 0; i < o->threads; i++)
		thread_teardown(&c.threads[i]);
	free(c.threads);
	free(c.pattern);
	free(c.http_req);
	return rc;
}

void client_result_free(struct client_result *r)
{
	free(r->latency);
	r->latency = NULL;
}
