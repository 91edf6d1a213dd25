/*
 * proxy_header — PROXY protocol v2 (see proxy_header.h).
 */
#include "proxy_header.h"

#include <netinet/in.h>
#include <string.h>

static const uint8_t signature[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				       0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* An IPv4 address, possibly v4-mapped in an IPv6 socket address. */
static bool as_v4(const struct sockaddr_storage *ss, uint8_t addr[4], uint8_t port[2])
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		memcpy(addr, &in->sin_addr, 4);
		memcpy(port, &in->sin_port, 2);
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		if (!IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			return false;
		memcpy(addr, in6->sin6_addr.s6_addr + 12, 4);
		memcpy(port, &in6->sin6_port, 2);
		return true;
	}
	return false;
}

static bool as_v6(const struct sockaddr_storage *ss, uint8_t addr[16], uint8_t port[2])
{
	if (ss->ss_family != AF_INET6)
		return false;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
	memcpy(addr, &in6->sin6_addr, 16);
	memcpy(port, &in6->sin6_port, 2);
	return true;
}

size_t proxy_header_v2(const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
		       uint8_t out[PROXY_HEADER_V2_MAX])
{
	uint8_t *a = out + 16;
	size_t len = 0;

	memcpy(out, signature, sizeof(signature));
	out[12] = 0x21;		/* version 2, PROXY */
	if (src && dst && as_v4(src, a, a + 8) && as_v4(dst, a + 4, a + 10)) {
		out[13] = 0x11;	/* TCP over IPv4 */
		len = 12;
	} else if (src && dst && as_v6(src, a, a + 32) && as_v6(dst, a + 16, a + 34)) {
		out[13] = 0x21;	/* TCP over IPv6 */
		len = 36;
	} else {
		out[12] = 0x20;	/* version 2, LOCAL: use the connection's own endpoints */
		out[13] = 0x00;	/* UNSPEC */
	}
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)len;
	return 16 + len;
}
