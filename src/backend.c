/*
 * backend — see backend.h.
 */
#include "backend.h"
#include "log.h"
#include "service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct backend *backend_new(struct service *svc, const char *id, const char *host,
			    uint16_t port, uint16_t ssl_port, uint32_t weight, uint64_t now)
{
	struct backend *be = xcalloc(1, sizeof(*be));
	atomic_init(&be->refs, 1);
	be->id = xstrdup(id);
	snprintf(be->host, sizeof(be->host), "%s", host);
	be->port = port;
	be->ssl_port = ssl_port;
	be->weight = weight ? weight : 1;
	be->svc = service_get(svc);
	size_t slots = svc->n_workers * sizeof(*be->slots);
	be->slots = aligned_alloc(64, slots);	/* slots is a multiple of 64 */
	if (!be->slots) {
		log_error("out of memory allocating %zu bytes", slots);
		abort();
	}
	memset(be->slots, 0, slots);

	/* be->name holds any host of 255 bytes with brackets and port. */
	if (strchr(host, ':'))
		snprintf(be->name, sizeof(be->name), "[%s]:%u", be->host, port);
	else
		snprintf(be->name, sizeof(be->name), "%s:%u", be->host, port);
	/* A name waits for its address as a member: listed, never routable. */
	bool literal = net_addr_numeric(host, port, &be->addr);
	atomic_init(&be->has_addr, literal);
	if (!literal)
		atomic_init(&be->eligible_after_ms, UINT64_MAX);
	atomic_init(&be->serving_since_ms, now);
	atomic_init(&be->member, true);
	health_init(&be->health, now);
	return be;
}

void backend_set_addr(struct backend *be, const struct net_addr *addr)
{
	if (backend_has_addr(be))
		return;
	be->addr = *addr;
	atomic_store_explicit(&be->has_addr, true, memory_order_release);
}

struct backend *backend_get(struct backend *be)
{
	atomic_fetch_add_explicit(&be->refs, 1, memory_order_relaxed);
	return be;
}

void backend_put(struct backend *be)
{
	if (!be || atomic_fetch_sub_explicit(&be->refs, 1, memory_order_acq_rel) != 1)
		return;
	service_put(be->svc);
	free(be->slots);
	free(be->id);
	free(be);
}

/*
 * Count ejected members, and members with an address (a name not resolved
 * yet is no instance yet, as for panic); caller holds the health lock.
 */
static size_t count_ejected(const struct service *svc, size_t *with_addr)
{
	size_t n = 0;
	*with_addr = 0;
	for (size_t i = 0; i < svc->n_members; i++) {
		const struct backend *be = svc->members[i];
		if (!backend_has_addr(be))
			continue;
		(*with_addr)++;
		if (be->health.state == HEALTH_EJECTED)
			n++;
	}
	return n;
}

void backend_report_failure(struct backend *be, const char *why)
{
	struct service *svc = be->svc;
	uint64_t now = now_ms();
	atomic_fetch_add_explicit(&be->connect_failures, 1, memory_order_relaxed);

	pthread_mutex_lock(&svc->health_lock);
	uint32_t max_pct = svc->hp.max_ejected_percent;
	size_t total;
	size_t ejected = count_ejected(svc, &total);
	bool may = health_may_eject(ejected, total, max_pct);
	enum health_transition t = health_on_failure(&be->health, &svc->hp, now, may);
	uint64_t until = be->health.ejected_until_ms;
	uint32_t times = be->health.ejections_total;
	atomic_store(&be->eligible_after_ms, health_eligible_after(&be->health, &svc->hp));
	pthread_mutex_unlock(&svc->health_lock);

	if (t == HEALTH_T_EJECTED) {
		atomic_fetch_add_explicit(&svc->ejections, 1, memory_order_relaxed);
		log_warn("svc=%s be=%s ejected for %llums (ejection #%u) after %s",
			 svc->name, be->name, (unsigned long long)(until - now), times, why);
	} else if (t == HEALTH_T_EJECT_SKIPPED) {
		/* A flapping service would say this on every streak: once a second is enough. */
		uint64_t last = atomic_load_explicit(&svc->skip_logged_ms, memory_order_relaxed);
		if (now - last >= 1000 &&
		    atomic_compare_exchange_strong(&svc->skip_logged_ms, &last, now))
			log_warn("svc=%s be=%s not ejected: max_ejected_percent=%u reached (%s)",
				 svc->name, be->name, max_pct, why);
	} else {
		log_debug("svc=%s be=%s connect failure: %s", svc->name, be->name, why);
	}
}

void backend_report_success(struct backend *be)
{
	struct service *svc = be->svc;
	/*
	 * The common case is a healthy instance with no failure streak: a racy
	 * read is fine, a stale nonzero only costs taking the lock once.
	 */
	if (__atomic_load_n(&be->health.consecutive_failures, __ATOMIC_RELAXED) == 0)
		return;
	pthread_mutex_lock(&svc->health_lock);
	health_on_success(&be->health, &svc->hp, now_ms());
	pthread_mutex_unlock(&svc->health_lock);
}

struct config_ref *config_ref_new(struct config *cfg)
{
	struct config_ref *r = xcalloc(1, sizeof(*r));
	atomic_init(&r->refs, 1);
	r->cfg = cfg;
	return r;
}

struct config_ref *config_ref_get(struct config_ref *r)
{
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
	return r;
}

void config_ref_put(struct config_ref *r)
{
	if (!r || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
		return;
	config_free(r->cfg);
	free(r);
}

struct backend_set *backend_set_new(struct service *svc, struct config_ref *cfg,
				    const struct service_conf *conf, struct backend **v,
				    size_t n, bool ready)
{
	struct backend_set *s = xcalloc(1, sizeof(*s) + n * sizeof(s->v[0]));
	atomic_init(&s->refs, 1);
	s->svc = service_get(svc);
	s->cfg = config_ref_get(cfg);
	s->conf = conf;
	s->ready = ready;
	s->n = n;
	for (size_t i = 0; i < n; i++)
		s->v[i] = backend_get(v[i]);
	return s;
}

struct backend_set *backend_set_get(struct backend_set *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void backend_set_put(struct backend_set *s)
{
	if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < s->n; i++)
		backend_put(s->v[i]);
	config_ref_put(s->cfg);
	service_put(s->svc);
	free(s);
}
