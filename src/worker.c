/*
 * worker — see worker.h.
 *
 * Accepting: up to ACCEPT_BATCH connections per readiness event. When accept
 * fails for lack of file descriptors, the acceptor is paused and re-armed
 * from a timer (pgbouncer's way) instead of spinning on a socket that stays
 * readable; the condition is logged at most once per second.
 *
 * Limits: before each accept() the acceptor reserves a slot of its service's
 * and the process's max_connections (service_conn_reserve). At a cap, a
 * client is accepted all the same and queued (the service's queue, shared
 * by every worker) for up to queue_timeout; beyond queue_max queued clients,
 * or with the queue off (queue_timeout or queue_max 0), the acceptor stops
 * watching its socket, so clients wait in the kernel's listen backlog, and
 * watches again when one of its relays closes or, for closes in other
 * workers, after ACCEPT_CAP_RECHECK_MS.
 *
 * Why the queue is in user space rather than the listen backlog: there a
 * client waits without any bound in time, unseen (no count, no age) and in
 * no defined order across the per-worker SO_REUSEPORT sockets. Accepted and
 * held here, the wait is bounded, measured (zklb_service_queued) and first
 * come first served process-wide: a slot freed in any worker goes to the
 * client that has waited longest, whichever worker accepted it, because a
 * worker whose relay closed (its reaper runs after the loop turn) serves the
 * service's queue itself (a descriptor is valid in every thread). A newcomer
 * never overtakes: while anyone is queued it queues too. The price is a
 * descriptor per queued client, hence queue_max, and a queued client sees
 * its connect succeed before it is served (as with the backlog, where the
 * kernel completes the handshake). Expiry: a worker that queued a client
 * arms its queue timer until its services' queues are empty; whoever's timer
 * fires first closes the expired clients (queue_timeout end reason).
 *
 * And a client whose descriptor lands
 * among the last WORKER_FD_RESERVE of RLIMIT_NOFILE is closed at once: those
 * are kept for the control plane (ZooKeeper, the admin API, health checks,
 * sync), which must keep working when clients exhaust the rest.
 */
#include "worker.h"
#include "log.h"
#include "relay.h"
#include "service.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * One service's accepting socket in one worker: accepts clients and hands
 * them to relays. (listener.c opens these sockets; zk_listener is something
 * else again: an observer of the ZooKeeper session.)
 */
struct acceptor {
	struct acceptor *next;
	struct worker *w;			/* owner */
	char *key;				/* owned; the listen address as configured */
	int fd;					/* owned */
	struct event *ev;			/* owned; accept readiness */
	struct event *resume;			/* owned; re-arms accepting after EMFILE */
	bool paused;				/* accepting paused (fd exhaustion or a cap) */
	bool at_cap;				/* at a max_connections: logged once per spell */
	bool cap_paused;			/* paused at a cap (backlog): counted once per spell */
	struct backend_set *set;		/* ref; what new connections route with */
	struct relay_queue waiting;		/* relays waiting for a first view */
};

#define ACCEPT_BATCH 32
#define ACCEPT_PAUSE_MS 100
#define ACCEPT_CAP_RECHECK_MS 10
#define POOL_TICK_MS 200
#define QUEUE_RECHECK_MS 100		/* queue timer at the latest, while anyone is queued */

static void on_accept(evutil_socket_t fd, short what, void *arg);
static void acceptor_queue_close(struct worker *w, struct acceptor *a);

static struct acceptor *acceptor_find(struct worker *w, const char *key)
{
	for (struct acceptor *a = w->acceptors; a; a = a->next)
		if (strcmp(a->key, key) == 0)
			return a;
	return NULL;
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct acceptor *a = arg;
	a->paused = false;
	event_add(a->ev, NULL);
}

static void acceptor_add(struct worker *w, char *key, int fd, struct backend_set *set)
{
	struct acceptor *a = xcalloc(1, sizeof(*a));
	a->w = w;
	a->key = key;
	a->fd = fd;
	a->set = set;
	/*
	 * Accepted sockets inherit TCP_NODELAY from their listener (Linux): set
	 * once here, not once per client. Here rather than in listener.c, so a
	 * socket handed over by an older process gets it too; unix sockets
	 * refuse it harmlessly.
	 */
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	a->ev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_accept, a);
	a->resume = evtimer_new(w->base, on_resume, a);
	event_add(a->ev, NULL);
	a->next = w->acceptors;
	w->acceptors = a;
}

