/*
 * sentinel — follow a Redis primary through Redis Sentinel (see sentinel.h).
 *
 * One struct sentinel_watch per service. Its Redis connections are hiredis
 * async contexts on the control thread's base: `query` (the sentinel asked
 * now, or the ROLE to the candidate) and `subs[i]` (the +switch-master
 * subscription to sentinel i). Contexts are closed in one place,
 * link_close(), which clears ac->data first: hiredis then still runs the
 * pending callbacks (with a NULL reply) and the disconnect callback, and
 * each of them returns at once when ac->data is NULL. A context hiredis
 * closes itself (connect failure, peer gone) reaches on_connect or
 * on_disconnect with ac->data set, and the pointer is forgotten there.
 */
#include "sentinel.h"
#include "log.h"
#include "redis_role.h"
#include "secret.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#define SENTINEL_MAX 16

/*
 * hiredis buffers a reply until it is whole, however long it announces
 * itself ("$1000000000\r\n..."): a link whose unparsed bytes pass this is
 * closed before it reads more (a real answer is a few dozen bytes).
 */
#define SENTINEL_REPLY_MAX REDIS_ROLE_REPLY_MAX

enum sentinel_phase {
	SENTINEL_PHASE_ASKING = 0,	/* get-master-addr-by-name in flight on sentinels[at] */
	SENTINEL_PHASE_VERIFYING,	/* ROLE in flight on the candidate */
	SENTINEL_PHASE_WATCHING,	/* primary confirmed; timer = next refresh */
	SENTINEL_PHASE_BACKOFF,		/* timer = next round of asking */
};

struct sentinel_addr {
	char host[INET6_ADDRSTRLEN];	/* IP literal */
	uint16_t port;
};

struct sentinel_watch {
	struct sentinel *owner;		/* ref */
	char *service;			/* owned; the service's name */
	char *master_name;		/* owned; what the sentinels monitor */
	struct sentinel_addr sentinels[SENTINEL_MAX];	/* in configured order */
	size_t n;			/* entries in sentinels */
	size_t at;			/* sentinel asked now; the last that answered first */
	size_t tries;			/* sentinels that failed in this round */
	uint64_t timeout_ms;		/* one query, connect included */
	uint64_t grace_ms;		/* demoted primary's connections close after this */
	char *password;			/* owned (secret_free); AUTH before ROLE, or NULL */
	enum sentinel_phase phase;	/* changed by sentinel_set_phase() only */
	redisAsyncContext *query;	/* owned; the query in flight, or NULL */
	redisAsyncContext *subs[SENTINEL_MAX];	/* owned; subscriptions, NULL when down */
	struct event *timer;		/* owned; query deadline, backoff or refresh */
	struct event *grace;		/* owned; pending on_demoted */
	struct sentinel_addr primary;	/* delivered; port 0 = none yet */
	struct sentinel_addr candidate;	/* being confirmed with ROLE */
	char demoted[INSTANCE_ID_MAX];	/* id whose close is pending on `grace` */
	struct sentinel_stats stats;
	struct sentinel_watch *next;
};

struct sentinel {
	struct event_base *base;	/* ref: the control thread's */
	const struct sentinel_hooks *h;	/* ref */
	void *arg;			/* ref: handed back to the hooks */
	struct sentinel_watch *watches;	/* owned list */
};

static const char *const phase_names[] = {
	[SENTINEL_PHASE_ASKING] = "asking",
	[SENTINEL_PHASE_VERIFYING] = "verifying",
	[SENTINEL_PHASE_WATCHING] = "watching",
	[SENTINEL_PHASE_BACKOFF] = "backoff",
};

static void sentinel_ask(struct sentinel_watch *w);
static void sentinel_verify(struct sentinel_watch *w, const struct sentinel_addr *a);

/* ---- pure pieces ------------------------------------------------------------- */

