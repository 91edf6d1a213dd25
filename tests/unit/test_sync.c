/*
 * Unit tests for sync's pure parts: which child names may become files,
 * and when a file needs writing (content-unchanged decisions). The atomic
 * replacement sync writes with is util's, tested in test_util.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "sync.h"
#include "util.h"

static void test_child_names(void **state)
{
	char longest[SYNC_NAME_MAX + 2];

	assert_true(sync_child_name_ok("app.properties"));
	assert_true(sync_child_name_ok("10-web.conf"));
	assert_true(sync_child_name_ok("a b"));
	assert_true(sync_child_name_ok("x..y"));
	assert_true(sync_child_name_ok("caf\xc3\xa9"));
	assert_false(sync_child_name_ok(""));
	assert_false(sync_child_name_ok("."));
	assert_false(sync_child_name_ok(".."));
	assert_false(sync_child_name_ok(".hidden"));
	assert_false(sync_child_name_ok(SYNC_MANIFEST));
	assert_false(sync_child_name_ok("a/b"));
	assert_false(sync_child_name_ok("../etc/passwd"));
	assert_false(sync_child_name_ok("line\nbreak"));
	assert_false(sync_child_name_ok("tab\there"));
	assert_false(sync_child_name_ok("del\x7f"));
	memset(longest, 'a', sizeof(longest));
	longest[SYNC_NAME_MAX] = '\0';
	assert_true(sync_child_name_ok(longest));
	longest[SYNC_NAME_MAX] = 'a';
	longest[SYNC_NAME_MAX + 1] = '\0';
	assert_false(sync_child_name_ok(longest));
}

static void test_decide(void **state)
{
	const char *a = "key=1\n", *b = "key=2\n";

	/* no file: write */
	assert_int_equal(sync_decide(NULL, 0, 0, a, 6, 0644), SYNC_ACTION_WRITE);
	assert_int_equal(sync_decide(NULL, 0, 0, "", 0, 0644), SYNC_ACTION_WRITE);
	/* the same bytes and mode: nothing (no write, no command) */
	assert_int_equal(sync_decide(a, 6, 0644, a, 6, 0644), SYNC_ACTION_NONE);
	assert_int_equal(sync_decide("", 0, 0600, "", 0, 0600), SYNC_ACTION_NONE);
	/* the same bytes, another mode: chmod only */
	assert_int_equal(sync_decide(a, 6, 0600, a, 6, 0644), SYNC_ACTION_CHMOD);
	/* only permission bits count */
	assert_int_equal(sync_decide(a, 6, 0100644, a, 6, 0644), SYNC_ACTION_NONE);
	/* other bytes of the same length */
	assert_int_equal(sync_decide(a, 6, 0644, b, 6, 0644), SYNC_ACTION_WRITE);
	/* a longer file (read stops at len + 1) and a shorter one */
	assert_int_equal(sync_decide("key=1\nX", 7, 0644, a, 6, 0644), SYNC_ACTION_WRITE);
	assert_int_equal(sync_decide("key=", 4, 0644, a, 6, 0644), SYNC_ACTION_WRITE);
	/* an empty file against data */
	assert_int_equal(sync_decide("", 0, 0644, a, 6, 0644), SYNC_ACTION_WRITE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_child_names),
		cmocka_unit_test(test_decide),
	};
	return cmocka_run_group_tests_name("sync", tests, NULL, NULL);
}
