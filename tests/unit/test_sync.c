/*
 * Unit tests for sync's pure parts — which child names may become files,
 * and when a file needs writing (content-unchanged decisions) — and for the
 * atomic file replacement sync writes with (util's file_write_atomic):
 * bytes, mode, no temporary file left, a missing directory refused.
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

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	if (d)
		closedir(d);
	return n;
}

static void test_write_atomic(void **state)
{
	char dir[] = "/tmp/zklb-test-sync-XXXXXX", path[128], buf[64], err[256];
	struct stat st;
	FILE *f;
	size_t n;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/app.conf", dir);
	assert_int_equal(file_write_atomic(path, "one\n", 4, 0640, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_size, 4);
	/* replace: new bytes, new mode, nothing else left in the directory */
	assert_int_equal(file_write_atomic(path, "second\n", 7, 0600, err, sizeof(err)), 0);
	f = fopen(path, "rb");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "second\n", 7);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(count_entries(dir), 1);
	/* an empty file is a file */
	assert_int_equal(file_write_atomic(path, "", 0, 0644, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	/* a missing directory: refused with a message, nothing created */
	snprintf(path, sizeof(path), "%s/nodir/app.conf", dir);
	assert_true(file_write_atomic(path, "x", 1, 0644, err, sizeof(err)) < 0);
	assert_true(strlen(err) > 0);
	assert_int_equal(count_entries(dir), 1);
	snprintf(path, sizeof(path), "%s/app.conf", dir);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_child_names),
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_write_atomic),
	};
	return cmocka_run_group_tests_name("sync", tests, NULL, NULL);
}
