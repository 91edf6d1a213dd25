/*
 * zk — see zk.h. Two halves:
 *   - "foreign" functions (zk_watcher, the *_done completions, the log
 *     bridge) run on libzookeeper's threads and only build an event and post
 *     it (queue_post);
 *   - everything else runs on the control thread: zk_drain() pops the events
 *     and applies them, one transition function (zk_set_state) moves the
 *     session lifecycle.
 */
#include "zk.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define ZK_BACKOFF_BASE_MS 200
#define ZK_BACKOFF_CAP_MS 30000

enum zk_op {
	ZK_OP_GET = 0,
	ZK_OP_CHILDREN,
	ZK_OP_EXISTS,
	ZK_OP_CREATE,
	ZK_OP_DELETE,
};

/* One outstanding request. Touched only by the control thread. */
struct zk_req {
	enum zk_op op;			/* what was asked */
	char *path;			/* owned */
	zk_done_fn *done;		/* user completion */
	void *arg;			/* user argument; also the cancellation key */
	bool cancelled;			/* zk_cancel() dropped it; free on completion */
	char *data;			/* create: owned copy of the node's bytes, or NULL */
	size_t data_len;		/* create: bytes in data */
	int flags;			/* create: ZOO_EPHEMERAL... */
	int version;			/* delete: expected version, -1 = any */
	bool make_parents;		/* create: on ZNONODE, create the ancestors and retry */
	bool parents_tried;		/* create: the retry with ancestors was sent */
	struct zk_req *prev;		/* zk->reqs list */
	struct zk_req *next;		/* zk->reqs list */
};

enum zk_event_kind {
	ZK_EV_SESSION = 0,		/* session state change */
	ZK_EV_WATCH,			/* a watch fired */
	ZK_EV_REPLY,			/* a request completed */
};

/* Built on a libzookeeper thread (or on ours for synthetic replies). */
struct zk_event {
	enum zk_event_kind kind;	/* what this event carries */
	uint64_t gen;			/* SESSION/WATCH: handle generation it came from */
	int state;			/* SESSION: ZOO_*_STATE */
	int type;			/* WATCH: ZOO_*_EVENT */
	char *path;			/* WATCH: owned; REPLY create: the path made, owned */
	struct zk_req *req;		/* REPLY: ref, the request (never dereferenced off-thread) */
	int rc;				/* REPLY */
	char *data;			/* REPLY get: owned copy */
	size_t data_len;		/* REPLY get: bytes in data */
	char **children;		/* REPLY children: owned */
	size_t n_children;		/* REPLY children: entries */
	struct Stat stat;		/* REPLY get/exists */
	bool has_stat;			/* stat is valid */
	struct zk_event *next;		/* queue link */
};

/* The context libzookeeper hands back to zk_watcher; one per handle. */
struct zk_handle {
	struct zk *zk;			/* ref */
	uint64_t gen;			/* which handle this was */
};

struct zk_listen_entry {
	const struct zk_listener *l;	/* ref: caller's */
	void *arg;			/* caller's */
	bool removed;			/* unlistened while dispatching; compacted afterwards */
};

struct zk {
	struct event_base *base;	/* ref */
	char *hosts;			/* owned; connect string incl. chroot */
	char *chroot;			/* owned; "" when none */
	char *auth_scheme;		/* owned; NULL = no auth */
	char *auth_cert;		/* owned */
	uint32_t session_timeout_ms;	/* asked of the server */

	enum zk_state state;		/* session lifecycle; changed only by zk_set_state */
	uint64_t state_since_ms;	/* monotonic */
	zhandle_t *zh;			/* owned; NULL while EXPIRED waits for its retry */
	struct zk_handle *hctx;		/* owned; context of zh */
	uint64_t gen;			/* generation of zh; events from older handles are dropped */
	bool had_session;		/* zh has established its session once */
	uint32_t attempt;		/* consecutive failed sessions, drives backoff */
	uint64_t session_up_ms;		/* monotonic ms the current session was established */
	struct event *retry_ev;		/* owned; EXPIRED -> new handle */
	struct rng rng;			/* backoff jitter */

	int efd;			/* owned; eventfd the foreign threads write */
	struct event *efd_ev;		/* owned */
	pthread_mutex_t qlock;		/* protects queue */
	struct zk_event *queue;		/* LIFO while queued; reversed when drained */

