/*
 * zk — see zk.h. This file is the session: the handle, its lifecycle (one
 * transition function, zk_set_state), the backoff between sessions, the
 * observers and libzookeeper's logging. Below it, one way: the request
 * table (zk_request.c), which knows nothing of the session, and the queue
 * that brings what libzookeeper's threads produce onto the control thread
 * (zk_queue.c).
 *
 * "Foreign" functions (zk_watcher, the log bridge, and the completions in
 * zk_request.c) run on libzookeeper's threads and only build an event and
 * post it (zk_queue_post); everything else runs on the control thread:
 * zk_drain() takes the events and applies them.
 */
#include "zk.h"
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "zk_queue.h"
#include "zk_request.h"
#include "zktunnel.h"

#define ZK_BACKOFF_BASE_MS 200
#define ZK_BACKOFF_CAP_MS 30000
/*
 * The first new session after an expiry: at a random moment in this window.
 * A fleet learns of its expiries together (the ensemble came back), and a
 * session is a write through the leader: ten thousand at once is a storm.
 */
#define ZK_NEW_SESSION_SPREAD_MS 1000
/*
 * libzookeeper re-resolves the connect string's names each time it polls its
 * socket, by default: on a busy session that is most of its I/O thread's
 * time (getaddrinfo reads gai.conf and asks the kernel over netlink), and
 * across a fleet a steady stream of DNS queries. Once a minute finds a moved
 * server soon enough; on connection loss it resolves again anyway.
 */
#define ZK_RESOLVE_DELAY_MS 60000
/*
 * A connection lost this soon after it was made, this many times in a row,
 * means the server refuses the session each time it sees it (an ensemble
 * that enforces authentication refuses the watches libzookeeper re-arms on
 * reconnecting, and that answer never reaches us). libzookeeper would
 * reconnect every few ms forever; a new session, after backoff, asks again
 * and is told why.
 */
#define ZK_SHORT_CONNECTION_MS 500
#define ZK_SHORT_CONNECTIONS_MAX 10

/* The context libzookeeper hands back to zk_watcher; one per handle. */
struct zk_handle {
	struct zk *zk;			/* ref */
	uint64_t gen;			/* which handle this was */
};

struct zk_observer_entry;

struct zk {
	struct event_base *base;	/* ref */
	char *hosts;			/* owned; connect string incl. chroot (the tunnel's with tls) */
	struct zktunnel *tunnel;	/* owned; TLS to the ensemble (zookeeper.tls), or NULL */
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
	bool answered;			/* the ensemble answered a request: credentials accepted once */
	uint32_t attempt;		/* consecutive failed sessions, drives backoff */
	uint64_t session_up_ms;		/* monotonic ms the current session was established */
	uint64_t connected_ms;		/* monotonic ms of the last CONNECTED */
	uint32_t short_connections;	/* consecutive connections lost within ZK_SHORT_CONNECTION_MS */
	struct event *retry_ev;		/* owned; EXPIRED -> new handle */
	struct event *lost_ev;		/* owned; DISCONNECTED for a whole session timeout */
	struct rng rng;			/* backoff jitter */

	struct zk_queue queue;		/* owned; what libzookeeper's threads post */
	struct event *queue_ev;		/* owned; the queue's eventfd readable */
	struct zk_reqs reqs;		/* owned; outstanding requests */

	struct zk_observer_entry *observers;	/* owned array */
	size_t n_observers;		/* used entries */
	size_t cap_observers;		/* allocated entries */
	unsigned dispatching;		/* > 0 while calling observers */

	struct zk_stats stats;		/* counters; state fields filled on read */
	clientid_t resume;		/* hot upgrade: a live session for the first handle; id 0: none */
	bool released;			/* hot upgrade: the session is another process's now */
	uint64_t resumed_until_ms;	/* hot upgrade: the old process may still hold a connection */
};

struct zk_observer_entry {
	const struct zk_observer *o;	/* ref: caller's */
	void *arg;			/* caller's */
	bool removed;			/* unobserved while dispatching; compacted afterwards */
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
	case ZSESSIONCLOSEDREQUIRESASLAUTH: return "ZSESSIONCLOSEDREQUIRESASLAUTH";
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
	zk_queue_post(&h->zk->queue, ev);
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
	for (size_t i = 0; i < zk->n_observers; i++) {
		struct zk_observer_entry *e = &zk->observers[i];
		if (!e->removed && e->o->on_session)
			e->o->on_session(e->arg, ev);
	}
	zk->dispatching--;
}

