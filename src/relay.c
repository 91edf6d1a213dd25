/*
 * relay — see relay.h.
 *
 * Copying: a readable side is read into the worker's scratch buffer and
 * written straight to the other side; only what the other side does not take
 * at once is kept, in a buffer of max_buffer bytes borrowed from the worker.
 * While that buffer is full the reading side is not read (the kernel's
 * window then pushes back on the sender); it is read again once the buffer
 * has drained to half (libevent's le-proxy watermark scheme). An idle
 * connection holds no buffer at all.
 *
 * Bulk transfers: once SPLICE_AFTER reads in a row of a direction fill the
 * whole read buffer (a stream, not request/response traffic, for which
 * splicing small messages costs more than copying them) and no framing
 * tracker needs to see the bytes, the direction switches to splice(2)
 * through a pipe borrowed from the worker, so the bytes never enter user
 * space. One pipe load is in flight at a time; reading resumes when it has
 * drained.
 *
 * Timeouts: one timer per relay, owned by the current state: the connect
 * timeout while WAITING or CONNECTING, the idle timeout once ESTABLISHED
 * (re-armed lazily from `last_active_ms`, so traffic costs no timer update).
 */
#include "relay.h"
#include "backend.h"
#include "balance.h"
#include "framing.h"
#include "log.h"
#include "pool.h"
#include "service.h"
#include "worker.h"

#include <errno.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_MAX_TRIED (CONFIG_MAX_RETRIES + 1)	/* every attempt is remembered */
#define WEIGHT_SCALE 100		/* balancing weight units per configured weight */
#define SPLICE_AFTER 4			/* full reads in a row that make a direction splice */
#define SPLICE_CHUNK (256 * 1024)	/* at most this much in a pipe at once (its size) */

enum relay_state {
	RELAY_WAITING = 0,
	RELAY_CONNECTING,
	RELAY_ESTABLISHED,
	RELAY_CLOSED,
};

/* One direction of the copy. */
struct relay_dir {
	char *buf;				/* borrowed from the worker; NULL when empty */
	uint32_t start;				/* first pending byte */
	uint32_t end;				/* one past the last pending byte */
	bool eof;				/* the reading side sent FIN */
	bool shut;				/* SHUT_WR sent to the writing side */
	bool no_splice;				/* splice refused (EINVAL): copy instead */
	int pipe[2];				/* splice mode: read/write ends, -1 when off */
	uint32_t piped;				/* bytes sitting in the pipe */
	uint32_t full_reads;			/* reads in a row that filled the buffer */
};

struct relay {
	struct relay *next;			/* worker's list of live relays */
	struct relay *prev;
	struct relay *wnext;			/* listener's waiting list */
	struct worker *w;			/* owner */
	struct wlistener *l;			/* while WAITING only; NULL once detached */
	struct backend_set *set;		/* ref */
	struct backend *be;			/* ref; the current or last target */
	enum relay_state state;
	int cfd;				/* client socket, owned */
	int ufd;				/* upstream socket, owned; -1 before connect */
	struct event cr;			/* client readable */
	struct event cw;			/* client writable */
	struct event ur;			/* upstream readable */
	struct event uw;			/* upstream writable (and connect completion) */
	struct event timer;
	struct relay_dir c2u;			/* client -> upstream */
	struct relay_dir u2c;			/* upstream -> client */
	uint32_t cap;				/* max_buffer of the service */
	uint32_t attempts;			/* connects started */
	struct backend *tried[RELAY_MAX_TRIED];	/* not refs: identity only */
	bool first_byte;			/* the backend sent something */
	bool fin_deferred;			/* client FIN held back: upstream may be pooled */
	bool reused;				/* the upstream came from the idle pool */
	struct framing *fr;			/* owned; pool.reuse tracker, NULL when off */
	uint64_t last_active_ms;
};