bool sentinel_addr_ok(const char *host, size_t host_len, const char *port, size_t port_len,
		      char *host_out, size_t host_out_len, uint16_t *port_out)
{
	char h[INET6_ADDRSTRLEN];
	unsigned char bin[sizeof(struct in6_addr)];
	if (host_len == 0 || host_len >= sizeof(h) || host_len >= host_out_len ||
	    memchr(host, '\0', host_len))
		return false;
	memcpy(h, host, host_len);
	h[host_len] = '\0';
	if (inet_pton(AF_INET, h, bin) != 1 && inet_pton(AF_INET6, h, bin) != 1)
		return false;
	if (port_len == 0 || port_len > 5)
		return false;
	unsigned long p = 0;
	for (size_t i = 0; i < port_len; i++) {
		if (port[i] < '0' || port[i] > '9')
			return false;
		p = p * 10 + (unsigned long)(port[i] - '0');
	}
	if (p == 0 || p > 65535)
		return false;
	memcpy(host_out, h, host_len + 1);
	*port_out = (uint16_t)p;
	return true;
}

bool sentinel_parse_switch(const char *msg, size_t len, const char *name, char *host,
			   size_t host_len, uint16_t *port)
{
	const char *f[5];
	size_t fl[5];
	size_t n = 0, i = 0;

	while (i < len && n < 5) {
		if (msg[i] == ' ') {
			i++;
			continue;
		}
		size_t start = i;
		while (i < len && msg[i] != ' ')
			i++;
		f[n] = msg + start;
		fl[n++] = i - start;
	}
	while (i < len && msg[i] == ' ')
		i++;
	if (n != 5 || i != len)
		return false;
	if (fl[0] != strlen(name) || memcmp(f[0], name, fl[0]) != 0)
		return false;
	char old_host[INET6_ADDRSTRLEN];
	uint16_t old_port;
	if (!sentinel_addr_ok(f[1], fl[1], f[2], fl[2], old_host, sizeof(old_host), &old_port))
		return false;
	return sentinel_addr_ok(f[3], fl[3], f[4], fl[4], host, host_len, port);
}

/* ---- lifecycle --------------------------------------------------------------- */

/* The one place the phase changes; every phase may follow every other but itself. */
static void sentinel_set_phase(struct sentinel_watch *w, enum sentinel_phase to)
{
	if (w->phase != to)
		log_debug("svc=%s sentinel: %s -> %s", w->service, phase_names[w->phase],
			  phase_names[to]);
	w->phase = to;
}

static void arm(struct event *ev, uint64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(ev, &tv);
}

/* Close a context we own; its callbacks see ac->data == NULL and return. */
static void link_close(redisAsyncContext **pac)
{
	redisAsyncContext *ac = *pac;
	if (!ac)
		return;
	*pac = NULL;
	ac->data = NULL;
	redisAsyncFree(ac);
}

/* A failed query: count it, log it, ask the next sentinel or pause. */
static void sentinel_failed(struct sentinel_watch *w, const char *what, const char *why)
{
	link_close(&w->query);
	w->stats.failures_total++;
	if (w->phase == SENTINEL_PHASE_VERIFYING) {
		log_warn("svc=%s sentinel: ROLE on %s:%u: %s", w->service, w->candidate.host,
			 w->candidate.port, why);
		sentinel_set_phase(w, SENTINEL_PHASE_BACKOFF);
		arm(w->timer, SENTINEL_RETRY_MS);
		return;
	}
	log_warn("svc=%s sentinel %s:%u: %s: %s", w->service, w->sentinels[w->at].host,
		 w->sentinels[w->at].port, what, why);
	w->at = (w->at + 1) % w->n;
	if (++w->tries < w->n) {
		sentinel_ask(w);
		return;
	}
	w->tries = 0;
	sentinel_set_phase(w, SENTINEL_PHASE_BACKOFF);
	arm(w->timer, SENTINEL_RETRY_MS);
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
	struct sentinel_watch *w = arg;
	if (!w->demoted[0])
		return;
	char id[INSTANCE_ID_MAX];
	snprintf(id, sizeof(id), "%s", w->demoted);
	w->demoted[0] = '\0';
	w->owner->h->on_demoted(w->owner->arg, w->service, id);
}

static void addr_id(const struct sentinel_addr *a, char *out, size_t len)
{
	if (strchr(a->host, ':'))
		snprintf(out, len, "[%s]:%u", a->host, a->port);
	else
		snprintf(out, len, "%s:%u", a->host, a->port);
}