static void notify_watch(struct zk *zk, enum zk_watch_event ev, const char *path)
{
	zk->dispatching++;
	for (size_t i = 0; i < zk->n_observers; i++) {
		struct zk_observer_entry *e = &zk->observers[i];
		if (!e->removed && e->o->on_watch)
			e->o->on_watch(e->arg, ev, path);
	}
	zk->dispatching--;
}

static void notify_auth_failed(struct zk *zk, bool at_start, const char *why)
{
	zk->dispatching++;
	for (size_t i = 0; i < zk->n_observers; i++) {
		struct zk_observer_entry *e = &zk->observers[i];
		if (!e->removed && e->o->on_auth_failed)
			e->o->on_auth_failed(e->arg, at_start, why);
	}
	zk->dispatching--;
}

static void compact_observers(struct zk *zk)
{
	size_t j = 0;

	if (zk->dispatching)
		return;
	for (size_t i = 0; i < zk->n_observers; i++) {
		if (!zk->observers[i].removed)
			zk->observers[j++] = zk->observers[i];
	}
	zk->n_observers = j;
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
	if (to == ZK_DISCONNECTED) {
		uint64_t t = zk->stats.negotiated_timeout_ms ? zk->stats.negotiated_timeout_ms
							     : zk->session_timeout_ms;
		struct timeval tv = timeval_from_ms(t);
		evtimer_add(zk->lost_ev, &tv);
	} else {
		evtimer_del(zk->lost_ev);
	}
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

	if (zk->state == ZK_EXPIRED || zk->state == ZK_CLOSED || zk->released)
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
	compact_observers(zk);
	delay = zk->attempt ? zk_backoff_ms(zk->attempt, ZK_BACKOFF_BASE_MS, ZK_BACKOFF_CAP_MS,
					    rng_next(&zk->rng))
			    : rng_next(&zk->rng) % ZK_NEW_SESSION_SPREAD_MS;
	zk->attempt++;
	tv = timeval_from_ms(delay);
	if (delay)
		log_info("zookeeper: new session in %llums", (unsigned long long)delay);
	evtimer_add(zk->retry_ev, &tv);
}

/*
 * No server took the session back within its timeout. Either the server has
 * expired it (we would be told on reconnecting) or no server ever will: one
 * whose data is older than what we saw (a restored or rebuilt ensemble)
 * refuses the handshake forever ("client has seen zxid") while libzookeeper
 * keeps retrying. A new session costs one re-read, so give this one up, as
 * Curator does.
 */
