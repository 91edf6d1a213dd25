/*
 * checker — see checker.h.
 *
 * One flat list of running checks, each tied to its service and member.
 * Services have a few to a few hundred members and syncs happen on view
 * changes, so linear scans are cheaper than any index would be to keep.
 */
#include "checker.h"
#include "backend.h"
#include "check.h"
#include "log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* An active check of one member. */
struct checker_entry {
	struct service *svc;			/* ref */
	struct backend *be;			/* ref */
	struct check *chk;			/* owned */
};

struct checker {
	struct event_base *base;		/* ref: the control thread's */
	struct checker_entry **v;		/* owned; running checks, any order */
	size_t n;				/* entries used */
	size_t cap;				/* entries allocated (doubling) */
};

static void on_check_result(struct check *chk, bool passed, const char *reason,
			    uint64_t elapsed_ms, void *arg)
{
	struct checker_entry *e = arg;
	service_check_result(e->svc, e->be, passed, reason, now_ms());
}

static void entry_free(struct checker_entry *e)
{
	check_stop(e->chk);
	backend_put(e->be);
	service_put(e->svc);
	free(e);
}

/* Stop (and drop) svc's checks for which `stop` says so. */
static void checker_stop_where(struct checker *ck, struct service *svc,
			       bool (*stop)(const struct checker_entry *e))
{
	size_t k = 0;
	for (size_t i = 0; i < ck->n; i++) {
		struct checker_entry *e = ck->v[i];
		if (e->svc == svc && stop(e))
			entry_free(e);
		else
			ck->v[k++] = e;
	}
	ck->n = k;
}

static bool always(const struct checker_entry *e)
{
	return true;
}

static bool not_member(const struct checker_entry *e)
{
	return !atomic_load(&e->be->member);
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
	return x < y ? -1 : x > y;
}

static void checker_start(struct checker *ck, struct service *svc, struct backend *be,
			  const struct check_conf *conf, struct tls_ctx *tls)
{
	struct checker_entry *e = xcalloc(1, sizeof(*e));
	char label[512];
	snprintf(label, sizeof(label), "svc=%s be=%s", svc->name, be->name);
	e->chk = check_start(ck->base, conf, &be->addr, label, on_check_result, e);
	if (!e->chk) {
		free(e);	/* check_start() said why */
		return;
	}
	if (tls)
		check_use_tls(e->chk, tls, be->host);	/* the service's TLS settings */
	e->svc = service_get(svc);
	e->be = backend_get(be);
	if (ck->n == ck->cap) {
		ck->cap = ck->cap ? 2 * ck->cap : 16;
		ck->v = xrealloc(ck->v, ck->cap * sizeof(*ck->v));
	}
	ck->v[ck->n++] = e;
}

struct checker *checker_new(struct event_base *base)
{
	struct checker *ck = xcalloc(1, sizeof(*ck));
	ck->base = base;
	return ck;
}

void checker_sync(struct checker *ck, struct service *svc, const struct service_conf *conf,
		  bool restart)
{
	const struct check_conf *cc = &conf->health.check;
	if (restart || cc->type == CHECK_NONE)
		checker_stop_where(ck, svc, always);
	if (cc->type == CHECK_NONE)
		return;
	checker_stop_where(ck, svc, not_member);
	/* The backends checked already, sorted: n log n for a service of 100k members. */
	size_t n_checked = ck->n;
	const struct backend **done = xcalloc(n_checked ? n_checked : 1, sizeof(*done));
	for (size_t i = 0; i < n_checked; i++)
		done[i] = ck->v[i]->be;
	qsort(done, n_checked, sizeof(*done), cmp_ptr);
	/* members are replaced only on this thread: no lock needed to read them */
	for (size_t m = 0; m < svc->n_members; m++) {
		struct backend *be = svc->members[m];
		if (backend_has_addr(be) &&
		    !(n_checked && bsearch(&be, done, n_checked, sizeof(*done), cmp_ptr)))
			checker_start(ck, svc, be, cc, conf->tls.enabled ? conf->tls.ctx : NULL);
	}
	free(done);
}

void checker_forget(struct checker *ck, struct service *svc)
{
	checker_stop_where(ck, svc, always);
}

size_t checker_count(const struct checker *ck, const struct service *svc)
{
	size_t n = 0;
	for (size_t i = 0; i < ck->n; i++)
		n += ck->v[i]->svc == svc;
	return n;
}

void checker_free(struct checker *ck)
{
	if (!ck)
		return;
	for (size_t i = 0; i < ck->n; i++)
		entry_free(ck->v[i]);
	free(ck->v);
	free(ck);
}