static void acceptor_free(struct acceptor *a)
{
	relay_detach_waiting(&a->waiting);
	event_free(a->ev);
	event_free(a->resume);
	close(a->fd);
	backend_set_put(a->set);
	free(a->key);
	free(a);
}

static void acceptor_remove(struct worker *w, const char *key)
{
	for (struct acceptor **pp = &w->acceptors; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->key, key) == 0) {
			struct acceptor *a = *pp;
			*pp = a->next;
			/* Its relays keep their own set reference and finish normally;
			 * its queued clients came through the socket that goes away. */
			acceptor_queue_close(w, a);
			acceptor_free(a);
			return;
		}
	}
}

static void acceptor_update(struct worker *w, const char *key, struct backend_set *set)
{
	struct acceptor *a = acceptor_find(w, key);
	if (!a) {
		backend_set_put(set);
		return;
	}
	/*
	 * The listen address now belongs to another service (a rename, or one
	 * service's address taken over by another): nobody would serve or
	 * expire the old one's queue, so its clients are closed now, counted.
	 */
	if (set->svc != a->set->svc)
		acceptor_queue_close(w, a);
	backend_set_put(a->set);
	a->set = set;
	if (set->ready)
		relay_wake_waiting(&a->waiting, set);
}

/* Stop watching a's socket; the resume timer watches it again after ms. */
static void acceptor_pause(struct acceptor *a, unsigned ms)
{
	event_del(a->ev);
	a->paused = true;
	struct timeval tv = { 0, (suseconds_t)ms * 1000 };
	evtimer_add(a->resume, &tv);
}

/* A client got a descriptor kept for the control plane: close it at once (and give its slot back). */
static void accept_over_reserve(struct worker *w, struct acceptor *a, int cfd, bool slot)
{
	close(cfd);
	if (slot)
		service_conn_release(a->set->svc);
	atomic_fetch_add_explicit(&w->fd_refused, 1, memory_order_relaxed);
	uint64_t now = now_ms();
	if (now - w->emfile_logged_ms >= 1000 || w->emfile_logged_ms == 0) {
		w->emfile_logged_ms = now;
		log_error("worker=%u listen=%s refusing clients: descriptor %d is among the last %d "
			  "of RLIMIT_NOFILE, kept for the control plane; pausing accepts for %dms",
			  w->id, a->key, cfd, WORKER_FD_RESERVE, ACCEPT_PAUSE_MS);
	}
	acceptor_pause(a, ACCEPT_PAUSE_MS);
}

static void accept_pause(struct worker *w, struct acceptor *a, int err)
{
	atomic_fetch_add_explicit(&w->accept_errors, 1, memory_order_relaxed);
	uint64_t now = now_ms();
	if (now - w->emfile_logged_ms >= 1000 || w->emfile_logged_ms == 0) {
		w->emfile_logged_ms = now;
		log_error("worker=%u listen=%s accept: %s; pausing accepts for %dms", w->id,
			  a->key, strerror(err), ACCEPT_PAUSE_MS);
	}
	acceptor_pause(a, ACCEPT_PAUSE_MS);
}

/* The first client of a spell at a max_connections: say where clients wait now. */
static void accept_cap_log(struct worker *w, struct acceptor *a, const char *where)
{
	struct service *svc = a->set->svc;
	if (a->at_cap)
		return;
	a->at_cap = true;
	log_info("worker=%u listen=%s at max_connections (%llu open for svc=%s): clients %s",
		 w->id, a->key, (unsigned long long)atomic_load(&svc->conn_open), svc->name, where);
}

/*
 * At a max_connections with no room in the queue (queue_full) or no queue:
 * stop watching the socket until a connection closes.
 */