	struct zk_req *reqs;		/* outstanding requests */
	struct zk_listen_entry *listeners;	/* owned array */
	size_t n_listeners;		/* used entries */
	size_t cap_listeners;		/* allocated entries */
	unsigned dispatching;		/* > 0 while calling listeners */

	struct zk_stats stats;		/* counters; state fields filled on read */
};

/* ---------- names and pure helpers ---------- */

const char *zk_state_name(enum zk_state s)
{
	switch (s) {
	case ZK_CONNECTING: return "connecting";
	case ZK_CONNECTED: return "connected";
	case ZK_DISCONNECTED: return "disconnected";
	case ZK_EXPIRED: return "expired";
	case ZK_CLOSED: return "closed";
	}
	return "?";
}

const char *zk_session_event_name(enum zk_session_event ev)
{
	switch (ev) {
	case ZK_SESSION_NEW: return "new";
	case ZK_SESSION_LOST: return "lost";
	case ZK_SESSION_RESUMED: return "resumed";
	case ZK_SESSION_EXPIRED: return "expired";
	}
	return "?";
}

const char *zk_rc_name(int rc)
{
	switch (rc) {
	case ZOK: return "ZOK";
	case ZNONODE: return "ZNONODE";
	case ZNOAUTH: return "ZNOAUTH";
	case ZCONNECTIONLOSS: return "ZCONNECTIONLOSS";
	case ZOPERATIONTIMEOUT: return "ZOPERATIONTIMEOUT";
	case ZSESSIONEXPIRED: return "ZSESSIONEXPIRED";
	case ZINVALIDSTATE: return "ZINVALIDSTATE";
	case ZCLOSING: return "ZCLOSING";
	case ZAUTHFAILED: return "ZAUTHFAILED";
	case ZBADARGUMENTS: return "ZBADARGUMENTS";
	case ZMARSHALLINGERROR: return "ZMARSHALLINGERROR";
	}
	return zerror(rc);
}

bool zk_rc_is_connection(int rc)
{
	return rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT || rc == ZSESSIONEXPIRED ||
	       rc == ZSESSIONMOVED || rc == ZCLOSING || rc == ZINVALIDSTATE;
}

bool zk_transition_allowed(enum zk_state from, enum zk_state to)
{
	switch (from) {
	case ZK_CONNECTING:
		return to == ZK_CONNECTED || to == ZK_EXPIRED || to == ZK_CLOSED;
	case ZK_CONNECTED:
		return to == ZK_DISCONNECTED || to == ZK_EXPIRED || to == ZK_CLOSED;
	case ZK_DISCONNECTED:
		return to == ZK_CONNECTED || to == ZK_EXPIRED || to == ZK_CLOSED;
	case ZK_EXPIRED:
		return to == ZK_CONNECTING || to == ZK_CLOSED;
	case ZK_CLOSED:
		return false;
	}
	return false;
}

uint64_t zk_backoff_ms(uint32_t attempt, uint64_t base_ms, uint64_t cap_ms, uint64_t random)
{
	uint64_t d;

	if (attempt == 0)
		return 0;
	d = base_ms;
	for (uint32_t i = 1; i < attempt && d < cap_ms; i++)
		d *= 2;
	if (d > cap_ms)
		d = cap_ms;
	/* Up to 25% less, so a fleet that lost ZooKeeper together does not return together. */
	if (d >= 4)
		d -= random % (d / 4 + 1);
	return d;
}

const char *zk_chroot_of(const char *hosts)
{
	const char *s = strchr(hosts, '/');
	return s ? s : "";
}

/* ---------- foreign threads: post only ---------- */

static void queue_post(struct zk *zk, struct zk_event *ev)
{
	uint64_t one = 1;
	ssize_t w;

	pthread_mutex_lock(&zk->qlock);
	ev->next = zk->queue;
	zk->queue = ev;
	pthread_mutex_unlock(&zk->qlock);
	/* EAGAIN means the counter is already non-zero: the drain is due anyway. */
	do {
		w = write(zk->efd, &one, sizeof(one));
	} while (w < 0 && errno == EINTR);
}

static void zk_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
	struct zk_handle *h = ctx;
	struct zk_event *ev = xcalloc(1, sizeof(*ev));

	(void)zh;
	ev->gen = h->gen;
	if (type == ZOO_SESSION_EVENT) {
		ev->kind = ZK_EV_SESSION;
		ev->state = state;
	} else {
		ev->kind = ZK_EV_WATCH;
		ev->type = type;
		ev->path = xstrdup(path ? path : "");
	}
	queue_post(h->zk, ev);
}

