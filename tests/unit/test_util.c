/*
 * Unit tests for util's parsers: durations, sizes, host:port splitting and
 * address parsing. Only numeric hosts and "localhost" (from /etc/hosts), so no
 * test ever asks DNS. And the atomic file replacement (file_write_atomic):
 * bytes, mode, no temporary file left, a missing directory refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"
#include "utf8.h"

static uint64_t dur(const char *s)
{
	uint64_t ms = 12345;
	assert_true(duration_parse(s, &ms));
	return ms;
}

static void test_duration_parse(void **state)
{
	assert_int_equal(dur("250ms"), 250);
	assert_int_equal(dur("5s"), 5000);
	assert_int_equal(dur("2m"), 120000);
	assert_int_equal(dur("1h"), 3600000);
	assert_int_equal(dur("1d"), 86400000);
	assert_int_equal(dur("1.5s"), 1500);
	assert_int_equal(dur("0.3s"), 300);
	assert_int_equal(dur(".5s"), 500);
	assert_int_equal(dur("0"), 0);
	assert_int_equal(dur("0.0"), 0);
	assert_int_equal(dur("0s"), 0);
	assert_int_equal(dur("007s"), 7000);
	assert_int_equal(dur("1000000000000ms"), 1000000000000ull);

	static const char *const bad[] = {
		"", "s", "5", "1.5", "-1s", "+1s", "5x", "5 s", " 5s", "5s ", "5S", "5sec", "1e3s",
		".s", "1..5s", "5ms5", "99999999999999999999h", "1000000000000000001ms",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint64_t ms = 777;
		if (duration_parse(bad[i], &ms))
			fail_msg("duration_parse accepted '%s'", bad[i]);
		assert_int_equal(ms, 777);	/* untouched on failure */
	}
}

static void test_duration_format(void **state)
{
	static const struct { uint64_t ms; const char *s; } cases[] = {
		{ 0, "0ms" }, { 1, "1ms" }, { 999, "999ms" }, { 1000, "1s" }, { 1500, "1500ms" },
		{ 59000, "59s" }, { 60000, "1m" }, { 90000, "90s" }, { 3600000, "1h" },
		{ 86400000, "24h" },
	};
	char buf[32];
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		duration_format(cases[i].ms, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].s);
		/* What it prints, it parses back. */
		assert_int_equal(dur(buf), cases[i].ms);
	}
	/* A tiny buffer truncates rather than overflows. */
	char tiny[3];
	duration_format(1500, tiny, sizeof(tiny));
	assert_string_equal(tiny, "15");
}

static uint64_t size(const char *s)
{
	uint64_t b = 12345;
	assert_true(size_parse(s, &b));
	return b;
}

static void test_size_parse(void **state)
{
	assert_int_equal(size("0"), 0);
	assert_int_equal(size("512"), 512);
	assert_int_equal(size("512b"), 512);
	assert_int_equal(size("16k"), 16384);
	assert_int_equal(size("16K"), 16384);
	assert_int_equal(size("16kb"), 16384);
	assert_int_equal(size("16KB"), 16384);
	assert_int_equal(size("1m"), 1048576);
	assert_int_equal(size("1g"), 1073741824ull);
	assert_int_equal(size("1.5k"), 1536);
	assert_int_equal(size("0.5m"), 524288);
	/* Exact decimal fractions: summing 0.1-steps once made these non-integral. */
	assert_int_equal(size("0.75k"), 768);
	assert_int_equal(size("0.375k"), 384);
	assert_int_equal(size("1.5625k"), 1600);
	assert_int_equal(size("0.0009765625m"), 1024);

	static const char *const bad[] = {
		"", "k", "-1", "2.2m", "16q", "16 k", "16kk", "16bb", "1.1k", "0.3", "1e3", "16kib",
		"99999999999999999999g", "1000000g",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint64_t b = 777;
		if (size_parse(bad[i], &b))
			fail_msg("size_parse accepted '%s'", bad[i]);
		assert_int_equal(b, 777);
	}
}