static void accept_cap(struct worker *w, struct acceptor *a, bool queue_full)
{
	struct service *svc = a->set->svc;
	if (!a->cap_paused) {
		a->cap_paused = true;
		atomic_fetch_add_explicit(&svc->cap_pauses, 1, memory_order_relaxed);
		if (queue_full)
			atomic_fetch_add_explicit(&svc->queue_full, 1, memory_order_relaxed);
	}
	accept_cap_log(w, a, "wait in the listen backlog");
	acceptor_pause(a, ACCEPT_CAP_RECHECK_MS);
}

/* Is the client on fd gone (it closed or reset while queued, sending nothing)? */
static bool queued_client_gone(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Close queued clients of a's service that waited queue_timeout; counted and logged (1/s). */
static void acceptor_queue_expire(struct worker *w, struct acceptor *a, uint64_t now)
{
	struct service *svc = a->set->svc;
	uint64_t timeout = a->set->conf->queue_timeout_ms, since;
	unsigned n = 0;
	int fd;
	while ((fd = service_queue_pop_expired(svc, now, timeout, &since)) >= 0) {
		relay_refuse(&w->relay, a->set, fd, RELAY_CLOSE_QUEUE_TIMEOUT, since);
		atomic_fetch_add_explicit(&svc->queue_timeouts, 1, memory_order_relaxed);
		n++;
	}
	uint64_t last = atomic_load_explicit(&svc->queue_logged_ms, memory_order_relaxed);
	if (n && (last == 0 || now - last >= 1000) &&
	    atomic_compare_exchange_strong(&svc->queue_logged_ms, &last, now)) {
		char d[32];
		duration_format(timeout, d, sizeof(d));
		log_warn("svc=%s closed %u client(s) queued for queue_timeout %s without a slot "
			 "(%llu open, %llu still queued; zklb_service_queue_timeouts_total %llu)",
			 svc->name, n, d, (unsigned long long)atomic_load(&svc->conn_open),
			 (unsigned long long)atomic_load(&svc->queued),
			 (unsigned long long)atomic_load(&svc->queue_timeouts));
	}
}

/*
 * Serve a's service's queue while slots are free, oldest first; a client
 * that left meanwhile gives its slot to the next. Returns whether anyone is
 * still queued.
 */
static bool acceptor_queue_serve(struct worker *w, struct acceptor *a, uint64_t now)
{
	struct service *svc = a->set->svc;
	acceptor_queue_expire(w, a, now);
	while (atomic_load_explicit(&svc->queued, memory_order_relaxed) > 0 &&
	       service_conn_reserve(svc)) {
		uint64_t since;
		int fd = service_queue_pop(svc, &since);
		if (fd < 0) {
			service_conn_release(svc);	/* another worker served the last one */
			break;
		}
		if (queued_client_gone(fd)) {
			service_conn_release(svc);
			relay_refuse(&w->relay, a->set, fd, RELAY_CLOSE_DONE, since);
			continue;
		}
		relay_accept(&w->relay, a->set, &a->waiting, fd, since);
	}
	return atomic_load_explicit(&svc->queued, memory_order_relaxed) > 0;
}

/* Arm the queue timer for the earliest expiry among w's services, QUEUE_RECHECK_MS at most. */
static void worker_queue_arm(struct worker *w, uint64_t now)
{
	uint64_t ms = QUEUE_RECHECK_MS;
	for (struct acceptor *a = w->acceptors; a; a = a->next) {
		uint64_t next = service_queue_next_ms(a->set->svc, now, a->set->conf->queue_timeout_ms);
		if (next < ms)
			ms = next;
	}
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(w->queue_tick, &tv);
}

/* Serve and expire every queue this worker accepts for; keep the timer while anyone waits. */
static void worker_queue_serve(struct worker *w)
{
	uint64_t now = now_ms();
	bool waiting = false;
	if (atomic_load(&w->draining))
		return;	/* worker_drain() closed the queued clients; no relay starts now */
	for (struct acceptor *a = w->acceptors; a; a = a->next)
		if (atomic_load_explicit(&a->set->svc->queued, memory_order_relaxed) > 0)
			waiting |= acceptor_queue_serve(w, a, now);
	if (waiting)
		worker_queue_arm(w, now);
	else
		evtimer_del(w->queue_tick);
}

static void on_queue_tick(evutil_socket_t fd, short what, void *arg)
{
	worker_queue_serve(arg);
}

/* What accept_queue() did with the next client. */
enum accept_queued {
	ACCEPT_QUEUED,				/* accepted and queued */
	ACCEPT_QUEUE_FULL,			/* queue_max clients wait: pause (backlog) */
	ACCEPT_QUEUE_OFF,			/* queue_timeout or queue_max 0: pause (backlog) */
	ACCEPT_QUEUE_STOP,			/* accept failed or the fd was refused: handled */
};

/*
 * At a cap with the queue on and room in it, or behind clients queued
 * already: accept and queue the next client. An accept error is *err
 * (errno) with ACCEPT_QUEUE_STOP, *err 0 when a was paused here instead.
 */
static enum accept_queued accept_queue(struct worker *w, struct acceptor *a, int *err)
{
	struct service *svc = a->set->svc;
	const struct service_conf *conf = a->set->conf;
	*err = 0;
	if (!conf->queue_timeout_ms || !conf->queue_max)
		return ACCEPT_QUEUE_OFF;
	if (atomic_load_explicit(&svc->queued, memory_order_relaxed) >= conf->queue_max)
		return ACCEPT_QUEUE_FULL;
	int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		*err = errno;
		return ACCEPT_QUEUE_STOP;
	}
	if ((rlim_t)fd >= w->fd_ceiling) {
		accept_over_reserve(w, a, fd, false);
		return ACCEPT_QUEUE_STOP;
	}
	uint64_t now = now_ms();
	if (!service_queue_push(svc, conf->queue_max, fd, now)) {
		/* Other workers filled it since the check above (or no memory): this one goes. */
		relay_refuse(&w->relay, a->set, fd, RELAY_CLOSE_QUEUE_TIMEOUT, now);
		atomic_fetch_add_explicit(&svc->queue_timeouts, 1, memory_order_relaxed);
		return ACCEPT_QUEUE_FULL;
	}
	a->cap_paused = false;
	accept_cap_log(w, a, "queue for a slot");
	if (!evtimer_pending(w->queue_tick, NULL))
		worker_queue_arm(w, now);
	return ACCEPT_QUEUED;
}

