/*
 * Unit tests for upgrade_cmd's pure parts: the verdict from two views of the
 * running zklb, the reading of an HTTP answer, and of a GET /services body
 * (hostile ones included: truncated, not JSON, fields of the wrong type).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "upgrade_cmd.h"

static void test_verdict(void **state)
{
	struct upgrade_cmd_view before = { .pid = 100, .failures = 2 };
	struct upgrade_cmd_view now = before;
	assert_int_equal(upgrade_cmd_verdict(&before, &now), UPGRADE_CMD_WAIT);
	now.failures = 3;
	assert_int_equal(upgrade_cmd_verdict(&before, &now), UPGRADE_CMD_FAILED);
	now.pid = 200;		/* a new pid answers: it serves, whatever its counters say */
	now.failures = 0;
	assert_int_equal(upgrade_cmd_verdict(&before, &now), UPGRADE_CMD_SERVING);
}

static void test_parse_reply(void **state)
{
	const char ok[] = "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n\r\n{\"a\":1}";
	int status;
	const char *body;
	size_t len;
	assert_true(upgrade_cmd_parse_reply(ok, sizeof(ok) - 1, &status, &body, &len));
	assert_int_equal(status, 202);
	assert_int_equal(len, 7);
	assert_memory_equal(body, "{\"a\":1}", 7);
	const char empty[] = "HTTP/1.0 409 Conflict\r\n\r\n";
	assert_true(upgrade_cmd_parse_reply(empty, sizeof(empty) - 1, &status, &body, &len));
	assert_int_equal(status, 409);
	assert_int_equal(len, 0);
	/* not an answer: other protocols, bad codes, no end of head, truncated */
	const char *bad[] = { "SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n",
			      "HTTP/1.1 200 OK\r\nX: y\r\n", "HTTP/1.1 20", "HTTP/1.1 600 ?\r\n\r\n",
			      "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(upgrade_cmd_parse_reply(bad[i], strlen(bad[i]), &status, &body, &len));
}

static void test_parse_view(void **state)
{
	struct upgrade_cmd_view v;
	char err[200];
	const char good[] = "{\"pid\": 4242, \"upgrade\": {\"state\": \"idle\", \"failures\": 1, "
			    "\"last_failure\": \"pid 99 exited with status 1 before it was ready\"}}";
	assert_true(upgrade_cmd_parse_view(good, strlen(good), &v, err, sizeof(err)));
	assert_int_equal(v.pid, 4242);
	assert_int_equal(v.failures, 1);
	assert_string_equal(v.last_failure, "pid 99 exited with status 1 before it was ready");
	const char *bad[] = { "{\"pid\": 1}", "{\"upgrade\": {\"failures\": 0}}", "[1, 2]", "{\"pid\"",
			      "{\"pid\": \"7\", \"upgrade\": {\"failures\": 0}}",
			      "{\"pid\": -3, \"upgrade\": {\"failures\": 0}}",
			      "{\"pid\": 3, \"upgrade\": {\"failures\": -1}}" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_false(upgrade_cmd_parse_view(bad[i], strlen(bad[i]), &v, err, sizeof(err)));
		assert_true(err[0] != '\0');
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verdict),
		cmocka_unit_test(test_parse_reply),
		cmocka_unit_test(test_parse_view),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
