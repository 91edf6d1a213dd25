/*
 * snapshot — see snapshot.h.
 */
#include "snapshot.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "discovery.h"
#include "render.h"
#include "util.h"
#include "zk.h"

struct snapshot {
	struct event_base *base;		/* owned */
	const struct config *cfg;		/* borrowed */
	const char **waiting;			/* owned array; services not in sync yet */
	size_t n_waiting;
};

static const struct service_conf *service_named(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_services; i++)
		if (strcmp(cfg->services[i].name, name) == 0)
			return &cfg->services[i];
	return NULL;
}

static void on_view(void *arg, const char *service, const struct instance *v, size_t n)
{
}

static void on_state(void *arg, const char *service, enum discovery_state st)
{
	struct snapshot *s = arg;
	if (st != DISCOVERY_CONNECTED)
		return;
	for (size_t i = 0; i < s->n_waiting; i++) {
		if (strcmp(s->waiting[i], service) == 0) {
			s->waiting[i] = s->waiting[--s->n_waiting];
			break;
		}
	}
	if (s->n_waiting == 0)
		event_base_loopbreak(s->base);
}

static const struct discovery_hooks hooks = { .on_view = on_view, .on_state = on_state };

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/* The members of sc as the daemon would offer them, from the file or discovery's view. */
static struct render_member *members_of(const struct service_conf *sc, struct discovery *disc,
					size_t *n)
{
	struct render_member *m;
	if (sc->discovery.type == DISCOVERY_STATIC) {
		*n = sc->discovery.n_backends;
		m = xcalloc(*n ? *n : 1, sizeof(*m));
		for (size_t i = 0; i < *n; i++) {
			const struct static_backend *b = &sc->discovery.backends[i];
			m[i] = (struct render_member){ .id = b->address, .host = b->host, .port = b->port,
						       .weight = b->weight };
		}
		return m;
	}
	const struct instance *v = discovery_view(disc, sc->name, n);
	m = xcalloc(*n ? *n : 1, sizeof(*m));
	for (size_t i = 0; i < *n; i++) {
		m[i] = (struct render_member){
			.id = v[i].id, .host = v[i].host, .ssl_port = v[i].ssl_port,
			/* as control.c: the port this service connects to */
			.port = sc->tls.enabled && v[i].ssl_port ? v[i].ssl_port : v[i].port,
			.weight = v[i].weight ? v[i].weight : 1,
			.payload = v[i].payload, .payload_len = v[i].payload_len,
		};
	}
	return m;
}

int snapshot_render(const struct config *cfg, long entry, uint64_t timeout_ms, FILE *out,
		    FILE *err)
{
	if (cfg->n_render == 0 || entry >= (long)cfg->n_render) {
		fprintf(err, "zklb render: %s\n", cfg->n_render ? "no such entry" : "no render: entries");
		return 1;
	}
	size_t first = entry < 0 ? 0 : (size_t)entry, last = entry < 0 ? cfg->n_render : first + 1;

	/* ZooKeeper's own view only: no cache_dir, which is the daemon's. */
	struct config view_cfg = *cfg;
	view_cfg.cache_dir = NULL;
	struct snapshot s = { .base = event_base_new(), .cfg = cfg };
	s.waiting = xcalloc(cfg->n_render, sizeof(*s.waiting));
	struct zk *zk = cfg->zookeeper.hosts ? zk_new(s.base, &cfg->zookeeper) : NULL;
	struct discovery *disc = discovery_new(s.base, zk, &view_cfg, &hooks, &s);
	int rc = 0;
	for (size_t i = first; i < last; i++) {
		const struct service_conf *sc = service_named(cfg, cfg->render[i].service);
		bool seen = false;
		for (size_t j = 0; j < s.n_waiting && !seen; j++)
			seen = strcmp(s.waiting[j], sc->name) == 0;
		if (sc->discovery.type == DISCOVERY_STATIC || seen)
			continue;
		if (sc->discovery.type == DISCOVERY_SENTINEL) {
			/* followed by the daemon only: this one-time look has no sentinel client */
			fprintf(err, "zklb render: service %s: discovery type sentinel is not read by "
				"the one-time look\n", sc->name);
			rc = 1;
			continue;
		}
		s.waiting[s.n_waiting++] = sc->name;
		if (discovery_watch(disc, sc) != 0) {
			fprintf(err, "zklb render: cannot watch %s\n", sc->discovery.path);
			rc = 1;
		}
	}
	if (rc == 0 && s.n_waiting > 0) {
		struct event *t = evtimer_new(s.base, on_timeout, s.base);
		struct timeval tv = { (time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000 };
		evtimer_add(t, &tv);
		event_base_dispatch(s.base);
		event_free(t);
		for (size_t j = 0; j < s.n_waiting; j++)
			fprintf(err, "zklb render: no answer from ZooKeeper for %s within %llu ms\n",
				s.waiting[j], (unsigned long long)timeout_ms);
		rc = s.n_waiting ? 1 : 0;
	}
	for (size_t i = first; rc == 0 && i < last; i++) {
		const struct render_conf *rc_i = &cfg->render[i];
		size_t n, len, left_out;
		char msg[256];
		struct render_member *m = members_of(service_named(cfg, rc_i->service), disc, &n);
		char *bytes = render_once(rc_i, m, n, &len, &left_out, msg, sizeof(msg));
		free(m);
		if (!bytes) {
			fprintf(err, "zklb render: %s: %s\n", rc_i->file, msg);
			rc = 1;
			break;
		}
		if (left_out)
			fprintf(err, "zklb render: %s: %zu instances left out (values a file must not get)\n",
				rc_i->file, left_out);
		if (n - left_out < rc_i->min_instances) {
			fprintf(err, "zklb render: %s: %zu instances, fewer than min_instances %u: "
				"the daemon keeps the file as it is\n", rc_i->file, n - left_out,
				rc_i->min_instances);
			rc = 1;
		} else {
			if (last - first > 1)
				fprintf(out, "==> %s <==\n", rc_i->file);
			fwrite(bytes, 1, len, out);
		}
		free(bytes);
	}
	discovery_free(disc);
	if (zk)
		zk_free(zk);
	event_base_free(s.base);
	free(s.waiting);
	return rc;
}
