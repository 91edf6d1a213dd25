/*
 * Unit tests for cache: round trip through a temporary directory, atomic
 * replacement (no temporary file left behind), and every way a file is
 * refused (missing, corrupt, other source, bad instance, unsafe name).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cache.h"

#define SRC "curator:/services/web"

struct fixture {
	char dir[64];
	char err[512];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/zklb-test-cache-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	DIR *d = opendir(f->dir);
	struct dirent *e;
	char p[512];
	while (d && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
			unlink(p);
		}
	}
	if (d)
		closedir(d);
	rmdir(f->dir);
	free(f);
	return 0;
}

static struct instance mk(const char *id, const char *host, uint16_t port, uint16_t ssl)
{
	struct instance i;
	memset(&i, 0, sizeof(i));
	snprintf(i.id, sizeof(i.id), "%s", id);
	snprintf(i.host, sizeof(i.host), "%s", host);
	i.port = port;
	i.ssl_port = ssl;
	i.weight = 1;
	i.enabled = true;
	return i;
}

static void write_text(struct fixture *f, const char *name, const char *text)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", f->dir, name);
	FILE *fp = fopen(p, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static size_t count_files(struct fixture *f)
{
	DIR *d = opendir(f->dir);
	struct dirent *e;
	size_t n = 0;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	}
	closedir(d);
	return n;
}

static void test_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct instance v[3] = { mk("c", "10.0.0.3", 3, 0), mk("a", "::1", 1, 443),
				 mk("b", "h.example", 0, 8443) };
	struct instance *out = NULL;
	uint64_t written = 0;
	size_t n = 0;
	struct stat st;
	char p[512];

	assert_int_equal(cache_save(f->dir, "web", SRC, v, 3, f->err, sizeof(f->err)), 0);
	assert_int_equal(count_files(f), 1);	/* no temporary left */
	snprintf(p, sizeof(p), "%s/web.json", f->dir);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);

	assert_int_equal(cache_load(f->dir, "web", SRC, &out, &n, &written, f->err,
				    sizeof(f->err)),
			 0);
	assert_int_equal(n, 3);
	assert_true(written > 1600000000000ULL);
	/* Sorted by id on the way back. */
	assert_string_equal(out[0].id, "a");
	assert_string_equal(out[0].host, "::1");
	assert_int_equal(out[0].ssl_port, 443);
	assert_string_equal(out[1].id, "b");
	assert_int_equal(out[1].port, 0);
	assert_int_equal(out[1].ssl_port, 8443);
	assert_string_equal(out[2].id, "c");
	assert_true(instance_same(&out[2], &v[0]));
	free(out);
}

static void test_replace_and_empty(void **state)
{
	struct fixture *f = *state;
	struct instance v[2] = { mk("a", "h", 1, 0), mk("b", "h", 2, 0) };
	struct instance *out = NULL;
	size_t n = 99;

	assert_int_equal(cache_save(f->dir, "web", SRC, v, 2, f->err, sizeof(f->err)), 0);
	assert_int_equal(cache_save(f->dir, "web", SRC, v + 1, 1, f->err, sizeof(f->err)), 0);
	assert_int_equal(cache_load(f->dir, "web", SRC, &out, &n, NULL, f->err, sizeof(f->err)),
			 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].id, "b");
	free(out);

	assert_int_equal(cache_save(f->dir, "web", SRC, NULL, 0, f->err, sizeof(f->err)), 0);
	assert_int_equal(cache_load(f->dir, "web", SRC, &out, &n, NULL, f->err, sizeof(f->err)),
			 0);
	assert_int_equal(n, 0);
	assert_null(out);
	assert_int_equal(count_files(f), 1);
}

static void test_missing(void **state)
{
	struct fixture *f = *state;
	struct instance *out = (struct instance *)1;
	size_t n = 7;

	assert_int_equal(cache_load(f->dir, "web", SRC, &out, &n, NULL, f->err, sizeof(f->err)),
			 -ENOENT);
	assert_null(out);
	assert_int_equal(n, 0);
}

