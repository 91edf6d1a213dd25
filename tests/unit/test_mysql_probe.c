/*
 * Unit tests for mysql_probe: a scripted server (greeting, auth reply,
 * resultset) built byte by byte here, the client's answers checked byte by
 * byte (HandshakeResponse41, the native password against a vector
 * computed with Python's hashlib, COM_QUERY), every split of the input,
 * and hostile servers: errors, wrong sequence ids, oversized and truncated
 * packets, lying length-encoded fields, unknown auth plugins.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mysql_probe.h"

/* A byte string under construction. */
struct bytes {
	uint8_t b[4096];
	size_t n;
};

static void put(struct bytes *s, const void *p, size_t n)
{
	assert_true(s->n + n <= sizeof(s->b));
	memcpy(s->b + s->n, p, n);
	s->n += n;
}

static void put_byte(struct bytes *s, uint8_t v)
{
	put(s, &v, 1);
}

/* Append payload as one packet with sequence id seq. */
static void packet(struct bytes *out, uint8_t seq, const struct bytes *payload)
{
	uint8_t h[4] = { (uint8_t)payload->n, (uint8_t)(payload->n >> 8), (uint8_t)(payload->n >> 16), seq };
	put(out, h, 4);
	put(out, payload->b, payload->n);
}

static const uint8_t scramble[20] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
				      11, 12, 13, 14, 15, 16, 17, 18, 19, 20 };

/* MariaDB's greeting: protocol 10, 4.1 + secure connection + plugin auth. */
static void greeting(struct bytes *out)
{
	struct bytes p = { .n = 0 };
	put_byte(&p, 10);
	put(&p, "10.11.6-MariaDB", 16);
	put(&p, "\x07\x00\x00\x00", 4);			/* connection id */
	put(&p, scramble, 8);
	put_byte(&p, 0);
	put(&p, "\xfe\xf7", 2);				/* caps low: 4.1, secure conn */
	put_byte(&p, 45);
	put(&p, "\x02\x00", 2);				/* status */
	put(&p, "\xff\x81", 2);				/* caps high: plugin auth */
	put_byte(&p, 21);				/* auth data length */
	put(&p, "\0\0\0\0\0\0\0\0\0\0", 10);
	put(&p, scramble + 8, 12);
	put_byte(&p, 0);
	put(&p, "mysql_native_password", 22);
	packet(out, 0, &p);
}

static void ok_packet(struct bytes *out, uint8_t seq)
{
	struct bytes p = { .n = 0 };
	put(&p, "\x00\x00\x00\x02\x00\x00\x00", 7);
	packet(out, seq, &p);
}

static void err_packet(struct bytes *out, uint8_t seq, const char *msg)
{
	struct bytes p = { .n = 0 };
	put(&p, "\xff\x15\x04#28000", 9);		/* 1045 */
	put(&p, msg, strlen(msg));
	packet(out, seq, &p);
}

/* A one-column resultset whose row is value (NULL: SQL NULL). */
static void resultset(struct bytes *out, const char *value)
{
	struct bytes p = { .n = 0 };
	put_byte(&p, 1);
	packet(out, 1, &p);
	p.n = 0;
	put(&p, "\x03" "def\x00\x00\x00\x11@@global.read_only\x00\x0c\x3f\x00\x01\x00\x00\x00\x08\x80\x00\x00\x00\x00", 40);
	packet(out, 2, &p);
	p.n = 0;
	put(&p, "\xfe\x00\x00\x02\x00", 5);
	packet(out, 3, &p);
	p.n = 0;
	if (value) {
		put_byte(&p, (uint8_t)strlen(value));
		put(&p, value, strlen(value));
	} else {
		put_byte(&p, 0xfb);
	}
	packet(out, 4, &p);
	p.n = 0;
	put(&p, "\xfe\x00\x00\x02\x00", 5);
	packet(out, 5, &p);
}

static enum check_verdict feed(struct mysql_probe *p, const struct bytes *s, char *reason, size_t size)
{
	return mysql_probe_feed(p, s->b, s->n, reason, size);
}

static void test_native_password_vector(void **state)
{
	uint8_t out[20];
	mysql_probe_native_password("secret", scramble, out);
	assert_memory_equal(out, "\xb3\x2b\xb3\xa5\x83\xe1\x34\x0c\x0a\x11\x08\xd5\x8b\x1b\xe4\x97"
			    "\x81\xad\x8c\x2f", 20);
}

