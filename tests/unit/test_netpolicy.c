/*
 * Unit tests for netpolicy: prefix parsing, matching across address
 * spellings (decimal, hex, octal, IPv4-mapped IPv6), the `reserved` set, and
 * the allow/deny decision.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "netpolicy.h"

/* A socket address from any spelling inet_aton (IPv4) or inet_pton (IPv6) takes. */
static struct sockaddr_storage sa_of(const char *s)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_aton(s, &in->sin_addr)) {
		in->sin_family = AF_INET;
	} else {
		assert_int_equal(inet_pton(AF_INET6, s, &in6->sin6_addr), 1);
		in6->sin6_family = AF_INET6;
	}
	return ss;
}

static enum netpolicy_verdict check(const struct net_list *allowed, const struct net_list *denied,
				    const char *addr)
{
	struct sockaddr_storage ss = sa_of(addr);
	return netpolicy_check(allowed, denied, (struct sockaddr *)&ss, NULL);
}

static struct net_list list_of(const char *const *entries, size_t n)
{
	struct net_list l;
	memset(&l, 0, sizeof(l));
	char err[128];
	for (size_t i = 0; i < n; i++)
		assert_true(net_list_add(&l, entries[i], err, sizeof(err)));
	return l;
}

static void test_reserved_in_every_spelling(void **state)
{
	const char *reserved[] = { "reserved" };
	struct net_list denied = list_of(reserved, 1);
	assert_true(denied.has_reserved);
	const char *refused[] = {
		"169.254.169.254", "2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "169.254.43518",
		"::ffff:169.254.169.254", "::ffff:a9fe:a9fe", "0.0.0.0", "0", "0.1.2.3",
		"::", "fe80::1", "febf::1", "fd00:ec2::254", "100.100.100.200",
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		if (check(NULL, &denied, refused[i]) != NETPOLICY_DENIED)
			fail_msg("%s was not denied", refused[i]);
	}
	const char *fine[] = {
		"127.0.0.1", "2130706433", "0x7f.1", "10.1.2.3", "::1", "fec0::1", "fd00:ec2::253",
		"169.255.0.1", "100.100.100.201", "::ffff:127.0.0.1", "1.0.0.0",
	};
	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
		if (check(NULL, &denied, fine[i]) != NETPOLICY_ALLOW)
			fail_msg("%s was not allowed", fine[i]);
	}
}

static void test_allow_list_and_deny_wins(void **state)
{
	const char *a[] = { "10.128.0.0/9", "2001:db8::/32" };
	const char *d[] = { "reserved", "10.200.0.0/16" };
	struct net_list allowed = list_of(a, 2), denied = list_of(d, 2);
	assert_int_equal(check(&allowed, &denied, "10.130.0.1"), NETPOLICY_ALLOW);
	assert_int_equal(check(&allowed, &denied, "10.255.255.255"), NETPOLICY_ALLOW);
	assert_int_equal(check(&allowed, &denied, "10.127.255.255"), NETPOLICY_NOT_ALLOWED);
	assert_int_equal(check(&allowed, &denied, "10.200.1.1"), NETPOLICY_DENIED);
	assert_int_equal(check(&allowed, &denied, "::ffff:10.200.1.1"), NETPOLICY_DENIED);
	assert_int_equal(check(&allowed, &denied, "::ffff:10.130.0.1"), NETPOLICY_ALLOW);
	assert_int_equal(check(&allowed, &denied, "2001:db8:1::5"), NETPOLICY_ALLOW);
	assert_int_equal(check(&allowed, &denied, "2001:db9::5"), NETPOLICY_NOT_ALLOWED);
	assert_int_equal(check(&allowed, &denied, "127.0.0.1"), NETPOLICY_NOT_ALLOWED);

	struct sockaddr_storage ss = sa_of("10.200.3.4");
	const struct net_prefix *hit;
	assert_int_equal(netpolicy_check(&allowed, &denied, (struct sockaddr *)&ss, &hit),
			 NETPOLICY_DENIED);
	char buf[64];
	net_prefix_format(hit, buf, sizeof(buf));
	assert_string_equal(buf, "10.200.0.0/16");
	assert_string_equal(netpolicy_verdict_name(NETPOLICY_DENIED), "denied_network");
}