static const char *const close_reason_names[RELAY_CLOSE_REASONS] = {
	[RELAY_CLOSE_DONE] = "done",
	[RELAY_CLOSE_CLIENT_ERROR] = "client_error",
	[RELAY_CLOSE_BACKEND_ERROR] = "backend_error",
	[RELAY_CLOSE_IDLE_TIMEOUT] = "idle_timeout",
	[RELAY_CLOSE_CONNECT_FAILED] = "connect_failed",
	[RELAY_CLOSE_NO_BACKEND] = "no_backend",
	[RELAY_CLOSE_WAIT_TIMEOUT] = "wait_timeout",
	[RELAY_CLOSE_LOCAL_ERROR] = "local_error",
	[RELAY_CLOSE_SHUTDOWN] = "shutdown",
};

const char *relay_close_reason_name(enum relay_close_reason r)
{
	return r < RELAY_CLOSE_REASONS ? close_reason_names[r] : "?";
}

static void relay_close(struct relay *r, enum relay_close_reason why);
static void relay_client_fin(struct relay *r);
static void relay_upstream_write_failed(struct relay *r);
static void relay_connect_next(struct relay *r);
static void on_client_read(evutil_socket_t fd, short what, void *arg);
static void on_client_write(evutil_socket_t fd, short what, void *arg);
static void on_upstream_read(evutil_socket_t fd, short what, void *arg);
static void on_upstream_write(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);

static void arm_timer(struct relay *r, uint64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	event_add(&r->timer, &tv);
}

/* The one place states change; also owns which timeout is armed. */
static void relay_set_state(struct relay *r, enum relay_state s)
{
	const struct service_conf *conf = r->set->conf;
	r->state = s;
	switch (s) {
	case RELAY_WAITING:
	case RELAY_CONNECTING:
		arm_timer(r, conf->connect_timeout_ms);
		break;
	case RELAY_ESTABLISHED:
		if (conf->idle_timeout_ms)
			arm_timer(r, conf->idle_timeout_ms);
		else
			event_del(&r->timer);
		break;
	case RELAY_CLOSED:
		event_del(&r->timer);
		break;
	}
}

static void set_nodelay(int fd)
{
	int one = 1;
	/* Fails harmlessly on unix sockets. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void relay_accept(struct worker *w, struct wlistener *l, int cfd)
{
	struct relay *r = xcalloc(1, sizeof(*r));
	r->w = w;
	r->cfd = cfd;
	r->ufd = -1;
	r->set = backend_set_get(l->set);
	r->cap = (uint32_t)r->set->conf->max_buffer;
	r->last_active_ms = now_ms();
	r->c2u.pipe[0] = r->c2u.pipe[1] = -1;
	r->u2c.pipe[0] = r->u2c.pipe[1] = -1;
	set_nodelay(cfd);

	event_assign(&r->cr, w->base, cfd, EV_READ | EV_PERSIST, on_client_read, r);
	event_assign(&r->cw, w->base, cfd, EV_WRITE | EV_PERSIST, on_client_write, r);
	evtimer_assign(&r->timer, w->base, on_timer, r);

	r->next = w->relays;
	if (w->relays)
		w->relays->prev = r;
	w->relays = r;
	atomic_fetch_add_explicit(&w->n_relays, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->set->svc->conn_total, 1, memory_order_relaxed);

	if (!r->set->ready) {
		/* No view yet (discovery has not answered): wait, do not refuse. */
		r->l = l;
		r->wnext = l->waiting;
		l->waiting = r;
		relay_set_state(r, RELAY_WAITING);
		return;
	}
	relay_connect_next(r);
}

static void unlink_waiting(struct relay *r)
{
	if (!r->l)
		return;
	for (struct relay **pp = &r->l->waiting; *pp; pp = &(*pp)->wnext) {
		if (*pp == r) {
			*pp = r->wnext;
			break;
		}
	}
	r->l = NULL;
	r->wnext = NULL;
}