/*
 * The completion's `data` is a struct zk_req whose zk pointer we need; the
 * request is only read here for that immutable field.
 */
struct zk_req_wire {
	struct zk *zk;			/* ref */
	struct zk_req *req;		/* ref */
};

static struct zk_event *reply_event(const void *data, int rc, struct zk **zk_out)
{
	const struct zk_req_wire *w = data;
	struct zk_event *ev = xcalloc(1, sizeof(*ev));

	ev->kind = ZK_EV_REPLY;
	ev->req = w->req;
	ev->rc = rc;
	*zk_out = w->zk;
	free((void *)w);
	return ev;
}

static void data_done(int rc, const char *value, int value_len, const struct Stat *stat,
		      const void *data)
{
	struct zk *zk;
	struct zk_event *ev = reply_event(data, rc, &zk);

	if (rc == ZOK) {
		if (value && value_len > 0) {
			ev->data = xmalloc((size_t)value_len);
			memcpy(ev->data, value, (size_t)value_len);
			ev->data_len = (size_t)value_len;
		}
		if (stat) {
			ev->stat = *stat;
			ev->has_stat = true;
		}
	}
	queue_post(zk, ev);
}

static void strings_done(int rc, const struct String_vector *sv, const void *data)
{
	struct zk *zk;
	struct zk_event *ev = reply_event(data, rc, &zk);

	if (rc == ZOK && sv && sv->count > 0) {
		ev->children = xcalloc((size_t)sv->count, sizeof(char *));
		for (int32_t i = 0; i < sv->count; i++)
			ev->children[i] = xstrdup(sv->data[i]);
		ev->n_children = (size_t)sv->count;
	}
	queue_post(zk, ev);
}

static void create_done(int rc, const char *value, const struct Stat *stat, const void *data)
{
	struct zk *zk;
	struct zk_event *ev = reply_event(data, rc, &zk);

	if (rc == ZOK) {
		ev->path = xstrdup(value ? value : "");
		if (stat) {
			ev->stat = *stat;
			ev->has_stat = true;
		}
	}
	queue_post(zk, ev);
}

static void void_done(int rc, const void *data)
{
	struct zk *zk;
	struct zk_event *ev = reply_event(data, rc, &zk);

	queue_post(zk, ev);
}

/* Ancestors made for a create: their outcome shows in the create's own result. */
static void parent_done(int rc, const char *value, const struct Stat *stat, const void *data)
{
	(void)rc;
	(void)value;
	(void)stat;
	(void)data;
}

static void stat_done(int rc, const struct Stat *stat, const void *data)
{
	struct zk *zk;
	struct zk_event *ev = reply_event(data, rc, &zk);

	if (rc == ZOK && stat) {
		ev->stat = *stat;
		ev->has_stat = true;
	}
	queue_post(zk, ev);
}

/*
 * libzookeeper's logging. Its callback takes no context, so the rate limit
 * below is necessarily process-wide; it is not a setting. Lines look like
 * "2024-01-01 10:00:00,000:123(0x7f..):ZOO_ERROR@handle_socket_error_msg@...: msg".
 */
#define ZLOG_WINDOW_MS 60000		/* an outage logs a few lines a minute, not a flood */
#define ZLOG_LINES 10
static pthread_mutex_t zlog_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t zlog_window_ms;		/* start of the current window (ZLOG_WINDOW_MS) */
static unsigned zlog_in_window;		/* lines logged in it */
static unsigned zlog_suppressed;	/* lines dropped in it */

static void zk_log_line(const char *msg)
{
	const char *p = strstr(msg, "ZOO_");
	uint64_t now = now_ms();
	unsigned dropped = 0;
	bool emit;

	pthread_mutex_lock(&zlog_lock);
	if (now - zlog_window_ms >= ZLOG_WINDOW_MS) {
		dropped = zlog_suppressed;
		zlog_window_ms = now;
		zlog_in_window = 0;
		zlog_suppressed = 0;
	}
	emit = zlog_in_window < ZLOG_LINES;
	if (emit)
		zlog_in_window++;
	else
		zlog_suppressed++;
	pthread_mutex_unlock(&zlog_lock);
	if (dropped)
		log_warn("zookeeper client: %u messages suppressed", dropped);
	if (emit)
		log_warn("zookeeper client: %s", p ? p : msg);
}

