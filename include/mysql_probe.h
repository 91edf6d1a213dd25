/*
 * mysql_probe — the pure part of the mysql_primary check: the client side
 * of a MySQL/MariaDB connection, just far enough to log in and ask
 * "SELECT @@global.read_only" (ProxySQL's test of a writable primary).
 * Bytes in, bytes out, a verdict: no sockets, no clocks; check.c moves the
 * bytes and owns the timeout.
 *
 * What it speaks (client/server protocol 4.1):
 *   server  Initial Handshake v10 (seq 0): needs CLIENT_PROTOCOL_41 and
 *           CLIENT_SECURE_CONNECTION; the 20-byte scramble.
 *   client  HandshakeResponse41 (seq 1): user, mysql_native_password
 *           response SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))).
 *   server  OK, ERR, or an AuthSwitchRequest to mysql_native_password with
 *           a new scramble (answered once); any other plugin fails.
 *   client  COM_QUERY "SELECT @@global.read_only" (seq 0).
 *   server  a text resultset: column count, column definitions, EOF, the
 *           first row decides: "0" passes, anything else fails.
 *
 * Every byte is hostile: each packet is bounded (MYSQL_PROBE_PACKET_MAX),
 * sequence ids must follow, every length-encoded field is checked against
 * what is left of its packet; anything unexpected fails with a reason.
 *
 * Thread: any; one probe per attempt, used by one thread.
 */
#ifndef ZKLB_MYSQL_PROBE_H
#define ZKLB_MYSQL_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"

/* The largest server packet accepted (a handshake or row is far smaller). */
#define MYSQL_PROBE_PACKET_MAX (16 * 1024)

struct mysql_probe;

/* A probe logging in as user with password (may be "" or NULL: no password). */
struct mysql_probe *mysql_probe_new(const char *user, const char *password);

/* Wipes the password. NULL is a no-op. */
void mysql_probe_free(struct mysql_probe *p);

/*
 * Feed buf[0..len) from the server. Returns MORE while undecided, then PASS
 * ("read_only 0") or FAIL with a reason in reason[0..size): "read_only 1",
 * "auth refused: <server message>", "error <code>: <message>", "protocol
 * version <n>", "auth plugin <name> not supported", "no row",
 * "packet too long", "protocol error: <what>". Once decided the verdict
 * stays. After a call, bytes to send may be waiting: mysql_probe_output().
 */
enum check_verdict mysql_probe_feed(struct mysql_probe *p, const void *buf, size_t len,
				    char *reason, size_t size);

/*
 * The bytes to send now (a response or the query), *len of them; NULL when
 * none. Valid until the next feed; call mysql_probe_output_sent() once
 * they are handed to the socket.
 */
const void *mysql_probe_output(const struct mysql_probe *p, size_t *len);
void mysql_probe_output_sent(struct mysql_probe *p);

/* mysql_native_password's 20-byte response to scramble[0..20), for the tests. */
void mysql_probe_native_password(const char *password, const uint8_t scramble[20],
				 uint8_t out[20]);

#endif