void relay_wake_waiting(struct wlistener *l)
{
	struct relay *list = l->waiting;
	l->waiting = NULL;
	while (list) {
		struct relay *r = list;
		list = r->wnext;
		r->wnext = NULL;
		r->l = NULL;
		/* Route with the new view. */
		backend_set_put(r->set);
		r->set = backend_set_get(l->set);
		r->cap = (uint32_t)r->set->conf->max_buffer;
		relay_connect_next(r);
	}
}

void relay_detach_waiting(struct wlistener *l)
{
	for (struct relay *r = l->waiting; r; r = r->wnext)
		r->l = NULL;
	l->waiting = NULL;
}

static bool was_tried(const struct relay *r, const struct backend *be)
{
	for (uint32_t i = 0; i < r->attempts; i++)
		if (r->tried[i] == be)
			return true;
	return false;
}

/* Choose the next backend, never one already tried; NULL when none is left. */
static struct backend *relay_choose(struct relay *r, uint64_t now)
{
	const struct backend_set *s = r->set;
	struct balance_candidate stack[32];
	struct balance_candidate *c = s->n <= ARRAY_SIZE(stack) ? stack : xmalloc(s->n * sizeof(*c));
	size_t routable = 0, members = 0;

	for (size_t i = 0; i < s->n; i++) {
		struct backend *be = s->v[i];
		bool member = atomic_load_explicit(&be->member, memory_order_relaxed) && backend_has_addr(be);
		bool ok = member && backend_routable(be, now);
		members += member;
		routable += ok;
		c[i].active = atomic_load_explicit(&be->active, memory_order_relaxed);
		/*
		 * Weights are scaled up so slow start can ramp even a weight of 1
		 * (fractions of it); round_robin walks weights slot by slot, so
		 * it keeps the configured ones.
		 */
		uint32_t wt = s->conf->balance == BALANCE_ROUND_ROBIN ? be->weight
								     : be->weight * WEIGHT_SCALE;
		c[i].weight = health_slow_start_weight(wt,
			atomic_load_explicit(&be->serving_since_ms, memory_order_relaxed), now,
			s->conf->slow_start_ms);
		c[i].eligible = ok && !was_tried(r, be);
	}
	/* Panic (Envoy): too few healthy ones left, so balance over all of them. */
	if (health_in_panic(routable, members, s->conf->health.panic_threshold)) {
		for (size_t i = 0; i < s->n; i++) {
			struct backend *be = s->v[i];
			c[i].eligible = atomic_load_explicit(&be->member, memory_order_relaxed) &&
					backend_has_addr(be) && !was_tried(r, be);
		}
	}
	struct balance_cursor cur = { 0 };
	if (s->conf->balance == BALANCE_ROUND_ROBIN)
		cur.next = atomic_fetch_add_explicit(&s->svc->rr_next, 1, memory_order_relaxed);
	size_t k = balance_pick(s->conf->balance, c, s->n, &cur, &r->w->rng);
	if (c != stack)
		free(c);
	return k == BALANCE_NONE ? NULL : s->v[k];
}

/* Drop the current upstream attempt (failed connect or reset). */
static void upstream_release(struct relay *r)
{
	if (r->ufd >= 0) {
		/* Not yet assigned when the first connect failed at once. */
		if (event_initialized(&r->ur))
			event_del(&r->ur);
		if (event_initialized(&r->uw))
			event_del(&r->uw);
		close(r->ufd);
		r->ufd = -1;
	}
	if (r->be) {
		atomic_fetch_sub_explicit(&r->be->active, 1, memory_order_relaxed);
		backend_put(r->be);
		r->be = NULL;
	}
}

static void relay_established(struct relay *r)
{
	enum reuse_kind reuse = r->set->conf->pool.reuse;
	if (reuse != REUSE_NONE && !r->fr)
		r->fr = framing_new(reuse);
	event_assign(&r->uw, r->w->base, r->ufd, EV_WRITE | EV_PERSIST, on_upstream_write, r);
	event_assign(&r->ur, r->w->base, r->ufd, EV_READ | EV_PERSIST, on_upstream_read, r);
	relay_set_state(r, RELAY_ESTABLISHED);
	r->last_active_ms = now_ms();
	event_add(&r->cr, NULL);
	event_add(&r->ur, NULL);
}

