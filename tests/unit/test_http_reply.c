/*
 * Unit tests for bench/http_reply: complete and split responses, keep-alive
 * and close, bodyless statuses, and the malformed heads it must refuse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http_reply.h"

static struct http_reply *new_reply(void)
{
	struct http_reply *r = malloc(sizeof(*r));
	assert_non_null(r);
	http_reply_reset(r);
	return r;
}

static size_t feed_str(struct http_reply *r, const char *s)
{
	return http_reply_feed(r, s, strlen(s));
}

static void test_whole_response(void **state)
{
	struct http_reply *r = new_reply();
	const char *resp = "HTTP/1.1 200 OK\r\nServer: nginx\r\ncontent-length: 5\r\n\r\nhello";
	assert_int_equal(feed_str(r, resp), strlen(resp));
	assert_int_equal(r->state, HTTP_REPLY_DONE);
	assert_int_equal(r->status, 200);
	assert_int_equal(r->content_length, 5);
	assert_false(r->close);
	free(r);
}

static void test_byte_by_byte_and_leftover(void **state)
{
	struct http_reply *r = new_reply();
	const char *resp = "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcEXTRA";
	size_t body_end = strlen(resp) - 5;
	for (size_t i = 0; i < body_end; i++) {
		assert_int_not_equal(r->state, HTTP_REPLY_DONE);
		assert_int_equal(http_reply_feed(r, resp + i, 1), 1);
	}
	assert_int_equal(r->state, HTTP_REPLY_DONE);
	assert_int_equal(r->status, 404);
	assert_true(r->close);
	/* A done reader consumes nothing more. */
	assert_int_equal(feed_str(r, "EXTRA"), 0);

	/* In one go, the leftover is reported as unconsumed. */
	http_reply_reset(r);
	assert_int_equal(feed_str(r, resp), body_end);
	assert_int_equal(r->state, HTTP_REPLY_DONE);
	free(r);
}

static void test_bodyless_and_http10(void **state)
{
	struct http_reply *r = new_reply();
	feed_str(r, "HTTP/1.1 204 No Content\r\n\r\n");
	assert_int_equal(r->state, HTTP_REPLY_DONE);
	http_reply_reset(r);
	feed_str(r, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(r->state, HTTP_REPLY_DONE);
	assert_true(r->close);
	http_reply_reset(r);
	feed_str(r, "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n");
	assert_int_equal(r->state, HTTP_REPLY_BODY);
	assert_false(r->close);
	assert_int_equal(feed_str(r, "ok"), 2);
	assert_int_equal(r->state, HTTP_REPLY_DONE);
	free(r);
}

static void test_refused(void **state)
{
	const char *bad[] = {
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n",
	};
	struct http_reply *r = new_reply();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		http_reply_reset(r);
		feed_str(r, bad[i]);
		assert_int_equal(r->state, HTTP_REPLY_ERROR);
		assert_non_null(r->error);
	}
	/* A head that never ends is bounded. */
	http_reply_reset(r);
	feed_str(r, "HTTP/1.1 200 OK\r\n");
	char junk[1024];
	memset(junk, 'x', sizeof(junk));
	for (int i = 0; i < 10 && r->state != HTTP_REPLY_ERROR; i++)
		http_reply_feed(r, junk, sizeof(junk));
	assert_int_equal(r->state, HTTP_REPLY_ERROR);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_response),
		cmocka_unit_test(test_byte_by_byte_and_leftover),
		cmocka_unit_test(test_bodyless_and_http10),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
