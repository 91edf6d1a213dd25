/*
 * zk_request — the asynchronous requests of zk.h (get, children, exists,
 * create, delete) and their completions.
 *
 * A request lives in zk->reqs from its submission to its completion. Its
 * libzookeeper completion (the *_done functions, on libzookeeper's thread)
 * copies the answer into a REPLY event and posts it (zk_queue_post); the
 * control thread hands it to zk_req_reply, which calls the user's `done`
 * unless the request was cancelled. A request that cannot reach
 * libzookeeper completes through the same queue (complete_later), so `done`
 * never runs from inside the call that asked.
 */
#include "zk_internal.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

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

/* ---------- libzookeeper threads: copy the answer, post it ---------- */

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

static void reply_stat(struct zk_event *ev, const struct Stat *stat)
{
	if (stat) {
		ev->stat = *stat;
		ev->has_stat = true;
	}
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
		reply_stat(ev, stat);
	}
	zk_queue_post(zk, ev);
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
	zk_queue_post(zk, ev);
}

static void create_done(int rc, const char *value, const struct Stat *stat, const void *data)
{
	struct zk *zk;
	struct zk_event *ev = reply_event(data, rc, &zk);

	if (rc == ZOK) {
		ev->path = xstrdup(value ? value : "");
		reply_stat(ev, stat);
	}
	zk_queue_post(zk, ev);
}

static void void_done(int rc, const void *data)
{
	struct zk *zk;
	struct zk_event *ev = reply_event(data, rc, &zk);

	zk_queue_post(zk, ev);
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

	if (rc == ZOK)
		reply_stat(ev, stat);
	zk_queue_post(zk, ev);
}

/* ---------- control thread ---------- */

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

void zk_req_discard(struct zk *zk, struct zk_req *req)
{
	req_unlink(zk, req);
	req_free(req);
}

void zk_req_discard_all(struct zk *zk)
{
	while (zk->reqs)
		zk_req_discard(zk, zk->reqs);
}

/* Complete a request that never reached libzookeeper, still asynchronously. */
static void complete_later(struct zk *zk, struct zk_req *req, int rc)
{
	struct zk_event *ev = xcalloc(1, sizeof(*ev));

	ev->kind = ZK_EV_REPLY;
	ev->req = req;
	ev->rc = rc;
	zk_queue_post(zk, ev);
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

void zk_req_reply(struct zk *zk, struct zk_event *ev)
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