/* A connect attempt failed: count it against the backend and try another. */
static void relay_connect_failed(struct relay *r, const char *why)
{
	service_report_failure(r->set->svc, r->be, why);
	upstream_release(r);
	relay_connect_next(r);
}

static void relay_connect_next(struct relay *r)
{
	const struct service_conf *conf = r->set->conf;
	uint64_t now = now_ms();

	for (;;) {
		/* retries <= CONFIG_MAX_RETRIES (the schema): tried[] holds every attempt */
		if (r->attempts > conf->retries || r->attempts >= RELAY_MAX_TRIED) {
			relay_close(r, RELAY_CLOSE_CONNECT_FAILED);
			return;
		}
		struct backend *be = relay_choose(r, now);
		if (!be) {
			relay_close(r, r->attempts ? RELAY_CLOSE_CONNECT_FAILED : RELAY_CLOSE_NO_BACKEND);
			return;
		}
		if (r->attempts)
			atomic_fetch_add_explicit(&r->set->svc->retries, 1, memory_order_relaxed);
		r->tried[r->attempts] = be;
		r->attempts++;
		r->be = backend_get(be);
		atomic_fetch_add_explicit(&be->active, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&be->conn_total, 1, memory_order_relaxed);

		if (conf->pool.reuse != REUSE_NONE || conf->pool.prewarm) {
			struct framing *fr = NULL;
			int pfd = pool_take(r->w, be, &fr);
			if (pfd >= 0) {
				r->ufd = pfd;
				r->fr = fr;
				r->reused = true;
				relay_established(r);
				return;
			}
		}

		atomic_fetch_add_explicit(&be->upstream_opened, 1, memory_order_relaxed);
		int fd = socket(be->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			log_warn("svc=%s cannot create upstream socket: %s", r->set->svc->name,
				 strerror(errno));
			upstream_release(r);
			relay_close(r, RELAY_CLOSE_LOCAL_ERROR);
			return;
		}
		set_nodelay(fd);
		r->ufd = fd;
		if (connect(fd, (struct sockaddr *)&be->addr.ss, be->addr.len) == 0) {
			relay_established(r);
			return;
		}
		if (errno == EINPROGRESS) {
			event_assign(&r->uw, r->w->base, fd, EV_WRITE, on_upstream_write, r);
			event_add(&r->uw, NULL);
			relay_set_state(r, RELAY_CONNECTING);
			return;
		}
		int err = errno;
		if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM ||
		    err == EADDRNOTAVAIL) {
			/* Our problem, not the backend's: do not eject it for this. */
			log_warn("svc=%s be=%s connect: %s", r->set->svc->name, be->name, strerror(err));
			upstream_release(r);
			relay_close(r, RELAY_CLOSE_LOCAL_ERROR);
			return;
		}
		service_report_failure(r->set->svc, be, strerror(err));
		upstream_release(r);
	}
}

static void dir_release(struct relay *r, struct relay_dir *d)
{
	if (d->buf) {
		worker_buf_put(r->w, d->buf, r->cap);
		d->buf = NULL;
	}
	d->start = d->end = 0;
}

/* Give the pipe back (relay closing). A pipe with bytes in it is closed. */
static void dir_unsplice(struct relay *r, struct relay_dir *d)
{
	if (d->pipe[0] < 0)
		return;
	worker_pipe_put(r->w, d->pipe, d->piped == 0);
	d->pipe[0] = d->pipe[1] = -1;
	d->piped = 0;
}

