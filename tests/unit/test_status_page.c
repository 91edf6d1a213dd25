/*
 * Unit tests for status_page's pure pieces: the connection rate over a ring
 * of samples, durations and instance states as the page writes them, and
 * the renderer, which must escape every string of a hostile document (an
 * instance id from ZooKeeper holding markup and quotes) and keep the
 * document's structure (one <tr> per row, one <td> per cell).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "status_page.h"

static void test_rate_needs_two_samples(void **state)
{
	struct status_rate r = { 0 };
	assert_true(status_rate_per_s(&r) < 0);
	status_rate_add(&r, 1000, 5);
	assert_true(status_rate_per_s(&r) < 0);
	status_rate_add(&r, 2000, 15);
	assert_true(status_rate_per_s(&r) > 9.99 && status_rate_per_s(&r) < 10.01);
}

static void test_rate_is_over_the_window(void **state)
{
	struct status_rate r = { 0 };
	/* 100/s for 20 s, then nothing for 5 s: the window holds the last 10 s. */
	uint64_t t;
	for (t = 0; t <= 20; t++)
		status_rate_add(&r, t * 1000, t * 100);
	double before = status_rate_per_s(&r);
	assert_true(before > 99.9 && before < 100.1);
	for (; t <= 25; t++)
		status_rate_add(&r, t * 1000, 2000);
	/* 10 s window: 5 s at 100/s, 5 s at 0 → 50/s. */
	double after = status_rate_per_s(&r);
	assert_true(after > 49.9 && after < 50.1);
	for (; t <= 35; t++)
		status_rate_add(&r, t * 1000, 2000);
	assert_true(status_rate_per_s(&r) == 0.0);
}

static void test_rate_counter_reset_is_unknown(void **state)
{
	struct status_rate r = { 0 };
	status_rate_add(&r, 1000, 50);
	status_rate_add(&r, 2000, 3);	/* a new service under the old name */
	assert_true(status_rate_per_s(&r) < 0);
}

static void test_duration(void **state)
{
	char b[32];
	status_duration(950, b, sizeof(b));
	assert_string_equal(b, "950ms");
	status_duration(12500, b, sizeof(b));
	assert_string_equal(b, "12s");
	status_duration(184000, b, sizeof(b));
	assert_string_equal(b, "3m04s");
	status_duration(7500000, b, sizeof(b));
	assert_string_equal(b, "2h05m");
	status_duration(3ull * 86400000 + 4 * 3600000 + 1, b, sizeof(b));
	assert_string_equal(b, "3d04h");
}

static void test_instance_state(void **state)
{
	char b[64];
	status_instance_state("ejected", 12000, 100, b, sizeof(b));
	assert_string_equal(b, "ejected, 12s left");
	status_instance_state("healthy", 0, 40, b, sizeof(b));
	assert_string_equal(b, "healthy, slow start 40%");
	status_instance_state("healthy", 0, 100, b, sizeof(b));
	assert_string_equal(b, "healthy");
	/* A state this code does not know yet is shown as it comes. */
	status_instance_state("refused: sslPort only", 0, 100, b, sizeof(b));
	assert_string_equal(b, "refused: sslPort only");
}

static char *rendered(const json_t *doc)
{
	struct evbuffer *b = evbuffer_new();
	status_page_render(doc, b);
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

static size_t count(const char *s, const char *needle)
{
	size_t n = 0;
	for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static void test_render_escapes_everything(void **state)
{
	const char *evil = "x\"'><script>alert(1)</script>&amp;";
	json_t *doc = json_pack(
		"{s:s, s:[[ss]], s:[{s:s, s:[[sss]], s:[ss], s:[{s:s, s:[ss]}, {s:s, s:[ss]}]}]}",
		"title", evil, "facts", "zookeeper", evil,
		"tables", "title", evil, "facts", evil, evil, "warn",
		"columns", "instance", evil,
		"rows", "class", "healthy", "cells", evil, "127.0.0.1:1",
		"class", "x\" onmouseover=\"alert(1)", "cells", "b", evil);
	assert_non_null(doc);
	char *html = rendered(doc);
	assert_null(strstr(html, "<script"));
	assert_null(strstr(html, "\"'>"));
	assert_null(strstr(html, "\" onmouseover"));
	/* Each hostile string appears escaped, once per place it was put. */
	assert_int_equal(count(html, "x&quot;&#39;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;amp;"), 8);
	/* The structure: one table, a header of two, two rows of two cells. */
	assert_int_equal(count(html, "<table>"), 1);
	assert_int_equal(count(html, "<th>"), 2);
	assert_int_equal(count(html, "<tr class="), 2);
	assert_int_equal(count(html, "<td>"), 4);
	assert_int_equal(count(html, "<span class=\"warn\">"), 1);
	free(html);
	json_decref(doc);
}

static void test_render_survives_a_malformed_document(void **state)
{
	/* Missing and mistyped members render as empty, never crash. */
	json_t *doc = json_pack("{s:i, s:[i, [], [s]], s:[{s:[i]}, i]}", "title", 3, "facts", 1,
				"x", "tables", "rows", 5, 7);
	char *html = rendered(doc);
	assert_non_null(strstr(html, "<div id=\"main\">"));
	free(html);
	json_decref(doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rate_needs_two_samples),
		cmocka_unit_test(test_rate_is_over_the_window),
		cmocka_unit_test(test_rate_counter_reset_is_unknown),
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_instance_state),
		cmocka_unit_test(test_render_escapes_everything),
		cmocka_unit_test(test_render_survives_a_malformed_document),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