/* Make a the primary in the view; the old one's connections close after the grace. */
static void sentinel_deliver(struct sentinel_watch *w, const struct sentinel_addr *a)
{
	if (w->primary.port == a->port && strcmp(w->primary.host, a->host) == 0)
		return;
	struct instance inst;
	memset(&inst, 0, sizeof(inst));
	addr_id(a, inst.id, sizeof(inst.id));
	snprintf(inst.host, sizeof(inst.host), "%s", a->host);
	inst.port = a->port;
	inst.weight = 1;
	inst.enabled = true;

	struct sentinel_addr old = w->primary;
	w->primary = *a;
	if (old.port) {
		w->stats.switches_total++;
		log_info("svc=%s sentinel: primary %s:%u -> %s (%s: connections to the old one "
			 "close in %llums)", w->service, old.host, old.port, inst.id, w->master_name,
			 (unsigned long long)w->grace_ms);
		addr_id(&old, w->demoted, sizeof(w->demoted));
		arm(w->grace, w->grace_ms);
	} else {
		log_info("svc=%s sentinel: primary of %s is %s", w->service, w->master_name, inst.id);
	}
	/* the new primary may be the one whose close was pending: it serves again */
	if (strcmp(w->demoted, inst.id) == 0) {
		w->demoted[0] = '\0';
		evtimer_del(w->grace);
	}
	w->owner->h->on_view(w->owner->arg, w->service, &inst, 1);
}

/* Does the service's destinations policy refuse a (a sentinel named it)? Then why says so. */
static bool sentinel_refuses(const struct sentinel_watch *w, const struct sentinel_addr *a,
			     char *why, size_t len)
{
	const struct sentinel_hooks *h = w->owner->h;
	return h->refuses && h->refuses(w->owner->arg, w->service, a->host, a->port, why, len);
}

/* ---- hiredis callbacks --------------------------------------------------------- */

static size_t sub_slot(const struct sentinel_watch *w, const redisAsyncContext *ac)
{
	for (size_t i = 0; i < w->n; i++)
		if (w->subs[i] == ac)
			return i;
	return SIZE_MAX;
}

/* A context closed by hiredis (connect failed, peer gone): forget it. */
static void link_lost(const redisAsyncContext *ac, const char *why)
{
	struct sentinel_watch *w = ac->data;
	if (!w)
		return;
	if (ac == w->query) {
		w->query = NULL;	/* hiredis frees it after this callback */
		sentinel_failed(w, "query", why);
		return;
	}
	size_t i = sub_slot(w, ac);
	if (i == SIZE_MAX)
		return;
	w->subs[i] = NULL;
	w->stats.failures_total++;
	log_warn("svc=%s sentinel %s:%u: subscription lost: %s", w->service, w->sentinels[i].host,
		 w->sentinels[i].port, why);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	if (status != REDIS_OK)
		link_lost(ac, ac->errstr[0] ? ac->errstr : "connect failed");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	link_lost(ac, status == REDIS_OK ? "connection closed" :
		  ac->errstr[0] ? ac->errstr : "connection error");
}

static bool reply_is_string(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_STRING && r->str;
}

static void on_master_addr(redisAsyncContext *ac, void *reply, void *priv)
{
	struct sentinel_watch *w = ac->data;
	const redisReply *r = reply;
	struct sentinel_addr a;
	if (!w || !r || ac != w->query)
		return;
	if (r->type == REDIS_REPLY_NIL) {
		sentinel_failed(w, "get-master-addr-by-name", "master name unknown");
		return;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		sentinel_failed(w, "get-master-addr-by-name", "error reply");
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !reply_is_string(r->element[0]) ||
	    !reply_is_string(r->element[1]) ||
	    !sentinel_addr_ok(r->element[0]->str, r->element[0]->len, r->element[1]->str,
			      r->element[1]->len, a.host, sizeof(a.host), &a.port)) {
		sentinel_failed(w, "get-master-addr-by-name", "bad reply");
		return;
	}
	char why[96], what[160];
	if (sentinel_refuses(w, &a, why, sizeof(why))) {
		/* Never connected to, never sent the password: as a bad answer. */
		snprintf(what, sizeof(what), "%s:%u refused: %s", a.host, a.port, why);
		sentinel_failed(w, "get-master-addr-by-name", what);
		return;
	}
	link_close(&w->query);
	w->tries = 0;			/* this sentinel answered: it is asked first next time */
	sentinel_verify(w, &a);
}