static ssize_t zk_log_write(void *cookie, const char *buf, size_t len)
{
	char line[1024];
	size_t n = len < sizeof(line) - 1 ? len : sizeof(line) - 1;

	(void)cookie;
	memcpy(line, buf, n);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	line[n] = '\0';
	if (n > 0)
		zk_log_line(line);
	return (ssize_t)len;
}

/* Messages logged without a handle go to the library-wide stream. */
static void zk_log_init(void)
{
	cookie_io_functions_t io = { .write = zk_log_write };
	FILE *stream = fopencookie(NULL, "w", io);	/* lives as long as the process */

	if (stream) {
		setvbuf(stream, NULL, _IOLBF, 0);
		zoo_set_log_stream(stream);
	}
	zoo_set_debug_level(ZOO_LOG_LEVEL_WARN);
}

static void zk_log_setup(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, zk_log_init);
}

/* ---------- control thread ---------- */

static void zk_connect(struct zk *zk);

static void notify_session(struct zk *zk, enum zk_session_event ev)
{
	zk->dispatching++;
	for (size_t i = 0; i < zk->n_listeners; i++) {
		struct zk_listen_entry *e = &zk->listeners[i];
		if (!e->removed && e->l->on_session)
			e->l->on_session(e->arg, ev);
	}
	zk->dispatching--;
}

static void notify_watch(struct zk *zk, enum zk_watch_event ev, const char *path)
{
	zk->dispatching++;
	for (size_t i = 0; i < zk->n_listeners; i++) {
		struct zk_listen_entry *e = &zk->listeners[i];
		if (!e->removed && e->l->on_watch)
			e->l->on_watch(e->arg, ev, path);
	}
	zk->dispatching--;
}

static void compact_listeners(struct zk *zk)
{
	size_t j = 0;

	if (zk->dispatching)
		return;
	for (size_t i = 0; i < zk->n_listeners; i++) {
		if (!zk->listeners[i].removed)
			zk->listeners[j++] = zk->listeners[i];
	}
	zk->n_listeners = j;
}

/* The one transition function of the session lifecycle. */
static bool zk_set_state(struct zk *zk, enum zk_state to, const char *why)
{
	enum zk_state from = zk->state;

	if (!zk_transition_allowed(from, to)) {
		log_error("zookeeper: refused session transition %s -> %s (%s)",
			  zk_state_name(from), zk_state_name(to), why);
		return false;
	}
	zk->state = to;
	zk->state_since_ms = now_ms();
	switch (to) {
	case ZK_CONNECTED:
		if (from == ZK_CONNECTING)
			zk->stats.sessions_total++;
		log_info("zookeeper: %s -> connected (%s, session 0x%llx, timeout %ums)",
			 zk_state_name(from), why, (unsigned long long)zk->stats.session_id,
			 zk->stats.negotiated_timeout_ms);
		break;
	case ZK_DISCONNECTED:
		zk->stats.disconnects_total++;
		log_warn("zookeeper: connected -> disconnected (%s); serving last-known", why);
		break;
	case ZK_EXPIRED:
		zk->stats.expirations_total++;
		log_warn("zookeeper: %s -> expired (%s)", zk_state_name(from), why);
		break;
	case ZK_CONNECTING:
		log_info("zookeeper: %s -> connecting to %s (%s)", zk_state_name(from), zk->hosts,
			 why);
		break;
	case ZK_CLOSED:
		log_debug("zookeeper: %s -> closed (%s)", zk_state_name(from), why);
		break;
	}
	return true;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct zk *zk = arg;

	(void)fd;
	(void)what;
	zk_connect(zk);
}

/* Close the current handle; completions it fails arrive as ZCLOSING replies. */
static void close_handle(struct zk *zk)
{
	if (zk->zh) {
		zookeeper_close(zk->zh);
		zk->zh = NULL;
	}
	free(zk->hctx);
	zk->hctx = NULL;
	zk->had_session = false;
}

