/*
 * Unit tests for command: the output kept for the log line (pure), and one
 * real run of each outcome on a private event base — exit status, output,
 * a timeout that kills the process group, a signal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>
#include <cmocka.h>

#include "command.h"

static void test_output_lines(void **state)
{
	struct command_output o;

	memset(&o, 0, sizeof(o));
	command_output_add(&o, "reloading\r\n", 11);
	assert_string_equal(o.text, "reloading");
	command_output_add(&o, "\n\nok", 4);
	command_output_add(&o, " done\n", 6);
	assert_string_equal(o.text, "reloading | ok done");
	assert_false(o.cut);
	command_output_add(&o, "3\n4\n5\n6\n", 8);
	assert_string_equal(o.text, "reloading | ok done | 3 | 4...");
	assert_true(o.cut);
	command_output_add(&o, "more", 4);
	assert_string_equal(o.text, "reloading | ok done | 3 | 4...");

	memset(&o, 0, sizeof(o));
	command_output_add(&o, "a\x01\x7f" "b\tc", 6);
	assert_string_equal(o.text, "a??b\tc");
}

static void test_output_bytes(void **state)
{
	struct command_output o;
	char big[2000];

	memset(&o, 0, sizeof(o));
	memset(big, 'x', sizeof(big));
	command_output_add(&o, big, sizeof(big));
	assert_true(o.cut);
	assert_true(o.len < COMMAND_OUTPUT_MAX);
	assert_int_equal(strlen(o.text), o.len);
	assert_string_equal(o.text + o.len - 3, "...");
}

struct run {
	struct event_base *base;
	bool done;
	struct command_result r;
	char output[COMMAND_OUTPUT_MAX];
};

static void on_done(void *arg, const struct command_result *r)
{
	struct run *x = arg;

	x->done = true;
	x->r = *r;
	snprintf(x->output, sizeof(x->output), "%s", r->output);
	x->r.output = x->output;
	event_base_loopbreak(x->base);
}

static void run(struct run *x, const char *line, uint64_t timeout_ms)
{
	char err[256];
	struct timeval limit = { 10, 0 };

	memset(x, 0, sizeof(*x));
	x->base = event_base_new();
	assert_non_null(command_start(x->base, line, timeout_ms, on_done, x, err, sizeof(err)));
	event_base_loopexit(x->base, &limit);
	event_base_dispatch(x->base);
	event_base_free(x->base);
	assert_true(x->done);
}

static void test_run_exit(void **state)
{
	struct run x;

	run(&x, "echo hello; echo err >&2; exit 3", 0);
	assert_true(x.r.exited);
	assert_int_equal(x.r.exit_code, 3);
	assert_false(x.r.timed_out);
	assert_string_equal(x.output, "hello | err");

	run(&x, "true", 5000);
	assert_true(x.r.exited);
	assert_int_equal(x.r.exit_code, 0);
	assert_string_equal(x.output, "");
}

static void test_run_timeout(void **state)
{
	struct run x;

	/* the shell and its child are killed together (process group) */
	run(&x, "echo started; sleep 30 & wait", 200);
	assert_true(x.r.timed_out);
	assert_false(x.r.exited);
	/* libevent times with the coarse monotonic clock: a few ms early is fine */
	assert_true(x.r.elapsed_ms >= 150 && x.r.elapsed_ms < 5000);
	assert_string_equal(x.output, "started");
}

/* Is pid alive (not a zombie we could still see)? */
static bool alive(long pid)
{
	char path[64], buf[512];
	FILE *f;
	bool live = false;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (fgets(buf, sizeof(buf), f)) {
		const char *rp = strrchr(buf, ')');
		live = rp && rp[1] == ' ' && rp[2] != 'Z';
	}
	fclose(f);
	return live;
}

static void test_timeout_kills_child_ignoring_term(void **state)
{
	char dir[] = "/tmp/zklb-test-command-XXXXXX", pidfile[128], line[512];
	struct run x;
	long pid = 0;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(pidfile, sizeof(pidfile), "%s/pid", dir);
	/*
	 * The outer shell dies of SIGTERM; its child ignores SIGTERM (and so does
	 * the sleep it runs) and would live on: it must die with the group.
	 */
	snprintf(line, sizeof(line),
		 "sh -c 'trap \"\" TERM; echo $$ > %s; sleep 30; :' & wait", pidfile);
	run(&x, line, 300);
	assert_true(x.r.timed_out);
	f = fopen(pidfile, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%ld", &pid), 1);
	fclose(f);
	/* SIGKILL is asynchronous: give the kernel a bounded moment */
	for (int i = 0; i < 200 && alive(pid); i++)
		usleep(10000);
	assert_false(alive(pid));
	unlink(pidfile);
	rmdir(dir);
}

static void test_run_signal(void **state)
{
	struct run x;

	run(&x, "kill -9 $$", 0);
	assert_false(x.r.exited);
	assert_int_equal(x.r.signal, 9);
	assert_false(x.r.timed_out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_output_lines),
		cmocka_unit_test(test_output_bytes),
		cmocka_unit_test(test_run_exit),
		cmocka_unit_test(test_run_timeout),
		cmocka_unit_test(test_run_signal),
		cmocka_unit_test(test_timeout_kills_child_ignoring_term),
	};
	return cmocka_run_group_tests_name("command", tests, NULL, NULL);
}