/* Relays of this worker closed: acceptors waiting at a cap try again now. */
static void accept_cap_resume(struct worker *w)
{
	for (struct acceptor *a = w->acceptors; a; a = a->next) {
		if (a->at_cap && a->paused) {
			evtimer_del(a->resume);
			a->paused = false;
			event_add(a->ev, NULL);
		}
	}
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct acceptor *a = arg;
	struct worker *w = a->w;
	bool queued = false;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct service *svc = a->set->svc;
		int cfd = -1, err = 0;
		/* FIFO: while anyone is queued, a newcomer queues behind, slot or not. */
		if (atomic_load_explicit(&svc->queued, memory_order_relaxed) > 0 ||
		    !service_conn_reserve(svc)) {
			enum accept_queued q = accept_queue(w, a, &err);
			if (q == ACCEPT_QUEUED) {
				queued = true;
				continue;
			}
			if (q != ACCEPT_QUEUE_STOP) {
				accept_cap(w, a, q == ACCEPT_QUEUE_FULL);
				break;
			}
			if (!err)
				break;	/* refused and paused by accept_over_reserve() */
		} else {
			a->at_cap = false;
			a->cap_paused = false;
			cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			err = errno;
			if (cfd < 0)
				service_conn_release(svc);
			if (cfd >= 0 && (rlim_t)cfd >= w->fd_ceiling) {
				accept_over_reserve(w, a, cfd, true);
				return;
			}
		}
		if (cfd < 0) {
			switch (err) {
			case EAGAIN:
#if EAGAIN != EWOULDBLOCK
			case EWOULDBLOCK:
#endif
				break;
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
				continue;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				accept_pause(w, a, err);
				break;
			default:
				/* Anything else (EPERM from a filter, ...) would fire again
				 * at once on a level-triggered socket: pause as well. */
				accept_pause(w, a, err);
				break;
			}
			break;
		}
		relay_accept(&w->relay, a->set, &a->waiting, cfd, 0);
	}
	/* A slot may have freed meanwhile (closes in other workers): serve at once. */
	if (queued)
		acceptor_queue_serve(w, a, now_ms());
}