/* Go EXPIRED (closing the handle) and schedule the next handle. */
static void lose_session(struct zk *zk, const char *why)
{
	struct timeval tv;
	uint64_t delay;

	if (zk->state == ZK_EXPIRED || zk->state == ZK_CLOSED)
		return;
	/*
	 * Only a session that lived a while forgives past failures: an auth
	 * failure comes right after the handshake and must keep backing off.
	 */
	if (zk->had_session && now_ms() - zk->session_up_ms >= zk->session_timeout_ms)
		zk->attempt = 0;
	close_handle(zk);
	zk_set_state(zk, ZK_EXPIRED, why);
	notify_session(zk, ZK_SESSION_EXPIRED);
	compact_listeners(zk);
	delay = zk_backoff_ms(zk->attempt, ZK_BACKOFF_BASE_MS, ZK_BACKOFF_CAP_MS,
			      rng_next(&zk->rng));
	zk->attempt++;
	tv.tv_sec = (time_t)(delay / 1000);
	tv.tv_usec = (suseconds_t)((delay % 1000) * 1000);
	if (delay)
		log_info("zookeeper: new session in %llums", (unsigned long long)delay);
	evtimer_add(zk->retry_ev, &tv);
}

static void zk_connect(struct zk *zk)
{
	struct zk_handle *h;
	int rc;

	if (zk->state == ZK_EXPIRED)
		zk_set_state(zk, ZK_CONNECTING, "new session");
	zk->gen++;
	h = xmalloc(sizeof(*h));
	h->zk = zk;
	h->gen = zk->gen;
	zk->zh = zookeeper_init2(zk->hosts, zk_watcher, (int)zk->session_timeout_ms, NULL, h, 0,
				 zk_log_line);
	if (!zk->zh) {
		int err = errno;
		free(h);
		zk->stats.handle_failures_total++;
		log_error("zookeeper: cannot start a session with '%s': %s", zk->hosts,
			  strerror(err ? err : EINVAL));
		lose_session(zk, "handle creation failed");
		return;
	}
	zk->hctx = h;
	zk->had_session = false;
	if (zk->auth_scheme) {
		rc = zoo_add_auth(zk->zh, zk->auth_scheme, zk->auth_cert,
				  (int)strlen(zk->auth_cert), NULL, NULL);
		if (rc != ZOK)
			log_error("zookeeper: cannot add %s credentials: %s", zk->auth_scheme,
				  zk_rc_name(rc));
	}
}

static void chroot_checked(void *arg, const struct zk_result *r)
{
	struct zk *zk = arg;

	if (r->rc == ZNONODE)
		log_warn("zookeeper: chroot %s does not exist; every path under it reads as "
			 "missing until it is created", zk->chroot);
	else if (r->rc == ZNOAUTH)
		log_warn("zookeeper: no permission to read chroot %s", zk->chroot);
}

static void on_session_event(struct zk *zk, int state)
{
	if (state == ZOO_CONNECTED_STATE || state == ZOO_READONLY_STATE) {
		const clientid_t *cid = zoo_client_id(zk->zh);
		bool fresh = !zk->had_session;

		if (zk->state == ZK_CONNECTED)
			return;
		if (fresh)
			zk->session_up_ms = now_ms();
		zk->had_session = true;
		zk->stats.session_id = cid ? cid->client_id : 0;
		zk->stats.negotiated_timeout_ms = (uint32_t)zoo_recv_timeout(zk->zh);
		if (!zk_set_state(zk, ZK_CONNECTED, fresh ? "session established" : "same session"))
			return;
		if (fresh && zk->chroot[0])
			zk_exists(zk, "/", false, chroot_checked, zk);
		notify_session(zk, fresh ? ZK_SESSION_NEW : ZK_SESSION_RESUMED);
	} else if (state == ZOO_EXPIRED_SESSION_STATE) {
		lose_session(zk, "session expired by the server");
	} else if (state == ZOO_AUTH_FAILED_STATE) {
		zk->stats.auth_failures_total++;
		log_error("zookeeper: authentication (%s) failed; retrying with backoff",
			  zk->auth_scheme ? zk->auth_scheme : "none");
		lose_session(zk, "authentication failed");
	} else if (state == ZOO_CONNECTING_STATE || state == ZOO_ASSOCIATING_STATE ||
		   state == ZOO_NOTCONNECTED_STATE) {
		if (zk->state != ZK_CONNECTED)
			return;
		zk_set_state(zk, ZK_DISCONNECTED, "connection lost");
		notify_session(zk, ZK_SESSION_LOST);
	}
	compact_listeners(zk);
}

