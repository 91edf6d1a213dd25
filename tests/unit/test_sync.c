/*
 * Unit tests for sync's pure parts: which child names may become files,
 * and when a file needs writing (content-unchanged decisions); and a
 * children entry whose ZooKeeper never answers (its zkset waits: nothing in
 * dir is touched, not even the files its manifest names). The atomic
 * replacement sync writes with is util's, tested in test_util.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>

#include "sync.h"
#include "config.h"
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

static void test_names_and_admit(void **state)
{
	char *globs[] = { "*.conf", "app-?.yaml" };
	struct sync_conf c = { .names = globs, .n_names = 2, .max_children = 2 };

	assert_true(sync_name_listed(globs, 2, "web.conf"));
	assert_true(sync_name_listed(globs, 2, "app-1.yaml"));
	assert_false(sync_name_listed(globs, 2, "evil"));
	assert_false(sync_name_listed(globs, 2, "x.conf.swp"));
	assert_false(sync_name_listed(globs, 2, "app-10.yaml"));
	assert_true(sync_name_listed(NULL, 0, "anything"));

	assert_int_equal(sync_child_admit(&c, 0, "a.conf"), SYNC_ADMIT_OK);
	assert_int_equal(sync_child_admit(&c, 1, "b.conf"), SYNC_ADMIT_OK);
	assert_int_equal(sync_child_admit(&c, 2, "c.conf"), SYNC_ADMIT_TOO_MANY);
	assert_int_equal(sync_child_admit(&c, 0, "evil"), SYNC_ADMIT_NOT_LISTED);
	/* a leading dot is refused before any glob could match it (no FNM_PERIOD needed) */
	assert_int_equal(sync_child_admit(&c, 0, ".x.conf"), SYNC_ADMIT_BAD_NAME);
	assert_int_equal(sync_child_admit(&c, 0, "a/b.conf"), SYNC_ADMIT_BAD_NAME);

	assert_true(sync_size_fits(0, 0, 10, 10));
	assert_false(sync_size_fits(0, 0, 11, 10));
	assert_true(sync_size_fits(8, 4, 6, 10));	/* a child grows within the total */
	assert_false(sync_size_fits(8, 4, 7, 10));
	assert_true(sync_size_fits(10, 10, 10, 10));	/* rewritten at the same size */
	assert_false(sync_size_fits(UINT64_MAX - 1, 0, 5, UINT64_MAX));	/* no wrap */
	assert_true(sync_size_fits(3, 5, 0, 1));	/* a total below old_len cannot wrap */
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

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static bool exists_in(const char *dir, const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

static void test_children_wait_for_zookeeper(void **state)
{
	char dir[] = "/tmp/zklb-test-sync-XXXXXX", path[256];
	struct event_base *base = event_base_new();
	struct sync_conf conf = {
		.path = "/config/app",
		.children = true,
		.mode = 0644,
		.on_change_timeout_ms = 30000,
		.on_delete = SYNC_DELETE_REMOVE,
		.max_size = 1 << 20,
	};
	struct sync_stats st;
	struct sync *s;

	assert_non_null(mkdtemp(dir));
	conf.dir = dir;
	/* a file zklb wrote in an earlier run, and the manifest that says so */
	write_file(dir, "app.properties", "k=v\n");
	write_file(dir, SYNC_MANIFEST, "app.properties\n");
	s = sync_new(base, NULL);
	sync_apply(s, &conf, 1);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(sync_count(s), 1);
	sync_stats(s, 0, &st);
	assert_int_equal(st.state, SYNC_WAITING);
	assert_string_equal(st.path, "/config/app");
	assert_string_equal(st.target, dir);
	assert_int_equal(st.writes_total + st.removals_total + st.errors_total, 0);
	/* no answer is not "absent": on_delete does not apply, the files stay */
	assert_true(exists_in(dir, "app.properties"));
	assert_true(exists_in(dir, SYNC_MANIFEST));
	/* a reload that drops the entry leaves them too */
	sync_apply(s, NULL, 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(sync_count(s), 0);
	assert_true(exists_in(dir, "app.properties"));
	assert_true(exists_in(dir, SYNC_MANIFEST));
	sync_free(s);
	event_base_free(base);
	snprintf(path, sizeof(path), "%s/app.properties", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s", dir, SYNC_MANIFEST);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_child_names),
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_names_and_admit),
		cmocka_unit_test(test_children_wait_for_zookeeper),
	};
	return cmocka_run_group_tests_name("sync", tests, NULL, NULL);
}
