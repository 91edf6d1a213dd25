/*
 * zk_request — see zk_request.h. A request lives in its table from its
 * submission to its completion.
 */
#include "zk_request.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

enum zk_op {
	ZK_OP_GET = 0,
	ZK_OP_CHILDREN,
	ZK_OP_EXISTS,
	ZK_OP_CREATE,
	ZK_OP_DELETE,
	ZK_OP_SET,
};

/* One outstanding request. Touched only by the control thread. */
struct zk_req {
	enum zk_op op;			/* what was asked */
	char *path;			/* owned */
	zk_done_fn *done;		/* user completion */
	void *arg;			/* user argument; also the cancellation key */
	bool cancelled;			/* zk_cancel() dropped it; free on completion */
	char *data;			/* create/set: owned copy of the node's bytes, or NULL */
	size_t data_len;		/* create/set: bytes in data */
	int flags;			/* create: ZOO_EPHEMERAL... */
	int version;			/* delete/set: expected version, -1 = any */
	bool make_parents;		/* create: on ZNONODE, create the ancestors and retry */
	enum zk_acl acl;		/* create: ACLs of the node and of the ancestors made */
	bool parents_tried;		/* create: the retry with ancestors was sent */
	struct zk_req *prev;		/* table list */
	struct zk_req *next;		/* table list */
};

/* ---------- libzookeeper threads: copy the answer, post it ---------- */

/*
 * The completion's `data`: where to post, and which request it was (never
 * dereferenced on libzookeeper's thread).
 */
struct zk_req_wire {
	struct zk_queue *queue;		/* ref */
	struct zk_req *req;		/* ref */
};

static struct zk_event *reply_event(const void *data, int rc, struct zk_queue **q_out)
{
	const struct zk_req_wire *w = data;
	struct zk_event *ev = xcalloc(1, sizeof(*ev));

	ev->kind = ZK_EV_REPLY;
	ev->req = w->req;
	ev->rc = rc;
	*q_out = w->queue;
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
	struct zk_queue *q;
	struct zk_event *ev = reply_event(data, rc, &q);

	if (rc == ZOK) {
		if (value && value_len > 0) {
			ev->data = xmalloc((size_t)value_len);
			memcpy(ev->data, value, (size_t)value_len);
			ev->data_len = (size_t)value_len;
		}
		reply_stat(ev, stat);
	}
	zk_queue_post(q, ev);
}

/* getChildren2: the names and the parent's stat (its cversion counts creates and deletes). */
static void strings_done(int rc, const struct String_vector *sv, const struct Stat *stat,
			 const void *data)
{
	struct zk_queue *q;
	struct zk_event *ev = reply_event(data, rc, &q);

	if (rc == ZOK && sv && sv->count > 0) {
		ev->children = xcalloc((size_t)sv->count, sizeof(char *));
		for (int32_t i = 0; i < sv->count; i++)
			ev->children[i] = xstrdup(sv->data[i]);
		ev->n_children = (size_t)sv->count;
	}
	if (rc == ZOK)
		reply_stat(ev, stat);
	zk_queue_post(q, ev);
}

static void create_done(int rc, const char *value, const struct Stat *stat, const void *data)
{
	struct zk_queue *q;
	struct zk_event *ev = reply_event(data, rc, &q);

	if (rc == ZOK) {
		ev->path = xstrdup(value ? value : "");
		reply_stat(ev, stat);
	}
	zk_queue_post(q, ev);
}

static void void_done(int rc, const void *data)
{
	struct zk_queue *q;
	struct zk_event *ev = reply_event(data, rc, &q);

	zk_queue_post(q, ev);
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
	struct zk_queue *q;
	struct zk_event *ev = reply_event(data, rc, &q);

	if (rc == ZOK)
		reply_stat(ev, stat);
	zk_queue_post(q, ev);
}

/* ---------- control thread ---------- */

void zk_req_init(struct zk_reqs *t, struct zk_queue *queue)
{
	t->head = NULL;
	t->queue = queue;
}