static enum zk_watch_event watch_kind(int type, bool *ok)
{
	*ok = true;
	if (type == ZOO_CREATED_EVENT)
		return ZK_WATCH_CREATED;
	if (type == ZOO_DELETED_EVENT)
		return ZK_WATCH_DELETED;
	if (type == ZOO_CHANGED_EVENT)
		return ZK_WATCH_CHANGED;
	if (type == ZOO_CHILD_EVENT)
		return ZK_WATCH_CHILD;
	*ok = false;
	return ZK_WATCH_CHANGED;
}

static void req_unlink(struct zk *zk, struct zk_req *req)
{
	if (req->prev)
		req->prev->next = req->next;
	else
		zk->reqs = req->next;
	if (req->next)
		req->next->prev = req->prev;
}

static void req_free(struct zk_req *req)
{
	free(req->path);
	free(req->data);
	free(req);
}

static void zk_event_free(struct zk_event *ev)
{
	free(ev->path);
	free(ev->data);
	for (size_t i = 0; i < ev->n_children; i++)
		free(ev->children[i]);
	free(ev->children);
	free(ev);
}

static int req_send(struct zk *zk, struct zk_req *req, bool watch);
static void complete_later(struct zk *zk, struct zk_req *req, int rc);

/*
 * A create whose parent is missing: send a create of every ancestor (as a
 * container) followed by the create itself again. The session runs them in
 * order, so the retry sees the ancestors. true when the retry is on its way.
 */
static bool retry_with_parents(struct zk *zk, struct zk_req *req)
{
	const char *p = req->path;
	int rc;

	if (req->op != ZK_OP_CREATE || !req->make_parents || req->parents_tried ||
	    req->cancelled || !zk->zh || zk->state == ZK_CLOSED)
		return false;
	req->parents_tried = true;
	for (const char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
		char *anc = strndup(p, (size_t)(s - p));
		if (!anc)
			break;
		zoo_acreate2(zk->zh, anc, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, ZOO_CONTAINER,
			     parent_done, NULL);
		free(anc);
	}
	rc = req_send(zk, req, false);
	if (rc != ZOK)
		complete_later(zk, req, rc);
	return true;
}

static void on_reply(struct zk *zk, struct zk_event *ev)
{
	struct zk_req *req = ev->req;
	struct zk_result r = {
		.rc = ev->rc,
		.path = req->path,
		.data = ev->data,
		.data_len = ev->data_len,
		.children = ev->children,
		.n_children = ev->n_children,
		.stat = ev->has_stat ? &ev->stat : NULL,
		.created = req->op == ZK_OP_CREATE && ev->rc == ZOK ? ev->path : NULL,
	};

	if (ev->rc == ZNONODE && retry_with_parents(zk, req))
		return;
	req_unlink(zk, req);
	if (!req->cancelled && zk->state != ZK_CLOSED && req->done)
		req->done(req->arg, &r);
	req_free(req);
}

static struct zk_event *queue_take(struct zk *zk)
{
	struct zk_event *list, *rev = NULL;

	pthread_mutex_lock(&zk->qlock);
	list = zk->queue;
	zk->queue = NULL;
	pthread_mutex_unlock(&zk->qlock);
	while (list) {
		struct zk_event *next = list->next;
		list->next = rev;
		rev = list;
		list = next;
	}
	return rev;
}

static void zk_drain(struct zk *zk)
{
	struct zk_event *ev;

	while ((ev = queue_take(zk)) != NULL) {
		while (ev) {
			struct zk_event *next = ev->next;
			bool ok;

			switch (ev->kind) {
			case ZK_EV_SESSION:
				if (ev->gen == zk->gen && zk->zh && zk->state != ZK_CLOSED)
					on_session_event(zk, ev->state);
				break;
			case ZK_EV_WATCH: {
				enum zk_watch_event w = watch_kind(ev->type, &ok);
				if (ok && ev->gen == zk->gen && zk->state != ZK_CLOSED) {
					notify_watch(zk, w, ev->path);
					compact_listeners(zk);
				}
				break;
			}
			case ZK_EV_REPLY:
				on_reply(zk, ev);
				break;
			}
			zk_event_free(ev);
			ev = next;
		}
	}
}

static void efd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct zk *zk = arg;
	uint64_t v;

	(void)what;
	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	zk_drain(zk);
}

struct zk *zk_new(struct event_base *base, const struct zookeeper_conf *conf)
{
	struct zk *zk;

