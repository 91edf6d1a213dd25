/*
 * resolver — see resolver.h.
 *
 * A job carries one backend (a reference) through its life, on the control
 * thread only: waiting in its service's backlog, in flight (a lookup thread
 * of its own resolves a copy of the name, under a deadline timer), or
 * parked on a retry timer. Every job is on the resolver's `all` list, which
 * owns it. A lookup (struct lookup) is what one thread
 * shares with the control side: the thread reads its host and port, writes
 * its result and hands it back through an eventfd; nothing else.
 *
 * One thread per lookup in flight, detached: getaddrinfo() cannot be
 * cancelled, so a lookup past its deadline is given up by the control side
 * (the job fails and is retried later) while its thread runs on until the
 * name server gives up. That thread still counts against its service's
 * max_lookups and the global RESOLVER_MAX_THREADS until it returns, so a
 * service whose names never answer holds at most max_lookups threads, and
 * the other services' names start at once (round robin over the services
 * when the global cap is reached).
 *
 * Stopping: the threads and the control side share `struct shared`. At
 * resolver_free() the control side sets `stop` and lets go; a thread whose
 * lookup returns after that frees the lookup itself, drops its reference to
 * the shared part (the last one frees it) and exits. No thread writes the
 * eventfd once `stop` is set (both under the lock), so a closed and reused
 * descriptor is never written.
 */
#include "resolver.h"
#include "backend.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RESOLVER_MAX_THREADS 64		/* lookups in flight, all services */
#define RESOLVER_STACK (256u << 10)	/* getaddrinfo() needs little; 64 of them stay small */

const char resolver_refused_hostname[] = "hostname_not_allowed";

struct shared;
struct rsvc;
struct job;

/* One lookup, shared by its thread and the control side. */
struct lookup {
	struct lookup *next;		/* in sh->done (under the lock) */
	struct shared *sh;		/* ref: one of its refs */
	char host[256];			/* copy: the thread reads no backend */
	uint16_t port;
	bool ok;			/* thread: the result */
	struct net_addr addr;		/* thread: when ok */
	char err[200];			/* thread: when !ok */
	struct rsvc *svc;		/* control only: whose max_lookups it counts in */
	struct job *job;		/* control only: waiting for it; NULL once given up */
};

struct shared {
	pthread_mutex_t lock;
	struct lookup *done;		/* LIFO (thread -> control), reversed when drained */
	bool stop;
	int efd;			/* written under lock while !stop */
	int refs;			/* control side and threads: the last one frees */
};

enum job_where {
	JOB_BACKLOG = 0,		/* waiting for room under its service's max_lookups */
	JOB_IN_FLIGHT,			/* a thread resolves it; the deadline timer runs */
	JOB_PARKED,			/* failed; the retry timer runs */
};

struct job {
	struct job *next;		/* in its service's backlog */
	struct job *all_next;		/* every job of the resolver */
	struct job *all_prev;
	struct resolver *r;		/* ref */
	struct backend *be;		/* ref */
	struct resolver_policy pol;	/* copied at submit */
	enum job_where where;
	struct lookup *lk;		/* in flight: its lookup; else NULL */
	struct event *timer;		/* owned; deadline in flight, retry parked */
	uint32_t backoff_ms;		/* the next retry's delay */
	char last_err[200];		/* the failure logged last */
};

/* Per service (by name): what it has in flight and what waits. */
struct rsvc {
	struct rsvc *next;		/* in r->svcs */
	char *name;			/* owned */
	uint32_t in_flight;		/* threads working for it, given-up lookups included */
	struct job *backlog;		/* FIFO head */
	struct job **backlog_tail;
};

struct resolver {
	struct event_base *base;	/* ref */
	resolver_done_fn done;
	void *arg;
	struct shared *sh;		/* one of its refs */
	struct event *efd_ev;		/* owned */
	struct rsvc *svcs;		/* owned; services with work */
	struct rsvc *rr;		/* ref: where the next round robin starts */
	struct job *all;		/* every job (owned) */
	uint32_t threads;		/* lookup threads alive */
	uint64_t jobs;			/* alive, wherever they are */
	struct resolver_stats st;
};

static void shared_put(struct shared *sh)
{
	pthread_mutex_lock(&sh->lock);
	bool last = --sh->refs == 0;
	pthread_mutex_unlock(&sh->lock);
	if (!last)
		return;
	pthread_mutex_destroy(&sh->lock);
	close(sh->efd);
	free(sh);
}

/* ---------- the lookup thread ---------- */

static void *resolver_main(void *arg)
{
	struct lookup *lk = arg;
	struct shared *sh = lk->sh;

	lk->ok = net_addr_resolve(lk->host, lk->port, &lk->addr, lk->err, sizeof(lk->err));
	pthread_mutex_lock(&sh->lock);
	if (sh->stop) {
		free(lk);	/* the control side let go of everything */
	} else {
		uint64_t one = 1;
		ssize_t w;
		lk->next = sh->done;
		sh->done = lk;
		do
			w = write(sh->efd, &one, sizeof(one));
		while (w < 0 && errno == EINTR);
	}
	pthread_mutex_unlock(&sh->lock);
	shared_put(sh);
	return NULL;
}