static void lost_cb(evutil_socket_t fd, short what, void *arg)
{
	struct zk *zk = arg;

	/* Handed over (zk_release): the session is not ours to give up. */
	if (zk->state != ZK_DISCONNECTED || zk->released)
		return;
	log_warn("zookeeper: no server took session 0x%llx back within its %ums timeout; "
		 "starting a new session", (unsigned long long)zk->stats.session_id,
		 zk->stats.negotiated_timeout_ms);
	lose_session(zk, "no server contact for the session timeout");
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
	/*
	 * A resumed session's old process may still hold a connection for a
	 * moment; the server closes one of the two while both exist, which must
	 * not look like an ensemble that refuses us (ZK_SHORT_CONNECTIONS_MAX).
	 */
	if (zk->resume.client_id)
		zk->resumed_until_ms = now_ms() + zk->session_timeout_ms;
	zk->zh = zookeeper_init2(zk->hosts, zk_watcher, (int)zk->session_timeout_ms,
				 zk->resume.client_id ? &zk->resume : NULL, h, 0, zk_log_line);
	/* Once: if that session is gone, the server says so and a new one follows. */
	zk->resume.client_id = 0;
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
	rc = zoo_set_servers_resolution_delay(zk->zh, ZK_RESOLVE_DELAY_MS);
	if (rc != ZOK)
		log_warn("zookeeper: cannot set the resolution delay: %s", zk_rc_name(rc));
	if (zk->auth_scheme) {
		/* A refusal comes back as ZOO_AUTH_FAILED_STATE on the watcher. */
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

/*
 * Credentials refused or missing. Loud every time (an error line, a counter)
 * and never silent: the session is remade after backoff, and observers learn
 * whether this is the first contact (a wrong configuration) or later (the
 * ensemble changed). The secret is never logged; the scheme is.
 */
static void auth_failed(struct zk *zk, const char *why)
{
	bool at_start = !zk->answered;

	if (zk->state == ZK_EXPIRED || zk->state == ZK_CLOSED)
		return;		/* the same refusal, already handled for this handle */
	zk->stats.auth_failures_total++;
	log_error("zookeeper: authentication failed (scheme %s): %s%s",
		  zk->auth_scheme ? zk->auth_scheme : "none", why,
		  at_start ? "" : "; a new session follows after backoff");
	lose_session(zk, "authentication failed");
	notify_auth_failed(zk, at_start, why);
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
		zk->connected_ms = now_ms();
		if (fresh && zk->chroot[0])
			zk_exists(zk, "/", false, chroot_checked, zk);
		notify_session(zk, fresh ? ZK_SESSION_NEW : ZK_SESSION_RESUMED);
	} else if (state == ZOO_EXPIRED_SESSION_STATE) {
		lose_session(zk, "session expired by the server");
	} else if (state == ZOO_AUTH_FAILED_STATE) {
		auth_failed(zk, "the ensemble refused the credentials of zookeeper.auth");
	} else if (state == ZOO_CONNECTING_STATE || state == ZOO_ASSOCIATING_STATE ||
		   state == ZOO_NOTCONNECTED_STATE) {
		if (zk->state != ZK_CONNECTED)
			return;
		if (now_ms() - zk->connected_ms < ZK_SHORT_CONNECTION_MS &&
		    now_ms() >= zk->resumed_until_ms)
			zk->short_connections++;
		else
			zk->short_connections = 0;
		if (zk->short_connections >= ZK_SHORT_CONNECTIONS_MAX) {
			zk->short_connections = 0;
			log_error("zookeeper: the ensemble closed %u connections in a row right after "
				  "accepting them; starting a new session",
				  (unsigned)ZK_SHORT_CONNECTIONS_MAX);
			lose_session(zk, "every connection refused");
			compact_observers(zk);
			return;
		}
		zk_set_state(zk, ZK_DISCONNECTED, "connection lost");
		notify_session(zk, ZK_SESSION_LOST);
	}
	compact_observers(zk);
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

static void zk_drain(struct zk *zk)
{
	struct zk_event *ev;

	while ((ev = zk_queue_take(&zk->queue)) != NULL) {
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
					compact_observers(zk);
				}
				break;
			}
			case ZK_EV_REPLY:
				if (ev->rc == ZSESSIONCLOSEDREQUIRESASLAUTH)
					auth_failed(zk, zk->auth_scheme
						? "the ensemble enforces authentication and closed "
						  "the session: it does not accept zookeeper.auth's scheme"
						: "the ensemble enforces authentication and "
						  "zookeeper.auth is not set");
				else if (ev->rc != ZAUTHFAILED && !zk_rc_is_connection(ev->rc))
					zk->answered = true;
				if (zk->state != ZK_CLOSED)
					zk_req_reply(&zk->reqs, zk->zh, ev);
				else
					zk_req_discard(&zk->reqs, ev->req);
				break;
			}
			zk_event_free(ev);
			ev = next;
		}
	}
}

static void queue_cb(evutil_socket_t fd, short what, void *arg)
{
	struct zk *zk = arg;

	(void)fd;
	(void)what;
	zk_queue_ack(&zk->queue);
	zk_drain(zk);
}

struct zk *zk_new(struct event_base *base, const struct zookeeper_conf *conf)
{
	return zk_new_resuming(base, conf, 0, NULL);
}