	if (!conf->hosts) {
		log_error("zookeeper: no hosts configured");
		return NULL;
	}
	zk_log_setup();
	zk = xcalloc(1, sizeof(*zk));
	zk->base = base;
	zk->hosts = xstrdup(conf->hosts);
	zk->chroot = xstrdup(zk_chroot_of(conf->hosts));
	zk->session_timeout_ms = conf->session_timeout_ms ? (uint32_t)conf->session_timeout_ms
							  : 10000;
	if (conf->auth) {
		const char *colon = strchr(conf->auth, ':');
		if (colon && colon != conf->auth && colon[1]) {
			zk->auth_scheme = strndup(conf->auth, (size_t)(colon - conf->auth));
			zk->auth_cert = xstrdup(colon + 1);
		} else {
			log_error("zookeeper: auth must be 'scheme:credentials'; connecting without");
		}
	}
	rng_seed(&zk->rng, now_us() ^ ((uint64_t)getpid() << 32));
	pthread_mutex_init(&zk->qlock, NULL);
	zk->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (zk->efd < 0) {
		log_error("zookeeper: eventfd: %s", strerror(errno));
		pthread_mutex_destroy(&zk->qlock);
		free(zk->hosts);
		free(zk->chroot);
		free(zk->auth_scheme);
		free(zk->auth_cert);
		free(zk);
		return NULL;
	}
	zk->efd_ev = event_new(base, zk->efd, EV_READ | EV_PERSIST, efd_cb, zk);
	event_add(zk->efd_ev, NULL);
	zk->retry_ev = evtimer_new(base, retry_cb, zk);
	zk->state = ZK_CONNECTING;
	zk->state_since_ms = now_ms();
	log_info("zookeeper: connecting to %s (session timeout %ums)", zk->hosts,
		 zk->session_timeout_ms);
	zk_connect(zk);
	return zk;
}

void zk_free(struct zk *zk)
{
	struct zk_event *ev;

	if (!zk)
		return;
	zk_set_state(zk, ZK_CLOSED, "shutdown");
	close_handle(zk);
	/* Everything queued (including ZCLOSING replies) is dropped unseen. */
	while ((ev = queue_take(zk)) != NULL) {
		while (ev) {
			struct zk_event *next = ev->next;
			if (ev->kind == ZK_EV_REPLY) {
				req_unlink(zk, ev->req);
				req_free(ev->req);
			}
			zk_event_free(ev);
			ev = next;
		}
	}
	while (zk->reqs) {
		struct zk_req *r = zk->reqs;
		req_unlink(zk, r);
		req_free(r);
	}
	event_free(zk->efd_ev);
	event_free(zk->retry_ev);
	close(zk->efd);
	pthread_mutex_destroy(&zk->qlock);
	free(zk->listeners);
	free(zk->hosts);
	free(zk->chroot);
	free(zk->auth_scheme);
	free(zk->auth_cert);
	free(zk);
}

int zk_listen(struct zk *zk, const struct zk_listener *l, void *arg)
{
	for (size_t i = 0; i < zk->n_listeners; i++) {
		if (zk->listeners[i].arg == arg && !zk->listeners[i].removed)
			return -EEXIST;
	}
	if (zk->n_listeners == zk->cap_listeners) {
		zk->cap_listeners = zk->cap_listeners ? zk->cap_listeners * 2 : 4;
		zk->listeners = xrealloc(zk->listeners,
					 zk->cap_listeners * sizeof(*zk->listeners));
	}
	zk->listeners[zk->n_listeners++] = (struct zk_listen_entry){ .l = l, .arg = arg };
	return 0;
}

void zk_unlisten(struct zk *zk, void *arg)
{
	for (size_t i = 0; i < zk->n_listeners; i++) {
		if (zk->listeners[i].arg == arg)
			zk->listeners[i].removed = true;
	}
	compact_listeners(zk);
}

/* Complete a request that never reached libzookeeper, still asynchronously. */
static void complete_later(struct zk *zk, struct zk_req *req, int rc)
{
	struct zk_event *ev = xcalloc(1, sizeof(*ev));

	ev->kind = ZK_EV_REPLY;
	ev->req = req;
	ev->rc = rc;
	queue_post(zk, ev);
}

