/*
 * resolver — see resolver.h.
 *
 * A job carries one backend (a reference) through its life: queued for the
 * lookup thread, looked up, back on the control thread through an eventfd,
 * then either applied or parked on a retry timer. The thread only reads a
 * job's host and port and writes its result; the backend reference is taken
 * and dropped on the control thread alone.
 *
 * RESOLVER_THREADS threads take jobs from one FIFO, so a name whose name
 * server times out (seconds, each retry) holds up no other name.
 *
 * Stopping: the threads and the control side share `struct shared`. When a
 * thread is inside getaddrinfo() at resolver_free(), the control side drops
 * its reference and leaves; the thread finds `stop` set when the lookup
 * returns, frees its job, drops its reference to the shared part (the last
 * one frees it), and exits. No thread writes the eventfd once `stop` is set
 * (both under the lock), so a closed and reused descriptor is never written.
 */
#include "resolver.h"
#include "backend.h"
#include "log.h"
#include "service.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct job {
	struct job *next;		/* in one list at a time: pending, done or parked */
	struct job *prev;		/* parked list only */
	struct resolver *r;
	struct backend *be;		/* ref; NULL once the control side let go */
	char host[256];			/* copy: the thread reads no backend */
	uint16_t port;
	bool ok;			/* thread: the result */
	struct net_addr addr;		/* thread: when ok */
	char err[200];			/* thread: when !ok */
	char last_err[200];		/* control: the failure logged last */
	uint32_t backoff_ms;		/* control: the next retry's delay */
	struct event *timer;		/* control: retry, while parked */
};

#define RESOLVER_THREADS 4

struct shared;

struct lookup_thread {
	struct shared *sh;
	unsigned i;			/* its busy[] slot */
};

struct shared {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *pending;		/* FIFO head (control -> thread) */
	struct job **pending_tail;
	struct job *done;		/* LIFO (thread -> control), reversed when drained */
	struct job *busy[RESOLVER_THREADS];	/* jobs inside getaddrinfo() */
	struct lookup_thread th[RESOLVER_THREADS];
	bool stop;
	int efd;			/* written under lock while !stop */
	int refs;			/* control side and threads: the last one frees */
};

struct resolver {
	struct event_base *base;
	resolver_done_fn done;
	void *arg;
	struct shared *sh;
	struct event *efd_ev;
	struct job *parked;		/* waiting for a retry timer */
	uint64_t resolved;
	uint64_t failed;
	uint64_t jobs;			/* alive, in any list */
};

static void job_free(struct job *j)
{
	if (j->timer)
		event_free(j->timer);
	backend_put(j->be);
	free(j);
}

static void shared_put(struct shared *sh)
{
	pthread_mutex_lock(&sh->lock);
	bool last = --sh->refs == 0;
	pthread_mutex_unlock(&sh->lock);
	if (!last)
		return;
	pthread_cond_destroy(&sh->cond);
	pthread_mutex_destroy(&sh->lock);
	free(sh);
}

/* ---------- the lookup thread ---------- */

static void *resolver_main(void *arg)
{
	struct lookup_thread *t = arg;
	struct shared *sh = t->sh;
	pthread_mutex_lock(&sh->lock);
	for (;;) {
		while (!sh->pending && !sh->stop)
			pthread_cond_wait(&sh->cond, &sh->lock);
		if (sh->stop)
			break;
		struct job *j = sh->pending;
		sh->pending = j->next;
		if (!sh->pending)
			sh->pending_tail = &sh->pending;
		sh->busy[t->i] = j;
		pthread_mutex_unlock(&sh->lock);

		j->ok = net_addr_resolve(j->host, j->port, &j->addr, j->err, sizeof(j->err));

		pthread_mutex_lock(&sh->lock);
		sh->busy[t->i] = NULL;
		if (sh->stop) {
			free(j);	/* the control side let go of it (and its backend) */
			break;
		}
		j->next = sh->done;
		sh->done = j;
		uint64_t one = 1;
		ssize_t w;
		do
			w = write(sh->efd, &one, sizeof(one));
		while (w < 0 && errno == EINTR);
	}
	pthread_mutex_unlock(&sh->lock);
	shared_put(sh);
	return NULL;
}

/* ---------- control thread ---------- */

static void enqueue(struct resolver *r, struct job *j)
{
	struct shared *sh = r->sh;
	j->next = NULL;
	pthread_mutex_lock(&sh->lock);
	*sh->pending_tail = j;
	sh->pending_tail = &j->next;
	pthread_cond_signal(&sh->cond);
	pthread_mutex_unlock(&sh->lock);
}

static void unpark(struct resolver *r, struct job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		r->parked = j->next;
	if (j->next)
		j->next->prev = j->prev;
	j->next = j->prev = NULL;
}

/* The job is over: the backend stops being queued. */
static void finish(struct resolver *r, struct job *j)
{
	j->be->resolving = false;
	r->jobs--;
	job_free(j);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	struct resolver *r = j->r;
	(void)fd, (void)what;
	unpark(r, j);
	if (!atomic_load(&j->be->member)) {
		finish(r, j);
		return;
	}
	enqueue(r, j);
}