struct zk *zk_new_resuming(struct event_base *base, const struct zookeeper_conf *conf,
			   int64_t session_id, const char passwd[16])
{
	struct zk *zk;
	int rc;

	if (!conf->hosts) {
		log_error("zookeeper: no hosts configured");
		return NULL;
	}
	zk_log_setup();
	zk = xcalloc(1, sizeof(*zk));
	rc = zk_queue_init(&zk->queue);
	if (rc < 0) {
		log_error("zookeeper: eventfd: %s", strerror(-rc));
		free(zk);
		return NULL;
	}
	zk_req_init(&zk->reqs, &zk->queue);
	zk->base = base;
	if (conf->tls.enabled) {
		char err[512];
		zk->tunnel = zktunnel_start(conf->hosts, conf->tls.ctx, &zk->hosts, err, sizeof(err));
		if (!zk->tunnel) {
			log_error("zookeeper: tls: %s", err);
			zk_queue_fini(&zk->queue);
			free(zk);
			return NULL;
		}
		log_info("zookeeper: TLS to %s through the loopback endpoints %s", conf->hosts,
			 zk->hosts);
	} else {
		zk->hosts = xstrdup(conf->hosts);
	}
	zk->chroot = xstrdup(zk_chroot_of(conf->hosts));
	/* The schema owns the default (zookeeper.session_timeout) and refuses 0. */
	zk->session_timeout_ms = (uint32_t)conf->session_timeout_ms;
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
	zk->queue_ev = event_new(base, zk->queue.efd, EV_READ | EV_PERSIST, queue_cb, zk);
	event_add(zk->queue_ev, NULL);
	zk->retry_ev = evtimer_new(base, retry_cb, zk);
	zk->lost_ev = evtimer_new(base, lost_cb, zk);
	zk->state = ZK_CONNECTING;
	zk->state_since_ms = now_ms();
	log_info("zookeeper: connecting to %s (session timeout %ums)", zk->hosts,
		 zk->session_timeout_ms);
	if (session_id) {
		zk->resume.client_id = session_id;
		memcpy(zk->resume.passwd, passwd, sizeof(zk->resume.passwd));
		log_info("zookeeper: resuming session 0x%" PRIx64, (uint64_t)session_id);
	}
	zk_connect(zk);
	return zk;
}

/* Nowhere to connect to: a port nobody listens on, on loopback. */
#define ZK_NOWHERE "127.0.0.1:1"
#define RELEASE_WAIT_MS 1000	/* longest wait for the client to drop its connection */

/* Shut down this process's socket connected to `peer` (the client's, found by address). */
static bool shutdown_peer(const struct sockaddr_storage *peer, socklen_t len)
{
	DIR *d = opendir("/proc/self/fd");
	bool found = false;
	if (!d)
		return false;
	for (struct dirent *de; (de = readdir(d)) != NULL;) {
		int fd = atoi(de->d_name);
		struct sockaddr_storage a;
		socklen_t al = sizeof(a);
		if (fd <= 2 || fd == dirfd(d))
			continue;
		if (getpeername(fd, (struct sockaddr *)&a, &al) == 0 && al == len &&
		    memcmp(&a, peer, len) == 0) {
			shutdown(fd, SHUT_RDWR);
			found = true;
		}
	}
	closedir(d);
	return found;
}

void zk_release(struct zk *zk)
{
	if (!zk->zh || zk->released || !zk->had_session)
		return;
	zk->resume = *zoo_client_id(zk->zh);
	zk->released = true;
	/*
	 * The client must let go of its connection without ending the session:
	 * point it nowhere (its reconnects go to a port nobody listens on), cut
	 * its connection, and close the handle once it is no longer connected,
	 * for zookeeper_close() sends a close request only on a connected one.
	 */
	struct sockaddr_storage peer;
	socklen_t pl = sizeof(peer);
	bool connected = zookeeper_get_connected_host(zk->zh, (struct sockaddr *)&peer, &pl) != NULL;
	int rc = zoo_set_servers(zk->zh, ZK_NOWHERE);
	if (connected && !shutdown_peer(&peer, pl))
		log_warn("zookeeper: cannot find the session's connection to cut");
	uint64_t until = now_ms() + RELEASE_WAIT_MS;
	while (zoo_state(zk->zh) == ZOO_CONNECTED_STATE && now_ms() < until)
		usleep(2000);
	if (zoo_state(zk->zh) == ZOO_CONNECTED_STATE) {
		/* Closing now would end the session: leave the handle to the process exit. */
		log_error("zookeeper: the client kept its connection; the session is left as is");
		zk->zh = NULL;
		zk->had_session = false;
	} else {
		close_handle(zk);
	}
	zk_set_state(zk, ZK_DISCONNECTED, "session handed over");
	log_info("zookeeper: session 0x%" PRIx64 " handed over%s%s", (uint64_t)zk->resume.client_id,
		 rc == ZOK ? "" : "; pointing the client away failed: ",
		 rc == ZOK ? "" : zk_rc_name(rc));
}

void zk_reclaim(struct zk *zk)
{
	if (!zk->released)
		return;
	zk->released = false;
	log_info("zookeeper: taking session 0x%" PRIx64 " back", (uint64_t)zk->resume.client_id);
	zk_connect(zk);
}