/* Hand req to libzookeeper; ZOK when its completion will run. */
static int req_send(struct zk *zk, struct zk_req *req, bool watch)
{
	struct zk_req_wire *w = xmalloc(sizeof(*w));
	int rc;

	w->zk = zk;
	w->req = req;
	switch (req->op) {
	case ZK_OP_GET:
		rc = zoo_aget(zk->zh, req->path, watch, data_done, w);
		break;
	case ZK_OP_CHILDREN:
		rc = zoo_aget_children(zk->zh, req->path, watch, strings_done, w);
		break;
	case ZK_OP_CREATE:
		rc = zoo_acreate2(zk->zh, req->path, req->data,
				  req->data ? (int)req->data_len : -1, &ZOO_OPEN_ACL_UNSAFE,
				  req->flags, create_done, w);
		break;
	case ZK_OP_DELETE:
		rc = zoo_adelete(zk->zh, req->path, req->version, void_done, w);
		break;
	case ZK_OP_EXISTS:
	default:
		rc = zoo_aexists(zk->zh, req->path, watch, stat_done, w);
		break;
	}
	/* Not queued by libzookeeper: its completion will never run. */
	if (rc != ZOK)
		free(w);
	return rc;
}

static struct zk_req *req_new(struct zk *zk, enum zk_op op, const char *path, zk_done_fn *done,
			      void *arg)
{
	struct zk_req *req = xcalloc(1, sizeof(*req));

	req->op = op;
	req->path = xstrdup(path);
	req->done = done;
	req->arg = arg;
	req->version = -1;
	req->next = zk->reqs;
	if (zk->reqs)
		zk->reqs->prev = req;
	zk->reqs = req;
	return req;
}

static void req_submit(struct zk *zk, struct zk_req *req, bool watch)
{
	int rc;

	if (!zk->zh || zk->state == ZK_CLOSED) {
		complete_later(zk, req, ZINVALIDSTATE);
		return;
	}
	rc = req_send(zk, req, watch);
	if (rc != ZOK)
		complete_later(zk, req, rc);
}

static void submit(struct zk *zk, enum zk_op op, const char *path, bool watch,
		   zk_done_fn *done, void *arg)
{
	req_submit(zk, req_new(zk, op, path, done, arg), watch);
}

void zk_get(struct zk *zk, const char *path, bool watch, zk_done_fn *done, void *arg)
{
	submit(zk, ZK_OP_GET, path, watch, done, arg);
}

void zk_children(struct zk *zk, const char *path, bool watch, zk_done_fn *done, void *arg)
{
	submit(zk, ZK_OP_CHILDREN, path, watch, done, arg);
}

void zk_exists(struct zk *zk, const char *path, bool watch, zk_done_fn *done, void *arg)
{
	submit(zk, ZK_OP_EXISTS, path, watch, done, arg);
}

void zk_create(struct zk *zk, const char *path, const void *data, size_t len, int flags,
	       bool make_parents, zk_done_fn *done, void *arg)
{
	struct zk_req *req = req_new(zk, ZK_OP_CREATE, path, done, arg);

	if (data) {
		/* libzookeeper takes an int length; larger nodes are refused by any server */
		req->data_len = len > INT32_MAX ? INT32_MAX : len;
		req->data = xmalloc(req->data_len ? req->data_len : 1);
		memcpy(req->data, data, req->data_len);
	}
	req->flags = flags;
	req->make_parents = make_parents;
	req_submit(zk, req, false);
}

void zk_delete(struct zk *zk, const char *path, int version, zk_done_fn *done, void *arg)
{
	struct zk_req *req = req_new(zk, ZK_OP_DELETE, path, done, arg);

	req->version = version;
	req_submit(zk, req, false);
}

void zk_cancel(struct zk *zk, void *arg)
{
	for (struct zk_req *r = zk->reqs; r; r = r->next) {
		if (r->arg == arg)
			r->cancelled = true;
	}
}

enum zk_state zk_state(const struct zk *zk)
{
	return zk->state;
}

void zk_stats(const struct zk *zk, struct zk_stats *out)
{
	*out = zk->stats;
	out->state = zk->state;
	out->state_since_ms = zk->state_since_ms;
}

bool zk_client_id(const struct zk *zk, int64_t *id, char passwd[16])
{
	const clientid_t *cid;

	if (!zk->zh || !zk->had_session)
		return false;
	cid = zoo_client_id(zk->zh);
	if (!cid)
		return false;
	*id = cid->client_id;
	memcpy(passwd, cid->passwd, 16);
	return true;
}