static void on_auth(redisAsyncContext *ac, void *reply, void *priv)
{
	struct sentinel_watch *w = ac->data;
	char why[96];
	if (!w || !reply || ac != w->query)
		return;
	if (redis_role_auth_verdict(reply, why, sizeof(why)) != CHECK_VERDICT_PASS)
		sentinel_failed(w, "auth", why);
}

static void on_role(redisAsyncContext *ac, void *reply, void *priv)
{
	struct sentinel_watch *w = ac->data;
	char why[96];
	if (!w || !reply || ac != w->query || w->phase != SENTINEL_PHASE_VERIFYING)
		return;
	if (redis_role_verdict(reply, REDIS_ROLE_MASTER, why, sizeof(why)) != CHECK_VERDICT_PASS) {
		sentinel_failed(w, "role", why);
		return;
	}
	link_close(&w->query);
	sentinel_set_phase(w, SENTINEL_PHASE_WATCHING);
	arm(w->timer, SENTINEL_REFRESH_MS);
	sentinel_deliver(w, &w->candidate);
}

/* A message on a subscription: ["message", "+switch-master", "<name> <old> <new>"]. */
static void on_message(redisAsyncContext *ac, void *reply, void *priv)
{
	struct sentinel_watch *w = ac->data;
	const redisReply *r = reply;
	struct sentinel_addr a;
	if (!w || !r)
		return;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !reply_is_string(r->element[0]) ||
	    strcmp(r->element[0]->str, "message") != 0 || !reply_is_string(r->element[2]))
		return;		/* the subscribe confirmation, or noise */
	if (!sentinel_parse_switch(r->element[2]->str, r->element[2]->len, w->master_name, a.host,
				   sizeof(a.host), &a.port))
		return;		/* another master name (one sentinel may monitor many) */
	char why[96];
	if (sentinel_refuses(w, &a, why, sizeof(why))) {
		w->stats.failures_total++;
		log_warn("svc=%s sentinel: +switch-master to %s:%u refused: %s; the primary stays",
			 w->service, a.host, a.port, why);
		return;
	}
	w->stats.last_switch_ms = wall_ms();
	log_info("svc=%s sentinel: +switch-master %s -> %s:%u", w->service, w->master_name, a.host,
		 a.port);
	/* switch now; ROLE confirms (or a new round of asking corrects it) */
	sentinel_deliver(w, &a);
	sentinel_verify(w, &a);
}

/* ---- connections --------------------------------------------------------------- */

/*
 * The read event of hiredis's libevent adapter, with a bound: before hiredis
 * reads more (16 KiB at most), a link holding over SENTINEL_REPLY_MAX unparsed
 * bytes is closed, as a failed query or a lost subscription. Outside every
 * hiredis callback, so closing frees the context (and this event) at once.
 */
static void link_on_read(evutil_socket_t fd, short what, void *arg)
{
	redisLibeventEvents *e = arg;
	redisAsyncContext *ac = e->context;
	const redisReader *r = ac->c.reader;
	struct sentinel_watch *w = ac->data;
	if (!w || !r || r->len - r->pos <= SENTINEL_REPLY_MAX) {
		redisAsyncHandleRead(ac);
		return;
	}
	char why[64];
	snprintf(why, sizeof(why), "reply over %d bytes: closed", SENTINEL_REPLY_MAX);
	if (ac == w->query) {
		sentinel_failed(w, "query", why);
		return;
	}
	size_t i = sub_slot(w, ac);
	if (i == SIZE_MAX) {
		redisAsyncHandleRead(ac);
		return;
	}
	w->stats.failures_total++;
	log_warn("svc=%s sentinel %s:%u: subscription: %s", w->service, w->sentinels[i].host,
		 w->sentinels[i].port, why);
	link_close(&w->subs[i]);
}