void zk_free(struct zk *zk)
{
	struct zk_event *ev;

	if (!zk)
		return;
	zk_set_state(zk, ZK_CLOSED, "shutdown");
	close_handle(zk);
	zktunnel_stop(zk->tunnel);	/* after the handle: its close goes through the tunnel */
	/* Everything queued (including ZCLOSING replies) is dropped unseen. */
	while ((ev = zk_queue_take(&zk->queue)) != NULL) {
		while (ev) {
			struct zk_event *next = ev->next;
			if (ev->kind == ZK_EV_REPLY)
				zk_req_discard(&zk->reqs, ev->req);
			zk_event_free(ev);
			ev = next;
		}
	}
	zk_req_discard_all(&zk->reqs);
	event_free(zk->queue_ev);
	event_free(zk->retry_ev);
	event_free(zk->lost_ev);
	zk_queue_fini(&zk->queue);
	free(zk->observers);
	free(zk->hosts);
	free(zk->chroot);
	free(zk->auth_scheme);
	if (zk->auth_cert)
		explicit_bzero(zk->auth_cert, strlen(zk->auth_cert));
	free(zk->auth_cert);
	free(zk);
}

int zk_observe(struct zk *zk, const struct zk_observer *o, void *arg)
{
	for (size_t i = 0; i < zk->n_observers; i++) {
		if (zk->observers[i].arg == arg && !zk->observers[i].removed)
			return -EEXIST;
	}
	if (zk->n_observers == zk->cap_observers) {
		zk->cap_observers = zk->cap_observers ? zk->cap_observers * 2 : 4;
		zk->observers = xrealloc(zk->observers,
					 zk->cap_observers * sizeof(*zk->observers));
	}
	zk->observers[zk->n_observers++] = (struct zk_observer_entry){ .o = o, .arg = arg };
	return 0;
}

void zk_unobserve(struct zk *zk, void *arg)
{
	for (size_t i = 0; i < zk->n_observers; i++) {
		if (zk->observers[i].arg == arg)
			zk->observers[i].removed = true;
	}
	compact_observers(zk);
}

enum zk_state zk_state(const struct zk *zk)
{
	return zk->state;
}

void zk_stats(const struct zk *zk, struct zk_stats *out)
{
	*out = zk->stats;
	if (zk->tunnel) {
		struct zktunnel_stats ts;
		zktunnel_stats(zk->tunnel, &ts);
		out->tls_handshakes_total = ts.handshakes_total;
		out->tls_handshake_failures_total = ts.handshake_failures_total;
		out->tls_connect_failures_total = ts.connect_failures_total;
	}
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

/* ---------- requests: the table, on the live handle ---------- */

/* The handle requests go out on; NULL (they fail ZINVALIDSTATE) when there is none. */
static zhandle_t *zk_live_handle(const struct zk *zk)
{
	return zk->state == ZK_CLOSED ? NULL : zk->zh;
}

void zk_get(struct zk *zk, const char *path, bool watch, zk_done_fn *done, void *arg)
{
	zk_req_get(&zk->reqs, zk_live_handle(zk), path, watch, done, arg);
}

void zk_children(struct zk *zk, const char *path, bool watch, zk_done_fn *done, void *arg)
{
	zk_req_children(&zk->reqs, zk_live_handle(zk), path, watch, done, arg);
}

void zk_exists(struct zk *zk, const char *path, bool watch, zk_done_fn *done, void *arg)
{
	zk_req_exists(&zk->reqs, zk_live_handle(zk), path, watch, done, arg);
}

void zk_create(struct zk *zk, const char *path, const void *data, size_t len, int flags,
	       bool make_parents, zk_done_fn *done, void *arg)
{
	zk_req_create(&zk->reqs, zk_live_handle(zk), path, data, len, flags, ZK_ACL_OPEN,
		      make_parents, done, arg);
}

void zk_create_acl(struct zk *zk, const char *path, const void *data, size_t len, int flags,
		   enum zk_acl acl, bool make_parents, zk_done_fn *done, void *arg)
{
	zk_req_create(&zk->reqs, zk_live_handle(zk), path, data, len, flags, acl, make_parents,
		      done, arg);
}

void zk_set(struct zk *zk, const char *path, const void *data, size_t len, int version,
	    zk_done_fn *done, void *arg)
{
	zk_req_set(&zk->reqs, zk_live_handle(zk), path, data, len, version, done, arg);
}

bool zk_has_auth(const struct zk *zk)
{
	return zk->auth_scheme != NULL;
}

void zk_delete(struct zk *zk, const char *path, int version, zk_done_fn *done, void *arg)
{
	zk_req_delete(&zk->reqs, zk_live_handle(zk), path, version, done, arg);
}

void zk_cancel(struct zk *zk, void *arg)
{
	zk_req_cancel(&zk->reqs, arg);
}
