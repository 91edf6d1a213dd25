/*
 * zk — the process's one ZooKeeper session, owned by the control thread and
 * shared by discovery, announce and sync.
 *
 * libzookeeper_mt runs its own I/O and completion threads. Its callbacks
 * here never touch zk state: they copy what they were given into an event,
 * append it to a mutex-protected queue and write an eventfd that the control
 * thread's event base watches. Everything below — state changes, observer
 * calls, completions — therefore happens on the control thread, in the order
 * libzookeeper produced it (a watch event before the data that follows it).
 *
 * Session lifecycle (enum zk_state, one transition function in zk.c):
 *
 *   CONNECTING --established--> CONNECTED <--same session back-- DISCONNECTED
 *       |                          |  \--connection lost------------^   |
 *       |                          v                                    |
 *       +--auth failed/expired--> EXPIRED <-----------expired-----------+
 *                                  |
 *                                  +--after backoff: new handle--> CONNECTING
 *
 * Authentication: the credentials go with every handle. A refusal
 * (ZAUTHFAILED, or an ensemble enforcing authentication that closes the
 * session) is reported to observers (on_auth_failed), counted, logged as an
 * error every time, and the session is remade after backoff; before any
 * request was answered it is a configuration error the caller makes fatal.
 *
 * libzookeeper reconnects to the same session by itself (DISCONNECTED ->
 * CONNECTED keeps every watch). Only a session the server declares expired,
 * failed authentication or a handle that cannot be created makes a new
 * session; the first at a random moment within a second (a fleet whose
 * sessions expired together does not come back together), then with
 * exponential backoff and jitter.
 *
 * Paths are relative to the chroot of the connect string
 * ("host:2181,host2:2181/chroot"); a chroot that does not exist is reported
 * once per session with a warning (paths under it simply do not exist yet).
 */
#ifndef ZKLB_ZK_H
#define ZKLB_ZK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zookeeper/zookeeper.h>

#include "zk_result.h"

struct zookeeper_conf;

struct event_base;
struct zk;

enum zk_state {
	ZK_CONNECTING = 0,		/* a handle exists; no session established on it yet */
	ZK_CONNECTED,			/* session established and connected */
	ZK_DISCONNECTED,		/* connection lost; the session may still live; serving last-known */
	ZK_EXPIRED,			/* no usable session; a new handle is due after backoff */
	ZK_CLOSED,			/* zk_free() in progress; terminal */
};

/* What observers are told about the session. */
enum zk_session_event {
	ZK_SESSION_NEW = 0,		/* a new session is up: no watch survives, re-read everything */
	ZK_SESSION_LOST,		/* disconnected; requests fail until RESUMED or NEW */
	ZK_SESSION_RESUMED,		/* the same session is back: the server restored its watches */
	ZK_SESSION_EXPIRED,		/* the session is gone; NEW follows when another is up */
};

/* A fired watch (watches are one-shot: read again with watch=true to re-arm). */
enum zk_watch_event {
	ZK_WATCH_CREATED = 0,		/* exists watch: the node appeared */
	ZK_WATCH_DELETED,		/* data/exists/children watch: the node is gone */
	ZK_WATCH_CHANGED,		/* data/exists watch: the node's data changed */
	ZK_WATCH_CHILD,			/* children watch: a child was added or removed */
};

struct zk_observer {
	void (*on_session)(void *arg, enum zk_session_event ev);	/* may be NULL */
	void (*on_watch)(void *arg, enum zk_watch_event ev, const char *path);	/* may be NULL */
	/*
	 * The ensemble refused the session's credentials (ZAUTHFAILED), or
	 * requires authentication this session does not give
	 * (ZSESSIONCLOSEDREQUIRESASLAUTH). at_start: no request of this process
	 * had been answered yet, so the configuration is wrong rather than the
	 * ensemble changed. why: a sentence, never the secret. May be NULL.
	 */
	void (*on_auth_failed)(void *arg, bool at_start, const char *why);
};

struct zk_stats {
	enum zk_state state;		/* session lifecycle now */
	uint64_t state_since_ms;	/* monotonic ms of the last transition */
	uint64_t sessions_total;	/* sessions established */
	uint64_t disconnects_total;	/* CONNECTED -> DISCONNECTED */
	uint64_t expirations_total;	/* sessions lost for good (expired, auth failed) */
	uint64_t auth_failures_total;	/* credentials refused or required (on_auth_failed) */
	uint64_t handle_failures_total;	/* zookeeper_init failures (bad connect string...) */
	uint64_t tls_handshakes_total;	/* zookeeper.tls: handshakes completed with a member */
	uint64_t tls_handshake_failures_total;	/* zookeeper.tls: refused (verify, protocol, stall) */
	uint64_t tls_connect_failures_total;	/* zookeeper.tls: member not resolved or reached */
	int64_t session_id;		/* current or last session id; 0 = none yet */
	uint32_t negotiated_timeout_ms;	/* session timeout the server granted; 0 = none yet */
};

/*
 * Start connecting to conf->hosts (conf is copied). Returns NULL (and logs)
 * only when conf->hosts is NULL, the eventfd cannot be created, or
 * conf->tls is enabled and its tunnel (zktunnel.h) cannot start; a bad
 * connect string or an unreachable ensemble is retried with backoff. With
 * conf->tls, libzookeeper connects to the tunnel's loopback endpoints.
 * Also routes libzookeeper's own logging into log.h at warn (process-wide).
 * Thread: control thread; base must outlive the zk.
 */
struct zk *zk_new(struct event_base *base, const struct zookeeper_conf *conf);

/*
 * zk_new, resuming the live session session_id/passwd (a hot upgrade hands
 * it over) on the first connect; a session that is gone by then is
 * replaced by a new one, as after an expiry.
 */
