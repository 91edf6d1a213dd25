/*
 * Unit tests for tls: the pure decisions (version names, which names get
 * SNI, which name is verified, key file modes) and a context built without
 * files. Handshakes are tested against real servers in
 * tests/integration/test_tls.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/ssl.h>
#include <string.h>

#include "config.h"
#include "tls.h"

static void test_version_parse(void **state)
{
	assert_int_equal(tls_version_parse("1.2"), TLS1_2_VERSION);
	assert_int_equal(tls_version_parse("1.3"), TLS1_3_VERSION);
	const char *bad[] = { "1.1", "1.0", "1", "1.2 ", " 1.2", "1.20", "TLSv1.2", "", "1.4" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tls_version_parse(bad[i]), 0);
	assert_int_equal(tls_version_parse(NULL), 0);
}

/* RFC 6066: SNI carries host names only, never an address literal. */
static void test_sni_decision(void **state)
{
	assert_true(tls_name_is_host("backend.example"));
	assert_true(tls_name_is_host("localhost"));
	assert_true(tls_name_is_host("a"));
	assert_true(tls_name_is_host("10.0.0.5.example"));
	assert_false(tls_name_is_host("127.0.0.1"));
	assert_false(tls_name_is_host("10.0.0.5"));
	assert_false(tls_name_is_host("::1"));
	assert_false(tls_name_is_host("fe80::1"));
	assert_false(tls_name_is_host("2001:db8::5"));
	assert_false(tls_name_is_host(""));
	assert_false(tls_name_is_host(NULL));
}

/* server_name wins; without it, the instance's own host (name or IP) is verified. */
static void test_peer_name(void **state)
{
	assert_string_equal(tls_peer_name("api.internal", "10.0.0.5"), "api.internal");
	assert_string_equal(tls_peer_name(NULL, "10.0.0.5"), "10.0.0.5");
	assert_string_equal(tls_peer_name("", "db.example"), "db.example");
	assert_string_equal(tls_peer_name(NULL, "db.example"), "db.example");
}

static void test_key_mode(void **state)
{
	assert_false(tls_key_mode_open(0600));
	assert_false(tls_key_mode_open(0400));
	assert_false(tls_key_mode_open(0100600));	/* S_IFREG bits do not count */
	assert_true(tls_key_mode_open(0640));
	assert_true(tls_key_mode_open(0604));
	assert_true(tls_key_mode_open(0644));
	assert_true(tls_key_mode_open(0610));
}

static void test_result_names(void **state)
{
	assert_string_equal(tls_result_name(TLS_RESULT_FULL), "full");
	assert_string_equal(tls_result_name(TLS_RESULT_RESUMED), "resumed");
	assert_string_equal(tls_result_name(TLS_RESULT_VERIFY), "verify");
	assert_string_equal(tls_result_name(TLS_RESULT_TIMEOUT), "timeout");
	assert_string_equal(tls_result_name(TLS_RESULT_PROTOCOL), "protocol");
	assert_string_equal(tls_result_name(TLS_RESULTS), "?");
}

/* A context and a connection object without any file; the bad version is named. */
static void test_ctx(void **state)
{
	struct tls_conf conf = { .enabled = true, .verify = false, .min_version = "1.3",
				 .session_reuse = true };
	char err[200];
	const char *bad = NULL;
	struct tls_ctx *ctx = tls_ctx_new(&conf, &bad, err, sizeof(err));
	assert_non_null(ctx);
	struct tls_conn *t = tls_conn_new(ctx, -1, "127.0.0.1", "127.0.0.1:443");
	assert_non_null(t);
	assert_false(tls_conn_pending(t));
	assert_string_equal(tls_conn_reason(t), "");
	tls_conn_free(t);
	tls_ctx_put(ctx);

	conf.min_version = "1.1";
	assert_null(tls_ctx_new(&conf, &bad, err, sizeof(err)));
	assert_string_equal(bad, "min_version");
	assert_string_equal(err, "\"1.1\" is not 1.2 or 1.3");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_parse),
		cmocka_unit_test(test_sni_decision),
		cmocka_unit_test(test_peer_name),
		cmocka_unit_test(test_key_mode),
		cmocka_unit_test(test_result_names),
		cmocka_unit_test(test_ctx),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
