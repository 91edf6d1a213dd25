/*
 * Unit tests for adminreq: request heads as clients send them, heads cut
 * short, malformed ones, the bearer token.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "adminreq.h"

#define PARSE(s, r) adminreq_parse((s), sizeof(s) - 1, (r))

static void test_get_with_query(void **st)
{
	(void)st;
	struct adminreq r;
	static const char h[] = "GET /metrics?name=x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n";
	assert_int_equal(PARSE(h, &r), ADMINREQ_OK);
	assert_int_equal(r.method, ADMINREQ_GET);
	assert_true(adminreq_path_is(&r, "/metrics"));
	assert_false(adminreq_path_is(&r, "/metric"));
	assert_int_equal(r.query_len, 6);
	assert_memory_equal(r.query, "name=x", 6);
	assert_null(r.token);
	assert_int_equal(r.head_len, sizeof(h) - 1);
	static const char head[] = "HEAD / HTTP/1.0\r\n\r\n";
	assert_int_equal(PARSE(head, &r), ADMINREQ_OK);
	assert_int_equal(r.method, ADMINREQ_HEAD);
	assert_true(adminreq_path_is(&r, "/"));
	assert_null(r.query);
	static const char post[] = "POST /services HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
	assert_int_equal(PARSE(post, &r), ADMINREQ_OK);
	assert_int_equal(r.method, ADMINREQ_POST);
	static const char put[] = "PUT /services HTTP/1.1\r\n\r\n";
	assert_int_equal(PARSE(put, &r), ADMINREQ_OK);
	assert_int_equal(r.method, ADMINREQ_OTHER);
}

static void test_incomplete_and_too_large(void **st)
{
	(void)st;
	struct adminreq r;
	static const char h[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	for (size_t n = 0; n < sizeof(h) - 1; n++)
		assert_int_equal(adminreq_parse(h, n, &r), ADMINREQ_INCOMPLETE);
	static char big[ADMINREQ_HEAD_MAX + 16];
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	assert_int_equal(adminreq_parse(big, sizeof(big), &r), ADMINREQ_TOO_LARGE);
	assert_int_equal(adminreq_parse(big, ADMINREQ_HEAD_MAX - 1, &r), ADMINREQ_INCOMPLETE);
	/* The blank line past the limit is still too large. */
	memcpy(big + ADMINREQ_HEAD_MAX + 8, "\r\n\r\n", 4);
	assert_int_equal(adminreq_parse(big, ADMINREQ_HEAD_MAX + 12, &r), ADMINREQ_TOO_LARGE);
}

static void test_malformed(void **st)
{
	(void)st;
	struct adminreq r;
	static const char *const bad[] = {
		"\r\n\r\n",
		"GET\r\n\r\n",
		"GET / \r\n\r\n",
		"GET  / HTTP/1.1\r\n\r\n",
		"GET metrics HTTP/1.1\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"GET / HTTP/1.1 \r\n\r\n",
		"GET /a\x01 HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost a\r\n\r\n",
		"GET / HTTP/1.1\r\n: a\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
		"G\x80T / HTTP/1.1\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum adminreq_status s = adminreq_parse(bad[i], strlen(bad[i]), &r);
		if (s != ADMINREQ_BAD)
			fail_msg("head %zu parsed as %d", i, (int)s);
	}
}

static void test_token(void **st)
{
	(void)st;
	struct adminreq r;
	static const char want[] = "s3cret-token";
	size_t wl = sizeof(want) - 1;
	static const char ok[] = "GET /services HTTP/1.1\r\nauthorization:  bearer s3cret-token \r\n\r\n";
	assert_int_equal(PARSE(ok, &r), ADMINREQ_OK);
	assert_int_equal(r.token_len, wl);
	assert_true(adminreq_token_ok(&r, want, wl));
	static const char *const wrong[] = {
		"GET / HTTP/1.1\r\nAuthorization: Bearer s3cret-tokeN\r\n\r\n",
		"GET / HTTP/1.1\r\nAuthorization: Bearer s3cret-token2\r\n\r\n",
		"GET / HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n",
		"GET / HTTP/1.1\r\nAuthorization: Bearer \r\n\r\n",
		"GET / HTTP/1.1\r\nAuthorization: Basic s3cret-token\r\n\r\n",
		"GET / HTTP/1.1\r\nAuthorization: s3cret-token\r\n\r\n",
		"GET / HTTP/1.1\r\nX-Authorization: Bearer s3cret-token\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		assert_int_equal(adminreq_parse(wrong[i], strlen(wrong[i]), &r), ADMINREQ_OK);
		if (adminreq_token_ok(&r, want, wl))
			fail_msg("wrong token %zu accepted", i);
	}
	/* No configured token never matches, not even an empty one. */
	static const char empty[] = "GET / HTTP/1.1\r\nAuthorization: Bearer \r\n\r\n";
	assert_int_equal(PARSE(empty, &r), ADMINREQ_OK);
	assert_false(adminreq_token_ok(&r, "", 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_with_query),
		cmocka_unit_test(test_incomplete_and_too_large),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_token),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
