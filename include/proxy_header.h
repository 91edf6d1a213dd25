/*
 * proxy_header — the PROXY protocol v2 header zklb writes first on an
 * upstream connection of a service with `proxy_protocol: v2`, so the
 * backend learns the client's address (HAProxy's proxy-protocol.txt, v2).
 *
 *   12-byte signature, 0x21 (v2, PROXY) or 0x20 (v2, LOCAL), the family
 *   byte, a 16-bit big-endian length, then the addresses:
 *     TCP over IPv4 (0x11): src addr, dst addr (4 bytes each), src port,
 *                           dst port (2 bytes each, network order): 12;
 *     TCP over IPv6 (0x21): 16 + 16 + 2 + 2 = 36.
 *   An IPv4 client seen on an IPv6 socket (v4-mapped) is sent as IPv4.
 *   Anything else — a unix-socket client, mixed families — is sent as
 *   LOCAL with family UNSPEC and length 0: the spec's "the receiver must
 *   use the real connection endpoints", rather than an address we cannot
 *   state truthfully.
 *
 * Pure: no sockets (the caller passes what getpeername/getsockname said).
 * Thread: any.
 */
#ifndef ZKLB_PROXY_HEADER_H
#define ZKLB_PROXY_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest header written (TCP over IPv6). */
#define PROXY_HEADER_V2_MAX (16 + 36)

/*
 * Write the header for a client at src connected to dst into out; returns
 * its length (16..PROXY_HEADER_V2_MAX). src or dst may be NULL (LOCAL).
 */
size_t proxy_header_v2(const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
		       uint8_t out[PROXY_HEADER_V2_MAX]);

#endif
