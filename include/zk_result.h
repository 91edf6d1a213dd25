/*
 * zk_result — what a completed ZooKeeper request hands back (zk.h's
 * zk_get, zk_children, zk_create...). Its own header so that the request
 * table below the session (src/zk/zk_request.c) needs nothing of zk.h.
 */
#ifndef ZKLB_ZK_RESULT_H
#define ZKLB_ZK_RESULT_H

#include <stddef.h>

#include <zookeeper/zookeeper.h>

/* A completed request. Everything is borrowed for the duration of the call. */
struct zk_result {
	int rc;				/* ZOK, or a libzookeeper code: ZNONODE, ZNOAUTH, ZCONNECTIONLOSS... */
	const char *path;		/* the path that was asked for */
	const char *data;		/* get: the node's bytes (not NUL-terminated); NULL if none */
	size_t data_len;		/* get: bytes in data */
	char *const *children;		/* children: child names (not paths), server order */
	size_t n_children;		/* children: entries in children */
	const struct Stat *stat;	/* get/exists/create/children with rc ZOK: the node's stat; else NULL */
	const char *created;		/* create with rc ZOK: the path made (sequential suffix included) */
};

/*
 * The ACLs a create gives its node and the ancestors it makes (zk_create_acl).
 * Here rather than in zk.h so the request table below the session sees it.
 */
enum zk_acl {
	ZK_ACL_OPEN = 0,		/* world: all, on the node and its parents (Curator's default) */
	ZK_ACL_CREATOR,			/* node: auth all + world read; parents: auth all + world create, read */
};

/* Completion callback: control thread, exactly once per uncancelled request. */
typedef void zk_done_fn(void *arg, const struct zk_result *r);

#endif
