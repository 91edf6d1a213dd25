/*
 * zk_request — the table of outstanding requests (get, children, exists,
 * create, delete) and their completions. Internal to src/zk/ (zk.h is the
 * API; zk.c forwards each public call here with the live handle).
 *
 * The table knows nothing of the session: it is handed the libzookeeper
 * handle to send on (NULL when there is none: the request then completes
 * with ZINVALIDSTATE) and the queue its completions are posted to. A
 * request's libzookeeper completion runs on libzookeeper's thread, copies
 * the answer into a REPLY event and posts it; the control thread hands that
 * event back to zk_req_reply, which calls the user's `done` unless the
 * request was cancelled. A request that cannot reach libzookeeper completes
 * through the same queue, so `done` never runs from inside the call that
 * asked.
 *
 * Thread: the control thread, except the completions described above.
 */
#ifndef ZKLB_ZK_REQUEST_H
#define ZKLB_ZK_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "zk_queue.h"
#include "zk_result.h"

struct zk_req;

struct zk_reqs {
	struct zk_req *head;		/* owned; outstanding requests */
	struct zk_queue *queue;		/* ref: where completions are posted */
};

/* An empty table posting to queue (which must outlive it). */
void zk_req_init(struct zk_reqs *t, struct zk_queue *queue);

/* The requests of zk.h; zh NULL = no handle. Same contracts as zk_get... */
void zk_req_get(struct zk_reqs *t, zhandle_t *zh, const char *path, bool watch,
		zk_done_fn *done, void *arg);
void zk_req_children(struct zk_reqs *t, zhandle_t *zh, const char *path, bool watch,
		     zk_done_fn *done, void *arg);
void zk_req_exists(struct zk_reqs *t, zhandle_t *zh, const char *path, bool watch,
		   zk_done_fn *done, void *arg);
void zk_req_create(struct zk_reqs *t, zhandle_t *zh, const char *path, const void *data,
		   size_t len, int flags, enum zk_acl acl, bool make_parents, zk_done_fn *done,
		   void *arg);
void zk_req_delete(struct zk_reqs *t, zhandle_t *zh, const char *path, int version,
		   zk_done_fn *done, void *arg);
void zk_req_set(struct zk_reqs *t, zhandle_t *zh, const char *path, const void *data,
		size_t len, int version, zk_done_fn *done, void *arg);

/* Mark every request registered with arg: it completes silently. */
void zk_req_cancel(struct zk_reqs *t, void *arg);

/*
 * Apply a REPLY event (borrowed): complete its request, or, for a create
 * whose parent is missing, send the ancestors and the create again on zh.
 */
void zk_req_reply(struct zk_reqs *t, zhandle_t *zh, const struct zk_event *ev);

/* Forget req without completing it (its reply event is being dropped). */
void zk_req_discard(struct zk_reqs *t, struct zk_req *req);

/* Forget every outstanding request without completing it. */
void zk_req_discard_all(struct zk_reqs *t);

#endif