/* Move what sits in the pipe to fd. false on a fatal write error. */
static bool dir_flush_pipe(struct relay_dir *d, int fd)
{
	while (d->piped) {
		ssize_t n = splice(d->pipe[0], NULL, fd, NULL, d->piped,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n == 0)
			return true;	/* nothing moved: wait for writability */
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK;
		}
		d->piped -= (uint32_t)n;
	}
	return true;
}

/* Read from from_fd into the pipe and on to to_fd. Like dir_pump(). */
static ssize_t dir_pump_splice(struct relay_dir *d, int from_fd, int to_fd, bool *write_failed)
{
	if (d->piped) {
		errno = EAGAIN;	/* one pipe load at a time */
		return -1;
	}
	ssize_t n;
	do
		n = splice(from_fd, NULL, d->pipe[1], NULL, SPLICE_CHUNK,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n;
	d->piped = (uint32_t)n;
	if (!dir_flush_pipe(d, to_fd))
		*write_failed = true;
	return n;
}

/*
 * Write what is pending in d to fd. Returns false on a fatal write error.
 * Releases the buffer once empty.
 */
static bool dir_flush(struct relay *r, struct relay_dir *d, int fd)
{
	while (d->start < d->end) {
		ssize_t n = send(fd, d->buf + d->start, d->end - d->start, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			return false;
		}
		d->start += (uint32_t)n;
	}
	dir_release(r, d);
	return true;
}

/*
 * Hand the upstream connection to the pool if it is exactly at a boundary.
 * This is where the pool's invariant is enforced: the tracker must say every
 * request was fully answered, nothing may be pending towards the backend, and
 * the backend must not have closed its side; then no byte of this client's
 * exchange can arrive on the connection any more.
 */
static bool relay_try_pool(struct relay *r)
{
	struct worker *w = r->w;
	if (r->state != RELAY_ESTABLISHED || r->ufd < 0 || !r->fr)
		return false;
	enum framing_verdict v = framing_verdict(r->fr);
	if (v != FRAMING_OK || r->c2u.end != r->c2u.start || r->u2c.eof || r->c2u.shut) {
		w->pool.not_reusable[v < FRAMING_VERDICT_COUNT ? v : FRAMING_ERROR]++;
		w->pool.discards[POOL_DISCARD_NOT_REUSABLE]++;
		return false;
	}
	event_del(&r->ur);
	event_del(&r->uw);
	pool_put(w, r->be, r->ufd, r->fr, &r->set->conf->pool);
	r->ufd = -1;
	r->fr = NULL;
	return true;
}

/*
 * The client sent FIN and every byte of it reached the backend. Without
 * reuse the FIN is passed on. With reuse, an upstream connection at a
 * boundary goes to the pool (once replies already read from it have reached
 * the client) and the client gets our FIN instead. Anything else — a reply
 * still owed, half a request, a poisoned tracker — is decided at once: the
 * FIN goes to the backend. Waiting for an owed reply could wait forever
 * when the request itself was incomplete, and the tracker cannot tell.
 */
static void relay_client_fin(struct relay *r)
{
	enum framing_verdict v = framing_verdict(r->fr);
	if (v == FRAMING_OK && r->u2c.end != r->u2c.start && !r->u2c.eof) {
		r->fin_deferred = true;	/* decided again once the client has it all */
		return;
	}
	r->fin_deferred = false;
	if (relay_try_pool(r)) {
		/* The upstream lives on in the pool; the client gets our FIN. */
		r->c2u.shut = true;
		r->u2c.eof = true;
		event_del(&r->cw);
		shutdown(r->cfd, SHUT_WR);
		r->u2c.shut = true;
		return;
	}
	/* Not reusable: decided once, so stop tracking and pass the FIN on. */
	framing_free(r->fr);
	r->fr = NULL;
	shutdown(r->ufd, SHUT_WR);
	r->c2u.shut = true;
}

/* After a direction made progress, update interest and half-close. */
static void dir_settle(struct relay *r, struct relay_dir *d, int to_fd, struct event *src_read,
		       struct event *dst_write)
{
	if (d->piped) {
		/* Splicing: wait for the pipe to drain before reading more. */
		event_add(dst_write, NULL);
		event_del(src_read);
		return;
	}
	uint32_t pending = d->end - d->start;
	if (pending) {
		event_add(dst_write, NULL);
		if (d->start && pending <= r->cap / 2) {
			/* Drained to half: compact so reading can go on. */
			memmove(d->buf, d->buf + d->start, pending);
			d->start = 0;
			d->end = pending;
		}
		if (d->end == r->cap)
			event_del(src_read);	/* full: let the kernel push back */
		else if (!d->eof)
			event_add(src_read, NULL);
		return;
	}
	event_del(dst_write);
	if (!d->eof) {
		event_add(src_read, NULL);
	} else if (!d->shut) {
		if (d == &r->c2u && r->fr) {
			/* The client is done: the upstream connection may outlive it. */
			relay_client_fin(r);
			return;
		}
		/*
		 * The reading side sent FIN and everything is through: pass it on.
		 * When the other direction is already done, the close that follows
		 * at once sends the FIN: spare the syscall.
		 */
		const struct relay_dir *other = d == &r->c2u ? &r->u2c : &r->c2u;
		if (!other->shut)
			shutdown(to_fd, SHUT_WR);
		d->shut = true;
	}
}

/*
 * Let the framing tracker see the bytes (pool.reuse). Once it says the
 * connection can never be reused (upgrade, pinned, unframed, error...), it
 * is dropped: the rest of the connection is relayed (and may splice)
 * without it.
 */
static inline void relay_track(struct relay *r, const struct relay_dir *d, const char *p, size_t n)
{
	if (!r->fr)
		return;
	if (d == &r->c2u)
		framing_feed_request(r->fr, p, n);
	else
		framing_feed_response(r->fr, p, n);
	enum framing_verdict v = framing_verdict(r->fr);
	if (v != FRAMING_OK && v != FRAMING_PARTIAL) {
		r->w->pool.not_reusable[v < FRAMING_VERDICT_COUNT ? v : FRAMING_ERROR]++;
		r->w->pool.discards[POOL_DISCARD_NOT_REUSABLE]++;
		framing_free(r->fr);
		r->fr = NULL;
	}
}

/*
 * Read from `from_fd` into d and forward to `to_fd`. Returns the bytes read,
 * 0 on EOF, -1 with errno on error (EAGAIN included).
 */
static ssize_t dir_pump(struct relay *r, struct relay_dir *d, int from_fd, int to_fd,
			bool *write_failed)
{
	struct worker *w = r->w;
	ssize_t n;
	*write_failed = false;
	if (d->pipe[0] < 0 && !d->buf && !r->fr && !d->no_splice && d->full_reads >= SPLICE_AFTER &&
	    !worker_pipe_get(w, d->pipe))
		d->no_splice = true;	/* out of pipes: copy */
	if (d->pipe[0] >= 0) {
		n = dir_pump_splice(d, from_fd, to_fd, write_failed);
		if (n < 0 && errno == EINVAL) {
			/* This socket pair cannot splice: back to copying. */
			dir_unsplice(r, d);
			d->no_splice = true;
			errno = EAGAIN;
		}
		return n;
	}
	if (d->buf) {
		/* Something is still pending: append behind it. */
		if (d->end == r->cap) {
			errno = EAGAIN;
			return -1;
		}
		do
			n = recv(from_fd, d->buf + d->end, r->cap - d->end, 0);
		while (n < 0 && errno == EINTR);
		if (n <= 0)
			return n;
		relay_track(r, d, d->buf + d->end, (size_t)n);
		d->full_reads = d->end + (uint32_t)n == r->cap ? d->full_reads + 1 : 0;
		d->end += (uint32_t)n;
		if (!dir_flush(r, d, to_fd))
			*write_failed = true;
		return n;
	}
	size_t room = MIN(w->scratch_len, r->cap);
	do
		n = recv(from_fd, w->scratch, room, 0);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n;
	relay_track(r, d, w->scratch, (size_t)n);
	d->full_reads = (size_t)n == room ? d->full_reads + 1 : 0;
	ssize_t sent = 0;
	while (sent < n) {
		ssize_t k = send(to_fd, w->scratch + sent, (size_t)(n - sent), MSG_NOSIGNAL);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				*write_failed = true;
			break;
		}
		sent += k;
	}
	if (sent < n && !*write_failed) {
		d->buf = worker_buf_get(w, r->cap);
		memcpy(d->buf, w->scratch + sent, (size_t)(n - sent));
		d->start = 0;
		d->end = (uint32_t)(n - sent);
	}
	return n;
}