static void test_login_and_read_only_0(void **state)
{
	struct mysql_probe *p = mysql_probe_new("zklb", "secret");
	struct bytes s = { .n = 0 };
	char reason[96];
	size_t n;

	greeting(&s);
	assert_int_equal(feed(p, &s, reason, sizeof(reason)), CHECK_VERDICT_MORE);
	const uint8_t *out = mysql_probe_output(p, &n);
	assert_non_null(out);
	/* header: length, seq 1; caps; max packet; charset; 23 zeros; user; auth; plugin */
	size_t want = 4 + 32 + 5 + 1 + 20 + 22;
	assert_int_equal(n, want);
	assert_int_equal(out[3], 1);
	assert_int_equal(out[0], want - 4);
	assert_memory_equal(out + 4, "\x01\x82\x08\x00", 4);
	assert_int_equal(out[12], 45);
	assert_memory_equal(out + 36, "zklb\0", 5);
	assert_int_equal(out[41], 20);
	assert_memory_equal(out + 42, "\xb3\x2b\xb3\xa5\x83\xe1\x34\x0c\x0a\x11\x08\xd5\x8b\x1b\xe4\x97"
			    "\x81\xad\x8c\x2f", 20);
	assert_memory_equal(out + 62, "mysql_native_password\0", 22);
	mysql_probe_output_sent(p);
	assert_null(mysql_probe_output(p, &n));

	s.n = 0;
	ok_packet(&s, 2);
	assert_int_equal(feed(p, &s, reason, sizeof(reason)), CHECK_VERDICT_MORE);
	out = mysql_probe_output(p, &n);
	const char q[] = "\x1a\x00\x00\x00\x03SELECT @@global.read_only";
	assert_int_equal(n, sizeof(q) - 1);
	assert_memory_equal(out, q, n);
	mysql_probe_output_sent(p);

	s.n = 0;
	resultset(&s, "0");
	assert_int_equal(feed(p, &s, reason, sizeof(reason)), CHECK_VERDICT_PASS);
	assert_string_equal(reason, "read_only 0");
	mysql_probe_free(p);
}

/* The whole conversation's server side, fed in two pieces cut anywhere. */
static enum check_verdict converse(const char *value, size_t cut, char *reason, size_t size)
{
	struct bytes s = { .n = 0 };
	greeting(&s);
	ok_packet(&s, 2);
	resultset(&s, value);
	if (cut > s.n)
		cut = s.n;
	struct mysql_probe *p = mysql_probe_new("u", "");
	enum check_verdict v = mysql_probe_feed(p, s.b, cut, reason, size);
	if (v == CHECK_VERDICT_MORE)
		v = mysql_probe_feed(p, s.b + cut, s.n - cut, reason, size);
	mysql_probe_free(p);
	return v;
}

static void test_every_split(void **state)
{
	char reason[96];
	for (size_t cut = 0; cut < 400; cut++) {
		assert_int_equal(converse("0", cut, reason, sizeof(reason)), CHECK_VERDICT_PASS);
		assert_int_equal(converse("1", cut, reason, sizeof(reason)), CHECK_VERDICT_FAIL);
		assert_string_equal(reason, "read_only 1");
	}
}

static void test_null_and_odd_values(void **state)
{
	char reason[96];
	assert_int_equal(converse(NULL, 0, reason, sizeof(reason)), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "read_only NULL");
	assert_int_equal(converse("00", 0, reason, sizeof(reason)), CHECK_VERDICT_FAIL);
	assert_int_equal(converse("OFF\x1b", 0, reason, sizeof(reason)), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "read_only OFF?");
}

static void test_auth_refused(void **state)
{
	struct bytes s = { .n = 0 };
	char reason[96];
	greeting(&s);
	err_packet(&s, 2, "Access denied for user 'u'@'localhost' (using password: YES)");
	struct mysql_probe *p = mysql_probe_new("u", "x");
	assert_int_equal(feed(p, &s, reason, sizeof(reason)), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "auth refused: 1045: Access denied for user 'u'@'localhost' "
			    "(using password: YES)");
	mysql_probe_free(p);
}

static void test_error_before_greeting(void **state)
{
	struct bytes s = { .n = 0 }, pl = { .n = 0 };
	char reason[96];
	static const char blocked[] = "\xff\x69\x04Host '10.0.0.1' is blocked";
	put(&pl, blocked, sizeof(blocked) - 1);
	packet(&s, 0, &pl);
	struct mysql_probe *p = mysql_probe_new("u", "x");
	assert_int_equal(feed(p, &s, reason, sizeof(reason)), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "error 1129: Host '10.0.0.1' is blocked");
	mysql_probe_free(p);
}