/* Put link_on_read in place of the adapter's own read event. */
static bool link_bound_reads(redisAsyncContext *ac, struct event_base *base)
{
	redisLibeventEvents *e = ac->ev.data;
	if (!e || !e->rev)
		return false;
	bool pending = event_pending(e->rev, EV_READ, NULL);
	event_del(e->rev);
	if (event_assign(e->rev, base, ac->c.fd, EV_READ, link_on_read, e) != 0)
		return false;
	if (pending)
		event_add(e->rev, NULL);
	return true;
}

static redisAsyncContext *link_open(struct sentinel_watch *w, const struct sentinel_addr *a,
				    char *err, size_t err_len)
{
	redisAsyncContext *ac = redisAsyncConnect(a->host, a->port);
	if (!ac) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	if (ac->err) {
		snprintf(err, err_len, "%s", ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	if (!redis_role_bound_reader(ac->c.reader) ||
	    redisLibeventAttach(ac, w->owner->base) != REDIS_OK ||
	    !link_bound_reads(ac, w->owner->base)) {
		snprintf(err, err_len, "cannot attach to the event loop");
		redisAsyncFree(ac);
		return NULL;
	}
	ac->data = w;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	return ac;
}

static void sentinel_ask(struct sentinel_watch *w)
{
	char err[128];
	link_close(&w->query);
	sentinel_set_phase(w, SENTINEL_PHASE_ASKING);
	arm(w->timer, w->timeout_ms);
	w->query = link_open(w, &w->sentinels[w->at], err, sizeof(err));
	if (!w->query) {
		sentinel_failed(w, "connect", err);
		return;
	}
	const char *argv[] = { "SENTINEL", "get-master-addr-by-name", w->master_name };
	const size_t argvlen[] = { 8, 23, strlen(w->master_name) };
	if (redisAsyncCommandArgv(w->query, on_master_addr, NULL, 3, argv, argvlen) != REDIS_OK)
		sentinel_failed(w, "query", "cannot send");
}

static void sentinel_verify(struct sentinel_watch *w, const struct sentinel_addr *a)
{
	char err[128];
	link_close(&w->query);
	w->candidate = *a;
	sentinel_set_phase(w, SENTINEL_PHASE_VERIFYING);
	arm(w->timer, w->timeout_ms);
	w->query = link_open(w, a, err, sizeof(err));
	if (!w->query) {
		sentinel_failed(w, "connect", err);
		return;
	}
	int rc = REDIS_OK;
	if (w->password) {
		const char *argv[] = { "AUTH", w->password };
		const size_t argvlen[] = { 4, strlen(w->password) };
		rc = redisAsyncCommandArgv(w->query, on_auth, NULL, 2, argv, argvlen);
	}
	const char *rargv[] = { "ROLE" };
	const size_t rargvlen[] = { 4 };
	if (rc == REDIS_OK)
		rc = redisAsyncCommandArgv(w->query, on_role, NULL, 1, rargv, rargvlen);
	if (rc != REDIS_OK)
		sentinel_failed(w, "query", "cannot send");
}

/* Subscribe where no subscription runs. A failure is logged by link_lost() or here. */
static void sentinel_subscribe(struct sentinel_watch *w)
{
	for (size_t i = 0; i < w->n; i++) {
		char err[128];
		if (w->subs[i])
			continue;
		w->subs[i] = link_open(w, &w->sentinels[i], err, sizeof(err));
		if (!w->subs[i]) {
			w->stats.failures_total++;
			log_warn("svc=%s sentinel %s:%u: cannot subscribe: %s", w->service,
				 w->sentinels[i].host, w->sentinels[i].port, err);
			continue;
		}
		const char *argv[] = { "SUBSCRIBE", "+switch-master" };
		const size_t argvlen[] = { 9, 14 };
		if (redisAsyncCommandArgv(w->subs[i], on_message, NULL, 2, argv, argvlen) != REDIS_OK)
			link_close(&w->subs[i]);
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct sentinel_watch *w = arg;
	switch (w->phase) {
	case SENTINEL_PHASE_ASKING:
	case SENTINEL_PHASE_VERIFYING:
		sentinel_failed(w, "query", "timeout");
		break;
	case SENTINEL_PHASE_BACKOFF:
		sentinel_ask(w);
		break;
	case SENTINEL_PHASE_WATCHING:
		sentinel_subscribe(w);
		sentinel_ask(w);
		break;
	}
}

/* ---- the set of watches ---------------------------------------------------------- */

struct sentinel *sentinel_new(struct event_base *base, const struct sentinel_hooks *h, void *arg)
{
	struct sentinel *s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->h = h;
	s->arg = arg;
	return s;
}

static struct sentinel_watch **watch_find(struct sentinel *s, const char *service)
{
	struct sentinel_watch **pp = &s->watches;
	while (*pp && strcmp((*pp)->service, service) != 0)
		pp = &(*pp)->next;
	return pp;
}

static void watch_free(struct sentinel_watch *w)
{
	link_close(&w->query);
	for (size_t i = 0; i < w->n; i++)
		link_close(&w->subs[i]);
	if (w->timer)
		event_free(w->timer);
	if (w->grace)
		event_free(w->grace);
	secret_free(w->password);
	free(w->service);
	free(w->master_name);
	free(w);
}

int sentinel_watch(struct sentinel *s, const struct service_conf *sc)
{
	const struct discovery_conf *d = &sc->discovery;
	if (d->type != DISCOVERY_SENTINEL || d->n_sentinels == 0 || !d->master_name) {
		log_error("svc=%s sentinel: no sentinels or no master_name", sc->name);
		return -EINVAL;
	}
	char *password = NULL;
	if (d->password_file) {
		char err[256];
		password = secret_read(d->password_file, err, sizeof(err));
		if (!password) {
			log_error("svc=%s sentinel: password_file %s", sc->name, err);
			return -EINVAL;
		}
	}
	struct sentinel_watch *w = xcalloc(1, sizeof(*w));
	w->owner = s;
	w->service = xstrdup(sc->name);
	w->master_name = xstrdup(d->master_name);
	for (size_t i = 0; i < d->n_sentinels && w->n < SENTINEL_MAX; i++) {
		struct sentinel_addr *a = &w->sentinels[w->n];
		char port[8];
		snprintf(port, sizeof(port), "%u", d->sentinels[i].port);
		if (!sentinel_addr_ok(d->sentinels[i].host, strlen(d->sentinels[i].host), port,
				      strlen(port), a->host, sizeof(a->host), &a->port)) {
			log_error("svc=%s sentinel: %s is not an IP literal: skipped", sc->name,
				  d->sentinels[i].address);
			continue;
		}
		w->n++;
	}
	w->timeout_ms = d->query_timeout_ms;
	w->grace_ms = d->close_grace_ms;
	w->password = password;
	w->timer = evtimer_new(s->base, on_timer, w);
	w->grace = evtimer_new(s->base, on_grace, w);
	if (w->n == 0 || !w->timer || !w->grace) {
		log_error("svc=%s sentinel: cannot start", sc->name);
		watch_free(w);
		return -EINVAL;
	}

	/* a restart keeps the delivered primary: it serves until another is confirmed */
	struct sentinel_watch **pp = watch_find(s, sc->name);
	if (*pp) {
		struct sentinel_watch *old = *pp;
		w->primary = old->primary;
		w->stats = old->stats;
		w->next = old->next;
		watch_free(old);
	}
	*pp = w;
	/* the first query runs from the loop, never inside this call */
	sentinel_set_phase(w, SENTINEL_PHASE_BACKOFF);
	arm(w->timer, 0);
	sentinel_subscribe(w);
	return 0;
}

void sentinel_unwatch(struct sentinel *s, const char *service)
{
	struct sentinel_watch **pp = watch_find(s, service);
	struct sentinel_watch *w = *pp;
	if (!w)
		return;
	*pp = w->next;
	watch_free(w);
}

bool sentinel_stats(const struct sentinel *s, const char *service, struct sentinel_stats *out)
{
	for (const struct sentinel_watch *w = s->watches; w; w = w->next) {
		if (strcmp(w->service, service) == 0) {
			*out = w->stats;
			return true;
		}
	}
	return false;
}

void sentinel_free(struct sentinel *s)
{
	if (!s)
		return;
	while (s->watches) {
		struct sentinel_watch *w = s->watches;
		s->watches = w->next;
		watch_free(w);
	}
	free(s);
}
