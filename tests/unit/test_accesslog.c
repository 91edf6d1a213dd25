/*
 * Unit tests for accesslog: a record formats to exactly one line in both
 * formats even when its ZooKeeper-sourced values carry quotes, spaces,
 * newlines and escape bytes; the JSON line parses (jansson) back to the
 * record's values; a full ring refuses a record and counts it, and a ring
 * that was drained takes records again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "accesslog.h"

static struct accesslog_record sample(void)
{
	struct accesslog_record r = { 0 };
	r.end_wall_ms = 1764900000123ull;	/* 2025-12-05T02:00:00.123Z */
	r.connect_ms = 3;
	r.total_ms = 1500;
	r.bytes_in = 812;
	r.bytes_out = 77;
	r.attempts = 2;
	r.established = true;
	r.reused = false;
	r.end = "backend_closed";
	snprintf(r.service, sizeof(r.service), "web");
	snprintf(r.client, sizeof(r.client), "127.0.0.1:40312");
	snprintf(r.backend, sizeof(r.backend), "10.0.0.5:9001");
	/* An id from ZooKeeper trying to end the line and fake a field. */
	snprintf(r.backend_id, sizeof(r.backend_id), "i-1\" end=forged\n\x1b[2J x");
	return r;
}

static size_t count_char(const char *s, char c)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == c;
	return n;
}

static void test_text_is_one_line_with_escaped_id(void **state)
{
	struct accesslog_record r = sample();
	char buf[2048];
	size_t n = accesslog_format(&r, LOG_FORMAT_TEXT, buf, sizeof(buf));
	assert_int_equal(n, strlen(buf));
	assert_int_equal(count_char(buf, '\n'), 1);
	assert_int_equal(buf[n - 1], '\n');
	assert_null(strchr(buf, '\x1b'));
	assert_non_null(strstr(buf, "2025-12-05T02:00:00.123Z svc=\"web\" client=\"127.0.0.1:40312\" "
				    "backend=\"10.0.0.5:9001\""));
	assert_non_null(strstr(buf, "id=\"i-1\\\" end=forged\\u000a\\u001b[2J x\""));
	assert_non_null(strstr(buf, " attempts=2 connect_ms=3 total_ms=1500 bytes_in=812 "
				    "bytes_out=77 established=true reused=false end=backend_closed\n"));
	/* The forged field is inside the quoted id: the last end= is the real one. */
	assert_string_equal(strrchr(buf, '=') + 1, "backend_closed\n");
}

static void test_json_parses_back(void **state)
{
	struct accesslog_record r = sample();
	char buf[2048];
	size_t n = accesslog_format(&r, LOG_FORMAT_JSON, buf, sizeof(buf));
	assert_int_equal(count_char(buf, '\n'), 1);
	json_error_t err;
	json_t *o = json_loadb(buf, n, 0, &err);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "ts")), "2025-12-05T02:00:00.123Z");
	assert_string_equal(json_string_value(json_object_get(o, "service")), "web");
	assert_string_equal(json_string_value(json_object_get(o, "id")), r.backend_id);
	assert_string_equal(json_string_value(json_object_get(o, "end")), "backend_closed");
	assert_int_equal(json_integer_value(json_object_get(o, "bytes_in")), 812);
	assert_int_equal(json_integer_value(json_object_get(o, "bytes_out")), 77);
	assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 2);
	assert_int_equal(json_integer_value(json_object_get(o, "connect_ms")), 3);
	assert_int_equal(json_integer_value(json_object_get(o, "total_ms")), 1500);
	assert_true(json_is_true(json_object_get(o, "established")));
	assert_true(json_is_false(json_object_get(o, "reused")));
	json_decref(o);
}

static void test_long_values_still_one_line(void **state)
{
	struct accesslog_record r = sample();
	memset(r.backend, '"', sizeof(r.backend) - 1);
	r.backend[sizeof(r.backend) - 1] = '\0';
	memset(r.backend_id, '\n', sizeof(r.backend_id) - 1);
	r.backend_id[sizeof(r.backend_id) - 1] = '\0';
	char buf[2048];
	for (int f = LOG_FORMAT_TEXT; f <= LOG_FORMAT_JSON; f++) {
		size_t n = accesslog_format(&r, (enum log_format)f, buf, sizeof(buf));
		assert_int_equal(count_char(buf, '\n'), 1);
		assert_int_equal(buf[n - 1], '\n');
	}
	/* A buffer too small for a line gets nothing rather than half a line. */
	char tiny[16];
	assert_int_equal(accesslog_format(&r, LOG_FORMAT_TEXT, tiny, sizeof(tiny)), 0);
}

/*
 * Any buffer of 64 bytes or more, with a field cut anywhere: the line stays
 * within the buffer (a canary byte just past it is never written), ends in
 * one newline, and the length returned is at most len - 1.
 */
static void test_every_cut_stays_in_the_buffer(void **state)
{
	struct accesslog_record r = sample();
	char buf[512];
	for (int f = LOG_FORMAT_TEXT; f <= LOG_FORMAT_JSON; f++) {
		for (size_t cl = 0; cl < sizeof(r.client); cl++) {
			memset(r.client, 'c', cl);
			r.client[cl] = '\0';
			for (size_t len = 64; len < 256; len++) {
				memset(buf, 'Z', sizeof(buf));
				size_t n = accesslog_format(&r, (enum log_format)f, buf, len);
				if (buf[len] != 'Z')
					fail_msg("format %d, client of %zu bytes, buffer of %zu: wrote "
						 "past the end", f, cl, len);
				assert_true(n <= len - 1);
				assert_int_equal(n, strlen(buf));
				assert_int_equal(count_char(buf, '\n'), 1);
				assert_int_equal(buf[n - 1], '\n');
			}
		}
	}
}

static void test_ring_full_drops_and_counts(void **state)
{
	char err[256];
	struct accesslog *al = accesslog_new("stderr", LOG_FORMAT_TEXT, 2, err, sizeof(err));
	assert_non_null(al);
	struct accesslog_ring *ring = accesslog_ring(al, 1);
	assert_non_null(ring);
	assert_null(accesslog_ring(al, 2));
	struct accesslog_record r = sample();
	for (int i = 0; i < ACCESSLOG_RING_SLOTS; i++)
		assert_true(accesslog_push(ring, &r));
	assert_false(accesslog_push(ring, &r));
	assert_false(accesslog_push(ring, &r));
	struct accesslog_stats st;
	accesslog_stats(al, &st);
	assert_int_equal(st.dropped, 2);
	/* The logger (never started here) takes one: a slot is free again. */
	atomic_store(&ring->tail, 1);
	assert_true(accesslog_push(ring, &r));
	assert_false(accesslog_push(ring, &r));
	accesslog_stats(al, &st);
	assert_int_equal(st.dropped, 3);
	accesslog_free(al);
}

static void test_unopenable_target_says_why(void **state)
{
	char err[256] = "";
	struct accesslog *al = accesslog_new("/nonexistent-dir/access.log", LOG_FORMAT_TEXT, 1, err,
					     sizeof(err));
	assert_null(al);
	assert_non_null(strstr(err, "cannot open /nonexistent-dir/access.log"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_is_one_line_with_escaped_id),
		cmocka_unit_test(test_json_parses_back),
		cmocka_unit_test(test_long_values_still_one_line),
		cmocka_unit_test(test_every_cut_stays_in_the_buffer),
		cmocka_unit_test(test_ring_full_drops_and_counts),
		cmocka_unit_test(test_unopenable_target_says_why),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