static void test_split_host_port(void **state)
{
	char host[256];
	uint16_t port = 0;

	assert_true(net_split_host_port("127.0.0.1:8080", host, sizeof(host), &port));
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 8080);
	assert_true(net_split_host_port("[::1]:9", host, sizeof(host), &port));
	assert_string_equal(host, "::1");
	assert_int_equal(port, 9);
	assert_true(net_split_host_port("*:80", host, sizeof(host), &port));
	assert_string_equal(host, "*");
	assert_true(net_split_host_port("zk.example:65535", host, sizeof(host), &port));
	assert_int_equal(port, 65535);
	assert_true(net_split_host_port("h:0", host, sizeof(host), &port));	/* range is the caller's */
	assert_int_equal(port, 0);
	assert_true(net_split_host_port("h:00080", host, sizeof(host), &port));
	assert_int_equal(port, 80);

	static const char *const bad[] = {
		"", ":80", "h", "h:", "h:65536", "h:99999999999999999999", "h:-1", "h:+1", "h:8 0",
		"h:80 ", "::1:80", "[::1]", "[::1]80", "[]:80", "[::1:80", "a:b:80",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (net_split_host_port(bad[i], host, sizeof(host), &port))
			fail_msg("net_split_host_port accepted '%s'", bad[i]);

	/* The host must fit the buffer. */
	char small[4];
	assert_true(net_split_host_port("abc:1", small, sizeof(small), &port));
	assert_false(net_split_host_port("abcd:1", small, sizeof(small), &port));
	assert_false(net_split_host_port("[abcd]:1", small, sizeof(small), &port));
	char longhost[300];
	memset(longhost, 'a', 260);
	strcpy(longhost + 260, ":80");
	assert_false(net_split_host_port(longhost, host, sizeof(host), &port));
}

