/*
 * Unit tests for log: a message carrying outside bytes (a ZooKeeper value with
 * a newline, a DEL, an escape sequence) stays one line in both formats, and a
 * message longer than a line is cut, still ending in exactly one newline.
 * stderr is swapped for a pipe around each call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Log one message at info and return what reached stderr (static buffer). */
static const char *captured(enum log_format format, const char *msg)
{
	static char out[4096];
	int p[2];
	assert_int_equal(pipe(p), 0);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(p[1], STDERR_FILENO) >= 0);
	log_setup(LOG_INFO, format);
	log_info("svc=%s", msg);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	close(p[1]);
	ssize_t n = read(p[0], out, sizeof(out) - 1);
	close(p[0]);
	assert_true(n > 0);
	out[n] = '\0';
	return out;
}

static size_t count_char(const char *s, char c)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == c;
	return n;
}

static void test_text_escapes_control_bytes(void **state)
{
	const char *line = captured(LOG_FORMAT_TEXT, "web\n2026-01-01T00:00:00.000Z error forged\r\x1b[31m\x7f");
	assert_int_equal(count_char(line, '\n'), 1);
	assert_int_equal(line[strlen(line) - 1], '\n');
	assert_non_null(strstr(line, " info svc=web\\x0a2026-01-01T00:00:00.000Z error forged\\x0d\\x1b[31m\\x7f\n"));
}

static void test_text_plain_message_unchanged(void **state)
{
	const char *line = captured(LOG_FORMAT_TEXT, "web be=127.0.0.1:9001 ejected for 5s");
	assert_non_null(strstr(line, " info svc=web be=127.0.0.1:9001 ejected for 5s\n"));
}

static void test_json_escapes_control_bytes(void **state)
{
	const char *line = captured(LOG_FORMAT_JSON, "a\nb\"c");
	assert_int_equal(count_char(line, '\n'), 1);
	assert_non_null(strstr(line, "\"level\":\"info\",\"msg\":\"svc=a\\u000ab\\\"c\"}\n"));
}

/*
 * A JSON line is JSON whatever bytes the message carries: a byte that is not
 * part of a UTF-8 character (a value from ZooKeeper cut inside one, a stray
 * 0xff) is written as U+FFFD; whole characters pass as they are.
 */
static void test_json_line_is_utf8_whatever_the_bytes(void **state)
{
	const char *line = captured(LOG_FORMAT_JSON, "ok \xc3( \xff \xe2\x82 \xed\xa0\x80 "
				    "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 end\xc3");
	assert_non_null(strstr(line, "\"msg\":\"svc=ok \\ufffd( \\ufffd \\ufffd\\ufffd "
				     "\\ufffd\\ufffd\\ufffd \xc3\xa9 \xe2\x82\xac "
				     "\xf0\x9f\x98\x80 end\\ufffd\"}\n"));
	json_error_t err;
	json_t *o = json_loads(line, 0, &err);
	if (!o)
		fail_msg("not JSON (%s): %s", err.text, line);
	json_decref(o);
}

static void test_long_message_is_one_cut_line(void **state)
{
	char big[3000];
	memset(big, '\n', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	const char *line = captured(LOG_FORMAT_TEXT, big);
	assert_int_equal(count_char(line, '\n'), 1);
	assert_int_equal(line[strlen(line) - 1], '\n');
	assert_true(strlen(line) <= 2048);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_escapes_control_bytes),
		cmocka_unit_test(test_text_plain_message_unchanged),
		cmocka_unit_test(test_json_escapes_control_bytes),
		cmocka_unit_test(test_json_line_is_utf8_whatever_the_bytes),
		cmocka_unit_test(test_long_message_is_one_cut_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