static void relay_maybe_done(struct relay *r)
{
	if (r->fin_deferred || (r->c2u.eof && !r->c2u.shut && r->fr && r->c2u.end == r->c2u.start))
		relay_client_fin(r);
	if (r->c2u.shut && r->u2c.shut)
		relay_close(r, RELAY_CLOSE_DONE);
}

static void on_client_read(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	bool wfail;
	ssize_t n = dir_pump(r, &r->c2u, r->cfd, r->ufd, &wfail);
	if (n > 0) {
		r->last_active_ms = now_ms();
		atomic_fetch_add_explicit(&r->be->bytes_out, (uint64_t)n, memory_order_relaxed);
		if (wfail) {
			relay_upstream_write_failed(r);
			return;
		}
	} else if (n == 0) {
		r->c2u.eof = true;
		event_del(&r->cr);
	} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
		if (r->c2u.end == r->cap)
			event_del(&r->cr);
		return;
	} else {
		relay_close(r, RELAY_CLOSE_CLIENT_ERROR);
		return;
	}
	dir_settle(r, &r->c2u, r->ufd, &r->cr, &r->uw);
	relay_maybe_done(r);
}

static void on_upstream_read(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	bool wfail;
	ssize_t n = dir_pump(r, &r->u2c, r->ufd, r->cfd, &wfail);
	if (n > 0) {
		r->last_active_ms = now_ms();
		atomic_fetch_add_explicit(&r->be->bytes_in, (uint64_t)n, memory_order_relaxed);
		if (!r->first_byte) {
			r->first_byte = true;
			service_report_success(r->set->svc, r->be);
		}
		if (wfail) {
			relay_close(r, RELAY_CLOSE_CLIENT_ERROR);
			return;
		}
	} else if (n == 0) {
		if (!r->first_byte) {
			/* A clean FIN may be the protocol's own end: not a failure. */
			r->first_byte = true;
			service_report_success(r->set->svc, r->be);
		}
		r->u2c.eof = true;
		event_del(&r->ur);
	} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
		if (r->u2c.end == r->cap)
			event_del(&r->ur);
		return;
	} else {
		/* A pooled connection may die of old age: not the backend's failure. */
		if (!r->first_byte && errno == ECONNRESET && !r->reused)
			service_report_failure(r->set->svc, r->be, "reset before the first byte");
		relay_close(r, RELAY_CLOSE_BACKEND_ERROR);
		return;
	}
	dir_settle(r, &r->u2c, r->cfd, &r->ur, &r->cw);
	relay_maybe_done(r);
}