static void test_addr_parse(void **state)
{
	struct net_addr a;
	char err[128], buf[128];

	assert_true(net_addr_parse("127.0.0.1:9001", &a, err, sizeof(err)));
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_int_equal(a.len, sizeof(struct sockaddr_in));
	net_addr_format(&a, buf, sizeof(buf));
	assert_string_equal(buf, "127.0.0.1:9001");

	assert_true(net_addr_parse("[::1]:9001", &a, err, sizeof(err)));
	assert_int_equal(a.ss.ss_family, AF_INET6);
	net_addr_format(&a, buf, sizeof(buf));
	assert_string_equal(buf, "[::1]:9001");

	assert_true(net_addr_parse("*:8080", &a, err, sizeof(err)));
	assert_true(a.ss.ss_family == AF_INET || a.ss.ss_family == AF_INET6);

	assert_true(net_addr_parse("localhost:80", &a, err, sizeof(err)));

	assert_true(net_addr_parse("unix:/run/zklb/x.sock", &a, err, sizeof(err)));
	assert_int_equal(a.ss.ss_family, AF_UNIX);
	assert_int_equal(a.len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/zklb/x.sock") + 1);
	net_addr_format(&a, buf, sizeof(buf));
	assert_string_equal(buf, "unix:/run/zklb/x.sock");

	assert_false(net_addr_parse("unix:", &a, err, sizeof(err)));
	assert_non_null(strstr(err, "unix socket path"));
	char longpath[200] = "unix:/";
	memset(longpath + 6, 'p', 150);
	longpath[156] = '\0';
	assert_false(net_addr_parse(longpath, &a, err, sizeof(err)));

	assert_false(net_addr_parse("127.0.0.1:0", &a, err, sizeof(err)));
	assert_string_equal(err, "port must be 1..65535");
	assert_false(net_addr_parse("127.0.0.1", &a, err, sizeof(err)));
	assert_non_null(strstr(err, "is not host:port"));
}

static void test_sockaddr_is_loopback(void **state)
{
	static const struct {
		const char *host;
		bool loopback;
	} cases[] = {
		{ "127.0.0.1", true }, { "127.255.0.9", true }, { "::1", true },
		{ "::ffff:127.0.0.2", true }, { "128.0.0.1", false }, { "10.0.0.1", false },
		{ "126.255.255.255", false }, { "::2", false }, { "::ffff:10.0.0.1", false },
		{ "0.0.0.0", false }, { "::", false },
	};
	struct net_addr a;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_true(net_addr_numeric(cases[i].host, 80, &a));
		assert_int_equal(sockaddr_is_loopback((struct sockaddr *)&a.ss), cases[i].loopback);
	}
	char err[128];
	assert_true(net_addr_parse("unix:/run/zklb/x.sock", &a, err, sizeof(err)));
	assert_false(sockaddr_is_loopback((struct sockaddr *)&a.ss));
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
	char dir[] = "/tmp/zklb-test-util-XXXXXX", path[128], buf[64], err[256];
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

/* The fast path for literals says exactly what getaddrinfo(AI_NUMERICHOST) says. */
/* UTF-8 as RFC 3629 has it, at each boundary; the scrub keeps whole characters. */
static void test_utf8(void **state)
{
	static const struct {
		const char *s;
		size_t n;
	} v[] = {
		{ "", 1 }, { "a", 1 }, { "\x7f", 1 },
		{ "\x80", 0 }, { "\xbf", 0 }, { "\xc0\x80", 0 }, { "\xc1\xbf", 0 },
		{ "\xc2\x80", 2 }, { "\xdf\xbf", 2 }, { "\xc3", 0 }, { "\xc3(", 0 },
		{ "\xe0\x9f\xbf", 0 }, { "\xe0\xa0\x80", 3 }, { "\xed\x9f\xbf", 3 },
		{ "\xed\xa0\x80", 0 }, { "\xef\xbf\xbf", 3 }, { "\xe2\x82", 0 },
		{ "\xf0\x8f\xbf\xbf", 0 }, { "\xf0\x90\x80\x80", 4 }, { "\xf4\x8f\xbf\xbf", 4 },
		{ "\xf4\x90\x80\x80", 0 }, { "\xf5\x80\x80\x80", 0 }, { "\xff", 0 },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (utf8_char_len(v[i].s) != v[i].n)
			fail_msg("case %zu: %zu, not %zu", i, utf8_char_len(v[i].s), v[i].n);
	char s[] = "a\xc3\xa9\xc3 \xe2\x82\xac\xff\xf0\x9f\x98";
	utf8_scrub(s);
	assert_string_equal(s, "a\xc3\xa9? \xe2\x82\xac????");
}

static void test_numeric_matches_getaddrinfo(void **state)
{
	static const char *const hosts[] = {
		"10.0.0.5", "127.0.0.1", "0.0.0.0", "255.255.255.255", "::1", "::",
		"2001:db8::7", "::ffff:127.0.0.1", "fe80::1%lo", "2130706433", "0x7f.1",
		"127.1", "localhost", "10.0.0.256", "1.2.3.4.5", "", "[::1]", "::1 ",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
					  .ai_flags = AI_NUMERICSERV | AI_NUMERICHOST };
		struct addrinfo *res = NULL;
		struct net_addr a;
		bool want = getaddrinfo(hosts[i], "8080", &hints, &res) == 0 && res;
		bool got = net_addr_numeric(hosts[i], 8080, &a);

		if (got != want)
			fail_msg("%s: net_addr_numeric %d, getaddrinfo %d", hosts[i], got, want);
		if (want) {
			assert_int_equal(a.len, res->ai_addrlen);
			assert_memory_equal(&a.ss, res->ai_addr, res->ai_addrlen);
		}
		if (res)
			freeaddrinfo(res);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_parse),
		cmocka_unit_test(test_duration_format),
		cmocka_unit_test(test_size_parse),
		cmocka_unit_test(test_split_host_port),
		cmocka_unit_test(test_addr_parse),
		cmocka_unit_test(test_sockaddr_is_loopback),
		cmocka_unit_test(test_numeric_matches_getaddrinfo),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_write_atomic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
