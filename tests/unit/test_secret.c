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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_and_drops_one_newline),
		cmocka_unit_test(test_refuses_readable_by_others),
		cmocka_unit_test(test_refuses_bad_content),
		cmocka_unit_test(test_refuses_missing_and_directories),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
