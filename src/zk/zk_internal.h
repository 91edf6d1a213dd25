/*
 * zk_internal — what the two halves of zk share: the session (zk.c) and the
 * requests (zk_request.c). Not a public header: zk.h is the API.
 *
 * libzookeeper's threads never touch struct zk beyond its queue: they build
 * a struct zk_event and post it (zk_queue_post); the control thread drains
 * the queue and applies each event (zk.c), handing replies to zk_req_reply.
 */
#ifndef ZKLB_ZK_INTERNAL_H
#define ZKLB_ZK_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"
#include "zk.h"

struct event;
struct zk_handle;
struct zk_observer_entry;
struct zk_req;

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
	struct event *lost_ev;		/* owned; DISCONNECTED for a whole session timeout */
	struct rng rng;			/* backoff jitter */

	int efd;			/* owned; eventfd the foreign threads write */
	struct event *efd_ev;		/* owned */
	pthread_mutex_t qlock;		/* protects queue */
	struct zk_event *queue;		/* LIFO while queued; reversed when drained */

	struct zk_req *reqs;		/* outstanding requests */
	struct zk_observer_entry *observers;	/* owned array */
	size_t n_observers;		/* used entries */
	size_t cap_observers;		/* allocated entries */
	unsigned dispatching;		/* > 0 while calling observers */

	struct zk_stats stats;		/* counters; state fields filled on read */
};

/* zk.c: append ev (owned) to the queue and wake the control thread. Any thread. */
void zk_queue_post(struct zk *zk, struct zk_event *ev);

/* zk_request.c: apply a REPLY event (borrowed): complete, retry or drop its request. */
void zk_req_reply(struct zk *zk, struct zk_event *ev);

/* zk_request.c: forget req without completing it (zk_free). */
void zk_req_discard(struct zk *zk, struct zk_req *req);

/* zk_request.c: forget every outstanding request without completing it (zk_free). */
void zk_req_discard_all(struct zk *zk);

#endif