static void on_client_write(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	if (!dir_flush_pipe(&r->u2c, r->cfd) || !dir_flush(r, &r->u2c, r->cfd)) {
		relay_close(r, RELAY_CLOSE_CLIENT_ERROR);
		return;
	}
	r->last_active_ms = now_ms();
	dir_settle(r, &r->u2c, r->cfd, &r->ur, &r->cw);
	relay_maybe_done(r);
}

/*
 * Writing to the backend failed. Before its first byte that is a reset of a
 * fresh connection, which counts against it like a reset seen on read.
 */
static void relay_upstream_write_failed(struct relay *r)
{
	if (!r->first_byte && !r->reused && (errno == ECONNRESET || errno == EPIPE))
		service_report_failure(r->set->svc, r->be, "reset before the first byte");
	relay_close(r, RELAY_CLOSE_BACKEND_ERROR);
}

static void on_upstream_write(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	if (r->state == RELAY_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(r->ufd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			relay_connect_failed(r, strerror(err));
			return;
		}
		relay_established(r);
		return;
	}
	if (!dir_flush_pipe(&r->c2u, r->ufd) || !dir_flush(r, &r->c2u, r->ufd)) {
		relay_upstream_write_failed(r);
		return;
	}
	r->last_active_ms = now_ms();
	dir_settle(r, &r->c2u, r->ufd, &r->cr, &r->uw);
	relay_maybe_done(r);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	switch (r->state) {
	case RELAY_WAITING:
		unlink_waiting(r);
		atomic_fetch_add_explicit(&r->set->svc->wait_timeouts, 1, memory_order_relaxed);
		log_warn("svc=%s no view of the service after %llums: closing the client",
			 r->set->svc->name, (unsigned long long)r->set->conf->connect_timeout_ms);
		relay_close(r, RELAY_CLOSE_WAIT_TIMEOUT);
		break;
	case RELAY_CONNECTING:
		relay_connect_failed(r, "connect timeout");
		break;
	case RELAY_ESTABLISHED: {
		uint64_t idle = r->set->conf->idle_timeout_ms;
		uint64_t quiet = now_ms() - r->last_active_ms;
		if (quiet >= idle)
			relay_close(r, RELAY_CLOSE_IDLE_TIMEOUT);
		else
			arm_timer(r, idle - quiet);
		break;
	}
	case RELAY_CLOSED:
		break;
	}
}

