/*
 * admin — the HTTP admin API on the control thread:
 *   GET /healthz   200 "ok" (503 "draining" while draining)
 *   GET /services  JSON: services, their discovery state and instances
 *   GET /metrics   Prometheus text format, zklb_ prefix (see metrics.h); cached
 *                  for admin.metrics_cache
 *   GET /          a human status page (and GET /status, its JSON)
 *   GET /config    the configuration in force, secrets masked
 *   POST /services/NAME/instances/ID/{drain,undrain,weight?value=N},
 *   POST /services/NAME/reread
 *   POST /upgrade  a hot upgrade, as SIGUSR2 (202: starting; zklb upgrade polls
 *                  GET /services' pid and upgrade.failures for the outcome)
 *                  the runtime API: only on the unix admin socket or with the
 *                  bearer token; every change is logged with who made it
 * Bound to 127.0.0.1 by default; it reads control state and atomics only.
 * With admin.token_file, every path but /healthz needs "Authorization:
 * Bearer TOKEN". At most admin.max_connections are open (then accepting
 * pauses); a request head must be complete within admin.request_timeout;
 * every response closes its connection. Its counters are c->admin_stats
 * (admin_stats.h).
 */
#ifndef ZKLB_ADMIN_H
#define ZKLB_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct control;
struct admin;

/*
 * Listen on `listen` ("host:port", or "unix:/path": a socket file of mode
 * 0660, removed again by admin_free), or serve on `inherited` (>= 0: the
 * socket a hot upgrade handed over, owned from now on); NULL after logging
 * when that fails.
 * Thread: the control thread (c->base).
 */
/*
 * POST /upgrade starts a hot upgrade through this hook (control_upgrade's
 * contract: 0 started, -EBUSY, another -errno; why says why): the control
 * thread owns the upgrade, the admin API only asks for it.
 */
typedef int admin_upgrade_fn(struct control *c, const char *who, char *why, size_t len);

struct admin *admin_new(struct control *c, const char *listen, int inherited,
			admin_upgrade_fn *upgrade);
void admin_free(struct admin *a);

/* The listening socket (borrowed), to hand to a new binary; -1 when none. */
int admin_listen_fd(const struct admin *a);

/* Hot upgrade: stop serving and free a, leaving the socket file to the new process. */
void admin_hand_over(struct admin *a);

/* The longest bearer token read from admin.token_file. */
#define ADMIN_TOKEN_MAX 512

/*
 * Read admin.token_file: its first line, surrounding blanks removed, into
 * token (ADMIN_TOKEN_MAX + 1 bytes, NUL-terminated), its length in *len.
 * false with err: unreadable, empty, too long, or not printable ASCII.
 * Any thread (the admin API at start, `zklb upgrade`).
 */
bool admin_token_load(const char *path, char *token, size_t *len, char *err, size_t errlen);

#endif