static void test_other_source(void **state)
{
	struct fixture *f = *state;
	struct instance v[1] = { mk("a", "h", 1, 0) };
	struct instance *out = NULL;
	size_t n;

	assert_int_equal(cache_save(f->dir, "web", SRC, v, 1, f->err, sizeof(f->err)), 0);
	assert_int_equal(cache_load(f->dir, "web", "serverset:/services/web", &out, &n, NULL,
				    f->err, sizeof(f->err)),
			 -ESTALE);
	assert_null(out);
	assert_non_null(strstr(f->err, SRC));
}

static void expect_corrupt(struct fixture *f, const char *text, const char *why)
{
	struct instance *out = NULL;
	size_t n = 5;

	write_text(f, "web.json", text);
	f->err[0] = '\0';
	assert_int_equal(cache_load(f->dir, "web", SRC, &out, &n, NULL, f->err, sizeof(f->err)),
			 -EINVAL);
	assert_null(out);
	assert_int_equal(n, 0);
	if (!strstr(f->err, why))
		fail_msg("error '%s' does not mention '%s'", f->err, why);
}

static void test_corrupt(void **state)
{
	struct fixture *f = *state;

	expect_corrupt(f, "", "not JSON");
	expect_corrupt(f, "\x01\x02garbage", "not JSON");
	expect_corrupt(f, "{\"format\":\"zklb-cache/1\",\"source\":\"" SRC "\",\"instances\":[",
		       "not JSON");
	expect_corrupt(f, "[]", "format");
	expect_corrupt(f, "{\"format\":\"zklb-cache/9\"}", "format");
	expect_corrupt(f, "{\"format\":\"zklb-cache/1\",\"instances\":[]}", "no source");
	expect_corrupt(f, "{\"format\":\"zklb-cache/1\",\"source\":\"" SRC "\"}",
		       "no instances");
	expect_corrupt(f,
		       "{\"format\":\"zklb-cache/1\",\"source\":\"" SRC "\",\"instances\":"
		       "[{\"id\":\"a\",\"address\":\"h\",\"port\":0}]}",
		       "instance 0");
	expect_corrupt(f,
		       "{\"format\":\"zklb-cache/1\",\"source\":\"" SRC "\",\"instances\":"
		       "[{\"address\":\"h\",\"port\":1}]}",
		       "no id");
	expect_corrupt(f,
		       "{\"format\":\"zklb-cache/1\",\"source\":\"" SRC "\",\"instances\":"
		       "[{\"id\":\"a\",\"address\":\"h\",\"port\":1,\"enabled\":false}]}",
		       "instance 0");
	expect_corrupt(f,
		       "{\"format\":\"zklb-cache/1\",\"source\":\"" SRC "\",\"instances\":"
		       "[{\"id\":\"a\",\"address\":\"h\",\"port\":1},"
		       "{\"id\":\"a\",\"address\":\"g\",\"port\":2}]}",
		       "duplicate");
}

static void test_not_a_file(void **state)
{
	struct fixture *f = *state;
	struct instance *out = NULL;
	char p[512];
	size_t n;

	snprintf(p, sizeof(p), "%s/web.json", f->dir);
	assert_int_equal(mkdir(p, 0755), 0);
	assert_int_equal(cache_load(f->dir, "web", SRC, &out, &n, NULL, f->err, sizeof(f->err)),
			 -EINVAL);
	rmdir(p);
}