/* ---------- control thread ---------- */

static struct rsvc *rsvc_of(struct resolver *r, const char *name)
{
	struct rsvc *s;

	for (s = r->svcs; s; s = s->next)
		if (strcmp(s->name, name) == 0)
			return s;
	s = xcalloc(1, sizeof(*s));
	s->name = xstrdup(name);
	s->backlog_tail = &s->backlog;
	s->next = r->svcs;
	r->svcs = s;
	return s;
}

/* Forget services with nothing in flight or waiting (they come back with their next name). */
static void rsvc_reap(struct resolver *r)
{
	for (struct rsvc **p = &r->svcs; *p;) {
		struct rsvc *s = *p;
		if (s->in_flight || s->backlog) {
			p = &s->next;
			continue;
		}
		*p = s->next;
		if (r->rr == s)
			r->rr = NULL;
		free(s->name);
		free(s);
	}
}

static void job_free(struct resolver *r, struct job *j)
{
	if (j->all_prev)
		j->all_prev->all_next = j->all_next;
	else
		r->all = j->all_next;
	if (j->all_next)
		j->all_next->all_prev = j->all_prev;
	if (j->timer)
		event_free(j->timer);
	r->jobs--;
	j->be->resolving = false;
	backend_put(j->be);
	free(j);
}

static void backlog_push(struct resolver *r, struct job *j)
{
	struct rsvc *s = rsvc_of(r, j->be->svc_name);

	j->where = JOB_BACKLOG;
	j->next = NULL;
	*s->backlog_tail = j;
	s->backlog_tail = &j->next;
}

static void on_timer(evutil_socket_t fd, short what, void *arg);

/* The job failed (err): log once per distinct error, retry after the backoff. */
static void job_fail(struct resolver *r, struct job *j, const char *err)
{
	struct backend *be = j->be;
	struct timeval tv;

	j->backoff_ms = j->backoff_ms ? MIN(j->backoff_ms * 2, RESOLVER_RETRY_MAX_MS)
				      : RESOLVER_RETRY_MIN_MS;
	/* A name server that is down fails every retry: say so once per error. */
	if (strcmp(err, j->last_err) != 0) {
		log_warn("svc=%s be=%s not routable: %s (retrying, every %us at most)",
			 be->svc_name, be->name, err, RESOLVER_RETRY_MAX_MS / 1000);
		snprintf(j->last_err, sizeof(j->last_err), "%s", err);
	}
	j->where = JOB_PARKED;
	tv = timeval_from_ms(j->backoff_ms);
	evtimer_add(j->timer, &tv);
}

/* Start s's next job on a thread of its own; a thread that cannot start fails the job (retried). */
static void job_start(struct resolver *r, struct rsvc *s)
{
	struct job *j = s->backlog;
	struct lookup *lk = xcalloc(1, sizeof(*lk));
	pthread_attr_t at;
	pthread_t tid;
	struct timeval tv;
	int rc;

	s->backlog = j->next;
	if (!s->backlog)
		s->backlog_tail = &s->backlog;
	j->next = NULL;
	lk->sh = r->sh;
	snprintf(lk->host, sizeof(lk->host), "%s", j->be->host);
	lk->port = j->be->port;
	lk->svc = s;
	lk->job = j;
	pthread_mutex_lock(&r->sh->lock);
	r->sh->refs++;
	pthread_mutex_unlock(&r->sh->lock);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, RESOLVER_STACK);
	rc = pthread_create(&tid, &at, resolver_main, lk);
	pthread_attr_destroy(&at);
	if (rc != 0) {
		char err[200];
		free(lk);
		shared_put(r->sh);
		r->st.failed++;
		snprintf(err, sizeof(err), "cannot start a lookup thread: %s", strerror(rc));
		job_fail(r, j, err);
		return;
	}
	s->in_flight++;
	r->threads++;
	j->where = JOB_IN_FLIGHT;
	j->lk = lk;
	tv = timeval_from_ms(j->pol.timeout_ms);
	evtimer_add(j->timer, &tv);
}

/*
 * Start what waits, as far as the caps allow: each service up to its
 * max_lookups, all of them up to RESOLVER_MAX_THREADS, one job per service
 * per round so no service's backlog goes first for long.
 */
static void pump(struct resolver *r)
{
	bool started = true;

	while (started && r->threads < RESOLVER_MAX_THREADS) {
		started = false;
		struct rsvc *first = r->rr ? r->rr : r->svcs;
		struct rsvc *s = first;
		do {
			if (!s)
				break;
			if (s->backlog && s->in_flight < s->backlog->pol.max_lookups &&
			    r->threads < RESOLVER_MAX_THREADS) {
				job_start(r, s);
				started = true;
			}
			s = s->next ? s->next : r->svcs;
		} while (s != first);
		r->rr = s;
	}
	rsvc_reap(r);
}

