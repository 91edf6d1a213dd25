/*
 * renderer — see renderer.h.
 */
#include "renderer.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "log.h"
#include "render.h"
#include "service.h"
#include "util.h"

struct renderer {
	struct event_base *base;		/* borrowed: the control thread's */
	struct render **entries;		/* owned, n, in configuration order */
	size_t n;
};

struct renderer *renderer_new(struct event_base *base)
{
	struct renderer *rd = xcalloc(1, sizeof(*rd));
	rd->base = base;
	return rd;
}

void renderer_free(struct renderer *rd)
{
	if (!rd)
		return;
	for (size_t i = 0; i < rd->n; i++)
		render_free(rd->entries[i]);
	free(rd->entries);
	free(rd);
}

void renderer_apply(struct renderer *rd, const struct render_conf *v, size_t n)
{
	struct render **next = xcalloc(n ? n : 1, sizeof(*next));
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < rd->n && !next[i]; j++) {
			if (rd->entries[j] && render_conf_same(rd->entries[j], &v[i])) {
				next[i] = rd->entries[j];
				rd->entries[j] = NULL;
			}
		}
		if (next[i])
			continue;
		char err[256];
		next[i] = render_new(rd->base, &v[i], err, sizeof(err));
		if (!next[i])
			log_error("render file=%s: %s", v[i].file, err);	/* check refused it first */
	}
	for (size_t j = 0; j < rd->n; j++)
		render_retire(rd->entries[j]);
	free(rd->entries);
	rd->entries = next;
	rd->n = n;
}

static struct service *service_named(struct service *const *services, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(services[i]->name, name) == 0)
			return services[i];
	return NULL;
}

/* The members svc would route to now (RENDER_ROUTABLE), or all of them. */
static size_t members_of(const struct service *svc, enum render_set which, uint64_t now,
			 struct render_member *out)
{
	size_t k = 0;
	for (size_t i = 0; i < svc->n_members; i++) {
		const struct backend *be = svc->members[i];
		if (which == RENDER_ROUTABLE && (!backend_has_addr(be) || !backend_routable(be, now)))
			continue;
		out[k++] = (struct render_member){
			.id = be->id, .host = be->host, .port = be->port, .ssl_port = be->ssl_port,
			.weight = be->weight, .payload = be->payload, .payload_len = be->payload_len,
		};
	}
	return k;
}

void renderer_tick(struct renderer *rd, struct service *const *services, size_t n, uint64_t now_ms)
{
	for (size_t i = 0; i < rd->n; i++) {
		struct render *r = rd->entries[i];
		if (!r)
			continue;
		const struct render_conf *rc = render_conf(r);
		struct service *svc = service_named(services, n, rc->service);
		if (svc && svc->view != SERVICE_VIEW_PENDING) {
			struct render_member *m = xcalloc(svc->n_members ? svc->n_members : 1, sizeof(*m));
			render_offer(r, m, members_of(svc, rc->instances, now_ms, m), now_ms);
			free(m);
		}
		render_tick(r, now_ms);
	}
}

json_t *renderer_status_json(const struct renderer *rd)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < rd->n; i++)
		if (rd->entries[i])
			json_array_append_new(arr, render_status_json(rd->entries[i]));
	return arr;
}

size_t renderer_count(const struct renderer *rd)
{
	return rd ? rd->n : 0;
}

const struct render *renderer_entry(const struct renderer *rd, size_t i)
{
	return i < rd->n ? rd->entries[i] : NULL;
}
