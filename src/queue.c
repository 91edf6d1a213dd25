/*
 * queue — see queue.h.
 */
#include "queue.h"

#include <stdlib.h>
#include <string.h>

#define QUEUE_FIRST_CAP 16

void queue_init(struct queue *q)
{
	memset(q, 0, sizeof(*q));
}

void queue_free(struct queue *q)
{
	free(q->v);
	queue_init(q);
}

/* Room for one more entry: double the ring, keeping the order (head moves to 0). */
static bool queue_grow(struct queue *q, uint32_t max)
{
	uint64_t want = q->cap ? (uint64_t)q->cap * 2 : QUEUE_FIRST_CAP;
	if (want > max)
		want = max;
	struct queue_entry *v = malloc((size_t)want * sizeof(*v));
	if (!v)
		return false;
	for (uint32_t i = 0; i < q->len; i++)
		v[i] = q->v[(q->head + i) % q->cap];
	free(q->v);
	q->v = v;
	q->cap = (uint32_t)want;
	q->head = 0;
	return true;
}

bool queue_push(struct queue *q, uint32_t max, int fd, uint64_t now_ms)
{
	if (q->len >= max)
		return false;
	if (q->len == q->cap && !queue_grow(q, max))
		return false;
	q->v[(q->head + q->len) % q->cap] = (struct queue_entry){ .fd = fd, .since_ms = now_ms };
	q->len++;
	return true;
}

bool queue_pop(struct queue *q, struct queue_entry *out)
{
	if (q->len == 0)
		return false;
	*out = q->v[q->head];
	q->head = (q->head + 1) % q->cap;
	q->len--;
	return true;
}

/* How long the head has waited at now (0 when the clock says it is from the future). */
static uint64_t queue_head_waited(const struct queue *q, uint64_t now_ms)
{
	uint64_t since = q->v[q->head].since_ms;
	return now_ms > since ? now_ms - since : 0;
}

bool queue_pop_expired(struct queue *q, uint64_t now_ms, uint64_t timeout_ms,
		       struct queue_entry *out)
{
	if (q->len == 0 || queue_head_waited(q, now_ms) < timeout_ms)
		return false;
	return queue_pop(q, out);
}

uint64_t queue_next_expiry_ms(const struct queue *q, uint64_t now_ms, uint64_t timeout_ms)
{
	if (q->len == 0)
		return QUEUE_NEVER;
	uint64_t waited = queue_head_waited(q, now_ms);
	return waited >= timeout_ms ? 0 : timeout_ms - waited;
}
