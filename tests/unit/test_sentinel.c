/*
 * Unit tests for sentinel's pure pieces: the +switch-master message and the
 * address a sentinel answers, both hostile input (wrong name, names instead
 * of IP literals, bad ports, extra or missing fields).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sentinel.h"

static bool parse(const char *msg, const char *name, char *host, size_t len, uint16_t *port)
{
	return sentinel_parse_switch(msg, strlen(msg), name, host, len, port);
}

static void test_switch_master_parses(void **state)
{
	char host[64];
	uint16_t port = 0;
	assert_true(parse("mymaster 127.0.0.1 6379 127.0.0.2 6380", "mymaster", host, sizeof(host), &port));
	assert_string_equal(host, "127.0.0.2");
	assert_int_equal(port, 6380);
	assert_true(parse("m ::1 1 ::1 65535", "m", host, sizeof(host), &port));
	assert_string_equal(host, "::1");
	assert_int_equal(port, 65535);
}

static void test_switch_master_other_name(void **state)
{
	char host[64];
	uint16_t port;
	assert_false(parse("other 127.0.0.1 6379 127.0.0.2 6380", "mymaster", host, sizeof(host), &port));
	assert_false(parse("mymaster2 127.0.0.1 6379 127.0.0.2 6380", "mymaster", host, sizeof(host), &port));
	assert_false(parse("mymaste 127.0.0.1 6379 127.0.0.2 6380", "mymaster", host, sizeof(host), &port));
}

static void test_switch_master_malformed(void **state)
{
	char host[64];
	uint16_t port;
	static const char *const bad[] = {
		"",
		"mymaster",
		"mymaster 127.0.0.1 6379 127.0.0.2",
		"mymaster 127.0.0.1 6379 127.0.0.2 6380 extra",
		"mymaster 127.0.0.1 6379 redis.example 6380",
		"mymaster 127.0.0.1 6379 127.0.0.2 0",
		"mymaster 127.0.0.1 6379 127.0.0.2 65536",
		"mymaster 127.0.0.1 6379 127.0.0.2 123456",
		"mymaster 127.0.0.1 6379 127.0.0.2 63a9",
		"mymaster 127.0.0.1 6379 127.0.0.2 -1",
		"mymaster 127.0.0.1 x 127.0.0.2 6380",
		"mymaster 999.0.0.1 6379 127.0.0.2 6380",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(parse(bad[i], "mymaster", host, sizeof(host), &port));
}

/* A NUL inside the message is not a separator and not the end. */
static void test_switch_master_embedded_nul(void **state)
{
	char host[64];
	uint16_t port;
	const char msg[] = "mymaster 127.0.0.1 6379 127.0.0.2\0 6380";
	assert_false(sentinel_parse_switch(msg, sizeof(msg) - 1, "mymaster", host, sizeof(host), &port));
}

static void test_addr_ok(void **state)
{
	char host[64];
	uint16_t port;
	assert_true(sentinel_addr_ok("10.1.2.3", 8, "26379", 5, host, sizeof(host), &port));
	assert_string_equal(host, "10.1.2.3");
	assert_int_equal(port, 26379);
	assert_false(sentinel_addr_ok("localhost", 9, "26379", 5, host, sizeof(host), &port));
	assert_false(sentinel_addr_ok("", 0, "1", 1, host, sizeof(host), &port));
	assert_false(sentinel_addr_ok("10.1.2.3", 8, "", 0, host, sizeof(host), &port));
	/* the host must fit the caller's buffer */
	assert_false(sentinel_addr_ok("10.1.2.3", 8, "1", 1, host, 8, &port));
	/* a long string is refused before it is copied */
	char big[200];
	memset(big, '1', sizeof(big));
	assert_false(sentinel_addr_ok(big, sizeof(big), "1", 1, host, sizeof(host), &port));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_switch_master_parses),
		cmocka_unit_test(test_switch_master_other_name),
		cmocka_unit_test(test_switch_master_malformed),
		cmocka_unit_test(test_switch_master_embedded_nul),
		cmocka_unit_test(test_addr_ok),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
