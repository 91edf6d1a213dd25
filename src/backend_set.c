/*
 * backend_set — see backend_set.h. config_ref lives here: snapshots are the
 * reason a configuration is refcounted.
 */
#include "backend_set.h"
#include "locality.h"

#include <stdlib.h>

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

struct backend_set *backend_set_publish(struct service *svc, struct config_ref *cfg,
					const struct service_conf *conf, bool ready)
{
	/* members are replaced only on this (the control) thread: no lock to read them */
	struct backend_set *s = backend_set_new(svc, cfg, conf, svc->members, svc->n_members,
						ready);
	s->version = service_published(svc, ready);
	const char *zone = conf->locality.prefer == LOCALITY_ZONE && cfg->cfg ? cfg->cfg->zone : NULL;
	if (zone) {
		s->local = xcalloc(s->n ? s->n : 1, sizeof(*s->local));
		for (size_t i = 0; i < s->n; i++) {
			const struct backend *be = s->v[i];
			s->local[i] = locality_in_zone(be->payload, be->payload_len,
						       conf->locality.zone_key, zone);
			s->n_local += s->local[i];
		}
	}
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
	free(s->local);
	free(s);
}