static void test_zero_length_prefix_and_bare_address(void **state)
{
	const char *a[] = { "0.0.0.0/0", "192.0.2.7" };
	struct net_list allowed = list_of(a, 2);
	assert_int_equal(check(&allowed, NULL, "203.0.113.9"), NETPOLICY_ALLOW);
	assert_int_equal(check(&allowed, NULL, "::1"), NETPOLICY_NOT_ALLOWED);
	const char *b[] = { "192.0.2.7" };
	struct net_list one = list_of(b, 1);
	assert_int_equal(check(&one, NULL, "192.0.2.7"), NETPOLICY_ALLOW);
	assert_int_equal(check(&one, NULL, "192.0.2.8"), NETPOLICY_NOT_ALLOWED);
}

static void test_unix_always_allowed(void **state)
{
	const char *a[] = { "10.0.0.0/8" };
	struct net_list allowed = list_of(a, 1);
	struct sockaddr_un un = { .sun_family = AF_UNIX, .sun_path = "/run/x.sock" };
	assert_int_equal(netpolicy_check(&allowed, NULL, (struct sockaddr *)&un, NULL), NETPOLICY_ALLOW);
	assert_false(net_prefix_contains(&allowed.prefix[0], (struct sockaddr *)&un));
}

static void test_parse_errors(void **state)
{
	const char *bad[] = {
		"10.0.0.1/8", "10.0.0.0/33", "::/129", "foo", "/8", "10.0.0.0/", "10.0.0.0/-1",
		"10.0.0.0/8x", "2130706433", "0x7f.1", "metadata.google.internal", "", "fe80::1/10",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct net_list l;
		memset(&l, 0, sizeof(l));
		char err[128] = "";
		if (net_list_add(&l, bad[i], err, sizeof(err)))
			fail_msg("'%s' was accepted", bad[i]);
		assert_true(err[0] != '\0');
		assert_int_equal(l.n, 0);
	}
}

/* A listener given as "host" and port. */
static struct net_self self_of(const char *host, uint16_t port)
{
	struct sockaddr_storage ss = sa_of(host);
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
	struct net_self s;
	assert_true(net_self_from(&s, (struct sockaddr *)&ss));
	return s;
}

static bool is_self(const struct net_self *v, size_t n, const char *host, uint16_t port, bool local)
{
	struct sockaddr_storage ss = sa_of(host);
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
	bool any_port = net_self_port(v, n, (struct sockaddr *)&ss);
	bool match = net_self_match(v, n, (struct sockaddr *)&ss, local, NULL);
	assert_true(any_port || !match);
	return match;
}

static void test_self_listeners(void **state)
{
	struct net_self v[] = { self_of("127.0.0.1", 9901), self_of("0.0.0.0", 8080),
				self_of("::", 8443), self_of("10.1.2.3", 7000) };
	size_t n = 4;
	assert_false(v[0].wildcard);
	assert_true(v[1].wildcard);
	/* The admin address exactly, in any spelling; not another port. */
	assert_true(is_self(v, n, "127.0.0.1", 9901, false));
	assert_true(is_self(v, n, "::ffff:127.0.0.1", 9901, false));
	assert_false(is_self(v, n, "127.0.0.1", 9902, false));
	assert_false(is_self(v, n, "127.0.0.2", 9901, false));
	/* A wildcard takes every local address, loopback and unspecified included. */
	assert_true(is_self(v, n, "127.0.0.5", 8080, false));
	assert_true(is_self(v, n, "0.0.0.0", 8080, false));
	assert_true(is_self(v, n, "192.0.2.10", 8080, true));
	assert_false(is_self(v, n, "192.0.2.10", 8080, false));
	assert_true(is_self(v, n, "::1", 8443, false));
	assert_true(is_self(v, n, "::ffff:192.0.2.10", 8443, true));
	/* A specific address only itself. */
	assert_true(is_self(v, n, "10.1.2.3", 7000, false));
	assert_false(is_self(v, n, "10.1.2.4", 7000, true));
	assert_string_equal(netpolicy_verdict_name(NETPOLICY_SELF), "zklb_listener");
}

static void test_list_is_bounded(void **state)
{
	struct net_list l;
	memset(&l, 0, sizeof(l));
	char err[128], entry[32];
	for (int i = 0; i < NETPOLICY_MAX_PREFIXES; i++) {
		snprintf(entry, sizeof(entry), "10.%d.0.0/16", i);
		assert_true(net_list_add(&l, entry, err, sizeof(err)));
	}
	assert_false(net_list_add(&l, "192.0.2.0/24", err, sizeof(err)));
	assert_non_null(strstr(err, "more than"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reserved_in_every_spelling),
		cmocka_unit_test(test_allow_list_and_deny_wins),
		cmocka_unit_test(test_zero_length_prefix_and_bare_address),
		cmocka_unit_test(test_unix_always_allowed),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_list_is_bounded),
		cmocka_unit_test(test_self_listeners),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