static void apply(struct resolver *r, struct job *j)
{
	struct backend *be = j->be;
	if (!atomic_load(&be->member)) {
		finish(r, j);	/* left the service meanwhile */
		return;
	}
	if (j->ok) {
		char a[INET6_ADDRSTRLEN + 16];
		net_addr_format(&j->addr, a, sizeof(a));
		log_info("svc=%s be=%s resolved to %s", be->svc_name, be->name, a);
		r->resolved++;
		r->done(r->arg, be, &j->addr);
		finish(r, j);
		return;
	}
	r->failed++;
	j->backoff_ms = j->backoff_ms ? MIN(j->backoff_ms * 2, RESOLVER_RETRY_MAX_MS)
				      : RESOLVER_RETRY_MIN_MS;
	/* A name server that is down fails every retry: say so once per error. */
	if (strcmp(j->err, j->last_err) != 0) {
		log_warn("svc=%s be=%s not routable: %s (retrying, every %us at most)",
			 be->svc_name, be->name, j->err, RESOLVER_RETRY_MAX_MS / 1000);
		snprintf(j->last_err, sizeof(j->last_err), "%s", j->err);
	}
	if (!j->timer)
		j->timer = evtimer_new(r->base, on_retry, j);
	j->next = r->parked;
	j->prev = NULL;
	if (r->parked)
		r->parked->prev = j;
	r->parked = j;
	struct timeval tv = timeval_from_ms(j->backoff_ms);
	evtimer_add(j->timer, &tv);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct resolver *r = arg;
	uint64_t n;
	(void)what;
	while (read(fd, &n, sizeof(n)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&r->sh->lock);
	struct job *list = r->sh->done;
	r->sh->done = NULL;
	pthread_mutex_unlock(&r->sh->lock);

	struct job *fifo = NULL;	/* in the order they finished */
	while (list) {
		struct job *next = list->next;
		list->next = fifo;
		fifo = list;
		list = next;
	}
	while (fifo) {
		struct job *next = fifo->next;
		apply(r, fifo);
		fifo = next;
	}
}

struct resolver *resolver_new(struct event_base *base, resolver_done_fn done, void *arg)
{
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0) {
		log_error("resolver: eventfd: %s", strerror(errno));
		return NULL;
	}
	struct shared *sh = xcalloc(1, sizeof(*sh));
	pthread_mutex_init(&sh->lock, NULL);
	pthread_cond_init(&sh->cond, NULL);
	sh->pending_tail = &sh->pending;
	sh->efd = efd;
	sh->refs = 1;

	struct resolver *r = xcalloc(1, sizeof(*r));
	r->base = base;
	r->done = done;
	r->arg = arg;
	r->sh = sh;
	for (unsigned i = 0; i < RESOLVER_THREADS; i++) {
		pthread_t tid;
		sh->th[i] = (struct lookup_thread){ .sh = sh, .i = i };
		pthread_mutex_lock(&sh->lock);
		sh->refs++;
		pthread_mutex_unlock(&sh->lock);
		int rc = pthread_create(&tid, NULL, resolver_main, &sh->th[i]);
		if (rc != 0) {
			log_error("resolver: cannot start a lookup thread: %s", strerror(rc));
			pthread_mutex_lock(&sh->lock);
			sh->refs--;
			pthread_mutex_unlock(&sh->lock);
			if (i == 0) {
				pthread_cond_destroy(&sh->cond);
				pthread_mutex_destroy(&sh->lock);
				free(sh);
				close(efd);
				free(r);
				return NULL;
			}
			break;	/* fewer threads will do */
		}
		pthread_detach(tid);
	}
	r->efd_ev = event_new(base, efd, EV_READ | EV_PERSIST, on_done, r);
	event_add(r->efd_ev, NULL);
	return r;
}

void resolver_submit(struct resolver *r, struct backend *be)
{
	if (backend_has_addr(be) || be->resolving || backend_refused(be))
		return;
	struct job *j = xcalloc(1, sizeof(*j));
	j->r = r;
	j->be = backend_get(be);
	snprintf(j->host, sizeof(j->host), "%s", be->host);
	j->port = be->port;
	be->resolving = true;
	r->jobs++;
	enqueue(r, j);
}

void resolver_stats(const struct resolver *r, struct resolver_stats *out)
{
	out->resolved = r->resolved;
	out->failed = r->failed;
	out->pending = r->jobs;
}

static void drop_list(struct job *j)
{
	while (j) {
		struct job *next = j->next;
		j->be->resolving = false;
		job_free(j);
		j = next;
	}
}

void resolver_free(struct resolver *r)
{
	if (!r)
		return;
	struct shared *sh = r->sh;
	pthread_mutex_lock(&sh->lock);
	sh->stop = true;
	struct job *pending = sh->pending, *done = sh->done;
	sh->pending = sh->done = NULL;
	sh->pending_tail = &sh->pending;
	for (unsigned i = 0; i < RESOLVER_THREADS; i++) {
		struct job *busy = sh->busy[i];
		if (!busy)
			continue;
		/* The thread frees the job itself; its backend and timer are ours. */
		busy->be->resolving = false;
		backend_put(busy->be);
		busy->be = NULL;
		if (busy->timer) {
			event_free(busy->timer);
			busy->timer = NULL;
		}
	}
	pthread_cond_broadcast(&sh->cond);
	int efd = sh->efd;
	pthread_mutex_unlock(&sh->lock);

	drop_list(pending);
	drop_list(done);
	drop_list(r->parked);
	event_free(r->efd_ev);
	close(efd);
	shared_put(sh);
	free(r);
}
