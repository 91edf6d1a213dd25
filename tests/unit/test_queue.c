/*
 * Unit tests for queue: FIFO order across the ring's growth and wrap-around,
 * the length bound, expiry of the head only and at exactly the timeout, the
 * time until the next expiry, and a clock that seems to go backwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "queue.h"

static void test_fifo_order_through_growth_and_wrap(void **state)
{
	struct queue q;
	struct queue_entry e;
	queue_init(&q);
	assert_false(queue_pop(&q, &e));
	int next_in = 0, next_out = 0;
	/* Interleave pushes and pops so the ring wraps, then grows while wrapped. */
	for (int round = 0; round < 50; round++) {
		for (int i = 0; i < 7; i++) {
			assert_true(queue_push(&q, 1000, next_in, (uint64_t)next_in));
			next_in++;
		}
		for (int i = 0; i < 5; i++) {
			assert_true(queue_pop(&q, &e));
			assert_int_equal(e.fd, next_out);
			assert_int_equal(e.since_ms, (uint64_t)next_out);
			next_out++;
		}
	}
	while (queue_pop(&q, &e))
		assert_int_equal(e.fd, next_out++);
	assert_int_equal(next_out, next_in);
	assert_int_equal(q.len, 0);
	queue_free(&q);
}

static void test_length_is_bounded(void **state)
{
	struct queue q;
	struct queue_entry e;
	queue_init(&q);
	for (int i = 0; i < 3; i++)
		assert_true(queue_push(&q, 3, i, 0));
	assert_false(queue_push(&q, 3, 99, 0));
	assert_int_equal(q.len, 3);
	assert_true(q.cap <= 3);		/* never allocates beyond the bound */
	assert_true(queue_pop(&q, &e));
	assert_true(queue_push(&q, 3, 3, 0));	/* room again */
	assert_false(queue_push(&q, 0, 4, 0));	/* max 0: no queue at all */
	queue_free(&q);
	assert_null(q.v);
}

static void test_only_the_head_expires(void **state)
{
	struct queue q;
	struct queue_entry e;
	queue_init(&q);
	assert_false(queue_pop_expired(&q, 1000, 10, &e));
	assert_true(queue_push(&q, 10, 1, 100));
	assert_true(queue_push(&q, 10, 2, 150));
	assert_true(queue_push(&q, 10, 3, 400));
	/* one ms short of the timeout: nobody */
	assert_false(queue_pop_expired(&q, 299, 200, &e));
	/* exactly at it: the head */
	assert_true(queue_pop_expired(&q, 300, 200, &e));
	assert_int_equal(e.fd, 1);
	assert_false(queue_pop_expired(&q, 300, 200, &e));
	/* later: the next, in order, and not the third */
	assert_true(queue_pop_expired(&q, 500, 200, &e));
	assert_int_equal(e.fd, 2);
	assert_false(queue_pop_expired(&q, 500, 200, &e));
	assert_int_equal(q.len, 1);
	/* timeout 0 expires whoever waits */
	assert_true(queue_pop_expired(&q, 400, 0, &e));
	assert_int_equal(e.fd, 3);
	queue_free(&q);
}

static void test_next_expiry(void **state)
{
	struct queue q;
	queue_init(&q);
	assert_true(queue_next_expiry_ms(&q, 0, 100) == QUEUE_NEVER);
	assert_true(queue_push(&q, 10, 1, 1000));
	assert_true(queue_push(&q, 10, 2, 1050));
	assert_int_equal(queue_next_expiry_ms(&q, 1000, 100), 100);
	assert_int_equal(queue_next_expiry_ms(&q, 1060, 100), 40);
	assert_int_equal(queue_next_expiry_ms(&q, 1100, 100), 0);
	assert_int_equal(queue_next_expiry_ms(&q, 5000, 100), 0);
	/* stamped after now (another worker's clock read): treated as just queued */
	assert_int_equal(queue_next_expiry_ms(&q, 990, 100), 100);
	struct queue_entry e;
	assert_false(queue_pop_expired(&q, 990, 100, &e));
	queue_free(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo_order_through_growth_and_wrap),
		cmocka_unit_test(test_length_is_bounded),
		cmocka_unit_test(test_only_the_head_expires),
		cmocka_unit_test(test_next_expiry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