static void relay_close(struct relay *r, enum relay_close_reason why)
{
	struct worker *w = r->w;
	if (r->state == RELAY_CLOSED)
		return;
	if (why == RELAY_CLOSE_CONNECT_FAILED || why == RELAY_CLOSE_NO_BACKEND ||
	    why == RELAY_CLOSE_WAIT_TIMEOUT || why == RELAY_CLOSE_LOCAL_ERROR) {
		if (r->state != RELAY_ESTABLISHED) {
			atomic_fetch_add_explicit(&r->set->svc->conn_failed, 1, memory_order_relaxed);
			log_debug("svc=%s client closed without a backend: %s", r->set->svc->name,
				  relay_close_reason_name(why));
		}
	}
	atomic_fetch_add_explicit(&w->closes[why], 1, memory_order_relaxed);
	/* A client that left at a boundary still leaves a reusable upstream. */
	if (r->fr && why != RELAY_CLOSE_BACKEND_ERROR && why != RELAY_CLOSE_SHUTDOWN)
		relay_try_pool(r);
	framing_free(r->fr);
	r->fr = NULL;
	unlink_waiting(r);
	relay_set_state(r, RELAY_CLOSED);
	event_del(&r->cr);
	event_del(&r->cw);
	close(r->cfd);
	r->cfd = -1;
	upstream_release(r);
	dir_release(r, &r->c2u);
	dir_release(r, &r->u2c);
	dir_unsplice(r, &r->c2u);
	dir_unsplice(r, &r->u2c);

	if (r->prev)
		r->prev->next = r->next;
	else
		w->relays = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = NULL;
	atomic_fetch_sub_explicit(&w->n_relays, 1, memory_order_relaxed);
	/* Reclaimed after this loop turn: the caller may still be on our stack. */
	r->next = w->dead;
	w->dead = r;
	worker_schedule_reap(w);
}

void relay_close_all(struct worker *w)
{
	while (w->relays)
		relay_close(w->relays, RELAY_CLOSE_SHUTDOWN);
}

void relay_reap(struct worker *w)
{
	struct relay *r = w->dead;
	w->dead = NULL;
	while (r) {
		struct relay *next = r->next;
		backend_set_put(r->set);
		free(r);
		r = next;
	}
}
