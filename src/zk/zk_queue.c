/*
 * zk_queue — see zk_queue.h.
 */
#include "zk_queue.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

int zk_queue_init(struct zk_queue *q)
{
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->efd < 0)
		return -errno;
	pthread_mutex_init(&q->lock, NULL);
	q->head = NULL;
	return 0;
}

void zk_queue_fini(struct zk_queue *q)
{
	close(q->efd);
	pthread_mutex_destroy(&q->lock);
}

void zk_queue_post(struct zk_queue *q, struct zk_event *ev)
{
	uint64_t one = 1;
	ssize_t w;

	pthread_mutex_lock(&q->lock);
	ev->next = q->head;
	q->head = ev;
	pthread_mutex_unlock(&q->lock);
	/* EAGAIN means the counter is already non-zero: the drain is due anyway. */
	do {
		w = write(q->efd, &one, sizeof(one));
	} while (w < 0 && errno == EINTR);
}

void zk_queue_ack(struct zk_queue *q)
{
	uint64_t v;

	while (read(q->efd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

struct zk_event *zk_queue_take(struct zk_queue *q)
{
	struct zk_event *list, *rev = NULL;

	pthread_mutex_lock(&q->lock);
	list = q->head;
	q->head = NULL;
	pthread_mutex_unlock(&q->lock);
	while (list) {
		struct zk_event *next = list->next;
		list->next = rev;
		rev = list;
		list = next;
	}
	return rev;
}

void zk_event_free(struct zk_event *ev)
{
	free(ev->path);
	free(ev->data);
	for (size_t i = 0; i < ev->n_children; i++)
		free(ev->children[i]);
	free(ev->children);
	free(ev);
}
