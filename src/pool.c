/*
 * pool — see pool.h.
 */
#include "pool.h"
#include "backend.h"
#include "backend_set.h"
#include "log.h"
#include "service.h"
#include "tls.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define POOL_BACKOFF_MIN_MS 100
#define POOL_BACKOFF_MAX_MS 5000
#define POOL_EARLY_CLOSE_MS 1000	/* a prewarmed connection closed sooner is a refusal */
#define POOL_TLS_RECORDS_MAX 8		/* non-data TLS records consumed by one liveness check */

enum pooled_state {
	POOLED_CONNECTING = 0,		/* prewarm connect (and TLS handshake) in flight */
	POOLED_IDLE,			/* established, waiting for a client */
	POOLED_DEAD,			/* closed; freed after the loop turn */
};

struct pooled {
	struct pooled *snext;		/* slot LIFO */
	struct pooled *wnext;		/* worker's list of all */
	struct pooled *wprev;
	struct pool_worker *pw;		/* owner */
	struct backend *be;		/* ref */
	int fd;				/* owned */
	struct event ev;		/* write while connecting, read + idle timeout after */
	struct framing *fr;		/* owned; may be NULL */
	struct tls_conn *tls;		/* owned; NULL for plain TCP */
	uint64_t deadline_ms;		/* prewarm: connect and handshake done by then */
	enum pooled_state state;
	uint64_t idle_timeout_ms;	/* pool.idle_timeout of the service */
	uint64_t idle_since_ms;		/* when it entered the pool */
	bool prewarmed;			/* opened by the refill, not returned by a client */
};

static const char *const discard_names[POOL_DISCARD_COUNT] = {
	[POOL_DISCARD_CLOSED] = "closed_while_idle",
	[POOL_DISCARD_DATA] = "unsolicited_data",
	[POOL_DISCARD_STALE] = "stale",
	[POOL_DISCARD_IDLE_TIMEOUT] = "idle_timeout",
	[POOL_DISCARD_FULL] = "pool_full",
	[POOL_DISCARD_REMOVED] = "backend_gone",
	[POOL_DISCARD_NOT_REUSABLE] = "not_reusable",
	[POOL_DISCARD_SHUTDOWN] = "shutdown",
	[POOL_DISCARD_CONNECT_FAILED] = "connect_failed",
	[POOL_DISCARD_NO_MEMORY] = "no_memory",
};

const char *pool_discard_name(enum pool_discard d)
{
	return d < POOL_DISCARD_COUNT ? discard_names[d] : "?";
}

uint32_t pool_prewarm_share(uint32_t prewarm, unsigned n_workers, unsigned id)
{
	if (n_workers == 0)
		return prewarm;
	return prewarm / n_workers + (id < prewarm % n_workers ? 1 : 0);
}

uint32_t pool_backoff_next(uint32_t prev_ms)
{
	if (prev_ms < POOL_BACKOFF_MIN_MS)
		return POOL_BACKOFF_MIN_MS;
	return prev_ms >= POOL_BACKOFF_MAX_MS / 2 ? POOL_BACKOFF_MAX_MS : prev_ms * 2;
}

static struct pool_slot *slot_of(struct pool_worker *pw, struct backend *be)
{
	return &be->slots[pw->id];
}

static void slot_unlink(struct pool_slot *s, struct pooled *p)
{
	for (struct pooled **pp = &s->idle; *pp; pp = &(*pp)->snext) {
		if (*pp == p) {
			*pp = p->snext;
			s->n_idle--;
			atomic_fetch_sub_explicit(&p->be->idle, 1, memory_order_relaxed);
			break;
		}
	}
	p->snext = NULL;
}

void pool_worker_reap(struct pool_worker *pw)
{
	struct pooled *p = pw->dead;
	pw->dead = NULL;
	while (p) {
		struct pooled *next = p->wnext;
		backend_put(p->be);
		framing_free(p->fr);
		tls_conn_free(p->tls);
		free(p);
		p = next;
	}
}

/*
 * Take p out of its slot and the worker's list; it is freed after the loop
 * turn (we may be inside its own callback). Its fd is the caller's business.
 */
static void pooled_retire(struct pooled *p)
{
	struct pool_worker *pw = p->pw;
	struct pool_slot *s = slot_of(pw, p->be);
	if (p->state == POOLED_IDLE)
		slot_unlink(s, p);
	else if (p->state == POOLED_CONNECTING)
		s->n_connecting--;
	if (event_initialized(&p->ev))	/* not yet when connect() failed at once */
		event_del(&p->ev);
	p->state = POOLED_DEAD;
	if (p->wprev)
		p->wprev->wnext = p->wnext;
	else
		pw->all = p->wnext;
	if (p->wnext)
		p->wnext->wprev = p->wprev;
	p->wprev = NULL;
	p->wnext = pw->dead;
	pw->dead = p;
	event_active(pw->reap, EV_TIMEOUT, 0);
}