/*
 * Draining, or the listener going away (a reload removed the service or
 * moved its listen address): queued clients were never served and no slot
 * will be given to them here; they are closed now (shutdown end reason), so
 * they reconnect to whoever listens next (a hot upgrade's new process, the
 * new address) at once. (A client queued through a new listener in another
 * worker in the same instant goes too: a reload's rare edge.)
 */
static void acceptor_queue_close(struct worker *w, struct acceptor *a)
{
	uint64_t since;
	int fd;
	while ((fd = service_queue_pop(a->set->svc, &since)) >= 0)
		relay_refuse(&w->relay, a->set, fd, RELAY_CLOSE_SHUTDOWN, since);
}

static void worker_drain(struct worker *w)
{
	atomic_store(&w->draining, true);
	pool_worker_drain(&w->pool);
	evtimer_del(w->queue_tick);
	for (struct acceptor *a = w->acceptors; a; a = a->next)
		acceptor_queue_close(w, a);
	while (w->acceptors) {
		struct acceptor *a = w->acceptors;
		w->acceptors = a->next;
		acceptor_free(a);
	}
}

static void handle_msg(struct worker *w, struct worker_msg *m)
{
	switch (m->kind) {
	case WORKER_MSG_LISTEN:
		if (atomic_load(&w->draining)) {
			close(m->fd);
			backend_set_put(m->set);
			break;
		}
		acceptor_add(w, m->key, m->fd, m->set);
		m->key = NULL;
		break;
	case WORKER_MSG_UPDATE:
		acceptor_update(w, m->key, m->set);
		break;
	case WORKER_MSG_UNLISTEN:
		acceptor_remove(w, m->key);
		break;
	case WORKER_MSG_DRAIN:
		worker_drain(w);
		break;
	case WORKER_MSG_CLOSE_BACKEND:
		relay_close_backend(&w->relay, m->be);
		backend_put(m->be);
		break;
	case WORKER_MSG_STOP:
		worker_drain(w);
		relay_close_all(&w->relay);
		pool_worker_close(&w->pool);
		event_del(w->pool_tick);
		event_base_loopbreak(w->base);
		break;
	}
	free(m->key);
	free(m);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t v;
	ssize_t n = read(fd, &v, sizeof(v));
	(void)n;
	pthread_mutex_lock(&w->inbox_lock);
	struct worker_msg *m = w->inbox;
	w->inbox = w->inbox_tail = NULL;
	pthread_mutex_unlock(&w->inbox_lock);
	while (m) {
		struct worker_msg *next = m->next;
		handle_msg(w, m);
		m = next;
	}
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	relay_reap(&w->relay);
	pool_worker_reap(&w->pool);
	/* Relays closed: their slots go to queued clients first, then to the listeners. */
	worker_queue_serve(w);
	accept_cap_resume(w);
}

/* Every POOL_TICK_MS: idle connections to departed backends go, prewarm refills. */
static void on_pool_tick(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t now = now_ms();
	pool_sweep(&w->pool, now);
	if (atomic_load(&w->draining))
		return;
	for (struct acceptor *a = w->acceptors; a; a = a->next)
		pool_refill(&w->pool, a->set, now);
}