static void test_names(void **state)
{
	struct fixture *f = *state;
	struct instance *out = NULL;
	size_t n;
	char long_name[200];
	(void)state;

	assert_true(cache_name_ok("web"));
	assert_true(cache_name_ok("web-api_v2.internal"));
	assert_false(cache_name_ok(""));
	assert_false(cache_name_ok(".hidden"));
	assert_false(cache_name_ok("../etc"));
	assert_false(cache_name_ok("a/b"));
	assert_false(cache_name_ok("sp ace"));
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_false(cache_name_ok(long_name));
	assert_int_equal(cache_save(f->dir, "../x", SRC, NULL, 0, f->err, sizeof(f->err)),
			 -EINVAL);
	assert_int_equal(cache_load(f->dir, "../x", SRC, &out, &n, NULL, f->err, sizeof(f->err)),
			 -EINVAL);
	assert_int_equal(count_files(f), 0);
}

static void test_creates_missing_dir(void **state)
{
	struct fixture *f = *state;
	struct instance v[1] = { mk("a", "h", 1, 0) };
	struct instance *out = NULL;
	char p[512], q[600];
	size_t n;

	snprintf(p, sizeof(p), "%s/missing/deeper", f->dir);
	assert_int_equal(cache_save(p, "web", SRC, v, 1, f->err, sizeof(f->err)), 0);
	assert_int_equal(cache_load(p, "web", SRC, &out, &n, NULL, f->err, sizeof(f->err)), 0);
	assert_int_equal(n, 1);
	free(out);
	snprintf(q, sizeof(q), "%s/web.json", p);
	unlink(q);
	rmdir(p);
	snprintf(p, sizeof(p), "%s/missing", f->dir);
	rmdir(p);
}

static void test_unwritable_dir(void **state)
{
	struct fixture *f = *state;
	char p[512];
	struct instance v[1] = { mk("a", "h", 1, 0) };

	/* A regular file where a directory should be: nothing can fix that. */
	write_text(f, "plainfile", "x");
	snprintf(p, sizeof(p), "%s/plainfile/sub", f->dir);
	f->err[0] = '\0';
	assert_true(cache_save(p, "web", SRC, v, 1, f->err, sizeof(f->err)) < 0);
	assert_true(strlen(f->err) > 0);
}

static void test_writer(void **state)
{
	struct fixture *f = *state;
	struct instance v[3] = { mk("a", "h", 1, 0), mk("b", "h", 2, 0), mk("c", "h", 3, 0) };
	struct instance *out = NULL;
	struct cache_writer *w;
	size_t n = 0;

	w = cache_writer_new(f->dir);
	assert_non_null(w);
	/* Many puts: the last one per service wins; nothing is lost at free. */
	for (size_t k = 0; k < 50; k++)
		cache_writer_put(w, "web", SRC, v, 1 + k % 3);
	cache_writer_put(w, "db", "curator:/services/db", v + 1, 1);
	cache_writer_put(w, "../bad", SRC, v, 1);
	cache_writer_free(w);

	assert_int_equal(cache_load(f->dir, "web", SRC, &out, &n, NULL, f->err, sizeof(f->err)),
			 0);
	assert_int_equal(n, 2);		/* 1 + 49 % 3 */
	free(out);
	assert_int_equal(cache_load(f->dir, "db", "curator:/services/db", &out, &n, NULL, f->err,
				    sizeof(f->err)),
			 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].id, "b");
	free(out);
	assert_int_equal(count_files(f), 2);

	w = cache_writer_new(f->dir);
	cache_writer_put(w, "x", SRC, NULL, 0);
	cache_writer_free(w);
	cache_writer_free(NULL);
}

static void test_writer_counts(void **state)
{
	struct fixture *f = *state;
	struct instance v[1] = { mk("a", "h", 1, 0) };
	struct cache_writer *w = cache_writer_new(f->dir);
	uint64_t written = 0, failed = 0;

	cache_writer_put(w, "ok", SRC, v, 1);
	cache_writer_put(w, "../bad", SRC, v, 1);
	for (int i = 0; i < 500 && written + failed < 2; i++) {
		usleep(2000);
		cache_writer_counts(w, &written, &failed);
	}
	assert_true(written == 1);
	assert_true(failed == 1);
	cache_writer_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replace_and_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_source, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_creates_missing_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unwritable_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_counts, setup, teardown),
	};
	return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