static void req_unlink(struct zk_reqs *t, struct zk_req *req)
{
	if (req->prev)
		req->prev->next = req->next;
	else
		t->head = req->next;
	if (req->next)
		req->next->prev = req->prev;
}

static void req_free(struct zk_req *req)
{
	free(req->path);
	free(req->data);
	free(req);
}

void zk_req_discard(struct zk_reqs *t, struct zk_req *req)
{
	req_unlink(t, req);
	req_free(req);
}

void zk_req_discard_all(struct zk_reqs *t)
{
	while (t->head)
		zk_req_discard(t, t->head);
}

/* Complete a request that never reached libzookeeper, still asynchronously. */
static void complete_later(struct zk_reqs *t, struct zk_req *req, int rc)
{
	struct zk_event *ev = xcalloc(1, sizeof(*ev));

	ev->kind = ZK_EV_REPLY;
	ev->req = req;
	ev->rc = rc;
	zk_queue_post(t->queue, ev);
}

/*
 * The ACL vector of zk_result.h's enum zk_acl, in v (entries in buf, which
 * must live until libzookeeper has serialised the request, i.e. the call).
 * "auth" means every identity the creating session has added (zk.c's
 * zookeeper.auth). libzookeeper's permission bits are extern variables, so
 * this is built per call rather than as a static table.
 */
static struct ACL_vector *acl_vector(enum zk_acl acl, bool parent, struct ACL buf[2],
				     struct ACL_vector *v)
{
	if (acl == ZK_ACL_OPEN)
		return &ZOO_OPEN_ACL_UNSAFE;
	buf[0] = (struct ACL){ ZOO_PERM_ALL, ZOO_AUTH_IDS };
	buf[1] = (struct ACL){ parent ? ZOO_PERM_READ | ZOO_PERM_CREATE : ZOO_PERM_READ,
			       ZOO_ANYONE_ID_UNSAFE };
	v->count = 2;
	v->data = buf;
	return v;
}

