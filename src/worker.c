/*
 * worker — see worker.h.
 *
 * Accepting: up to ACCEPT_BATCH connections per readiness event. When accept
 * fails for lack of file descriptors, the acceptor is paused and re-armed
 * from a timer (pgbouncer's way) instead of spinning on a socket that stays
 * readable; the condition is logged at most once per second.
 *
 * Limits: before each accept() the acceptor reserves a slot of its service's
 * and the process's max_connections (service_conn_reserve); at a cap it stops
 * watching its socket, so clients wait in the kernel's listen backlog, and
 * watches again when one of its relays closes or, for closes in other
 * workers, after ACCEPT_CAP_RECHECK_MS. And a client whose descriptor lands
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
	bool at_cap;				/* paused at a max_connections, counted once */
	struct backend_set *set;		/* ref; what new connections route with */
	struct relay_queue waiting;		/* relays waiting for a first view */
};

#define ACCEPT_BATCH 32
#define ACCEPT_PAUSE_MS 100
#define ACCEPT_CAP_RECHECK_MS 10
#define POOL_TICK_MS 200

static void on_accept(evutil_socket_t fd, short what, void *arg);

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
			/* Its relays keep their own set reference and finish normally. */
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

/* At a max_connections: stop watching the socket until a connection closes. */
static void accept_cap(struct worker *w, struct acceptor *a)
{
	struct service *svc = a->set->svc;
	if (!a->at_cap) {
		a->at_cap = true;
		atomic_fetch_add_explicit(&svc->cap_pauses, 1, memory_order_relaxed);
		log_info("worker=%u listen=%s at max_connections (%llu open for svc=%s): "
			 "clients wait in the listen backlog", w->id, a->key,
			 (unsigned long long)atomic_load(&svc->conn_open), svc->name);
	}
	acceptor_pause(a, ACCEPT_CAP_RECHECK_MS);
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

/* A client got a descriptor kept for the control plane: close it at once. */
static void accept_over_reserve(struct worker *w, struct acceptor *a, int cfd)
{
	close(cfd);
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

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct acceptor *a = arg;
	struct worker *w = a->w;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct service *svc = a->set->svc;
		if (!service_conn_reserve(svc)) {
			accept_cap(w, a);
			return;
		}
		a->at_cap = false;
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0)
			service_conn_release(svc);
		if (cfd >= 0 && (rlim_t)cfd >= w->fd_ceiling) {
			accept_over_reserve(w, a, cfd);
			return;
		}
		if (cfd < 0) {
			switch (errno) {
			case EAGAIN:
#if EAGAIN != EWOULDBLOCK
			case EWOULDBLOCK:
#endif
				return;
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
				continue;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				accept_pause(w, a, errno);
				return;
			default:
				/* Anything else (EPERM from a filter, ...) would fire again
				 * at once on a level-triggered socket: pause as well. */
				accept_pause(w, a, errno);
				return;
			}
		}
		relay_accept(&w->relay, a->set, &a->waiting, cfd);
	}
}

static void worker_drain(struct worker *w)
{
	atomic_store(&w->draining, true);
	pool_worker_drain(&w->pool);
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
	event_base_free(w->base);
	close(w->wake_fd);
	relay_worker_free(&w->relay);
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
