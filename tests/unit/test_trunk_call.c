/*
 * Unit tests for trunk_call: each side's mark, the first remote mark
 * staying, the two references (the last put frees: ASan reports a leak or
 * a double free otherwise), and the contract across a real socketpair: a
 * thread that marks and then closes its end is seen marked by a reader
 * that saw the close.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "trunk_call.h"

static void test_marks_and_references(void **state)
{
	(void)state;
	struct trunk_call *call = trunk_call_new();
	assert_int_equal(trunk_call_remote(call), TRUNK_CALL_CLEAN);
	assert_false(trunk_call_local_reset(call));
	trunk_call_mark_remote(call, TRUNK_CALL_RESET);
	trunk_call_mark_remote(call, TRUNK_CALL_LOST);	/* the trunk died after the reset */
	assert_int_equal(trunk_call_remote(call), TRUNK_CALL_RESET);
	assert_false(trunk_call_local_reset(call));	/* the sides do not mix */
	trunk_call_mark_local_reset(call);
	assert_true(trunk_call_local_reset(call));
	assert_string_equal(trunk_call_end_name(trunk_call_remote(call)), "reset");
	assert_string_equal(trunk_call_end_name(TRUNK_CALL_LOST), "trunk lost");
	trunk_call_put(call);
	assert_true(trunk_call_local_reset(call));	/* one reference left: still there */
	trunk_call_put(call);
	trunk_call_put(NULL);
}

struct closer {
	struct trunk_call *call;
	int fd;
};

static void *mark_then_close(void *arg)
{
	struct closer *c = arg;
	trunk_call_mark_remote(c->call, TRUNK_CALL_LOST);
	close(c->fd);
	trunk_call_put(c->call);
	return NULL;
}

static void test_a_reader_that_saw_the_close_sees_the_mark(void **state)
{
	(void)state;
	for (int i = 0; i < 200; i++) {
		int sv[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		struct closer c = { trunk_call_new(), sv[1] };
		pthread_t t;
		assert_int_equal(pthread_create(&t, NULL, mark_then_close, &c), 0);
		char b;
		assert_int_equal(read(sv[0], &b, 1), 0);	/* blocks until the close */
		assert_int_equal(trunk_call_remote(c.call), TRUNK_CALL_LOST);
		assert_int_equal(pthread_join(t, NULL), 0);
		close(sv[0]);
		trunk_call_put(c.call);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_marks_and_references),
		cmocka_unit_test(test_a_reader_that_saw_the_close_sees_the_mark),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
