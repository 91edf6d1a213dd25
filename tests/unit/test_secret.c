/*
 * Unit tests for secret: a password file is read (one trailing newline
 * dropped) only when others may not read it, is a regular file, not empty,
 * not too long, and holds no NUL byte. Files live in a fresh mkdtemp()
 * directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "secret.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/zklb-secret-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/pw", dir);
	return 0;
}

static int teardown(void **state)
{
	unlink(path);
	rmdir(dir);
	return 0;
}

static void put(const void *data, size_t len, mode_t mode)
{
	unlink(path);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_reads_and_drops_one_newline(void **state)
{
	char err[256];
	put("hunter2\r\n", 9, 0600);
	char *s = secret_read(path, err, sizeof(err));
	assert_non_null(s);
	assert_string_equal(s, "hunter2");
	secret_free(s);
	put("two\n\n", 5, 0640);
	s = secret_read(path, err, sizeof(err));
	assert_string_equal(s, "two\n");
	secret_free(s);
}

static void test_refuses_readable_by_others(void **state)
{
	char err[256];
	put("hunter2\n", 8, 0644);
	assert_null(secret_read(path, err, sizeof(err)));
	assert_non_null(strstr(err, "readable or writable by others (mode 0644)"));
	put("hunter2\n", 8, 0602);
	assert_null(secret_read(path, err, sizeof(err)));
}

static void test_refuses_bad_content(void **state)
{
	char err[256];
	char big[SECRET_MAX + 3];

	put("\n", 1, 0600);
	assert_null(secret_read(path, err, sizeof(err)));
	assert_non_null(strstr(err, "empty"));
	put("a\0b", 3, 0600);
	assert_null(secret_read(path, err, sizeof(err)));
	assert_non_null(strstr(err, "NUL"));
	memset(big, 'x', sizeof(big));
	put(big, SECRET_MAX + 1, 0600);
	assert_null(secret_read(path, err, sizeof(err)));
	assert_non_null(strstr(err, "too long"));
	/* exactly SECRET_MAX with CR LF is fine; one more byte before CR LF is not */
	big[SECRET_MAX] = '\r';
	big[SECRET_MAX + 1] = '\n';
	put(big, SECRET_MAX + 2, 0600);
	char *s = secret_read(path, err, sizeof(err));
	assert_non_null(s);
	assert_int_equal(strlen(s), SECRET_MAX);
	secret_free(s);
	big[SECRET_MAX] = 'x';
	big[SECRET_MAX + 1] = '\r';
	big[SECRET_MAX + 2] = '\n';
	put(big, SECRET_MAX + 3, 0600);
	assert_null(secret_read(path, err, sizeof(err)));
}

static void test_refuses_missing_and_directories(void **state)
{
	char err[256];
	unlink(path);
	assert_null(secret_read(path, err, sizeof(err)));
	assert_non_null(strstr(err, "No such file"));
	assert_null(secret_read(dir, err, sizeof(err)));
}

/* Is process pid blocked in open()/openat() now (its /proc syscall line)? */
static bool in_open(pid_t pid)
{
	char p[64], line[64] = "";
	snprintf(p, sizeof(p), "/proc/%d/syscall", (int)pid);
	FILE *f = fopen(p, "r");
	if (!f)
		return false;
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	long nr = strtol(line, NULL, 10);
	return line[0] && (nr == SYS_openat || nr == SYS_open);
}

/*
 * Anything but a regular file is refused without being opened: opening a
 * device or a FIFO is an act of its own (a watchdog device starts its
 * countdown, a FIFO's writer is let through). A writer blocked opening a
 * FIFO stays blocked while secret_read refuses the FIFO.
 */
static void test_refuses_without_opening(void **state)
{
	char err[256];
	unlink(path);
	assert_int_equal(mkfifo(path, 0600), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(path, O_WRONLY);	/* blocks until someone opens the read side */
		_exit(fd >= 0 ? 0 : 1);
	}
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	for (int i = 0; i < 300 && !in_open(pid); i++)
		nanosleep(&tick, NULL);
	assert_true(in_open(pid));

	assert_null(secret_read(path, err, sizeof(err)));
	assert_non_null(strstr(err, "not a regular file"));
	nanosleep(&tick, NULL);
	int status;
	pid_t done = waitpid(pid, &status, WNOHANG);

	/* Let the writer through ourselves, then reap it. */
	int fd = open(path, O_RDONLY | O_NONBLOCK);
	assert_true(fd >= 0);
	if (done == 0)
		assert_int_equal(waitpid(pid, &status, 0), pid);
	close(fd);
	unlink(path);
	assert_int_equal(done, 0);	/* 0: the writer was still blocked after secret_read */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_and_drops_one_newline),
		cmocka_unit_test(test_refuses_readable_by_others),
		cmocka_unit_test(test_refuses_bad_content),
		cmocka_unit_test(test_refuses_missing_and_directories),
		cmocka_unit_test(test_refuses_without_opening),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
