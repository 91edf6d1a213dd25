/*
 * Unit tests for render's pure policy: quiescence (min/max) and which values
 * from ZooKeeper may reach a rendered file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "render.h"

static void test_wait_quiet_period(void **state)
{
	struct render_wait w;
	memset(&w, 0, sizeof(w));
	assert_true(render_wait_due(&w, 500, 5000) == UINT64_MAX);
	render_wait_change(&w, 1000);
	assert_int_equal(render_wait_due(&w, 500, 5000), 1500);
	/* Each change inside the quiet period pushes it back... */
	render_wait_change(&w, 1400);
	assert_int_equal(render_wait_due(&w, 500, 5000), 1900);
	render_wait_done(&w);
	assert_true(render_wait_due(&w, 500, 5000) == UINT64_MAX);
}

static void test_wait_storm_capped_by_max(void **state)
{
	struct render_wait w;
	memset(&w, 0, sizeof(w));
	/* 30 changes 100 ms apart: never quiet for 500 ms, so max decides. */
	unsigned writes = 0;
	uint64_t due = UINT64_MAX;
	for (uint64_t t = 10000; t <= 12900; t += 100) {
		if (t >= due) {
			writes++;
			render_wait_done(&w);
		}
		render_wait_change(&w, t);
		due = render_wait_due(&w, 500, 2000);
		assert_true(due <= w.first_ms + 2000);
	}
	assert_int_equal(writes, 1);		/* at 12000: 2 s after the first */
	assert_int_equal(due, 13400);		/* and once more after the storm */
	/* max below min: max still bounds the delay. */
	render_wait_done(&w);
	render_wait_change(&w, 100);
	assert_int_equal(render_wait_due(&w, 5000, 1000), 1100);
}

static void test_host_values(void **state)
{
	const char *ok[] = {
		"10.0.0.1", "::1", "fd00::7", "2001:db8::1:2", "web-1.example.com", "a", "x.y",
		"localhost", "123.example", "::ffff:10.0.0.1",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!render_host_ok(ok[i]))
			fail_msg("'%s' refused", ok[i]);
	const char *bad[] = {
		"", "a b", "a;", "a\nserver evil:1;", "-a.com", "a-.com", "a..b", ".a", "a.",
		"[::1]", "a/b", "a{", "a}", "host:80", "a_b.com", "fe80::1%eth0",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (render_host_ok(bad[i]))
			fail_msg("'%s' accepted", bad[i]);
}

static void test_token_values(void **state)
{
	assert_true(render_token_ok("i-0abc_1.2:3"));
	assert_true(render_token_ok("eu-west-1a"));
	const char *bad[] = { "", "a b", "a;b", "a\nb", "a{b", "a}b", "a\"b", "a'b", "a#b", "a$b",
			      "a/b", "a\\b", "a=b", "a,b", "\x7f" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (render_token_ok(bad[i]))
			fail_msg("'%s' accepted", bad[i]);
	char long_token[RENDER_TOKEN_MAX + 2];
	memset(long_token, 'a', sizeof(long_token) - 1);
	long_token[sizeof(long_token) - 1] = '\0';
	assert_false(render_token_ok(long_token));
	long_token[RENDER_TOKEN_MAX] = '\0';
	assert_true(render_token_ok(long_token));
}

static void test_once_sorts_and_leaves_out(void **state)
{
	static const char pl_ok[] = "zone\0a\0";
	static const char pl_bad[] = "zone\0a;b\0";
	const struct render_member v[] = {
		{ .id = "n", .host = "db.example", .port = 5, .weight = 1 },
		{ .id = "b", .host = "10.0.0.10", .port = 80, .weight = 2, .payload = pl_ok,
		  .payload_len = sizeof(pl_ok) - 1 },
		{ .id = "a", .host = "10.0.0.9", .port = 80, .weight = 1 },
		{ .id = "v6", .host = "::1", .port = 81, .weight = 1 },
		{ .id = "x y", .host = "10.0.0.1", .port = 1, .weight = 1 },
		{ .id = "c", .host = "10.0.0.2\nserver evil", .port = 1, .weight = 1 },
		{ .id = "p", .host = "10.0.0.3", .port = 1, .weight = 1, .payload = pl_bad,
		  .payload_len = sizeof(pl_bad) - 1 },
	};
	struct render_conf rc = { .service = "web", .file = "/nonexistent/x",
				  .template_text = "{{#instances}}{{id}}={{endpoint}}"
						   "{{#payload.zone}}@{{payload.zone}}{{/payload.zone}}"
						   "{{^last}},{{/last}}{{/instances}}" };
	size_t len, left;
	char err[128];
	char *out = render_once(&rc, v, sizeof(v) / sizeof(v[0]), &len, &left, err, sizeof(err));
	assert_non_null(out);
	/* Numeric order for IPv4 (9 before 10), then IPv6, then names. */
	assert_string_equal(out, "a=10.0.0.9:80,b=10.0.0.10:80@a,v6=[::1]:81,n=db.example:5");
	assert_int_equal(left, 3);
	free(out);
	/* Payload values are checked only when the template shows them. */
	rc.template_text = "{{#instances}}{{id}} {{/instances}}";
	out = render_once(&rc, v, sizeof(v) / sizeof(v[0]), &len, &left, err, sizeof(err));
	assert_string_equal(out, "p a b v6 n ");
	assert_int_equal(left, 2);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wait_quiet_period),
		cmocka_unit_test(test_wait_storm_capped_by_max),
		cmocka_unit_test(test_host_values),
		cmocka_unit_test(test_token_values),
		cmocka_unit_test(test_once_sorts_and_leaves_out),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
