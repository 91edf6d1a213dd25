/*
 * admin — the HTTP admin API on the control thread:
 *   GET /healthz   200 "ok" (503 "draining" while draining)
 *   GET /services  JSON: services, their discovery state and instances
 *   GET /metrics   Prometheus text format, zklb_ prefix (see metrics.h); cached
 *                  for admin.metrics_cache
 *   GET /          a human status page
 * Bound to 127.0.0.1 by default; it reads control state and atomics only.
 * With admin.token_file, every path but /healthz needs "Authorization:
 * Bearer TOKEN". At most admin.max_connections are open (then accepting
 * pauses); a request head must be complete within admin.request_timeout;
 * every response closes its connection. Its counters are c->admin_stats
 * (admin_stats.h).
 */
#ifndef ZKLB_ADMIN_H
#define ZKLB_ADMIN_H

struct control;
struct admin;

/*
 * Listen on `listen` ("host:port", or "unix:/path": a socket file of mode
 * 0660, removed again by admin_free); NULL after logging when that fails.
 * Thread: the control thread (c->base).
 */
struct admin *admin_new(struct control *c, const char *listen);
void admin_free(struct admin *a);

#endif
