/*
 * zk_queue — how what libzookeeper's threads produce reaches the control
 * thread: each foreign callback builds a struct zk_event and posts it; the
 * post appends it under a mutex and writes an eventfd that the control
 * thread's event base watches; the control thread takes the whole queue, in
 * posting order, and applies it (zk.c).
 *
 * The queue knows nothing of the session or of requests: an event carries a
 * request only as an opaque pointer. Internal to src/zk/ (zk.h is the API).
 */
#ifndef ZKLB_ZK_QUEUE_H
#define ZKLB_ZK_QUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zookeeper/zookeeper.h>

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

struct zk_queue {
	int efd;			/* owned; eventfd the foreign threads write */
	pthread_mutex_t lock;		/* protects head */
	struct zk_event *head;		/* LIFO while queued; reversed when taken */
};

/* 0, or -errno when the eventfd cannot be made. */
int zk_queue_init(struct zk_queue *q);

/* Close the eventfd. Events still queued must have been taken (zk_queue_take). */
void zk_queue_fini(struct zk_queue *q);

/* Append ev (owned) and wake the control thread. Any thread. */
void zk_queue_post(struct zk_queue *q, struct zk_event *ev);

/* Control thread: consume the wake-up (the eventfd's counter). */
void zk_queue_ack(struct zk_queue *q);

/* Control thread: everything posted so far, oldest first (a list via next); NULL if none. */
struct zk_event *zk_queue_take(struct zk_queue *q);

void zk_event_free(struct zk_event *ev);

#endif