struct zk *zk_new_resuming(struct event_base *base, const struct zookeeper_conf *conf,
			   int64_t session_id, const char passwd[16]);

/*
 * Hot upgrade: stop talking to ZooKeeper without ending the session, so
 * another process can resume it (zk_release); or resume it again here when
 * that process failed (zk_reclaim). After zk_release, zk_free leaves the
 * session (and its ephemeral nodes) alive.
 */
void zk_release(struct zk *zk);
void zk_reclaim(struct zk *zk);

/*
 * Close the session (its ephemeral nodes go away) and free everything.
 * Pending completions are dropped, observers are not called.
 */
void zk_free(struct zk *zk);

/*
 * Register an observer (o and arg must stay valid until zk_unobserve). If the
 * session is already connected, nothing is replayed: check zk_state(). 0, or
 * -EEXIST if arg is already registered. Safe to call from any zk callback.
 */
int zk_observe(struct zk *zk, const struct zk_observer *o, void *arg);
void zk_unobserve(struct zk *zk, void *arg);

/*
 * Asynchronous reads. `done(arg, result)` is always called later on the
 * control thread, never from inside these functions, exactly once — unless
 * zk_cancel(zk, arg) was called first. When there is no connected session
 * the request is still handed to libzookeeper (which queues it until it
 * connects or fails it with ZCONNECTIONLOSS); with no handle at all it
 * completes with ZINVALIDSTATE. watch=true arms a one-shot watch, reported to
 * observers' on_watch: data for get, existence for exists, children for
 * children. libzookeeper reads a node of any size the server holds; callers
 * bound what they accept.
 */
void zk_get(struct zk *zk, const char *path, bool watch, zk_done_fn *done, void *arg);
void zk_children(struct zk *zk, const char *path, bool watch, zk_done_fn *done, void *arg);
void zk_exists(struct zk *zk, const char *path, bool watch, zk_done_fn *done, void *arg);

/*
 * Asynchronous writes, with the same completion rules as the reads (`done`
 * may be NULL when the caller does not care; arg is still the cancellation
 * key). zk_create's ACLs are open (ZOO_OPEN_ACL_UNSAFE), Curator's default.
 *
 * zk_create: a node at path holding data[0..len) (copied; data NULL = no
 * data), flags ZOO_PERSISTENT, ZOO_EPHEMERAL, ZOO_PERSISTENT_SEQUENTIAL...
 * With make_parents, a create that fails with ZNONODE (parent missing)
 * creates every ancestor as a CONTAINER node — what Curator's
 * creatingParentContainersIfNeeded() does, so the server removes them once
 * they empty — and is retried once; the ancestors and the retry are
 * pipelined on the session, which ZooKeeper runs in order. Ancestors that
 * already exist are fine. The result's `created` is the path made and
 * `stat` its stat.
 *
 * zk_delete: delete path if its version is `version` (-1: any version).
 */
void zk_create(struct zk *zk, const char *path, const void *data, size_t len, int flags,
	       bool make_parents, zk_done_fn *done, void *arg);

/*
 * zk_create with the ACLs of `acl` (zk_result.h) on the node and on every
 * ancestor make_parents creates; zk_create is ZK_ACL_OPEN. ZK_ACL_CREATOR
 * needs zookeeper.auth (the server refuses it with ZINVALIDACL otherwise).
 * Nodes that exist keep their ACLs.
 */
void zk_create_acl(struct zk *zk, const char *path, const void *data, size_t len, int flags,
		   enum zk_acl acl, bool make_parents, zk_done_fn *done, void *arg);

/*
 * zk_set: replace path's data with data[0..len) (copied) if its version is
 * `version` (-1: any). The result's stat is the node's new stat.
 */
void zk_set(struct zk *zk, const char *path, const void *data, size_t len, int version,
	    zk_done_fn *done, void *arg);

/* Whether the session adds credentials (zookeeper.auth or auth_file). */
bool zk_has_auth(const struct zk *zk);
void zk_delete(struct zk *zk, const char *path, int version, zk_done_fn *done, void *arg);

/* Drop every pending completion registered with arg (call before freeing arg). */
void zk_cancel(struct zk *zk, void *arg);

enum zk_state zk_state(const struct zk *zk);
void zk_stats(const struct zk *zk, struct zk_stats *out);

/*
 * The current session's id and password (for tools and tests that need to
 * act on the session, e.g. expire it). false when no session is up.
 */
bool zk_client_id(const struct zk *zk, int64_t *id, char passwd[16]);

const char *zk_state_name(enum zk_state s);
const char *zk_session_event_name(enum zk_session_event ev);
/* zerror() with a stable short name for codes we act on ("ZNONODE"...). */
const char *zk_rc_name(int rc);

/*
 * Pure: rc says the session or its connection failed the request
 * (ZCONNECTIONLOSS, ZOPERATIONTIMEOUT, ZSESSIONEXPIRED, ZSESSIONMOVED,
 * ZCLOSING, ZINVALIDSTATE), not the server's answer about the node: retry
 * after the next ZK_SESSION_RESUMED or ZK_SESSION_NEW rather than on a timer.
 */
bool zk_rc_is_connection(int rc);

/* Pure: whether the session lifecycle allows from -> to. */
bool zk_transition_allowed(enum zk_state from, enum zk_state to);

/*
 * Pure: the delay before retry number `attempt` (0-based): 0 for the first,
 * then base * 2^(attempt-1) capped at cap, minus up to a quarter of jitter
 * taken from `random`.
 */
uint64_t zk_backoff_ms(uint32_t attempt, uint64_t base_ms, uint64_t cap_ms, uint64_t random);

/* Pure: the chroot suffix of a connect string ("" when none). */
const char *zk_chroot_of(const char *hosts);

#endif
