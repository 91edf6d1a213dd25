/*
 * renderer — the `render:` entries of the running configuration: each one
 * follows its service's members and writes them into a file (render.h).
 *
 * The control thread owns it: renderer_apply() on start and reload keeps the
 * entries whose settings did not change (their wait and the bytes they know
 * the file holds) and retires the others; renderer_tick() offers every entry
 * its service's set and lets it write what is due. A service with no view
 * yet (discovery has not answered) offers nothing, so a start never renders
 * an empty or partial set.
 * Thread: the control thread.
 */
#ifndef ZKLB_RENDERER_H
#define ZKLB_RENDERER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct render_conf;
struct service;
struct renderer;

struct renderer *renderer_new(struct event_base *base);
/* Free every entry; a command still running is left to finish on its own. */
void renderer_free(struct renderer *rd);

/* The entries are now v[0..n) (zklb check compiled their templates already). */
void renderer_apply(struct renderer *rd, const struct render_conf *v, size_t n);

/* Offer each entry its service's members (services[0..n)), then write what is due. */
void renderer_tick(struct renderer *rd, struct service *const *services, size_t n, uint64_t now_ms);

/* The entries for /services, in configuration order. */
json_t *renderer_status_json(const struct renderer *rd);

/* The entries, for /metrics: entry i, NULL for one that could not start. */
size_t renderer_count(const struct renderer *rd);
const struct render *renderer_entry(const struct renderer *rd, size_t i);

#endif