struct worker *worker_new(unsigned id, unsigned n)
{
	struct worker *w = xcalloc(1, sizeof(*w));
	w->id = id;
	w->n_workers = n;
	struct rlimit rl;
	w->fd_ceiling = RLIM_INFINITY;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		w->fd_ceiling = rl.rlim_cur > 2 * WORKER_FD_RESERVE ? rl.rlim_cur - WORKER_FD_RESERVE
								 : rl.rlim_cur / 2;
	struct event_config *ec = event_config_new();
	/* Each base is used by one thread only: skip libevent's own locking.
	 * The changelist folds the add/del pairs of one loop turn into one
	 * epoll_ctl (no fd is dup()ed within a worker, which it cannot handle). */
	event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	w->base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (!w->base) {
		free(w);
		return NULL;
	}
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->wake_fd < 0) {
		event_base_free(w->base);
		free(w);
		return NULL;
	}
	pthread_mutex_init(&w->inbox_lock, NULL);
	w->wake_ev = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, on_wake, w);
	event_add(w->wake_ev, NULL);
	w->reaper = event_new(w->base, -1, 0, on_reap, w);
	relay_worker_init(&w->relay, w->base, w->reaper, &w->pool,
			  now_us() ^ ((uint64_t)id << 32) ^ (uint64_t)(uintptr_t)w);
	pool_worker_init(&w->pool, w->base, w->reaper, id, n);
	w->queue_tick = evtimer_new(w->base, on_queue_tick, w);
	w->pool_tick = event_new(w->base, -1, EV_PERSIST, on_pool_tick, w);
	struct timeval tv = { 0, POOL_TICK_MS * 1000 };
	event_add(w->pool_tick, &tv);
	return w;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	event_base_loop(w->base, 0);
	return NULL;
}

int worker_start(struct worker *w)
{
	int rc = pthread_create(&w->thread, NULL, worker_main, w);
	return rc ? -rc : 0;
}

void worker_post(struct worker *w, struct worker_msg *msg)
{
	msg->next = NULL;
	pthread_mutex_lock(&w->inbox_lock);
	if (w->inbox_tail)
		w->inbox_tail->next = msg;
	else
		w->inbox = msg;
	w->inbox_tail = msg;
	pthread_mutex_unlock(&w->inbox_lock);
	uint64_t one = 1;
	ssize_t n = write(w->wake_fd, &one, sizeof(one));
	(void)n;	/* EAGAIN only when the counter is huge: already awake */
}

void worker_post_listen(struct worker *w, const char *key, int fd, struct backend_set *set)
{
	struct worker_msg *m = xcalloc(1, sizeof(*m));
	m->kind = WORKER_MSG_LISTEN;
	m->key = xstrdup(key);
	m->fd = fd;
	m->set = set;
	worker_post(w, m);
}

void worker_post_update(struct worker *w, const char *key, struct backend_set *set)
{
	struct worker_msg *m = xcalloc(1, sizeof(*m));
	m->kind = WORKER_MSG_UPDATE;
	m->key = xstrdup(key);
	m->fd = -1;
	m->set = set;
	worker_post(w, m);
}

void worker_post_simple(struct worker *w, enum worker_msg_kind kind, const char *key)
{
	struct worker_msg *m = xcalloc(1, sizeof(*m));
	m->kind = kind;
	m->key = key ? xstrdup(key) : NULL;
	m->fd = -1;
	worker_post(w, m);
}

void worker_post_close_backend(struct worker *w, struct backend *be)
{
	struct worker_msg *m = xcalloc(1, sizeof(*m));
	m->kind = WORKER_MSG_CLOSE_BACKEND;
	m->fd = -1;
	m->be = backend_get(be);
	worker_post(w, m);
}

/* Free everything the worker owns; its thread is not running (any more). */
static void worker_free(struct worker *w)
{
	atomic_store(&w->draining, true);	/* nothing is accepted or served from here on */
	on_wake(w->wake_fd, 0, w);	/* drop messages that arrived after STOP */
	relay_close_all(&w->relay);
	pool_worker_close(&w->pool);
	on_reap(-1, 0, w);
	while (w->acceptors) {
		struct acceptor *a = w->acceptors;
		w->acceptors = a->next;
		acceptor_free(a);
	}
	event_free(w->wake_ev);
	event_free(w->reaper);
	event_free(w->pool_tick);
	event_free(w->queue_tick);
	relay_worker_free(&w->relay);	/* frees events of w->base: before the base */
	event_base_free(w->base);
	close(w->wake_fd);
	pthread_mutex_destroy(&w->inbox_lock);
	free(w);
}

void worker_join_free(struct worker *w)
{
	pthread_join(w->thread, NULL);
	worker_free(w);
}

void worker_free_unstarted(struct worker *w)
{
	worker_free(w);
}