/* Hand req to libzookeeper; ZOK when its completion will run. */
static int req_send(struct zk_reqs *t, zhandle_t *zh, struct zk_req *req, bool watch)
{
	struct zk_req_wire *w = xmalloc(sizeof(*w));
	struct ACL acl_buf[2];
	struct ACL_vector acls;
	int rc;

	w->queue = t->queue;
	w->req = req;
	switch (req->op) {
	case ZK_OP_GET:
		rc = zoo_aget(zh, req->path, watch, data_done, w);
		break;
	case ZK_OP_CHILDREN:
		rc = zoo_aget_children2(zh, req->path, watch, strings_done, w);
		break;
	case ZK_OP_CREATE:
		rc = zoo_acreate2(zh, req->path, req->data,
				  req->data ? (int)req->data_len : -1, acl_vector(req->acl, false, acl_buf, &acls),
				  req->flags, create_done, w);
		break;
	case ZK_OP_DELETE:
		rc = zoo_adelete(zh, req->path, req->version, void_done, w);
		break;
	case ZK_OP_SET:
		rc = zoo_aset(zh, req->path, req->data, req->data ? (int)req->data_len : -1,
			      req->version, stat_done, w);
		break;
	case ZK_OP_EXISTS:
	default:
		rc = zoo_aexists(zh, req->path, watch, stat_done, w);
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
static bool retry_with_parents(struct zk_reqs *t, zhandle_t *zh, struct zk_req *req)
{
	const char *p = req->path;
	struct ACL acl_buf[2];
	struct ACL_vector acls;
	int rc;

	if (req->op != ZK_OP_CREATE || !req->make_parents || req->parents_tried ||
	    req->cancelled || !zh)
		return false;
	req->parents_tried = true;
	for (const char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
		char *anc = strndup(p, (size_t)(s - p));
		if (!anc)
			break;
		zoo_acreate2(zh, anc, NULL, -1, acl_vector(req->acl, true, acl_buf, &acls),
			     ZOO_CONTAINER, parent_done, NULL);
		free(anc);
	}
	rc = req_send(t, zh, req, false);
	if (rc != ZOK)
		complete_later(t, req, rc);
	return true;
}

void zk_req_reply(struct zk_reqs *t, zhandle_t *zh, const struct zk_event *ev)
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

	if (ev->rc == ZNONODE && retry_with_parents(t, zh, req))
		return;
	req_unlink(t, req);
	if (!req->cancelled && req->done)
		req->done(req->arg, &r);
	req_free(req);
}

static struct zk_req *req_new(struct zk_reqs *t, enum zk_op op, const char *path,
			      zk_done_fn *done, void *arg)
{
	struct zk_req *req = xcalloc(1, sizeof(*req));

	req->op = op;
	req->path = xstrdup(path);
	req->done = done;
	req->arg = arg;
	req->version = -1;
	req->next = t->head;
	if (t->head)
		t->head->prev = req;
	t->head = req;
	return req;
}

static void req_submit(struct zk_reqs *t, zhandle_t *zh, struct zk_req *req, bool watch)
{
	int rc;

	if (!zh) {
		complete_later(t, req, ZINVALIDSTATE);
		return;
	}
	rc = req_send(t, zh, req, watch);
	if (rc != ZOK)
		complete_later(t, req, rc);
}

void zk_req_get(struct zk_reqs *t, zhandle_t *zh, const char *path, bool watch,
		zk_done_fn *done, void *arg)
{
	req_submit(t, zh, req_new(t, ZK_OP_GET, path, done, arg), watch);
}

void zk_req_children(struct zk_reqs *t, zhandle_t *zh, const char *path, bool watch,
		     zk_done_fn *done, void *arg)
{
	req_submit(t, zh, req_new(t, ZK_OP_CHILDREN, path, done, arg), watch);
}

void zk_req_exists(struct zk_reqs *t, zhandle_t *zh, const char *path, bool watch,
		   zk_done_fn *done, void *arg)
{
	req_submit(t, zh, req_new(t, ZK_OP_EXISTS, path, done, arg), watch);
}

/* req keeps a copy of data[0..len) (NULL: no data). */
static void req_set_data(struct zk_req *req, const void *data, size_t len)
{
	if (data) {
		/* libzookeeper takes an int length; larger nodes are refused by any server */
		req->data_len = len > INT32_MAX ? INT32_MAX : len;
		req->data = xmalloc(req->data_len ? req->data_len : 1);
		memcpy(req->data, data, req->data_len);
	}
}

void zk_req_create(struct zk_reqs *t, zhandle_t *zh, const char *path, const void *data,
		   size_t len, int flags, enum zk_acl acl, bool make_parents, zk_done_fn *done,
		   void *arg)
{
	struct zk_req *req = req_new(t, ZK_OP_CREATE, path, done, arg);

	req_set_data(req, data, len);
	req->flags = flags;
	req->acl = acl;
	req->make_parents = make_parents;
	req_submit(t, zh, req, false);
}

void zk_req_delete(struct zk_reqs *t, zhandle_t *zh, const char *path, int version,
		   zk_done_fn *done, void *arg)
{
	struct zk_req *req = req_new(t, ZK_OP_DELETE, path, done, arg);

	req->version = version;
	req_submit(t, zh, req, false);
}

void zk_req_set(struct zk_reqs *t, zhandle_t *zh, const char *path, const void *data,
		size_t len, int version, zk_done_fn *done, void *arg)
{
	struct zk_req *req = req_new(t, ZK_OP_SET, path, done, arg);

	req_set_data(req, data, len);
	req->version = version;
	req_submit(t, zh, req, false);
}

void zk_req_cancel(struct zk_reqs *t, void *arg)
{
	for (struct zk_req *r = t->head; r; r = r->next) {
		if (r->arg == arg)
			r->cancelled = true;
	}
}