/* The deadline of a job in flight, or the retry of a parked one. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	struct resolver *r = j->r;
	char err[200];

	if (j->where == JOB_PARKED) {
		if (!atomic_load(&j->be->member)) {
			job_free(r, j);
			return;
		}
		backlog_push(r, j);
		pump(r);
		return;
	}
	if (j->where != JOB_IN_FLIGHT)
		return;
	/* Given up: its thread runs on (and counts) until the name server answers. */
	j->lk->job = NULL;
	j->lk = NULL;
	r->st.timed_out++;
	if (!atomic_load(&j->be->member)) {
		job_free(r, j);
		return;
	}
	snprintf(err, sizeof(err), "no answer within %llums (lookup_timeout)",
		 (unsigned long long)j->pol.timeout_ms);
	job_fail(r, j, err);
}

/* A lookup came back. */
static void apply(struct resolver *r, struct lookup *lk)
{
	struct job *j = lk->job;
	struct backend *be;

	lk->svc->in_flight--;
	r->threads--;
	if (!j) {
		free(lk);	/* given up at its deadline: the job moved on */
		return;
	}
	j->lk = NULL;
	evtimer_del(j->timer);
	be = j->be;
	if (!atomic_load(&be->member)) {
		job_free(r, j);	/* left the service meanwhile */
	} else if (lk->ok) {
		char a[INET6_ADDRSTRLEN + 16];
		net_addr_format(&lk->addr, a, sizeof(a));
		log_info("svc=%s be=%s resolved to %s", be->svc_name, be->name, a);
		r->st.resolved++;
		r->done(r->arg, be, &lk->addr);	/* judges the address, then sets it */
		job_free(r, j);
	} else {
		r->st.failed++;
		job_fail(r, j, lk->err);
	}
	free(lk);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct resolver *r = arg;
	struct lookup *list, *fifo = NULL;
	uint64_t n;

	while (read(fd, &n, sizeof(n)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&r->sh->lock);
	list = r->sh->done;
	r->sh->done = NULL;
	pthread_mutex_unlock(&r->sh->lock);
	while (list) {		/* in the order they finished */
		struct lookup *next = list->next;
		list->next = fifo;
		fifo = list;
		list = next;
	}
	while (fifo) {
		struct lookup *next = fifo->next;
		apply(r, fifo);
		fifo = next;
	}
	pump(r);
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
	sh->efd = efd;
	sh->refs = 1;

	struct resolver *r = xcalloc(1, sizeof(*r));
	r->base = base;
	r->done = done;
	r->arg = arg;
	r->sh = sh;
	r->efd_ev = event_new(base, efd, EV_READ | EV_PERSIST, on_done, r);
	event_add(r->efd_ev, NULL);
	return r;
}

void resolver_submit(struct resolver *r, struct backend *be, const struct resolver_policy *p)
{
	if (backend_has_addr(be) || be->resolving)
		return;
	/* A reload that allows names again lifts this refusal (and only this one). */
	if (p->allow_hostnames && strcmp(be->refused, resolver_refused_hostname) == 0)
		be->refused[0] = '\0';
	if (backend_refused(be))
		return;
	if (!p->allow_hostnames) {
		backend_refuse(be, resolver_refused_hostname);
		r->st.refused++;
		log_warn("svc=%s be=%s refused: '%s' is a host name and discovery.allow_hostnames "
			 "is false", be->svc_name, be->name, be->host);
		return;
	}
	struct job *j = xcalloc(1, sizeof(*j));
	j->r = r;
	j->be = backend_get(be);
	j->pol = *p;
	if (j->pol.max_lookups == 0)
		j->pol.max_lookups = 1;
	j->timer = evtimer_new(r->base, on_timer, j);
	j->all_next = r->all;
	if (r->all)
		r->all->all_prev = j;
	r->all = j;
	r->jobs++;
	be->resolving = true;
	backlog_push(r, j);
	pump(r);
}

void resolver_stats(const struct resolver *r, struct resolver_stats *out)
{
	*out = r->st;
	out->pending = r->jobs;
	out->threads = r->threads;
}

void resolver_free(struct resolver *r)
{
	if (!r)
		return;
	struct shared *sh = r->sh;
	pthread_mutex_lock(&sh->lock);
	sh->stop = true;
	struct lookup *done = sh->done;
	sh->done = NULL;
	pthread_mutex_unlock(&sh->lock);

	/* Threads still inside getaddrinfo() free their own lookup when it returns. */
	while (done) {
		struct lookup *next = done->next;
		free(done);
		done = next;
	}
	while (r->all)
		job_free(r, r->all);
	while (r->svcs) {
		struct rsvc *s = r->svcs;
		r->svcs = s->next;
		free(s->name);
		free(s);
	}
	event_free(r->efd_ev);
	shared_put(sh);
	free(r);
}