static void test_auth_switch(void **state)
{
	struct bytes s = { .n = 0 }, pl = { .n = 0 };
	char reason[96];
	size_t n;
	greeting(&s);
	put_byte(&pl, 0xfe);
	put(&pl, "mysql_native_password", 22);
	put(&pl, scramble, 20);
	put_byte(&pl, 0);
	packet(&s, 2, &pl);
	struct mysql_probe *p = mysql_probe_new("u", "secret");
	assert_int_equal(feed(p, &s, reason, sizeof(reason)), CHECK_VERDICT_MORE);
	const uint8_t *out = mysql_probe_output(p, &n);
	/* the handshake response, then the switch answer with seq 3 */
	size_t first = 4 + (size_t)out[0];
	assert_int_equal(n, first + 4 + 20);
	assert_memory_equal(out + first, "\x14\x00\x00\x03", 4);
	assert_memory_equal(out + first + 4, "\xb3\x2b\xb3\xa5", 4);
	mysql_probe_output_sent(p);
	s.n = 0;
	ok_packet(&s, 4);
	resultset(&s, "0");
	assert_int_equal(feed(p, &s, reason, sizeof(reason)), CHECK_VERDICT_PASS);
	mysql_probe_free(p);

	/* another plugin is refused */
	s.n = 0;
	pl.n = 0;
	greeting(&s);
	put_byte(&pl, 0xfe);
	put(&pl, "caching_sha2_password", 22);
	put(&pl, scramble, 20);
	packet(&s, 2, &pl);
	p = mysql_probe_new("u", "secret");
	assert_int_equal(feed(p, &s, reason, sizeof(reason)), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "auth plugin caching_sha2_password not supported");
	mysql_probe_free(p);
}

static void test_hostile_servers(void **state)
{
	char reason[96];
	struct bytes s = { .n = 0 }, pl = { .n = 0 };
	struct mysql_probe *p;

	/* wrong sequence id */
	greeting(&s);
	ok_packet(&s, 5);
	p = mysql_probe_new("u", "");
	assert_int_equal(feed(p, &s, reason, sizeof(reason)), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "protocol error: packet out of sequence");
	mysql_probe_free(p);

	/* a packet announced longer than allowed fails before its body arrives */
	p = mysql_probe_new("u", "");
	assert_int_equal(mysql_probe_feed(p, "\xff\xff\xff\x00", 4, reason, sizeof(reason)),
			 CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "packet too long");
	mysql_probe_free(p);

	/* protocol 9 */
	s.n = 0;
	put(&pl, "\x09" "5.0\0", 5);
	packet(&s, 0, &pl);
	p = mysql_probe_new("u", "");
	assert_int_equal(feed(p, &s, reason, sizeof(reason)), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "protocol version 9");
	mysql_probe_free(p);

	/* a greeting cut inside the scramble, version string without its NUL */
	static const char *const short_greetings[] = { "\x0a", "\x0a" "10.11", "\x0a" "v\0\1\0\0\0abc" };
	for (size_t i = 0; i < 3; i++) {
		s.n = 0;
		pl.n = 0;
		put(&pl, short_greetings[i], strlen(short_greetings[i]) + (i == 2 ? 5 : 0));
		packet(&s, 0, &pl);
		p = mysql_probe_new("u", "");
		assert_int_equal(feed(p, &s, reason, sizeof(reason)), CHECK_VERDICT_FAIL);
		mysql_probe_free(p);
	}

	/* a row whose length says more than the packet holds */
	s.n = 0;
	greeting(&s);
	ok_packet(&s, 2);
	struct bytes rs = { .n = 0 };
	resultset(&rs, "0");
	/* the row packet is the 4th of the resultset: patch its length byte to 0xfc 0xff 0xff */
	size_t at = 0;
	for (int k = 0; k < 3; k++)
		at += 4 + (size_t)rs.b[at];
	rs.b[at + 4] = 0xfa;
	put(&s, rs.b, rs.n);
	p = mysql_probe_new("u", "");
	assert_int_equal(feed(p, &s, reason, sizeof(reason)), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "protocol error: bad row");
	mysql_probe_free(p);

	/* an OK packet instead of a resultset */
	s.n = 0;
	greeting(&s);
	ok_packet(&s, 2);
	ok_packet(&s, 1);
	p = mysql_probe_new("u", "");
	assert_int_equal(feed(p, &s, reason, sizeof(reason)), CHECK_VERDICT_FAIL);
	assert_string_equal(reason, "protocol error: no resultset");
	mysql_probe_free(p);
}

/* Random bytes never crash and always end undecided or failed. */
static void test_garbage(void **state)
{
	uint32_t x = 12345;
	uint8_t buf[512];
	char reason[96];
	for (int round = 0; round < 2000; round++) {
		struct mysql_probe *p = mysql_probe_new("u", "pw");
		size_t n = (size_t)(round % 512);
		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245u + 12345u;
			buf[i] = (uint8_t)(x >> 16);
		}
		enum check_verdict v = mysql_probe_feed(p, buf, n, reason, sizeof(reason));
		assert_true(v == CHECK_VERDICT_MORE || v == CHECK_VERDICT_FAIL);
		mysql_probe_free(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_native_password_vector),
		cmocka_unit_test(test_login_and_read_only_0),
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_null_and_odd_values),
		cmocka_unit_test(test_auth_refused),
		cmocka_unit_test(test_error_before_greeting),
		cmocka_unit_test(test_auth_switch),
		cmocka_unit_test(test_hostile_servers),
		cmocka_unit_test(test_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