/* Close p now and count why. */
static void pooled_drop(struct pooled *p, enum pool_discard why)
{
	p->pw->discards[why]++;
	if (p->tls)
		backend_count_tls_bytes(p->be, p->tls);
	tls_conn_free(p->tls);
	p->tls = NULL;
	close(p->fd);
	p->fd = -1;
	pooled_retire(p);
}

/* The refill of p's slot waits longer: the backend refused in effect. */
static void slot_back_off(struct pooled *p, uint64_t now)
{
	struct pool_slot *s = slot_of(p->pw, p->be);
	s->backoff_ms = pool_backoff_next(s->backoff_ms);
	s->next_attempt_ms = now + s->backoff_ms;
}

/* What a look at an idle connection found. */
enum pooled_look {
	POOLED_QUIET = 0,		/* nothing to read: alive */
	POOLED_DATA,			/* bytes nobody asked for */
	POOLED_CLOSED,			/* FIN, close_notify, reset or TLS error */
};

/*
 * Look at an idle connection without taking anything from a client. Over
 * TLS, records that carry no data (session tickets) are consumed: reading
 * them is how OpenSSL hands over the tickets. Bounded: a peer that keeps
 * sending such records is not waited for.
 */
static enum pooled_look pooled_look(struct pooled *p)
{
	for (int i = 0; i < POOL_TLS_RECORDS_MAX; i++) {
		char c;
		/* What OpenSSL already holds (data, a close_notify) needs no socket. */
		if (!p->tls || !tls_conn_pending(p->tls)) {
			ssize_t n = recv(p->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				return POOLED_QUIET;
			if (n <= 0)
				return POOLED_CLOSED;
			if (!p->tls)
				return POOLED_DATA;
		}
		enum tls_io io;
		if (tls_conn_read(p->tls, &c, 1, &io) > 0)
			return POOLED_DATA;
		if (io != TLS_IO_WANT_READ)
			return io == TLS_IO_WANT_WRITE ? POOLED_QUIET : POOLED_CLOSED;
	}
	return POOLED_DATA;
}

static void on_idle_event(evutil_socket_t fd, short what, void *arg)
{
	struct pooled *p = arg;
	if (what & EV_TIMEOUT) {
		pooled_drop(p, POOL_DISCARD_IDLE_TIMEOUT);
		return;
	}
	enum pooled_look look = pooled_look(p);
	if (look == POOLED_QUIET)
		return;	/* spurious wake-up, or a session ticket */
	/*
	 * A backend that accepts and drops prewarmed connections at once is
	 * refusing in all but name: back off as for a refused connect instead
	 * of reconnecting on every tick. (Never a backend failure, though.)
	 */
	uint64_t now = now_ms();
	if (p->prewarmed && now - p->idle_since_ms < POOL_EARLY_CLOSE_MS)
		slot_back_off(p, now);
	pooled_drop(p, look == POOLED_DATA ? POOL_DISCARD_DATA : POOL_DISCARD_CLOSED);
}

static void pooled_make_idle(struct pooled *p, uint64_t idle_timeout_ms)
{
	struct pool_slot *s = slot_of(p->pw, p->be);
	p->state = POOLED_IDLE;
	p->snext = s->idle;
	s->idle = p;
	s->n_idle++;
	p->idle_since_ms = now_ms();
	atomic_fetch_add_explicit(&p->be->idle, 1, memory_order_relaxed);
	event_assign(&p->ev, p->pw->base, p->fd, EV_READ | EV_PERSIST, on_idle_event, p);
	struct timeval tv = { .tv_sec = (time_t)(idle_timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(idle_timeout_ms % 1000) * 1000 };
	event_add(&p->ev, idle_timeout_ms ? &tv : NULL);
}

static struct pooled *pooled_new(struct pool_worker *pw, struct backend *be, int fd,
				 struct framing *fr)
{
	struct pooled *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;	/* the caller closes fd: no pooled connection, zklb goes on */
	p->pw = pw;
	p->be = backend_get(be);
	p->fd = fd;
	p->fr = fr;
	p->wnext = pw->all;
	if (pw->all)
		pw->all->wprev = p;
	pw->all = p;
	return p;
}

int pool_take(struct pool_worker *pw, struct backend *be, struct framing **fr,
	      struct tls_conn **tls)
{
	struct pool_slot *s = slot_of(pw, be);
	while (s->idle) {
		struct pooled *p = s->idle;
		if (pooled_look(p) != POOLED_QUIET) {
			pooled_drop(p, POOL_DISCARD_STALE);
			continue;
		}
		/* Not a discard: the connection lives on in the relay. */
		s->backoff_ms = 0;	/* it was worth having */
		int fd = p->fd;
		*fr = p->fr;
		framing_reset(*fr);
		p->fr = NULL;
		*tls = p->tls;
		p->tls = NULL;
		p->fd = -1;
		pooled_retire(p);
		atomic_fetch_add_explicit(&be->upstream_reused, 1, memory_order_relaxed);
		return fd;
	}
	return -1;
}

bool pool_put(struct pool_worker *pw, struct backend *be, int fd, struct tls_conn *tls,
	      struct framing *fr, const struct pool_conf *pc)
{
	enum pool_discard why;
	struct pool_slot *s = slot_of(pw, be);
	if (!atomic_load_explicit(&be->member, memory_order_relaxed) ||
	    !backend_routable(be, now_ms()) || pw->draining)
		why = POOL_DISCARD_REMOVED;
	else if (s->n_idle >= pc->max_idle)
		why = POOL_DISCARD_FULL;
	else {
		struct pooled *p = pooled_new(pw, be, fd, fr);
		if (p) {
			p->tls = tls;
			pooled_make_idle(p, pc->idle_timeout_ms);
			return true;
		}
		why = POOL_DISCARD_NO_MEMORY;
	}
	pw->discards[why]++;
	if (tls)
		backend_count_tls_bytes(be, tls);
	tls_conn_free(tls);
	close(fd);
	framing_free(fr);
	return false;
}

static void on_prewarm_handshake(evutil_socket_t fd, short what, void *arg);

/* Arm p's event for `what`, within what is left of its connect timeout. */
static void prewarm_wait(struct pooled *p, short what, event_callback_fn cb)
{
	uint64_t now = now_ms();
	uint64_t left = p->deadline_ms > now ? p->deadline_ms - now : 0;
	struct timeval tv = { .tv_sec = (time_t)(left / 1000),
			      .tv_usec = (suseconds_t)(left % 1000) * 1000 };
	event_assign(&p->ev, p->pw->base, p->fd, what, cb, p);
	event_add(&p->ev, &tv);
}

/* One step of a prewarm handshake: idle once done, dropped (and backed off) when it fails. */
static void prewarm_tls_step(struct pooled *p)
{
	struct pool_slot *s = slot_of(p->pw, p->be);
	enum tls_io io = tls_conn_handshake(p->tls);
	backend_count_tls_bytes(p->be, p->tls);
	if (io == TLS_IO_WANT_READ || io == TLS_IO_WANT_WRITE) {
		prewarm_wait(p, io == TLS_IO_WANT_READ ? EV_READ : EV_WRITE, on_prewarm_handshake);
		return;
	}
	if (io == TLS_IO_DONE) {
		backend_count_tls(p->be, tls_conn_outcome(p->tls), NULL, now_ms());
		s->n_connecting--;
		pooled_make_idle(p, p->idle_timeout_ms);
		return;
	}
	backend_count_tls(p->be, tls_conn_outcome(p->tls), tls_conn_reason(p->tls), now_ms());
	slot_back_off(p, now_ms());
	pooled_drop(p, POOL_DISCARD_CONNECT_FAILED);
}

static void on_prewarm_handshake(evutil_socket_t fd, short what, void *arg)
{
	struct pooled *p = arg;
	if (what & EV_TIMEOUT) {
		backend_count_tls(p->be, TLS_RESULT_TIMEOUT, "no handshake within connect_timeout",
				  now_ms());
		slot_back_off(p, now_ms());
		pooled_drop(p, POOL_DISCARD_CONNECT_FAILED);
		return;
	}
	prewarm_tls_step(p);
}

static void on_prewarm_connected(evutil_socket_t fd, short what, void *arg)
{
	struct pooled *p = arg;
	struct pool_slot *s = slot_of(p->pw, p->be);
	int err = 0;
	socklen_t len = sizeof(err);
	if (what & EV_TIMEOUT)
		err = ETIMEDOUT;
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		/* Backoff; a refusing backend is the passive checks' business, not ours. */
		slot_back_off(p, now_ms());
		log_debug("svc=%s be=%s prewarm connect: %s; next try in %ums",
			  p->be->svc_name, p->be->name, strerror(err), s->backoff_ms);
		/*
		 * ECONNRESET here is not a failed connect: the handshake completed
		 * and the backend reset the connection before this event ran (a
		 * refused SYN reports ECONNREFUSED). Count it as the drop it is.
		 */
		pooled_drop(p, err == ECONNRESET || err == EPIPE ? POOL_DISCARD_CLOSED
								   : POOL_DISCARD_CONNECT_FAILED);
		return;
	}
	/* The backoff stays until a connection proves useful (pool_take). */
	if (p->tls) {
		prewarm_tls_step(p);
		return;
	}
	s->n_connecting--;
	pooled_make_idle(p, p->idle_timeout_ms);
}

/* Start one prewarm connect to be. */
static void prewarm_one(struct pool_worker *pw, struct backend *be, const struct service_conf *sc)
{
	uint64_t connect_timeout_ms = sc->connect_timeout_ms;
	struct pool_slot *s = slot_of(pw, be);
	int fd = socket(be->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		s->backoff_ms = pool_backoff_next(s->backoff_ms);
		s->next_attempt_ms = now_ms() + s->backoff_ms;
		return;
	}
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	atomic_fetch_add_explicit(&be->upstream_opened, 1, memory_order_relaxed);
	struct pooled *p = pooled_new(pw, be, fd, NULL);
	if (!p) {
		close(fd);
		pw->discards[POOL_DISCARD_NO_MEMORY]++;
		s->backoff_ms = pool_backoff_next(s->backoff_ms);
		s->next_attempt_ms = now_ms() + s->backoff_ms;
		return;
	}
	p->state = POOLED_CONNECTING;
	p->prewarmed = true;
	p->idle_timeout_ms = sc->pool.idle_timeout_ms;
	p->deadline_ms = now_ms() + connect_timeout_ms;
	s->n_connecting++;
	if (sc->tls.enabled) {
		/* Never a plain connection in a TLS service's pool. */
		p->tls = sc->tls.ctx ? tls_conn_new(sc->tls.ctx, fd, be->host, be->name) : NULL;
		if (!p->tls) {
			log_error("svc=%s be=%s cannot set up TLS for a prewarm connection",
				  be->svc_name, be->name);
			s->backoff_ms = pool_backoff_next(s->backoff_ms);
			s->next_attempt_ms = now_ms() + s->backoff_ms;
			pooled_drop(p, POOL_DISCARD_CONNECT_FAILED);
			return;
		}
	}
	if (connect(fd, (struct sockaddr *)&be->addr.ss, be->addr.len) != 0 && errno != EINPROGRESS) {
		s->backoff_ms = pool_backoff_next(s->backoff_ms);
		s->next_attempt_ms = now_ms() + s->backoff_ms;
		pooled_drop(p, POOL_DISCARD_CONNECT_FAILED);
		return;
	}
	event_assign(&p->ev, pw->base, fd, EV_WRITE, on_prewarm_connected, p);
	struct timeval tv = { .tv_sec = (time_t)(connect_timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(connect_timeout_ms % 1000) * 1000 };
	event_add(&p->ev, &tv);
}

void pool_sweep(struct pool_worker *pw, uint64_t now)
{
	for (struct pooled *p = pw->all, *next; p; p = next) {
		next = p->wnext;
		if (p->state == POOLED_IDLE &&
		    (!atomic_load_explicit(&p->be->member, memory_order_relaxed) ||
		     !backend_routable(p->be, now)))
			pooled_drop(p, POOL_DISCARD_REMOVED);
	}
}

void pool_refill(struct pool_worker *pw, const struct backend_set *set, uint64_t now)
{
	const struct pool_conf *pc = &set->conf->pool;
	if (!pc->prewarm)
		return;
	uint32_t want = pool_prewarm_share(pc->prewarm, pw->n_workers, pw->id);
	for (size_t i = 0; i < set->n; i++) {
		struct backend *be = set->v[i];
		struct pool_slot *s = slot_of(pw, be);
		if (!atomic_load_explicit(&be->member, memory_order_relaxed) ||
		    !backend_has_addr(be) || !backend_routable(be, now) ||
		    now < s->next_attempt_ms)
			continue;
		/* A failed start sets a backoff, which ends the loop. */
		while (s->n_idle + s->n_connecting < MIN(want, pc->max_idle) &&
		       now >= s->next_attempt_ms)
			prewarm_one(pw, be, set->conf);
	}
}

void pool_count_not_reusable(struct pool_worker *pw, enum framing_verdict v)
{
	pw->not_reusable[v < FRAMING_VERDICT_COUNT ? v : FRAMING_ERROR]++;
	pw->discards[POOL_DISCARD_NOT_REUSABLE]++;
}

void pool_worker_init(struct pool_worker *pw, struct event_base *base, struct event *reap,
		      unsigned id, unsigned n_workers)
{
	pw->id = id;
	pw->n_workers = n_workers;
	pw->base = base;
	pw->reap = reap;
}

void pool_worker_drain(struct pool_worker *pw)
{
	pw->draining = true;
}

void pool_worker_close(struct pool_worker *pw)
{
	while (pw->all)
		pooled_drop(pw->all, POOL_DISCARD_SHUTDOWN);
	pool_worker_reap(pw);
}
