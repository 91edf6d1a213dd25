/*
 * Unit tests for proxy_header: PROXY v2 headers byte by byte for TCP over
 * IPv4, TCP over IPv6, an IPv4 client on an IPv6 socket (v4-mapped), and
 * LOCAL/UNSPEC for unix-socket clients, mixed families and unknown peers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "proxy_header.h"

#define SIG "\r\n\r\n\0\r\nQUIT\n"

static struct sockaddr_storage v4(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	inet_pton(AF_INET, ip, &in->sin_addr);
	return ss;
}

static struct sockaddr_storage v6(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &in6->sin6_addr);
	return ss;
}

static void test_tcp4(void **state)
{
	struct sockaddr_storage src = v4("10.1.2.3", 40000), dst = v4("127.0.0.1", 8080);
	uint8_t out[PROXY_HEADER_V2_MAX];
	size_t n = proxy_header_v2(&src, &dst, out);
	const uint8_t want[] = SIG "\x21\x11\x00\x0c" "\x0a\x01\x02\x03" "\x7f\x00\x00\x01"
			       "\x9c\x40" "\x1f\x90";
	assert_int_equal(n, sizeof(want) - 1);
	assert_memory_equal(out, want, n);
}

static void test_tcp6(void **state)
{
	struct sockaddr_storage src = v6("2001:db8::1", 1), dst = v6("::1", 65535);
	uint8_t out[PROXY_HEADER_V2_MAX];
	size_t n = proxy_header_v2(&src, &dst, out);
	assert_int_equal(n, 52);
	assert_memory_equal(out, SIG "\x21\x21\x00\x24", 16);
	assert_memory_equal(out + 16, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
	assert_memory_equal(out + 32, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
	assert_memory_equal(out + 48, "\x00\x01\xff\xff", 4);
}

static void test_v4_mapped_is_tcp4(void **state)
{
	struct sockaddr_storage src = v6("::ffff:192.0.2.7", 5000), dst = v6("::ffff:127.0.0.1", 80);
	uint8_t out[PROXY_HEADER_V2_MAX];
	size_t n = proxy_header_v2(&src, &dst, out);
	const uint8_t want[] = SIG "\x21\x11\x00\x0c" "\xc0\x00\x02\x07" "\x7f\x00\x00\x01"
			       "\x13\x88" "\x00\x50";
	assert_int_equal(n, sizeof(want) - 1);
	assert_memory_equal(out, want, n);
}

static void test_local_unspec(void **state)
{
	struct sockaddr_storage un;
	memset(&un, 0, sizeof(un));
	un.ss_family = AF_UNIX;
	struct sockaddr_storage a4 = v4("127.0.0.1", 1), a6 = v6("::1", 1);
	uint8_t out[PROXY_HEADER_V2_MAX];
	const uint8_t want[] = SIG "\x20\x00\x00\x00";

	assert_int_equal(proxy_header_v2(&un, &un, out), 16);
	assert_memory_equal(out, want, 16);
	assert_int_equal(proxy_header_v2(&a4, &a6, out), 16);	/* mixed families */
	assert_memory_equal(out, want, 16);
	assert_int_equal(proxy_header_v2(NULL, NULL, out), 16);	/* peer unknown */
	assert_memory_equal(out, want, 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp4),
		cmocka_unit_test(test_tcp6),
		cmocka_unit_test(test_v4_mapped_is_tcp4),
		cmocka_unit_test(test_local_unspec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
